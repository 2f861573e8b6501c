/**
 * The result columns of a query (SELECT, VALUES, TABLE, set operations, WITH), and the
 * predicates it uses on the way.
 */
import type { PredicateUse } from './types.js';
import { as, list, strings, unwrap, type Body } from './lineage-node.js';
import { branchTaint, clearTaint, combineColumns, copyTaint, isClear, unknownTaint } from './lineage-taint.js';
import { findItem, itemFromColumns, renameColumns, type AnalysisContext, type Col, type CteFrame, type Scope } from './lineage-scope.js';
import { exprTaint, predicateTaint, windowTaint } from './lineage-expr.js';
import { fromClause } from './lineage-from.js';
import { analyzeDml } from './lineage-dml.js';

/** A query node (wrapped, or a bare SelectStmt body as set operations hold them): its columns,
 *  or null when they cannot be named. */
export function analyzeQueryNode(node: unknown, outer: Scope | null, ctes: CteFrame | null, ctx: AnalysisContext): Col[] | null {
  const u = unwrap(node);
  if (!u) return node !== null && typeof node === 'object' ? analyzeSelect(node as Body, outer, ctes, ctx) : null;
  const [type, body] = u;
  if (type === 'SelectStmt') return analyzeSelect(body, outer, ctes, ctx);
  if (type === 'InsertStmt' || type === 'UpdateStmt' || type === 'DeleteStmt' || type === 'MergeStmt') return analyzeDml(type, body, outer, ctes, ctx);
  ctx.refuse(`a ${type} where a query was expected is not understood by the gateway`);
  return null;
}

export function analyzeSelect(stmt: Body, outer: Scope | null, ctes: CteFrame | null, ctx: AnalysisContext): Col[] | null {
  const frame = stmt.withClause ? buildCtes(stmt.withClause as Body, outer, ctes, ctx) : ctes;
  if (stmt.op && stmt.op !== 'SETOP_NONE') {
    const cols = combineColumns([analyzeQueryNode(stmt.larg, outer, frame, ctx), analyzeQueryNode(stmt.rarg, outer, frame, ctx)]);
    // All but UNION ALL compare rows: `... WHERE id = 1 INTERSECT SELECT 700` has a row exactly
    // when that score is 700.
    if (stmt.op !== 'SETOP_UNION' || !stmt.all) comparesOutputs(cols, ctx);
    finishOverOutputs(stmt, cols, outer, frame, ctx);
    return cols;
  }
  if (Array.isArray(stmt.valuesLists)) {
    const level: Scope = { items: [], parent: outer, ctes: frame };
    const rows = stmt.valuesLists.map((row: unknown) =>
      list(as(row, 'List')?.items).map((v, i): Col => ({ name: `column${i + 1}`, taint: exprTaint(v, level, ctx) })),
    );
    const cols = combineColumns(rows);
    finishOverOutputs(stmt, cols, outer, frame, ctx);
    return cols;
  }
  const level: Scope = { items: [], parent: outer, ctes: frame };
  const fromStar = fromClause(list(stmt.fromClause), level, ctx);
  let cols: Col[] | null = [];
  for (const target of list(stmt.targetList)) {
    const expanded = targetColumns(target, level, fromStar, ctx);
    cols = cols === null || expanded === null ? null : [...cols, ...expanded];
  }
  if (stmt.whereClause) predicateTaint(stmt.whereClause, level, ctx, 'where');
  for (const g of list(stmt.groupClause)) outputOrInput(g, cols, level, ctx, 'group_by', false);
  if (stmt.havingClause) predicateTaint(stmt.havingClause, level, ctx, 'having');
  for (const w of list(stmt.windowClause)) windowTaint(w, level, ctx);
  for (const d of list(stmt.distinctClause)) if (unwrap(d)) outputOrInput(d, cols, level, ctx, 'distinct_on', true);
  // Plain DISTINCT compares whole output rows.
  if (list(stmt.distinctClause).some((d) => !unwrap(d))) comparesOutputs(cols, ctx);
  for (const s of list(stmt.sortClause)) outputOrInput(as(s, 'SortBy')?.node ?? s, cols, level, ctx, 'order_by', true);
  limits(stmt, level, ctx);
  return cols;
}

/** DISTINCT and the set operations that compare rows: how many rows come out tells equal values apart, like GROUP BY. */
function comparesOutputs(cols: Col[] | null, ctx: AnalysisContext): void {
  if (cols === null) ctx.predicate(unknownTaint('a result whose columns cannot be named'), 'distinct');
  else for (const c of cols) ctx.predicate(c.taint, 'distinct');
}

