/**
 * FROM items: what each contributes to a query level's names and to its `*`. Tables and views
 * come from the catalog snapshot (an unqualified name means that name in every schema),
 * subqueries, CTEs, functions, joins (USING / NATURAL merge columns) and table functions from
 * their own analysis.
 */
import { as, children, list, strings, unwrap, type Body } from './lineage-node.js';
import { branchTaint, clearTaint, copyTaint, unionTaints, unknownTaint } from './lineage-taint.js';
import { findColumn, findCte, itemFromColumns, openItem, renameColumns, type AnalysisContext, type Col, type RangeItem, type Scope } from './lineage-scope.js';
import { exprTaint, predicateTaint } from './lineage-expr.js';
import { analyzeQueryNode } from './lineage-select.js';
import { VALUE_HOLDING_RELATIONS } from './lineage-functions.js';
import { relationFacts } from './lineage-relations.js';
import type { RelationInfo } from './types.js';

interface FromPart {
  items: RangeItem[];
  star: Col[] | null;
}

/** Add the FROM list's items to `level` (left to right: later items may be LATERAL) and return
 *  the columns `*` expands to. */
export function fromClause(nodes: unknown[], level: Scope, ctx: AnalysisContext): Col[] | null {
  let star: Col[] | null = [];
  for (const node of nodes) {
    const part = fromItem(node, level, ctx);
    level.items.push(...part.items);
    star = star === null || part.star === null ? null : [...star, ...part.star];
  }
  return star;
}

function single(item: RangeItem): FromPart {
  return { items: [item], star: item.star };
}

function fromItem(node: unknown, level: Scope, ctx: AnalysisContext): FromPart {
  const u = unwrap(node);
  if (!u) return single(openItem(null, unknownTaint('a FROM item the gateway cannot read')));
  const [type, body] = u;
  switch (type) {
    case 'RangeVar':
      return single(rangeVarItem(body, level, ctx));
    case 'RangeSubselect':
      return single(subselectItem(body, level, ctx));
    case 'RangeFunction':
      return single(functionItem(body, level, ctx));
    case 'JoinExpr':
      return joinPart(body, level, ctx);
    case 'RangeTableSample':
      predicateTaint([body.args, body.repeatable], level, ctx, 'rows');
      return fromItem({ RangeVar: as(body.relation, 'RangeVar') ?? body.relation }, level, ctx);
    case 'RangeTableFunc':
    case 'JsonTable':
      return single(tableFunctionItem(type, body, level, ctx));
    default:
      exprTaint(children(body), level, ctx);
      return single(openItem(aliasName(body), unknownTaint(`a FROM item of type ${type} the gateway does not understand`)));
  }
}

function aliasName(body: Body): string | null {
  const name = (body.alias as Body | undefined)?.aliasname;
  return typeof name === 'string' ? name : null;
}

function aliasColumns(body: Body): string[] {
  return strings((body.alias as Body | undefined)?.colnames);
}

/** A table, view or CTE by name. */
export function rangeVarItem(body: Body, level: Scope, ctx: AnalysisContext): RangeItem {
  const name = String(body.relname ?? '');
  const schema = typeof body.schemaname === 'string' ? body.schemaname : null;
  const alias = aliasName(body);
  const renames = aliasColumns(body);
  if (schema === null) {
    const cte = findCte(level.ctes, name);
    if (cte !== undefined) {
      return cte === null
        ? openItem(alias ?? name, unknownTaint(`the columns of WITH query "${name}" cannot be named`))
        : itemFromColumns(alias ?? name, null, renameColumns(cte.map((c) => ({ name: c.name, taint: copyTaint(c.taint) })), renames));
    }
  }
  const shown = schema === null ? name : `${schema}.${name}`;
  const holding = VALUE_HOLDING_RELATIONS.get(name);
  if (holding && (holding.anySchema || schema === null || schema === 'pg_catalog')) {
    ctx.refuse(`reading ${shown} is refused on a masking connection: ${holding.why}`);
  }
  const rels = ctx.env.schema.relations(schema, name);
  if (rels.length === 0) return openItem(alias ?? name, unknownTaint(`relation "${shown}" is not in the gateway's catalog`));
  const perRelation = rels.map((rel) => relationColumns(rel, ctx));
  const qualifier = alias === null ? (schema ?? (rels.length === 1 ? rels[0]!.schema : null)) : null;
  const first = perRelation[0]!;
  const sameShape = perRelation.every((cols) => cols.length === first.length && cols.every((c, i) => c.name === first[i]!.name));
  if (sameShape) {
    const cols = first.map((c, i) => ({ name: c.name, taint: branchTaint(perRelation.map((r) => r[i]!.taint)) }));
    return itemFromColumns(alias ?? name, qualifier, renameColumns(cols, renames), true);
  }
  // Same name, different columns in different schemas: names resolve to the union of every
  // relation that has them; `*` cannot be expanded (the session's search_path decides).
  const names = [...new Set(perRelation.flat().map((c) => c.name))];
  const named = names.map((n) => ({ name: n, taint: branchTaint(perRelation.flat().filter((c) => c.name === n).map((c) => c.taint)) }));
  const item = itemFromColumns(alias ?? name, qualifier, named, true);
  return { ...item, star: null };
}

