/** The classifier over the real parse tree: kinds, relations, and the shape facts rules test. */
import { beforeAll, describe, expect, test } from 'vitest';
import { loadParser } from '../../../src/policy/masking/parse.js';
import { classifyQuery, cursorsOf, type Classification } from '../../../src/policy/risk/classify.js';

beforeAll(() => loadParser());

function one(text: string): Classification {
  const { statements, parseError } = classifyQuery(text);
  expect(parseError).toBeNull();
  expect(statements).toHaveLength(1);
  return statements[0]!;
}

const kind = (text: string) => one(text).kind;

describe('kinds', () => {
  test.each([
    ['SELECT * FROM customers', 'select'],
    ['VALUES (1), (2)', 'select'],
    ['TABLE customers', 'select'],
    ['SELECT 1 UNION SELECT 2', 'select'],
    ['WITH c AS (SELECT 1) SELECT * FROM c', 'select'],
    ["INSERT INTO t VALUES (1)", 'insert'],
    ['INSERT INTO t SELECT * FROM u', 'insert'],
    ['UPDATE t SET x = 1', 'update'],
    ['DELETE FROM t', 'delete'],
    ['MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE', 'merge'],
    ['COPY t FROM STDIN', 'copy_in'],
    ['COPY t (a, b) FROM STDIN WITH (FORMAT csv)', 'copy_in'],
    ['COPY t TO STDOUT', 'copy_out'],
    ['COPY (SELECT * FROM t) TO STDOUT', 'copy_out'],
    ["COPY t TO '/tmp/x'", 'copy_out'],
    ['CREATE TABLE t (id int)', 'ddl'],
    ['ALTER TABLE t ADD COLUMN x int', 'ddl'],
    ['DROP TABLE t', 'ddl'],
    ['TRUNCATE bank.customers', 'ddl'],
    ["COMMENT ON TABLE t IS 'x'", 'ddl'],
    ['CREATE INDEX ON t (x)', 'ddl'],
    ['CREATE VIEW v AS SELECT 1', 'ddl'],
    ['CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$', 'ddl'],
    ['SELECT * INTO copy_of FROM customers', 'ddl'],
    ['CREATE TABLE x AS SELECT * FROM customers', 'ddl'],
    ['CREATE MATERIALIZED VIEW m AS SELECT * FROM customers', 'ddl'],
    ['REFRESH MATERIALIZED VIEW m', 'ddl'],
    ['DROP OWNED BY r', 'ddl'],
    ['GRANT SELECT ON t TO r', 'dcl'],
    ['REVOKE SELECT ON t FROM r', 'dcl'],
    ['GRANT r TO u', 'dcl'],
    ['CREATE ROLE x', 'dcl'],
    ["ALTER ROLE x PASSWORD 'p'", 'dcl'],
    ['ALTER ROLE x SET work_mem = 1', 'dcl'],
    ['ALTER ROLE a RENAME TO b', 'dcl'],
    ['DROP ROLE x', 'dcl'],
    ['ALTER DEFAULT PRIVILEGES GRANT SELECT ON TABLES TO r', 'dcl'],
    ['REASSIGN OWNED BY a TO b', 'dcl'],
    ['BEGIN', 'transaction'],
    ['START TRANSACTION READ ONLY', 'transaction'],
    ['COMMIT', 'transaction'],
    ['ROLLBACK', 'transaction'],
    ['SAVEPOINT s', 'transaction'],
    ['RELEASE SAVEPOINT s', 'transaction'],
    ['ROLLBACK TO SAVEPOINT s', 'transaction'],
    ["PREPARE TRANSACTION 'x'", 'transaction'],
    ['SET search_path = bank', 'utility'],
    ['SET TRANSACTION ISOLATION LEVEL SERIALIZABLE', 'utility'],
    ['RESET ALL', 'utility'],
    ['SHOW work_mem', 'utility'],
    ['LISTEN ch', 'utility'],
    ["NOTIFY ch, 'x'", 'utility'],
    ['FETCH 10 FROM c', 'utility'],
    ['CLOSE c', 'utility'],
    ['EXECUTE p(1)', 'utility'],
    ['DEALLOCATE p', 'utility'],
    ['DO $$ BEGIN END $$', 'utility'],
    ['CALL p(1)', 'utility'],
    ['VACUUM t', 'utility'],
    ['ANALYZE t', 'utility'],
    ['LOCK TABLE t', 'utility'],
    ['DISCARD ALL', 'utility'],
    ['EXPLAIN SELECT * FROM customers', 'utility'],
    ['EXPLAIN DELETE FROM customers', 'utility'],
    ['EXPLAIN (ANALYZE false) DELETE FROM customers', 'utility'],
  ] as const)('%s -> %s', (text, expected) => {
    expect(kind(text)).toBe(expected);
  });

  test('EXPLAIN ANALYZE runs its statement, so it is that statement\'s kind (and shape)', () => {
    expect(one('EXPLAIN ANALYZE DELETE FROM customers')).toMatchObject({ kind: 'delete', where: false, tables: ['customers'] });
    expect(one('EXPLAIN (ANALYZE, BUFFERS) UPDATE t SET x = 1 WHERE id = 2')).toMatchObject({ kind: 'update', where: true });
    expect(one('EXPLAIN (ANALYZE true) SELECT * FROM customers LIMIT 5')).toMatchObject({ kind: 'select', limit: true });
  });

  test('PREPARE and DECLARE CURSOR are the kind of the query they hold', () => {
    expect(one('PREPARE p AS UPDATE t SET x = 1')).toMatchObject({ kind: 'update', where: false, tables: ['t'] });
    expect(one('PREPARE p (int) AS SELECT * FROM customers WHERE id = $1')).toMatchObject({ kind: 'select', where: true });
    expect(one('DECLARE c CURSOR WITH HOLD FOR SELECT * FROM customers')).toMatchObject({ kind: 'select', where: false, tables: ['customers'] });
  });

  test('SELECT INTO and CREATE TABLE AS are ddl, with the shape of the query they read', () => {
    expect(one('SELECT * INTO copy_of FROM customers')).toMatchObject({ kind: 'ddl', where: false, tables: ['customers', 'copy_of'], joins: false });
    expect(one('CREATE TABLE x AS SELECT * FROM bank.customers WHERE id < 10')).toMatchObject({ kind: 'ddl', where: true, tables: ['bank.customers', 'x'] });
  });
});

