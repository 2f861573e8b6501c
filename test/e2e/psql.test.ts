/**
 * End to end through the real path a user takes: psql / pg / pgbench / pg_dump on localhost ->
 * `hoop connect`'s local listener -> WebSocket tunnel -> gateway engine -> PostgreSQL.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, test } from 'vitest';
import { openLocalTunnel, type LocalTunnel } from '../../src/client/tunnel.js';
import { collect, clientEnv, psql, runClient } from '../helpers/clients.js';
import { startTestGateway } from '../helpers/gateway.js';
import { createTestDatabase, runningPids, untilRunning, type UpstreamInfo } from '../helpers/postgres.js';

const shared = inject('upstream');
let upstream: UpstreamInfo;
let database: Awaited<ReturnType<typeof createTestDatabase>>;

let gateway: Awaited<ReturnType<typeof startTestGateway>>;
let tunnel: LocalTunnel;
let work: string;

beforeAll(async () => {
  database = await createTestDatabase(shared, 'hoop_e2e');
  upstream = database.info;
  gateway = await startTestGateway({ upstream });
  const key = Object.values(gateway.keys)[0]!;
  tunnel = await openLocalTunnel({
    gateway: gateway.url,
    connection: 'bank',
    token: async () => key,
    port: 0,
    user: 'tester',
    database: upstream.database,
  });
  work = mkdtempSync(join(tmpdir(), 'hoop-e2e-'));
  await psql(tunnel.uri, ['-c', 'DROP TABLE IF EXISTS e2e_items; CREATE TABLE e2e_items (id int primary key, name text, price numeric(10,2))']);
});

afterAll(async () => {
  await tunnel?.close();
  await gateway?.close();
  await database?.drop();
  if (work) rmSync(work, { recursive: true, force: true });
});

async function statementsRecorded(): Promise<string[]> {
  const events = await gateway.store.readEvents({});
  return events.filter((e) => e.type === 'query.start').map((e) => String(e.data['statement']));
}

describe('psql through the tunnel', () => {
  test('-c, multi-statement strings and results', async () => {
    const r = await psql(tunnel.uri, ['-c', "INSERT INTO e2e_items VALUES (1, 'pen', 1.50), (2, 'ink', 7.25); SELECT count(*) FROM e2e_items"]);
    expect(r.stderr).toBe('');
    expect(r.stdout.trim().split('\n')).toEqual(['INSERT 0 2', '2']);
    expect(await statementsRecorded()).toContain("INSERT INTO e2e_items VALUES (1, 'pen', 1.50), (2, 'ink', 7.25); SELECT count(*) FROM e2e_items");
  });

  test('-f with an error in the middle leaves the session usable', async () => {
    const file = join(work, 'script.sql');
    writeFileSync(file, "SELECT 'before';\nSELECT * FROM no_such_table;\nSELECT 'after';\n");
    const r = await psql(tunnel.uri, ['-f', file], { onErrorStop: false });
    expect(r.stdout).toContain('before');
    expect(r.stdout).toContain('after');
    expect(r.stderr).toMatch(/relation "no_such_table" does not exist/);
  });

  test('stdin script with a transaction, an error and a rollback', async () => {
    const r = await psql(tunnel.uri, [], {
      onErrorStop: false,
      input: "BEGIN;\nINSERT INTO e2e_items VALUES (3, 'cap', 2);\nSELECT 1/0;\nROLLBACK;\nSELECT count(*) FROM e2e_items WHERE id = 3;\n",
    });
    expect(r.stderr).toMatch(/division by zero/);
    expect(r.stdout.trim().split('\n').pop()).toBe('0');
  });

  test('\\d and other catalog commands', async () => {
    const r = await psql(tunnel.uri, ['-c', '\\d e2e_items']);
    expect(r.stdout).toMatch(/price\|numeric\(10,2\)/);
    const tables = await psql(tunnel.uri, ['-c', '\\dt']);
    expect(tables.stdout).toContain('e2e_items');
    const functions = await psql(tunnel.uri, ['-c', '\\df pg_sleep']);
    expect(functions.stdout).toContain('pg_sleep');
  });

  test('\\copy in and out', async () => {
    const csv = join(work, 'items.csv');
    writeFileSync(csv, Array.from({ length: 500 }, (_, i) => `${100 + i},item ${i},${i}.01`).join('\n') + '\n');
    const inRun = await psql(tunnel.uri, ['-c', `\\copy e2e_items FROM '${csv}' WITH (FORMAT csv)`]);
    expect(inRun.stderr).toBe('');
    const out = join(work, 'out.csv');
    const outRun = await psql(tunnel.uri, ['-c', `\\copy (SELECT * FROM e2e_items WHERE id >= 100 ORDER BY id) TO '${out}' WITH (FORMAT csv)`]);
    expect(outRun.stderr).toBe('');
    expect(readFileSync(out, 'utf8')).toBe(readFileSync(csv, 'utf8').replace(/\.01\n/g, '.01\n'));
  });

  test('Ctrl-C in psql cancels pg_sleep upstream', async () => {
    const SLEEP = 'SELECT pg_sleep(30) AS psql_ctrl_c';
    const child = spawn('psql', ['-X', '-w', '-d', tunnel.uri, '-c', SLEEP], { env: clientEnv(), stdio: ['pipe', 'pipe', 'pipe'] });
    const done = collect(child, 20_000);
    // wait until the sleep is visible upstream, then interrupt psql like a terminal would
    const direct = new pg.Client({ host: upstream.host, port: upstream.port, user: upstream.users.trust, database: upstream.database });
    await direct.connect();
    try {
      await untilRunning(direct, SLEEP);
      const started = Date.now();
      child.kill('SIGINT');
      const r = await done;
      expect(r.stderr).toMatch(/canceling statement due to user request/);
      expect(Date.now() - started).toBeLessThan(10_000);
      expect(await runningPids(direct, SLEEP)).toEqual([]);
    } finally {
      await direct.end();
    }
  });

  test('the local port refuses a wrong password', async () => {
    const wrong = tunnel.uri.replace(encodeURIComponent(tunnel.password), 'not-the-password');
    expect(wrong).not.toBe(tunnel.uri);
    const r = await psql(wrong, ['-c', 'SELECT 1']);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/password authentication failed/);
  });

  test('no password at all is refused', async () => {
    const r = await runClient('psql', ['-X', '-w', '-h', tunnel.host, '-p', String(tunnel.port), '-U', tunnel.user, '-d', tunnel.database, '-c', 'SELECT 1']);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/password/);
  });
});

describe('the pg driver through the tunnel', () => {
  let client: pg.Client;
  beforeAll(async () => {
    client = new pg.Client({ host: tunnel.host, port: tunnel.port, user: tunnel.user, password: tunnel.password, database: tunnel.database });
    await client.connect();
  });
  afterAll(async () => {
    await client?.end();
  });

  test('parameters are bound and recorded decoded', async () => {
    const { rows } = await client.query('SELECT $1::int + $2::int AS sum, $3::text AS word', [40, 2, 'vault']);
    expect(rows[0]).toEqual({ sum: 42, word: 'vault' });
    const events = await gateway.store.readEvents({});
    const start = events.find((e) => e.type === 'query.start' && e.data['statement'] === 'SELECT $1::int + $2::int AS sum, $3::text AS word');
    expect(start?.data['parameters']).toEqual(['40', '2', 'vault']);
  });

  test('binary results', async () => {
    // pg asks for binary results only on the extended protocol, which parameters force
    // (pg-types' binary int8 decoder is wrong upstream too, so int4 and float8 here)
    const res = await client.query({ text: 'SELECT 123456::int4 * $1::int4 AS n, 2.5::float8 AS f', values: [2], binary: true } as pg.QueryConfig);
    expect(res.rows[0]).toEqual({ n: 246912, f: 2.5 });
    expect(res.fields.map((f) => f.format)).toEqual(['binary', 'binary']);
  });

  test('LISTEN / NOTIFY', async () => {
    await client.query('LISTEN hoop_e2e');
    const got = new Promise<string>((resolve) => client.once('notification', (n) => resolve(n.payload ?? '')));
    const other = new pg.Client({ host: tunnel.host, port: tunnel.port, user: tunnel.user, password: tunnel.password, database: tunnel.database });
    await other.connect();
    await other.query("NOTIFY hoop_e2e, 'ledger closed'");
    await other.end();
    expect(await got).toBe('ledger closed');
  });

  test('errors leave the connection usable', async () => {
    await expect(client.query('SELECT * FROM missing_table')).rejects.toThrow(/does not exist/);
    const { rows } = await client.query('SELECT 1 AS one');
    expect(rows[0].one).toBe(1);
  });
});

describe('benchmarks and dumps through the tunnel', () => {
  test.each(['simple', 'extended', 'prepared'])('pgbench -M %s', async (mode) => {
    const init = await runClient('pgbench', ['-i', '-s', '1', '-q', tunnel.uri], { timeoutMs: 120_000 });
    expect(init.code, init.stderr).toBe(0);
    const r = await runClient('pgbench', ['-M', mode, '-c', '4', '-j', '2', '-t', '50', tunnel.uri], { timeoutMs: 120_000 });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/number of transactions actually processed: 200\/200/);
    expect(r.stdout).toMatch(/number of failed transactions: 0/);
  });

  test('pg_dump through the tunnel produces a dump that restores', async () => {
    const dump = join(work, 'dump.sql');
    const r = await runClient('pg_dump', ['--no-owner', '-f', dump, tunnel.uri], { timeoutMs: 120_000 });
    expect(r.code, r.stderr).toBe(0);
    expect(readFileSync(dump, 'utf8')).toContain('CREATE TABLE public.e2e_items');
    const target = `hoop_restore_${process.pid}`;
    const admin = new pg.Client({ host: upstream.host, port: upstream.port, user: upstream.users.trust, database: 'postgres' });
    await admin.connect();
    try {
      await admin.query(`CREATE DATABASE ${target}`);
      const restored = await runClient('psql', ['-X', '-w', '-q', '-v', 'ON_ERROR_STOP=1', '-h', upstream.host, '-p', String(upstream.port), '-U', upstream.users.trust, '-d', target, '-f', dump]);
      expect(restored.code, restored.stderr).toBe(0);
      const counts = await runClient('psql', ['-X', '-w', '-At', '-h', upstream.host, '-p', String(upstream.port), '-U', upstream.users.trust, '-d', target, '-c', 'SELECT count(*) FROM e2e_items']);
      const original = await psql(tunnel.uri, ['-c', 'SELECT count(*) FROM e2e_items']);
      expect(counts.stdout.trim()).toBe(original.stdout.trim());
    } finally {
      await admin.query(`DROP DATABASE IF EXISTS ${target}`);
      await admin.end();
    }
  });
});
