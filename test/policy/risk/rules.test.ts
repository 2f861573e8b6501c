/** decide(): the rule list over classified statements. */
import { beforeAll, describe, expect, test } from 'vitest';
import { loadParser } from '../../../src/policy/masking/parse.js';
import { classifyQuery } from '../../../src/policy/risk/classify.js';
import { decide, estimateCap, rulesFor, tableMatches, type RuleDecision } from '../../../src/policy/risk/rules.js';
import type { RiskRule } from '../../../src/policy/risk/types.js';

beforeAll(() => loadParser());

/** The example, as the config loader produces it. */
const RULES: RiskRule[] = [
  { name: 'analysts-read-only', groups: ['analysts'], when: { kind: ['insert', 'update', 'delete', 'merge', 'ddl', 'dcl', 'copy_in'] }, action: 'deny' },
  { name: 'ddl', groups: null, when: { kind: ['ddl'] }, action: 'deny' },
  { name: 'no-where', groups: null, when: { kind: ['update', 'delete'], where: false }, action: 'require_approval' },
  { name: 'full-export', groups: null, when: { kind: ['select', 'copy_out'], tables: ['customers', 'accounts'], where: false }, action: 'require_approval' },
  { name: 'protected-aggregate', groups: null, when: { protected_columns: true, joins: true }, action: 'require_approval' },
  { name: 'bulk', groups: null, when: { estimated_rows: { op: '>', value: 10_000 } }, action: 'require_approval' },
];

const NO_ESTIMATE = () => null;
const SMALL = () => 10;

function decideText(text: string, groups: string[] = ['dba'], estimate: (i: number) => number | null = SMALL, protectedColumns?: (i: number) => string[], rules = RULES): RuleDecision {
  const { statements, parseError } = classifyQuery(text, protectedColumns);
  return decide(parseError === null ? statements : null, rules, groups, estimate);
}