describe('tables', () => {
  const tables = (text: string) => one(text).tables;
  test('qualified as written, or bare', () => {
    expect(tables('SELECT * FROM bank.customers c JOIN accounts a ON a.cid = c.id')).toEqual(['bank.customers', 'accounts']);
  });
  test('in subqueries, CTEs, set operations, and every DML position', () => {
    expect(tables('SELECT * FROM a WHERE id IN (SELECT id FROM b) UNION SELECT * FROM (SELECT * FROM c) s')).toEqual(['a', 'b', 'c']);
    expect(tables('WITH x AS (SELECT * FROM customers) SELECT * FROM x')).toEqual(['customers']);
    expect(tables('UPDATE t SET x = u.x FROM u WHERE t.id = u.id')).toEqual(['t', 'u']);
    expect(tables('DELETE FROM t USING u WHERE t.id = u.id')).toEqual(['t', 'u']);
    expect(tables('INSERT INTO t SELECT * FROM s.u')).toEqual(['t', 's.u']);
    expect(tables('MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE')).toEqual(['t', 's']);
    expect(tables('SELECT * FROM t TABLESAMPLE SYSTEM (1)')).toEqual(['t']);
    expect(tables('SELECT * FROM ONLY t')).toEqual(['t']);
  });
  test('COPY, TRUNCATE, DROP, LOCK, GRANT name their relations', () => {
    expect(tables('COPY bank.customers TO STDOUT')).toEqual(['bank.customers']);
    expect(tables('COPY (SELECT * FROM customers) TO STDOUT')).toEqual(['customers']);
    expect(tables('COPY t FROM STDIN')).toEqual(['t']);
    expect(tables('TRUNCATE a.t, u')).toEqual(['a.t', 'u']);
    expect(tables('DROP TABLE a.b, c')).toEqual(['a.b', 'c']);
    expect(tables('LOCK TABLE customers')).toEqual(['customers']);
    expect(tables('GRANT SELECT ON customers TO r')).toEqual(['customers']);
  });
  test('a CTE name is not a table, but a CTE shadowing a table still reads the table in its own definition', () => {
    expect(tables('WITH customers AS (SELECT 1) SELECT * FROM customers')).toEqual([]);
    expect(tables('WITH customers AS (SELECT * FROM customers) SELECT * FROM customers')).toEqual(['customers']);
    // A later CTE sees an earlier one; an earlier one does not see a later one.
    expect(tables('WITH a AS (SELECT * FROM b), b AS (SELECT 1) SELECT * FROM a, b')).toEqual(['b']);
    expect(tables('WITH a AS (SELECT 1), b AS (SELECT * FROM a) SELECT * FROM b')).toEqual([]);
    // A recursive CTE sees itself.
    expect(tables('WITH RECURSIVE r AS (SELECT 1 AS n UNION ALL SELECT n + 1 FROM r WHERE n < 3) SELECT * FROM r')).toEqual([]);
    // A qualified name is never a CTE; a DML target is always a table.
    expect(tables('WITH customers AS (SELECT 1) SELECT * FROM public.customers')).toEqual(['public.customers']);
    expect(tables('WITH t AS (SELECT 1) DELETE FROM t')).toEqual(['t']);
  });
});

