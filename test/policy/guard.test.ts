/**
 * The shared-credential guard as a pure function over PostgreSQL's own parser: what it refuses
 * in many spellings (quoting, schema qualification, Unicode escapes, case, comments, several
 * statements in one string, DO blocks), what it lets through (RESET ROLE, DISCARD ALL, ordinary
 * queries), and that ordinary texts never reach the parser.
 */
import { beforeAll, describe, expect, test } from 'vitest';
import { guardQuery, mayNeedGuard } from '../../src/policy/guard.js';
import { loadParser } from '../../src/policy/masking/parse.js';

const ROLES = ['hoop_svc', 'hoop_analyst', 'hoop_dba'];
const verdict = (text: string) => guardQuery(text, ROLES);

/** The guard lets each text through. */
function allowed(...texts: string[]): void {
  for (const text of texts) expect(verdict(text), text).toEqual({ refusal: null });
}

/** The guard refuses `text` (42501) for the reason `why` matches. */
function refusedFor(text: string, why: RegExp): void {
  const v = verdict(text);
  expect(v.code).toBe('42501');
  expect(v.refusal).toMatch(why);
}

beforeAll(async () => {
  await loadParser();
});

describe('refused: changing the session role or authorization', () => {
  test.each([
    'SET ROLE NONE',
    'set role hoop_svc',
    'SET SESSION ROLE hoop_dba',
    'BEGIN; SET LOCAL ROLE hoop_svc; COMMIT',
    "SET role = 'hoop_svc'",
    'SET "role" TO hoop_svc',
    'SET "ROLE" TO hoop_svc',
    'SET/**/ROLE/* a comment */NONE',
    '-- a comment\nSET ROLE NONE',
    'SET SESSION AUTHORIZATION hoop_svc',
    "SET session_authorization = 'hoop_svc'",
    'SELECT 1; SET ROLE NONE; SELECT 2',
    'CREATE FUNCTION f() RETURNS int LANGUAGE sql SET role = hoop_svc AS $$ SELECT 1 $$',
    'ALTER FUNCTION f() SET role = hoop_svc',
    'ALTER DATABASE bank SET role = hoop_svc',
    'ALTER DATABASE bank SET session_authorization = hoop_svc',
    'ALTER SYSTEM SET role = hoop_svc',
  ])('%s', (text) => {
    const v = verdict(text);
    expect(v.code).toBe('42501');
    expect(v.refusal).toMatch(/^hoop: statement refused: .*it would change the database role every user of this connection shares/);
  });

  test('the message says what and why', () => {
    expect(verdict('SET ROLE NONE').refusal).toBe('hoop: statement refused: SET ROLE: it would change the database role every user of this connection shares');
  });
});

describe('refused: set_config of role or session_authorization, or of a name it cannot read', () => {
  test.each([
    "SELECT set_config('role', 'hoop_svc', false)",
    "SELECT set_config('ROLE', 'hoop_svc', false)",
    "SELECT pg_catalog.set_config('session_authorization', 'hoop_svc', false)",
    "SELECT \"set_config\"('role', 'hoop_svc', false)",
    "SELECT U&\"set_confi\\0067\"('role', 'hoop_svc', false)",
    "SELECT set_config(U&'\\0072ole', 'hoop_svc', false)",
    "SELECT set_config('role'::text, 'hoop_svc', false)",
    "SELECT set_config($1, 'hoop_svc', false)",
    "SELECT set_config(lower('ROLE'), 'hoop_svc', false)",
    "SELECT 1 FROM pg_class WHERE set_config('role', 'hoop_svc', true) IS NOT NULL",
    "SELECT * FROM (SELECT set_config('role', 'hoop_svc', false)) s",
    "WITH x AS (SELECT set_config('role', 'hoop_svc', false)) SELECT * FROM x",
    "PREPARE p AS SELECT set_config('role', 'hoop_svc', false)",
    "EXPLAIN ANALYZE SELECT set_config('role', 'hoop_svc', false)",
    "CREATE FUNCTION g() RETURNS text LANGUAGE sql BEGIN ATOMIC SELECT set_config('role', 'x', false); END",
    // pg_dump's shape, but the row it pins is the role, or nothing pins it.
    "SELECT set_config(name, 'hoop_svc', false) FROM pg_settings WHERE name = 'role'",
    "SELECT set_config(name, 'hoop_svc', false) FROM pg_settings WHERE name LIKE 'rol%'",
    "SELECT set_config(name, 'hoop_svc', false) FROM pg_settings",
    "SELECT set_config(name, 'x', false) FROM (SELECT 'role' AS name) s WHERE name = 'search_path'",
  ])('%s', (text) => {
    expect(verdict(text)).toMatchObject({ code: '42501', refusal: expect.stringContaining('set_config') });
  });

  test('other settings through set_config pass', () => {
    expect(verdict("SELECT set_config('search_path', 'public', false)")).toEqual({ refusal: null });
    expect(verdict("SELECT set_config('application_name', 'x', true)")).toEqual({ refusal: null });
    // pg_dump 15.8+: the setting is a column, pinned to one name by the WHERE.
    expect(verdict("SELECT set_config(name, 'view, foreign-table', false) FROM pg_settings WHERE name = 'restrict_nonsystem_relation_kind'")).toEqual({ refusal: null });
  });
});

