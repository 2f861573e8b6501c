/**
 * The taint of an expression. Nodes that change meaning (column references, function calls,
 * subqueries, CASE) are special-cased, and so are operators and casts, which may fail for some
 * values (a predicate: see TOTAL_OPERATORS); every other node is the union of its children, so an
 * expression form this file does not know still carries every column it mentions.
 */
import type { PredicateUse, Taint } from './types.js';
import { as, children, list, strings, unwrap, type Body } from './lineage-node.js';
import { branchTaint, clearTaint, isClear, unionTaints, unknownTaint } from './lineage-taint.js';
import { columnOf, findColumn, findItem, type AnalysisContext, type Scope } from './lineage-scope.js';
import { COUNTING_AGGREGATES, catalogName, functionRefusal, plannerSettingRefusal, totalAt } from './lineage-functions.js';
import { analyzeQueryNode } from './lineage-select.js';

/** Literal-like nodes: no column can hide in them. */
const CLEAR_NODES = new Set(['A_Const', 'ParamRef', 'SQLValueFunction', 'SetToDefault', 'String', 'Integer', 'Float', 'Boolean', 'BitString', 'A_Star', 'TypeName', 'CurrentOfExpr']);

export function exprTaint(node: unknown, scope: Scope, ctx: AnalysisContext): Taint {
  if (Array.isArray(node)) return unionTaints(node.map((n) => exprTaint(n, scope, ctx)));
  const u = unwrap(node);
  if (!u) return clearTaint();
  const [type, body] = u;
  if (CLEAR_NODES.has(type)) return clearTaint();
  switch (type) {
    case 'ColumnRef':
      return columnRefTaint(body, scope, ctx);
    case 'FuncCall':
      return funcCallTaint(body, scope, ctx);
    case 'SubLink':
      return subLinkTaint(body, scope, ctx);
    case 'CaseExpr':
      return caseTaint(body, scope, ctx);
    case 'A_Indirection':
      return indirectionTaint(body, scope, ctx);
    case 'A_Expr':
      return operatorTaint(body, scope, ctx);
    case 'TypeCast':
      return castTaint(body, scope, ctx);
    case 'XmlExpr':
    case 'XmlSerialize':
      return childrenTaint(body, scope, ctx, !xmlIsTotal(type, body));
    case 'JsonParseExpr':
    case 'JsonFuncExpr':
    case 'JsonObjectConstructor':
    case 'JsonObjectAgg':
      return childrenTaint(body, scope, ctx, sqlJsonMayFail(type, body));
    case 'SelectStmt': {
      const cols = analyzeQueryNode(node, scope, scope.ctes, ctx);
      return cols === null ? unknownTaint('a subquery whose columns cannot be named') : unionTaints(cols.map((c) => c.taint));
    }
    default:
      return childrenTaint(body, scope, ctx, false);
  }
}

/** The union of a node's children; a predicate (clause `error`) over it when the node `mayFail`. */
function childrenTaint(body: Body, scope: Scope, ctx: AnalysisContext, mayFail: boolean): Taint {
  const t = unionTaints(children(body).map((n) => exprTaint(n, scope, ctx)));
  if (mayFail) ctx.predicate(t, 'error');
  return t;
}

/** Operators that give a value for every value of their operands (comparisons, concatenation,
 *  json and array access and containment; `+` and `-` overflow only at their type's limits).
 *  Any other (`*` overflowing a smallint, `^`) may fail for some values: see TOTAL_FUNCTIONS in
 *  lineage-functions.ts. */
const TOTAL_OPERATORS = new Set(['||', '=', '<>', '!=', '<', '>', '<=', '>=', '+', '-', '->', '->>', '#>', '#>>', '@>', '<@', '?', '?|', '?&', '&&']);
/** Operators that fail only for some values of their right operand (a zero divisor, a pattern
 *  that is not valid); for the left one, division only at its type's limits (the smallest
 *  integer divided by -1). */
const RIGHT_FAILS = new Set(['/', '%', '~', '~*', '!~', '!~*', '~~', '~~*', '!~~', '!~~*']);

