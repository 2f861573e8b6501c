/**
 * "The record is the truth" — which statement each response belongs to.
 *
 * The oracle is not hoop: PostgreSQL's own statement log (log_statement = all, see
 * test/helpers/server-log.ts), what the client received, and what the database holds afterwards.
 *
 * Cases (numbered as in the brief): 3 desynchronising the FIFO of responses, 4 SQL that swaps what
 * a protocol name holds, 5 COMMIT inside CALL in a pipeline, 9 Parse and Describe without Execute,
 * 10 a statement whose own parameter fails, 11 stopping the gateway while a statement runs.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { openStore } from '../../src/store/index.js';
import { RUN } from '../../src/protocols/engine.js';
import { bankConnection, startTestGateway } from '../helpers/gateway.js';
import { errorsIn, fe, namesIn, rawTunnel, rowsIn, tagsIn, type Exchange, type RawClient } from '../helpers/raw-client.js';
import { brief, pairStatements, recordedRows, ruleViolations, sameText, type RecordedStatement } from '../helpers/record.js';
import type { LoggedStatement } from '../helpers/server-log.js';
import { startTruth, type Truth } from '../helpers/truth.js';

// ---------------------------------------------------------------------------------------------
// Accessor assumptions (adjust here if the engine names things differently)

/**
 * ASSUMPTION: a record that cannot know which SQL a protocol name runs says so in its statement
 * text, with the word "unknown" (today's engine writes `-- prepared statement "s1": unknown (...)`),
 * or with an explicit flag `statement_unknown: true` in query.start.
 */
function saysUnknown(r: RecordedStatement): boolean {
  return r.s['unknown'] === true;
}

// ---------------------------------------------------------------------------------------------

let t: Truth;
/** Multi-line on purpose: the log oracle must read it whole. */
const SSN_SQL = 'SELECT ssn\nFROM people\nORDER BY ssn';
const SSNS = ['111-11-1111', '222-22-2222', '333-33-3333', '444-44-4444', '555-55-5555'];

beforeAll(async () => {
  // The engine's record is under test, not policy: every statement runs as sent (a DO block that
  // re-PREPAREs through EXECUTE would be refused by the shared-credential guard).
  t = await startTruth('hoop-truth-pipe', { planner: async () => RUN });
  await t.pg.sql(`
    CREATE TABLE people (ssn text);
    INSERT INTO people VALUES ${SSNS.map((s) => `('${s}')`).join(', ')};
    CREATE TABLE vault (secret text);
    INSERT INTO vault VALUES ('s3cr3t-1'), ('s3cr3t-2');
    CREATE TABLE payroll (name text, salary int);
    CREATE TABLE t5 (id int);
    INSERT INTO t5 VALUES (1), (2);
    CREATE PROCEDURE commit_proc() LANGUAGE plpgsql AS $$ BEGIN COMMIT; END $$;
    CREATE TABLE cp3 (a int, b text);
    CREATE TABLE t10 (id int);
    CREATE TABLE t11 (id int);
  `);
});
afterAll(async () => {
  await t?.stop();
});

async function endAndRecord(c: RawClient) {
  await c.end();
  return t.record(c);
}

/** The later statements every desync case runs: each must be paired with its own results. */
async function laterStatements(c: RawClient) {
  const r42 = await c.query('SELECT 42');
  expect(rowsIn(r42.messages)).toEqual([['42']]);
  const rSsn = await c.query(SSN_SQL);
  expect(rowsIn(rSsn.messages)).toEqual(SSNS.map((s) => [s]));
  return { r42, rSsn };
}

function expectLaterPaired(rec: RecordedStatement[]) {
  const r42 = rec.find((s) => s.statement === 'SELECT 42');
  expect.soft(r42 && { outcome: r42.outcome, rows: recordedRows(r42) }, JSON.stringify(brief(rec))).toEqual({ outcome: 'ok', rows: [['42']] });
  const rSsn = rec.find((s) => s.statement === SSN_SQL);
  expect.soft(rSsn && { outcome: rSsn.outcome, rows: recordedRows(rSsn) }, JSON.stringify(brief(rec))).toEqual({ outcome: 'ok', rows: SSNS.map((s) => [s]) });
  // No other statement carries the SSNs.
  const elsewhere = rec.filter((s) => s !== rSsn && recordedRows(s).some((row) => row.some((v) => v !== null && SSNS.includes(v))));
  expect.soft(elsewhere.map((s) => s.statement), 'SSN rows recorded under another statement').toEqual([]);
}

