/**
 * The gateway's catalog snapshot against a real PostgreSQL: every relation kind, live columns in
 * attnum order, view definitions, other sessions' temporary tables, names in several schemas,
 * function kinds; and the cache's loading rules (single flight, invalidate, TTL refresh in the
 * background, refreshFor at most once per interval, safe errors). Loads are counted by the dials
 * the cache makes: each load opens one connection of its own.
 */
import { createServer, type AddressInfo } from 'node:net';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, test } from 'vitest';
import { SchemaCache, SchemaLoadError, type SchemaCacheOptions, type SchemaSnapshot } from '../../src/gateway/schema-cache.js';
import { tcpDial } from '../../src/protocols/postgres/upstream.js';
import type { UpstreamConfig } from '../../src/protocols/engine.js';
import { createTestDatabase, passwordOf } from '../helpers/postgres.js';
import { until } from '../helpers/poll.js';
import { upstreamConfig } from '../protocols/postgres/engine-harness.js';

const shared = inject('upstream');
let db: Awaited<ReturnType<typeof createTestDatabase>>;
let cfg: UpstreamConfig;
let direct: pg.Client;
const clients: pg.Client[] = [];

async function connectDirect(): Promise<pg.Client> {
  const c = new pg.Client({ host: db.info.host, port: db.info.port, user: db.info.users.trust, database: db.info.database });
  await c.connect();
  clients.push(c);
  return c;
}

/** A cache whose loads are counted, on a clock the test moves. */
function counted(options: SchemaCacheOptions & { upstream?: UpstreamConfig } = {}) {
  const clock = { t: 1_000_000 };
  const upstream = options.upstream ?? cfg;
  const state = { dials: 0, failing: false };
  const cache = new SchemaCache(
    upstream,
    () => {
      state.dials++;
      return state.failing ? Promise.reject(new Error('dial refused by the test')) : tcpDial(upstream);
    },
    { now: () => clock.t, ...options },
  );
  return { cache, clock, state };
}

beforeAll(async () => {
  db = await createTestDatabase(shared, 'schemacache');
  cfg = upstreamConfig(db.info);
  direct = await connectDirect();
  await direct.query(`
    CREATE TABLE customers (id int PRIMARY KEY, ssn text, email varchar(200));
    CREATE VIEW v_customers AS SELECT id, ssn FROM customers;
    CREATE VIEW v_v_customers AS SELECT ssn AS s FROM v_customers;
    CREATE MATERIALIZED VIEW mv_emails AS SELECT id, email FROM customers;
    CREATE TABLE events (id int, at date, payload text) PARTITION BY RANGE (at);
    CREATE TABLE events_2024 PARTITION OF events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
    -- A foreign table without any extension: a wrapper with no handler is enough for the catalog.
    CREATE FOREIGN DATA WRAPPER hoop_test_fdw;
    CREATE SERVER hoop_test_srv FOREIGN DATA WRAPPER hoop_test_fdw;
    CREATE FOREIGN TABLE remote_accounts (account_number text, balance numeric) SERVER hoop_test_srv;
    CREATE TABLE wide (a int, gone text, b bigint, also_gone int, c varchar(5));
    ALTER TABLE wide DROP COLUMN gone;
    ALTER TABLE wide DROP COLUMN also_gone;
    CREATE SCHEMA crm;
    CREATE TABLE crm.customers (customer_id int, "Full Name" text);
    CREATE TABLE "MixedCase" (x int);
    CREATE FUNCTION public.my_fn() RETURNS int LANGUAGE sql AS 'SELECT 1';
    CREATE FUNCTION crm.my_fn(int) RETURNS int LANGUAGE sql AS 'SELECT $1';
    CREATE FUNCTION public.lower(int) RETURNS int LANGUAGE sql AS 'SELECT $1';
    CREATE DOMAIN crm.positive AS int CHECK (VALUE > 0);
    CREATE DOMAIN crm.text AS pg_catalog.text CHECK (VALUE <> 'x');
    CREATE TABLE checked_t (id int REFERENCES customers, code text CHECK (code <> 'x'), qty crm.positive, free text);
    CREATE TABLE whole_row_t (a int, b text, CHECK (whole_row_t IS NOT NULL));
    CREATE TABLE keyed_t (a int PRIMARY KEY, b text UNIQUE, c text, e text); CREATE UNIQUE INDEX ON keyed_t (c);
    CREATE TABLE partial_t (x int, y text); CREATE UNIQUE INDEX ON partial_t (x) WHERE y <> '';
    CREATE TABLE ledger (id int, amount numeric) PARTITION BY RANGE (id);
    CREATE TABLE ledger_low PARTITION OF ledger FOR VALUES FROM (0) TO (100);
    CREATE TABLE base_log (id int); CREATE TABLE child_log () INHERITS (base_log);
  `);
});
afterAll(async () => {
  for (const c of clients) await c.end().catch(() => {});
  await db?.drop();
});