describe('refused: signalling other backends', () => {
  test.each([
    'SELECT pg_terminate_backend(1234)',
    'SELECT pg_catalog.pg_terminate_backend(1234)',
    'select PG_CANCEL_BACKEND(1234)',
    'SELECT "pg_cancel_backend"(1234)',
    'SELECT pg_catalog."pg_signal_backend"(1234, 15)',
    'SELECT U&"pg_termin\\0061te_backend"(1234)',
    'SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = current_user',
    'SELECT 1; /* then */ SELECT pg_terminate_backend(1234)',
  ])('%s', (text) => {
    expect(verdict(text)).toMatchObject({ code: '42501', refusal: expect.stringMatching(/pg_(terminate|cancel|signal)_backend: it would signal another session/) });
  });
});

describe('refused: altering, dropping or re-granting the shared roles', () => {
  test.each([
    "ALTER ROLE CURRENT_USER PASSWORD 'SCRAM-SHA-256$4096:c2FsdA==$a2V5:c2VydmVy'",
    "ALTER USER CURRENT_USER WITH PASSWORD 'x'",
    'ALTER ROLE SESSION_USER VALID UNTIL \'2000-01-01\'',
    'ALTER ROLE CURRENT_ROLE NOLOGIN',
    "ALTER ROLE hoop_svc PASSWORD 'x'",
    "ALTER ROLE \"hoop_svc\" PASSWORD 'x'",
    "ALTER ROLE HOOP_SVC PASSWORD 'x'",
    "ALTER ROLE U&\"hoop\\005fsvc\" PASSWORD 'x'",
    'ALTER ROLE CURRENT_USER SET search_path = x',
    'ALTER ROLE CURRENT_USER IN DATABASE bank SET work_mem = \'1GB\'',
    'ALTER ROLE CURRENT_USER RESET ALL',
    'ALTER ROLE hoop_analyst SET statement_timeout = 0',
    'ALTER ROLE ALL SET search_path = x',
    'ALTER ROLE someone SET role = hoop_svc',
    'ALTER ROLE hoop_analyst RENAME TO x',
    'ALTER GROUP hoop_analyst ADD USER mallory',
    'ALTER GROUP staff ADD USER hoop_svc',
    'DROP ROLE hoop_analyst',
    'DROP ROLE IF EXISTS nobody, hoop_dba',
    'GRANT hoop_dba TO hoop_analyst',
    'GRANT hoop_dba TO CURRENT_USER',
    'GRANT pg_read_all_stats TO hoop_analyst',
    'GRANT pg_signal_backend TO CURRENT_USER',
    'REVOKE hoop_analyst FROM hoop_svc',
    'CREATE ROLE mallory IN ROLE hoop_dba',
    'CREATE ROLE mallory ROLE hoop_svc',
    'CREATE ROLE mallory ADMIN CURRENT_USER',
    'DROP OWNED BY CURRENT_USER',
    'REASSIGN OWNED BY hoop_dba TO mallory',
    'GRANT SELECT ON customers TO hoop_svc',
    'ALTER DEFAULT PRIVILEGES GRANT SELECT ON TABLES TO hoop_svc',
  ])('%s', (text) => {
    expect(verdict(text)).toMatchObject({ code: '42501', refusal: expect.stringContaining('every user of this connection shares') });
  });

  test('roles nobody shares may be managed', () => {
    expect(verdict("ALTER ROLE someone PASSWORD 'x'")).toEqual({ refusal: null });
    expect(verdict('GRANT reporting TO someone')).toEqual({ refusal: null });
    expect(verdict('CREATE ROLE someone NOLOGIN')).toEqual({ refusal: null });
    expect(verdict('DROP ROLE someone')).toEqual({ refusal: null });
  });

  test('object privileges for the mapped roles are the database\'s own business', () => {
    expect(verdict('GRANT SELECT ON customers TO hoop_analyst')).toEqual({ refusal: null });
    expect(verdict('REVOKE UPDATE ON customers FROM hoop_analyst')).toEqual({ refusal: null });
  });
});