test('3a. a failed Parse makes the server skip a pipelined Query until Sync: the skipped Query is not recorded as run, later statements keep their own results', async () => {
  const c = await t.open('pipe3a');
  const r = await c.exchange([fe.parse('', 'SELECT * FROM no_such_table'), fe.bind('', ''), fe.execute(), fe.query('SELECT ssn FROM people'), fe.sync()], 1);
  // The server skipped the Query: one error, no rows, one ReadyForQuery.
  expect(namesIn(r.messages)).toEqual(['ErrorResponse(ERROR 42P01 relation "no_such_table" does not exist)', 'ReadyForQuery(I)']);
  await laterStatements(c);
  const rec = await endAndRecord(c);
  const logged = await t.logged('pipe3a');
  expect(logged.map((s) => s.text)).toEqual(['SELECT 42', SSN_SQL]);

  const ignored = rec.statements.filter((s) => s.statement === 'SELECT ssn FROM people');
  for (const s of ignored) {
    expect.soft(s.outcome, 'the server ignored this Query').not.toBe('ok');
    expect.soft(recordedRows(s)).toEqual([]);
  }
  expectLaterPaired(rec.statements);
  expect.soft(ruleViolations(rec.statements, logged), JSON.stringify(brief(rec.statements))).toEqual([]);
});

test('3b. Sync and Flush inside COPY FROM STDIN data (ignored by the server in copy-in) do not shift later statements onto the wrong results', async () => {
  const c = await t.open('pipe3b');
  const r = await c.exchange([fe.query('COPY cp3 FROM STDIN'), fe.copyData('1\ta\n'), fe.sync(), fe.flush(), fe.copyData('2\tb\n'), fe.copyDone()], 1);
  expect(namesIn(r.messages)).toEqual(['CopyInResponse', 'CommandComplete(COPY 2)', 'ReadyForQuery(I)']);
  await laterStatements(c);
  const rec = await endAndRecord(c);
  const logged = await t.logged('pipe3b');
  expect(logged.map((s) => s.text)).toEqual(['COPY cp3 FROM STDIN', 'SELECT 42', SSN_SQL]);
  expect(await t.pg.sql('SELECT a, b FROM cp3 ORDER BY a')).toEqual([{ a: 1, b: 'a' }, { a: 2, b: 'b' }]);

  const copy = rec.statements.find((s) => s.statement === 'COPY cp3 FROM STDIN');
  expect.soft(copy && { outcome: copy.outcome, tags: copy.e?.['command_tags'] }).toEqual({ outcome: 'ok', tags: ['COPY 2'] });
  expectLaterPaired(rec.statements);
  expect.soft(ruleViolations(rec.statements, logged), JSON.stringify(brief(rec.statements))).toEqual([]);
});

const SECRETS = [['s3cr3t-1'], ['s3cr3t-2']];

/**
 * Checks the Execute that ran after a swap: if the server executed it (its log shows the line),
 * the record of that Execute names what the log says ran, or says it does not know, and holds
 * the rows the client received; if the gateway refused it instead, nothing ran and no rows came.
 */
function expectSwapRecorded(rec: RecordedStatement[], logged: LoggedStatement[], ran: LoggedStatement | undefined, exec: RecordedStatement | undefined, run: Exchange, harmless: string) {
  const received = rowsIn(run.messages);
  if (ran) {
    expect.soft(exec, JSON.stringify(brief(rec))).toBeDefined();
    expect.soft(exec?.statement).not.toBe(harmless);
    expect.soft(exec && (sameText(exec, ran.text) || saysUnknown(exec)), `recorded ${JSON.stringify(exec?.statement)}, the server ran ${JSON.stringify(ran.text)}`).toBe(true);
    expect.soft(exec && recordedRows(exec), 'the rows the client received belong to this Execute').toEqual(received);
  } else {
    expect.soft(errorsIn(run.messages).length, 'the server did not run the Execute, so the gateway refused it').toBeGreaterThan(0);
    expect.soft(received).toEqual([]);
  }
  expect.soft(ruleViolations(rec, logged), JSON.stringify(brief(rec))).toEqual([]);
}

