/**
 * Commands against a real in-process gateway (real HTTP API, real SQLite store), run in memory
 * through the real commander program. Sessions are seeded through the store's own append path.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { Actor, UnsealedEvent } from '../../src/audit/event.js';
import { bankConnection, startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { runHoop } from './helpers.js';

let gw: TestGateway;
const sessionId = randomUUID();
const otherSession = randomUUID();
/** Two of alice's sessions that share their first 8 characters, for short-id lookups. */
const twinA = 'feedface-0000-4000-8000-00000000000a';
const twinB = 'feedface-1111-4000-8000-00000000000b';

const alice: Actor = { subject: 'apikey:alice', email: null, groups: ['analysts'], auth_method: 'api_key' };
const bob: Actor = { subject: 'apikey:bob', email: null, groups: ['dba'], auth_method: 'api_key' };

function event(session: string, actor: Actor, type: UnsealedEvent['type'], time: string, data: Record<string, unknown>): UnsealedEvent {
  return { id: randomUUID(), time, type, actor, source: { address: '127.0.0.1', application: 'psql' }, connection: 'bank', session_id: session, data };
}

beforeAll(async () => {
  gw = await startTestGateway({ upstream: inject('upstream') });
  const q1 = randomUUID();
  const q2 = randomUUID();
  const q3 = randomUUID();
  await gw.store.appendEvents([
    event(sessionId, alice, 'session.start', '2026-11-28T09:00:00.000Z', { user: 'alice', database: 'bank' }),
    event(sessionId, alice, 'query.start', '2026-11-28T09:00:01.000Z', {
      query_id: q1, protocol: 'extended', statement: 'SELECT id, name\n  FROM customers WHERE id = $1', parameters: ['42'],
    }),
    event(sessionId, alice, 'query.end', '2026-11-28T09:00:01.012Z', {
      query_id: q1, outcome: 'ok', error: null, command_tags: ['SELECT 7'], rows: 7, bytes: 120, duration_ms: 12.4,
      result: { sets: [{ columns: ['id', 'name'], rows: [['42', 'Ada Lovelace'], ['43', null], ['44', 'x\u001b[31mred']], tag: 'SELECT 7' }], truncated: false, sha256: 'ab'.repeat(32) },
    }),
    event(sessionId, alice, 'query.start', '2026-11-28T09:00:02.000Z', { query_id: q2, protocol: 'simple', statement: 'SELEC 1', parameters: [] }),
    event(sessionId, alice, 'query.end', '2026-11-28T09:00:02.003Z', {
      query_id: q2, outcome: 'error', error: { code: '42601', message: 'syntax error at or near "SELEC"' }, command_tags: [], rows: 0, bytes: 0, duration_ms: 3,
      result: { sets: [], truncated: false, sha256: 'cd'.repeat(32) },
    }),
    event(sessionId, alice, 'query.start', '2026-11-28T09:00:02.500Z', { query_id: q3, protocol: 'simple', statement: 'begin; select 1 as a; select 2 as b; select 3 as c', statements: ['begin', 'select 1 as a', 'select 2 as b', 'select 3 as c'], parameters: [] }),
    event(sessionId, alice, 'query.end', '2026-11-28T09:00:02.504Z', {
      query_id: q3, outcome: 'error', error: { code: '57014', message: 'canceling statement due to user request' }, command_tags: ['BEGIN', 'SELECT 1'], rows: 1, bytes: 22, duration_ms: 4,
      result: { sets: [{ columns: ['a'], rows: [['1']], tag: 'SELECT 1', statement: 1 }, { columns: ['b'], rows: [['2']], tag: null, statement: 2 }], truncated: false, sha256: 'ef'.repeat(32) },
    }),
    event(sessionId, alice, 'query.start', '2026-11-28T09:00:03.000Z', { query_id: randomUUID(), protocol: 'simple', statement: 'SELECT pg_sleep(100)' }),
    event(sessionId, alice, 'protocol.error', '2026-11-28T09:04:00.000Z', { message: 'frame of 99999999999 bytes over the limit' }),
    event(sessionId, alice, 'session.end', '2026-11-28T09:05:00.000Z', { reason: 'client closed', error: null }),
    event(otherSession, bob, 'session.start', '2026-11-28T10:00:00.000Z', { user: 'bob', database: 'bank' }),
    event(twinA, alice, 'session.start', '2026-11-20T10:00:00.000Z', { user: 'alice', database: 'bank' }),
    event(twinB, alice, 'session.start', '2026-11-20T11:00:00.000Z', { user: 'alice', database: 'bank' }),
  ]);
}, 60_000);