function operatorTaint(body: Body, scope: Scope, ctx: AnalysisContext): Taint {
  const left = exprTaint(body.lexpr, scope, ctx);
  const right = exprTaint(body.rexpr, scope, ctx);
  const names = strings(body.name);
  const op = names[names.length - 1] ?? '';
  switch (body.kind) {
    case 'AEXPR_OP':
    case 'AEXPR_OP_ANY':
    case 'AEXPR_OP_ALL':
      if (RIGHT_FAILS.has(op)) ctx.predicate(right, 'error');
      else if (!TOTAL_OPERATORS.has(op)) ctx.predicate(unionTaints([left, right]), 'error');
      break;
    case 'AEXPR_LIKE':
    case 'AEXPR_ILIKE':
    case 'AEXPR_SIMILAR':
      ctx.predicate(right, 'error'); // a pattern can be malformed; the string matched cannot
      break;
  }
  return unionTaints([left, right]);
}

/** Casts to the built-in text types give a value for every value; any other may fail
 *  (`substr(email, 3, 1)::int` fails unless that character is a digit). */
export const SHADOWABLE_TYPES: ReadonlySet<string> = new Set(['text', 'varchar', 'bpchar', 'name']);

/**
 * Whether a cast to `names` is to one of the built-in text types. Unqualified, the name may mean
 * another type: the session's temporary schema is searched for types before pg_catalog, and a
 * search_path may list another schema first (`CREATE DOMAIN pg_temp.text AS pg_catalog.text
 * CHECK (VALUE <> '700')` makes `credit_score::text` fail for one score). Defining types is
 * refused on a masking connection (lineage.ts); one that exists (the catalog) counts here.
 */
function castToText(names: string[], ctx: AnalysisContext): boolean {
  const target = names[names.length - 1] ?? '';
  if (!SHADOWABLE_TYPES.has(target)) return false;
  if (names.length === 1) return !ctx.env.schema.typeShadowed(target);
  return names.length === 2 && names[0] === 'pg_catalog';
}

function castTaint(body: Body, scope: Scope, ctx: AnalysisContext): Taint {
  const t = exprTaint(body.arg, scope, ctx);
  const names = strings((body.typeName as Body | undefined)?.names);
  const array = list((body.typeName as Body | undefined)?.arrayBounds).length > 0;
  if (array || !castToText(names, ctx)) ctx.predicate(t, 'error');
  return unionTaints([t]); // a cast is a computed value: partial and hash apply to a column's own
}

/** XML constructors escape what they are given. Parsing (XMLPARSE, IS DOCUMENT), a processing
 *  instruction (which may not hold `?>`), XMLROOT's version and serializing as a DOCUMENT fail for
 *  some values, and libxml's error DETAIL even quotes the text it could not parse:
 *  `xmlparse(content account_number || '&')` showed the account number in clear. */
const TOTAL_XML = new Set(['IS_XMLELEMENT', 'IS_XMLFOREST', 'IS_XMLCONCAT']);

function xmlIsTotal(type: string, body: Body): boolean {
  return type === 'XmlSerialize' ? body.xmloption !== 'XMLOPTION_DOCUMENT' : TOTAL_XML.has(String(body.op));
}

/** SQL/JSON (PostgreSQL 16 and later servers): JSON() parses its text, JSON_VALUE, JSON_QUERY and
 *  JSON_EXISTS evaluate a path (`strict $.score / ($.score - 700)` with ERROR ON ERROR), and
 *  WITH UNIQUE KEYS fails when two keys are equal: each may fail for some values. */
function sqlJsonMayFail(type: string, body: Body): boolean {
  return type === 'JsonParseExpr' || type === 'JsonFuncExpr' || body.unique === true;
}

/** Evaluate an expression that chooses rows and record the protected data it reads. */
export function predicateTaint(node: unknown, scope: Scope, ctx: AnalysisContext, clause: PredicateUse['clause']): Taint {
  const t = exprTaint(node, scope, ctx);
  ctx.predicate(t, clause);
  return t;
}

function columnRefTaint(body: Body, scope: Scope, ctx: AnalysisContext): Taint {
  const fields = list(body.fields);
  const star = fields.length > 0 && as(fields[fields.length - 1], 'A_Star') !== null;
  const names = strings(fields);
  return ctx.read(resolveReference(names, star, scope, ctx));
}

