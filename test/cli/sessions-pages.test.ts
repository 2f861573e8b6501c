/**
 * `hoop sessions show` prints a session as its pages arrive (SessionRenderer, SessionJsonWriter):
 * however the events are split into pages, the output is what the whole session printed at once
 * gives — statements in order with their ends, other events at the end — and --json is the
 * document JSON.stringify makes of the whole session.
 */
import { describe, expect, it } from 'vitest';
import type { AuditEvent } from '../../src/audit/event.js';
import type { SessionSummary } from '../../src/api/types.js';
import { SessionJsonWriter, SessionRenderer, renderSession } from '../../src/cli/commands/sessions.js';
import { IOStreams } from '../../src/cli/iostreams.js';

function event(seq: number, type: AuditEvent['type'], data: Record<string, unknown>): AuditEvent {
  return {
    seq, id: `e${seq}`, time: '2026-11-28T09:00:00.000Z', type, actor: { subject: 'apikey:alice', email: null, groups: [], auth_method: 'api_key' }, source: null,
    connection: 'bank', session_id: 's1', data, prev_hash: '', hash: '',
  };
}

const end = (q: string, v: string) => ({
  query_id: q, outcome: 'ok', error: null, command_tags: ['SELECT 1'], rows: 1, bytes: 1, duration_ms: 1,
  result: { sets: [{ columns: ['v'], rows: [[v]], tag: 'SELECT 1', statement: 0 }], truncated: false, sha256: 'ab'.repeat(32) },
});

const summary: SessionSummary = {
  id: 's1', connection: 'bank', subject: 'apikey:alice', email: null, groups: [], source_address: null, client_application: 'psql',
  started_at: '2026-11-28T09:00:00.000Z', ended_at: '2026-11-28T09:00:01.000Z', statements: 3, end_reason: 'client closed', reason: 'INC-7',
};

const events: AuditEvent[] = [
  event(1, 'session.start', { reason: 'INC-7' }),
  event(2, 'query.start', { query_id: 'a', protocol: 'simple', statement: 'select 1' }),
  event(3, 'query.end', end('a', 'one')),
  event(4, 'query.start', { query_id: 'b', protocol: 'extended', statement: 'select 2' }),
  event(5, 'protocol.error', { message: 'odd' }),
  event(6, 'query.start', { query_id: 'c', protocol: 'simple', statement: 'select 3' }), // pipelined: b's end comes later
  event(7, 'query.end', end('c', 'three')),
  event(8, 'query.end', end('b', 'two')),
  event(9, 'session.end', { reason: 'client closed' }),
];

function paged(split: number[]): string {
  const t = IOStreams.test();
  const pages: AuditEvent[][] = [];
  let from = 0;
  for (const at of [...split, events.length]) (pages.push(events.slice(from, at)), (from = at));
  const r = new SessionRenderer(t.io, { session: summary, events: pages[0]!, next: pages.length > 1 ? pages[0]!.at(-1)!.seq : null }, { rows: 5 });
  for (const p of pages.slice(1)) r.add(p);
  r.finish();
  return t.stdout();
}

describe('sessions show page by page', () => {
  it('prints the same whatever the pages', () => {
    const t = IOStreams.test();
    renderSession(t.io, { session: summary, events }, { rows: 5 });
    const whole = t.stdout();
    expect(whole.indexOf('select 1')).toBeLessThan(whole.indexOf('select 2'));
    expect(whole.indexOf('two')).toBeLessThan(whole.indexOf('select 3'));
    expect(whole).toContain('Other events');
    for (const split of [[1], [2], [3, 5], [4, 6, 7], [1, 2, 3, 4, 5, 6, 7, 8]]) expect(paged(split), String(split)).toBe(whole);
  });

  it('says how the session ended at the end when that came on a later page', () => {
    const withError = events.map((e) => (e.type === 'session.end' ? { ...e, data: { ...e.data, error: 'the server went away' } } : e));
    const t = IOStreams.test();
    const r = new SessionRenderer(t.io, { session: summary, events: withError.slice(0, 4), next: 4 }, { rows: 5 });
    r.add(withError.slice(4));
    r.finish();
    const out = t.stdout();
    expect(out.indexOf('the server went away')).toBeGreaterThan(out.indexOf('select 3'));
    expect(out).toContain('Statements: 3');
  });

  it('--json writes what JSON.stringify makes of the whole session, compact or indented', () => {
    for (const tty of [false, true]) {
      const t = IOStreams.test({ tty });
      const w = new SessionJsonWriter(t.io, summary);
      w.add(events.slice(0, 3));
      w.add([]);
      w.add(events.slice(3));
      w.end();
      const doc = { session: summary, events, next: null };
      expect(t.stdout()).toBe(`${tty ? JSON.stringify(doc, null, 2) : JSON.stringify(doc)}\n`);
      const e = IOStreams.test({ tty });
      const empty = new SessionJsonWriter(e.io, summary);
      empty.end();
      expect(e.stdout()).toBe(`${tty ? JSON.stringify({ session: summary, events: [], next: null }, null, 2) : JSON.stringify({ session: summary, events: [], next: null })}\n`);
    }
  });
});
