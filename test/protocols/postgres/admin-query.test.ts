/**
 * The gateway's own simple-Query client against a real PostgreSQL: results per statement, NULLs,
 * errors with their SQLSTATE, the session settings it asks for at startup, TLS, the byte bound,
 * and Terminate. pg_stat_activity (read on a separate connection) is the witness of the session.
 */
import pg from 'pg';
import { afterAll, beforeAll, expect, inject, test } from 'vitest';
import { AdminQueryError, openAdminConnection, type AdminConnection } from '../../../src/protocols/postgres/admin-query.js';
import { tcpDial } from '../../../src/protocols/postgres/upstream.js';
import type { UpstreamConfig } from '../../../src/protocols/engine.js';
import { HoopError } from '../../../src/errors.js';
import { createTestDatabase } from '../../helpers/postgres.js';
import { until } from '../../helpers/poll.js';
import { upstreamConfig } from './engine-harness.js';

const shared = inject('upstream');
let db: Awaited<ReturnType<typeof createTestDatabase>>;
let cfg: UpstreamConfig;
let direct: pg.Client;
const opened: AdminConnection[] = [];

async function open(over: Partial<UpstreamConfig> = {}, options = {}): Promise<AdminConnection> {
  const c = { ...cfg, ...over };
  const conn = await openAdminConnection(c, () => tcpDial(c), options);
  opened.push(conn);
  return conn;
}

beforeAll(async () => {
  db = await createTestDatabase(shared, 'adminq');
  cfg = upstreamConfig(db.info);
  direct = new pg.Client({ host: db.info.host, port: db.info.port, user: db.info.users.trust, database: db.info.database });
  await direct.connect();
});
afterAll(async () => {
  for (const c of opened) await c.close().catch(() => {});
  await direct?.end();
  await db?.drop();
});

test('a multi-statement string gives one result per statement, in order, in text format with NULLs', async () => {
  const conn = await open();
  const results = await conn.query(`SELECT 1 AS one, NULL::text AS nothing, 'a''b' AS quoted; SET work_mem = '8MB'; SELECT n, n::text || 'x' AS t FROM generate_series(1, 3) n; CREATE TEMP TABLE t0 (a int)`);
  expect(results).toEqual([
    { columns: ['one', 'nothing', 'quoted'], rows: [['1', null, "a'b"]] },
    { columns: [], rows: [] },
    { columns: ['n', 't'], rows: [['1', '1x'], ['2', '2x'], ['3', '3x']] },
    { columns: [], rows: [] },
  ]);
  expect(await conn.query('')).toEqual([]);
  expect(await conn.query('SELECT 1 WHERE false')).toEqual([{ columns: ['?column?'], rows: [] }]);
});

test('queries issued together are answered in order on the one connection', async () => {
  const conn = await open();
  const answers = await Promise.all([1, 2, 3, 4, 5].map((n) => conn.query(`SELECT ${n} AS n, pg_sleep(0.01)`)));
  expect(answers.map((r) => r[0]!.rows[0]![0])).toEqual(['1', '2', '3', '4', '5']);
});

test('the session is named hoop-gateway-catalog, with a statement timeout, a lock timeout and search_path pg_catalog', async () => {
  const conn = await open();
  const [r] = await conn.query(`SELECT current_setting('application_name'), current_setting('statement_timeout'), current_setting('lock_timeout'), current_setting('search_path')`);
  expect(r!.rows[0]).toEqual(['hoop-gateway-catalog', '30s', '5s', 'pg_catalog']);
  const [who] = await conn.query('SELECT pg_backend_pid()');
  const seen = await direct.query(`SELECT application_name FROM pg_stat_activity WHERE pid = $1`, [Number(who!.rows[0]![0])]);
  expect(seen.rows).toEqual([{ application_name: 'hoop-gateway-catalog' }]);
});

test('the statement timeout is enforced by the server (a shorter one given as an option)', async () => {
  const conn = await open({}, { statementTimeoutMs: 200 });
  await expect(conn.query('SELECT pg_sleep(5)')).rejects.toMatchObject({ sqlstate: '57014' });
  expect((await conn.query('SELECT 2'))[0]!.rows).toEqual([['2']]);
});

test('an ErrorResponse rejects with its SQLSTATE and message; the connection stays usable', async () => {
  const conn = await open();
  const err = await conn.query('SELECT 1; SELECT 1/0; SELECT 3').catch((e: unknown) => e);
  expect(err).toBeInstanceOf(AdminQueryError);
  expect(err).toBeInstanceOf(HoopError);
  expect(err).toMatchObject({ code: 'HOOP_UPSTREAM', sqlstate: '22012', serverMessage: 'division by zero', message: 'division by zero (SQLSTATE 22012)' });
  await expect(conn.query('SELECT * FROM no_such_table')).rejects.toMatchObject({ sqlstate: '42P01' });
  expect((await conn.query('SELECT 4 AS four'))[0]).toEqual({ columns: ['four'], rows: [['4']] });
});

test('an answer past the byte bound rejects and ends the connection', async () => {
  const conn = await open({}, { maxResultBytes: 64 * 1024 });
  // Many small rows (the total counts, not one frame), then one frame above the bound.
  await expect(conn.query('SELECT n FROM generate_series(1, 100000) n')).rejects.toThrow(/exceeds the limit of 65536 bytes/);
  await expect(conn.query('SELECT 1')).rejects.toThrow(HoopError);
  const big = await open({}, { maxResultBytes: 64 * 1024 });
  await expect(big.query(`SELECT repeat('x', 200000)`)).rejects.toThrow(/65536/);
});

test('TLS per sslmode: a user the server admits only over TLS is served with sslmode require and verify-full', async () => {
  const user = db.info.users.tlsOnly;
  for (const sslmode of ['require', 'verify-full'] as const) {
    const conn = await open({ ...upstreamConfig(db.info, user), host: 'localhost', sslmode, ca: db.info.ca });
    const [r] = await conn.query('SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()');
    expect(r!.rows).toEqual([['t']]);
  }
  await expect(open({ ...upstreamConfig(db.info, user), sslmode: 'disable' })).rejects.toThrow(HoopError);
});

test('close() sends Terminate: the backend goes away', async () => {
  const conn = await openAdminConnection(cfg, () => tcpDial(cfg));
  const pid = Number((await conn.query('SELECT pg_backend_pid()'))[0]!.rows[0]![0]);
  await conn.close();
  await until(async () => (await direct.query('SELECT 1 FROM pg_stat_activity WHERE pid = $1', [pid])).rowCount === 0, { what: 'the admin backend gone' });
  await expect(conn.query('SELECT 1')).rejects.toThrow(HoopError);
});

test('a query text with NUL is refused before it is sent', async () => {
  const conn = await open();
  await expect(conn.query('SELECT 1\0; DROP TABLE x')).rejects.toThrow(/NUL/);
  expect((await conn.query('SELECT 5'))[0]!.rows).toEqual([['5']]);
});
