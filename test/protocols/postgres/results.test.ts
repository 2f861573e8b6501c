/**
 * StatementRun accounting of what the client receives beside rows (notices, notifications,
 * function results) and what it uploads (COPY FROM STDIN): kept, counted and hashed, apart from
 * the returned data. Messages are the server's real bytes where the server can make them.
 */
import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { StatementStart } from '../../../src/protocols/postgres/engine.js';
import { cstring, frame, MessageType, noticeResponse } from '../../../src/protocols/postgres/messages.js';
import { decodeNotification, notificationRecord } from '../../../src/protocols/postgres/notices.js';
import { StatementRun } from '../../../src/protocols/postgres/results.js';
import { bodyOf, bytesOf, RawUpstream, type Received } from './raw-upstream.js';

const upstream = inject('upstream');

const START: StatementStart = { queryId: 'q1', protocol: 'simple', statement: 'x', statementName: null, portal: null, parameters: [] };
const sha = (...parts: Buffer[]) => parts.reduce((h, p) => h.update(p), createHash('sha256')).digest('hex');

/** Feeds what the server sent to a run the way the session does (server → client messages). */
function account(run: StatementRun, messages: Received[]): void {
  for (const m of messages) {
    const { start, bodyStart, end } = m.frame;
    const body = bodyOf(m);
    switch (m.type) {
      case 'T':
        run.describe([...Array(body.readInt16BE(0))].map((_, i) => ({ name: `c${i}`, tableOid: 0, column: 0, typeOid: 25, format: 0 })));
        break;
      case 'D':
        run.dataRow(m.buffer, start, bodyStart, end);
        break;
      case 'd':
        run.copyData(m.buffer, start, bodyStart, end);
        break;
      case 'H':
        run.copyOut(body[0] === 1);
        break;
      case 'C':
        run.commandComplete(body.toString('utf8', 0, body.length - 1));
        break;
      case 'N':
        run.notice(m.buffer, start, bodyStart, end);
        break;
      case 'A':
        run.notification(m.buffer, start, bodyStart, end);
        break;
      case 'E':
        run.fail({ code: 'XX000', message: 'error' });
        break;
    }
  }
}

/** A client CopyData message inside a larger buffer (as the session sees it: offsets into a chunk). */
function copyData(data: Buffer | string): { buffer: Buffer; start: number; bodyStart: number; end: number } {
  const msg = frame(MessageType.CopyData, Buffer.isBuffer(data) ? data : Buffer.from(data, 'utf8'));
  const buffer = Buffer.concat([Buffer.from('junk'), msg, Buffer.from('more')]);
  return { buffer, start: 4, bodyStart: 9, end: 4 + msg.length };
}

function upload(run: StatementRun, data: Buffer | string): void {
  const m = copyData(data);
  run.uploaded(m.buffer, m.start, m.bodyStart, m.end);
}