/** ORDER BY and LIMIT of a set operation or VALUES: over the output columns only. */
function finishOverOutputs(stmt: Body, cols: Col[] | null, outer: Scope | null, frame: CteFrame | null, ctx: AnalysisContext): void {
  const level: Scope = { items: cols ? [itemFromColumns(null, null, cols)] : [], parent: outer, ctes: frame };
  for (const s of list(stmt.sortClause)) outputOrInput(as(s, 'SortBy')?.node ?? s, cols, level, ctx, 'order_by', true);
  limits(stmt, level, ctx);
}

function limits(stmt: Body, level: Scope, ctx: AnalysisContext): void {
  if (stmt.limitCount) predicateTaint(stmt.limitCount, level, ctx, 'limit');
  if (stmt.limitOffset) predicateTaint(stmt.limitOffset, level, ctx, 'limit');
}

/** ORDER BY / DISTINCT ON prefer an output column's name; GROUP BY an input column's; both take
 *  `1` as the first output. */
function outputOrInput(node: unknown, cols: Col[] | null, level: Scope, ctx: AnalysisContext, clause: PredicateUse['clause'], preferOutput: boolean): void {
  const position = as(node, 'A_Const')?.ival;
  if (position !== undefined) {
    const n = typeof position.ival === 'number' ? position.ival : 0;
    const col = cols?.[n - 1];
    ctx.predicate(col ? col.taint : cols === null ? unknownTaint(`output column ${n} of a result whose columns cannot be named`) : clearTaint(), clause);
    return;
  }
  const ref = as(node, 'ColumnRef');
  const names = ref ? strings(ref.fields) : [];
  const byName = names.length === 1 && list(ref?.fields).length === 1 ? cols?.filter((c) => c.name === names[0]) : undefined;
  const inputKnown = names.length === 1 && level.items.some((i) => !i.open && i.star?.some((c) => c.name === names[0]));
  if (byName && byName.length > 0 && (preferOutput || !inputKnown)) {
    ctx.predicate(branchTaint(byName.map((c) => c.taint)), clause);
    return;
  }
  predicateTaint(node, level, ctx, clause);
}

/** One target list entry: one column, or several for `*` / `c.*` / `(c).*`. */
export function targetColumns(target: unknown, level: Scope, fromStar: Col[] | null, ctx: AnalysisContext): Col[] | null {
  const rt = as(target, 'ResTarget');
  if (!rt) return [{ name: '?column?', taint: exprTaint(target, level, ctx) }];
  const ref = as(rt.val, 'ColumnRef');
  const fields = list(ref?.fields);
  if (ref && fields.length > 0 && as(fields[fields.length - 1], 'A_Star')) {
    const names = strings(fields);
    if (names.length === 0) return starColumns(fromStar, ctx);
    const item = names.length === 1 ? findItem(level, names[0]!) : findItem(level, names[names.length - 1]!, names[names.length - 2]!);
    return starColumns(item ? item.star : null, ctx);
  }
  const ind = as(rt.val, 'A_Indirection');
  if (ind && list(ind.indirection).some((i) => as(i, 'A_Star'))) {
    const inner = as(ind.arg, 'ColumnRef');
    const names = inner ? strings(inner.fields) : [];
    const item = list(ind.indirection).length === 1 && names.length === 1 ? findItem(level, names[0]!) : undefined;
    if (!item) exprTaint(ind.arg, level, ctx);
    return starColumns(item ? item.star : null, ctx);
  }
  const taint = exprTaint(rt.val, level, ctx);
  return [{ name: typeof rt.name === 'string' ? rt.name : outputName(rt.val), taint }];
}

function starColumns(cols: Col[] | null, ctx: AnalysisContext): Col[] | null {
  if (cols === null) {
    ctx.read(unknownTaint('*'));
    return null;
  }
  return cols.map((c) => ({ name: c.name, taint: ctx.read(copyTaint(c.taint)) }));
}

