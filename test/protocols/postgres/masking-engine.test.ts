/**
 * The engine's side of masking, against a real PostgreSQL: COPY TO STDOUT rewritten in CSV,
 * text with its own delimiter and binary (each compared byte for byte with what the server
 * itself writes for the masked value), the session's scrubber over notices, errors,
 * notifications and ParameterStatus, a plan's message-value redaction, the statement index
 * columns() learns, and the descriptions it gets for rows of the extended protocol.
 */
import { createHash } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, beforeEach, describe, expect, inject, test } from 'vitest';
import { RUN, valueTransform, type ColumnContext, type CopyOptions, type ResultColumn, type RunPlan, type StatementPlan, type StatementStart } from '../../../src/protocols/engine.js';
import { columnMasker } from '../../../src/policy/masking/methods.js';
import { createTestDatabase } from '../../helpers/postgres.js';
import { errorsIn, fe, noticesIn, notificationsIn, rawDirect, type BackendMessage, type RawClient } from '../../helpers/raw-client.js';
import { startHarness, until, upstreamConfig, type Harness } from './engine-harness.js';

const shared = inject('upstream');
let db: Awaited<ReturnType<typeof createTestDatabase>>;
let h: Harness;
let direct: pg.Client;
let viaEngine: RawClient;
let straight: RawClient;

const SSN = /\d{3}-\d{2}-\d{4}/g;
/** A stand-in for the detectors: SSN shapes become `***-**-****`, each hit tallied. */
function scrubText(text: string, tally: (label: string) => void): string {
  return text.replace(SSN, () => {
    tally('detector:ssn');
    return '***-**-****';
  });
}

/** What columns() was asked, per call. */
let asked: { columns: ResultColumn[]; statement: number }[] = [];
/** The plan for the next statements: mask the column named `ssn` (or COPY column 1) with `mask`. */
function maskPlan(mask: Buffer | null, extra: Partial<RunPlan> = {}): RunPlan {
  return {
    action: 'run',
    columns: (columns: ResultColumn[], ctx: ColumnContext) => {
      asked.push({ columns, statement: ctx.statement });
      return columns.map((c, i) => (c.name === 'ssn' || (c.tableOid === 0 && c.typeOid === 0 && i === 1)
        ? valueTransform(() => {
          ctx.tally('ssn:redact');
          return mask;
        })
        : null));
    },
    ...extra,
  };
}
let planFor: (s: StatementStart) => StatementPlan = () => RUN;

const copyDefaults: CopyOptions = { format: 'text', delimiter: '\t', null: '\\N', quote: '"', escape: '"', header: false };

beforeAll(async () => {
  db = await createTestDatabase(shared, 'maskeng');
  h = await startHarness({ upstream: upstreamConfig(db.info), scrubText });
  h.plan = async (s) => planFor(s);
  direct = new pg.Client({ host: db.info.host, port: db.info.port, user: db.info.users.trust, database: db.info.database });
  await direct.connect();
  await direct.query(`CREATE TABLE me_people (id int, ssn text, note text);
    INSERT INTO me_people VALUES
      (1, '123-45-6789', 'plain'),
      (2, '987-65-4321', E'multi\\nline "quoted"; with; delims\\r\\n'),
      (3, NULL, NULL),
      (4, '111-22-3333', ''),
      (5, '222-33-4444', E'tab\\there|pipe \\\\ back'),
      (6, '333-44-5555', 'NIL');
    CREATE TABLE me_unique (ssn text UNIQUE); INSERT INTO me_unique VALUES ('555-66-7777');`);
  viaEngine = await rawDirect('127.0.0.1', h.port, { application: 'mask-engine' });
  straight = await rawDirect(db.info.host, db.info.port, { application: 'mask-direct', user: db.info.users.trust, database: db.info.database });
});
afterAll(async () => {
  await viaEngine?.end();
  await straight?.end();
  await direct?.end();
  await h?.close();
  await db?.drop();
});
beforeEach(() => {
  asked = [];
  planFor = () => RUN;
});