function relationColumns(rel: RelationInfo, ctx: AnalysisContext): Col[] {
  const facts = relationFacts(rel, ctx.env);
  for (const r of facts.refusals) ctx.refuse(r);
  for (const p of facts.predicates) ctx.usePredicate(p);
  if (facts.touches) ctx.touches = true;
  return rel.columns.map((c, i) => ({ name: c.name, taint: copyTaint(facts.taints[i] ?? unknownTaint(`column ${c.name} of ${rel.schema}.${rel.name}`)) }));
}

function subselectItem(body: Body, level: Scope, ctx: AnalysisContext): RangeItem {
  // Without LATERAL a subquery sees the enclosing query levels, not its FROM siblings.
  const outer = body.lateral ? level : level.parent;
  const cols = analyzeQueryNode(body.subquery, outer, level.ctes, ctx);
  const name = aliasName(body);
  return cols === null ? openItem(name, unknownTaint('a subquery in FROM whose columns cannot be named')) : itemFromColumns(name, null, renameColumns(cols, aliasColumns(body)));
}

/** Set-returning builtins whose result columns are known (the rest: one column named after the
 *  function if scalar, else unknown). */
const RECORD_COLUMNS: ReadonlyMap<string, string[]> = new Map([
  ['json_each', ['key', 'value']],
  ['json_each_text', ['key', 'value']],
  ['jsonb_each', ['key', 'value']],
  ['jsonb_each_text', ['key', 'value']],
  ['pg_options_to_table', ['option_name', 'option_value']],
]);
const SCALAR_SET_FUNCTIONS = new Set([
  'generate_series', 'generate_subscripts', 'regexp_matches', 'regexp_split_to_table', 'string_to_table',
  'json_array_elements', 'json_array_elements_text', 'jsonb_array_elements', 'jsonb_array_elements_text',
  'json_object_keys', 'jsonb_object_keys', 'jsonb_path_query',
]);

/** A function in FROM: its columns carry the union of its arguments' taint (functions in FROM
 *  may always refer to earlier FROM items). */
function functionItem(body: Body, level: Scope, ctx: AnalysisContext): RangeItem {
  const entries = list(body.functions).map((l) => list(as(l, 'List')?.items));
  const alias = aliasName(body);
  let cols: Col[] | null = [];
  const taints = [];
  for (const [call, coldefs] of entries) {
    const taint = exprTaint(call, level, ctx);
    taints.push(taint);
    const defs = list(coldefs).length > 0 ? list(coldefs) : entries.length === 1 ? list(body.coldeflist) : [];
    const names = functionColumns(call, defs, entries.length === 1 && aliasColumns(body).length === 0 ? alias : null);
    cols = cols === null || names === null ? null : [...cols, ...names.map((n) => ({ name: n, taint: copyTaint(taint) }))];
  }
  const all = unionTaints(taints);
  if (cols === null) return openItem(alias ?? functionName(entries[0]?.[0]), all);
  if (body.ordinality) cols.push({ name: 'ordinality', taint: clearTaint() });
  return itemFromColumns(alias ?? functionName(entries[0]?.[0]), null, renameColumns(cols, aliasColumns(body)));
}