describe('where and limit: the main query\'s own', () => {
  test('the issue\'s examples', () => {
    expect(one('SELECT * FROM customers')).toMatchObject({ kind: 'select', tables: ['customers'], where: false, limit: false });
    expect(one('SELECT * FROM customers WHERE id = 1')).toMatchObject({ where: true });
    expect(one('UPDATE t SET x = 1')).toMatchObject({ kind: 'update', where: false });
    expect(one('UPDATE t SET x = 1 WHERE id = 2')).toMatchObject({ where: true });
    expect(one('DELETE FROM t WHERE CURRENT OF c')).toMatchObject({ where: true });
  });
  test('a WHERE in a subquery beside a relation, or in a scalar subquery, does not filter the outer statement', () => {
    expect(one('SELECT * FROM (SELECT * FROM customers WHERE id = 1) s, customers c').where).toBe(false);
    expect(one('SELECT * FROM (SELECT * FROM customers WHERE id = 1) s JOIN customers c ON true').where).toBe(false);
    expect(one('SELECT (SELECT ssn FROM customers WHERE id = 1)').where).toBe(false);
    expect(one('SELECT * FROM (SELECT * FROM customers) s').where).toBe(false);
    expect(one('WITH x AS (SELECT * FROM customers) SELECT * FROM x').where).toBe(false);
    expect(one('SELECT * FROM (SELECT * FROM customers WHERE true) s').where).toBe(false);
    expect(one('(SELECT * FROM customers WHERE id = 1) UNION ALL SELECT * FROM customers').where).toBe(false);
    expect(one('DELETE FROM t WHERE id IN (SELECT id FROM u)').where).toBe(true);
    expect(one('SELECT * FROM customers LIMIT (SELECT count(*) FROM t WHERE x = 1)').where).toBe(false);
  });
  test('rows from filtered subqueries and CTEs only are filtered', () => {
    expect(one('SELECT x FROM (SELECT ssn AS x FROM customers WHERE id = 1 OFFSET 0) s').where).toBe(true);
    expect(one('WITH x AS (SELECT * FROM customers WHERE id = 1) SELECT * FROM x').where).toBe(true);
    expect(one('SELECT * FROM (SELECT * FROM a WHERE id = 1) s JOIN (SELECT * FROM b WHERE id = 2) t ON true').where).toBe(true);
    expect(one('COPY (SELECT * FROM (SELECT * FROM customers WHERE id < 5) s) TO STDOUT').where).toBe(true);
  });
  test('a statement that collects rows into one value is never limited', () => {
    expect(one('SELECT array_agg(ssn) FROM customers LIMIT 1').limit).toBe(false);
    expect(one('SELECT ARRAY(SELECT ssn FROM customers)').limit).toBe(false);
    expect(one('SELECT (SELECT string_agg(ssn, \',\') FROM customers)').limit).toBe(false);
    expect(one('SELECT (SELECT count(*) FROM customers)').limit).toBe(true);
    expect(one('SELECT array_agg(rolname) FROM pg_roles LIMIT 1').limit).toBe(true); // the catalogs' rows: no export
  });
  test('a WHERE that names no column filters nothing row by row', () => {
    expect(one('SELECT * FROM customers WHERE true').where).toBe(false);
    expect(one('SELECT * FROM customers WHERE 1 = 1').where).toBe(false);
    expect(one('DELETE FROM t WHERE now() > \'2000-01-01\'').where).toBe(false);
  });
  test('a set operation filters only when every branch does', () => {
    expect(one('SELECT * FROM customers WHERE id = 1 UNION SELECT * FROM customers WHERE id = 2').where).toBe(true);
    expect(one('SELECT * FROM customers WHERE id = 1 UNION ALL SELECT * FROM customers').where).toBe(false);
  });
  test('LIMIT and FETCH FIRST at the top; LIMIT ALL / NULL and a subquery\'s LIMIT are none', () => {
    expect(one('SELECT * FROM t LIMIT 10').limit).toBe(true);
    expect(one('SELECT * FROM t FETCH FIRST 3 ROWS ONLY').limit).toBe(true);
    expect(one('SELECT 1 UNION SELECT 2 LIMIT 1').limit).toBe(true);
    expect(one('SELECT * FROM t LIMIT ALL').limit).toBe(false);
    expect(one('SELECT * FROM t LIMIT NULL').limit).toBe(false);
    expect(one('SELECT * FROM t OFFSET 5').limit).toBe(false);
  });

  test('limit: rows from limited sources only are limited too; a call in the select list may multiply them', () => {
    expect(one('SELECT * FROM (SELECT * FROM t LIMIT 5) s').limit).toBe(true);
    expect(one('SELECT (c).ssn FROM (SELECT c FROM customers c LIMIT 1) s').limit).toBe(true);
    expect(one('SELECT * FROM (SELECT * FROM t LIMIT 5) a JOIN (SELECT * FROM u FETCH FIRST 2 ROWS ONLY) b ON true').limit).toBe(true);
    expect(one('WITH f AS (SELECT * FROM t LIMIT 5) SELECT * FROM f').limit).toBe(true);
    expect(one('SELECT * FROM t UNION ALL (SELECT * FROM u LIMIT 5)').limit).toBe(false);
    expect(one('SELECT * FROM t UNION ALL SELECT * FROM u LIMIT 5').limit).toBe(true); // the union's own
    expect(one('(SELECT * FROM t LIMIT 5) UNION ALL (SELECT * FROM u LIMIT 5)').limit).toBe(true);
    expect(one('VALUES (1), (2)').limit).toBe(true);
    expect(one('SELECT (SELECT c FROM customers c LIMIT 1)').limit).toBe(true);
    // Not bounded: a relation beside the subquery, an unlimited branch or CTE, a function's rows,
    // a set-returning call (or any call, or operator) over the limited rows, a FROM-less unnest.
    expect(one('SELECT * FROM (SELECT * FROM t LIMIT 5) s, customers c').limit).toBe(false);
    expect(one('SELECT * FROM (SELECT * FROM t LIMIT 5) s JOIN customers c ON true').limit).toBe(false);
    expect(one('SELECT * FROM (SELECT * FROM t) s').limit).toBe(false);
    expect(one('(SELECT * FROM t LIMIT 5) UNION ALL SELECT * FROM u').limit).toBe(false);
    expect(one('WITH f AS (SELECT * FROM t) SELECT * FROM f').limit).toBe(false);
    expect(one('WITH t AS (SELECT * FROM t LIMIT 1) SELECT * FROM public.t').limit).toBe(false);
    expect(one('SELECT * FROM (SELECT * FROM t LIMIT 5) s, generate_series(1, 1000000000) g').limit).toBe(false);
    expect(one('SELECT unnest(a) FROM (SELECT array_agg(ssn) AS a FROM customers LIMIT 1) s').limit).toBe(false);
    expect(one('SELECT a ||| b FROM (SELECT * FROM t LIMIT 1) s').limit).toBe(false);
    expect(one('SELECT a FROM (SELECT * FROM t LIMIT 1) s ORDER BY generate_series(1, a)').limit).toBe(false);
    expect(one('SELECT unnest((SELECT array_agg(ssn) FROM customers))').limit).toBe(false);
    expect(one('SELECT * FROM (SELECT * FROM t LIMIT ALL) s').limit).toBe(false);
    expect(one('DELETE FROM t').limit).toBe(false);
  });
  test('INSERT … SELECT and COPY (query) take their query\'s; COPY FROM its own WHERE', () => {
    expect(one('INSERT INTO t SELECT * FROM u WHERE x = 1 LIMIT 3')).toMatchObject({ where: true, limit: true });
    expect(one('INSERT INTO t VALUES (1)')).toMatchObject({ where: false, limit: true }); // VALUES: its own rows
    expect(one('COPY (SELECT * FROM customers WHERE id = 1) TO STDOUT')).toMatchObject({ where: true });
    expect(one('COPY (SELECT * FROM customers) TO STDOUT')).toMatchObject({ where: false });
    expect(one('COPY customers TO STDOUT')).toMatchObject({ where: false, limit: false });
    expect(one('COPY t FROM STDIN WHERE a > 1')).toMatchObject({ where: true });
  });
  test('MERGE has no WHERE', () => {
    expect(one('MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE').where).toBe(false);
  });
});

