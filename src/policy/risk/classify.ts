/**
 * What each statement of a query string is, for the access rules (issue 8): its kind, the
 * relations it reads or writes, and the shape facts rules test (WHERE, LIMIT, joins, aggregates,
 * functions). Read from the real PostgreSQL parse tree (parse.ts); pure, and it never throws.
 *
 * Decisions a rule author should know (docs/configuration.md repeats them):
 * - kind: `SELECT … INTO`, `CREATE TABLE AS`, `CREATE MATERIALIZED VIEW` and TRUNCATE are `ddl`
 *   (TRUNCATE empties a table without reading it, like DROP). `EXPLAIN ANALYZE q` runs q, so it
 *   is q's kind; a plain EXPLAIN is `utility`. `PREPARE p AS q` and `DECLARE c CURSOR FOR q` are
 *   q's kind (EXECUTE and FETCH are `utility`: what they run was decided when it was prepared or
 *   declared). DO and CALL are `utility`; the statements a DO block or a function body runs
 *   are in `nested` (code.ts), and what cannot be read (CALL, dynamic SQL) makes the statement
 *   `opaque`. A statement type not listed here is `ddl`, the stricter guess.
 * - where: the main query's own WHERE (for a set operation, every branch's), or rows from filtered
 *   sources only: a FROM of nothing but subqueries and CTEs that filter. A WHERE in a subquery
 *   beside a relation, or in a scalar subquery, does not filter the outer rows, and a WHERE that
 *   names no column (`WHERE true`, `WHERE 1 = 1`) filters nothing row by row, so neither counts.
 * - limit: the main query's LIMIT / FETCH FIRST (LIMIT ALL and LIMIT NULL are no limit), or rows
 *   from limited sources only: a FROM of nothing but limited subqueries and CTEs, both branches
 *   of a set operation, VALUES. A function call in the select list (which may return a set)
 *   takes a FROM's limit away; a FROM-less select is one row. A statement that collects rows into
 *   values (below) is never limited: one row can hold a whole table.
 * - joins: anywhere in the statement, a JOIN, a FROM list of several items, UPDATE … FROM,
 *   DELETE … USING, MERGE, or a subquery reading a relation inside a query that has a FROM.
 * - aggregates: anywhere, an aggregate or window call, GROUP BY or HAVING. User-defined
 *   aggregates are known only when called with aggregate syntax (DISTINCT, ORDER BY, FILTER).
 *   `summarizes` is narrower, for rules that spare summaries (`aggregates: false` matches what
 *   does not summarize): the main query's own aggregate, GROUP BY or HAVING, or a FROM of
 *   summaries only (subqueries and CTEs that summarize, or no FROM: `SELECT (SELECT count(*)
 *   FROM t)`), and nothing that collects rows into a value. A window call, or an aggregate in a
 *   subquery beside a relation, keeps every row (`SELECT *, count(*) OVER () FROM customers`).
 * - collects: anywhere, an aggregate that returns the values of the rows it reads (`array_agg`,
 *   `string_agg`, `json_agg`, `xmlagg`, …) or an ARRAY(subquery), in a statement that reads a
 *   relation outside the system catalogs: one row can hold a whole table, so neither a row cap
 *   nor a row estimate measures what comes back.
 * - A data-modifying statement inside another (`WITH d AS (DELETE …) SELECT …`,
 *   `COPY (DELETE … RETURNING …) TO STDOUT`) is classified on its own in `nested`, and rules see it
 *   too: otherwise wrapping a DELETE in a CTE would make it a `select`. So is the query whose rows
 *   INSERT … SELECT, CREATE TABLE AS or SELECT INTO write elsewhere, as a `select` (copiedRead).
 *   (The outer statement keeps its own kind and shape.)
 */
import { as, list, strings, unwrap, type Body } from '../masking/lineage-node.js';
import { booleanOption } from '../masking/lineage.js';
import { parseSql, statementTexts } from '../masking/parse.js';
import { nonStringConstant, queryTextArguments, stringConstant } from '../code-body.js';
import { embeddedCode, sqlStatements } from './code.js';
import type { StatementKind } from './types.js';