const DO_SWAP = "DO $$ BEGIN EXECUTE 'DEALLOCATE s1'; EXECUTE 'PREPARE s1 AS SELECT secret FROM vault'; END $$";

async function swap4a(c: RawClient) {
  const parsed = await c.exchange([fe.parse('s1', 'SELECT 1'), fe.sync()], 1);
  const swap = await c.query(DO_SWAP);
  const run = await c.exchange([fe.bind('', 's1'), fe.execute(), fe.sync()], 1);
  return { parsed, swap, run };
}

test('4a. a DO block that DEALLOCATEs and re-PREPAREs the protocol statement s1: the Execute of s1 is not recorded as SELECT 1', async () => {
  // Without hoop: dynamic SQL in the DO block really swaps what the protocol name s1 runs.
  const d = await t.direct('pipe4a-direct');
  const direct = await swap4a(d);
  await d.end();
  expect(namesIn(direct.parsed.messages)).toEqual(['ParseComplete', 'ReadyForQuery(I)']);
  expect(tagsIn(direct.swap.messages)).toEqual(['DO']);
  expect(rowsIn(direct.run.messages)).toEqual(SECRETS);
  expect((await t.logged('pipe4a-direct')).find((s) => s.kind === 'execute' && s.name === 's1')?.text).toBe('PREPARE s1 AS SELECT secret FROM vault');

  const c = await t.open('pipe4a');
  const { run } = await swap4a(c);
  const rec = await endAndRecord(c);
  const logged = await t.logged('pipe4a');
  const ran = logged.find((s) => s.kind === 'execute' && s.name === 's1');
  const exec = rec.statements.filter((s) => s.s['statement_name'] === 's1' && s.s['portal'] !== null && s.s['portal'] !== undefined).at(-1);
  expectSwapRecorded(rec.statements, logged, ran, exec, run, 'SELECT 1');
});

async function swap4b(c: RawClient) {
  const bound = await c.exchange([fe.query('BEGIN'), fe.parse('', 'SELECT 1 AS harmless'), fe.bind('p1', ''), fe.sync()], 2);
  const swap = await c.query('CLOSE p1; DECLARE p1 CURSOR FOR SELECT secret FROM vault');
  const run = await c.exchange([fe.execute('p1'), fe.sync()], 1);
  await c.query('COMMIT');
  return { bound, swap, run };
}

test('4b. CLOSE p1; DECLARE p1 CURSOR swaps a bound portal inside BEGIN: the Execute of p1 is not recorded as the harmless statement', async () => {
  // Without hoop: SQL CLOSE and DECLARE really swap what the protocol portal p1 runs.
  const d = await t.direct('pipe4b-direct');
  const direct = await swap4b(d);
  await d.end();
  expect(namesIn(direct.bound.messages)).toEqual(['CommandComplete(BEGIN)', 'ReadyForQuery(T)', 'ParseComplete', 'BindComplete', 'ReadyForQuery(T)']);
  expect(tagsIn(direct.swap.messages)).toEqual(['CLOSE CURSOR', 'DECLARE CURSOR']);
  expect(rowsIn(direct.run.messages)).toEqual(SECRETS);
  expect((await t.logged('pipe4b-direct')).find((s) => s.kind === 'execute' && s.portal === 'p1')?.text).toBe('CLOSE p1; DECLARE p1 CURSOR FOR SELECT secret FROM vault');

  const c = await t.open('pipe4b');
  const { run } = await swap4b(c);
  const rec = await endAndRecord(c);
  const logged = await t.logged('pipe4b');
  const ran = logged.find((s) => s.kind === 'execute' && s.portal === 'p1');
  const exec = rec.statements.filter((s) => s.s['portal'] === 'p1' && (s.e?.['command_tags'] ?? []).length > 0).at(-1)
    ?? rec.statements.filter((s) => s.s['portal'] === 'p1').at(-1);
  expectSwapRecorded(rec.statements, logged, ran, exec, run, 'SELECT 1 AS harmless');
});