describe('joins, aggregates, functions, columns', () => {
  test('joins', () => {
    expect(one('SELECT * FROM a JOIN b ON a.id = b.id').joins).toBe(true);
    expect(one('SELECT * FROM a, b').joins).toBe(true);
    expect(one('SELECT * FROM a LEFT JOIN b USING (id)').joins).toBe(true);
    expect(one('SELECT * FROM (SELECT * FROM a CROSS JOIN b) s').joins).toBe(true);
    expect(one('SELECT * FROM a WHERE id IN (SELECT id FROM b)').joins).toBe(true);
    expect(one('SELECT (SELECT max(x) FROM b WHERE b.id = a.id) FROM a').joins).toBe(true);
    expect(one('UPDATE a SET x = 1 FROM b').joins).toBe(true);
    expect(one('DELETE FROM a USING b').joins).toBe(true);
    expect(one('SELECT * FROM a').joins).toBe(false);
    expect(one('SELECT * FROM a WHERE id = 1').joins).toBe(false);
    expect(one('SELECT (SELECT 1)').joins).toBe(false);
    expect(one('SELECT * FROM a UNION SELECT * FROM b').joins).toBe(false);
    expect(one('SELECT * INTO c FROM a').joins).toBe(false);
  });
  test('aggregates: calls, window calls, GROUP BY, HAVING, aggregate syntax', () => {
    expect(one('SELECT count(*) FROM t').aggregates).toBe(true);
    expect(one('SELECT sum(x) FROM t').aggregates).toBe(true);
    expect(one('SELECT pg_catalog.avg(x) FROM t').aggregates).toBe(true);
    expect(one('SELECT x FROM t GROUP BY x').aggregates).toBe(true);
    expect(one('SELECT 1 FROM t HAVING true').aggregates).toBe(true);
    expect(one('SELECT row_number() OVER () FROM t').aggregates).toBe(true);
    expect(one('SELECT my_agg(DISTINCT x) FROM t').aggregates).toBe(true);
    expect(one('SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY x) FROM t').aggregates).toBe(true);
    expect(one('SELECT * FROM t WHERE id IN (SELECT max(id) FROM u)').aggregates).toBe(true);
    expect(one('SELECT lower(x) FROM t').aggregates).toBe(false);
    expect(one('SELECT myschema.count(x) FROM t').aggregates).toBe(false);
  });
  test('summarizes: the main query\'s own aggregate, GROUP BY or HAVING; not a window call, not a subquery\'s', () => {
    expect(['SELECT count(*) FROM t', 'SELECT coalesce(sum(x), 0) FROM t', 'SELECT x, max(y) FROM t GROUP BY x', 'SELECT 1 FROM t HAVING true',
      'SELECT count(*) FROM (SELECT * FROM t) s', 'SELECT count(*) FROM t UNION SELECT count(*) FROM u', 'INSERT INTO s SELECT count(*) FROM t',
      'COPY (SELECT count(*) FROM t) TO STDOUT', 'SELECT (SELECT count(*) FROM t) AS a, (SELECT count(*) FROM u) AS b',
      'WITH s AS (SELECT count(*) FROM t) SELECT * FROM s', 'SELECT * FROM (SELECT count(*) FROM t) a JOIN (SELECT max(x) FROM u) b ON true',
      'SELECT * FROM generate_series(1, 3)'].map((q) => one(q).summarizes)).toEqual(Array(12).fill(true));
    expect(['SELECT *, count(*) OVER () FROM t', 'SELECT *, (SELECT count(*) FROM u) FROM t', 'SELECT * FROM t WHERE id IN (SELECT max(id) FROM u)',
      'SELECT count(*) FROM t UNION SELECT x FROM u', 'SELECT x FROM t', 'WITH s AS (SELECT * FROM t) SELECT * FROM s',
      'SELECT * FROM (SELECT count(*) FROM t) a, u', 'WITH t AS (SELECT * FROM t) SELECT * FROM t'].map((q) => one(q).summarizes)).toEqual(Array(8).fill(false));
  });

  test('collects: aggregates that return the values they read, and ARRAY(subquery), anywhere; then nothing summarizes', () => {
    for (const q of ['SELECT string_agg(name, \',\') FROM t', 'SELECT count(*), array_agg(id) FROM t', 'SELECT city, json_agg(c) FROM t c GROUP BY city',
      'SELECT ARRAY(SELECT name FROM t)', 'SELECT (SELECT pg_catalog.jsonb_agg(t) FROM t)', 'SELECT xmlagg(xmlelement(name x, name)) FROM t']) {
      expect([one(q).collects, one(q).summarizes], q).toEqual([true, false]);
    }
    expect(one('SELECT count(*), max(name) FROM t').collects).toBe(false);
    // The catalog's rows are no data export: psql's \du and \d.
    expect(one('SELECT r.rolname, ARRAY(SELECT b.rolname FROM pg_catalog.pg_auth_members m JOIN pg_catalog.pg_roles b ON (m.roleid = b.oid) WHERE m.member = r.oid) AS memberof FROM pg_catalog.pg_roles r').collects).toBe(false);
    expect(one("SELECT array_to_string(c.reloptions || array(SELECT 'toast.' || x FROM pg_catalog.unnest(tc.reloptions) x), ', ') FROM pg_catalog.pg_class c LEFT JOIN pg_class tc ON (c.reltoastrelid = tc.oid)").collects).toBe(false);
    expect(one('SELECT string_agg(table_name, \',\') FROM information_schema.tables').collects).toBe(false);
  });

  test('functions as written, wherever called (FROM first, in walk order)', () => {
    expect(one('SELECT lower(x), pg_catalog.upper(y) FROM generate_series(1, 3) g WHERE md5(z) = \'\'').functions).toEqual(['generate_series', 'lower', 'pg_catalog.upper', 'md5']);
    expect(one('CALL bank.transfer(1, 2)').functions).toEqual(['bank.transfer']);
    expect(one('SELECT 1').functions).toEqual([]);
  });
  test('columns mentioned, read or written', () => {
    expect(one('SELECT c.ssn, email FROM customers c WHERE id = 1').columns).toEqual(['ssn', 'email', 'id']);
    expect(one('SELECT * FROM customers').columns).toEqual(['*']);
    expect(one('UPDATE t SET x = 1 WHERE id = 2').columns).toEqual(['x', 'id']);
    expect(one('INSERT INTO t (a, b) VALUES (1, 2)').columns).toEqual(['a', 'b']);
    expect(one('COPY t (a, b) TO STDOUT').columns).toEqual(['a', 'b']);
  });
  test('protected columns come from the caller, per statement index', () => {
    const r = classifyQuery('SELECT ssn FROM customers; SELECT 1', (i) => (i === 0 ? ['public.customers.ssn'] : []));
    expect(r.statements.map((s) => s.protectedColumns)).toEqual([['public.customers.ssn'], []]);
    expect(classifyQuery('SELECT 1').statements[0]!.protectedColumns).toEqual([]);
  });
});