export interface Classification {
  kind: StatementKind;
  /** Every relation read or written: `schema.table` where the statement qualifies it, else the name as written. */
  tables: string[];
  /** Column names the statement mentions (`*` for a star). */
  columns: string[];
  /** Protected columns the statement reads, as masking's analysis names them (given by the caller). */
  protectedColumns: string[];
  where: boolean;
  limit: boolean;
  joins: boolean;
  aggregates: boolean;
  /** The main query summarizes rows: its own aggregate, GROUP BY or HAVING, collecting none. */
  summarizes: boolean;
  /** Packs the rows it reads into values (array_agg, string_agg, json_agg, ARRAY(subquery), …). */
  collects: boolean;
  /** Functions called, as written (`lower`, `pg_catalog.lower`). */
  functions: string[];
  /** Data-modifying statements inside this one, each classified as its own statement. */
  nested: Classification[];
  /** `PREPARE p AS q` or `DECLARE c CURSOR FOR q`: q runs, and its rows come back, later (EXECUTE, FETCH). */
  deferred?: true;
  /** Code the statement runs or defines that hoop cannot read (dynamic SQL, CALL, …), and why
   *  (code.ts); the statements it could read are in `nested`. */
  opaque?: string;
}

export interface QueryClassification {
  statements: Classification[];
  /** Why the text could not be classified (a syntax error); then `statements` is empty. */
  parseError: string | null;
}

export function classifyQuery(text: string, protectedColumns?: (statementIndex: number) => string[]): QueryClassification {
  let stmts: unknown[];
  let sources: string[];
  try {
    const parsed = parseSql(text).stmts ?? [];
    stmts = parsed.map((s) => s.stmt);
    sources = statementTexts(text, parsed);
  } catch (err) {
    return { statements: [], parseError: err instanceof Error ? err.message : String(err) };
  }
  const statements: Classification[] = [];
  for (const [i, stmt] of stmts.entries()) {
    try {
      statements.push(classifyStatement(stmt, protectedColumns?.(i) ?? [], sources[i] ?? ''));
    } catch (err) {
      // Unreachable by design (the walk reads the tree loosely); if it happens, the caller
      // treats the text as unparseable, which fails closed.
      return { statements: [], parseError: `statement ${i + 1} could not be classified (${err instanceof Error ? err.message : String(err)})` };
    }
  }
  return { statements, parseError: null };
}

/** The SQL cursors a query string declares and fetches rows from (FETCH, not MOVE), by name. */
export interface CursorUse { declares: string[]; fetches: string[] }

const cursorUses = new Map<string, CursorUse | null>();

/**
 * For the row cap, which counts a cursor's rows over all its FETCHes: null when the text neither
 * declares nor fetches (or does not parse: then it runs nothing). Texts without the words skip
 * the parser; parsed ones are kept in a small cache.
 */
export function cursorsOf(text: string): CursorUse | null {
  if (!/fetch|declare/i.test(text)) return null;
  if (cursorUses.has(text)) return cursorUses.get(text)!;
  let use: CursorUse | null = null;
  try {
    const declares: string[] = [];
    const fetches: string[] = [];
    for (const { stmt } of parseSql(text).stmts ?? []) {
      const declare = as(stmt, 'DeclareCursorStmt');
      const fetch = as(stmt, 'FetchStmt');
      if (declare) declares.push(String(declare.portalname ?? ''));
      if (fetch && fetch.ismove !== true) fetches.push(String(fetch.portalname ?? ''));
    }
    use = declares.length + fetches.length > 0 ? { declares, fetches } : null;
  } catch {
    use = null;
  }
  if (cursorUses.size >= 500) cursorUses.delete(cursorUses.keys().next().value!);
  cursorUses.set(text, use);
  return use;
}

// ---------------------------------------------------------------------------------------------
// Kinds
// ---------------------------------------------------------------------------------------------

const DCL: ReadonlySet<string> = new Set([
  'GrantStmt', 'GrantRoleStmt', 'AlterDefaultPrivilegesStmt', 'CreateRoleStmt', 'AlterRoleStmt',
  'AlterRoleSetStmt', 'DropRoleStmt', 'ReassignOwnedStmt',
]);

/** Statements that change neither data nor schema nor privileges by themselves. Anything not
 *  listed (and not a query, COPY, transaction or DCL) is ddl. */
const UTILITY: ReadonlySet<string> = new Set([
  'VariableSetStmt', 'VariableShowStmt', 'ListenStmt', 'UnlistenStmt', 'NotifyStmt', 'FetchStmt',
  'ClosePortalStmt', 'ExecuteStmt', 'DeallocateStmt', 'DoStmt', 'CallStmt', 'VacuumStmt',
  'LockStmt', 'CheckPointStmt', 'DiscardStmt', 'ConstraintsSetStmt', 'ReindexStmt', 'ClusterStmt',
  'ExplainStmt',
]);

