/**
 * `hoop sessions show` renders what query.end holds beside the result: notices and
 * notifications the client received, and what it uploaded with COPY FROM STDIN.
 */
import { describe, expect, it } from 'vitest';
import type { AuditEvent, QueryEndData } from '../../src/audit/event.js';
import { renderSession } from '../../src/cli/commands/sessions.js';
import { IOStreams } from '../../src/cli/iostreams.js';

function event(seq: number, type: AuditEvent['type'], data: Record<string, unknown>): AuditEvent {
  return {
    seq, id: `e${seq}`, time: '2026-11-28T09:00:00.000Z', type, actor: null, source: null,
    connection: 'bank', session_id: 's1', data, prev_hash: '', hash: '',
  };
}

function show(end: QueryEndData, statement: string, rows = 5, o: { full?: boolean; catalog?: boolean } = {}, decision?: Record<string, unknown>): string {
  const t = IOStreams.test();
  renderSession(t.io, {
    session: { id: 's1', connection: 'bank', subject: 'apikey:alice', email: null, groups: [], source_address: null, client_application: null, started_at: '2026-11-28T09:00:00.000Z', ended_at: null, statements: 1, end_reason: null, reason: null },
    events: [event(1, 'query.start', { query_id: 'q', protocol: 'simple', statement, ...(decision ? { decision } : {}) }), event(2, 'query.end', end as unknown as Record<string, unknown>)],
  }, { rows, ...o });
  return t.stdout();
}

const base = { query_id: 'q', outcome: 'ok' as const, error: null, rows: 0, bytes: 0, duration_ms: 1, result: { sets: [], truncated: false, sha256: 'ab'.repeat(32) } };

describe('sessions show: notices, notifications and uploads', () => {
  it('lists the notices and notifications the client received, and how many were not kept', () => {
    const out = show({
      ...base, command_tags: ['DO'],
      messages: {
        notices: 3, notifications: 1, bytes: 200, truncated: true, sha256: 'cd'.repeat(32),
        kept: [
          { kind: 'notice', statement: 0, after: 0, severity: 'NOTICE', code: '00000', message: 'row 1', detail: 'd1', hint: 'h1' },
          { kind: 'notification', statement: 0, after: 0, pid: 4242, channel: 'jobs', payload: 'go' },
        ],
      },
    }, 'DO $$ ... $$');
    expect(out).toContain('messages: 3 notices, 1 notification');
    expect(out).toContain('NOTICE 00000  row 1  (detail: d1; hint: h1)');
    expect(out).toContain('NOTIFY jobs (pid 4242): go');
    expect(out).toContain('… 2 more (recording truncated at the payload limit)');
  });

  it('shows an upload with its hash, its first lines, and a CopyFail', () => {
    const out = show({
      ...base, command_tags: ['COPY 3'], rows: 3,
      upload: {
        messages: 2, bytes: 12, rows: 3, sha256: 'ef'.repeat(32), truncated: false,
        copies: [{ statement: 0, format: 'text', rows: 3, bytes: 12, data: '1\tzoë\n2\tb\n3\tc\n', truncated: false, end: 'failed', failure: 'interrupted' }],
      },
    }, 'COPY t FROM STDIN', 2);
    expect(out).toContain(`uploaded: 3 rows, 12 bytes (text)  sha256 ${'ef'.repeat(32)}`);
    expect(out).toContain('CopyFail: interrupted');
    expect(out).toContain('│ 1 zoë');
    expect(out).toContain('│ 2 b');
    expect(out).not.toContain('│ 3 c');
    expect(out).toContain('… 1 more row');
  });

  it('a statement without them shows neither', () => {
    const out = show({ ...base, command_tags: ['SELECT 0'] }, 'select');
    expect(out).not.toContain('messages:');
    expect(out).not.toContain('uploaded:');
  });
});