const copyData = (ms: BackendMessage[]) => ms.filter((m) => m.type === 'd').map((m) => m.body);
const lastEnd = (pred: (sql: string) => boolean) => until(() => [...h.ends()].reverse().find((e) => pred(h.starts().find((s) => s.queryId === e.queryId)?.statement ?? '')));

/** COPY of `select` through the engine (masking `ssn` with `mask`) and, straight to the server,
 *  of `expected` (the same rows with the masked value written by the server itself). */
async function copyBoth(select: string, expected: string, options: string, copy: CopyOptions, mask: Buffer | null) {
  planFor = () => maskPlan(mask, { copyOptions: [copy] });
  const got = await viaEngine.query(`COPY (${select}) TO STDOUT ${options}`);
  const want = await straight.query(`COPY (${expected}) TO STDOUT ${options}`);
  return { got: got.messages, want: want.messages };
}

/**
 * A query whose result the engine cuts off, on a session of its own: the cut-off sends the
 * server a CancelRequest, which may arrive after the statement ended and cancel the next one.
 */
async function cutOff(sql: string): Promise<BackendMessage[]> {
  const c = await rawDirect('127.0.0.1', h.port, { application: 'mask-cutoff' });
  try {
    return (await c.query(sql)).messages;
  } finally {
    await c.end();
  }
}

const ORDERED = 'SELECT id, ssn, note FROM me_people ORDER BY id';
const masked = (value: string) => `SELECT id, CASE WHEN ssn IS NULL THEN NULL ELSE ${value} END AS ssn, note FROM me_people ORDER BY id`;