describe('the issue\'s rules', () => {
  test('a full export is held; the same read with a WHERE is not', () => {
    expect(decideText('SELECT * FROM customers')).toEqual({ action: 'require_approval', rule: 'full-export', reason: 'rule full-export: select on customers without WHERE' });
    expect(decideText('SELECT * FROM bank.customers')).toMatchObject({ rule: 'full-export', reason: 'rule full-export: select on bank.customers without WHERE' });
    expect(decideText('COPY accounts TO STDOUT')).toMatchObject({ action: 'require_approval', rule: 'full-export', reason: 'rule full-export: copy_out on accounts without WHERE' });
    expect(decideText('COPY (SELECT * FROM customers) TO STDOUT')).toMatchObject({ rule: 'full-export' });
    expect(decideText('SELECT * FROM customers WHERE id = 1')).toEqual({ action: 'allow', rule: null, reason: 'no access rule matches' });
    expect(decideText('SELECT * FROM orders')).toMatchObject({ action: 'allow' });
    expect(decideText('SELECT * FROM customers WHERE true')).toMatchObject({ rule: 'full-export' });
  });

  test('a CTE wrapping the table is still an export of it, unless it filters', () => {
    expect(decideText('WITH c AS (SELECT * FROM customers) SELECT * FROM c')).toMatchObject({ rule: 'full-export' });
    // Filtered inside, it is filtered as if outside (where an estimate rule sees through `id > 0`).
    expect(decideText('WITH c AS (SELECT * FROM customers WHERE id > 0) SELECT * FROM c', ['dba'], () => 50_000)).toMatchObject({ rule: 'bulk' });
    expect(decideText('WITH c AS (SELECT * FROM customers WHERE id > 0) SELECT * FROM c', ['dba'], SMALL)).toMatchObject({ action: 'allow' });
  });

  test('UPDATE / DELETE without WHERE need approval', () => {
    expect(decideText('UPDATE t SET x = 1')).toEqual({ action: 'require_approval', rule: 'no-where', reason: 'rule no-where: update without WHERE' });
    expect(decideText('DELETE FROM t')).toMatchObject({ rule: 'no-where' });
    expect(decideText('UPDATE t SET x = 1 WHERE id = 2')).toMatchObject({ action: 'allow' });
  });

  test('a DELETE hidden in a CTE is decided as a DELETE', () => {
    expect(decideText('WITH d AS (DELETE FROM t RETURNING id) SELECT count(*) FROM d')).toMatchObject({ action: 'require_approval', rule: 'no-where', reason: 'rule no-where: delete without WHERE' });
    expect(decideText('WITH d AS (DELETE FROM t RETURNING id) SELECT count(*) FROM d', ['analysts'])).toMatchObject({ action: 'deny', rule: 'analysts-read-only' });
  });

  test('ddl is denied to everyone', () => {
    expect(decideText('DROP TABLE customers')).toEqual({ action: 'deny', rule: 'ddl', reason: 'rule ddl: ddl' });
    expect(decideText('TRUNCATE customers')).toMatchObject({ action: 'deny', rule: 'ddl' });
    expect(decideText('SELECT * INTO stash FROM customers')).toMatchObject({ action: 'deny', rule: 'ddl' });
  });

  test('analysts-read-only applies only to analysts', () => {
    expect(decideText("INSERT INTO t VALUES (1)", ['analysts'])).toEqual({ action: 'deny', rule: 'analysts-read-only', reason: 'rule analysts-read-only: insert' });
    expect(decideText("INSERT INTO t VALUES (1)", ['dba'])).toMatchObject({ action: 'allow' });
    expect(decideText('UPDATE t SET x = 1 WHERE id = 1', ['analysts', 'other'])).toMatchObject({ action: 'deny', rule: 'analysts-read-only' });
    // First match wins: for analysts the deny comes before no-where's require_approval.
    expect(decideText('UPDATE t SET x = 1', ['analysts'])).toMatchObject({ action: 'deny', rule: 'analysts-read-only' });
    expect(decideText('COPY t FROM STDIN', ['analysts'])).toMatchObject({ action: 'deny' });
    expect(decideText('COPY t FROM STDIN', ['dba'])).toMatchObject({ action: 'allow' });
    expect(decideText('SELECT * FROM orders', ['analysts'])).toMatchObject({ action: 'allow' });
  });

  test('a join over protected columns needs approval; without a join or protected columns it does not', () => {
    const ssn = () => ['public.customers.ssn'];
    expect(decideText('SELECT c.ssn, count(*) FROM customers c JOIN accounts a ON a.cid = c.id WHERE a.kind = 1 GROUP BY 1', ['dba'], SMALL, ssn))
      .toEqual({ action: 'require_approval', rule: 'protected-aggregate', reason: 'rule protected-aggregate: select with a join reading protected columns (public.customers.ssn)' });
    expect(decideText('SELECT c.ssn FROM customers c WHERE id = 1', ['dba'], SMALL, ssn)).toMatchObject({ action: 'allow' });
    expect(decideText('SELECT o.id FROM orders o JOIN lines l ON l.oid = o.id WHERE o.id = 1', ['dba'], SMALL, () => [])).toMatchObject({ action: 'allow' });
  });

  test('bulk: over the threshold, or with no estimate, needs approval', () => {
    expect(decideText('SELECT * FROM orders', ['dba'], () => 20_000)).toEqual({ action: 'require_approval', rule: 'bulk', reason: 'rule bulk: select estimated at 20000 rows (> 10000)' });
    expect(decideText('SELECT * FROM orders', ['dba'], () => 10_000)).toMatchObject({ action: 'allow' });
    expect(decideText('SELECT * FROM orders', ['dba'], NO_ESTIMATE)).toEqual({ action: 'require_approval', rule: 'bulk', reason: 'rule bulk: select with no row estimate (counted as > 10000)' });
    expect(decideText('DELETE FROM orders WHERE id < 100000', ['dba'], () => 50_000)).toMatchObject({ rule: 'bulk' });
  });

  test('statements without rows never match estimated_rows, even with no estimate', () => {
    for (const text of ['BEGIN', 'SET work_mem = 1', 'SHOW work_mem', 'COMMIT', 'COPY t FROM STDIN', 'GRANT SELECT ON t TO r']) {
      expect(decideText(text, ['dba'], NO_ESTIMATE, undefined, RULES.filter((r) => r.name === 'bulk'))).toMatchObject({ action: 'allow' });
    }
  });
});

