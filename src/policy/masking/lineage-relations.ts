/**
 * The taint of each column of a table or view. A table column is its rule's protected source
 * (or clear); a view column is whatever its definition's output carries, views of views
 * followed recursively. Memoised per schema snapshot, rule set and trust list (a reload or a
 * catalog refresh brings new objects, so stale answers cannot survive them).
 */
import type { AnalysisEnv, MaskRule, PredicateUse, RelationInfo, SchemaView, Taint } from './types.js';
import { as } from './lineage-node.js';
import { copyTaint, directTaint, isClear, unknownTaint } from './lineage-taint.js';
import { AnalysisContext } from './lineage-scope.js';
import { analyzeQueryNode } from './lineage-select.js';
import { parseSql } from './parse.js';

/** What reading a relation implies, besides its columns' taint: a view's own refusals (a
 *  function it calls, pg_stats it reads), the predicates its definition applies, and whether it
 *  reads protected data at all. */
export interface RelationFacts {
  taints: Taint[];
  refusals: string[];
  predicates: PredicateUse[];
  touches: boolean;
}

type Memo = Map<number, RelationFacts>;
const memo = new WeakMap<object, WeakMap<object, WeakMap<object, Memo>>>();
const inProgress = new WeakMap<Memo, Set<number>>();

function memoFor(env: AnalysisEnv): Memo {
  let byRules = memo.get(env.schema);
  if (!byRules) memo.set(env.schema, (byRules = new WeakMap()));
  let byTrust = byRules.get(env.protection);
  if (!byTrust) byRules.set(env.protection, (byTrust = new WeakMap()));
  let m = byTrust.get(env.trusted);
  if (!m) byTrust.set(env.trusted, (m = new Map()));
  return m;
}

/** Per live column, in attnum order. */
export function relationTaints(rel: RelationInfo, env: AnalysisEnv): Taint[] {
  return relationFacts(rel, env).taints.map(copyTaint);
}

/** What the named columns of a relation may hold (names it lacks are left out). */
export function columnTaints(rel: RelationInfo, names: readonly string[], env: AnalysisEnv): Taint[] {
  if (names.length === 0) return [];
  const taints = relationFacts(rel, env).taints;
  return rel.columns.flatMap((c, i) => (names.includes(c.name) && taints[i] ? [taints[i]] : []));
}

export function relationFacts(rel: RelationInfo, env: AnalysisEnv): RelationFacts {
  const m = memoFor(env);
  const known = m.get(rel.oid);
  if (known) return known;
  let active = inProgress.get(m);
  if (!active) inProgress.set(m, (active = new Set()));
  if (active.has(rel.oid)) {
    const reason = `view ${rel.schema}.${rel.name} is defined in terms of itself`;
    return { taints: rel.columns.map(() => unknownTaint(reason)), refusals: [], predicates: [], touches: true };
  }
  active.add(rel.oid);
  try {
    const facts = computeFacts(rel, env);
    m.set(rel.oid, facts);
    return facts;
  } finally {
    active.delete(rel.oid);
  }
}

function ownTaint(rel: RelationInfo, column: string, env: AnalysisEnv): Taint | null {
  const rule = columnRule(rel, column, env);
  return rule ? directTaint(`${rel.schema}.${rel.name}.${column}`, rule) : null;
}

/**
 * The rule that protects a relation's column: its own, or else that of the same column of a table
 * it is a partition of or inherits from, at any depth. A partition holds the parent's rows, so
 * `SELECT ssn FROM customers_2024` is masked by a rule on `customers.ssn`.
 */
export function columnRule(rel: RelationInfo, column: string, env: AnalysisEnv): MaskRule | null {
  const own = env.protection(rel.schema, rel.name, column);
  if (own !== null || !rel.parents) return own;
  for (const parent of ancestorsOf(rel, env.schema)) {
    const rule = env.protection(parent.schema, parent.name, column);
    if (rule !== null) return rule;
  }
  return null;
}

/** The tables a relation is a partition of or inherits from, nearest first, at any depth (each once). */
export function ancestorsOf(rel: RelationInfo, schema: SchemaView, seen: Set<number> = new Set([rel.oid])): RelationInfo[] {
  const out: RelationInfo[] = [];
  for (const oid of rel.parents ?? []) {
    const parent = seen.has(oid) ? undefined : schema.relationByOid(oid);
    if (!parent) continue;
    seen.add(oid);
    out.push(parent, ...ancestorsOf(parent, schema, seen));
  }
  return out;
}