afterAll(async () => {
  await gw?.close();
});

const as = (who: string, extra: Record<string, string> = {}) => ({ env: { HOOP_GATEWAY: gw.url, HOOP_TOKEN: gw.keys[who]!, ...extra } });

describe('hoop connections', () => {
  it('prints tab-separated rows into a pipe', async () => {
    const r = await runHoop(['connections'], as('alice'));
    expect(r).toMatchObject({ code: 0, stderr: '' });
    expect(r.stdout).toBe('bank\tpostgres\thoop_test\tallowed\tanalysts,dba\tnone\toff\n');
  });

  it('prints an aligned table with a header on a terminal, and says so when access is denied', async () => {
    const r = await runHoop(['connections', '--no-color'], { ...as('carol'), tty: true });
    expect(r.code).toBe(0);
    const [header, row] = r.stdout.trimEnd().split('\n');
    expect(header).toMatch(/^NAME\s+TYPE\s+DATABASE\s+ACCESS\s+GROUPS\s+APPROVAL\s+MASKING$/);
    expect(row).toMatch(/^bank\s+postgres\s+hoop_test\s+denied\s+analysts,dba\s+none\s+off$/);
  });

  it('--json prints the API array', async () => {
    const r = await runHoop(['--json', 'connections'], as('alice'));
    expect(JSON.parse(r.stdout)).toEqual([{ name: 'bank', type: 'postgres', database: 'hoop_test', access: ['analysts', 'dba'], allowed: true, requires_approval: false, requires_reason: false, masking: { enabled: false, exempt: false, columns: 0, detectors: [] }, approval: { holds: false, rules: [] }, grant: { required: false, request: null, active_until: null, max_duration_ms: null }, postgres_listen: null, agent: null }]);
  });

  it('MASKING says on, exempt (for a caller in an exempt group) or off; --json carries the field', async () => {
    const upstream = inject('upstream');
    const masked = await startTestGateway({
      upstream,
      connections: [
        bankConnection(upstream, { masking: { columns: [{ column: 'public.customers.ssn', type: 'ssn', method: 'partial' }, { column: '*.*.email', type: 'email', method: 'redact' }], detectors: ['ssn'], exempt: ['dba'] } }),
        bankConnection(upstream, { name: 'ledger' }),
      ],
    });
    try {
      const env = (who: string) => ({ env: { HOOP_GATEWAY: masked.url, HOOP_TOKEN: masked.keys[who]! } });
      expect((await runHoop(['connections'], env('alice'))).stdout.split('\n').map((l) => l.split('\t').at(-1))).toEqual(['on', 'off', '']);
      expect((await runHoop(['connections'], env('bob'))).stdout.split('\n')[0]!.split('\t').at(-1)).toBe('exempt');
      const json = JSON.parse((await runHoop(['--json', 'connections'], env('alice'))).stdout) as { masking: unknown }[];
      expect(json.map((c) => c.masking)).toEqual([
        { enabled: true, exempt: false, columns: 2, detectors: ['ssn'] },
        { enabled: false, exempt: false, columns: 0, detectors: [] },
      ]);
      const tty = await runHoop(['connections', '--no-color'], { ...env('bob'), tty: true });
      expect(tty.stdout.trimEnd().split('\n')[1]).toMatch(/^bank\s+postgres\s+hoop_test\s+allowed\s+analysts,dba\s+none\s+exempt$/);
    } finally {
      await masked.close();
    }
  });

  it('APPROVAL counts the access rules that apply to the caller and says when one may hold; --json carries them', async () => {
    const upstream = inject('upstream');
    const ruled = await startTestGateway({
      upstream,
      connections: [
        bankConnection(upstream, {
          approval: {
            approvers: ['dba'],
            rules: [
              { name: 'analysts-read-only', groups: ['analysts'], when: { kind: ['insert', 'update', 'delete'] }, action: 'deny' },
              { name: 'ddl', when: { kind: ['ddl'] }, action: 'deny' },
              { name: 'full-export', groups: ['analysts'], when: { kind: ['select'], tables: ['customers'], where: false }, action: 'require_approval' },
            ],
          },
        }),
        bankConnection(upstream, { name: 'ledger' }),
      ],
    });
    try {
      const env = (who: string) => ({ env: { HOOP_GATEWAY: ruled.url, HOOP_TOKEN: ruled.keys[who]! } });
      const approvalColumn = (stdout: string) => stdout.trimEnd().split('\n').map((l) => l.split('\t')[5]);
      expect(approvalColumn((await runHoop(['connections'], env('alice'))).stdout)).toEqual(['3 rules, may hold', 'none']);
      expect(approvalColumn((await runHoop(['connections'], env('bob'))).stdout)).toEqual(['1 rule', 'none']);
      const json = JSON.parse((await runHoop(['--json', 'connections'], env('alice'))).stdout) as { approval: unknown; requires_approval: boolean }[];
      expect(json.map((c) => [c.requires_approval, c.approval])).toEqual([
        [true, { holds: true, rules: [{ name: 'analysts-read-only', action: 'deny' }, { name: 'ddl', action: 'deny' }, { name: 'full-export', action: 'require_approval' }] }],
        [false, { holds: false, rules: [] }],
      ]);
      const tty = await runHoop(['connections', '--no-color'], { ...env('alice'), tty: true });
      expect(tty.stdout.trimEnd().split('\n')[1]).toMatch(/^bank\s+postgres\s+hoop_test\s+allowed\s+analysts,dba\s+3 rules, may hold\s+off$/);
    } finally {
      await ruled.close();
    }
  });

  it('a rejected key exits 4 with one line and a hint about HOOP_TOKEN', async () => {
    const r = await runHoop(['connections'], { env: { HOOP_GATEWAY: gw.url, HOOP_TOKEN: 'hoop_not-a-real-key' } });
    expect(r.code).toBe(4);
    const lines = r.stderr.trimEnd().split('\n');
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatch(/^hoop: the gateway rejected the credential: /);
    expect(lines[1]).toBe('Check the key or token in HOOP_TOKEN.');
  });
});