describe('over a query string', () => {
  test('the strictest action over the statements wins, and the reason names the statement', () => {
    expect(decideText('SELECT * FROM customers; DROP TABLE t')).toEqual({ action: 'deny', rule: 'ddl', reason: 'rule ddl: ddl (statement 2 of 2)' });
    expect(decideText('BEGIN; SELECT * FROM customers WHERE id = 1; UPDATE t SET x = 1; COMMIT')).toMatchObject({ action: 'require_approval', rule: 'no-where', reason: 'rule no-where: update without WHERE (statement 3 of 4)' });
    // Among equals, the first.
    expect(decideText('DELETE FROM a; SELECT * FROM customers')).toMatchObject({ rule: 'no-where', reason: expect.stringContaining('statement 1 of 2') });
    expect(decideText('SELECT 1; SELECT 2')).toMatchObject({ action: 'allow' });
  });

  test('each statement gets its own estimate', () => {
    const estimates = [5, 50_000];
    expect(decideText('SELECT * FROM a; SELECT * FROM b', ['dba'], (i) => estimates[i]!)).toMatchObject({ rule: 'bulk', reason: 'rule bulk: select estimated at 50000 rows (> 10000) (statement 2 of 2)' });
  });

  test('an empty string is allowed', () => {
    expect(decideText('')).toMatchObject({ action: 'allow' });
  });
});

describe('unparseable text', () => {
  test('gets the strictest action of the rules that apply to the caller', () => {
    expect(decideText('SELEC * FROM customers')).toEqual({
      action: 'deny', rule: 'ddl',
      reason: 'rule ddl: the statement could not be parsed, so the strictest rule that applies to you decides (deny)',
    });
    const approvalsOnly = RULES.filter((r) => r.action === 'require_approval');
    expect(decide(null, approvalsOnly, ['dba'], NO_ESTIMATE)).toMatchObject({ action: 'require_approval', rule: 'no-where' });
    // Only a group-scoped deny is stricter: it counts only for that group.
    const scoped: RiskRule[] = [RULES[0]!, RULES[2]!];
    expect(decide(null, scoped, ['analysts'], NO_ESTIMATE)).toMatchObject({ action: 'deny', rule: 'analysts-read-only' });
    expect(decide(null, scoped, ['dba'], NO_ESTIMATE)).toMatchObject({ action: 'require_approval', rule: 'no-where' });
  });
  test('with no rule applying, allow; with only allow rules, allow', () => {
    expect(decide(null, [], ['dba'], NO_ESTIMATE)).toMatchObject({ action: 'allow', rule: null });
    expect(decide(null, [RULES[0]!], ['dba'], NO_ESTIMATE)).toMatchObject({ action: 'allow', rule: null });
    expect(decide(null, [{ name: 'ok', groups: null, when: {}, action: 'allow' }], ['dba'], NO_ESTIMATE)).toMatchObject({ action: 'allow', rule: 'ok' });
  });
});

describe('conditions', () => {
  const rule = (when: RiskRule['when']): RiskRule[] => [{ name: 'r', groups: null, when, action: 'deny' }];
  const hit = (text: string, when: RiskRule['when']) => decideText(text, [], SMALL, undefined, rule(when)).action === 'deny';
  test('an empty condition matches every statement', () => {
    expect(hit('SELECT 1', {})).toBe(true);
    expect(hit('BEGIN', {})).toBe(true);
  });
  test('each flag, both ways', () => {
    expect(hit('SELECT * FROM t LIMIT 1', { limit: true })).toBe(true);
    expect(hit('SELECT * FROM t', { limit: true })).toBe(false);
    expect(hit('SELECT * FROM t', { limit: false })).toBe(true);
    // The demo's full-export rule (limit: false) no longer holds a read of a limited subquery; it still holds one unnested from it.
    expect(hit('SELECT (c).ssn FROM (SELECT c FROM customers c LIMIT 1) s', { limit: false })).toBe(false);
    expect(hit('SELECT unnest(a) FROM (SELECT array_agg(ssn) AS a FROM customers LIMIT 1) s', { limit: false })).toBe(true);
    expect(hit('SELECT count(*) FROM t', { aggregates: true })).toBe(true);
    expect(hit('SELECT * FROM t', { aggregates: true })).toBe(false);
    expect(hit('SELECT * FROM a, b', { joins: false })).toBe(false);
    expect(hit('SELECT * FROM t WHERE id = 1', { where: true })).toBe(true);
    expect(hit('SELECT 1', { protected_columns: false })).toBe(true);
  });
  test('estimated_rows comparisons', () => {
    const at = (rows: number, op: '>' | '>=' | '<' | '<=', value: number) =>
      decideText('SELECT * FROM t', [], () => rows, undefined, rule({ estimated_rows: { op, value } })).action === 'deny';
    expect([at(5000, '>=', 5000), at(4999, '>=', 5000), at(10, '<', 11), at(11, '<', 11), at(11, '<=', 11), at(12, '<=', 11)]).toEqual([true, false, true, false, true, false]);
  });
  test('every condition must hold', () => {
    expect(hit('SELECT * FROM customers', { kind: ['select'], tables: ['customers'], where: false })).toBe(true);
    expect(hit('SELECT * FROM customers', { kind: ['delete'], tables: ['customers'], where: false })).toBe(false);
    expect(hit('SELECT * FROM orders', { kind: ['select'], tables: ['customers'], where: false })).toBe(false);
  });
});