async function oidOf(name: string): Promise<number> {
  return Number((await direct.query(`SELECT $1::regclass::oid AS oid`, [name])).rows[0].oid);
}

describe('the snapshot', () => {
  let snap: SchemaSnapshot;
  let tempOwner: pg.Client;
  beforeAll(async () => {
    // Another session's temporary table (a hoop session's looks the same from here).
    tempOwner = await connectDirect();
    await tempOwner.query('CREATE TEMP TABLE scratch (ssn_copy text, n int)');
    snap = await new SchemaCache(cfg, () => tcpDial(cfg)).snapshot();
  });

  test('a table: kind, oid, live columns in attnum order with their type oids', async () => {
    const [rel, ...more] = snap.relations('public', 'customers');
    expect(more).toEqual([]);
    expect(rel).toMatchObject({ oid: await oidOf('public.customers'), schema: 'public', name: 'customers', kind: 'table' });
    expect(rel!.columns).toEqual([
      { name: 'id', attnum: 1, typeOid: 23 },
      { name: 'ssn', attnum: 2, typeOid: 25 },
      { name: 'email', attnum: 3, typeOid: 1043 },
    ]);
    expect(rel!.definition).toBeUndefined();
  });

  test('views, a view of a view and a materialized view carry their definitions', () => {
    const [v] = snap.relations('public', 'v_customers');
    expect(v).toMatchObject({ kind: 'view', columns: [{ name: 'id', attnum: 1, typeOid: 23 }, { name: 'ssn', attnum: 2, typeOid: 25 }] });
    // Read with search_path pg_catalog, the definition names every other relation with its schema.
    expect(v!.definition).toMatch(/^\s*SELECT\b[\s\S]*\bFROM public\.customers;$/);
    const [vv] = snap.relations('public', 'v_v_customers');
    expect(vv).toMatchObject({ kind: 'view', columns: [{ name: 's', attnum: 1, typeOid: 25 }] });
    expect(vv!.definition).toMatch(/FROM public\.v_customers/);
    const [mv] = snap.relations('public', 'mv_emails');
    expect(mv).toMatchObject({ kind: 'matview', columns: [{ name: 'id', attnum: 1 }, { name: 'email', attnum: 2, typeOid: 1043 }] });
    expect(mv!.definition).toMatch(/FROM public\.customers/);
    expect(snap.unreadViews).toEqual([]);
  });

  test('a partitioned table and its partition; a foreign table', () => {
    expect(snap.relations('public', 'events')[0]).toMatchObject({ kind: 'partitioned', columns: [{ name: 'id' }, { name: 'at', typeOid: 1082 }, { name: 'payload' }] });
    expect(snap.relations('public', 'events_2024')[0]).toMatchObject({ kind: 'table' });
    expect(snap.relations('public', 'remote_accounts')[0]).toMatchObject({ kind: 'foreign', columns: [{ name: 'account_number', attnum: 1, typeOid: 25 }, { name: 'balance', attnum: 2, typeOid: 1700 }] });
  });

  test('dropped columns are left out and the live ones keep their attnums', () => {
    expect(snap.relations('public', 'wide')[0]!.columns).toEqual([
      { name: 'a', attnum: 1, typeOid: 23 },
      { name: 'b', attnum: 3, typeOid: 20 },
      { name: 'c', attnum: 5, typeOid: 1043 },
    ]);
  });

  test("another session's temporary table is found, qualified by pg_temp or unqualified", async () => {
    const tempSchema = (await tempOwner.query(`SELECT nspname FROM pg_namespace WHERE oid = pg_my_temp_schema()`)).rows[0].nspname as string;
    expect(tempSchema).toMatch(/^pg_temp_\d+$/);
    const viaAlias = snap.relations('pg_temp', 'scratch');
    expect(viaAlias).toHaveLength(1);
    expect(viaAlias[0]).toMatchObject({ schema: tempSchema, kind: 'table', columns: [{ name: 'ssn_copy', attnum: 1 }, { name: 'n', attnum: 2 }] });
    expect(snap.relations(tempSchema, 'scratch')).toEqual(viaAlias);
    expect(snap.relations(null, 'scratch')).toEqual(viaAlias);
  });

  test('the same name in two schemas: unqualified gives both, qualified one; names are matched as stored', () => {
    const both = snap.relations(null, 'customers');
    expect(both.map((r) => r.schema).sort()).toEqual(['crm', 'public']);
    expect(snap.relations('crm', 'customers')[0]!.columns.map((c) => c.name)).toEqual(['customer_id', 'Full Name']);
    expect(snap.relations('nope', 'customers')).toEqual([]);
    expect(snap.relations(null, 'mixedcase')).toEqual([]);
    expect(snap.relations(null, 'MixedCase')).toHaveLength(1);
    // The lists handed out are the caller's: changing one changes nothing here.
    both.pop();
    expect(snap.relations(null, 'customers')).toHaveLength(2);
  });

  test('the system catalogs and information_schema are there too', () => {
    expect(snap.relations('pg_catalog', 'pg_class')[0]).toMatchObject({ kind: 'table' });
    expect(snap.relations(null, 'pg_stats')[0]).toMatchObject({ schema: 'pg_catalog', kind: 'view' });
    expect(snap.relations('pg_catalog', 'pg_stats')[0]!.definition).toMatch(/pg_statistic/);
    expect(snap.relations('information_schema', 'columns')[0]).toMatchObject({ kind: 'view' });
  });

  test('parents and children: the tables a partition belongs to or a table inherits from, and the other way (pg_inherits)', async () => {
    expect(snap.relations('public', 'ledger_low')[0]!.parents).toEqual([await oidOf('ledger')]);
    expect(snap.relations('public', 'child_log')[0]!.parents).toEqual([await oidOf('base_log')]);
    expect(snap.relations('public', 'ledger')[0]!.parents).toBeUndefined();
    // ... and the other way: reading a parent reads its children's rows.
    expect(snap.relations('public', 'ledger')[0]!.children).toEqual([await oidOf('ledger_low')]);
    expect(snap.relations('public', 'base_log')[0]!.children).toEqual([await oidOf('child_log')]);
    expect(snap.relations('public', 'child_log')[0]!.children).toBeUndefined();
  });

  test('constraints and domains: the columns CHECK, FOREIGN KEY, key and exclusion constraints and unique indexes read, and domain-typed columns', () => {
    const t = snap.relations('public', 'checked_t')[0]!;
    expect(t).toMatchObject({ checks: ['code'], keys: ['id'] });
    expect(t.columns.filter((c) => c.domain).map((c) => c.name)).toEqual(['qty']);
    expect(snap.relations('public', 'whole_row_t')[0]!.checks).toEqual(['a', 'b']);
    // Keys and unique indexes; a partial or expression index reads any column.
    expect(snap.relations('public', 'keyed_t')[0]!).toMatchObject({ keys: ['a', 'b', 'c'] });
    expect(snap.relations('public', 'keyed_t')[0]!.checks).toBeUndefined();
    expect(snap.relations('public', 'partial_t')[0]!.keys).toEqual(['x', 'y']);
    // FOREIGN KEY columns with what they reference (checked_t.id REFERENCES customers, its primary key).
    expect(t.references).toEqual([{ column: 'id', relation: snap.relations('public', 'customers')[0]!.oid, referenced: 'id' }]);
    expect(snap.relations('public', 'wide')[0]).not.toHaveProperty('keys');
    expect(snap.relations('public', 'wide')[0]).not.toHaveProperty('checks');
  });

  test('types outside pg_catalog named like the built-in text types', () => {
    expect(snap.typeShadowed('text')).toBe(true);
    expect(snap.typeShadowed('varchar')).toBe(false);
  });

  test('relationByOid', async () => {
    const oid = await oidOf('crm.customers');
    expect(snap.relationByOid(oid)).toBe(snap.relations('crm', 'customers')[0]);
    expect(snap.relationByOid(await oidOf('pg_catalog.pg_class'))).toMatchObject({ schema: 'pg_catalog', name: 'pg_class' });
    expect(snap.relationByOid(1)).toBeUndefined();
  });

  test('functions: builtin, user (also an unqualified name a user schema defines), unknown', () => {
    expect(snap.functionKind(null, 'upper')).toBe('builtin');
    expect(snap.functionKind('pg_catalog', 'upper')).toBe('builtin');
    expect(snap.functionKind('public', 'upper')).toBe('unknown');
    expect(snap.functionKind(null, 'my_fn')).toBe('user');
    expect(snap.functionKind('public', 'my_fn')).toBe('user');
    expect(snap.functionKind('crm', 'my_fn')).toBe('user');
    expect(snap.functionKind('pg_catalog', 'my_fn')).toBe('unknown');
    // public.lower shadows nothing by itself, but an unqualified call may reach it.
    expect(snap.functionKind(null, 'lower')).toBe('user');
    expect(snap.functionKind('pg_catalog', 'lower')).toBe('builtin');
    expect(snap.functionKind(null, 'no_such_function')).toBe('unknown');
    expect(snap.functionKind('nope', 'upper')).toBe('unknown');
    expect(snap.userFunctionSchemas('my_fn')).toEqual(['crm', 'public']);
    expect(snap.userFunctionSchemas('lower')).toEqual(['public']);
    expect(snap.userFunctionSchemas('upper')).toEqual([]);
    expect(snap.userFunctionSchemas('no_such_function')).toEqual([]);
  });

  test('set-returning functions (their arguments decide how many rows there are)', () => {
    for (const name of ['generate_series', 'unnest', 'regexp_matches', 'regexp_split_to_table', 'jsonb_array_elements', 'string_to_table']) {
      expect(snap.returnsSet(null, name), name).toBe(true);
      expect(snap.returnsSet('pg_catalog', name), name).toBe(true);
    }
    for (const name of ['upper', 'string_agg', 'my_fn', 'no_such_function']) expect(snap.returnsSet(null, name), name).toBe(false);
    expect(snap.returnsSet('public', 'generate_series')).toBe(false);
  });

  test('aggregates and information_schema functions are named too', () => {
    expect(snap.functionKind(null, 'string_agg')).toBe('builtin');
    expect(snap.functionKind('information_schema', '_pg_expandarray')).toBe('user');
  });
});