test('5. a CALL that COMMITs in a pipeline without BEGIN commits the DELETE before it: a later error in the segment does not make it rolled_back', async () => {
  const c = await t.open('pipe5');
  const deleteSql = 'DELETE FROM t5 WHERE id = $1 AND $2::text IS NOT NULL';
  const params = ['1', "it's"];
  const r = await c.exchange([fe.run(deleteSql, params), fe.run('CALL commit_proc()'), fe.run('SELECT 1/0'), fe.sync()], 1);
  expect(tagsIn(r.messages)).toEqual(['DELETE 1', 'CALL']);
  expect(errorsIn(r.messages).map((e) => e.C)).toEqual(['22012']);
  const rec = await endAndRecord(c);
  const logged = await t.logged('pipe5');
  // The database: the DELETE was committed by the procedure.
  expect(await t.pg.sql('SELECT id FROM t5 ORDER BY id')).toEqual([{ id: 2 }]);

  expect(logged.find((s) => s.text === deleteSql)?.parameters).toEqual(params);
  const del = rec.statements.find((s) => s.statement === deleteSql);
  expect.soft(del?.s['parameters'], 'the parameters the server logged').toEqual(params);
  expect.soft(del?.outcome, JSON.stringify(brief(rec.statements))).toBeDefined();
  expect.soft(['ok', 'unknown'], `the DELETE is committed; the record says ${del?.outcome} ${JSON.stringify(del?.e?.['error'])}`).toContain(del?.outcome);
  const call = rec.statements.find((s) => s.statement === 'CALL commit_proc()');
  expect.soft(['ok', 'unknown'], `the CALL committed; the record says ${call?.outcome}`).toContain(call?.outcome);
  const div = rec.statements.find((s) => s.statement === 'SELECT 1/0');
  expect.soft(div && { outcome: div.outcome, code: div.e?.['error']?.['code'] }).toEqual({ outcome: 'error', code: '22012' });
  expect.soft(ruleViolations(rec.statements, logged), JSON.stringify(brief(rec.statements))).toEqual([]);
});

test('9. Parse and Describe without Execute: the statement is still recorded (a query.start with its text)', async () => {
  const c = await t.open('pipe9');
  const r = await c.exchange([fe.parse('', 'SELECT * FROM payroll'), fe.describe('S', ''), fe.sync()], 1);
  expect(namesIn(r.messages)).toEqual(['ParseComplete', 'ParameterDescription', 'RowDescription', 'ReadyForQuery(I)']);
  expect(r.messages.find((m) => m.type === 'T')!.columns).toEqual(['name', 'salary']);
  const rec = await endAndRecord(c);
  const logged = await t.logged('pipe9');
  expect(logged, 'the server logs no execution for a Parse and a Describe').toEqual([]);
  expect.soft(rec.statements.map((s) => s.statement), 'no query.start names the parsed and described statement').toContain('SELECT * FROM payroll');
  expect.soft(ruleViolations(rec.statements, logged), JSON.stringify(brief(rec.statements))).toEqual([]);
});

