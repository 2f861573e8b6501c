/**
 * Fastpath FunctionCall records: the OID table must match the server's pg_proc (the engine runs
 * only what it can name), and a call is recorded as the SQL it amounts to, with its arguments.
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { ProtocolError } from '../../../src/errors.js';
import { describeFunctionCall, FASTPATH_FUNCTIONS } from '../../../src/protocols/postgres/fastpath.js';
import { decodeFunctionCall as decodeFunctionCallMessage } from '../../../src/protocols/postgres/messages.js';
import { frame, MessageType } from '../../../src/protocols/postgres/messages.js';
import { StatementRun } from '../../../src/protocols/postgres/results.js';
import { upstreamConfig } from './engine-harness.js';
import { bodyOf, bytesOf, RawUpstream } from './raw-upstream.js';

const upstream = inject('upstream');

/** The functions libpq's fe-lobj.c looks up by name in pg_catalog (lo_initialize). */
const LIBPQ_LO_FUNCTIONS = ['lo_open', 'lo_close', 'lo_creat', 'lo_create', 'lo_unlink', 'lo_lseek', 'lo_lseek64', 'lo_tell', 'lo_tell64', 'lo_truncate', 'lo_truncate64', 'loread', 'lowrite'];

type Arg = { int4: number } | { int8: bigint } | { bytes: Buffer } | { text: string } | null;

/** A FunctionCall as libpq builds it: one format code per argument, binary result. */
function functionCall(oid: number, args: Arg[], resultFormat = 1): Buffer {
  const head = Buffer.alloc(6);
  head.writeUInt32BE(oid, 0);
  head.writeInt16BE(args.length, 4);
  const parts: Buffer[] = [head];
  const formats = Buffer.alloc(2 * args.length);
  args.forEach((a, i) => formats.writeInt16BE(a && 'text' in a ? 0 : 1, 2 * i));
  const count = Buffer.alloc(2);
  count.writeInt16BE(args.length);
  parts.push(formats, count);
  for (const a of args) {
    let value: Buffer | null;
    if (a === null) value = null;
    else if ('int4' in a) (value = Buffer.alloc(4)).writeInt32BE(a.int4);
    else if ('int8' in a) (value = Buffer.alloc(8)).writeBigInt64BE(a.int8);
    else if ('bytes' in a) value = a.bytes;
    else value = Buffer.from(a.text, 'utf8');
    const len = Buffer.alloc(4);
    len.writeInt32BE(value ? value.length : -1);
    parts.push(len, value ?? Buffer.alloc(0));
  }
  const rf = Buffer.alloc(2);
  rf.writeInt16BE(resultFormat);
  parts.push(rf);
  return frame(MessageType.FunctionCall, ...parts);
}

const body = (message: Buffer) => message.subarray(5);

describe('the fastpath function table', () => {
  let db: pg.Client;
  beforeAll(async () => {
    db = new pg.Client(upstreamConfig(upstream));
    await db.connect();
  });
  afterAll(async () => {
    await db?.end();
  });

  it("matches pg_proc on the server: OID, name, argument and result types, in pg_catalog", async () => {
    const { rows } = await db.query<{ oid: number; proname: string; args: string; argtypes: string; rettype: number; ns: string }>(
      `SELECT p.oid::int AS oid, proname, pg_get_function_identity_arguments(p.oid) AS args, proargtypes::text AS argtypes,
              prorettype::int AS rettype, pronamespace::regnamespace::text AS ns
         FROM pg_proc p WHERE proname LIKE 'lo\\_%' OR proname IN ('loread', 'lowrite') ORDER BY p.oid`,
    );
    const TYPE_NAMES: Record<number, string> = { 20: 'bigint', 23: 'integer', 26: 'oid', 17: 'bytea' };
    for (const [oid, fn] of FASTPATH_FUNCTIONS) {
      const row = rows.find((r) => r.oid === oid);
      expect(row, `oid ${oid} (${fn.name})`).toBeDefined();
      expect({ oid, name: row!.proname, args: row!.args, argtypes: row!.argtypes, rettype: row!.rettype, ns: row!.ns }).toEqual({
        oid,
        name: fn.name,
        args: fn.argTypes.map((t) => TYPE_NAMES[t]).join(', '),
        argtypes: fn.argTypes.join(' '),
        rettype: fn.resultType,
        ns: 'pg_catalog',
      });
    }
  });

  it('holds every function libpq calls for its large-object API, by the OID the server gives it', async () => {
    const { rows } = await db.query<{ oid: number; proname: string }>(
      `SELECT oid::int AS oid, proname FROM pg_catalog.pg_proc WHERE proname = ANY($1)
          AND pronamespace = (SELECT oid FROM pg_catalog.pg_namespace WHERE nspname = 'pg_catalog')`,
      [LIBPQ_LO_FUNCTIONS],
    );
    expect(rows.map((r) => r.proname).sort()).toEqual([...LIBPQ_LO_FUNCTIONS].sort()); // one each: no overloads
    for (const r of rows) expect(FASTPATH_FUNCTIONS.get(r.oid)?.name).toBe(r.proname);
    expect(FASTPATH_FUNCTIONS.size).toBe(LIBPQ_LO_FUNCTIONS.length);
  });
});