describe('notices and notifications under a statement (real server messages)', () => {
  let raw: RawUpstream;
  beforeAll(async () => {
    raw = await RawUpstream.open(upstream);
    await raw.query('LISTEN hoop_results');
  });
  afterAll(() => raw?.close());

  it('keeps each decoded, in order with the rows, hashed apart from the result', async () => {
    const replies = await raw.query(`
      CREATE OR REPLACE FUNCTION pg_temp.noisy(i int) RETURNS int LANGUAGE plpgsql AS $$
        BEGIN RAISE NOTICE 'row %', i USING DETAIL = 'detail ' || i, HINT = 'hint'; RETURN i; END $$;
      SELECT pg_temp.noisy(g) FROM generate_series(1, 2) g;
      DO $$ BEGIN RAISE WARNING 'careful' USING ERRCODE = '01000'; END $$;
      NOTIFY hoop_results, 'pay ''load'''`);
    const run = new StatementRun(START, 1 << 20);
    account(run, replies);
    const end = run.finish();
    const rows = replies.filter((m) => m.type === 'D');
    const sent = replies.filter((m) => m.type === 'N' || m.type === 'A');
    expect(sent.map((m) => m.type)).toEqual(['N', 'N', 'N', 'A']);
    // The result proves the rows alone, exactly as before.
    expect(end.result.sha256).toBe(sha(...rows.map(bytesOf)));
    expect(end.bytes).toBe(rows.reduce((n, m) => n + bytesOf(m).length, 0));
    expect(end.rows).toBe(2);
    const pid = bodyOf(sent[3]!).readInt32BE(0);
    expect(end.messages).toEqual({
      notices: 3,
      notifications: 1,
      bytes: sent.reduce((n, m) => n + bytesOf(m).length, 0),
      truncated: false,
      sha256: sha(...sent.map(bytesOf)),
      kept: [
        // The NOTICE of each row comes before that row: `after` counts rows sent before it.
        { kind: 'notice', statement: 1, after: 0, severity: 'NOTICE', code: '00000', message: 'row 1', detail: 'detail 1', hint: 'hint' },
        { kind: 'notice', statement: 1, after: 1, severity: 'NOTICE', code: '00000', message: 'row 2', detail: 'detail 2', hint: 'hint' },
        { kind: 'notice', statement: 2, after: 2, severity: 'WARNING', code: '01000', message: 'careful' },
        { kind: 'notification', statement: 4, after: 2, pid, channel: 'hoop_results', payload: "pay 'load'" },
      ],
    });
    expect(end.upload).toBeUndefined();
  });

  it('a notification outside any statement decodes for a record of its own', async () => {
    const replies = await raw.query(`NOTIFY hoop_results, 'idle'`);
    const a = replies.find((m) => m.type === 'A')!;
    expect(decodeNotification(bodyOf(a))).toMatchObject({ channel: 'hoop_results', payload: 'idle' });
    expect(notificationRecord(a.buffer, a.frame.start, a.frame.bodyStart, a.frame.end)).toEqual({
      pid: bodyOf(a).readInt32BE(0),
      channel: 'hoop_results',
      payload: 'idle',
      bytes: bytesOf(a).length,
      sha256: sha(bytesOf(a)),
    });
  });

  it('counts binary COPY tuples in the server\'s own binary COPY data, split at every offset', async () => {
    const replies = await raw.query(`COPY (SELECT g, CASE WHEN g % 3 = 0 THEN NULL ELSE repeat('v', g) END, ''::text
      FROM generate_series(1, 40) g) TO STDOUT (FORMAT binary)`);
    const data = Buffer.concat(replies.filter((m) => m.type === 'd').map(bodyOf));
    for (let k = 0; k <= data.length; k += 7) {
      const run = new StatementRun(START, 1 << 20);
      run.copyIn(true);
      upload(run, data.subarray(0, k));
      upload(run, data.subarray(k, k + 3));
      upload(run, data.subarray(k + 3));
      run.copyDone();
      const end = run.finish();
      expect(end.upload!.rows).toBe(40);
      expect(end.upload!.copies[0]!.data).toBe('\\x' + data.toString('hex'));
      expect(end.upload!.sha256).toBe(sha(data));
    }
  });
});

