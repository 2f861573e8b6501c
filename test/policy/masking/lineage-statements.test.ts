/** Statements: what each returns, the names it defines, COPY formats, and every refusal rule. */
import { beforeAll, describe, expect, test } from 'vitest';
import { loadParser } from '../../../src/policy/masking/parse.js';
import { analyzeQuery, copyFormat } from '../../../src/policy/masking/lineage.js';
import { makeEnv, shape } from './lineage-fixture.js';
import { columns, one, refusals } from './lineage-helpers.js';

beforeAll(() => loadParser());

const SSN = 'direct:public.customers.ssn';

describe('results of statements', () => {
  test('RETURNING of INSERT / UPDATE / DELETE / MERGE', () => {
    expect(columns("INSERT INTO public.notes VALUES (1, 'x') RETURNING body")).toEqual(['body=clear']);
    expect(columns("DELETE FROM customers WHERE id = 1 RETURNING email, old.ssn")).toEqual(['email=direct:public.customers.email', `ssn=${SSN}`]);
    expect(columns('UPDATE customers SET full_name = full_name RETURNING ssn, upper(ssn) AS u')).toEqual([`ssn=${SSN}`, 'u=derived:public.customers.ssn']);
    expect(columns("MERGE INTO vault v USING customers c ON v.id = c.id WHEN MATCHED THEN UPDATE SET ssn_copy = c.ssn RETURNING v.ssn_copy")).toEqual(['ssn_copy=direct:public.vault.ssn_copy']);
    expect(columns("INSERT INTO public.notes VALUES (1, 'x')")).toEqual([]);
  });
  test('a data-modifying CTE returns its RETURNING', () => {
    expect(columns('WITH m AS (DELETE FROM customers RETURNING ssn) SELECT * FROM m')).toEqual([`ssn=${SSN}`]);
  });
  test('COPY (query) TO STDOUT and COPY t TO STDOUT, with their formats', () => {
    const q = one('COPY (SELECT id, ssn FROM customers) TO STDOUT WITH (FORMAT csv, HEADER)');
    expect(q.result!.map((c) => shape(c.taint))).toEqual(['clear', SSN]);
    expect(q.copy).toEqual({ format: 'csv', delimiter: ',', null: '', quote: '"', escape: '"', header: true });
    const t = one('COPY customers (id, email) TO STDOUT BINARY');
    expect(t.result!.map((c) => `${c.name}=${shape(c.taint)}`)).toEqual(['id=clear', 'email=direct:public.customers.email']);
    expect(t.copy?.format).toBe('binary');
    expect(one('COPY customers TO STDOUT').copy).toEqual({ format: 'text', delimiter: '\t', null: '\\N', quote: '"', escape: '"', header: false });
    expect(one("COPY customers TO STDOUT WITH (FORMAT csv, DELIMITER ';', NULL 'n', QUOTE '''', HEADER false)").copy).toEqual({
      format: 'csv', delimiter: ';', null: 'n', quote: "'", escape: "'", header: false,
    });
  });
  test('copyFormat reads the options list', () => {
    expect(copyFormat([]).format).toBe('text');
  });
  test('COPY FROM STDIN returns nothing and is allowed', () => {
    const s = one('COPY customers FROM STDIN');
    expect([s.result, s.copy, s.refusals]).toEqual([[], null, []]);
  });
  test('DECLARE / FETCH / MOVE / CLOSE', () => {
    const d = one('DECLARE cur CURSOR FOR SELECT ssn FROM customers');
    expect(d.result).toEqual([]);
    const declared = d.effects[0];
    expect(declared).toMatchObject({ kind: 'declare', name: 'cur' });
    expect(declared?.kind === 'declare' ? declared.result?.map((c) => shape(c.taint)) : null).toEqual([SSN]);
    const cursors = { cur: [{ name: 'ssn', taint: { sources: [], direct: false, unknown: 'x' } }] };
    expect(columns('FETCH 10 FROM cur', { cursors })).toEqual(['ssn=unknown']);
    expect(one('FETCH 10 FROM never_seen').result).toBeNull();
    expect(one('MOVE cur').result).toEqual([]);
    expect(one('CLOSE ALL').effects).toEqual([{ kind: 'close', name: null }]);
  });
  test('PREPARE / EXECUTE / DEALLOCATE, followed within one query string', () => {
    const a = analyzeQuery('PREPARE p AS SELECT id, email FROM customers; EXECUTE p; DEALLOCATE p; EXECUTE p', makeEnv());
    expect(a.statements.map((s) => s.result?.map((c) => shape(c.taint)) ?? null)).toEqual([[], ['clear', 'direct:public.customers.email'], [], null]);
    expect(a.statements[2]!.effects).toEqual([{ kind: 'deallocate', name: 'p' }]);
    expect(one('EXECUTE q').result).toBeNull();
    expect(one('DEALLOCATE ALL').effects).toEqual([{ kind: 'deallocate', name: null }]);
    expect(one('DISCARD ALL').effects).toEqual([{ kind: 'discard' }]);
  });
  test('EXPLAIN returns a clear plan but its query counts', () => {
    const s = one("EXPLAIN ANALYZE SELECT leak(ssn) FROM customers WHERE ssn LIKE '1%'");
    expect(s.result!.map((c) => `${c.name}=${shape(c.taint)}`)).toEqual(['QUERY PLAN=clear']);
    expect(s.predicates.map((p) => p.clause)).toEqual(['where']);
    expect(s.refusals).toHaveLength(1);
  });
  test('SHOW, SET, BEGIN', () => {
    expect(columns('SHOW work_mem')).toEqual(['work_mem=clear']);
    expect(columns('SET search_path = x')).toEqual([]);
    expect(columns('BEGIN')).toEqual([]);
  });
  test('several statements, in order; empty and parse errors', () => {
    expect(analyzeQuery('SELECT 1; SELECT ssn FROM customers', makeEnv()).statements).toHaveLength(2);
    expect(analyzeQuery('', makeEnv())).toEqual({ statements: [], parseError: null });
    expect(analyzeQuery('SELECT 1 FROM', makeEnv()).parseError).toMatch(/syntax error/);
  });
});