describe('nested writes', () => {
  test('a data-modifying CTE is classified on its own, and the outer statement stays a select', () => {
    const s = one('WITH d AS (DELETE FROM customers RETURNING *) SELECT * FROM d WHERE id = 1');
    expect(s).toMatchObject({ kind: 'select', where: true, tables: ['customers'] });
    expect(s.nested).toHaveLength(1);
    expect(s.nested[0]).toMatchObject({ kind: 'delete', where: false, tables: ['customers'], nested: [] });
  });
  test('COPY (DML RETURNING) TO, and writes nested in writes', () => {
    expect(one('COPY (UPDATE t SET x = 1 RETURNING *) TO STDOUT').nested.map((n) => [n.kind, n.where])).toEqual([['update', false]]);
    const s = one('WITH a AS (INSERT INTO log VALUES (1) RETURNING 1) UPDATE t SET x = 1 WHERE id = 1');
    expect(s).toMatchObject({ kind: 'update', where: true, tables: ['log', 't'] });
    expect(s.nested.map((n) => n.kind)).toEqual(['insert']);
  });
  test('the statement\'s own query is not nested in itself', () => {
    expect(one('EXPLAIN ANALYZE DELETE FROM t').nested).toEqual([]);
    expect(one('PREPARE p AS DELETE FROM t').nested).toEqual([]);
    expect(one('DELETE FROM t').nested).toEqual([]);
  });
});