const DML: ReadonlyMap<string, StatementKind> = new Map([
  ['InsertStmt', 'insert'], ['UpdateStmt', 'update'], ['DeleteStmt', 'delete'], ['MergeStmt', 'merge'],
]);

/** The statement's kind and the node whose WHERE and LIMIT are the statement's own. */
function kindOf(node: unknown): { kind: StatementKind; main: Body | null; mainType: string | null } {
  const u = unwrap(node);
  if (!u) return { kind: 'ddl', main: null, mainType: null };
  const [type, body] = u;
  const dml = DML.get(type);
  if (dml) return { kind: dml, main: body, mainType: type };
  switch (type) {
    case 'SelectStmt':
      return { kind: body.intoClause ? 'ddl' : 'select', main: body, mainType: type };
    case 'CopyStmt':
      return { kind: body.is_from ? 'copy_in' : 'copy_out', main: body, mainType: type };
    case 'ExplainStmt':
      return explainsAnalyze(body) ? kindOf(body.query) : { kind: 'utility', main: null, mainType: null };
    case 'PrepareStmt':
    case 'DeclareCursorStmt':
      return kindOf(body.query);
    case 'CreateTableAsStmt': {
      const inner = unwrap(body.query);
      return { kind: 'ddl', main: inner?.[1] ?? null, mainType: inner?.[0] ?? null };
    }
    case 'TransactionStmt':
      return { kind: 'transaction', main: null, mainType: null };
    case 'RenameStmt':
      return { kind: body.renameType === 'OBJECT_ROLE' ? 'dcl' : 'ddl', main: null, mainType: null };
  }
  if (DCL.has(type)) return { kind: 'dcl', main: null, mainType: null };
  if (UTILITY.has(type)) return { kind: 'utility', main: null, mainType: null };
  return { kind: 'ddl', main: null, mainType: null };
}

function explainsAnalyze(body: Body): boolean {
  return list(body.options).some((o) => {
    const d = as(o, 'DefElem');
    return d?.defname === 'analyze' && booleanOption(d.arg);
  });
}

// ---------------------------------------------------------------------------------------------
// WHERE and LIMIT of the main query
// ---------------------------------------------------------------------------------------------

function mainWhere(type: string | null, body: Body | null): boolean {
  if (!body) return false;
  switch (type) {
    case 'SelectStmt':
      return selectFiltered(body, new Map());
    case 'UpdateStmt':
    case 'DeleteStmt':
      return filters(body.whereClause);
    case 'InsertStmt':
      return queryWhere(body.selectStmt);
    case 'CopyStmt':
      return body.query ? queryWhere(body.query) : filters(body.whereClause);
    default:
      // MERGE has no WHERE: its ON pairs source and target rows rather than filtering them.
      return false;
  }
}

function queryWhere(node: unknown): boolean {
  const u = unwrap(node);
  return u ? mainWhere(u[0], u[1]) : false;
}

/** Its own WHERE, or rows only from filtered subqueries and CTEs (a FROM of something; for a set operation, every branch). */
function selectFiltered(body: Body, outer: CteQueries, depth = 0): boolean {
  const ctes = withCtes(body, outer);
  if (body.op && body.op !== 'SETOP_NONE') return selectFiltered(body.larg ?? {}, ctes, depth + 1) && selectFiltered(body.rarg ?? {}, ctes, depth + 1);
  if (filters(body.whereClause)) return true;
  return list(body.fromClause).length > 0 && fromEvery(body, ctes, depth, selectFiltered, false);
}

/** A WHERE that can tell rows apart: it names a column (or is WHERE CURRENT OF a cursor). */
function filters(expr: unknown): boolean {
  if (expr === undefined || expr === null) return false;
  let found = false;
  const visit = (v: unknown): void => {
    if (found || v === null || typeof v !== 'object') return;
    if (Array.isArray(v)) return v.forEach(visit);
    const u = unwrap(v);
    if (u && (u[0] === 'ColumnRef' || u[0] === 'CurrentOfExpr')) {
      found = true;
      return;
    }
    Object.values(v).forEach(visit);
  };
  visit(expr);
  return found;
}

