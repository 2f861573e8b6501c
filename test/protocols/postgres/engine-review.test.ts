/**
 * Regressions found by review, as a hostile client would send them: a COMMIT that undoes a
 * SET LOCAL client_encoding in front of a pipelined Query, a late decision after a cancelled
 * hold, and a simple Query dropping the unnamed statement.
 */
import { connect } from 'node:net';
import pg from 'pg';
import { serialize } from 'pg-protocol';
import { afterAll, beforeAll, expect, inject, test } from 'vitest';
import { RUN, type RunPlan } from '../../../src/protocols/engine.js';
import { fe, namesIn, rawDirect } from '../../helpers/raw-client.js';
import { createTestDatabase } from '../../helpers/postgres.js';
import { startHarness, until, upstreamConfig, type Harness } from './engine-harness.js';

const shared = inject('upstream');
let db: Awaited<ReturnType<typeof createTestDatabase>>;
let h: Harness;
let direct: pg.Client;

beforeAll(async () => {
  db = await createTestDatabase(shared, 'review');
  h = await startHarness({ upstream: upstreamConfig(db.info) });
  direct = new pg.Client({ host: db.info.host, port: db.info.port, user: db.info.users.trust, database: db.info.database });
  await direct.connect();
});
afterAll(async () => {
  await direct?.end();
  await h?.close();
  await db?.drop();
});

const exists = async (table: string) => (await direct.query('SELECT to_regclass($1)::text AS r', [table])).rows[0].r !== null;

test('a COMMIT that restores the encoding: the Query behind it is read as the server reads it', async () => {
  await direct.query('CREATE TABLE rv_victim (id int)');
  const c = await rawDirect('127.0.0.1', h.port, { application: 'rv-commit', encoding: 'GBK' });
  await c.exchange(fe.query("BEGIN; SET LOCAL client_encoding TO 'LATIN1'"), 1);
  // 0x95 0x5C is one GBK character; read as LATIN1 the backslash escapes the quote.
  const attack = Buffer.concat([Buffer.from("SELECT E'", 'latin1'), Buffer.from([0x95]), Buffer.from("\\' ; DROP TABLE rv_victim; --'", 'latin1')]);
  await c.exchange([fe.query('COMMIT'), fe.query(attack)], 2);
  await c.end();
  const recorded = await until(() => h.starts().find((s) => s.statement.startsWith("SELECT E'")));
  // Whatever the server did, the record says it: the DROP it ran is a statement of its own.
  const dropped = !(await exists('rv_victim'));
  expect(dropped).toBe(true);
  expect(recorded.statements).toEqual([expect.stringMatching(/^SELECT E'/), 'DROP TABLE rv_victim']);
});

test('a decision that arrives after the hold was cancelled changes nothing that comes next', async () => {
  let decide!: (p: RunPlan) => void;
  h.plan = async (s) => (s.statement.includes('/*hold*/') ? { action: 'hold', notice: 'waiting for approval', decision: new Promise((r) => (decide = r)) } : RUN);
  const c = await rawDirect('127.0.0.1', h.port, { application: 'rv-hold', timeoutMs: 10_000 });
  const k = c.startup.find((m) => m.type === 'K')!;
  const held = c.exchange(fe.query('select 1 /*hold*/'), 1);
  await until(() => c.messages.some((m) => m.type === 'N'));
  const cancel = connect(h.port, '127.0.0.1');
  cancel.on('error', () => {});
  await new Promise((r) => cancel.once('connect', r));
  cancel.end(serialize.cancel(k.body.readInt32BE(0), k.body.readInt32BE(4)));
  expect(namesIn((await held).messages).join(',')).toMatch(/ErrorResponse/);
  // Non-ASCII text behind a running statement waits for its ReadyForQuery (the forwarder's wait);
  // the late decision lands while it waits.
  const next = c.exchange([fe.query('select pg_sleep(0.3)'), fe.query("select 'é' as x")], 2);
  await until(() => h.starts().some((s) => s.statement === 'select pg_sleep(0.3)'));
  decide(RUN);
  const r = await next;
  expect(r.messages.filter((m) => m.type === 'D').map((m) => m.text)).toEqual([[''], ['é']]);
  await c.end();
  h.plan = async () => RUN;
});

test('a simple Query drops the unnamed statement: a later Bind of it is not recorded with the old text', async () => {
  const c = await rawDirect('127.0.0.1', h.port, { application: 'rv-unnamed' });
  await c.exchange([fe.parse('', 'SELECT 1 AS old_text'), fe.sync()], 1);
  await c.exchange(fe.query('SELECT 2'), 1);
  await c.exchange([fe.bind('', ''), fe.execute(''), fe.sync()], 1);
  await c.end();
  const ends = await until(() => (h.starts().filter((s) => s.portal === '' && s.protocol === 'extended').length > 0 ? h.starts() : null));
  expect(ends.filter((s) => s.statement === 'SELECT 1 AS old_text' && s.phase === undefined)).toEqual([]);
});