const SYSTEM_SCHEMAS = new Set(['pg_catalog', 'information_schema']);

/** Its partitions and the tables that inherit from it, at any depth (each once). */
export function descendantsOf(rel: RelationInfo, schema: SchemaView, seen: Set<number> = new Set([rel.oid])): RelationInfo[] {
  const out: RelationInfo[] = [];
  for (const oid of rel.children ?? []) {
    const child = seen.has(oid) ? undefined : schema.relationByOid(oid);
    if (!child) continue;
    seen.add(oid);
    out.push(child, ...descendantsOf(child, schema, seen));
  }
  return out;
}

/**
 * A table column: its own rule (or an ancestor's), else those of the same column in the tables
 * that inherit from it or are its partitions. Reading a parent reads its children's rows under
 * the parent's names, so `SELECT ssn FROM p` shows customers' SSNs once customers inherits from p.
 * One rule: masked as that column is; several: as a value derived from all of them.
 */
function tableColumnTaint(rel: RelationInfo, column: string, env: AnalysisEnv, descendants: RelationInfo[]): Taint {
  const own = ownTaint(rel, column, env);
  if (own !== null) return own;
  const sources = descendants.flatMap((d) => {
    const rule = d.columns.some((c) => c.name === column) ? columnRule(d, column, env) : null; // its other parents' rules too
    return rule ? [{ column: `${d.schema}.${d.name}.${column}`, rule }] : [];
  });
  return { sources, direct: new Set(sources.map((x) => x.rule)).size === 1, unknown: null };
}

function computeFacts(rel: RelationInfo, env: AnalysisEnv): RelationFacts {
  if (rel.kind !== 'view' && rel.kind !== 'matview') {
    const descendants = descendantsOf(rel, env.schema);
    return { taints: rel.columns.map((c) => tableColumnTaint(rel, c.name, env, descendants)), refusals: [], predicates: [], touches: false };
  }
  if (rel.definition === undefined) {
    // The catalog read skipped it (its locks were held): what it shows is not known.
    const why = `hoop could not read the definition of view ${rel.schema}.${rel.name}`;
    return { taints: rel.columns.map((c) => ownTaint(rel, c.name, env) ?? { sources: [], direct: false, unknown: why }), refusals: [], predicates: [], touches: true };
  }
  const ctx = new AnalysisContext(env);
  const fromDefinition = definitionTaints(rel, ctx);
  // A rule naming the view's own column protects it too (its definition may hide the source).
  const taints = rel.columns.map((c, i) => {
    const t = fromDefinition[i]!;
    return isClear(t) ? (ownTaint(rel, c.name, env) ?? t) : t;
  });
  // The catalog's views (pg_catalog, information_schema) are the server's own code: the ones that
  // show values (pg_stats, pg_stat_activity) are refused by name (lineage-functions.ts
  // VALUE_HOLDING_RELATIONS), not for the functions inside them (pg_stat_ssl shares one with
  // pg_stat_activity; information_schema.columns, which BI tools read, calls information_schema's own).
  const refusals = SYSTEM_SCHEMAS.has(rel.schema) ? [] : ctx.refusals;
  return { taints, refusals, predicates: ctx.predicates, touches: ctx.touches || taints.some((t) => !isClear(t)) };
}

function definitionTaints(rel: RelationInfo, ctx: AnalysisContext): Taint[] {
  const unknown = (why: string) => rel.columns.map(() => unknownTaint(`view ${rel.schema}.${rel.name}: ${why}`));
  let stmts: unknown[];
  try {
    stmts = (parseSql(rel.definition!).stmts ?? []).map((s) => s.stmt);
  } catch (err) {
    return unknown(`its definition does not parse (${err instanceof Error ? err.message : String(err)})`);
  }
  const stmt = stmts.length === 1 ? stmts[0] : undefined;
  if (!as(stmt, 'SelectStmt')) return unknown('its definition is not a single query');
  const cols = analyzeQueryNode(stmt, null, null, ctx);
  if (cols === null || cols.length !== rel.columns.length) return unknown('the columns of its definition cannot be named');
  return cols.map((c) => c.taint);
}
