/** The display rules of `hoop sessions show`: which statements are psql's catalog queries, and COPY layouts. */
import { describe, expect, it } from 'vitest';
import { namesIdentity } from '../../src/gateway/authz.js';
import { catalogRelations, copyFields, copyLayout } from '../../src/cli/statement-view.js';

// What psql 15 sends for `\dt` and (first two of) `\d customers`, as psql -E shows them.
const DT = `SELECT n.nspname as "Schema",
  c.relname as "Name",
  CASE c.relkind WHEN 'r' THEN 'table' WHEN 'v' THEN 'view' WHEN 'm' THEN 'materialized view' WHEN 'i' THEN 'index' WHEN 'S' THEN 'sequence' WHEN 't' THEN 'TOAST table' WHEN 'f' THEN 'foreign table' WHEN 'p' THEN 'partitioned table' WHEN 'I' THEN 'partitioned index' END as "Type",
  pg_catalog.pg_get_userbyid(c.relowner) as "Owner"
FROM pg_catalog.pg_class c
     LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
     LEFT JOIN pg_catalog.pg_am am ON am.oid = c.relam
WHERE c.relkind IN ('r','p','')
      AND n.nspname <> 'pg_catalog'
      AND n.nspname !~ '^pg_toast'
      AND n.nspname <> 'information_schema'
  AND pg_catalog.pg_table_is_visible(c.oid)
ORDER BY 1,2;`;
const D1 = `SELECT c.oid,
  n.nspname,
  c.relname
FROM pg_catalog.pg_class c
     LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relname OPERATOR(pg_catalog.~) '^(customers)$' COLLATE pg_catalog.default
  AND pg_catalog.pg_table_is_visible(c.oid)
ORDER BY 2, 3;`;
const D2 = `SELECT a.attname,
  pg_catalog.format_type(a.atttypid, a.atttypmod),
  (SELECT pg_catalog.pg_get_expr(d.adbin, d.adrelid, true)
   FROM pg_catalog.pg_attrdef d
   WHERE d.adrelid = a.attrelid AND d.adnum = a.attnum AND a.atthasdef),
  a.attnotnull,
  (SELECT c.collname FROM pg_catalog.pg_collation c, pg_catalog.pg_type t
   WHERE c.oid = a.attcollation AND t.oid = a.atttypid AND a.attcollation <> t.typcollation) AS attcollation,
  a.attidentity,
  a.attgenerated
FROM pg_catalog.pg_attribute a
WHERE a.attrelid = '16385' AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum;`;

describe('catalogRelations', () => {
  it('recognises psql\'s backslash-command queries and names what they read', () => {
    expect(catalogRelations(DT)).toEqual(['pg_catalog.pg_class', 'pg_catalog.pg_namespace', 'pg_catalog.pg_am']);
    expect(catalogRelations(D1)).toEqual(['pg_catalog.pg_class', 'pg_catalog.pg_namespace']);
    expect(catalogRelations(D2)).toEqual(['pg_catalog.pg_attrdef', 'pg_catalog.pg_collation', 'pg_catalog.pg_type', 'pg_catalog.pg_attribute']);
    expect(catalogRelations('SELECT table_name FROM information_schema.tables WHERE table_schema = \'public\'')).toEqual(['information_schema.tables']);
  });

  it('never folds a statement that reads user data or reaches past the catalog', () => {
    const cases = [
      'SELECT ssn FROM customers',
      'SELECT * FROM public.customers',
      'SELECT relname FROM pg_class', // unqualified: not how psql writes it
      'SELECT c.relname FROM pg_catalog.pg_class c, customers x',
      'SELECT c.relname, (SELECT ssn FROM customers LIMIT 1) FROM pg_catalog.pg_class c',
      'SELECT c.relname FROM pg_catalog.pg_class c WHERE c.relname IN (SELECT ssn FROM public.customers)',
      'SELECT c.relname FROM pg_catalog.pg_class c JOIN customers x ON true',
      'SELECT pg_catalog.pg_read_file(\'/etc/passwd\') FROM pg_catalog.pg_class LIMIT 1',
      'SELECT pg_catalog.query_to_xml(\'select * from customers\', true, true, \'\') FROM pg_catalog.pg_class LIMIT 1',
      'SELECT secret_fn(c.oid) FROM pg_catalog.pg_class c',
      'SELECT public.f(c.oid) FROM pg_catalog.pg_class c',
      'SELECT c.relname FROM pg_catalog.pg_class c -- a comment',
      '/* why */ SELECT c.relname FROM pg_catalog.pg_class c',
      'SELECT c.relname FROM pg_catalog.pg_class c; SELECT ssn FROM customers',
      'SELECT $1::text FROM pg_catalog.pg_class',
      'SELECT 1',
      'WITH x AS (SELECT ssn FROM customers) SELECT * FROM pg_catalog.pg_class',
      'DELETE FROM pg_catalog.pg_class',
      "SELECT c.relname FROM pg_catalog.pg_class c WHERE c.relname = 'it''s' OR true FROM customers",
    ];
    for (const sql of cases) expect(catalogRelations(sql), sql).toBeNull();
    // Quotes hide nothing: a string that looks like SQL is a string.
    expect(catalogRelations("SELECT 'FROM customers' FROM pg_catalog.pg_class")).toEqual(['pg_catalog.pg_class']);
  });
});

describe('copyLayout and copyFields', () => {
  it('reads the columns, format, delimiter and header a COPY names', () => {
    expect(copyLayout('COPY public.customers (id, "full name") TO STDOUT')).toEqual({ direction: 'to', columns: ['id', 'full name'], format: 'text', delimiter: '\t', header: false });
    expect(copyLayout('copy t to stdout with (format csv, header)')).toMatchObject({ direction: 'to', columns: null, format: 'csv', delimiter: ',', header: true });
    expect(copyLayout("COPY t (a) FROM STDIN WITH CSV DELIMITER ';'")).toMatchObject({ direction: 'from', columns: ['a'], format: 'csv', delimiter: ';' });
    expect(copyLayout('COPY (SELECT 1) TO STDOUT (FORMAT binary)')).toMatchObject({ columns: null, format: 'binary' });
    expect(copyLayout('SELECT 1')).toBeNull();
  });

  it('splits lines into fields, with NULLs', () => {
    const text = copyLayout('COPY t TO STDOUT')!;
    expect(copyFields('1\tAda\t\\N\n', text)).toEqual(['1', 'Ada', null]);
    const csv = copyLayout('COPY t TO STDOUT CSV')!;
    expect(copyFields('1,"Lovelace, Ada","say ""hi""",\n', csv)).toEqual(['1', 'Lovelace, Ada', 'say "hi"', null]);
  });
});

describe('namesIdentity (hoop sessions --user)', () => {
  const alice = { subject: 'oidc|a1', email: 'Alice@Bank.example', name: 'Alice', groups: [], method: 'oidc' as const, expiresAt: null };
  const key = { subject: 'apikey:etl', email: null, name: 'etl', groups: [], method: 'api_key' as const, expiresAt: null };
  it('takes the subject, the email in any case, or an API key\'s name', () => {
    expect(namesIdentity(alice, 'oidc|a1')).toBe(true);
    expect(namesIdentity(alice, 'alice@bank.example')).toBe(true);
    expect(namesIdentity(alice, 'bob@bank.example')).toBe(false);
    expect(namesIdentity(alice, 'a1')).toBe(false);
    expect(namesIdentity(key, 'etl')).toBe(true);
    expect(namesIdentity(key, 'apikey:etl')).toBe(true);
    expect(namesIdentity(key, 'other')).toBe(false);
  });
});