describe('estimateCap: the rows a read allowed on its estimate may return', () => {
  const cap = (text: string, rules: RiskRule[], groups: string[] = ['analysts']) => estimateCap(classifyQuery(text).statements, rules, groups);
  const bulk = (op: '>' | '>=', value: number, extra: Partial<RiskRule> = {}): RiskRule => ({ name: 'bulk', groups: null, when: { kind: ['select', 'copy_out'], estimated_rows: { op, value } }, action: 'require_approval', ...extra });
  test("a read a rule would hold on a larger estimate is capped at the rule's bound", () => {
    expect(cap('SELECT * FROM t WHERE id % 1 = 0', [bulk('>', 500)])).toEqual({ rows: 500, rule: 'bulk', action: 'require_approval', deferred: false });
    expect(cap('COPY (SELECT * FROM t) TO STDOUT', [bulk('>=', 500)])).toEqual({ rows: 499, rule: 'bulk', action: 'require_approval', deferred: false });
    expect(cap('SELECT 1', [bulk('>', 500, { action: 'deny' })])).toEqual({ rows: 500, rule: 'bulk', action: 'deny', deferred: false });
  });
  test("a cursor's or a prepared statement's rows come back later, where no cap follows them: deferred", () => {
    expect(cap('DECLARE c CURSOR FOR SELECT * FROM t WHERE id % 1 = 0', [bulk('>', 500)])).toMatchObject({ rows: 500, deferred: true });
    expect(cap('PREPARE p AS SELECT * FROM t', [bulk('>', 500)])).toMatchObject({ deferred: true });
  });
  test('not capped: writes, other groups, rules with an upper bound or that allow, an earlier rule that decides anyway', () => {
    expect(cap('DELETE FROM t WHERE id % 1 = 0', [{ ...bulk('>', 5), when: { estimated_rows: { op: '>', value: 5 } } }])).toBeNull();
    expect(cap('SELECT * FROM t', [bulk('>', 500, { groups: ['analysts'] })], ['dba'])).toBeNull();
    expect(cap('SELECT * FROM t', [{ ...bulk('>', 500), when: { estimated_rows: { op: '<', value: 500 } } }])).toBeNull();
    expect(cap('SELECT * FROM t', [bulk('>', 500, { action: 'allow' })])).toBeNull();
    expect(cap('SELECT * FROM t', [{ name: 'reads', groups: null, when: { kind: ['select'] }, action: 'allow' }, bulk('>', 500)])).toBeNull();
    expect(cap('SELECT 1; SELECT 2', [bulk('>', 500)])).toBeNull(); // several statements have no estimate, so the rule holds them
  });
});