describe('COPY TO STDOUT', () => {
  test('PostgreSQL sends one CopyData per row in CSV, even when a quoted value holds newlines', async () => {
    const r = await straight.query(`COPY (${ORDERED}) TO STDOUT (FORMAT csv, HEADER)`);
    const data = copyData(r.messages);
    expect(data).toHaveLength(7); // the header, then six rows
    expect(data[2]!.toString()).toBe('2,987-65-4321,"multi\nline ""quoted""; with; delims\r\n"\n');
  });

  test('CSV with its own delimiter, quote, escape, NULL and a header: the masked column rewritten, the rest byte-identical', async () => {
    const options = `(FORMAT csv, HEADER, DELIMITER ';', QUOTE '''', ESCAPE '\\', NULL 'NIL')`;
    const copy: CopyOptions = { format: 'csv', delimiter: ';', quote: "'", escape: '\\', null: 'NIL', header: true };
    const { got, want } = await copyBoth(ORDERED, masked(`'****'`), options, copy, Buffer.from('****'));
    expect(errorsIn(got)).toEqual([]);
    expect(copyData(got)).toEqual(copyData(want));
    expect(copyData(got)[0]!.toString()).toBe('id;ssn;note\n');
    const end = await lastEnd((s) => s.includes("NULL 'NIL'"));
    expect(end.masked).toEqual({ 'ssn:redact': 5 });
    expect(end.result.sets[0]!.rows[1]).toEqual(['1;****;plain\n']);
  });

  test('CSV: a masked value that needs quoting is quoted as the server would (delimiter, quote, newline, the NULL string, empty)', async () => {
    for (const [value, sql] of [['a;\'b"\nc\\', `E'a;\\'b"\\nc\\\\'`], ['NIL', `'NIL'`]] as const) {
      const options = `(FORMAT csv, DELIMITER ';', QUOTE '''', ESCAPE '\\', NULL 'NIL')`;
      const copy: CopyOptions = { format: 'csv', delimiter: ';', quote: "'", escape: '\\', null: 'NIL', header: false };
      const { got, want } = await copyBoth(ORDERED, masked(sql), options, copy, Buffer.from(value));
      expect(copyData(got)).toEqual(copyData(want));
    }
    const { got, want } = await copyBoth(ORDERED, masked(`''`), '(FORMAT csv)', { ...copyDefaults, format: 'csv', delimiter: ',', null: '' }, Buffer.alloc(0));
    expect(copyData(got)).toEqual(copyData(want)); // "" (empty) apart from the NULL, which is nothing
  });

  test('CSV with FORCE_QUOTE keeps quoting the masked column; a NULL mask writes the NULL string', async () => {
    const options = '(FORMAT csv, FORCE_QUOTE (ssn))';
    const copy: CopyOptions = { ...copyDefaults, format: 'csv', delimiter: ',', null: '' };
    let r = await copyBoth(ORDERED, masked(`'****'`), options, copy, Buffer.from('****'));
    expect(copyData(r.got)).toEqual(copyData(r.want));
    r = await copyBoth(ORDERED, masked('NULL'), '(FORMAT csv)', copy, null);
    expect(copyData(r.got)).toEqual(copyData(r.want));
  });

  test('text format with its own delimiter and NULL string: values escaped as the server escapes them', async () => {
    const options = `(DELIMITER '|', NULL 'nil')`;
    const copy: CopyOptions = { ...copyDefaults, delimiter: '|', null: 'nil' };
    const { got, want } = await copyBoth(ORDERED, masked(`E'x|y\\tz\\\\w'`), options, copy, Buffer.from('x|y\tz\\w'));
    expect(errorsIn(got)).toEqual([]);
    expect(copyData(got)).toEqual(copyData(want));
    // A masked value equal to the NULL string would read back as NULL: its first byte goes as an octal escape.
    const again = await copyBoth(ORDERED, masked(`'nil'`), options, copy, Buffer.from('nil'));
    expect(copyData(again.got)[0]!.toString()).toBe('1|\\156il|plain\n');
  });

  test('binary COPY: the masked column rewritten, header and trailer intact', async () => {
    const { got, want } = await copyBoth(ORDERED, masked(`'****'::text`), '(FORMAT binary)', { ...copyDefaults, format: 'binary' }, Buffer.from('****'));
    expect(Buffer.concat(copyData(got))).toEqual(Buffer.concat(copyData(want)));
  });

  test('rows that do not read as the plan says (CSV under text options) stop the result with an error', async () => {
    planFor = () => maskPlan(Buffer.from('****'), { copyOptions: [copyDefaults] });
    const r = await cutOff(`COPY (${ORDERED}) TO STDOUT (FORMAT csv)`);
    expect(errorsIn(r)[0]?.M).toMatch(/cannot be masked row by row/);
    expect(copyData(r).join('')).not.toMatch(SSN);
    planFor = () => maskPlan(Buffer.from('****'), { copyOptions: [{ ...copyDefaults, format: 'binary' }] });
    const mismatch = await cutOff(`COPY (${ORDERED}) TO STDOUT`);
    expect(errorsIn(mismatch)[0]?.M).toMatch(/not in the format the statement asks for/);
    expect(copyData(mismatch)).toEqual([]);
  });

  test('without COPY options, CSV is still stopped and the default text format still masked', async () => {
    planFor = () => maskPlan(Buffer.from('****'));
    const csv = await cutOff(`COPY (${ORDERED}) TO STDOUT (FORMAT csv)`);
    expect(errorsIn(csv)[0]?.M).toMatch(/cannot be masked; use the default text format or binary/);
    const text = await viaEngine.query(`COPY (${ORDERED}) TO STDOUT`);
    const want = await straight.query(`COPY (${masked(`'****'`)}) TO STDOUT`);
    expect(copyData(text.messages)).toEqual(copyData(want.messages));
  });
});

describe('masked rows written into the chunk as it goes out', () => {
  test('rows that grow (a long mask over short values) outgrow the first buffer: every row, in order, and the record hashes exactly what the client got', async () => {
    const mask = 'X'.repeat(40);
    planFor = () => maskPlan(Buffer.from(mask));
    const sql = `SELECT g AS id, CASE WHEN g % 7 = 0 THEN NULL ELSE 'a' END AS ssn, g::text AS note FROM generate_series(1, 20000) g -- grow`;
    const r = await viaEngine.query(sql);
    expect(errorsIn(r.messages)).toEqual([]);
    const rows = r.messages.filter((m) => m.type === 'D');
    expect(rows.map((m) => m.text)).toEqual(Array.from({ length: 20000 }, (_, i) => [String(i + 1), (i + 1) % 7 === 0 ? null : mask, String(i + 1)]));
    const end = await lastEnd((s) => s.endsWith('-- grow'));
    expect(end.rows).toBe(20000);
    expect(end.masked).toEqual({ 'ssn:redact': 20000 - Math.floor(20000 / 7) });
    const hash = createHash('sha256');
    for (const m of rows) hash.update(m.raw);
    expect(end.result.sha256).toBe(hash.digest('hex'));
  });
});