/**
 * Whether the main query's rows are a summary, not rows of a relation: its own aggregate, GROUP
 * BY or HAVING, or every item of its FROM a summary (a subquery or CTE that summarizes; a
 * function), which also holds for no FROM at all (`SELECT (SELECT count(*) FROM t)`: scalar
 * subqueries return one value each). A set operation: every branch. A relation read in FROM
 * without an aggregate is its rows (`SELECT *, (SELECT count(*) FROM u) FROM t`).
 */
function mainSummarizes(type: string | null, body: Body | null): boolean {
  if (!body) return false;
  if (type === 'InsertStmt') return querySummarizes(body.selectStmt, new Map());
  if (type === 'CopyStmt') return body.query ? querySummarizes(body.query, new Map()) : false;
  return type === 'SelectStmt' ? selectSummarizes(body, new Map()) : false;
}

type CteQueries = ReadonlyMap<string, unknown>;

function querySummarizes(node: unknown, ctes: CteQueries, depth = 0): boolean {
  const select = as(node, 'SelectStmt');
  return select !== null && depth < 16 && selectSummarizes(select, ctes, depth);
}

function selectSummarizes(body: Body, outer: CteQueries, depth = 0): boolean {
  const ctes = withCtes(body, outer);
  if (body.op && body.op !== 'SETOP_NONE') return selectSummarizes(body.larg ?? {}, ctes, depth + 1) && selectSummarizes(body.rarg ?? {}, ctes, depth + 1);
  if (list(body.valuesLists).length > 0) return true; // VALUES: the statement's own rows
  if (list(body.groupClause).length > 0 || body.havingClause || list(body.targetList).some(levelAggregate)) return true;
  return fromEvery(body, ctes, depth, selectSummarizes, true); // a function's rows, not a relation's (what it reads is out of sight: docs)
}

/** The CTEs a query sees: the enclosing ones and its own WITH. */
function withCtes(body: Body, outer: CteQueries): CteQueries {
  const ctes = new Map(outer);
  for (const c of list((body.withClause as Body | undefined)?.ctes)) {
    const def = as(c, 'CommonTableExpr');
    if (def) ctes.set(String(def.ctename ?? ''), def.ctequery);
  }
  return ctes;
}

type SelectTest = (body: Body, ctes: CteQueries, depth: number) => boolean;

/**
 * Whether every FROM item of `body` is a query that passes `test`: a subquery, a CTE by name, or
 * a join of such; `functions` is what a function's rows count as. A relation never passes.
 */
function fromEvery(body: Body, ctes: CteQueries, depth: number, test: SelectTest, functions: boolean): boolean {
  const item = (node: unknown, d: number): boolean => {
    const u = unwrap(node);
    if (!u || d >= 16) return false;
    const [type, b] = u;
    switch (type) {
      case 'RangeSubselect': {
        const q = as(b.subquery, 'SelectStmt');
        return q !== null && test(q, ctes, d);
      }
      case 'JoinExpr':
        return item(b.larg, d + 1) && item(b.rarg, d + 1);
      case 'RangeFunction':
        return functions;
      case 'RangeVar': {
        const q = typeof b.schemaname !== 'string' && ctes.has(String(b.relname)) ? as(ctes.get(String(b.relname)), 'SelectStmt') : null;
        return q !== null && test(q, new Map([...ctes].filter(([name]) => name !== b.relname)), d + 1);
      }
      default:
        return false;
    }
  };
  return list(body.fromClause).every((node) => item(node, depth + 1));
}

/** An aggregate call of this query level: not inside a subquery, and not a window call. */
function levelAggregate(value: unknown): boolean {
  if (value === null || typeof value !== 'object') return false;
  if (Array.isArray(value)) return value.some(levelAggregate);
  const u = unwrap(value);
  if (u?.[0] === 'SubLink' || u?.[0] === 'SelectStmt') return false;
  if (u?.[0] === 'FuncCall' && !u[1].over && isAggregateCall(u[1])) return true;
  return Object.values(u ? u[1] : value).some(levelAggregate);
}

/** A call of a pg_catalog aggregate, or of any function with aggregate syntax (DISTINCT, ORDER BY, FILTER, `*`). */
function isAggregateCall(fn: Body): boolean {
  const parts = strings(fn.funcname);
  const catalog = parts.length === 1 || (parts.length === 2 && parts[0] === 'pg_catalog');
  return Boolean(fn.agg_star || fn.agg_distinct || fn.agg_within_group || fn.agg_filter || list(fn.agg_order).length > 0 || (catalog && AGGREGATES.has(parts[parts.length - 1] ?? '')));
}