describe('describeFunctionCall', () => {
  it('names a known builtin and decodes its binary arguments by their types', () => {
    const open = decodeFunctionCallMessage(body(functionCall(952, [{ int4: 16385 }, { int4: 0x60000 }])));
    expect(open.resultFormat).toBe(1);
    expect(describeFunctionCall(open.oid, open.formats, open.values)).toMatchObject({
      name: 'lo_open',
      statement: 'SELECT pg_catalog.lo_open($1, $2)',
      parameters: [16385, 0x60000],
    });
    const write = decodeFunctionCallMessage(body(functionCall(955, [{ int4: 0 }, { bytes: Buffer.from('hi\0there') }])));
    expect(describeFunctionCall(write.oid, write.formats, write.values)).toMatchObject({
      name: 'lowrite',
      statement: 'SELECT pg_catalog.lowrite($1, $2)',
      parameters: [0, '\\x6869007468657265'],
    });
    const seek = decodeFunctionCallMessage(body(functionCall(3170, [{ int4: 0 }, { int8: 2n ** 40n }, { int4: 0 }])));
    expect(describeFunctionCall(seek.oid, seek.formats, seek.values).parameters).toEqual([0, String(2n ** 40n), 0]);
    // lo_unlink(oid): an OID above 2^31 is unsigned.
    const unlink = decodeFunctionCallMessage(body(functionCall(964, [{ int4: -1 }])));
    expect(describeFunctionCall(unlink.oid, unlink.formats, unlink.values).parameters).toEqual([4294967295]);
  });

  it('keeps text arguments as sent, NULL as null, and malformed binary ones as hex', () => {
    const call = decodeFunctionCallMessage(body(functionCall(954, [{ text: '3' }, { bytes: Buffer.from([1, 2]) }], 0)));
    expect(call.resultFormat).toBe(0);
    expect(describeFunctionCall(call.oid, call.formats, call.values).parameters).toEqual(['3', '\\x0102']);
    const none = decodeFunctionCallMessage(body(functionCall(953, [null])));
    expect(describeFunctionCall(none.oid, none.formats, none.values).parameters).toEqual([null]);
  });

  it('says when the OID is not a known builtin (the engine refuses such a call)', () => {
    const call = decodeFunctionCallMessage(body(functionCall(12345, [{ int4: 7 }, { text: 'x' }])));
    expect(describeFunctionCall(call.oid, call.formats, call.values)).toEqual({
      name: null,
      statement: '-- FunctionCall oid 12345 (not a known builtin)',
      parameters: ['\\x00000007', 'x'],
      function: null,
    });
  });

  it('applies the 0/1/n format code rule, and rejects a truncated message', () => {
    // No format codes: every argument is text.
    const noCodes = Buffer.concat([Buffer.from([0, 0, 3, 0xb8, 0, 0, 0, 1, 0, 0, 0, 1]), Buffer.from('5'), Buffer.from([0, 1])]);
    expect(decodeFunctionCallMessage(noCodes)).toMatchObject({ oid: 952, formats: [0], resultFormat: 1 });
    const full = body(functionCall(952, [{ int4: 1 }, { int4: 2 }]));
    for (let n = 0; n < full.length; n++) expect(() => decodeFunctionCallMessage(full.subarray(0, n))).toThrow(ProtocolError);
  });
});