describe('masked rows rewritten in place, in the chunk they arrived in', () => {
  test('shrunk, grown and unchanged rows in the same chunks, then a notice and an unmasked result: the client gets what the server sends for the masked values, and the record hashes exactly that', async () => {
    planFor = () => maskPlan(Buffer.from('XY'));
    // ssn is NULL (the row passes unchanged, held by the record where it lies), '' or 'a' (the
    // mask grows it), or longer (it shrinks: what follows moves down in the chunk).
    const ssn = `CASE g % 5 WHEN 0 THEN NULL WHEN 1 THEN '' WHEN 2 THEN 'a' ELSE repeat('s', g % 50) END`;
    const rest = `; DO $$BEGIN RAISE NOTICE 'between'; END$$; SELECT g AS id, repeat('u', g % 30) AS v FROM generate_series(1, 5000) g`;
    const sql = (value: string) => `SELECT g AS id, ${value} AS ssn, repeat('n', g % 40) AS note FROM generate_series(1, 30000) g${rest}`;
    const r = await viaEngine.query(`${sql(ssn)} -- in place`);
    const want = await straight.query(sql(`CASE WHEN ${ssn} IS NULL THEN NULL ELSE 'XY' END`));
    expect(errorsIn(r.messages)).toEqual([]);
    const rows = r.messages.filter((m) => m.type === 'D');
    expect(rows).toHaveLength(35000);
    expect(Buffer.concat(rows.map((m) => m.raw)).equals(Buffer.concat(want.messages.filter((m) => m.type === 'D').map((m) => m.raw)))).toBe(true);
    expect(noticesIn(r.messages).map((n) => n.M)).toEqual(['between']);
    const end = await lastEnd((s) => s.endsWith('-- in place'));
    expect(end.rows).toBe(35000);
    expect(end.masked).toEqual({ 'ssn:redact': 24000 });
    const hash = createHash('sha256');
    for (const m of rows) hash.update(m.raw);
    expect(end.result.sha256).toBe(hash.digest('hex'));
  });
});