describe('notices and the payload budget', () => {
  const notice = noticeResponse({ code: '00000', message: 'm'.repeat(40) });

  it('share it with rows: kept lists are prefixes, counts and hashes cover everything', () => {
    // Each notice costs its body: two fit, the third does not, nor the row after it.
    const run = new StatementRun(START, 2 * (notice.length - 5) + 10);
    const buffer = Buffer.concat([notice, notice, notice]);
    for (let i = 0; i < 3; i++) run.notice(buffer, i * notice.length, i * notice.length + 5, (i + 1) * notice.length);
    const row = frame(MessageType.DataRow, Buffer.from([0, 1, 0, 0, 0, 1]), Buffer.from('x'));
    run.dataRow(row, 0, 5, row.length);
    const end = run.finish();
    expect(end.messages).toMatchObject({ notices: 3, truncated: true, sha256: sha(buffer), bytes: buffer.length });
    expect(end.messages!.kept).toHaveLength(2);
    expect(end.result).toMatchObject({ truncated: true, sets: [] });
    expect(end.rows).toBe(1);
  });

  it('a statement without notices, notifications or uploads has no such fields', () => {
    const end = new StatementRun(START, 100).finish();
    expect(Object.keys(end).sort()).toEqual(['bytes', 'commandTags', 'durationMs', 'error', 'outcome', 'queryId', 'result', 'rows']);
  });

  it('is not touched by a notice after the run ended', () => {
    const run = new StatementRun(START, 100);
    run.finish();
    expect(() => run.notice(notice, 0, 5, notice.length)).not.toThrow();
  });
});

describe('function results', () => {
  const response = (value: Buffer | null) => {
    const len = Buffer.alloc(4);
    len.writeInt32BE(value ? value.length : -1);
    return frame(MessageType.FunctionCallResponse, len, value ?? Buffer.alloc(0));
  };

  it('kept like a row (binary as hex, text as text, NULL as null), counted, hashed with the result', () => {
    for (const [binary, value, kept] of [[true, Buffer.from([0, 0, 0, 3]), '\\x00000003'], [false, Buffer.from('3'), '3'], [true, null, null]] as const) {
      const run = new StatementRun(START, 100);
      run.functionCall('lo_open', binary);
      const v = response(value);
      run.functionResult(v, 0, 5, v.length);
      expect(run.finish()).toMatchObject({
        rows: 1,
        bytes: v.length,
        result: { sets: [{ columns: ['lo_open'], rows: [[kept]], tag: null, statement: 0 }], truncated: false, sha256: sha(v) },
      });
    }
  });

  it('past the payload limit, counted and hashed only', () => {
    const run = new StatementRun(START, 3);
    run.functionCall('loread', true);
    const v = response(Buffer.from('four'));
    run.functionResult(v, 0, 5, v.length);
    expect(run.finish()).toMatchObject({ rows: 1, result: { sets: [{ columns: ['loread'], rows: [] }], truncated: true, sha256: sha(v) } });
  });
});