describe('DO blocks', () => {
  test.each([
    ['DO $$ BEGIN SET ROLE NONE; END $$', /SET ROLE/],
    ["DO $$ BEGIN PERFORM set_config('role', 'hoop_svc', false); END $$", /set_config/],
    ["DO $$ DECLARE x text := set_config('role', 'hoop_svc', false); BEGIN NULL; END $$", /set_config/],
    ["DO $$ DECLARE x text; BEGIN x := set_config('role', 'hoop_svc', false); END $$", /set_config/],
    ["DO $$ BEGIN IF set_config('role', 'hoop_svc', false) = '' THEN NULL; END IF; END $$", /set_config/],
    ['DO $$ BEGIN PERFORM pg_terminate_backend(1234); END $$', /pg_terminate_backend/],
    ["DO $$ BEGIN ALTER ROLE CURRENT_USER PASSWORD 'x'; END $$", /ALTER ROLE/],
    ["DO $$ BEGIN EXECUTE 'SELECT 1'; END $$", /dynamic SQL/],
    ["DO $$ BEGIN EXECUTE format('SET ROLE %I', 'hoop_svc'); END $$", /dynamic SQL/],
    ["DO $$ DECLARE c refcursor; BEGIN OPEN c FOR EXECUTE 'SELECT 1'; END $$", /OPEN … FOR EXECUTE/],
    ["DO $$ DECLARE r record; BEGIN FOR r IN EXECUTE 'SELECT 1' LOOP END LOOP; END $$", /dynamic SQL/],
    ['DO $$ BEGIN RETURN QUERY EXECUTE $q$SELECT 1$q$; END $$', /does not compile/],
    ["DO LANGUAGE plpgsql 'BEGIN SET ROLE NONE; END'", /SET ROLE/],
    ["DO $outer$ BEGIN DO $inner$ BEGIN SET ROLE NONE; END $inner$; END $outer$", /SET ROLE/],
    ['DO LANGUAGE plperl $$ 1 $$', /a DO block in plperl/],
    ['DO $$ BEGIN nonsense here; END $$', /does not compile/],
    ['do $$ begin set role none; end $$', /SET ROLE/],
  ])('%s', refusedFor);

  test('a DO block of ordinary statements passes', () => {
    expect(verdict('DO $$ BEGIN CREATE TEMP TABLE t (id int); INSERT INTO t VALUES (1); RESET ROLE; END $$')).toEqual({ refusal: null });
    expect(verdict("DO $$ DECLARE n int; BEGIN SELECT count(*) INTO n FROM pg_class; RAISE NOTICE 'n = %', n; END $$")).toEqual({ refusal: null });
  });
});

describe('functions and procedures defined through hoop: their bodies run later, for whoever calls them', () => {
  test.each([
    ["CREATE FUNCTION f() RETURNS void LANGUAGE plpgsql AS $$ BEGIN EXECUTE 'ALTER ROLE hoop_svc PASSWORD ''y'''; END $$", /a function body with dynamic SQL \(EXECUTE\)/],
    ["CREATE OR REPLACE PROCEDURE p() LANGUAGE plpgsql AS $$ BEGIN ALTER ROLE CURRENT_USER PASSWORD 'x'; END $$", /ALTER ROLE/],
    ["CREATE FUNCTION f(r text) RETURNS text LANGUAGE plpgsql AS $$ BEGIN RETURN set_config('role', r, false); END $$", /a function body with set_config/],
    ["CREATE FUNCTION f() RETURNS void LANGUAGE sql AS 'ALTER ROLE hoop_svc PASSWORD ''y''' ", /a function body with ALTER ROLE/],
    ["CREATE FUNCTION f() RETURNS text LANGUAGE sql AS $$ SELECT 1; SELECT set_config('role', 'hoop_dba', false) $$", /set_config/],
    ["CREATE FUNCTION f() RETURNS void LANGUAGE sql AS $$ SELECT pg_terminate_backend(1) $$", /pg_terminate_backend/],
    ["CREATE FUNCTION f() RETURNS int LANGUAGE plperl AS $$ spi_exec_query('ALTER ROLE hoop_svc PASSWORD 1') $$", /a function in plperl/],
    ["CREATE FUNCTION f() RETURNS int LANGUAGE c AS 'mylib', 'f'", /object code/],
    ["CREATE FUNCTION f() RETURNS int LANGUAGE plpgsql AS $$ BEGIN nonsense; END $$", /does not compile/],
    // The statement's own text compiles, not a neighbour's: a multi-byte character before it shifts byte offsets.
    ["SELECT 'é'; CREATE FUNCTION f() RETURNS void LANGUAGE plpgsql AS $$ BEGIN EXECUTE 'SELECT 1'; END $$", /dynamic SQL/],
    ["CREATE FUNCTION g() RETURNS void LANGUAGE sql AS $q$ CREATE FUNCTION h() RETURNS void LANGUAGE plpgsql AS $$ BEGIN SET ROLE NONE; END $$ $q$", /SET ROLE/],
    ["CREATE FUNCTION f() RETURNS text LANGUAGE sql BEGIN ATOMIC SELECT set_config('role', 'hoop_dba', false); END", /set_config/],
  ])('%s', refusedFor);

  test('ordinary functions pass: SQL and PL/pgSQL bodies of plain statements, parameters, triggers, set-returning', () => {
    allowed(
      'CREATE FUNCTION add(a int, b int) RETURNS int LANGUAGE sql IMMUTABLE AS $$ SELECT a + b $$',
      'CREATE FUNCTION add2(int) RETURNS int LANGUAGE sql RETURN $1 + 2',
      "CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.updated_at := now(); RETURN NEW; END $$",
      'CREATE FUNCTION ids() RETURNS SETOF int LANGUAGE plpgsql AS $$ BEGIN RETURN QUERY SELECT 1; RETURN NEXT 2; END $$',
      "CREATE OR REPLACE FUNCTION f(x int) RETURNS int LANGUAGE plpgsql AS $$ DECLARE y int := x; BEGIN RAISE NOTICE 'y %', y; RETURN y; END $$",
    );
  });
});