describe('batched replacements (hash tokens settled a chunk of rows at a time)', () => {
  const key = Buffer.from('a hash key for the engine tests');
  const hash = columnMasker({ column: 'x', type: 'other', method: 'hash' }, 25, false, key);
  /** The plan: the column named `ssn` gets the real hash mask (its write, which queues tokens). */
  function hashPlan(extra: Partial<RunPlan> = {}): RunPlan {
    return { action: 'run', columns: (columns: ResultColumn[]) => columns.map((c) => (c.name === 'ssn' ? hash.write : null)), ...extra };
  }
  const digest = (rows: BackendMessage[]) => {
    const h = createHash('sha256');
    for (const m of rows) h.update(m.raw);
    return h.digest('hex');
  };

  test('every row carries the token of its own value, in order; the record hashes and keeps what the client got', async () => {
    planFor = () => hashPlan();
    const sql = `SELECT g AS id, g || '-45-6789' AS ssn FROM generate_series(1, 20000) g; SELECT 'after' AS tail -- tokens`;
    const r = await viaEngine.query(sql);
    expect(errorsIn(r.messages)).toEqual([]);
    const rows = r.messages.filter((m) => m.type === 'D');
    expect(rows).toHaveLength(20001);
    const clear = (g: number) => `${g}-45-6789`;
    expect(rows.slice(0, 20000).map((m) => m.text)).toEqual(Array.from({ length: 20000 }, (_, i) => [String(i + 1), hash.mask(Buffer.from(clear(i + 1)), 0)!.toString()]));
    expect(rows[20000]!.text).toEqual(['after']);
    expect(r.messages.filter((m) => m.type === 'C').map((m) => m.tag)).toEqual(['SELECT 20000', 'SELECT 1']);
    const end = await lastEnd((s) => s.endsWith('-- tokens'));
    expect(end.result.sha256).toBe(digest(rows));
    const kept = end.result.sets[0]!.rows;
    expect(kept.length).toBeGreaterThan(0);
    expect(kept).toEqual(rows.slice(0, kept.length).map((m) => m.text));
  });

  test('a row cap cuts the result after exactly its rows, the queued ones written before the error', async () => {
    planFor = () => hashPlan({ rowCap: 1500 });
    const r = await viaEngine.query(`SELECT g AS id, 'v' || g AS ssn FROM generate_series(1, 50000) g -- capped`);
    const rows = r.messages.filter((m) => m.type === 'D');
    expect(rows).toHaveLength(1500);
    const types = r.messages.map((m) => m.type).filter((t) => t === 'D' || t === 'E');
    expect(types.lastIndexOf('D')).toBeLessThan(types.indexOf('E'));
    expect(errorsIn(r.messages).map((e) => e.C)).toEqual(['54000']);
    const end = await lastEnd((s) => s.endsWith('-- capped'));
    expect(end.result.sha256).toBe(digest(rows));
  });

  test('COPY OUT rows with tokens: each row the token of its value, and the record hashes what the client got', async () => {
    planFor = () => ({ action: 'run', columns: (columns: ResultColumn[]) => columns.map((_, i) => (i === 1 ? hash.write : null)), copyOptions: [copyDefaults] });
    const r = await viaEngine.query(`COPY (SELECT g, 'acct-' || g FROM generate_series(1, 5000) g) TO STDOUT -- copy tokens`);
    expect(errorsIn(r.messages)).toEqual([]);
    const data = r.messages.filter((m) => m.type === 'd');
    expect(data).toHaveLength(5000);
    expect(data.map((m) => m.raw.subarray(5).toString())).toEqual(Array.from({ length: 5000 }, (_, i) => `${i + 1}\t${hash.mask(Buffer.from(`acct-${i + 1}`), 0)!.toString()}\n`));
    const end = await lastEnd((s) => s.endsWith('-- copy tokens'));
    expect(end.result.sha256).toBe(digest(data));
  });
});

describe("a row cap's cancel", () => {
  test('never stops the statement after the capped one (the next statement waits until the server took the cancel)', async () => {
    for (let i = 0; i < 40; i++) {
      planFor = (s) => (s.statement.includes('-- cap me') ? { action: 'run', rowCap: 10 } : RUN);
      const capped = await viaEngine.query(`SELECT g FROM generate_series(1, 3000) g -- cap me ${i}`);
      expect(errorsIn(capped.messages).map((e) => e.C)).toEqual(['54000']);
      const next = await viaEngine.query(`SELECT ${i} AS n`);
      expect(errorsIn(next.messages), `pair ${i}`).toEqual([]);
      expect(next.messages.find((m) => m.type === 'D')?.text).toEqual([String(i)]);
    }
  });
});

describe('statement indexes of a multi-statement Query', () => {
  test('each result set and the COPY get their own statement index and COPY options', async () => {
    planFor = () => maskPlan(Buffer.from('****'), { copyOptions: [null, null, { ...copyDefaults, format: 'csv', delimiter: ',', null: '' }, null] });
    const r = await viaEngine.query(`SELECT 1 AS one; SET work_mem = '4MB'; COPY (${ORDERED}) TO STDOUT (FORMAT csv); SELECT ssn FROM me_people WHERE id = 1`);
    expect(errorsIn(r.messages)).toEqual([]);
    expect(asked.map((a) => a.statement)).toEqual([0, 2, 3]);
    const want = await straight.query(`COPY (${masked(`'****'`)}) TO STDOUT (FORMAT csv)`);
    expect(copyData(r.messages)).toEqual(copyData(want.messages));
    expect(r.messages.filter((m) => m.type === 'D').map((m) => m.text)).toEqual([['1'], ['****']]);
  });
});

