/**
 * Which configured access rule decides a query (issue 8). Pure.
 *
 * - A rule applies to a caller when it names no groups or one of the caller's groups.
 * - Per statement, the first applying rule whose every condition holds decides; none: allow.
 *   A statement's `nested` writes (a DELETE inside a CTE) are decided the same way, as statements
 *   of their own.
 * - Over the statements of a query string, the strictest action wins (deny > require_approval >
 *   allow); among equals, the first.
 * - Code a statement runs or defines is read (code.ts): what a DO block or a function body runs is
 *   in `nested`; what cannot be read (dynamic SQL, CALL) makes the statement `opaque`, decided by
 *   the strictest rule that could apply to it (decideOpaque).
 * - An unparseable text gets the strictest action any rule applying to the caller names (so never
 *   allow while a stricter rule exists); with no rule applying at all, allow.
 * - `estimated_rows` applies to the kinds EXPLAIN can estimate (ESTIMATED_KINDS); for those, a
 *   missing estimate (null) counts as matching a lower bound (`>`, `>=`) and never an upper one
 *   (`<`, `<=`): a rule meant to hold big reads holds the ones
 *   whose size is unknown, and so do the ones that collect rows into values (`collects`: one row
 *   of `string_agg` can be a whole table). Other kinds (BEGIN, SET, DDL) have no rows and never
 *   match it.
 * - `aggregates: false` matches what does not summarize (`summarizes`); `aggregates: true` any
 *   aggregate or window call anywhere: each fails closed for the rule that names it.
 * - `tables`: a pattern without a dot (`customers`, `cust*`) matches that table name in any
 *   schema; `bank.customers` matches `bank.customers` and also an unqualified `customers`,
 *   which the search_path may resolve to bank (failing closed). `*` and `?` are globs.
 */
import { compileGlob } from '../masking/rules.js';
import type { Classification } from './classify.js';
import type { RiskAction, RiskRule, RuleCondition, StatementKind } from './types.js';

export interface RuleDecision {
  action: RiskAction;
  /** The rule that decided; null when none did (allowed by default). */
  rule: string | null;
  /** For people: which rule and why, e.g. `rule full-export: select on customers without WHERE`. */
  reason: string;
}

/** The kinds whose statements EXPLAIN estimates: only these are given an estimate, and only
 *  these can match `estimated_rows`. */
export const ESTIMATED_KINDS: ReadonlySet<StatementKind> = new Set(['select', 'insert', 'update', 'delete', 'merge', 'copy_out']);

const SEVERITY: Record<RiskAction, number> = { allow: 0, require_approval: 1, deny: 2 };

/** Rules that apply to a caller in these groups, in order. */
export function rulesFor(rules: readonly RiskRule[], callerGroups: readonly string[]): RiskRule[] {
  return rules.filter((r) => r.groups === null || r.groups.some((g) => callerGroups.includes(g)));
}

export function decide(statements: Classification[] | null, rules: RiskRule[], callerGroups: string[], estimate: (i: number) => number | null): RuleDecision {
  const applying = rulesFor(rules, callerGroups);
  if (statements === null) return unparseable(applying);
  let best: RuleDecision | null = null;
  statements.forEach((statement, i) => {
    const where = statements.length > 1 ? ` (statement ${i + 1} of ${statements.length})` : '';
    const units: [Classification, number | null][] = [[statement, estimate(i)], ...statement.nested.map((n): [Classification, null] => [n, null])];
    for (const [unit, rows] of units) {
      const d = decideOne(unit, applying, rows);
      if (d && (best === null || SEVERITY[d.action] > SEVERITY[best.action])) best = { ...d, reason: d.reason + where };
    }
  });
  return best ?? { action: 'allow', rule: null, reason: applying.length === 0 ? 'no access rule applies to you' : 'no access rule matches' };
}

/** The kinds whose rows come back to the client, where a cap can stop them. */
const RETURNING_KINDS: ReadonlySet<StatementKind> = new Set(['select', 'copy_out']);

/**
 * A planner estimate is a guess, and one a statement can steer: `WHERE id % 1 = 0` is estimated
 * at half a percent of the rows and returns all of them. For a read the rules let run on its
 * estimate, but would hold or deny on a larger one (`estimated_rows: ">500"`), the number of rows
 * it may return: the caller caps the result there, so a result longer than its estimate said is
 * stopped, not passed. null: no rule would. Writes are not capped (their rows are done, not
 * returned): for them the estimate decides alone. A cursor's or a prepared statement's rows come
 * back later, from FETCH or EXECUTE: for those `deferred` is set, and the caller caps a cursor's
 * FETCHes (statement-policy.ts) and lets the rule decide a prepared statement as if its estimate
 * were over the bound.
 */
export function estimateCap(statements: Classification[] | null, rules: RiskRule[], callerGroups: string[]): EstimateCap | null {
  if (statements === null || statements.length !== 1 || !RETURNING_KINDS.has(statements[0]!.kind)) return null;
  const s = statements[0]!;
  for (const rule of rulesFor(rules, callerGroups)) {
    // The first rule that would decide the statement, were it as large as can be.
    if (matches(rule.when, s, Number.MAX_SAFE_INTEGER) === null) continue;
    const bound = rule.when.estimated_rows;
    if (rule.action === 'allow' || !bound || (bound.op !== '>' && bound.op !== '>=')) return null;
    return { rows: bound.op === '>' ? bound.value : Math.max(0, bound.value - 1), rule: rule.name, action: rule.action, deferred: s.deferred === true };
  }
  return null;
}

