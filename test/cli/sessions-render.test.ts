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

function show(end: QueryEndData, statement: string, rows = 5): string {
  const t = IOStreams.test();
  renderSession(t.io, {
    session: { id: 's1', connection: 'bank', subject: 'apikey:alice', email: null, groups: [], source_address: null, client_application: null, started_at: '2026-11-28T09:00:00.000Z', ended_at: null, statements: 1, end_reason: null },
    events: [event(1, 'query.start', { query_id: 'q', protocol: 'simple', statement }), event(2, 'query.end', end as unknown as Record<string, unknown>)],
  }, { rows });
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