describe('descriptions of extended-protocol rows', () => {
  test('a statement described earlier: its fields with the Bind result formats', async () => {
    planFor = () => maskPlan(Buffer.from('****'));
    await viaEngine.exchange([fe.parse('me_described', 'SELECT id, ssn FROM me_people WHERE id = 1'), fe.describe('S', 'me_described'), fe.sync()]);
    asked = [];
    const r = await viaEngine.exchange([fe.bind('', 'me_described', [], { resultFormats: [1] }), fe.execute(), fe.sync()]);
    const table = (await direct.query(`SELECT 'me_people'::regclass::oid::int AS oid`)).rows[0].oid as number;
    expect(asked).toHaveLength(1);
    expect(asked[0]!.columns).toEqual([
      { name: 'id', tableOid: table, column: 1, typeOid: 23, format: 1 },
      { name: 'ssn', tableOid: table, column: 2, typeOid: 25, format: 1 },
    ]);
    expect(r.messages.find((m) => m.type === 'D')!.values![1]!.toString()).toBe('****');
  });

  test('a portal described: its own fields and formats; a portal described nowhere: unknown columns with the Bind formats', async () => {
    planFor = () => maskPlan(Buffer.from('****'));
    await viaEngine.exchange([fe.parse('', 'SELECT id, ssn FROM me_people WHERE id = 1'), fe.bind('', '', [], { resultFormats: [0, 1] }), fe.describe('P'), fe.execute(), fe.sync()]);
    expect(asked[0]!.columns.map((c) => [c.typeOid, c.format])).toEqual([[23, 0], [25, 1]]);
    asked = [];
    const r = await viaEngine.exchange([fe.parse('', 'SELECT id, ssn FROM me_people WHERE id = 1'), fe.bind('', '', [], { resultFormats: [1] }), fe.execute(), fe.sync()]);
    expect(asked[0]!.columns.map((c) => [c.tableOid, c.typeOid, c.format])).toEqual([[0, 0, 1], [0, 0, 1]]);
    expect(r.messages.find((m) => m.type === 'D')!.values![1]!.toString()).toBe('****');
  });
});