function mainLimit(type: string | null, body: Body | null): boolean {
  if (!body) return false;
  if (type === 'SelectStmt') return selectLimited(body, new Map());
  if (type === 'InsertStmt') return queryLimit(body.selectStmt);
  if (type === 'CopyStmt' && body.query) return queryLimit(body.query);
  return false;
}

function queryLimit(node: unknown): boolean {
  const u = unwrap(node);
  return u ? mainLimit(u[0], u[1]) : false;
}

/**
 * Its own LIMIT, or rows that come only from limited sources: both branches of a set operation,
 * VALUES, or a FROM of limited subqueries and CTEs alone (`SELECT (c).ssn FROM (SELECT c FROM t
 * LIMIT 1) s`). A function call in the select list may return a set (`unnest`, any user
 * function), multiplying those rows without bound, so it takes that away; a FROM-less select is
 * one row otherwise.
 */
function selectLimited(body: Body, outer: CteQueries, depth = 0): boolean {
  if (hasLimit(body)) return true;
  const ctes = withCtes(body, outer);
  if (body.op && body.op !== 'SETOP_NONE') return selectLimited(body.larg ?? {}, ctes, depth + 1) && selectLimited(body.rarg ?? {}, ctes, depth + 1);
  if (list(body.valuesLists).length > 0) return true;
  if (list(body.targetList).some(levelCall) || list(body.sortClause).some(levelCall)) return false;
  return fromEvery(body, ctes, depth, selectLimited, false); // a function's rows: generate_series has no bound
}

/** A function or operator call of this query level, outside any subquery (an operator's function may return a set too). */
function levelCall(value: unknown): boolean {
  if (Array.isArray(value)) return value.some(levelCall);
  if (!value || typeof value !== 'object') return false;
  const u = unwrap(value);
  if (u && (u[0] === 'SubLink' || u[0] === 'SelectStmt')) return false;
  if (u && (u[0] === 'FuncCall' || (u[0] === 'A_Expr' && u[1].kind === 'AEXPR_OP'))) return true;
  return Object.values(u ? u[1] : value).some(levelCall);
}

function hasLimit(body: Body): boolean {
  const count = body.limitCount;
  if (count === undefined || count === null) return false;
  // LIMIT ALL and LIMIT NULL parse as a null constant.
  return as(count, 'A_Const')?.isnull !== true;
}

// ---------------------------------------------------------------------------------------------
// The walk: relations, columns, functions, joins, aggregates, nested writes
// ---------------------------------------------------------------------------------------------

/** Aggregates of pg_catalog, by name (an unknown name is a plain function unless called with
 *  aggregate syntax). */
const AGGREGATES: ReadonlySet<string> = new Set([
  'count', 'sum', 'avg', 'min', 'max', 'array_agg', 'string_agg', 'json_agg', 'jsonb_agg',
  'json_object_agg', 'jsonb_object_agg', 'json_agg_strict', 'jsonb_agg_strict', 'json_objectagg',
  'json_arrayagg', 'xmlagg', 'bool_and', 'bool_or', 'every', 'bit_and', 'bit_or', 'bit_xor',
  'stddev', 'stddev_pop', 'stddev_samp', 'variance', 'var_pop', 'var_samp', 'corr', 'covar_pop',
  'covar_samp', 'regr_avgx', 'regr_avgy', 'regr_count', 'regr_intercept', 'regr_r2', 'regr_slope',
  'regr_sxx', 'regr_sxy', 'regr_syy', 'percentile_cont', 'percentile_disc', 'mode', 'rank',
  'dense_rank', 'percent_rank', 'cume_dist', 'range_agg', 'range_intersect_agg', 'any_value',
]);

/** Aggregates of pg_catalog that return the values they read, not a summary of them. */
const COLLECTING: ReadonlySet<string> = new Set([
  'array_agg', 'string_agg', 'json_agg', 'jsonb_agg', 'json_agg_strict', 'jsonb_agg_strict', 'json_object_agg',
  'jsonb_object_agg', 'json_object_agg_strict', 'jsonb_object_agg_strict', 'json_object_agg_unique',
  'jsonb_object_agg_unique', 'json_object_agg_unique_strict', 'jsonb_object_agg_unique_strict', 'json_objectagg',
  'json_arrayagg', 'xmlagg', 'range_agg',
]);