describe('code: what DO blocks and function bodies run is nested; what hoop cannot read is opaque', () => {
  const nestedKinds = (text: string) => one(text).nested.map((n) => [n.kind, n.tables]);

  test('a DO block runs its statements: each is nested, with its tables, and the DO stays utility', () => {
    const c = one('DO $$ DECLARE r record; BEGIN DELETE FROM accounts; FOR r IN SELECT * FROM customers LOOP RAISE NOTICE \'%\', r; END LOOP; END $$');
    expect(c.kind).toBe('utility');
    expect(c.opaque).toBeUndefined();
    expect(c.nested.map((n) => [n.kind, n.tables, n.where])).toEqual([['delete', ['accounts'], false], ['select', ['customers'], false]]);
  });

  test('expressions are read as SELECTs of them: a subquery in an assignment reads its table', () => {
    expect(nestedKinds('DO $$ DECLARE n int; BEGIN n := (SELECT count(*) FROM cards); END $$')).toEqual([['select', ['cards']]]);
  });

  test('a function or procedure defines what it runs: SQL bodies parsed, PL/pgSQL ones compiled, BEGIN ATOMIC walked', () => {
    expect(nestedKinds("CREATE FUNCTION f() RETURNS void LANGUAGE sql AS 'DELETE FROM accounts; SELECT 1 FROM cards'")).toEqual([['delete', ['accounts']], ['select', ['cards']]]);
    expect(nestedKinds('CREATE PROCEDURE p() LANGUAGE plpgsql AS $$ BEGIN UPDATE accounts SET balance = 0; END $$')).toEqual([['update', ['accounts']]]);
    expect(nestedKinds('CREATE FUNCTION f() RETURNS void LANGUAGE sql BEGIN ATOMIC DELETE FROM accounts; END')).toEqual([['delete', ['accounts']]]);
    // Code inside code: a DO block that defines a function that deletes.
    expect(nestedKinds("DO $$ BEGIN CREATE FUNCTION g() RETURNS void LANGUAGE sql AS 'DELETE FROM cards'; END $$")).toEqual([['ddl', []], ['delete', ['cards']]]);
  });

  test.each([
    ["DO $$ BEGIN EXECUTE 'DELETE FROM accounts'; END $$", /a DO block with dynamic SQL/],
    ["DO $$ DECLARE r record; BEGIN FOR r IN EXECUTE 'SELECT 1' LOOP END LOOP; END $$", /dynamic SQL/],
    ["DO LANGUAGE plperl $$ spi_exec_query('DELETE FROM accounts') $$", /a DO block in plperl/],
    ['DO $$ BEGIN nonsense; END $$', /does not compile/],
    ["CREATE FUNCTION f() RETURNS void LANGUAGE plpgsql AS $$ BEGIN EXECUTE 'TRUNCATE accounts'; END $$", /a function body with dynamic SQL/],
    ["CREATE FUNCTION f() RETURNS int LANGUAGE c AS 'lib', 'f'", /object code/],
    ['CALL bank.transfer(1, 2)', /CALL runs a procedure/],
    ["DO $$ BEGIN CREATE FUNCTION g() RETURNS void LANGUAGE plpgsql AS $f$ BEGIN EXECUTE 'x'; END $f$; END $$", /dynamic SQL/],
  ])('%s', (text, why) => {
    expect(one(text).opaque).toMatch(why);
  });

  test('ordinary functions and DO blocks are not opaque', () => {
    expect(one('CREATE FUNCTION add(a int, b int) RETURNS int LANGUAGE sql AS $$ SELECT a + b $$').opaque).toBeUndefined();
    expect(one("DO $$ BEGIN RAISE NOTICE 'hi'; END $$").opaque).toBeUndefined();
  });
});