describe('sessions show: --full, psql catalog queries, COPY columns', () => {
  const long = 'x'.repeat(40);
  const withRow = (columns: string[], rows: (string | null)[][], tag: string): QueryEndData => ({
    ...base, command_tags: [tag], rows: rows.length, result: { sets: [{ columns, rows, tag, statement: 0 }], truncated: false, sha256: 'ab'.repeat(32) },
  });

  it('cuts cells at 32 characters, and --full prints them whole', () => {
    const end = withRow(['note'], [[long]], 'SELECT 1');
    expect(show(end, 'select note from notes')).toContain(`${'x'.repeat(31)}…`);
    expect(show(end, 'select note from notes', 5, { full: true })).toContain(`│ ${long} │`);
  });

  it('folds a psql catalog query into one line naming what it read; --catalog shows it', () => {
    const sql = 'SELECT c.relname FROM pg_catalog.pg_class c LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE pg_catalog.pg_table_is_visible(c.oid)';
    const end = withRow(['relname'], [['customers']], 'SELECT 1');
    const folded = show(end, sql);
    expect(folded).toContain('#1  2026-11-28 09:00:00Z  1 ms  catalog query (1 row): pg_catalog.pg_class, pg_catalog.pg_namespace  (--catalog shows it)');
    expect(folded).not.toContain('│ customers');
    expect(show(end, sql, 5, { catalog: true })).toContain('│ customers │');
    // A failed catalog query is shown whole: something unusual happened.
    expect(show({ ...end, outcome: 'error', error: { code: '42P01', message: 'nope' } }, sql)).toContain('error: nope (42P01)');
  });

  it('COPY TO shows the columns it names, split from its data lines', () => {
    const end = withRow(['copy'], [['1\tAda\t\\N\n'], ['2\tGrace\tx\n']], 'COPY 2');
    const out = show(end, 'COPY customers (id, name, note) TO STDOUT');
    expect(out).toMatch(/│ id │ name\s+│ note │/);
    expect(out).toMatch(/│ 1\s+│ Ada\s+│ NULL │/);
    const csv = show(withRow(['copy'], [['id,name\n'], ['1,"Lovelace, Ada"\n']], 'COPY 1'), 'COPY customers TO STDOUT WITH (FORMAT csv, HEADER)');
    expect(csv).toMatch(/│ id │ name\s+│/);
    expect(csv).toMatch(/│ 1\s+│ Lovelace, Ada │/);
    expect(show(withRow(['copy'], [['1\t2\n']], 'COPY 1'), 'COPY (SELECT 1, 2) TO STDOUT')).toMatch(/│ column1 │ column2 │/);
  });

  it('COPY FROM names its columns above the uploaded lines', () => {
    const out = show({
      ...base, command_tags: ['COPY 1'], rows: 1,
      upload: { messages: 1, bytes: 6, rows: 1, sha256: 'ef'.repeat(32), truncated: false, copies: [{ statement: 0, format: 'text', rows: 1, bytes: 6, data: '1\tAda\n', truncated: false, end: 'done' }] },
    }, 'COPY customers (id, name) FROM STDIN');
    expect(out).toContain('  columns: id, name');
  });
});

describe('sessions show: masking', () => {
  it('marks the masked columns with their rule and method, and counts the masked values', () => {
    const out = show({ ...base, command_tags: ['SELECT 2'], rows: 2, masked: { 'ssn (partial)': 2, 'detector:card_number': 1 } }, 'SELECT ssn, notes FROM customers', 5, {}, {
      action: 'run',
      masking: { columns: [{ statement: 0, index: 0, column: 'ssn', from: ['bank.customers.ssn'], rule: 'bank.customers.ssn', method: 'partial', derived: false }], detectors: ['card_number'] },
    });
    expect(out).toContain('masked columns: ssn ← bank.customers.ssn (partial)');
    expect(out).toContain('masked values: ssn (partial) ×2, detector:card_number ×1');
    expect(out).not.toContain('decision:');
  });

  it('says when masking was waived, and shows a refusal whole', () => {
    expect(show({ ...base, command_tags: ['SELECT 1'] }, 'SELECT ssn FROM customers', 5, {}, { action: 'run', masking: { waived_for: 'fraud' } })).toContain('masking: waived for group fraud');
    const refused = show({ ...base, outcome: 'refused', command_tags: [] }, "SELECT id FROM customers WHERE ssn LIKE '1%'", 5, {}, { action: 'refuse', code: '42501', message: 'hoop: statement refused', masking: { refused: 'predicate' } });
    expect(refused).toContain('decision: ');
    expect(refused).toContain('"refused":"predicate"');
  });
});