describe('refusals', () => {
  const refused = (sql: string, pattern: RegExp) => expect(refusals(sql).join('\n')).toMatch(pattern);
  const allowed = (sql: string) => expect(refusals(sql)).toEqual([]);

  test('user-defined functions unless trusted (every schema that defines an unqualified name)', () => {
    refused('SELECT leak(ssn) FROM customers', /public\.leak.*trusted_functions/);
    refused('SELECT public.leak(id) FROM customers', /public\.leak\(\) is a user-defined function/);
    allowed('SELECT safe_fn(ssn) FROM customers');
    expect(columns('SELECT safe_fn(ssn) AS s FROM customers')).toEqual(['s=derived:public.customers.ssn']);
    refused('SELECT twice(id) FROM customers', /util\.twice/);
    allowed('SELECT public.twice(id) FROM customers');
  });
  test('unknown functions', () => refused('SELECT mystery(1)', /mystery\(\) is not a function the gateway knows/));
  test('a view that calls a user-defined function is refused when read', () => refused('SELECT id FROM v_leaky', /public\.leak/));
  test('value-sampling and query-text functions, always', () => {
    refused("SELECT query_to_xml('select ssn from customers', true, true, '')", /query_to_xml/);
    refused("SELECT table_to_xml('customers', true, true, '')", /table_to_xml/);
    refused("SELECT * FROM ts_stat('select 1')", /ts_stat/);
    refused("SELECT data FROM pg_logical_slot_peek_changes('debezium', NULL, NULL)", /pg_logical_slot_peek_changes\(\) is refused on a masking connection: it returns the changes written/);
    refused("SELECT * FROM pg_catalog.pg_logical_slot_get_binary_changes('s', NULL, NULL, 'proto_version', '1')", /pg_logical_slot_get_binary_changes/);
  });
  test('pg_stats-family relations', () => {
    refused('SELECT * FROM pg_stats', /pg_stats/);
    refused('SELECT most_common_vals FROM pg_catalog.pg_stats_ext', /pg_stats_ext/);
    refused('SELECT * FROM pg_statistic', /pg_statistic/);
    refused('SELECT * FROM pg_statistic_ext_data', /pg_statistic_ext_data/);
    // Statistics objects' definitions hold no values (pg_dump reads them).
    expect(refusals('SELECT stxname FROM pg_catalog.pg_statistic_ext')).toEqual([]);
  });
  test("other sessions' statement texts (an exempt user's UPDATE carries the values it writes)", () => {
    refused('SELECT query FROM pg_stat_activity', /pg_stat_activity is refused on a masking connection: it shows other sessions' statements/);
    refused('SELECT query FROM pg_catalog.pg_stat_activity', /pg_stat_activity/);
    refused('SELECT query FROM public.pg_stat_statements', /pg_stat_statements/);
    refused('SELECT query FROM extensions.pg_stat_statements', /pg_stat_statements/);
    refused('SELECT * FROM pg_stat_get_activity(NULL)', /pg_stat_get_activity\(\) is refused/);
    refused('SELECT pg_stat_get_backend_activity(1)', /pg_stat_get_backend_activity\(\) is refused/);
    // pg_stat_ssl is built on the same function, but shows no statements: the server's own views are refused by name.
    expect(refusals('SELECT ssl FROM pg_stat_ssl')).toEqual([]);
    // A table of the user's own that happens to share the name is not the catalog's.
    expect(refusals('SELECT id FROM public.pg_stat_activity')).toEqual([]);
  });
  test("the server's files: its data files and log hold values unmasked", () => {
    refused("SELECT pg_read_file('log/postgresql.log')", /pg_read_file\(\) is refused on a masking connection: it reads the server's files/);
    refused("SELECT pg_catalog.pg_read_binary_file('base/1/1259')", /pg_read_binary_file/);
    refused("SELECT lo_import('/etc/passwd')", /lo_import/);
    refused("COPY public.notes (body) FROM '/var/lib/postgresql/data/log/postgresql.log'", /COPY FROM a server file is refused/);
    refused("COPY public.notes FROM PROGRAM 'cat /etc/passwd'", /COPY FROM a program is refused/);
    expect(refusals('COPY public.notes FROM STDIN')).toEqual([]);
  });
  test('side-effect sinks only when protected data flows in', () => {
    refused("SELECT set_config('x.y', ssn, false) FROM customers", /set_config/);
    refused("SELECT pg_notify('c', ssn) FROM customers", /pg_notify/);
    refused("SELECT lo_from_bytea(0, convert_to(ssn, 'UTF8')) FROM customers", /lo_from_bytea/);
    refused('SELECT pg_advisory_lock(credit_score) FROM customers', /pg_advisory_lock/);
    allowed("SELECT set_config('x.y', 'z', false)");
    allowed("SELECT pg_notify('c', full_name) FROM customers");
  });
  test('DO, CALL and code-defining DDL', () => {
    refused("DO 'begin end'", /DO is refused/);
    refused('CALL p()', /CALL is refused/);
    refused("CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'select 1'", /CREATE FUNCTION/);
    refused("CREATE PROCEDURE p() LANGUAGE sql AS 'select 1'", /CREATE FUNCTION \/ PROCEDURE/);
    refused('CREATE TRIGGER t AFTER INSERT ON notes FOR EACH ROW EXECUTE FUNCTION f()', /CREATE TRIGGER/);
    refused('CREATE RULE r AS ON SELECT TO notes DO INSTEAD SELECT * FROM customers', /CREATE RULE/);
    refused('CREATE EVENT TRIGGER e ON ddl_command_start EXECUTE FUNCTION f()', /CREATE EVENT TRIGGER/);
    refused('CREATE CAST (text AS int) WITH FUNCTION f(text)', /CREATE CAST/);
    refused('CREATE OPERATOR === (function = f, leftarg = text, rightarg = text)', /CREATE OPERATOR/);
    refused('CREATE AGGREGATE a(text) (sfunc = f, stype = text)', /CREATE AGGREGATE/);
  });
  test('renaming a schema: rules name schemas', () => {
    refused('ALTER SCHEMA public RENAME TO p2', /renaming schema public is refused on a masking connection/);
    allowed('ALTER SCHEMA public OWNER TO someone');
  });
  test("a parent's columns carry its children's rules: its rows include theirs", () => {
    expect(columns('SELECT ssn, full_name, id FROM people')).toEqual(['ssn=direct:public.customers.ssn', 'full_name=clear', 'id=clear']);
    expect(columns('SELECT upper(p.ssn) AS s FROM people p')).toEqual(['s=derived:public.customers.ssn']);
    expect(one("SELECT id FROM people WHERE ssn LIKE '1%'").predicates.map((u) => `${u.clause}:${u.column}`)).toEqual(['where:public.customers.ssn']);
  });
  test('changing which tables a protected one inherits from or is a partition of', () => {
    refused('ALTER TABLE customers INHERIT notes', /ALTER TABLE … INHERIT of customers, which holds protected columns, is refused/);
    refused('ALTER TABLE customers NO INHERIT people', /NO INHERIT of customers/);
    refused('ALTER TABLE notes ATTACH PARTITION public.customers FOR VALUES FROM (0) TO (10)', /ATTACH PARTITION of public\.customers/);
    refused('ALTER TABLE people DETACH PARTITION customers', /DETACH PARTITION of customers/);
    refused('ALTER TABLE people DETACH PARTITION customers FINALIZE', /DETACH PARTITION of customers/);
    // people holds no protected column of its own, but its child does.
    refused('ALTER TABLE people INHERIT notes', /INHERIT of people/);
    allowed('ALTER TABLE public.notes INHERIT people'); // (unqualified, notes is also archive.notes, which is protected)
    allowed('ALTER TABLE people DETACH PARTITION public.notes');
  });
  test('writing protected data into a column no rule protects', () => {
    refused('INSERT INTO public.notes (body) SELECT ssn FROM customers', /INSERT would write protected data \(public\.customers\.ssn\) into public\.notes\.body/);
    refused('INSERT INTO public.notes SELECT id, email FROM customers', /public\.notes\.body/);
    refused('UPDATE public.notes n SET body = c.email FROM customers c WHERE c.id = n.id', /UPDATE would write/);
    refused('UPDATE public.notes SET (id, body) = (SELECT id, ssn FROM customers LIMIT 1)', /public\.notes\.body/);
    refused('MERGE INTO public.notes n USING customers c ON n.id = c.id WHEN MATCHED THEN UPDATE SET body = c.ssn', /MERGE/);
    refused('MERGE INTO public.notes n USING customers c ON n.id = c.id WHEN NOT MATCHED THEN INSERT VALUES (c.id, c.ssn)', /MERGE/);
    refused('INSERT INTO public.notes (id, body) VALUES (1, (SELECT ssn FROM customers LIMIT 1))', /public\.notes\.body/);
    refused('WITH m AS (DELETE FROM customers RETURNING ssn) INSERT INTO public.notes (body) SELECT ssn FROM m', /public\.notes\.body/);
    refused("INSERT INTO public.notes (id, body) SELECT 1, 'x' ON CONFLICT (id) DO UPDATE SET body = (SELECT ssn FROM customers LIMIT 1)", /ON CONFLICT/);
    refused('INSERT INTO nosuch SELECT ssn FROM customers', /cannot name/);
  });
  test('writing into a protected column whose mask would show more of the value than its own rules do', () => {
    // ssn is partial (keep 4), *.*.account_number hash, email redact, credit_score null.
    refused('UPDATE customers SET ssn = email', /UPDATE would write protected data \(public\.customers\.email\) into customers\.ssn, whose partial mask would show the last 4 characters, where public\.customers\.email's redact mask shows none/);
    refused('UPDATE customers SET ssn = substr(email, 5, 5)', / into customers\.ssn, whose partial mask would show part of a value computed from protected data/);
    refused('UPDATE customers SET ssn = reverse(ssn)', /partial mask would show part of a value computed/);
    refused('UPDATE customers SET ssn = upper(ssn)', /partial mask would show part of a value computed/);
    refused("UPDATE customers SET ssn = 'xx' || credit_score", /credit_score/);
    // A table of the user's own whose column a glob protects: a dictionary of hash tokens.
    refused('INSERT INTO archive.accounts (id, account_number) SELECT id, substr(ssn, 1, 1) FROM customers', /archive\.accounts\.account_number, whose hash mask would show part of a value computed/);
    refused('INSERT INTO archive.accounts (id, account_number) SELECT id, email FROM customers', /whose hash mask would show which values are equal, where public\.customers\.email's redact mask does not/);
    refused('UPDATE accounts SET account_number = c.ssn FROM customers c WHERE c.id = accounts.customer_id', /hash mask would show which values are equal, where public\.customers\.ssn's partial mask does not/);
    refused('MERGE INTO archive.accounts a USING customers c ON a.id = c.id WHEN MATCHED THEN UPDATE SET account_number = c.email', /MERGE \.\.\. UPDATE would write/);
    refused("INSERT INTO accounts (id, account_number) SELECT 1, 'x' ON CONFLICT (id) DO UPDATE SET account_number = (SELECT email FROM customers LIMIT 1)", /ON CONFLICT/);
    // Through an updatable view, the rule is that of the column it shows.
    refused('UPDATE v_customers SET ssn = (SELECT email FROM customers LIMIT 1)', /into v_customers\.ssn, whose partial mask/);
    // ... also where the view's column has a rule of its own that shows nothing: the value lands in customers.ssn.
    refused('UPDATE archive.v_hint SET ssn_hint = (SELECT email FROM customers LIMIT 1)', /into archive\.v_hint\.ssn_hint, whose partial mask would show the last 4 characters/);
  });
  test("values of the statement's own into a hash column: their tokens read back would be a dictionary", () => {
    refused("INSERT INTO archive.accounts (id, account_number) VALUES (1, '700')", /INSERT would write values of its own into archive\.accounts\.account_number, whose hash mask would then show their tokens/);
    refused("UPDATE accounts SET account_number = '750' WHERE id = 1", /UPDATE would write values of its own into accounts\.account_number/);
    refused('COPY archive.accounts FROM STDIN', /COPY FROM would write values of its own into archive\.accounts\.account_number/);
    refused('COPY archive.accounts (id, account_number) FROM STDIN', /account_number/);
    expect(refusals('COPY archive.accounts (id, balance) FROM STDIN')).toEqual([]);
    expect(refusals("INSERT INTO archive.accounts (id, balance) VALUES (1, '7')")).toEqual([]);
    // Into other masks, a value of one's own shows nothing one did not know.
    expect(refusals("UPDATE customers SET ssn = '123-45-6789', email = 'x@y.z' WHERE id = 1")).toEqual([]);
  });
  test('writes that keep protection (or carry nothing protected) are allowed', () => {
    allowed('INSERT INTO vault (ssn_copy) SELECT ssn FROM customers');
    allowed('UPDATE customers SET email = lower(email)');
    allowed('UPDATE customers SET email = ssn');
    allowed('UPDATE customers SET ssn = ssn');
    allowed('INSERT INTO archive.accounts SELECT * FROM public.accounts');
    allowed('UPDATE v_customers SET ssn = ssn');
    allowed('UPDATE archive.v_hint SET ssn_hint = ssn_hint');
    allowed("UPDATE customers SET ssn = '123-45-6789'");
    allowed('INSERT INTO public.notes (id, body) SELECT id, full_name FROM customers');
    allowed('INSERT INTO public.notes (body) SELECT full_name FROM customers WHERE ssn IS NOT NULL');
  });
  test('CREATE TABLE AS / SELECT INTO / CREATE MATERIALIZED VIEW with protected data', () => {
    refused('CREATE TABLE t2 AS SELECT ssn FROM customers', /CREATE TABLE AS/);
    refused('CREATE TEMP TABLE t2 AS SELECT upper(email) FROM customers', /CREATE TABLE AS/);
    refused('SELECT ssn INTO tmp FROM customers', /SELECT INTO/);
    refused('CREATE MATERIALIZED VIEW mv AS SELECT email FROM customers', /CREATE MATERIALIZED VIEW/);
    refused('CREATE TABLE t2 AS SELECT * FROM nosuch', /cannot be named/);
    allowed('CREATE TABLE t3 AS SELECT id, full_name FROM customers');
    allowed('CREATE TABLE t4 AS SELECT ssn FROM customers WITH NO DATA');
  });
  test('CREATE VIEW is allowed, but its query is checked', () => {
    allowed('CREATE VIEW v AS SELECT ssn FROM customers');
    refused('CREATE VIEW v AS SELECT leak(ssn) FROM customers', /leak/);
  });
  test('COPY to a server file or program with protected data', () => {
    refused("COPY customers TO '/tmp/x'", /COPY TO a server file/);
    refused("COPY (SELECT ssn FROM customers) TO PROGRAM 'cat'", /COPY TO PROGRAM/);
    allowed("COPY (SELECT id FROM customers) TO '/tmp/x'");
  });
  test('renaming protected columns, expressions that run later', () => {
    refused('ALTER TABLE customers RENAME COLUMN ssn TO x', /renaming customers/);
    refused('ALTER TABLE customers ADD COLUMN s2 text GENERATED ALWAYS AS (ssn) STORED', /ALTER TABLE/);
    refused("CREATE POLICY p ON customers USING (ssn LIKE '1%')", /CREATE POLICY/);
    allowed('ALTER TABLE customers ADD COLUMN note text');
  });
  test('defining, renaming or moving types: a domain pg_temp.text would stand in for the built-in one in casts', () => {
    for (const sql of [
      "CREATE DOMAIN pg_temp.text AS pg_catalog.text CHECK (VALUE <> '700')",
      "CREATE DOMAIN d AS text CHECK (VALUE <> 'x')",
      "ALTER DOMAIN d ADD CONSTRAINT c CHECK (VALUE <> 'y')",
      "CREATE TYPE pg_temp.text AS ENUM ('123-45-6789')",
      "ALTER TYPE mood ADD VALUE 'x'",
      'CREATE TYPE pair AS (a int, b text)',
      'CREATE TYPE r AS RANGE (subtype = int4)',
      'CREATE TYPE shell',
      'ALTER TYPE mood RENAME TO text',
      'ALTER DOMAIN d RENAME TO varchar',
      'ALTER TYPE mood SET SCHEMA pg_temp',
    ]) refused(sql, /defining, renaming or moving a type or domain is refused/);
    allowed('ALTER TABLE public.notes RENAME TO notes2');
  });
  test('a FOREIGN KEY referencing a protected column: each row written would say whether its value is among them', () => {
    for (const sql of [
      'CREATE TEMP TABLE guesses (g text REFERENCES accounts (account_number))',
      'CREATE TABLE guesses (g text, FOREIGN KEY (g) REFERENCES public.customers (ssn))',
      'ALTER TABLE notes ADD FOREIGN KEY (body) REFERENCES vault (ssn_copy)',
      'CREATE TABLE guesses (g text REFERENCES vault)', // no column named: its primary key, whichever it is
      'CREATE TABLE guesses (g text REFERENCES nosuch (x))',
    ]) refused(sql, /a FOREIGN KEY referencing .* is refused on a masking connection/);
    // Added to a table that holds protected values: checking them says whether each is among the referenced ones.
    refused('ALTER TABLE archive.accounts ADD FOREIGN KEY (account_number) REFERENCES notes (body)', /a FOREIGN KEY on protected column archive\.accounts\.account_number is refused/);
    allowed('CREATE TABLE orders (id int, customer_id int REFERENCES customers (id))');
    allowed('ALTER TABLE notes ADD FOREIGN KEY (id) REFERENCES public.customers (id)');
  });
  test('building a unique key over a protected column compares the values it holds', () => {
    for (const sql of [
      'CREATE UNIQUE INDEX ON customers (email)',
      'CREATE UNIQUE INDEX ON public.customers (id, ssn)',
      'ALTER TABLE customers ADD UNIQUE (email)',
      'ALTER TABLE customers ADD PRIMARY KEY (ssn)',
      'ALTER TABLE customers ADD EXCLUDE USING btree (email WITH =)',
      'ALTER TABLE archive.accounts ADD CONSTRAINT k UNIQUE (account_number)',
    ]) refused(sql, /a unique key over protected column .* is refused on a masking connection/);
    allowed('CREATE INDEX ON customers (email)');
    allowed('CREATE UNIQUE INDEX ON customers (id)');
    allowed('ALTER TABLE customers ADD UNIQUE (full_name)');
  });
  test('CLUSTER, and a new type for a protected column', () => {
    refused('CLUSTER customers USING customers_ssn_key', /CLUSTER of a table that holds protected columns is refused/);
    refused('ALTER TABLE customers CLUSTER ON customers_ssn_key', /CLUSTER of a table that holds protected columns is refused/);
    refused('ALTER TABLE customers ALTER COLUMN email TYPE varchar(20)', /changing the type of protected column public\.customers\.email is refused/);
    allowed('CLUSTER public.notes USING notes_pkey');
    allowed('ALTER TABLE customers ALTER COLUMN full_name TYPE varchar(200)');
  });
  test("settings that steer the plan: a plain SELECT's row order would follow an index over a protected column", () => {
    for (const sql of ['SET enable_seqscan = off', 'SET LOCAL random_page_cost = 0', 'SET SESSION Enable_BitmapScan TO off', "SELECT set_config('enable_seqscan', 'off', false)"]) {
      refused(sql, /setting \S+ is refused on a masking connection: it steers the plan/i);
    }
    // A computed name is not checked (pg_dump reads one from pg_settings: test/e2e/masking.test.ts).
    allowed("SELECT set_config(n, 'view, foreign-table', false) FROM (VALUES ('restrict_nonsystem_relation_kind')) v(n)");
    for (const sql of ['RESET enable_seqscan', 'RESET ALL', 'SET work_mem = 1', "SET search_path = public", "SELECT set_config('application_name', 'x', false)"]) allowed(sql);
  });
  test('foreign tables, servers and subscriptions: a loopback server would read protected tables under other names', () => {
    for (const sql of [
      "CREATE FOREIGN TABLE ft (ssn text) SERVER loopback OPTIONS (table_name 'customers')",
      'IMPORT FOREIGN SCHEMA public FROM SERVER loopback INTO archive',
      "CREATE SERVER loopback FOREIGN DATA WRAPPER postgres_fdw OPTIONS (dbname 'bank')",
      "ALTER SERVER loopback OPTIONS (SET dbname 'bank')",
      'CREATE USER MAPPING FOR CURRENT_USER SERVER loopback',
      "CREATE SUBSCRIPTION s CONNECTION 'dbname=bank' PUBLICATION p",
    ]) refused(sql, /foreign tables, servers, user mappings and subscriptions are refused/);
  });
  test('EXECUTE with protected parameters', () => refused('EXECUTE p((SELECT ssn FROM customers LIMIT 1))', /EXECUTE would pass/));
  test('ordinary statements are not refused', () => {
    for (const sql of ['SELECT * FROM customers', 'BEGIN', 'COMMIT', 'SET work_mem = 1', 'VACUUM customers', 'CREATE INDEX ON customers (ssn)']) allowed(sql);
  });
});