describe('COPY FROM STDIN uploads', () => {
  it('keeps text data whole across messages, counts lines and data bytes, hashes the data as a file', () => {
    const run = new StatementRun(START, 1 << 20);
    run.copyIn(false);
    const text = '1\tzoë\n2\t€uro\n3\tlast';
    const bytes = Buffer.from(text, 'utf8');
    // Split inside the multi-byte characters.
    const cuts = [0, 5, 13, 16, bytes.length];
    for (let i = 0; i + 1 < cuts.length; i++) upload(run, bytes.subarray(cuts[i], cuts[i + 1]));
    run.copyDone();
    run.commandComplete('COPY 3');
    const end = run.finish();
    expect(end.upload).toEqual({
      messages: 4,
      bytes: bytes.length,
      rows: 3, // the unterminated last line is a row
      sha256: sha(bytes),
      truncated: false,
      copies: [{ statement: 0, format: 'text', rows: 3, bytes: bytes.length, data: text, truncated: false, end: 'done' }],
    });
    // Returned data stays apart: nothing came back but the tag.
    expect(end.result).toEqual({ sets: [], truncated: false, sha256: sha() });
    expect(end).toMatchObject({ rows: 3, bytes: 0, commandTags: ['COPY 3'] });
  });

  it('does not count the \\. end-of-data line as a row, even split across messages', () => {
    for (const pieces of [['a\nb\n\\.\n'], ['a\nb\n\\', '.\n'], ['a\nb\n', '\\', '.', '\r\n'], ['a\n\\.x\nb\n']]) {
      const run = new StatementRun(START, 100);
      run.copyIn(false);
      for (const p of pieces) upload(run, p);
      const rows = run.finish().upload!.rows;
      expect(rows, JSON.stringify(pieces)).toBe(pieces.join('').includes('\\.x') ? 3 : 2);
    }
  });

  it('keeps a prefix up to the payload limit; the hash and counts cover everything', () => {
    const run = new StatementRun(START, 10);
    run.copyIn(false);
    upload(run, '1234\n');
    upload(run, '5678\n');
    upload(run, '9\n');
    const end = run.finish();
    expect(end.upload).toMatchObject({ messages: 3, bytes: 12, rows: 3, truncated: true, sha256: sha(Buffer.from('1234\n5678\n9\n')) });
    expect(end.upload!.copies[0]).toMatchObject({ data: '1234\n5678\n', truncated: true, end: null });
  });

  it('records the client\'s CopyFail message', () => {
    const run = new StatementRun(START, 100);
    run.copyIn(false);
    upload(run, '1\n');
    const fail = frame(MessageType.CopyFail, cstring('aborted by user'));
    run.copyFail(fail, 0, 5, fail.length);
    expect(run.finish().upload!.copies[0]).toMatchObject({ end: 'failed', failure: 'aborted by user', data: '1\n' });
    const long = new StatementRun(START, 100);
    long.copyIn(false);
    const huge = frame(MessageType.CopyFail, cstring('x'.repeat(5000)));
    long.copyFail(huge, 0, 5, huge.length);
    expect(long.finish().upload!.copies[0]!.failure).toBe('x'.repeat(1000) + '…');
  });

  it('keeps each COPY of a multi-statement Query apart, under its statement', () => {
    const run = new StatementRun(START, 100);
    run.copyIn(false);
    upload(run, 'a\n');
    run.copyDone();
    run.commandComplete('COPY 1');
    run.copyIn(true);
    upload(run, Buffer.from('PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0\0\x01\0\0\0\x01z\xff\xff', 'latin1'));
    run.copyDone();
    run.commandComplete('COPY 1');
    const end = run.finish();
    expect(end.upload).toMatchObject({ rows: 2, messages: 2 });
    expect(end.upload!.copies.map((c) => [c.statement, c.format, c.rows, c.end])).toEqual([[0, 'text', 1, 'done'], [1, 'binary', 1, 'done']]);
  });

  it('binary COPY: skips a header extension, counts tuples of no fields and NULLs, stops at the trailer', () => {
    const int16 = (n: number) => Buffer.from([(n >> 8) & 0xff, n & 0xff]);
    const int32 = (n: number) => { const b = Buffer.alloc(4); b.writeInt32BE(n); return b; };
    const data = Buffer.concat([
      Buffer.from('PGCOPY\n\xff\r\n\0', 'latin1'), int32(0), int32(3), Buffer.from([0xff, 0xff, 0xff]),
      int16(0),
      int16(2), int32(-1), int32(2), Buffer.from([0xff, 0xff]),
      int16(-1),
      int16(1), int32(0), // after the trailer: not counted
    ]);
    for (let k = 0; k <= data.length; k++) {
      const run = new StatementRun(START, 100);
      run.copyIn(true);
      upload(run, data.subarray(0, k));
      upload(run, data.subarray(k));
      expect(run.finish().upload!.rows).toBe(2);
    }
  });

  it('binary COPY: stops counting at data that is not binary COPY', () => {
    const run = new StatementRun(START, 100);
    run.copyIn(true);
    upload(run, 'not binary\n');
    expect(run.finish().upload).toMatchObject({ rows: 0, copies: [{ format: 'binary', data: '\\x' + Buffer.from('not binary\n').toString('hex') }] });
  });

  it('CopyData after the run ended (the server stopped the COPY) is ignored, not a crash', () => {
    const run = new StatementRun(START, 100);
    run.copyIn(false);
    run.finish();
    expect(() => upload(run, 'late\n')).not.toThrow();
  });
});