describe('tables patterns', () => {
  test('a bare pattern matches the table in any schema', () => {
    expect(tableMatches('customers', 'customers')).toBe(true);
    expect(tableMatches('customers', 'bank.customers')).toBe(true);
    expect(tableMatches('customers', 'bank.customers_old')).toBe(false);
  });
  test('a qualified pattern matches its schema, and an unqualified name the search_path may resolve there', () => {
    expect(tableMatches('bank.customers', 'bank.customers')).toBe(true);
    expect(tableMatches('bank.customers', 'other.customers')).toBe(false);
    expect(tableMatches('bank.customers', 'customers')).toBe(true);
  });
  test('globs', () => {
    expect(tableMatches('cust*', 'bank.customers')).toBe(true);
    expect(tableMatches('bank.*', 'bank.anything')).toBe(true);
    expect(tableMatches('bank.*', 'audit.anything')).toBe(false);
    expect(tableMatches('t?', 't1')).toBe(true);
    expect(tableMatches('t?', 't12')).toBe(false);
  });
});

test('rulesFor: the rules that apply to a caller, in order', () => {
  expect(rulesFor(RULES, ['analysts']).map((r) => r.name)).toEqual(RULES.map((r) => r.name));
  expect(rulesFor(RULES, ['dba']).map((r) => r.name)).toEqual(RULES.slice(1).map((r) => r.name));
  expect(rulesFor(RULES, []).map((r) => r.name)).toEqual(RULES.slice(1).map((r) => r.name));
});

describe('code: a rule is not walked around by wrapping its statement in a DO block or a function', () => {
  test('a DELETE inside a DO block, or defined by a function, is decided as a delete', () => {
    expect(decideText('DO $$ BEGIN DELETE FROM accounts; END $$')).toMatchObject({ action: 'require_approval', rule: 'no-where' });
    expect(decideText('DO $$ BEGIN DELETE FROM accounts; END $$', ['analysts'])).toMatchObject({ action: 'deny', rule: 'analysts-read-only' });
    // The function is ddl (denied by rule ddl) and what it defines is a delete without WHERE.
    expect(decideText("CREATE FUNCTION f() RETURNS void LANGUAGE sql AS 'DELETE FROM accounts'", ['dba'], SMALL, undefined, RULES.filter((r) => r.name !== 'ddl'))).toMatchObject({ action: 'require_approval', rule: 'no-where' });
    // A full export by notices from a loop is a select of customers without WHERE.
    const loop = "DO $$ DECLARE r record; BEGIN FOR r IN SELECT * FROM customers LOOP RAISE NOTICE '%', r; END LOOP; END $$";
    expect(decideText(loop, ['dba'], SMALL, undefined, RULES.filter((r) => r.name !== 'bulk'))).toMatchObject({ action: 'require_approval', rule: 'full-export' });
    // How many rows a loop reads is not estimated: a rule on big reads holds it too.
    expect(decideText(loop.replace('customers', 'transactions'))).toMatchObject({ action: 'require_approval', rule: 'bulk' });
    // What reads no relation is nothing a rule names.
    expect(decideText("DO $$ DECLARE n int := 1; BEGIN RAISE NOTICE '%', n + 1; END $$")).toMatchObject({ action: 'allow', rule: null });
  });

  test('code hoop cannot read is decided by the strictest rule that could apply to it', () => {
    const d = decideText("DO $$ BEGIN EXECUTE 'DELETE FROM accounts'; END $$");
    expect(d).toMatchObject({ action: 'deny', rule: 'ddl' });
    expect(d.reason).toMatch(/^rule ddl: a DO block with dynamic SQL \(EXECUTE\), so the strictest rule that could apply to what it runs decides \(deny\)$/);
    expect(decideText('CALL bank.transfer(1, 2)')).toMatchObject({ action: 'deny', rule: 'ddl' });
    // Only approvals among the rules: it is held, not denied.
    const holding: RiskRule[] = [{ name: 'no-where', groups: null, when: { kind: ['delete'], where: false }, action: 'require_approval' }];
    expect(decideText('CALL bank.transfer(1, 2)', ['dba'], SMALL, undefined, holding)).toMatchObject({ action: 'require_approval', rule: 'no-where' });
    // No rule applies to the caller: it runs.
    expect(decideText('CALL bank.transfer(1, 2)', ['etl'], SMALL, undefined, [{ ...holding[0]!, groups: ['analysts'] }])).toMatchObject({ action: 'allow', rule: null });
  });

  test('an allow rule that matches the code itself first lets it run; rules after it do not count', () => {
    const rules: RiskRule[] = [
      { name: 'etl-runs-procedures', groups: ['etl'], when: { kind: ['utility'] }, action: 'allow' },
      ...RULES,
    ];
    expect(decideText('CALL bank.load()', ['etl'], SMALL, undefined, rules)).toMatchObject({ action: 'allow', rule: 'etl-runs-procedures' });
    expect(decideText('CALL bank.load()', ['dba'], SMALL, undefined, rules)).toMatchObject({ action: 'deny' });
  });
});