describe('queries given as text: functions that run them read what they read', () => {
  test('query_to_xml, ts_stat, crosstab: the constant query is nested, with its tables', () => {
    expect(one("SELECT query_to_xml('SELECT * FROM customers', true, false, '')").nested.map((n) => [n.kind, n.tables, n.where])).toEqual([['select', ['customers'], false]]);
    expect(one("SELECT ts_stat('SELECT to_tsvector(full_name) FROM customers WHERE id > 0')").nested.map((n) => [n.tables, n.where])).toEqual([[['customers'], true]]);
    expect(one("SELECT * FROM crosstab('SELECT a, b, c FROM accounts', 3) AS t(a int, b int, c int)").nested.map((n) => n.tables)).toEqual([['accounts']]);
  });

  test('table_to_xml reads the table it names', () => {
    expect(one("SELECT table_to_xml('bank.customers', true, false, '')").nested.map((n) => [n.kind, n.tables, n.where])).toEqual([['select', ['bank.customers'], false]]);
    expect(one("SELECT table_to_xml('\"Odd Name\"'::regclass, true, false, '')").nested.map((n) => n.tables)).toEqual([['Odd Name']]);
  });

  test.each([
    ["SELECT query_to_xml(q, true, false, '') FROM queries", /query_to_xml runs a query given as text that is not a constant/],
    ["SELECT table_to_xml(t::regclass, true, false, '') FROM tables", /table_to_xml reads a table it is not given by name/],
    ["SELECT schema_to_xml('bank', true, false, '')", /schema_to_xml reads every table/],
    ["SELECT cursor_to_xml('c', 1000, true, false, '')", /cursor_to_xml reads a cursor's rows/],
    ["SELECT query_to_xml('SELECT (', true, false, '')", /a query given as text that does not parse/],
  ])('opaque: %s', (text, why) => {
    expect(one(text).opaque).toMatch(why);
  });
});

describe('copies: the query whose rows a statement writes elsewhere is a read of its own', () => {
  test.each([
    ['INSERT INTO archive SELECT * FROM customers', 'insert'],
    ['CREATE TABLE c2 AS SELECT * FROM customers', 'ddl'],
    ['CREATE MATERIALIZED VIEW m AS SELECT * FROM customers', 'ddl'],
    ['SELECT * INTO c2 FROM customers', 'ddl'],
  ])('%s', (text, kind) => {
    const c = one(text);
    expect(c.kind).toBe(kind);
    expect(c.nested.map((n) => [n.kind, n.tables, n.where])).toEqual([['select', ['customers'], false]]);
  });

  test('VALUES reads no relation: no read', () => {
    expect(one('INSERT INTO t VALUES (1)').nested).toEqual([]);
    expect(one('INSERT INTO t SELECT 1').nested).toEqual([]);
  });
});

describe('cursorsOf: the SQL cursors a text declares and reads, for the row cap', () => {
  test('DECLARE and FETCH by name, quoted or not; MOVE reads no rows; other texts none', () => {
    expect(cursorsOf('BEGIN; DECLARE c CURSOR FOR SELECT 1; FETCH 10 FROM c')).toEqual({ declares: ['c'], fetches: ['c'] });
    expect(cursorsOf('/* x */ fetch forward all in "My Cursor"')).toEqual({ declares: [], fetches: ['My Cursor'] });
    expect(cursorsOf('MOVE 10 IN c')).toBeNull();
    expect(cursorsOf("SELECT 'fetch' AS declare")).toBeNull();
    expect(cursorsOf('SELECT 1')).toBeNull();
  });
});

describe('query strings', () => {
  test('every statement of a multi-statement string, in order', () => {
    const r = classifyQuery('BEGIN; SELECT * FROM customers; UPDATE t SET x = 1 WHERE id = 1; COMMIT');
    expect(r.parseError).toBeNull();
    expect(r.statements.map((s) => s.kind)).toEqual(['transaction', 'select', 'update', 'transaction']);
  });
  test('an empty string has no statements; a syntax error is a parse error', () => {
    expect(classifyQuery('')).toEqual({ statements: [], parseError: null });
    expect(classifyQuery(' ; ')).toEqual({ statements: [], parseError: null });
    const bad = classifyQuery('SELEC * FROM customers');
    expect(bad.statements).toEqual([]);
    expect(bad.parseError).toMatch(/syntax error/);
    expect(classifyQuery('SELECT 1; SELEC 2').statements).toEqual([]);
  });
});