test("10. a statement whose own parameter fails at Bind: recorded as error with the server's 22P02 and message, not as 'not executed'", async () => {
  const c = await t.open('pipe10');
  const a = await c.exchange([fe.run('SELECT $1::int', ['notanint']), fe.sync()], 1);
  const b = await c.exchange([fe.run('SELECT * FROM t10 WHERE id = $1', ['notanint'], [23]), fe.sync()], 1);
  const rec = await endAndRecord(c);
  await t.pg.flushLog();
  const serverErrors = t.pg.log.errors('pipe10').map((e) => ({ code: e.state_code, message: e.message, statement: e.statement }));
  const message = 'invalid input syntax for type integer: "notanint"';
  expect(serverErrors).toEqual([
    { code: '22P02', message, statement: 'SELECT $1::int' },
    { code: '22P02', message, statement: 'SELECT * FROM t10 WHERE id = $1' },
  ]);
  for (const [sql, got] of [['SELECT $1::int', a], ['SELECT * FROM t10 WHERE id = $1', b]] as const) {
    expect(errorsIn(got.messages).map((e) => ({ code: e.C, message: e.M }))).toEqual([{ code: '22P02', message }]);
    const r = rec.statements.filter((s) => s.statement === sql).at(-1);
    expect.soft(r && { outcome: r.outcome, error: r.e?.['error'] }, `${sql}: ${JSON.stringify(brief(rec.statements))}`).toEqual({ outcome: 'error', error: { code: '22P02', message } });
    expect.soft(String(r?.e?.['error']?.['message'] ?? '')).not.toMatch(/not executed/);
  }
  expect.soft(ruleViolations(rec.statements, t.pg.log.statements('pipe10')), JSON.stringify(brief(rec.statements))).toEqual([]);
});

test('11. gw.close() while a statement runs: it stops upstream soon after, and the recorded outcome matches what the server did', async () => {
  // A gateway of its own, with its store outside the gateway's temp dir so it can be read after close.
  const storeDir = mkdtempSync(join(tmpdir(), 'hoop-truth-store-'));
  const storeUrl = `sqlite:${join(storeDir, 'hoop.db')}`;
  const gw = await startTestGateway({ upstream: t.pg.info, store: storeUrl, connections: [bankConnection(t.pg.info)] });
  const app = 'stop11';
  const sql = 'INSERT INTO t11 SELECT 1 FROM pg_sleep(15)';
  const admin = await t.pg.direct({ application: 'oracle-admin', user: 'postgres' });
  let c: RawClient | null = null;
  try {
    c = await rawTunnel(gw.url, gw.keys['bob']!, { application: app });
    const sessionId = c.sessionId!;
    c.send(fe.query(sql));
    const running = async () =>
      (await admin.query(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = $1 AND state = 'active' AND query = $2`, [app, sql])).rows[0].n > 0;
    // Positive witness: the statement runs upstream.
    await expect.poll(running, { timeout: 10_000, interval: 20 }).toBe(true);

    const closing = gw.close();
    const deadline = Date.now() + 5_000;
    let stopped = false;
    while (Date.now() < deadline) {
      if (!(await running())) {
        stopped = true;
        break;
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    await closing;
    expect.soft(stopped, 'the statement still runs upstream 5 s after gw.close()').toBe(true);

    // What the server did: the statement finished (its row is there) or was cancelled (57014 in the log).
    await expect.poll(running, { timeout: 20_000, interval: 100 }).toBe(false);
    await t.pg.log.waitDisconnected(app, 20_000);
    const finished = (await t.pg.sql<{ n: number }>('SELECT count(*)::int AS n FROM t11'))[0]!.n > 0;
    const cancelled = t.pg.log.errors(app).some((e) => e.state_code === '57014');

    const store = await openStore(storeUrl);
    let r: RecordedStatement | undefined;
    try {
      r = pairStatements((await store.readEvents({})).filter((e) => e.session_id === sessionId)).find((s) => s.statement === sql);
    } finally {
      await store.close();
    }
    const seen = { finished, cancelled, outcome: r?.outcome ?? null, error: r?.e?.['error'] ?? null };
    expect(r, 'the statement has a query.start').toBeDefined();
    expect.soft(['cancelled', 'unknown'], `server: ${JSON.stringify(seen)}`).toContain(r?.outcome);
    if (r?.outcome === 'cancelled') {
      expect.soft(r.e?.['error']?.['code']).toBe('57014');
      expect.soft(cancelled, 'recorded as cancelled, but the server log shows no 57014 for the session').toBe(true);
    }
    if (finished) {
      expect.soft(r?.outcome, `the statement finished on the server (its row is in t11); record: ${JSON.stringify(seen)}`).not.toBe('error');
    }
  } finally {
    c?.destroy();
    await gw.close();
    await admin.query(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1`, [app]).catch(() => {});
    await admin.end();
    rmSync(storeDir, { recursive: true, force: true });
  }
});