describe('the scrubber over message texts', () => {
  test('RAISE NOTICE and an error: scrubbed for the client and the record, counted in query.end', async () => {
    const notice = await viaEngine.query(`DO $$BEGIN RAISE NOTICE 'ssn 123-45-6789 seen'; END$$`);
    expect(noticesIn(notice.messages)[0]?.M).toBe('ssn ***-**-**** seen');
    const n = await lastEnd((s) => s.includes('RAISE NOTICE'));
    expect(n.masked).toEqual({ 'detector:ssn': 1 });
    expect(JSON.stringify((n as { messages?: unknown }).messages)).not.toMatch(SSN);

    const error = await viaEngine.query(`DO $$BEGIN RAISE EXCEPTION 'bad %', '123-45-6789' USING DETAIL = 'was 987-65-4321', HINT = 'plain'; END$$`);
    expect(errorsIn(error.messages)[0]).toMatchObject({ M: 'bad ***-**-****', D: 'was ***-**-****', H: 'plain', C: 'P0001' });
    const e = await lastEnd((s) => s.includes('RAISE EXCEPTION'));
    expect(e.error?.message).toBe('bad ***-**-****');
    expect(e.masked).toEqual({ 'detector:ssn': 2 });
  });

  test('a message with nothing to scrub is forwarded as the server sent it', async () => {
    const sql = `DO $$BEGIN RAISE NOTICE 'nothing here'; END$$`;
    const got = await viaEngine.query(sql);
    const want = await straight.query(sql);
    expect(got.messages.find((m) => m.type === 'N')!.raw).toEqual(want.messages.find((m) => m.type === 'N')!.raw);
    expect((await lastEnd((s) => s.includes('nothing here'))).masked).toBeUndefined();
  });

  test('pg_notify in a statement, and a notification to an idle LISTENing session', async () => {
    await viaEngine.query('LISTEN me_channel');
    const own = await viaEngine.query(`SELECT pg_notify('me_channel', 'own 123-45-6789')`);
    expect(notificationsIn(own.messages)[0]?.payload).toBe('own ***-**-****');
    const end = await lastEnd((s) => s.includes('pg_notify'));
    expect(end.masked).toEqual({ 'detector:ssn': 1 });
    expect(JSON.stringify((end as { messages?: unknown }).messages)).toContain('own ***-**-****');

    const from = viaEngine.messages.length;
    await direct.query(`NOTIFY me_channel, 'idle 987-65-4321'`);
    const idle = await viaEngine.waitFor(from, (ms) => ms.some((m) => m.type === 'A'), 'a notification');
    expect(notificationsIn(idle.messages)[0]?.payload).toBe('idle ***-**-****');
    const record = await until(() => h.events.find((e) => e.type === 'unattributed' && (e.data as { payload?: string }).payload?.startsWith('idle')));
    expect(record.data).toMatchObject({ kind: 'notification', channel: 'me_channel', payload: 'idle ***-**-****', masked: { 'detector:ssn': 1 } });
    await viaEngine.query('UNLISTEN me_channel');
  });

  test('SET application_name: the ParameterStatus the client gets back is scrubbed', async () => {
    const r = await viaEngine.query(`SET application_name = 'app 123-45-6789'`);
    expect(r.messages.find((m) => m.type === 'S')?.parameter).toEqual({ name: 'application_name', value: 'app ***-**-****' });
    expect((await lastEnd((s) => s.includes('application_name'))).masked).toEqual({ 'detector:ssn': 1 });
    // Extended protocol: the ParameterStatus comes at the Sync; in an implicit transaction the SET is still open then.
    const x = await viaEngine.exchange([fe.run(`SET application_name = 'x 111-22-3333'`), fe.sync()]);
    expect(x.messages.find((m) => m.type === 'S')?.parameter?.value).toBe('x ***-**-****');
    expect((await lastEnd((s) => s.includes('x 111-22-3333'))).masked).toEqual({ 'detector:ssn': 1 });
    // In a transaction block the SET has ended by then: the message is recorded on its own.
    await viaEngine.query('BEGIN');
    const y = await viaEngine.exchange([fe.run(`SET application_name = 'y 222-33-4444'`), fe.sync()]);
    expect(y.messages.find((m) => m.type === 'S')?.parameter?.value).toBe('y ***-**-****');
    const record = await until(() => h.events.find((e) => e.type === 'unattributed' && (e.data as { kind?: string }).kind === 'parameter_status'));
    expect(record.data).toEqual({ kind: 'parameter_status', name: 'application_name', value: 'y ***-**-****', masked: { 'detector:ssn': 1 } });
    await viaEngine.query('ROLLBACK');
    await viaEngine.query('RESET application_name');
  });
});

describe("a plan's message-value redaction", () => {
  test("SELECT 'abc'::int: the quoted value is replaced, and counted", async () => {
    planFor = () => ({ action: 'run', redactMessageValues: true });
    const r = await viaEngine.query(`SELECT 'abc'::int`);
    expect(errorsIn(r.messages)[0]).toMatchObject({ C: '22P02', M: 'invalid input syntax for type integer: "***"' });
    const end = await lastEnd((s) => s.includes(`'abc'::int`));
    expect(end.error?.message).toBe('invalid input syntax for type integer: "***"');
    expect(end.masked).toEqual({ 'message values': 1 });
  });

  test("a unique violation's key detail, in the extended protocol", async () => {
    planFor = () => ({ action: 'run', redactMessageValues: true });
    const r = await viaEngine.exchange([fe.run('INSERT INTO me_unique VALUES ($1)', ['555-66-7777']), fe.sync()]);
    const e = errorsIn(r.messages)[0]!;
    expect(e).toMatchObject({ C: '23505', M: 'duplicate key value violates unique constraint "***"', D: 'Key (ssn)=(***) already exists.' });
    expect(e.n).toBe('me_unique_ssn_key'); // a bare name: nothing quoted in it
    const end = await lastEnd((s) => s.startsWith('INSERT INTO me_unique'));
    expect(end.masked).toEqual({ 'message values': 2 });
  });

  test('without the plan flag, the same error keeps its value (only the scrubber runs)', async () => {
    const r = await viaEngine.query(`SELECT 'abc'::int`);
    expect(errorsIn(r.messages)[0]?.M).toBe('invalid input syntax for type integer: "abc"');
  });
});