function functionName(call: unknown): string | null {
  const names = strings(as(call, 'FuncCall')?.funcname);
  return names[names.length - 1] ?? null;
}

function functionColumns(call: unknown, coldefs: unknown[], alias: string | null): string[] | null {
  if (coldefs.length > 0) return coldefs.map((d) => String(as(d, 'ColumnDef')?.colname ?? '?column?'));
  const fc = as(call, 'FuncCall');
  const name = functionName(call);
  if (!fc || name === null) return [alias ?? '?column?'];
  const known = RECORD_COLUMNS.get(name);
  if (known) return known;
  if (name === 'unnest') return list(fc.args).map(() => alias ?? 'unnest');
  if (SCALAR_SET_FUNCTIONS.has(name)) return [alias ?? name];
  return null;
}

function joinPart(body: Body, level: Scope, ctx: AnalysisContext): FromPart {
  const left = fromItem(body.larg, level, ctx);
  const right = fromItem(body.rarg, { items: [...level.items, ...left.items], parent: level.parent, ctes: level.ctes }, ctx);
  const sides = [...left.items, ...right.items];
  let using = strings(body.usingClause);
  let knownShape = left.star !== null && right.star !== null;
  if (body.isNatural) {
    if (knownShape) using = left.star!.map((c) => c.name).filter((n) => right.star!.some((r) => r.name === n));
    else knownShape = false;
  }
  const lookIn = (items: RangeItem[], name: string) => findColumn({ items, parent: null, ctes: null }, name) ?? unknownTaint(`join column "${name}"`);
  const merged = using.map((name): Col => {
    const pair = [lookIn(left.items, name), lookIn(right.items, name)];
    for (const t of pair) ctx.predicate(ctx.read(t), 'join');
    return { name, taint: branchTaint(pair) };
  });
  for (const item of sides) for (const name of using) item.hidden.add(name);
  const mergedItem = itemFromColumns(null, null, merged);
  if (body.quals) predicateTaint(body.quals, { items: [...sides, mergedItem], parent: level.parent, ctes: level.ctes }, ctx, 'join');
  const star = knownShape ? [...merged, ...left.star!.filter((c) => !using.includes(c.name)), ...right.star!.filter((c) => !using.includes(c.name))] : null;
  const items = [...sides, mergedItem];
  const usingAlias = (body.join_using_alias as Body | undefined)?.aliasname;
  if (typeof usingAlias === 'string') items.push(itemFromColumns(usingAlias, null, merged));
  const alias = aliasName(body);
  if (alias === null) return { items, star };
  const aliased = star ? itemFromColumns(alias, null, renameColumns(star, aliasColumns(body))) : openItem(alias, unionTaints(items.map((i) => i.whole)));
  return { items: [aliased], star };
}

/** XMLTABLE / JSON_TABLE: every column derives from the document and the expressions given. */
function tableFunctionItem(type: string, body: Body, level: Scope, ctx: AnalysisContext): RangeItem {
  const { alias: _alias, ...rest } = body;
  const taint = exprTaint(children(rest), level, ctx);
  const names = type === 'RangeTableFunc' ? list(body.columns).map((c) => as(c, 'RangeTableFuncCol')?.colname) : jsonTableColumns(list(body.columns));
  const name = aliasName(body) ?? (type === 'RangeTableFunc' ? 'xmltable' : 'json_table');
  if (names.some((n) => typeof n !== 'string')) return openItem(name, taint);
  return itemFromColumns(name, null, renameColumns(names.map((n) => ({ name: n as string, taint: copyTaint(taint) })), aliasColumns(body)));
}

function jsonTableColumns(cols: unknown[]): (string | undefined)[] {
  return cols.flatMap((c) => {
    const col = as(c, 'JsonTableColumn');
    if (!col) return [undefined];
    return col.coltype === 'JTC_NESTED' ? jsonTableColumns(list(col.columns)) : [typeof col.name === 'string' ? col.name : undefined];
  });
}