describe('libpq large-object calls against the server', () => {
  let raw: RawUpstream;
  beforeAll(async () => {
    raw = await RawUpstream.open(upstream);
  });
  afterAll(() => raw?.close());

  /** Sends the call; returns its record (as the session will build it) and the run's end. */
  async function call(oid: number, args: Arg[]) {
    const message = functionCall(oid, args);
    const decoded = decodeFunctionCallMessage(body(message));
    const described = describeFunctionCall(decoded.oid, decoded.formats, decoded.values);
    const run = new StatementRun({ queryId: 'q', protocol: 'simple', statement: described.statement, statementName: null, portal: null, parameters: described.parameters }, 1024);
    run.functionCall(described.name ?? 'result', decoded.resultFormat === 1);
    const replies = await raw.exchange(message);
    for (const m of replies) {
      if (m.type === 'V') run.functionResult(m.buffer, m.frame.start, m.frame.bodyStart, m.frame.end);
      if (m.type === 'E') run.fail({ code: 'x', message: bodyOf(m).toString('latin1') });
    }
    const v = replies.find((m) => m.type === 'V');
    return { described, end: run.finish(), response: v ? bytesOf(v) : null };
  }

  it('every call a libpq lo_import/lo_export makes is named, runs, and its result is kept and hashed', async () => {
    await raw.query('BEGIN');
    const creat = await call(957, [{ int4: 0x60000 }]);
    expect(creat.described.statement).toBe('SELECT pg_catalog.lo_creat($1)');
    const loid = creat.response!.readUInt32BE(9);
    expect(loid).toBeGreaterThan(0);
    expect(creat.end).toMatchObject({ outcome: 'ok', rows: 1, result: { sets: [{ columns: ['lo_creat'], rows: [[creat.response!.subarray(9).toString('hex').replace(/^/, '\\x')]] }], truncated: false } });
    const { createHash } = await import('node:crypto');
    expect(creat.end.result.sha256).toBe(createHash('sha256').update(creat.response!).digest('hex'));
    expect(creat.end.bytes).toBe(creat.response!.length);

    const open = await call(952, [{ int4: loid }, { int4: 0x60000 }]);
    expect(open.described.parameters).toEqual([loid, 0x60000]);
    const fd = open.response!.readInt32BE(9);
    const write = await call(955, [{ int4: fd }, { bytes: Buffer.from('large object payload') }]);
    expect(write.end.result.sets[0]!.rows).toEqual([['\\x00000014']]); // 20 bytes written
    expect((await call(3170, [{ int4: fd }, { int8: 0n }, { int4: 0 }])).end.result.sets[0]!.rows).toEqual([['\\x0000000000000000']]);
    const read = await call(954, [{ int4: fd }, { int4: 100 }]);
    expect(read.end.result.sets[0]).toMatchObject({ columns: ['loread'], rows: [['\\x' + Buffer.from('large object payload').toString('hex')]] });
    expect((await call(3171, [{ int4: fd }])).end.result.sets[0]!.rows).toEqual([['\\x0000000000000014']]);
    expect((await call(958, [{ int4: fd }])).end.outcome).toBe('ok');
    expect((await call(956, [{ int4: fd }, { int4: 5 }, { int4: 0 }])).end.outcome).toBe('ok');
    expect((await call(3172, [{ int4: fd }, { int8: 5n }])).end.outcome).toBe('ok');
    expect((await call(1004, [{ int4: fd }, { int4: 2 }])).end.outcome).toBe('ok');
    expect((await call(953, [{ int4: fd }])).end.outcome).toBe('ok');
    expect((await call(964, [{ int4: loid }])).end.outcome).toBe('ok');
    const created = await call(715, [{ int4: 0 }]);
    expect(created.end.outcome).toBe('ok');
    await raw.query('ROLLBACK');
  });

  it('a call with the wrong number of arguments is refused by the server before it runs', async () => {
    const bad = await call(952, [{ int4: 1 }]);
    expect(bad.end.outcome).toBe('error');
    expect(bad.end.error!.message).toMatch(/requires 2/);
  });
});