describe('the cache', () => {
  test('concurrent first callers share one load; a fresh snapshot is served without loading', async () => {
    const { cache, state } = counted();
    const all = await Promise.all([cache.snapshot(), cache.snapshot(), cache.snapshot()]);
    expect(state.dials).toBe(1);
    expect(all[1]).toBe(all[0]);
    expect(all[0]!.version).toBe(1);
    expect(await cache.snapshot()).toBe(all[0]);
    expect(state.dials).toBe(1);
  });

  test('invalidate(): the next snapshot() is a new load that sees the DDL', async () => {
    const { cache, state } = counted();
    const first = await cache.snapshot();
    await direct.query('CREATE TABLE after_ddl (k int)');
    expect((await cache.snapshot()).relations(null, 'after_ddl')).toEqual([]); // still fresh: cached
    cache.invalidate();
    const second = await cache.snapshot();
    expect(second.version).toBe(first.version + 1);
    expect(second.relations('public', 'after_ddl')[0]).toMatchObject({ kind: 'table', columns: [{ name: 'k' }] });
    expect(state.dials).toBe(2);
  });

  test('invalidate() during a load: callers after it wait for a load that began after it', async () => {
    const { cache, state } = counted();
    const before = cache.snapshot();
    cache.invalidate();
    await direct.query('CREATE TABLE during_load (k int)');
    const after = cache.snapshot();
    const [a, b] = await Promise.all([before, after]);
    expect(b).not.toBe(a);
    expect(b.relations(null, 'during_load')).toHaveLength(1);
    expect(state.dials).toBe(2);
    expect(await cache.snapshot()).toBe(b);
  });

  test('past the TTL the stale snapshot is served and one background reload replaces it', async () => {
    const { cache, clock, state } = counted({ ttlMs: 30_000 });
    const first = await cache.snapshot();
    await direct.query('CREATE TABLE after_ttl (k int)');
    clock.t += 29_999;
    expect(await cache.snapshot()).toBe(first);
    expect(state.dials).toBe(1);
    clock.t += 1;
    const stale = await Promise.all([cache.snapshot(), cache.snapshot(), cache.snapshot()]);
    expect(stale.every((s) => s === first)).toBe(true);
    const refreshed = await until(() => (cache.last !== first ? cache.last : null), { what: 'the background reload' });
    expect(refreshed.version).toBe(first.version + 1);
    expect(refreshed.relations(null, 'after_ttl')).toHaveLength(1);
    expect(await cache.snapshot()).toBe(refreshed);
    expect(state.dials).toBe(2);
  });

  test('a failed background reload keeps the snapshot in use and is reported; retries wait for the interval', async () => {
    const errors: SchemaLoadError[] = [];
    const { cache, clock, state } = counted({ ttlMs: 1_000, refreshIntervalMs: 500, onBackgroundError: (e) => errors.push(e) });
    const first = await cache.snapshot();
    state.failing = true;
    clock.t += 1_000;
    expect(await cache.snapshot()).toBe(first);
    await until(() => errors.length === 1, { what: 'the background failure' });
    expect(errors[0]).toBeInstanceOf(SchemaLoadError);
    expect(await cache.snapshot()).toBe(first);
    expect(state.dials).toBe(2); // no retry within the interval
    clock.t += 500;
    state.failing = false;
    expect(await cache.snapshot()).toBe(first);
    await until(() => cache.last !== first, { what: 'the retried reload' });
    expect(state.dials).toBe(3);
  });

  test('refreshFor reloads for a missing relation at most once per interval', async () => {
    const { cache, clock, state } = counted({ refreshIntervalMs: 1_000 });
    const first = await cache.snapshot();
    // Names the snapshot has: no reload.
    expect(await cache.refreshFor([{ schema: 'public', name: 'customers' }, { schema: null, name: 'wide' }])).toBe(first);
    expect(state.dials).toBe(1);

    await direct.query('CREATE TABLE made_outside_1 (k int)');
    const missing = [{ schema: null, name: 'made_outside_1' }];
    const [r1, r2, r3] = await Promise.all([cache.refreshFor(missing), cache.refreshFor(missing), cache.refreshFor(missing)]);
    expect(state.dials).toBe(2);
    expect(r2).toBe(r1);
    expect(r3).toBe(r1);
    expect(r1.relations(null, 'made_outside_1')).toHaveLength(1);

    // Within the interval, even for another missing name: what there is.
    await direct.query('CREATE TABLE made_outside_2 (k int)');
    const again = await cache.refreshFor([{ schema: 'public', name: 'made_outside_2' }]);
    expect(again).toBe(r1);
    expect(again.relations('public', 'made_outside_2')).toEqual([]);
    expect(await cache.refreshFor([{ schema: null, name: 'never_exists' }])).toBe(r1);
    expect(state.dials).toBe(2);

    clock.t += 1_000;
    const later = await cache.refreshFor([{ schema: 'public', name: 'made_outside_2' }]);
    expect(later.version).toBe(r1.version + 1);
    expect(later.relations('public', 'made_outside_2')).toHaveLength(1);
    expect(state.dials).toBe(3);
  });

  test('a view whose definition a DDL in progress keeps locked is left without one, and the snapshot is reloaded soon', async () => {
    await direct.query('CREATE TABLE locked_base (k int, secret text); CREATE VIEW v_locked AS SELECT secret FROM locked_base; CREATE VIEW v_free AS SELECT 1 AS one');
    const migrator = await connectDirect();
    await migrator.query('BEGIN; ALTER TABLE locked_base ADD COLUMN extra int');
    const { cache, clock, state } = counted({ ttlMs: 30_000, refreshIntervalMs: 1_000 });
    let snap: SchemaSnapshot;
    try {
      snap = await cache.snapshot(); // does not wait for the lock (lock_timeout would fail it)
      const [v] = snap.relations('public', 'v_locked');
      expect(v).toMatchObject({ kind: 'view', columns: [{ name: 'secret' }] });
      expect(v!.definition).toBeUndefined();
      expect(snap.unreadViews).toEqual([v]);
      expect(snap.relations('public', 'v_free')[0]!.definition).toMatch(/SELECT 1 AS one/);
    } finally {
      await migrator.query('ROLLBACK');
    }
    clock.t += 1_000; // the refresh interval, not the TTL
    expect(await cache.snapshot()).toBe(snap);
    const next = await until(() => (cache.last !== snap ? cache.last : null), { what: 'the reload of the incomplete snapshot' });
    expect(next.unreadViews).toEqual([]);
    expect(next.relations('public', 'v_locked')[0]!.definition).toMatch(/FROM public\.locked_base/);
    expect(state.dials).toBe(2);
  });
});

