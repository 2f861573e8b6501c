/**
 * "The record is the truth" — bytes that travel outside DataRows, uploads, and size.
 *
 * The oracle is not hoop: PostgreSQL's own statement log (log_statement = all, see
 * test/helpers/server-log.ts), what the client received, and what the database holds afterwards.
 *
 * Cases (numbered as in the brief): 6 notices, notifications and fastpath function results,
 * 7 COPY FROM STDIN uploads, 12 a 64 MiB statement beside a busy session.
 */
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { DEFAULT_MAX_FRAME_BYTES } from '../../src/protocols/postgres/framing.js';
import { tunnelClient } from '../gateway/ws-client.js';
import { errorsIn, fe, namesIn, noticesIn, notificationsIn, rowsIn, type BackendMessage, type RawClient } from '../helpers/raw-client.js';
import { brief, ruleViolations, sameText, sha256, type RecordedStatement } from '../helpers/record.js';
import { startTruth, type Truth } from '../helpers/truth.js';

// ---------------------------------------------------------------------------------------------
// Where the record keeps each kind (the tests look for the values the client received anywhere
// inside what an accessor returns).

/** query.end data.messages.kept: the NoticeResponses the client received during the statement. */
const noticesOf = (r: RecordedStatement | undefined): unknown => r?.e?.['messages']?.['kept']?.filter((m: { kind: string }) => m.kind === 'notice');
/** query.end data.messages.kept: the NotificationResponses ({channel, payload}) received during it. */
const notificationsOf = (r: RecordedStatement | undefined): unknown => r?.e?.['messages']?.['kept']?.filter((m: { kind: string }) => m.kind === 'notification');
/** query.end data.result.sets: a FunctionCallResponse's value is the one row of a set named after the function. */
const functionResultOf = (r: RecordedStatement | undefined): unknown => r?.e?.['result']?.['sets'];
/** A FunctionCall's query.start names the function in data.statement (`SELECT pg_catalog.lo_open($1, $2)`); arguments in data.parameters. */
const namesFunction = (r: RecordedStatement, name: string): boolean => new RegExp(`\\b${name}\\b`).test(r.statement);
/**
 * query.end data.upload = {bytes, sha256, truncated, copies: [{data, ...}]} for COPY FROM STDIN:
 * the byte count and SHA-256 of all CopyData payloads the client sent, and the data kept up to
 * payload_limit, per COPY.
 */
type Upload = { bytes?: number; sha256?: string; truncated?: boolean; copies?: { data: string }[] };
const uploadOf = (r: RecordedStatement | undefined): Upload | undefined => r?.e?.['upload'];
const uploadedText = (u: Upload | undefined): string | undefined => u?.copies?.map((c) => c.data).join('');
/** A statement cut at a limit in query.start data.statement, with data.statement_sha256 and data.statement_bytes of all of it. */
const statementSha256Of = (r: RecordedStatement | undefined): unknown => r?.s['statement_sha256'];
const statementBytesOf = (r: RecordedStatement | undefined): unknown => r?.s['statement_bytes'];

const contains = (haystack: unknown, needle: string) => JSON.stringify(haystack ?? null).includes(needle);

// ---------------------------------------------------------------------------------------------

let t: Truth;
beforeAll(async () => {
  t = await startTruth('hoop-truth-streams');
  await t.pg.sql('CREATE TABLE up7 (id int, v text); CREATE TABLE up7big (id int, v text)');
});
afterAll(async () => {
  await t?.stop();
});

async function endAndRecord(c: RawClient) {
  await c.end();
  return t.record(c);
}

test('6a. a NOTICE raised by a DO block is in the record of that statement', async () => {
  const c = await t.open('str6a');
  const sql = "DO $$ BEGIN RAISE NOTICE 'ssn 123-45-6789'; END $$";
  const r = await c.query(sql);
  expect(noticesIn(r.messages).map((n) => n.M)).toEqual(['ssn 123-45-6789']);
  const rec = await endAndRecord(c);
  const logged = await t.logged('str6a');
  const run = rec.statements.find((s) => s.statement === sql);
  expect(run?.outcome).toBe('ok');
  expect.soft(contains(noticesOf(run), 'ssn 123-45-6789'), `the client received the NOTICE; recorded: ${JSON.stringify(run?.e)}`).toBe(true);
  expect.soft(ruleViolations(rec.statements, logged), JSON.stringify(brief(rec.statements))).toEqual([]);
});