/** A relation of the system catalogs: in pg_catalog or information_schema, or an unqualified
 *  `pg_…` (pg_catalog is searched first, and such names are the catalogs'). */
function isCatalogRelation(table: string): boolean {
  const dot = table.indexOf('.');
  if (dot < 0) return table.startsWith('pg_');
  const schema = table.slice(0, dot);
  return schema === 'pg_catalog' || schema === 'information_schema';
}

/** Builtins that read a whole table named by their first argument (a regclass). */
const TABLE_READERS: ReadonlySet<string> = new Set(['table_to_xml', 'table_to_xml_and_xmlschema']);
/** Builtins that read every table of a schema or database. */
const WHOLE_READERS: ReadonlySet<string> = new Set(['schema_to_xml', 'schema_to_xml_and_xmlschema', 'database_to_xml', 'database_to_xml_and_xmlschema']);
/** A relation name as regclass reads it: an identifier or quoted identifier, optionally qualified. */
const RELATION_NAME = /^\s*("(?:[^"]|"")+"|[A-Za-z_][A-Za-z0-9_$]*)(\s*\.\s*("(?:[^"]|"")+"|[A-Za-z_][A-Za-z0-9_$]*))?\s*$/;

/** DROP of these object types names relations. */
const RELATION_OBJECTS: ReadonlySet<string> = new Set(['OBJECT_TABLE', 'OBJECT_VIEW', 'OBJECT_MATVIEW', 'OBJECT_FOREIGN_TABLE']);

/** How deep code inside code (a DO block that creates a function …) is read before it counts as opaque. */
const MAX_CODE_DEPTH = 8;

function classifyStatement(stmt: unknown, protectedColumns: string[], source: string, depth = 0): Classification {
  const { kind, main, mainType } = kindOf(stmt);
  const walk = new Walk(main);
  walk.visit(stmt, new Set());
  // Packing the catalog's rows (psql's `\du`: ARRAY(SELECT rolname FROM pg_auth_members …)) exports no data.
  const collects = walk.collects && [...walk.tables].some((t) => !isCatalogRelation(t));
  const code = embeddedCode(stmt, source);
  // Queries given as text to functions that run them (query_to_xml, table_to_xml, …) run too.
  const given = walk.queries.map((q) => sqlStatements(q, 'a query given as text'));
  const runs = [...(code?.statements ?? []), ...given.flatMap((g) => g.statements)];
  const inside = runs.map((e) => depth < MAX_CODE_DEPTH ? classifyStatement(e.stmt, protectedColumns, e.source, depth + 1) : null);
  const opaque = code?.opaque ?? walk.opaque ?? given.find((g) => g.opaque)?.opaque
    ?? (inside.includes(null) ? `code nested deeper than ${MAX_CODE_DEPTH}` : inside.find((c) => c?.opaque)?.opaque);
  // What the code runs, flat: rules.ts decides one level of `nested`. A read of no relation
  // (`RAISE NOTICE '%', r` reads as `SELECT r`) reads nothing a rule could name.
  const ran = inside.flatMap((c) => {
    if (c === null || (c.kind === 'select' && c.tables.length === 0 && c.nested.length === 0)) return [];
    const { nested, opaque: _, ...itself } = c;
    return [{ ...itself, nested: [] }, ...nested];
  });
  return {
    kind,
    tables: [...walk.tables],
    columns: [...walk.columns],
    protectedColumns: [...protectedColumns],
    where: mainWhere(mainType, main),
    // One row that packs a table is no limit on what is read.
    limit: !collects && mainLimit(mainType, main),
    joins: walk.joins,
    aggregates: walk.aggregates,
    summarizes: !collects && mainSummarizes(mainType, main),
    collects,
    functions: [...walk.functions],
    nested: [...walk.nested.map((n) => classifyStatement(n, protectedColumns, '', depth)), ...copiedRead(stmt, protectedColumns, depth), ...ran],
    ...(isDeferred(stmt) ? { deferred: true as const } : {}),
    ...(opaque ? { opaque } : {}),
  };
}

/**
 * The read of a statement that writes a query's rows elsewhere (INSERT … SELECT, CREATE TABLE AS,
 * SELECT INTO, CREATE MATERIALIZED VIEW), as a `select` of its own: a rule on reading a table
 * holds copying it out from under the rule's name too. A query that reads no relation (VALUES)
 * is none. Its writes are the outer walk's already.
 */