describe('load failures', () => {
  test('a wrong password rejects with a message naming neither password nor host', async () => {
    const wrong = { ...cfg, password: 'Wr0ng-Pa55word-xyz' };
    const { cache } = counted({ upstream: wrong });
    const err = await cache.snapshot().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SchemaLoadError);
    const { message, detail } = err as SchemaLoadError;
    expect(message).toMatch(/could not read the database catalog: the database refused the gateway's login \(SQLSTATE 28P01\)/);
    for (const secret of [wrong.password, passwordOf(cfg.user), cfg.host, String(cfg.port), cfg.user]) expect(message).not.toContain(secret);
    expect(detail).not.toContain(wrong.password);
    expect(detail).toContain(`${cfg.host}:${cfg.port}`); // for the gateway's log
    expect(cache.last).toBeNull();
  });

  test('an unreachable port rejects with a message naming neither password nor port', async () => {
    const probe = createServer();
    await new Promise<void>((r) => probe.listen(0, '127.0.0.1', () => r()));
    const port = (probe.address() as AddressInfo).port;
    await new Promise((r) => probe.close(r));
    const { cache } = counted({ upstream: { ...cfg, port } });
    const err = (await cache.snapshot().catch((e: unknown) => e)) as SchemaLoadError;
    expect(err).toBeInstanceOf(SchemaLoadError);
    expect(err.message).toMatch(/unreachable from the gateway/);
    expect(err.message).not.toContain(cfg.password!);
    expect(err.message).not.toContain(String(port));
  });

  test('a failed reload after invalidate() rejects; the previous snapshot stays available as last, and the next call retries', async () => {
    const { cache, state } = counted();
    const first = await cache.snapshot();
    state.failing = true;
    cache.invalidate();
    await expect(cache.snapshot()).rejects.toBeInstanceOf(SchemaLoadError);
    expect(cache.last).toBe(first);
    state.failing = false;
    const second = await cache.snapshot();
    expect(second.version).toBe(first.version + 1);
    expect(state.dials).toBe(3);
  });
});