test('6b. a NOTIFY the session receives (LISTEN ch; SELECT pg_notify) is in the record of the statement it came with', async () => {
  const c = await t.open('str6b');
  expect(errorsIn((await c.query('LISTEN ch')).messages)).toEqual([]);
  const sql = "SELECT pg_notify('ch', 'payload-6b')";
  const r = await c.query(sql);
  expect(notificationsIn(r.messages).map((n) => [n.channel, n.payload])).toEqual([['ch', 'payload-6b']]);
  const rec = await endAndRecord(c);
  const logged = await t.logged('str6b');
  const run = rec.statements.find((s) => s.statement === sql);
  expect(run?.outcome).toBe('ok');
  const got = notificationsOf(run);
  expect.soft(contains(got, 'payload-6b') && contains(got, '"ch"'), `the client received the notification; recorded: ${JSON.stringify(run?.e)}`).toBe(true);
  expect.soft(ruleViolations(rec.statements, logged), JSON.stringify(brief(rec.statements))).toEqual([]);
});

test('6c. fastpath FunctionCalls (lo_creat, lo_open, lowrite, lo_lseek, loread, lo_close) are recorded with the function, its arguments and its result', async () => {
  const oids = Object.fromEntries(
    (await t.pg.sql<{ proname: string; oid: number }>(
      "SELECT proname, oid::int AS oid FROM pg_proc WHERE proname IN ('lo_creat', 'lo_open', 'lowrite', 'lo_lseek', 'loread', 'lo_close') AND pronamespace = 'pg_catalog'::regnamespace",
    )).map((r) => [r.proname, r.oid]),
  ) as Record<string, number>;
  const c = await t.open('str6c');
  await c.query('BEGIN');
  const calls: { name: string; args: string[]; result: string }[] = [];
  const call = async (name: string, args: string[]) => {
    const r = await c.exchange(fe.functionCall(oids[name]!, args), 1);
    const v = r.messages.find((m: BackendMessage) => m.type === 'V');
    expect(v, `${name}: ${namesIn(r.messages).join(', ')}`).toBeDefined();
    const result = v!.result!.toString('utf8');
    calls.push({ name, args, result });
    return result;
  };
  const lo = await call('lo_creat', ['-1']);
  const fd = await call('lo_open', [lo, String(0x60000)]); // INV_READ | INV_WRITE
  const written = '\\x' + Buffer.from('secret 987-65-4321').toString('hex');
  expect(await call('lowrite', [fd, written])).toBe('18');
  await call('lo_lseek', [fd, '0', '0']);
  expect(await call('loread', [fd, '100'])).toBe(written);
  await call('lo_close', [fd]);
  await c.query('COMMIT');
  const rec = await endAndRecord(c);
  const logged = await t.logged('str6c');
  expect(logged.filter((s) => s.kind === 'fastpath').map((s) => s.name)).toEqual(calls.map((x) => x.name));

  const named = (name: string) => rec.statements.find((s) => namesFunction(s, name));
  expect.soft(calls.filter((x) => !named(x.name)).map((x) => x.name), `functions no record names: ${JSON.stringify(brief(rec.statements))}`).toEqual([]);
  for (const x of calls) {
    const r = named(x.name);
    if (!r) continue;
    expect.soft(r.s['parameters'], `${x.name} arguments`).toEqual(x.args);
    expect.soft(contains(functionResultOf(r), x.result), `${x.name} returned ${x.result} to the client; recorded: ${JSON.stringify(r.e?.['result'])}`).toBe(true);
  }
  // Whatever the names, the data read back reached the client: it must be in the record.
  expect.soft(rec.statements.some((s) => contains(functionResultOf(s), written)), 'the loread result is in no record').toBe(true);
  expect.soft(ruleViolations(rec.statements, logged), JSON.stringify(brief(rec.statements))).toEqual([]);
});

