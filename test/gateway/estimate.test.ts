/**
 * estimateRows against a real PostgreSQL, through the gateway's own admin connection: the planner's
 * row estimate for reads and writes, the statements it unwraps, null for what it cannot estimate,
 * and that it never runs a statement nor changes the connection's settings.
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, test } from 'vitest';
import { defaultSearchPath, estimateRows, splitSearchPath, ESTIMATE_DEADLINE_MS, PARAMETER_TEXT_MAX } from '../../src/gateway/estimate.js';
import { loadParser } from '../../src/policy/masking/parse.js';
import { openAdminConnection, type AdminConnection } from '../../src/protocols/postgres/admin-query.js';
import { tcpDial } from '../../src/protocols/postgres/upstream.js';
import { createTestDatabase } from '../helpers/postgres.js';
import { upstreamConfig } from '../protocols/postgres/engine-harness.js';

const shared = inject('upstream');
let db: Awaited<ReturnType<typeof createTestDatabase>>;
let admin: AdminConnection;
let direct: pg.Client;

const ROWS = 20_000;

beforeAll(async () => {
  await loadParser();
  db = await createTestDatabase(shared, 'estimate');
  const cfg = upstreamConfig(db.info);
  direct = new pg.Client({ host: cfg.host, port: cfg.port, user: cfg.user, password: cfg.password, database: cfg.database });
  await direct.connect();
  await direct.query(`CREATE TABLE customers (id int PRIMARY KEY, name text, "Weird" int);
    INSERT INTO customers SELECT g, 'n' || g, g FROM generate_series(1, ${ROWS}) g;
    CREATE TABLE small (id int); INSERT INTO small VALUES (1), (2), (3);
    ANALYZE customers; ANALYZE small;`);
  admin = await openAdminConnection(cfg, () => tcpDial(cfg));
});
afterAll(async () => {
  await admin?.close().catch(() => {});
  // The role is cluster-wide; the database goes with its grants.
  await direct?.query(`DROP OWNED BY ${db.info.database}_low; DROP ROLE ${db.info.database}_low`).catch(() => {});
  await direct?.end();
  await db?.drop();
});

const near = (n: number | null, expected: number) => {
  expect(n).not.toBeNull();
  expect(Math.abs(n! - expected)).toBeLessThanOrEqual(Math.max(2, expected * 0.1));
};

describe('estimates', () => {
  test('reads: a whole table, one row by key, a join', async () => {
    near(await estimateRows(admin, 'SELECT * FROM customers'), ROWS);
    near(await estimateRows(admin, 'SELECT * FROM public.customers WHERE id = 1'), 1);
    near(await estimateRows(admin, 'SELECT * FROM customers c JOIN small s ON s.id = c.id'), 3);
    near(await estimateRows(admin, 'TABLE customers;'), ROWS);
    near(await estimateRows(admin, '-- a comment first\nSELECT * FROM customers LIMIT 10 -- and one last'), 10);
  });

  test('writes: the rows they would change, and nothing changes', async () => {
    near(await estimateRows(admin, 'UPDATE customers SET name = name'), ROWS);
    near(await estimateRows(admin, 'DELETE FROM customers WHERE id <= 100'), 100);
    near(await estimateRows(admin, 'INSERT INTO small VALUES (4)'), 1);
    near(await estimateRows(admin, 'EXPLAIN ANALYZE DELETE FROM customers'), ROWS);
    near(await estimateRows(admin, 'EXPLAIN (ANALYZE, BUFFERS) DELETE FROM small'), 3);
    expect((await direct.query('SELECT count(*)::int AS n FROM customers')).rows[0].n).toBe(ROWS);
    expect((await direct.query('SELECT count(*)::int AS n FROM small')).rows[0].n).toBe(3);
  });

  test('unwrapped: PREPARE, COPY (query) TO, COPY table TO, DECLARE', async () => {
    near(await estimateRows(admin, 'PREPARE p AS SELECT * FROM customers WHERE id < 50'), 49);
    near(await estimateRows(admin, 'COPY (SELECT * FROM customers WHERE id < 50) TO STDOUT WITH (FORMAT csv)'), 49);
    near(await estimateRows(admin, 'COPY public.customers TO STDOUT'), ROWS);
    near(await estimateRows(admin, 'COPY customers (id, "Weird") TO STDOUT'), ROWS);
    near(await estimateRows(admin, 'DECLARE c CURSOR FOR SELECT * FROM customers'), ROWS);
  });
});

describe('parameters: planned with the values bound to them', () => {
  test('each $n as a quoted literal, typed by the planner as the parameter would be', async () => {
    near(await estimateRows(admin, 'SELECT * FROM customers WHERE id = $1', { parameters: ['7'] }), 1);
    near(await estimateRows(admin, 'SELECT * FROM customers WHERE id < $1', { parameters: [50] }), 49);
    near(await estimateRows(admin, 'SELECT * FROM customers WHERE id <= $2 AND id > $1', { parameters: ['100', '300'] }), 200);
    near(await estimateRows(admin, 'SELECT * FROM customers WHERE id = $1::int OR $2::text IS NULL', { parameters: ['1', null] }), ROWS);
    near(await estimateRows(admin, "SELECT * FROM customers WHERE name <> '$1' AND id = $1 -- $2", { parameters: [3] }), 1);
    near(await estimateRows(admin, "SELECT * FROM customers WHERE name <> 'é…' AND id = $1", { parameters: ['5'] }), 1); // byte offsets past multibyte text
    near(await estimateRows(admin, 'UPDATE customers SET name = $2 WHERE id <= $1', { parameters: ['10', 'x'] }), 10);
    expect((await direct.query("SELECT count(*)::int AS n FROM customers WHERE name = 'x'")).rows[0].n).toBe(0);
  });

  test("a value cannot break out of its literal: quotes, backslashes and a statement's end stay text", async () => {
    const sent: string[] = [];
    await estimateRows({ query: async (sql) => (sent.push(sql), []) }, 'SELECT * FROM t WHERE a = $1', { parameters: ["x'; DROP TABLE t; --\\'"] });
    expect(sent[0]).toContain('SET LOCAL standard_conforming_strings = on');
    expect(sent[0]!.endsWith("SELECT * FROM t WHERE a = 'x''; DROP TABLE t; --\\'''")).toBe(true);
    // Against the server: the value is compared, nothing else runs.
    near(await estimateRows(admin, 'SELECT * FROM small WHERE id::text = $1', { parameters: ["1'; DROP TABLE small; SELECT '"] }), 1);
    expect((await direct.query('SELECT count(*)::int AS n FROM small')).rows[0].n).toBe(3);
  });

  test('null without a value for every parameter, or for one that cannot be a literal', async () => {
    await expect(estimateRows(admin, 'SELECT * FROM customers WHERE id = $2', { parameters: ['1'] })).resolves.toBeNull();
    await expect(estimateRows(admin, 'SELECT * FROM customers WHERE name = $1', { parameters: ['a\0b'] })).resolves.toBeNull();
    await expect(estimateRows(admin, 'SELECT * FROM customers WHERE name = $1', { parameters: ['x'.repeat(PARAMETER_TEXT_MAX + 1)] })).resolves.toBeNull();
    await expect(estimateRows(admin, 'SELECT * FROM customers WHERE id = $1', { parameters: ['\\x00ff'] })).resolves.toBeNull(); // a binary value hoop could not decode: not an int
  });
});

describe('null, never an exception', () => {
  test.each([
    ['a parameter', 'SELECT * FROM customers WHERE id = $1'],
    ['a parameter in PREPARE', 'PREPARE q (int) AS SELECT * FROM customers WHERE id = $1'],
    ['a syntax error', 'SELEC * FROM customers'],
    ['several statements', 'SELECT 1; SELECT * FROM customers'],
    ['an unknown table', 'SELECT * FROM no_such_table'],
    ['DDL', 'DROP TABLE customers'],
    ['a transaction statement', 'BEGIN'],
    ['COPY FROM', 'COPY customers FROM STDIN'],
    ['COPY TO PROGRAM', "COPY customers TO PROGRAM 'cat'"],
    ['SET', 'SET work_mem = 1'],
    ['empty', ''],
  ])('%s', async (_what, text) => {
    await expect(estimateRows(admin, text)).resolves.toBeNull();
  });

  test('a connection that fails or answers nonsense', async () => {
    await expect(estimateRows({ query: () => Promise.reject(new Error('gone')) }, 'SELECT 1')).resolves.toBeNull();
    await expect(estimateRows({ query: async () => [{ columns: ['QUERY PLAN'], rows: [['not json']] }] }, 'SELECT 1')).resolves.toBeNull();
    await expect(estimateRows({ query: async () => [] }, 'SELECT 1')).resolves.toBeNull();
  });

  test('a connection that never answers: null at the deadline', async () => {
    const started = Date.now();
    await expect(estimateRows({ query: () => new Promise(() => {}) }, 'SELECT 1')).resolves.toBeNull();
    expect(Date.now() - started).toBeGreaterThanOrEqual(ESTIMATE_DEADLINE_MS - 50);
  }, ESTIMATE_DEADLINE_MS + 5_000);
});

test('the statement timeout is local to the EXPLAIN: the connection keeps its own settings, and it stays usable after an error', async () => {
  const before = (await admin.query('SHOW statement_timeout'))[0]!.rows[0]![0];
  await estimateRows(admin, 'SELECT * FROM customers');
  await estimateRows(admin, 'SELECT * FROM no_such_table');
  expect((await admin.query('SHOW statement_timeout'))[0]!.rows[0]![0]).toBe(before);
  expect(before).not.toBe('2s');
  expect((await admin.query('SELECT 1'))[0]!.rows).toEqual([['1']]);
});

test('what is sent: SET LOCAL and EXPLAIN without ANALYZE, in one Query', async () => {
  const sent: string[] = [];
  await estimateRows({ query: async (sql) => (sent.push(sql), []) }, 'EXPLAIN ANALYZE SELECT 1');
  await estimateRows({ query: async (sql) => (sent.push(sql), []) }, 'SELECT 1', { searchPath: ['bank', 'we"ird'], role: 'hoop_analyst' });
  expect(sent).toEqual([
    'SET LOCAL statement_timeout = 2000; SET LOCAL search_path = "$user", "public"; EXPLAIN (FORMAT JSON)\nSELECT 1',
    'SET LOCAL statement_timeout = 2000; SET LOCAL search_path = "bank", "we""ird"; SET LOCAL ROLE "hoop_analyst"; EXPLAIN (FORMAT JSON)\nSELECT 1',
  ]);
});

test("the search_path a client's session starts with: ALTER ROLE ... IN DATABASE over ALTER DATABASE over none", async () => {
  const other = await openAdminConnection(upstreamConfig(db.info), () => tcpDial(upstreamConfig(db.info)));
  try {
    expect(await defaultSearchPath(other)).toBeUndefined();
    await direct.query(`ALTER DATABASE ${db.info.database} SET search_path = "Mixed", public`);
    expect(await defaultSearchPath(other)).toEqual(['Mixed', 'public']);
    await direct.query(`ALTER ROLE CURRENT_USER IN DATABASE ${db.info.database} SET search_path = Bank, "$user"`);
    expect(await defaultSearchPath(other)).toEqual(['bank', '$user']);
  } finally {
    await direct.query(`ALTER ROLE CURRENT_USER IN DATABASE ${db.info.database} RESET search_path; ALTER DATABASE ${db.info.database} RESET search_path`);
    await other.close();
  }
  expect(splitSearchPath('"we""ird", x,Y')).toEqual(['we"ird', 'x', 'y']);
});

test('names resolve through the search_path given; planning runs as the role given', async () => {
  await direct.query(`CREATE SCHEMA bank; CREATE TABLE bank.accounts (id int); INSERT INTO bank.accounts SELECT generate_series(1, 500); ANALYZE bank.accounts;
    CREATE ROLE ${db.info.database}_low NOLOGIN; GRANT ${db.info.database}_low TO CURRENT_USER;`);
  expect(await estimateRows(admin, 'SELECT * FROM accounts')).toBeNull();
  near(await estimateRows(admin, 'SELECT * FROM accounts', { searchPath: ['bank'] }), 500);
  // The role has no privilege on the table: the planner refuses, and the estimate is null.
  expect(await estimateRows(admin, 'SELECT * FROM bank.accounts', { role: `${db.info.database}_low` })).toBeNull();
  await direct.query(`GRANT USAGE ON SCHEMA bank TO ${db.info.database}_low; GRANT SELECT ON bank.accounts TO ${db.info.database}_low`);
  near(await estimateRows(admin, 'SELECT * FROM bank.accounts', { role: `${db.info.database}_low` }), 500);
  expect((await admin.query('SELECT current_user = session_user'))[0]!.rows).toEqual([['t']]);
});