describe('hoop sessions', () => {
  it('lists the caller\'s own sessions', async () => {
    const r = await runHoop(['sessions'], as('alice'));
    expect(r.code).toBe(0);
    const rows = r.stdout.trimEnd().split('\n').map((l) => l.split('\t'));
    expect(rows.map((r) => r[0])).toEqual([sessionId, twinB, twinA]);
    expect(rows[0]).toEqual([sessionId, 'apikey:alice', 'bank', '2026-11-28T09:00:00.000Z', '5m 0s', '4', 'psql @ 127.0.0.1', 'client closed', '']);
  });

  it('on an 80-column terminal: a header, short ids, and every column readable', async () => {
    const r = await runHoop(['sessions'], { ...as('alice'), tty: true, columns: 80, now: new Date('2026-11-28T11:00:00Z') });
    const lines = r.stdout.replace(/\u001b\[[0-9;]*m/g, '').trimEnd().split('\n');
    // Who, where, when, how long and how much stay whole; the client and end reason make room.
    expect(lines[0]).toBe("ID        USER          CONNECTION  STARTED      DURATION  STATEMENTS");
    expect(lines[1]).toBe(`${sessionId.slice(0, 8)}  apikey:alice  bank        2 hours ago  5m 0s     4`);
    for (const line of lines) expect([...line].length).toBeLessThanOrEqual(80);
    const wide = await runHoop(['sessions'], { ...as('alice'), tty: true, columns: 140, now: new Date('2026-11-28T11:00:00Z') });
    expect(wide.stdout.replace(/\u001b\[[0-9;]*m/g, '').split('\n')[1]).toMatch(/ {2}4 {11}psql @ 127\.0\.0\.1 {2}client closed$/);
  });

  it('an auditor sees everyone, filtered by --user, --connection and time range', async () => {
    const all = await runHoop(['sessions', '--json'], as('carol'));
    expect((JSON.parse(all.stdout) as { id: string }[]).map((s) => s.id)).toEqual([otherSession, sessionId, twinB, twinA]);
    const bobs = await runHoop(['sessions', '--json', '--user', 'apikey:bob', '--connection', 'bank'], as('carol'));
    expect((JSON.parse(bobs.stdout) as { id: string }[]).map((s) => s.id)).toEqual([otherSession]);
    const window = await runHoop(['sessions', '--json', '--since', '2026-11-28T08:00:00Z', '--until', '2026-11-28T09:30:00Z'], as('carol'));
    expect((JSON.parse(window.stdout) as { id: string }[]).map((s) => s.id)).toEqual([sessionId]);
    const recent = await runHoop(['sessions', '--since', '2h'], { ...as('carol'), now: new Date('2026-11-28T11:00:00Z') });
    expect(recent.stdout.split('\n')[0]?.split('\t')[0]).toBe(otherSession);
  });

  it('--limit caps the list and says how to see more', async () => {
    const r = await runHoop(['sessions', '--limit', '1'], as('carol'));
    expect(r.stdout.trimEnd().split('\n')).toHaveLength(1);
    expect(r.stderr).toContain('Showing the first 1');
  });

  it('says so on stderr when nothing matches, and exits 0', async () => {
    const r = await runHoop(['sessions', '--since', '2030-01-01'], as('alice'));
    expect(r).toEqual({ code: 0, stdout: '', stderr: 'No sessions match.\n' });
  });

  it('refuses --since after --until as a usage error', async () => {
    const r = await runHoop(['sessions', '--since', '2026-11-29', '--until', '2026-11-28'], as('alice'));
    expect(r.code).toBe(2);
  });
});

describe('hoop sessions show', () => {
  it('shows who, when, where, then each statement with timing, outcome, rows, parameters and data', async () => {
    const r = await runHoop(['sessions', 'show', sessionId], as('alice'));
    expect(r.code).toBe(0);
    const out = r.stdout;
    expect(out).toContain(`Session ${sessionId}`);
    expect(out).toContain('Who:        apikey:alice (analysts)');
    expect(out).toContain('From:       127.0.0.1, psql');
    expect(out).toContain('When:       2026-11-28 09:00:00Z → 2026-11-28 09:05:00Z (5m 0s, client closed)');
    expect(out).toContain('Statements: 4');
    expect(out).toContain('#1  2026-11-28 09:00:01Z  12 ms  ok  7 rows  SELECT 7  extended');
    expect(out).toContain('  SELECT id, name\n    FROM customers WHERE id = $1');
    expect(out).toContain("  parameters: $1 = '42'");
    expect(out).toMatch(/│ id\s+│ name\s+│/);
    expect(out).toMatch(/│ 42 │ Ada Lovelace\s+│/);
    expect(out).toMatch(/│ 43 │ NULL\s+│/);
    expect(out).toContain('… 4 more rows');
    expect(out).toContain('#2  2026-11-28 09:00:02Z  3 ms  error  0 rows');
    expect(out).toContain('  error: syntax error at or near "SELEC" (42601)');
    // Several statements in one Query: each with what became of it, and its own result set.
    const third = out.slice(out.indexOf('#3 '), out.indexOf('#4 '));
    expect(third.split('\n').map((l) => l.trimEnd())).toEqual([
      '#3  2026-11-28 09:00:02Z  4 ms  error  1 row  BEGIN, SELECT 1',
      '  [1] begin',
      '      → BEGIN',
      '  [2] select 1 as a',
      '      → SELECT 1',
      '    ┌───┐', '    │ a │', '    ├───┤', '    │ 1 │', '    └───┘',
      '  [3] select 2 as b',
      '      → error (below)',
      '    ┌───┐', '    │ b │', '    ├───┤', '    │ 2 │', '    └───┘',
      '  [4] select 3 as c',
      '      → not run: an earlier statement failed',
      '  error: canceling statement due to user request (57014)',
      '', '',
    ]);
    expect(out).toContain('#4  2026-11-28 09:00:03Z  no end recorded');
    expect(out).toContain('Other events\n  2026-11-28 09:04:00Z  protocol.error  {"message":"frame of 99999999999 bytes over the limit"}');
    // Returned data is hostile input: no raw escape sequences reach the terminal.
    expect(out).not.toContain('\u001b');
  });

  it('--rows 0 leaves the data out; --json prints the raw session and events', async () => {
    const r = await runHoop(['sessions', 'show', sessionId, '--rows', '0'], as('alice'));
    expect(r.stdout).not.toContain('│');
    const j = await runHoop(['sessions', 'show', sessionId, '--json'], as('alice'));
    const parsed = JSON.parse(j.stdout) as { session: { id: string }; events: { type: string; hash: string }[] };
    expect(parsed.session.id).toBe(sessionId);
    expect(parsed.events.map((e) => e.type)).toEqual(['session.start', 'query.start', 'query.end', 'query.start', 'query.end', 'query.start', 'query.end', 'query.start', 'protocol.error', 'session.end']);
    expect(parsed.events[0]?.hash).toMatch(/^[0-9a-f]{64}$/);
  });

  it('on a terminal, pages through HOOP_PAGER (PAGER, else less); empty or cat turns it off', async () => {
    const { mkdtempSync, readFileSync, rmSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const dir = mkdtempSync(join(tmpdir(), 'hoop-pager-'));
    try {
      const paged = join(dir, 'paged.txt');
      const r = await runHoop(['sessions', 'show', sessionId], { ...as('alice', { HOOP_PAGER: `cat > '${paged}'`, NO_COLOR: '1' }), tty: true });
      expect(r.code).toBe(0);
      expect(r.stdout).toBe('');
      expect(readFileSync(paged, 'utf8')).toContain(`Session ${sessionId}`);
      const off = await runHoop(['sessions', 'show', sessionId], { ...as('alice', { HOOP_PAGER: '', PAGER: `cat > '${paged}-2'`, NO_COLOR: '1' }), tty: true });
      expect(off.stdout).toContain(`Session ${sessionId}`);
      // Into a pipe there is no pager, whatever PAGER says.
      const piped = await runHoop(['sessions', 'show', sessionId], as('alice', { PAGER: `cat > '${paged}-3'` }));
      expect(piped.stdout).toContain(`Session ${sessionId}`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('takes the short id the list shows on a terminal, and says when one is ambiguous or unknown', async () => {
    const r = await runHoop(['sessions', 'show', sessionId.slice(0, 8)], as('alice'));
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`Session ${sessionId}`);
    const twins = await runHoop(['sessions', 'show', 'feedface'], as('alice'));
    expect(twins.code).toBe(2);
    expect(twins.stderr).toContain(`session id feedface is ambiguous: ${twinB}, ${twinA}`);
    expect((await runHoop(['sessions', 'show', 'FEEDFACE-0'], as('alice'))).stdout).toContain(`Session ${twinA}`);
    // Another user's session is not found by its prefix either.
    const other = await runHoop(['sessions', 'show', otherSession.slice(0, 8)], as('alice'));
    expect(other.code).toBe(1);
    expect(other.stderr).toContain(`no session starts with ${otherSession.slice(0, 8)}`);
    expect((await runHoop(['sessions', 'show', 'zz'], as('alice'))).code).toBe(2);
  });

  it('someone else\'s session is not found (exit 1, one line)', async () => {
    const r = await runHoop(['sessions', 'show', otherSession], as('alice'));
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(`hoop: no session ${otherSession}\n`);
  });
});

describe('hoop connect refusals, before any port is opened', () => {
  it('an unknown connection exits 1 naming the ones you may use', async () => {
    const r = await runHoop(['connect', 'nope'], as('alice'));
    expect(r.code).toBe(1);
    expect(r.stderr).toBe("hoop: no connection named 'nope'\nConnections you may use: bank.\n");
  });

  it('a connection outside your groups exits 5', async () => {
    const r = await runHoop(['connect', 'bank'], as('carol'));
    expect(r.code).toBe(5);
    expect(r.stderr.split('\n')[0]).toBe("hoop: you may not use connection 'bank' (access: analysts, dba)");
  });
});