describe('aggregates, operators and casts: a refused function called under another name', () => {
  test.each([
    ["CREATE AGGREGATE a(text, boolean) (SFUNC = set_config, STYPE = text, INITCOND = 'role')", /an aggregate that calls set_config/],
    ["CREATE OR REPLACE AGGREGATE a(text, boolean) (SFUNC = pg_catalog.\"set_config\", STYPE = text, INITCOND = 'role')", /an aggregate that calls set_config/],
    ["CREATE AGGREGATE a(text) (SFUNC = textcat, STYPE = text, FINALFUNC = pg_cancel_backend)", /an aggregate that calls pg_cancel_backend/],
    ['CREATE OPERATOR !!! (LEFTARG = int, RIGHTARG = bigint, FUNCTION = pg_terminate_backend)', /an operator that calls pg_terminate_backend/],
    ['CREATE OPERATOR !!! (LEFTARG = int, RIGHTARG = bigint, PROCEDURE = U&"pg_termin\\0061te_backend")', /an operator that calls pg_terminate_backend/],
    ['CREATE CAST (int AS pid) WITH FUNCTION pg_cancel_backend(int)', /a cast that calls pg_cancel_backend/],
  ])('%s', refusedFor);

  test('ordinary aggregates, operators and casts pass', () => {
    allowed(
      'CREATE AGGREGATE concat_all(text) (SFUNC = textcat, STYPE = text, INITCOND = \'\')',
      'CREATE OPERATOR === (LEFTARG = int, RIGHTARG = int, FUNCTION = int4eq)',
      'CREATE CAST (int AS money_cents) WITH FUNCTION to_cents(int)',
    );
  });
});