function unresolved(names: string[]): Taint {
  return unknownTaint(`column reference "${names.join('.')}" does not resolve to a column the gateway knows`);
}

function resolveReference(names: string[], star: boolean, scope: Scope, ctx: AnalysisContext): Taint {
  if (star) {
    if (names.length === 0) {
      const items = scope.items;
      return items.length === 0 ? unresolved(['*']) : unionTaints(items.map((i) => i.whole));
    }
    const item = qualifiedItem(names, scope);
    return item ? unionTaints([item.whole]) : unresolved([...names, '*']);
  }
  if (names.length === 1) {
    const name = names[0]!;
    const column = findColumn(scope, name);
    if (column) return column;
    const item = findItem(scope, name);
    return item ? unionTaints([item.whole]) : unresolved(names);
  }
  if (names.length === 2) {
    const [qualifier, column] = names as [string, string];
    const item = findItem(scope, qualifier);
    if (item) {
      const t = columnOf(item, column);
      if (t) return t;
      // PostgreSQL reads `c.f` with no column f as the call f(c) (functional notation).
      return callTaint(null, column, [unionTaints([item.whole])], 1, ctx);
    }
    // `a.b` with no relation a: field b of the composite column a.
    const composite = findColumn(scope, qualifier);
    return composite ? unionTaints([composite]) : unresolved(names);
  }
  // schema.table.column (or catalog.schema.table.column); else column.field.subfield.
  const column = names[names.length - 1]!;
  const item = findItem(scope, names[names.length - 2]!, names[names.length - 3]!);
  if (item) return columnOf(item, column) ?? unresolved(names);
  const viaAlias = findItem(scope, names[0]!);
  if (viaAlias) {
    const t = columnOf(viaAlias, names[1]!);
    if (t) return unionTaints([t]);
  }
  return unresolved(names);
}

function qualifiedItem(names: string[], scope: Scope) {
  if (names.length === 1) return findItem(scope, names[0]!);
  return findItem(scope, names[names.length - 1]!, names[names.length - 2]!);
}

function funcCallTaint(body: Body, scope: Scope, ctx: AnalysisContext): Taint {
  const names = strings(body.funcname);
  const name = names[names.length - 1] ?? '';
  const schema = names.length > 1 ? names[names.length - 2]! : null;
  const args = list(body.args);
  const argTaints = args.map((a) => exprTaint(a, scope, ctx));
  if (body.agg_filter) predicateTaint(body.agg_filter, scope, ctx, 'filter');
  // count(DISTINCT credit_score) over two customers says whether their scores are equal.
  if (body.agg_distinct) ctx.predicate(unionTaints(argTaints), 'distinct');
  const orderTaints = list(body.agg_order).map((s) => exprTaint(as(s, 'SortBy')?.node ?? s, scope, ctx));
  // WITHIN GROUP (ORDER BY x): the ordered values are what percentile_disc / mode return.
  const resultTaints = body.agg_within_group ? [...argTaints, ...orderTaints] : argTaints;
  if (!body.agg_within_group) for (const t of orderTaints) ctx.predicate(t, 'order_by');
  if (body.over) windowTaint(body.over, scope, ctx);
  const counting = catalogName(schema, name) !== null && COUNTING_AGGREGATES.has(name);
  if (counting) {
    // count(x) reveals how many x are not null. An expression inside (count(CASE WHEN ssn ...))
    // chooses which rows count: a predicate.
    const plain = body.agg_star || args.every((a) => as(a, 'ColumnRef') !== null);
    if (!plain) ctx.predicate(unionTaints(argTaints), 'other');
    callTaint(schema, name, argTaints, args.length, ctx);
    return clearTaint();
  }
  if (catalogName(schema, name) === 'set_config') settingName(args[0], ctx);
  // A set-returning function's arguments decide how many rows there are: count(*) over
  // generate_series(1, credit_score) would show the score in clear.
  if (ctx.env.schema.returnsSet(schema, name)) ctx.predicate(unionTaints(argTaints), 'rows');
  // A builtin that may fail for some protected values tells them apart by failing
  // (TOTAL_FUNCTIONS). Other functions are refused unless the operator vouches for them whole.
  if (ctx.env.schema.functionKind(schema, name) === 'builtin') {
    ctx.predicate(unionTaints(argTaints.filter((t, i) => !isClear(t) && !totalAt(schema, name, i))), 'error');
  }
  return callTaint(schema, name, resultTaints, args.length, ctx);
}