function copyRows(n: number, width: number): string {
  let s = '';
  for (let i = 0; i < n; i++) s += `${i}\t${'v'.repeat(width)}-${i}\n`;
  return s;
}

/** The text as CopyData messages of at most `size` bytes (split anywhere, as clients may). */
function copyMessages(text: string, size: number): Buffer[] {
  const b = Buffer.from(text, 'utf8');
  const out: Buffer[] = [];
  for (let at = 0; at < b.length; at += size) out.push(fe.copyData(b.subarray(at, Math.min(b.length, at + size))));
  return out;
}

test('7. COPY FROM STDIN: the record holds the uploaded data (up to payload_limit), its byte count and the SHA-256 of all of it', async () => {
  const limit = t.gw.config.audit.payload_limit;
  const small = copyRows(3, 5);
  const big = copyRows(Math.ceil((limit * 2.5) / 40), 30); // ~2.5 × payload_limit
  expect(Buffer.byteLength(big)).toBeGreaterThan(2 * limit);
  const c = await t.open('str7');
  const a = await c.exchange([fe.query('COPY up7 FROM STDIN'), ...copyMessages(small, 7), fe.copyDone()], 1);
  expect(namesIn(a.messages)).toEqual(['CopyInResponse', 'CommandComplete(COPY 3)', 'ReadyForQuery(I)']);
  const b = await c.exchange([fe.query('COPY up7big FROM STDIN'), ...copyMessages(big, 65536), fe.copyDone()], 1);
  const bigRows = big.split('\n').length - 1;
  expect(namesIn(b.messages)).toEqual(['CopyInResponse', `CommandComplete(COPY ${bigRows})`, 'ReadyForQuery(I)']);
  const rec = await endAndRecord(c);
  const logged = await t.logged('str7');
  expect(await t.pg.sql('SELECT count(*)::int AS n FROM up7')).toEqual([{ n: 3 }]);
  expect(await t.pg.sql('SELECT count(*)::int AS n FROM up7big')).toEqual([{ n: bigRows }]);

  const r1 = rec.statements.find((s) => s.statement === 'COPY up7 FROM STDIN');
  const u1 = uploadOf(r1);
  expect.soft(u1, `no upload recorded: ${JSON.stringify(r1?.e)}`).toBeDefined();
  expect.soft({ bytes: u1?.bytes, sha256: u1?.sha256, data: uploadedText(u1), truncated: u1?.truncated ?? false })
    .toEqual({ bytes: Buffer.byteLength(small), sha256: sha256(small), data: small, truncated: false });

  const r2 = rec.statements.find((s) => s.statement === 'COPY up7big FROM STDIN');
  const u2 = uploadOf(r2);
  expect.soft(u2, `no upload recorded: ${JSON.stringify(r2?.e)?.slice(0, 500)}`).toBeDefined();
  expect.soft({ bytes: u2?.bytes, sha256: u2?.sha256, truncated: u2?.truncated }).toEqual({ bytes: Buffer.byteLength(big), sha256: sha256(big), truncated: true });
  const kept = uploadedText(u2) ?? '';
  expect.soft(kept.length, 'some of the upload is kept').toBeGreaterThan(0);
  expect.soft(Buffer.byteLength(kept), 'kept at most payload_limit').toBeLessThanOrEqual(limit);
  expect.soft(big.startsWith(kept), 'the kept data is the start of what was uploaded').toBe(true);
  expect.soft(ruleViolations(rec.statements, logged), JSON.stringify(brief(rec.statements))).toEqual([]);
});

function storeBytes(dir: string): number {
  return readdirSync(dir).filter((f) => f.startsWith('hoop.db')).reduce((n, f) => n + statSync(join(dir, f)).size, 0);
}