/** The column name PostgreSQL gives an unnamed target (close enough for the record). */
export function outputName(node: unknown): string {
  const u = unwrap(node);
  if (!u) return '?column?';
  const [type, body] = u;
  switch (type) {
    case 'ColumnRef': {
      const names = strings(body.fields);
      return names[names.length - 1] ?? '?column?';
    }
    case 'FuncCall': {
      const names = strings(body.funcname);
      return names[names.length - 1] ?? '?column?';
    }
    case 'TypeCast': {
      const inner = outputName(body.arg);
      if (inner !== '?column?') return inner;
      const names = strings(body.typeName?.names);
      return names[names.length - 1] ?? '?column?';
    }
    case 'A_Indirection': {
      const last = strings(body.indirection);
      return last[last.length - 1] ?? outputName(body.arg);
    }
    case 'CaseExpr':
      return 'case';
    case 'CoalesceExpr':
      return 'coalesce';
    case 'MinMaxExpr':
      return body.op === 'IS_LEAST' ? 'least' : 'greatest';
    case 'RowExpr':
      return 'row';
    case 'A_ArrayExpr':
      return 'array';
    case 'SubLink':
      if (body.subLinkType === 'EXISTS_SUBLINK') return 'exists';
      if (body.subLinkType === 'ARRAY_SUBLINK') return 'array';
      return body.subLinkType === 'EXPR_SUBLINK' ? firstTargetName(body.subselect) : '?column?';
    default:
      return '?column?';
  }
}

function firstTargetName(select: unknown): string {
  const rt = as(list(as(select, 'SelectStmt')?.targetList)[0], 'ResTarget');
  return rt ? (typeof rt.name === 'string' ? rt.name : outputName(rt.val)) : '?column?';
}

/** WITH [RECURSIVE]: each CTE's columns, visible to the CTEs after it and to the query. A
 *  recursive CTE is analysed until its columns' taint stops growing. */
export function buildCtes(withClause: Body, outer: Scope | null, parent: CteFrame | null, ctx: AnalysisContext): CteFrame {
  const frame: CteFrame = { defs: new Map(), parent };
  for (const node of list(withClause.ctes)) {
    const cte = as(node, 'CommonTableExpr');
    if (!cte || typeof cte.ctename !== 'string') continue;
    const name = cte.ctename;
    const aliases = strings(cte.aliascolnames);
    const analyse = (): Col[] | null => {
      const cols = analyzeQueryNode(cte.ctequery, outer, frame, ctx);
      return cols === null ? null : renameColumns(cols, aliases);
    };
    if (!withClause.recursive) {
      frame.defs.set(name, analyse());
      continue;
    }
    frame.defs.set(name, recursiveSeed(cte.ctequery, aliases, outer, frame, ctx));
    let cols = analyse();
    for (let round = 0; round < 8 && cols !== null && !sameTaints(cols, frame.defs.get(name) ?? null); round++) {
      frame.defs.set(name, cols);
      cols = analyse();
    }
    const done = cols !== null && sameTaints(cols, frame.defs.get(name) ?? null) ? cols : null;
    frame.defs.set(name, done);
    searchAndCycle(cte, done, ctx);
  }
  return frame;
}

/** SEARCH … BY orders a recursive query's rows by its columns; CYCLE … stops the recursion where
 *  their values repeat, so how many rows come out tells equal values apart. */
function searchAndCycle(cte: Body, cols: Col[] | null, ctx: AnalysisContext): void {
  const taintOf = (name: string) => cols?.find((c) => c.name === name)?.taint ?? unknownTaint(`column ${name} of WITH query "${String(cte.ctename)}"`);
  const search = cte.search_clause as Body | undefined;
  if (search) for (const name of strings(search.search_col_list)) ctx.predicate(taintOf(name), 'order_by');
  const cycle = cte.cycle_clause as Body | undefined;
  if (cycle) for (const name of strings(cycle.cycle_col_list)) ctx.predicate(taintOf(name), 'distinct');
}

/** The first round: a recursive reference is the non-recursive branch (or contributes nothing). */
function recursiveSeed(query: unknown, aliases: string[], outer: Scope | null, frame: CteFrame, ctx: AnalysisContext): Col[] | null {
  const select = as(query, 'SelectStmt');
  if (select && select.op && select.op !== 'SETOP_NONE') {
    const base = analyzeQueryNode(select.larg, outer, frame, ctx);
    if (base !== null) return renameColumns(base, aliases);
  }
  return aliases.length > 0 ? aliases.map((name) => ({ name, taint: clearTaint() })) : null;
}

function sameTaints(a: Col[], b: Col[] | null): boolean {
  if (b === null || a.length !== b.length) return false;
  const key = (c: Col): string => `${c.name}|${c.taint.direct}|${c.taint.unknown}|${c.taint.sources.map((s) => s.column).sort().join(',')}|${isClear(c.taint)}`;
  return a.every((c, i) => key(c) === key(b[i]!));
}