function copiedRead(stmt: unknown, protectedColumns: string[], depth: number): Classification[] {
  const u = unwrap(stmt);
  if (!u) return [];
  const [type, body] = u;
  const query = type === 'InsertStmt' ? body.selectStmt
    : type === 'CreateTableAsStmt' ? body.query
    : type === 'SelectStmt' && body.intoClause ? { SelectStmt: { ...body, intoClause: undefined } }
    : null;
  if (!as(query, 'SelectStmt')) return [];
  const read = classifyStatement(query, protectedColumns, '', depth);
  return read.tables.length > 0 ? [{ ...read, nested: [] }] : [];
}

function isDeferred(stmt: unknown): boolean {
  const type = unwrap(stmt)?.[0];
  return type === 'PrepareStmt' || type === 'DeclareCursorStmt';
}

type CteNames = ReadonlySet<string>;

class Walk {
  readonly tables = new Set<string>();
  readonly columns = new Set<string>();
  readonly functions = new Set<string>();
  readonly nested: unknown[] = [];
  joins = false;
  aggregates = false;
  collects = false;
  /** Query texts functions are given to run (readsGiven). */
  readonly queries: string[] = [];
  /** Why part of what the statement reads cannot be known (readsGiven). */
  opaque: string | null = null;
  /** Relation references seen so far (tables and CTEs): a subquery that adds some reads a relation. */
  private references = 0;

  /** `main`: the statement's own query, which is not nested in itself. */
  constructor(private readonly main: Body | null) {}

  visit(value: unknown, ctes: CteNames): void {
    if (value === null || typeof value !== 'object') return;
    if (Array.isArray(value)) {
      for (const v of value) this.visit(v, ctes);
      return;
    }
    const u = unwrap(value);
    if (!u) return this.bare(value as Body, ctes);
    const [type, body] = u;
    if (DML.has(type)) {
      if (body !== this.main) this.nested.push(value);
      return this.dml(type, body, ctes);
    }
    switch (type) {
      case 'RangeVar':
        return this.relation(body, ctes);
      case 'SelectStmt':
        return this.select(body, ctes);
      case 'FuncCall':
        return this.call(body, ctes);
      case 'ColumnRef':
        return this.column(body);
      case 'SubLink':
        if (body.subLinkType === 'ARRAY_SUBLINK') this.collects = true;
        return this.fields(body, ctes);
      case 'JoinExpr':
        this.joins = true;
        return this.fields(body, ctes);
      case 'DropStmt':
        if (RELATION_OBJECTS.has(body.removeType)) for (const o of list(body.objects)) this.tables.add(strings(as(o, 'List')?.items).join('.'));
        return this.fields(body, ctes);
      case 'CopyStmt':
        this.columnNames(strings(body.attlist));
        return this.fields(body, ctes);
      default:
        return this.fields(body, ctes);
    }
  }

  /** A bare body: the tree holds RangeVars (`relation`, `rel`) and FuncCalls (CALL) unwrapped. */
  private bare(body: Body, ctes: CteNames): void {
    if (typeof body.relname === 'string') return this.relation(body, ctes);
    if (Array.isArray(body.funcname)) return this.call(body, ctes);
    this.fields(body, ctes);
  }

  private fields(body: Body, ctes: CteNames, skip: ReadonlySet<string> = NO_KEYS): void {
    for (const [key, v] of Object.entries(body)) if (!skip.has(key)) this.visit(v, ctes);
  }

  private relation(rv: Body, ctes: CteNames): void {
    if (typeof rv.relname !== 'string') return;
    this.references++;
    const schema = typeof rv.schemaname === 'string' ? rv.schemaname : null;
    if (schema === null && ctes.has(rv.relname)) return;
    this.tables.add(schema === null ? rv.relname : `${schema}.${rv.relname}`);
  }

  private column(ref: Body): void {
    const fields = list(ref.fields);
    const last = fields[fields.length - 1];
    if (as(last, 'A_Star')) this.columns.add('*');
    else {
      const name = as(last, 'String')?.sval;
      if (typeof name === 'string') this.columns.add(name);
    }
  }

  private columnNames(names: unknown[]): void {
    for (const n of names) if (typeof n === 'string') this.columns.add(n);
  }