describe('sessions show: holds and approvals', () => {
  const ok = { ...base, command_tags: ['SELECT 100'], rows: 100 };
  const refused = { ...base, outcome: 'refused' as const, command_tags: [], error: { code: '42501', message: 'hoop: statement not run' } };
  const line = (out: string) => out.split('\n').find((l) => l.trimStart().startsWith('approval:'));

  it('a held statement approved by a reviewer: the request, the rule, who approved and how long it waited', () => {
    const out = show(ok, 'SELECT * FROM customers', 0, {}, { action: 'run', approval: { request: 'r-1234abcd', rule: 'full-export', outcome: 'approved', waited_ms: 12_345, approvers: ['apikey:bob'] } });
    expect(line(out)).toBe('  approval: r-1234abcd (rule full-export) approved by apikey:bob after 12.3 s');
  });

  it('two approvers, and a statement approved ahead of time', () => {
    const two = show(ok, 'SELECT * FROM customers', 0, {}, { action: 'run', approval: { request: 'r-00000001', rule: 'full-export', outcome: 'approved', waited_ms: 61_000, approvers: ['apikey:bob', 'apikey:dave'] } });
    expect(line(two)).toBe('  approval: r-00000001 (rule full-export) approved by apikey:bob, apikey:dave after 1m 1s');
    const ahead = show(ok, 'SELECT * FROM customers', 0, {}, { action: 'run', approval: { request: 'r-00000002', rule: 'full-export', approved_ahead: true, approvers: ['apikey:bob'] } });
    expect(line(ahead)).toBe('  approval: r-00000002 (rule full-export) approved ahead of time by apikey:bob');
  });

  it('refused holds: denied (by whom), expired, cancelled', () => {
    const hold = (outcome: string, extra: Record<string, unknown> = {}) => line(show(refused, 'SELECT * FROM customers', 0, {}, {
      action: 'refuse', code: '42501', message: 'hoop: statement not run', access: { request: 'r-deadbeef', rule: 'full-export', outcome, waited_ms: 2_000, approvers: [], ...extra },
    }));
    expect(hold('denied', { denied_by: 'apikey:bob' })).toBe('  approval: r-deadbeef (rule full-export) denied by apikey:bob after 2.0 s');
    expect(hold('expired')).toBe('  approval: r-deadbeef (rule full-export) expired after 2.0 s');
    expect(hold('cancelled')).toBe('  approval: r-deadbeef (rule full-export) cancelled after 2.0 s');
  });

  it('no approval line for a decision that names no request, nor for a control character smuggled in', () => {
    expect(line(show(ok, 'SELECT 1', 0, {}, { action: 'run', access: { rule: 'reads', reason: 'allowed' } }))).toBeUndefined();
    const sneaky = show(ok, 'SELECT 1', 0, {}, { action: 'run', approval: { request: 'r-1\u001b[31m', rule: 'x', outcome: 'approved', waited_ms: 1, approvers: [] } });
    expect(line(sneaky)).not.toContain('\u001b');
  });
});

describe('sessions show: the path a session came by', () => {
  it('a native-listener session says so, with its TLS version; a tunnel session\'s From line is as before', () => {
    const render = (start: Record<string, unknown>) => {
      const t = IOStreams.test();
      renderSession(t.io, {
        session: { id: 's1', connection: 'bank', subject: 'apikey:alice', email: null, groups: [], source_address: '192.0.2.7', client_application: 'etl', started_at: '2026-11-28T09:00:00.000Z', ended_at: null, statements: 0, end_reason: null, reason: null },
        events: [event(1, 'session.start', start)],
      }, { rows: 5 });
      return t.stdout();
    };
    expect(render({ path: 'native', tls: 'TLSv1.3' })).toContain('From:       192.0.2.7, etl via the native listener, TLSv1.3');
    expect(render({ path: 'native', tls: null })).toContain('From:       192.0.2.7, etl via the native listener, no TLS (loopback)');
    expect(render({ path: 'tunnel' })).toMatch(/From: {7}192\.0\.2\.7, etl\n/);
  });
});