describe('a query given as text to a function that runs it is guarded like the statement it is', () => {
  test.each([
    ["SELECT query_to_xml('SELECT set_config(''role'', ''hoop_svc'', false)', true, false, '')", /^hoop: statement refused: query_to_xml running set_config\('role'/],
    ["SELECT pg_catalog.query_to_xml_and_xmlschema(E'SELECT set\\x5fconfig(''role'', ''hoop_svc'', false)', true, false, '')", /query_to_xml_and_xmlschema running set_config/],
    ["SELECT ts_stat('SELECT pg_terminate_backend(1)::text::tsvector')", /ts_stat running pg_terminate_backend/],
    ["SELECT ts_rewrite('a'::tsquery, 'SELECT set_config(''role'', ''x'', false)::tsquery, ''b''::tsquery')", /ts_rewrite running set_config/],
    ["SELECT * FROM public.crosstab('SELECT 1, 2, set_config(''role'', ''hoop_svc'', false)') AS t(a int, b text)", /crosstab running set_config/],
    ["SELECT query_to_xml(chr(83) || 'ELECT 1', true, false, '')", /query_to_xml with a query that is not a constant/],
    ["SELECT query_to_xml('SELECT (', true, false, '')", /query_to_xml with a query that does not parse/],
    ["SELECT query_to_xml('SELECT query_to_xml(''SELECT set_config(''''role'''', ''''x'''', false)'', true, false, '''')', true, false, '')", /query_to_xml running query_to_xml running set_config/],
  ])('%s', refusedFor);

  test('ordinary queries pass, and arguments that are not queries are not read as one', () => {
    allowed(
      "SELECT query_to_xml('SELECT 1 AS one', true, false, '')",
      "SELECT * FROM crosstab('SELECT a, b, c FROM t ORDER BY 1', 'SELECT DISTINCT b FROM t ORDER BY 1') AS ct(a text, x int, y int)",
      "SELECT * FROM crosstab('SELECT a, b, c FROM t ORDER BY 1', 2) AS ct(a text, x int, y int)",
      "SELECT ts_rewrite('a & b'::tsquery, 'a'::tsquery, 'c'::tsquery)",
    );
  });
});

describe('allowed: what keeps the role given at startup', () => {
  test.each([
    'RESET ROLE',
    'SET role TO DEFAULT',
    'RESET SESSION AUTHORIZATION',
    'SET SESSION AUTHORIZATION DEFAULT',
    'RESET ALL',
    'DISCARD ALL',
    'SET search_path = public',
    'SELECT current_user, session_user',
    "SELECT current_setting('role')",
    'SELECT query FROM pg_stat_activity',
    "SELECT 'SET ROLE NONE' AS text",
    '/* SET ROLE NONE */ SELECT 1',
    'SELECT 1 -- pg_terminate_backend(1)',
    'CREATE TABLE roles (id int, session text)',
    'ALTER TABLE roles ADD COLUMN authorization_level int',
    'SELECT window_start FROM (SELECT now() AS window_start) w',
  ])('%s', (text) => {
    expect(verdict(text)).toEqual({ refusal: null });
  });
});

test('a text that does not parse is refused with the parser\'s message and SQLSTATE 42601', () => {
  const v = verdict('ALTER ROLE CURRENT_USER PASSWORD');
  expect(v.code).toBe('42601');
  expect(v.refusal).toMatch(/^hoop: statement refused: it does not parse, .*syntax error at end of input/);
});

describe('the prefilter', () => {
  test('ordinary statements skip the parser', () => {
    for (const text of [
      'SELECT abalance FROM pgbench_accounts WHERE aid = 48213;',
      'UPDATE pgbench_accounts SET abalance = abalance + -3011 WHERE aid = 7621;',
      'INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (1, 1, 7621, -3011, CURRENT_TIMESTAMP);',
      'BEGIN;', 'END;', 'SELECT * FROM customers ORDER BY id LIMIT 10',
    ]) expect(mayNeedGuard(text), text).toBe(false);
  });

  test('every refused construct is caught by it', () => {
    for (const text of ['SET ROLE NONE', 'SET SESSION AUTHORIZATION x', "SELECT set_config('role','x',false)", 'SELECT pg_terminate_backend(1)', 'ALTER ROLE x', 'GRANT a TO b', 'REVOKE a FROM b', 'DROP ROLE a', 'CREATE ROLE a IN ROLE b', 'DO $$ BEGIN END $$', "DO'BEGIN END'", 'SELECT U&"x"()', 'REASSIGN OWNED BY a TO b']) {
      expect(mayNeedGuard(text), text).toBe(true);
    }
  });

  test('a prefiltered text is decided without parsing: even an unparseable one passes, for PostgreSQL to reject', () => {
    expect(verdict('SELEC 1')).toEqual({ refusal: null });
  });

  test('pgbench -S texts never reach the parser: the prefilter answers for them (the cost is measured in bench/, not here)', () => {
    for (let i = 0; i < 1_000; i++) {
      const text = `SELECT abalance FROM pgbench_accounts WHERE aid = ${i};`;
      expect(mayNeedGuard(text)).toBe(false);
      expect(verdict(text).refusal).toBeNull();
    }
    // A word the prefilter stops at sends the text to the parser.
    expect(mayNeedGuard("SELECT abalance FROM pgbench_accounts WHERE aid = 1 AND 'session' <> ''")).toBe(true);
  });
});

test('verdicts are cached per text and protected roles', () => {
  const text = "ALTER ROLE mapped_only_here PASSWORD 'x'";
  expect(guardQuery(text, ['hoop_svc']).refusal).toBeNull();
  expect(guardQuery(text, ['hoop_svc', 'mapped_only_here']).refusal).toMatch(/ALTER ROLE/);
  const again = guardQuery(text, ['hoop_svc', 'mapped_only_here']);
  expect(again).toBe(guardQuery(text, ['hoop_svc', 'mapped_only_here']));
});
