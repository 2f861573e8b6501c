import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { afterAll, describe, expect, inject, test } from 'vitest';
import { PostgresCluster, freePort } from '../../src/demo/postgres-cluster.js';
import { StoreError } from '../../src/errors.js';
import { openStore } from '../../src/store/index.js';
import { POSTGRES_MIGRATIONS } from '../../src/store/migrations.js';
import { PostgresStore } from '../../src/store/postgres.js';
import type { Store } from '../../src/store/store.js';
import { until } from '../helpers/poll.js';
import { event, storeSuite } from './store-suite.js';

const upstream = inject('upstream');
const admin = () => new pg.Client({ host: upstream.host, port: upstream.port, user: upstream.users.trust, database: upstream.database });
const urlOf = (db: string) => `postgres://${upstream.users.trust}@${upstream.host}:${upstream.port}/${db}`;

const databases: string[] = [];
const dbOf = new WeakMap<Store, string>();

async function createDatabase(): Promise<string> {
  const name = `hoop_store_${randomBytes(6).toString('hex')}`;
  const c = admin();
  await c.connect();
  try {
    await c.query(`CREATE DATABASE ${name}`);
  } finally {
    await c.end();
  }
  databases.push(name);
  return name;
}

afterAll(async () => {
  const c = admin();
  await c.connect();
  for (const name of databases) await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
  await c.end();
});

describe('PostgreSQL store', () => {
  storeSuite({
    dialect: 'postgres',
    async fresh() {
      const db = await createDatabase();
      const store = await openStore(urlOf(db));
      dbOf.set(store, db);
      return store;
    },
    async another(store) {
      const db = dbOf.get(store)!;
      const other = await openStore(urlOf(db));
      dbOf.set(other, db);
      return other;
    },
    async sql(store, statement) {
      const c = new pg.Client({ connectionString: urlOf(dbOf.get(store)!) });
      await c.connect();
      try {
        await c.query(statement);
      } finally {
        await c.end();
      }
    },
    async jsonColumns(store) {
      const c = new pg.Client({ connectionString: urlOf(dbOf.get(store)!) });
      await c.connect();
      try {
        // ::text: the json type keeps the text as written; pg would parse it otherwise.
        return (await c.query('SELECT actor::text, source::text, data::text FROM events ORDER BY seq')).rows;
      } finally {
        await c.end();
      }
    },
  });
});

describe('PostgreSQL store connection', () => {
  test('postgresql:// URLs work and several replicas migrating at once agree on one schema', async () => {
    const db = await createDatabase();
    const url = urlOf(db).replace(/^postgres:/, 'postgresql:');
    const stores = await Promise.all([openStore(url), openStore(url), openStore(url)]);
    const c = new pg.Client({ connectionString: url });
    await c.connect();
    const { rows } = await c.query('SELECT version FROM schema_migrations ORDER BY version');
    await c.end();
    expect(rows.map((r) => r.version)).toEqual(POSTGRES_MIGRATIONS.map((m) => m.version));
    await stores[0]!.appendEvents([event()]);
    expect((await stores[2]!.head())!.seq).toBe(1);
    await Promise.all(stores.map((s) => s.close()));
  });

  test('an unreachable server rejects with StoreError that never shows the password', async () => {
    const port = await freePort();
    const err = await openStore(`postgres://hoop:s3cr3t-p%40ss@127.0.0.1:${port}/hoop`).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StoreError);
    expect((err as StoreError).code).toBe('HOOP_STORE');
    expect((err as StoreError).message).toMatch(new RegExp(`127\\.0\\.0\\.1:${port}.*ECONNREFUSED`));
    expect((err as StoreError).message).toContain('hoop:***@');
    expect((err as StoreError).message).not.toMatch(/s3cr3t/);
    expect((err as StoreError).hint).toMatch(/running and reachable/);
  });

  test('a wrong password is a StoreError without the password', async () => {
    const url = `postgres://${upstream.users.scram}:wrong-Pa55@${upstream.host}:${upstream.port}/${upstream.database}`;
    const err = (await openStore(url).catch((e: unknown) => e)) as StoreError;
    expect(err).toBeInstanceOf(StoreError);
    expect(err.message).toMatch(/password authentication failed/);
    expect(err.message).not.toMatch(/wrong-Pa55/);
  });

  test('a connection killed mid-append rejects that append with StoreError; the next append succeeds', async () => {
    const db = await createDatabase();
    const store = await openStore(urlOf(db));
    const [first] = await store.appendEvents([event()]);
    // Hold the chain lock from outside so the store's append waits inside its transaction.
    const holder = new pg.Client({ connectionString: urlOf(db) });
    await holder.connect();
    await holder.query('BEGIN');
    await holder.query(`SELECT pg_advisory_xact_lock(${0x686f6f700001})`);
    const pending = store.appendEvents([event({ data: { lost: true } })]).then(
      () => 'acknowledged',
      (err: unknown) => err,
    );
    const waiting = async () =>
      (await holder.query(`SELECT pid FROM pg_stat_activity WHERE datname = $1 AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()`, [db])).rows;
    const rows = await until(async () => {
      const w = await waiting();
      return w.length > 0 && w;
    }, { timeoutMs: 2_000, intervalMs: 20, what: "the store's append waiting on the chain lock" });
    expect(rows).toHaveLength(1);
    await holder.query('SELECT pg_terminate_backend($1)', [rows[0].pid]);
    expect(await pending).toBeInstanceOf(StoreError);
    await holder.query('COMMIT');
    await holder.end();
    const [next] = await store.appendEvents([event()]);
    expect(next!.seq).toBe(2);
    expect(next!.prev_hash).toBe(first!.hash);
    expect((await store.readEvents({})).some((e) => e.data['lost'])).toBe(false);
    await store.close();
  });

  test('an append that cannot get the chain lock in time fails closed with StoreError', async () => {
    const db = await createDatabase();
    await (await openStore(urlOf(db))).close(); // migrated
    const store = new PostgresStore(urlOf(db), { lockTimeoutMs: 200 });
    const holder = new pg.Client({ connectionString: urlOf(db) });
    await holder.connect();
    await holder.query('BEGIN');
    await holder.query(`SELECT pg_advisory_xact_lock(${0x686f6f700001})`);
    try {
      const started = Date.now();
      const err = await store.appendEvents([event()]).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(StoreError);
      expect((err as StoreError).message).toMatch(/lock timeout/);
      expect(Date.now() - started).toBeLessThan(5000);
    } finally {
      await holder.query('COMMIT');
      await holder.end();
    }
    expect((await store.appendEvents([event()]))[0]!.seq).toBe(1);
    await store.close();
  });

  test('a server that goes away makes appends reject with StoreError, writing nothing acknowledged', async () => {
    const cluster = await PostgresCluster.start({ name: 'hoop-store-down' });
    try {
      const store = await openStore(cluster.url());
      const [first] = await store.appendEvents([event()]);
      expect(first!.seq).toBe(1);
      await cluster.stop();
      await expect(store.appendEvents([event()])).rejects.toBeInstanceOf(StoreError);
      await expect(store.head()).rejects.toBeInstanceOf(StoreError);
      await store.close();
    } finally {
      await cluster.stop();
    }
  });
});