  private call(fn: Body, ctes: CteNames): void {
    const parts = strings(fn.funcname);
    const name = parts[parts.length - 1] ?? '';
    this.functions.add(parts.join('.'));
    const catalog = parts.length === 1 || (parts.length === 2 && parts[0] === 'pg_catalog');
    if (fn.over || isAggregateCall(fn)) this.aggregates = true;
    if (catalog && COLLECTING.has(name)) this.collects = true;
    this.readsGiven(name.toLowerCase(), list(fn.args));
    this.fields(fn, ctes, FUNCNAME);
  }

  /**
   * A function that reads rows it is told of by text: `query_to_xml('SELECT * FROM customers', …)`
   * and `table_to_xml('customers', …)` read customers as a SELECT would (`queries`, classified
   * by the caller); what cannot be read so (a query that is not a constant, a whole schema or
   * database, a cursor's rows) makes the statement opaque.
   */
  private readsGiven(name: string, args: unknown[]): void {
    for (const i of queryTextArguments(name, args.length) ?? []) {
      const arg = args[i];
      if (arg === undefined || nonStringConstant(arg)) continue;
      const text = stringConstant(arg);
      if (text === null) this.opaque ??= `${name} runs a query given as text that is not a constant`;
      else this.queries.push(text);
    }
    if (TABLE_READERS.has(name)) {
      const table = stringConstant(args[0]);
      if (table !== null && RELATION_NAME.test(table)) this.queries.push(`SELECT * FROM ${table}`);
      else this.opaque ??= `${name} reads a table it is not given by name`;
    }
    if (WHOLE_READERS.has(name)) this.opaque ??= `${name} reads every table of a schema or database`;
    if (name === 'cursor_to_xml') this.opaque ??= `${name} reads a cursor's rows, which no FETCH counts`;
  }

  /** The CTE names visible in a WITH's body: each non-recursive CTE sees only the ones before it
   *  (so `WITH customers AS (SELECT * FROM customers)` still reads the table). */
  private with(clause: unknown, ctes: CteNames): CteNames {
    const w = clause as Body | undefined;
    if (!w || typeof w !== 'object') return ctes;
    const defs = list(w.ctes).map((c) => as(c, 'CommonTableExpr')).filter((c): c is Body => c !== null);
    const all = new Set([...ctes, ...defs.map((c) => String(c.ctename ?? ''))]);
    let visible = new Set(ctes);
    for (const def of defs) {
      this.visit(def.ctequery, w.recursive ? all : visible);
      visible = new Set([...visible, String(def.ctename ?? '')]);
    }
    return all;
  }

  private select(body: Body, outer: CteNames): void {
    const ctes = this.with(body.withClause, outer);
    if (body.larg || body.rarg) {
      this.select(body.larg ?? {}, ctes);
      this.select(body.rarg ?? {}, ctes);
    }
    const from = list(body.fromClause);
    if (from.length > 1) this.joins = true;
    if (list(body.groupClause).length > 0 || body.havingClause) this.aggregates = true;
    this.visit(from, ctes);
    this.visit(body.intoClause, ctes);
    const before = this.references;
    this.fields(body, ctes, SELECT_HANDLED);
    // A subquery reading a relation, inside a query over a relation: a semi-join or a lookup.
    if (from.length > 0 && this.references > before) this.joins = true;
  }

  private dml(type: string, body: Body, outer: CteNames): void {
    const ctes = this.with(body.withClause, outer);
    // The target is always a table, even when a CTE of the same name is in scope.
    this.relation(body.relation ?? {}, new Set());
    if (type === 'MergeStmt' || list(body.fromClause).length > 0 || list(body.usingClause).length > 0) this.joins = true;
    for (const t of [...list(body.cols), ...(type === 'UpdateStmt' ? list(body.targetList) : [])]) {
      const name = as(t, 'ResTarget')?.name;
      if (typeof name === 'string') this.columns.add(name);
    }
    this.fields(body, ctes, DML_HANDLED);
  }
}

const NO_KEYS: ReadonlySet<string> = new Set();
const FUNCNAME: ReadonlySet<string> = new Set(['funcname']);
const SELECT_HANDLED: ReadonlySet<string> = new Set(['withClause', 'larg', 'rarg', 'fromClause', 'intoClause']);
const DML_HANDLED: ReadonlySet<string> = new Set(['withClause', 'relation']);
