import { beforeAll, expect, test } from 'vitest';
import { loadParser } from '../../src/policy/masking/parse.js';
import { classifyQuery } from '../../src/policy/risk/classify.js';
import type { RelationInfo, SchemaView } from '../../src/policy/masking/types.js';
import { withViewSources } from '../../src/gateway/view-sources.js';

beforeAll(() => loadParser());

let oid = 1;
const rel = (schema: string, name: string, definition?: string, kind: RelationInfo['kind'] = definition === undefined ? 'table' : 'view'): RelationInfo =>
  ({ oid: oid++, schema, name, kind, columns: [], ...(definition !== undefined ? { definition } : {}) });

function catalog(rels: RelationInfo[]): SchemaView {
  return {
    relations: (schema, name) => rels.filter((r) => r.name === name && (schema === null || r.schema === schema)),
    relationByOid: (o) => rels.find((r) => r.oid === o),
    functionKind: () => 'builtin',
    userFunctionSchemas: () => [],
    returnsSet: () => false,
    typeShadowed: () => false,
  };
}

const customers = rel('bank', 'customers');
const partition = { ...rel('bank', 'customers_2024'), parents: [customers.oid] };
const subPartition = { ...rel('bank', 'customers_2024_q1'), parents: [partition.oid] };
const schema = catalog([
  customers,
  partition,
  subPartition,
  rel('reports', 'recent', 'SELECT * FROM bank.customers_2024_q1'),
  rel('bank', 'accounts'),
  rel('reports', 'overview', 'SELECT c.id, a.id AS account FROM bank.customers c JOIN bank.accounts a ON a.customer_id = c.id'),
  rel('reports', 'overview2', 'SELECT * FROM reports.overview'),
  rel('reports', 'snapshot', 'SELECT * FROM bank.customers', 'matview'),
  rel('reports', 'writes', 'SELECT 1 AS x'),
  rel('other', 'overview', 'SELECT 1 AS x'),
  rel('reports', 'locked', undefined, 'view'),
]);

const tables = (sql: string) => withViewSources(classifyQuery(sql).statements, schema).map((s) => s.tables.sort());

test('views are followed to the tables they read, at any depth; tables stay as written', () => {
  expect(tables('SELECT * FROM reports.overview2')).toEqual([['bank.accounts', 'bank.customers', 'reports.overview', 'reports.overview2']]);
  expect(tables('SELECT * FROM reports.snapshot')).toEqual([['bank.customers', 'reports.snapshot']]);
  expect(tables('SELECT * FROM customers')).toEqual([['customers']]);
  expect(tables('SELECT * FROM reports.writes')).toEqual([['reports.writes']]);
});

test('a partition, at any depth, counts as the tables it belongs to (also under a view)', () => {
  expect(tables('SELECT * FROM bank.customers_2024_q1')).toEqual([['bank.customers', 'bank.customers_2024', 'bank.customers_2024_q1']]);
  expect(tables('SELECT * FROM reports.recent')).toEqual([['bank.customers', 'bank.customers_2024', 'bank.customers_2024_q1', 'reports.recent']]);
});

test('an unqualified name is followed in every schema that has it; nested statements too', () => {
  expect(tables('SELECT * FROM overview')).toEqual([['bank.accounts', 'bank.customers', 'overview']]);
  const [s] = withViewSources(classifyQuery('WITH d AS (DELETE FROM bank.accounts RETURNING id) SELECT * FROM d, reports.overview2').statements, schema);
  expect(s!.nested[0]!.tables).toEqual(['bank.accounts']);
});

test('a view whose definition could not be read fails the decision (the caller refuses)', () => {
  const locked = catalog([{ oid: 99, schema: 'reports', name: 'locked', kind: 'view', columns: [] }]);
  expect(() => withViewSources(classifyQuery('SELECT * FROM reports.locked').statements, locked)).toThrow(/could not be read/);
});