export interface EstimateCap { rows: number; rule: string; action: RiskAction; deferred: boolean }

function unparseable(applying: RiskRule[]): RuleDecision {
  if (applying.length === 0) return { action: 'allow', rule: null, reason: 'the statement could not be parsed, and no access rule applies to you' };
  const strictest = applying.reduce((a, b) => (SEVERITY[b.action] > SEVERITY[a.action] ? b : a));
  return {
    action: strictest.action,
    rule: strictest.name,
    reason: `rule ${strictest.name}: the statement could not be parsed, so the strictest rule that applies to you decides (${strictest.action})`,
  };
}

function decideOne(s: Classification, applying: RiskRule[], rows: number | null): RuleDecision | null {
  if (s.opaque !== undefined) return decideOpaque(s, s.opaque, applying, rows);
  for (const rule of applying) {
    const why = matches(rule.when, s, rows);
    if (why !== null) return { action: rule.action, rule: rule.name, reason: `rule ${rule.name}: ${why}` };
  }
  return null;
}

/**
 * A statement that runs code hoop cannot read could be any statement: every rule up to the first
 * that matches it as it is (`kind: [utility]` for a DO block or CALL) might be the one that
 * decides what its code does, so the strictest of them does. An `allow` rule that matches it
 * first (for a group trusted to run code) lets it run.
 */
function decideOpaque(s: Classification, why: string, applying: RiskRule[], rows: number | null): RuleDecision | null {
  let strictest: RiskRule | null = null;
  for (const rule of applying) {
    if (strictest === null || SEVERITY[rule.action] > SEVERITY[strictest.action]) strictest = rule;
    if (matches(rule.when, s, rows) !== null) break;
  }
  if (strictest === null) return null;
  return { action: strictest.action, rule: strictest.name, reason: `rule ${strictest.name}: ${why}, so the strictest rule that could apply to what it runs decides (${strictest.action})` };
}

/** How the statement meets every condition (`select on customers without WHERE`), or null when it does not. */
export function matches(when: RuleCondition, s: Classification, rows: number | null): string | null {
  const terms: string[] = [s.kind];
  if (when.kind && !when.kind.includes(s.kind)) return null;
  if (when.tables) {
    const hit = s.tables.filter((t) => when.tables!.some((p) => tableMatches(p, t)));
    if (hit.length === 0) return null;
    terms.push(`on ${hit.join(', ')}`);
  }
  const flags: [keyof RuleCondition & keyof Classification, string, string][] = [
    ['where', 'with WHERE', 'without WHERE'],
    ['limit', 'with LIMIT', 'without LIMIT'],
    ['joins', 'with a join', 'without joins'],
    ['aggregates', 'with aggregates', 'without aggregates'],
  ];
  for (const [key, yes, no] of flags) {
    const want = when[key];
    if (want === undefined) continue;
    // `aggregates: false` spares summaries only: what keeps or collects rows is not one.
    const has = key === 'aggregates' && !want ? s.summarizes : s[key];
    if (has !== want) return null;
    terms.push(want ? yes : key === 'aggregates' && s.aggregates ? 'not summarizing its rows' : no);
  }
  if (when.protected_columns !== undefined) {
    const reads = s.protectedColumns.length > 0;
    if (reads !== when.protected_columns) return null;
    terms.push(reads ? `reading protected columns (${s.protectedColumns.join(', ')})` : 'reading no protected column');
  }
  if (when.estimated_rows) {
    const { op, value } = when.estimated_rows;
    if (!ESTIMATED_KINDS.has(s.kind)) return null;
    // An unknown size counts as a large one, never as a small one (an allow for small reads).
    const unknown = s.collects || rows === null;
    if (unknown && op !== '>' && op !== '>=') return null;
    // One row can hold a whole table: no estimate of its rows measures it.
    if (s.collects) terms.push(`collecting rows into values (counted as ${op} ${value})`);
    else if (rows === null) terms.push(`with no row estimate (counted as ${op} ${value})`);
    else if (compare(rows, op, value)) terms.push(`estimated at ${rows} rows (${op} ${value})`);
    else return null;
  }
  return terms.join(' ');
}

function compare(rows: number, op: '>' | '>=' | '<' | '<=', value: number): boolean {
  switch (op) {
    case '>': return rows > value;
    case '>=': return rows >= value;
    case '<': return rows < value;
    case '<=': return rows <= value;
  }
}

const compiled = new Map<string, { schema: RegExp | null; name: RegExp }>();

/** Whether a `tables` pattern matches a table as the statement names it (see the file comment). */
export function tableMatches(pattern: string, table: string): boolean {
  let p = compiled.get(pattern);
  if (!p) {
    const dot = pattern.indexOf('.');
    p = dot < 0 ? { schema: null, name: compileGlob(pattern) } : { schema: compileGlob(pattern.slice(0, dot)), name: compileGlob(pattern.slice(dot + 1)) };
    if (compiled.size > 1000) compiled.clear();
    compiled.set(pattern, p);
  }
  const dot = table.indexOf('.');
  const schema = dot < 0 ? null : table.slice(0, dot);
  const name = dot < 0 ? table : table.slice(dot + 1);
  if (!p.name.test(name)) return false;
  return p.schema === null || schema === null || p.schema.test(schema);
}