describe('what keeps or collects rows is not a summary: aggregates: false and estimated_rows still hold it', () => {
  const EXPORT: RiskRule[] = [
    { name: 'full-export', groups: null, when: { kind: ['select'], tables: ['customers'], where: false, aggregates: false }, action: 'require_approval' },
    { name: 'bulk-read', groups: null, when: { kind: ['select'], tables: ['customers'], estimated_rows: { op: '>', value: 500 } }, action: 'require_approval' },
  ];
  const d = (text: string) => decideText(text, ['analysts'], SMALL, undefined, EXPORT);

  test('a whole table in one row, or every row with a window or a subquery\'s aggregate beside it, is a full export', () => {
    for (const text of ["SELECT string_agg(full_name || ' ' || city, ';') FROM customers", 'SELECT count(*), json_agg(c) FROM customers c',
      'SELECT *, row_number() OVER () FROM customers', 'SELECT *, (SELECT count(*) FROM accounts) FROM customers', 'SELECT ARRAY(SELECT full_name FROM customers)']) {
      expect(d(text), text).toMatchObject({ action: 'require_approval', rule: 'full-export' });
    }
    expect(d('SELECT *, row_number() OVER () FROM customers').reason).toBe('rule full-export: select on customers without WHERE not summarizing its rows');
  });

  test('with a WHERE, what collects rows has no row count to hold it to: the bulk rule holds it', () => {
    const held = d("SELECT string_agg(full_name, ',') FROM customers WHERE id % 1 = 0");
    expect(held).toMatchObject({ action: 'require_approval', rule: 'bulk-read' });
    expect(held.reason).toBe('rule bulk-read: select on customers collecting rows into values (counted as > 500)');
  });

  test('copying the table elsewhere is reading it: INSERT … SELECT, CREATE TABLE AS, SELECT INTO', () => {
    for (const text of ['INSERT INTO archive SELECT * FROM customers', 'CREATE TABLE c2 AS SELECT * FROM customers', 'SELECT * INTO c2 FROM customers']) {
      expect(d(text), text).toMatchObject({ action: 'require_approval', rule: 'full-export' });
    }
  });

  test('a table read through a function that runs a query given as text is read', () => {
    for (const text of ["SELECT query_to_xml('SELECT * FROM customers', true, false, '')", "SELECT table_to_xml('customers', true, false, '')"]) {
      expect(d(text), text).toMatchObject({ action: 'require_approval', rule: 'full-export' });
    }
    expect(d("SELECT database_to_xml(true, false, '')")).toMatchObject({ action: 'require_approval', reason: expect.stringContaining('database_to_xml reads every table of a schema or database, so the strictest rule') });
  });

  test('summaries pass', () => {
    for (const text of ['SELECT count(*) FROM customers', 'SELECT city, count(*) FROM customers GROUP BY city']) expect(d(text), text).toMatchObject({ action: 'allow' });
  });

  test('an unknown size never matches an upper bound: an allow for small reads does not allow it', () => {
    const rules: RiskRule[] = [{ name: 'small', groups: null, when: { estimated_rows: { op: '<', value: 100 } }, action: 'allow' }, { name: 'rest', groups: null, when: { kind: ['select'] }, action: 'require_approval' }];
    expect(decideText('SELECT * FROM orders', ['dba'], NO_ESTIMATE, undefined, rules)).toMatchObject({ rule: 'rest' });
    expect(decideText('SELECT array_agg(id) FROM orders', ['dba'], SMALL, undefined, rules)).toMatchObject({ rule: 'rest' });
    expect(decideText('SELECT * FROM orders', ['dba'], SMALL, undefined, rules)).toMatchObject({ rule: 'small', action: 'allow' });
  });
});