/** set_config of a setting that steers the plan, named by a literal. A name the statement
 *  computes is not checked: pg_dump sets one that way (`set_config(name, …) FROM pg_settings
 *  WHERE name = 'restrict_nonsystem_relation_kind'`), so refusing would refuse pg_dump. */
function settingName(arg: unknown, ctx: AnalysisContext): void {
  const name = as(arg, 'A_Const')?.sval as Body | undefined;
  const refusal = typeof name?.sval === 'string' ? plannerSettingRefusal(name.sval) : null;
  if (refusal !== null) ctx.refuse(refusal);
}

/** A function applied to values: refused per the function rules, else the union of its inputs. */
export function callTaint(schema: string | null, name: string, inputs: Taint[], argCount: number, ctx: AnalysisContext): Taint {
  const t = unionTaints(inputs);
  const refusal = functionRefusal(ctx.env, schema, name, t, argCount);
  if (refusal !== null) ctx.refuse(refusal);
  return t;
}

export function windowTaint(node: unknown, scope: Scope, ctx: AnalysisContext): void {
  const w = as(node, 'WindowDef') ?? (node as Body);
  for (const p of list(w.partitionClause)) predicateTaint(p, scope, ctx, 'window');
  for (const s of list(w.orderClause)) predicateTaint(as(s, 'SortBy')?.node ?? s, scope, ctx, 'window');
  if (w.startOffset) predicateTaint(w.startOffset, scope, ctx, 'window');
  if (w.endOffset) predicateTaint(w.endOffset, scope, ctx, 'window');
}

function subLinkTaint(body: Body, scope: Scope, ctx: AnalysisContext): Taint {
  const cols = analyzeQueryNode(body.subselect, scope, scope.ctes, ctx);
  const inner = cols === null ? unknownTaint('a subquery whose columns cannot be named') : unionTaints(cols.map((c) => c.taint));
  switch (body.subLinkType) {
    case 'EXISTS_SUBLINK':
      // Whether rows exist: its WHERE was recorded as a predicate inside.
      return clearTaint();
    case 'EXPR_SUBLINK':
      // A scalar subquery passes its one value on unchanged.
      return cols !== null && cols.length === 1 ? branchTaint([cols[0]!.taint]) : inner;
    case 'ARRAY_SUBLINK':
      return inner;
    default:
      return unionTaints([exprTaint(body.testexpr, scope, ctx), inner]);
  }
}

function caseTaint(body: Body, scope: Scope, ctx: AnalysisContext): Taint {
  const parts: Taint[] = [];
  // The conditions choose which branch runs (and so which side effects, and when).
  if (body.arg) parts.push(predicateTaint(body.arg, scope, ctx, 'case'));
  for (const w of list(body.args)) {
    const when = as(w, 'CaseWhen');
    if (!when) {
      parts.push(exprTaint(w, scope, ctx));
      continue;
    }
    parts.push(predicateTaint(when.expr, scope, ctx, 'case'));
    parts.push(exprTaint(when.result, scope, ctx));
  }
  if (body.defresult) parts.push(exprTaint(body.defresult, scope, ctx));
  return unionTaints(parts);
}

function indirectionTaint(body: Body, scope: Scope, ctx: AnalysisContext): Taint {
  const ind = list(body.indirection);
  const ref = as(body.arg, 'ColumnRef');
  const field = ind.length === 1 ? as(ind[0], 'String')?.sval : undefined;
  if (ref && typeof field === 'string') {
    // (c).col where c is a FROM item: that column, unchanged.
    const names = strings(ref.fields);
    const item = names.length === 1 && findColumn(scope, names[0]!) === undefined ? findItem(scope, names[0]!) : undefined;
    const t = item ? columnOf(item, field) : undefined;
    if (t) return ctx.read(t);
  }
  return unionTaints([exprTaint(body.arg, scope, ctx), ...ind.map((i) => exprTaint(i, scope, ctx))]);
}