test('12. a 64 MiB statement: another session is never stalled > 1 s, the record keeps the text up to a limit with its SHA-256 and length, the store grows far less', async () => {
  // The largest Query frame the engine accepts: a declared length (4 + text + NUL) up to its limit.
  const textBytes = Math.min(64 * 1024 * 1024, DEFAULT_MAX_FRAME_BYTES) - 5;
  const head = "SELECT length('";
  const tail = "') AS n";
  const xs = textBytes - head.length - tail.length;
  const sql = head + 'x'.repeat(xs) + tail;
  expect(Buffer.byteLength(sql)).toBe(textBytes);
  const frame = fe.query(sql);
  expect(frame.readInt32BE(1), 'declared length').toBe(Math.min(64 * 1024 * 1024, DEFAULT_MAX_FRAME_BYTES));

  const loop = await tunnelClient(t.gw.url, 'bank', t.gw.keys['bob']!, { application: 'str12-loop' });
  /** Sends the statement on `big` while `loop` runs SELECT 1 through hoop: the latencies of those runs. */
  const measure = async (big: RawClient) => {
    let stop = false;
    const latencies: number[] = [];
    const looping = (async () => {
      while (!stop) {
        const t0 = performance.now();
        await loop.query('SELECT 1');
        latencies.push(performance.now() - t0);
      }
    })();
    looping.catch(() => {}); // a failure shows in the assertions below; never as an unhandled rejection
    await expect.poll(() => latencies.length, { interval: 10, timeout: 15_000 }).toBeGreaterThan(20);
    const warm = latencies.length;
    const from = big.messages.length;
    const sent = big.sendPaced(frame);
    const reply = await big.waitFor(from, (ms) => ms.some((m) => m.type === 'Z'), 'ReadyForQuery for the 64 MiB statement', 120_000);
    await sent;
    stop = true;
    await looping;
    expect(errorsIn(reply.messages)).toEqual([]);
    expect(rowsIn(reply.messages)).toEqual([[String(xs)]]); // the server ran all of it
    const during = latencies.slice(warm);
    return { runs: during.length, max: Math.max(0, ...during) };
  };

  // Control: the same statement straight to PostgreSQL, in the same run: on a loaded machine the
  // loop is slow without hoop too, and the bound below grows with it (a ratio, not a timing).
  const direct = await t.direct('str12-direct', { timeoutMs: 120_000 });
  const control = await measure(direct);
  await direct.end();
  const bound = Math.max(1000, 3 * control.max);

  const big = await t.open('str12-big', { timeoutMs: 120_000 });
  const before = storeBytes(t.gw.dir);
  const through = await measure(big);
  await loop.end();
  expect.soft(through.runs, 'the other session ran during the big statement').toBeGreaterThan(0);
  expect.soft(through.max, `the other session's SELECT 1 took up to ${Math.round(through.max)} ms (${through.runs} runs; ${Math.round(control.max)} ms without hoop)`).toBeLessThan(bound);

  const rec = await endAndRecord(big);
  const grown = storeBytes(t.gw.dir) - before;
  const logged = await t.logged('str12-big');
  expect(logged.map((s) => s.text.length)).toEqual([textBytes]);
  const r = rec.statements.find((s) => s.statement.startsWith(head));
  expect(r, 'the statement has a query.start').toBeDefined();
  expect.soft(statementBytesOf(r), 'statement_bytes').toBe(textBytes);
  expect.soft(statementSha256Of(r), 'statement_sha256').toBe(sha256(sql));
  expect.soft(r!.statement.length, 'the recorded text is cut at a limit').toBeLessThanOrEqual(t.gw.config.audit.payload_limit);
  expect.soft(sql.startsWith(r!.statement)).toBe(true);
  expect.soft(sameText(r!, logged[0]!.text)).toBe(true);
  expect.soft(grown, `the store grew by ${(grown / 1048576).toFixed(1)} MiB for a ${(textBytes / 1048576).toFixed(0)} MiB statement`).toBeLessThan(32 * 1024 * 1024);
});
