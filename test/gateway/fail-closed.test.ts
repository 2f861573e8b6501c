/**
 * FAIL CLOSED: with the audit store down, a statement is refused before it reaches the upstream,
 * the client session survives, and once the store is back statements run and are recorded again.
 * The store is a PostgreSQL store on a dedicated throwaway cluster that the test stops and starts.
 */
import { execFile } from 'node:child_process';
import { userInfo } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { request } from 'undici';
import { afterAll, beforeAll, expect, inject, test } from 'vitest';
import { PostgresCluster, findPostgresBindir } from '../../src/demo/postgres-cluster.js';
import { until } from '../helpers/poll.js';
import { passwordOf } from '../helpers/postgres.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { tunnelClient } from './ws-client.js';

const execFileAsync = promisify(execFile);
const upstream = inject('upstream');
const table = `fail_closed_${process.pid}`;
let storeCluster: PostgresCluster;
let gw: TestGateway;
let direct: pg.Client;

/** pg_ctl on the store cluster's data directory, keeping the directory (unlike cluster.stop()). */
async function pgCtl(action: 'stop' | 'start'): Promise<void> {
  const bin = join(findPostgresBindir()!, 'pg_ctl');
  const data = join(storeCluster.dir, 'data');
  const args = action === 'stop'
    ? ['-D', data, '-m', 'immediate', '-w', 'stop']
    : ['-D', data, '-l', join(storeCluster.dir, 'postgres.log'), '-w', '-t', '60', 'start'];
  const [file, argv] = userInfo().uid === 0 ? ['runuser', ['-u', 'postgres', '--', bin, ...args]] : [bin, args];
  await execFileAsync(file, argv, { cwd: storeCluster.dir });
}

beforeAll(async () => {
  storeCluster = await PostgresCluster.start({ name: 'hoop-store-pg' });
  gw = await startTestGateway({ upstream, store: storeCluster.url('postgres', 'postgres') });
  direct = new pg.Client({ host: upstream.host, port: upstream.port, database: upstream.database, user: upstream.users.scram, password: passwordOf(upstream.users.scram) });
  await direct.connect();
  await direct.query(`CREATE TABLE ${table} (v int)`);
});

afterAll(async () => {
  await direct?.query(`DROP TABLE IF EXISTS ${table}`).catch(() => {});
  await direct?.end();
  await gw?.close();
  await storeCluster?.stop();
});

test('store down: the INSERT is refused and never reaches the upstream; the session survives and recovers', async () => {
  const client = await tunnelClient(gw.url, 'bank', gw.keys['alice']);
  await client.query(`INSERT INTO ${table} VALUES (1)`);

  await pgCtl('stop');
  const refused = await client.query(`INSERT INTO ${table} VALUES (2)`).then(() => null, (err: Error & { code?: string }) => err);
  expect(refused).not.toBeNull();
  expect(refused!.message).toMatch(/audit/i);
  expect((await direct.query(`SELECT v FROM ${table} ORDER BY v`)).rows).toEqual([{ v: 1 }]);
  // A new session cannot start unrecorded either, and health says why.
  await expect(tunnelClient(gw.url, 'bank', gw.keys['bob'])).rejects.toThrow(/audit/i);
  const health = await request(`${gw.url}/healthz`);
  expect(health.statusCode).toBe(503);
  expect(await health.body.json()).toMatchObject({ status: 'unavailable', store: 'unreachable' });

  await pgCtl('start');
  // The session is still open; the store's pool reconnects on its own: once health says the store
  // answers again, the next statement on the old session is recorded and runs.
  await until(async () => {
    const health = await request(`${gw.url}/healthz`);
    await health.body.dump();
    return health.statusCode === 200;
  }, { timeoutMs: 10_000, intervalMs: 100, what: 'healthz 200 again' });
  await client.query(`INSERT INTO ${table} VALUES (3)`);
  expect((await client.query('SELECT 42 AS answer')).rows).toEqual([{ answer: 42 }]);
  await client.end();

  expect((await direct.query(`SELECT v FROM ${table} ORDER BY v`)).rows).toEqual([{ v: 1 }, { v: 3 }]);
  const statements = (await gw.store.readEvents({})).filter((e) => e.type === 'query.start').map((e) => e.data['statement']);
  expect(statements).toContain(`INSERT INTO ${table} VALUES (1)`);
  expect(statements).toContain(`INSERT INTO ${table} VALUES (3)`);
  expect(statements).toContain('SELECT 42 AS answer');
  expect(statements).not.toContain(`INSERT INTO ${table} VALUES (2)`);
  expect((await gw.store.listSessions({ subject: 'apikey:bob' }))).toEqual([]);
  expect((await request(`${gw.url}/healthz`)).statusCode).toBe(200);
});
