/**
 * INSERT, UPDATE, DELETE and MERGE: what they return (RETURNING), which rows they choose
 * (predicates), and whether they write protected data where it would be shown with less masking
 * than its own rules give it (refused): into a column no rule protects, or into one whose mask
 * shows more of what it holds (a `partial` or `hash` column given another column's values, or a
 * value computed from protected data). Reading the column later applies the column's mask to
 * whatever was written, so `UPDATE t SET ssn = substr(email, 5)` would show four characters of
 * each email through `ssn`'s partial mask, and a hashed column filled with `substr(ssn, 1, 1)`
 * would be a ten-token dictionary of first digits.
 */
import { as, list, type Body } from './lineage-node.js';
import { clearTaint, combineColumns, describeTaint, isClear, unionTaints, unknownTaint } from './lineage-taint.js';
import { itemFromColumns, openItem, type AnalysisContext, type Col, type CteFrame, type RangeItem, type Scope } from './lineage-scope.js';
import { exprTaint, predicateTaint } from './lineage-expr.js';
import { analyzeQueryNode, buildCtes, targetColumns } from './lineage-select.js';
import { fromClause, rangeVarItem } from './lineage-from.js';
import { columnRule, columnTaints, relationFacts } from './lineage-relations.js';
import { keptCharacters } from './rules.js';
import type { MaskRule, RelationInfo, Taint } from './types.js';

interface WriteTarget {
  item: RangeItem;
  label: string;
  /** Its columns in order (for INSERT without a column list); null when unknown. */
  columns: string[] | null;
  /** Every column name of every relation the name may mean. */
  everyColumn: string[];
  /** The rules that mask `column` in each relation the name may mean (an empty list where none does). */
  rules(column: string): MaskRule[][];
  /** In some relation the name may mean, a CHECK constraint or a key reads `column`, or its type
   *  is a domain: they run on every value written there. */
  checked(column: string): boolean;
  /** What the values other rows hold in `column` may be, where a key compares what is written
   *  there with them: the column's protection (clear where no key reads it). */
  keyedValues(column: string): Taint;
  /** What CHECK constraints read of an updated row, whatever is assigned: the protected columns they name. */
  rowChecked: Taint;
  /** What a FOREIGN KEY on `column` looks what is written up among: the referenced column's protection. */
  referencedValues(column: string): Taint;
}

function writeTarget(relation: Body, level: Scope, ctx: AnalysisContext): WriteTarget {
  const rv = as(relation, 'RangeVar') ?? relation;
  const schema = typeof rv.schemaname === 'string' ? rv.schemaname : null;
  const name = String(rv.relname ?? '');
  const rels = ctx.env.schema.relations(schema, name);
  const first = rels[0]?.columns.map((c) => c.name) ?? null;
  const sameShape = first !== null && rels.every((r) => r.columns.length === first.length && r.columns.every((c, i) => c.name === first[i]));
  return {
    item: rangeVarItem(rv, level, ctx),
    label: schema === null ? name : `${schema}.${name}`,
    columns: sameShape ? first : null,
    everyColumn: [...new Set(rels.flatMap((r) => r.columns.map((c) => c.name)))],
    // A rule on the column itself and, through an updatable view, the rule of the protected
    // column it shows unchanged (where the value lands, read there with that rule).
    rules: (column) =>
      rels.map((rel) => {
        const own = columnRule(rel, column, ctx.env);
        const i = rel.columns.findIndex((c) => c.name === column);
        const t = i >= 0 ? relationFacts(rel, ctx.env).taints[i] : undefined;
        const shown = t !== undefined && t.direct && t.sources.length === 1 && t.unknown === null ? t.sources[0]!.rule : null;
        return [own, shown].filter((r): r is MaskRule => r !== null);
      }),
    checked: (column) => rels.some((rel) => rel.checks?.includes(column) || rel.keys?.includes(column) || rel.columns.some((c) => c.name === column && c.domain === true)),
    keyedValues: (column) => unionTaints(rels.flatMap((rel) => columnTaints(rel, rel.keys?.includes(column) ? [column] : [], ctx.env))),
    rowChecked: unionTaints(rels.flatMap((rel) => columnTaints(rel, rel.checks ?? [], ctx.env))),
    referencedValues: (column) => referencedValues(rels, column, ctx),
  };
}

/** COPY FROM STDIN loads values of the client's own into the named columns (every one when none
 *  is named): each checked as a write of a clear value is. */
export function loadOwnValues(relation: Body, named: string[], ctx: AnalysisContext): void {
  const target = writeTarget(relation, { items: [], parent: null, ctes: null }, ctx);
  for (const column of named.length > 0 ? named : target.everyColumn) checkWrite(target, column, clearTaint(), 'COPY FROM', ctx);
}

/** The protection of the columns a FOREIGN KEY on `column` references, in any of `rels`. */
function referencedValues(rels: RelationInfo[], column: string, ctx: AnalysisContext): Taint {
  return unionTaints(rels.flatMap((rel) => (rel.references ?? []).filter((r) => r.column === column).flatMap((r) => {
    const referenced = ctx.env.schema.relationByOid(r.relation);
    return referenced ? columnTaints(referenced, [r.referenced], ctx.env) : [];
  })));
}

function checkWrite(target: WriteTarget, column: string | undefined, taint: Taint, verb: string, ctx: AnalysisContext): void {
  if (isClear(taint)) {
    if (column === undefined) return;
    if (target.rules(column).flat().some((r) => r.method === 'hash')) ctx.refuse(chosenTokens(verb, `${target.label}.${column}`));
    // A value of the statement's own in a keyed protected column is compared with the protected
    // values there, and one in a FOREIGN KEY column is looked up among the referenced ones:
    // whether the write fails (or ON CONFLICT skips it) says if a guess is one.
    ctx.predicate(unionTaints([target.keyedValues(column), target.referencedValues(column)]), 'check');
    return;
  }
  // Whether the write fails would tell the values apart: a CHECK (account_number <> '…') on a
  // table of one's own, or a domain's, is a predicate over them, and a unique key compares them
  // with the values there (a guessed email inserted first, then the real ones).
  if (column !== undefined && target.checked(column)) ctx.predicate(taint, 'check');
  const refuse = (where: string) => ctx.refuse(`${verb} would write protected data (${describeTaint(taint)}) into ${where}`);
  if (column === undefined) return refuse(`a column of ${target.label} the gateway cannot name`);
  const rules = target.rules(column);
  if (rules.length === 0 || rules.some((r) => r.length === 0)) return refuse(`${target.label}.${column}, which no masking rule protects`);
  for (const rule of rules.flat()) {
    const why = showsMore(rule, taint);
    if (why !== null) return refuse(`${target.label}.${column}, whose ${rule.method} mask ${why}`);
  }
}

/** Values of the statement's own choosing in a hash column: reading them back gives their tokens,
 *  a dictionary for the values the column protects (a credit score has some 550). */
export function chosenTokens(verb: string, column: string): string {
  return `${verb} would write values of its own into ${column}, whose hash mask would then show their tokens: a dictionary for the values it protects (write it as a member of an exempt group)`;
}

/**
 * Why a column masked by `target` would show more of a value of `taint` than that value's own
 * rules do, or null when it would not. `redact` and `null` show nothing of anything. `hash` shows
 * which values are equal, which for another column's values (or a few characters of them) makes
 * a dictionary; `partial` shows the last characters of whatever the column holds.
 */
function showsMore(target: MaskRule, taint: Taint): string | null {
  if (target.method === 'redact' || target.method === 'null') return null;
  const source = taint.direct && taint.sources.length === 1 && taint.unknown === null ? taint.sources[0]!.rule : null;
  if (source === null) return `would show part of a value computed from protected data (${target.method} applies to a column's own values)`;
  if (target.method === 'hash') return source.method === 'hash' ? null : `would show which values are equal, where ${source.column}'s ${source.method} mask does not`;
  const keep = keptCharacters(target);
  if (source.method === 'partial' && keptCharacters(source) >= keep) return null;
  return `would show the last ${keep} characters, where ${source.column}'s ${source.method} mask ${source.method === 'partial' ? `shows ${keptCharacters(source)}` : 'shows none'}`;
}

/** The value a SET assigns, including `(a, b) = (SELECT ...)`. */
function assignedTaint(val: unknown, level: Scope, ctx: AnalysisContext): Taint {
  const multi = as(val, 'MultiAssignRef');
  if (!multi) return exprTaint(val, level, ctx);
  const n = Number(multi.colno) - 1;
  const sub = as(multi.source, 'SubLink');
  if (sub) {
    const cols = analyzeQueryNode(sub.subselect, level, level.ctes, ctx);
    return cols?.[n]?.taint ?? unknownTaint('a multiple-column assignment whose columns cannot be named');
  }
  const row = as(multi.source, 'RowExpr');
  if (row) return exprTaint(list(row.args)[n], level, ctx);
  return exprTaint(multi.source, level, ctx);
}

function assignments(targets: unknown[], target: WriteTarget, level: Scope, verb: string, ctx: AnalysisContext): void {
  // An updated row's CHECK constraints run again: the protected columns they read count, whatever is assigned.
  if (targets.length > 0) ctx.predicate(target.rowChecked, 'check');
  for (const t of targets) {
    const rt = as(t, 'ResTarget');
    if (!rt) continue;
    checkWrite(target, typeof rt.name === 'string' ? rt.name : undefined, assignedTaint(rt.val, level, ctx), verb, ctx);
  }
}

/** RETURNING over the target (also as `old` / `new`) and the other FROM items. */
function returning(body: Body, target: WriteTarget, level: Scope, ctx: AnalysisContext): Col[] | null {
  const exprs = list((body.returningClause as Body | undefined)?.exprs ?? body.returningList);
  if (exprs.length === 0) return [];
  const alias = (item: RangeItem, name: string): RangeItem => (item.star ? itemFromColumns(name, null, item.star) : openItem(name, item.whole));
  // `old` / `new` qualify only: an unqualified name means the target's column.
  const oldNew: Scope = { items: [alias(target.item, 'old'), alias(target.item, 'new')], parent: level.parent, ctes: level.ctes };
  const scope: Scope = { items: level.items, parent: oldNew, ctes: level.ctes };
  // `*` is every FROM item's columns, the target's first (merged USING columns have no name).
  const items = level.items.filter((i) => i.name !== null);
  const star = items.some((i) => i.star === null) ? null : items.flatMap((i) => i.star!);
  let cols: Col[] | null = [];
  for (const e of exprs) {
    const more = targetColumns(e, scope, star, ctx);
    cols = cols === null || more === null ? null : [...cols, ...more];
  }
  return cols;
}

export function analyzeDml(type: string, body: Body, outer: Scope | null, ctes: CteFrame | null, ctx: AnalysisContext): Col[] | null {
  const frame = body.withClause ? buildCtes(body.withClause as Body, outer, ctes, ctx) : ctes;
  const level: Scope = { items: [], parent: outer, ctes: frame };
  const target = writeTarget(body.relation as Body, level, ctx);
  level.items.push(target.item);
  switch (type) {
    case 'InsertStmt':
      insert(body, target, outer, frame, ctx);
      break;
    case 'UpdateStmt':
      fromClause(list(body.fromClause), level, ctx);
      assignments(list(body.targetList), target, level, 'UPDATE', ctx);
      if (body.whereClause) predicateTaint(body.whereClause, level, ctx, 'where');
      break;
    case 'DeleteStmt':
      fromClause(list(body.usingClause), level, ctx);
      if (body.whereClause) predicateTaint(body.whereClause, level, ctx, 'where');
      break;
    case 'MergeStmt':
      merge(body, target, level, ctx);
      break;
  }
  return returning(body, target, level, ctx);
}

function insert(body: Body, target: WriteTarget, outer: Scope | null, frame: CteFrame | null, ctx: AnalysisContext): void {
  const named = list(body.cols).map((c) => as(c, 'ResTarget')?.name).filter((n): n is string => typeof n === 'string');
  const columns = named.length > 0 ? named : target.columns;
  const written = insertedColumns(body.selectStmt, outer, frame, ctx);
  if (written === null) {
    checkWrite(target, undefined, unknownTaint('an INSERT source whose columns cannot be named'), 'INSERT', ctx);
  } else {
    written.forEach((c, i) => checkWrite(target, columns?.[i], c.taint, 'INSERT', ctx));
  }
  const conflict = body.onConflictClause as Body | undefined;
  if (!conflict) return;
  // EXCLUDED is the row proposed for insertion.
  const excludedCols = (target.item.star ?? []).map((c) => {
    const i = columns?.indexOf(c.name) ?? -1;
    return { name: c.name, taint: unionTaints([c.taint, written?.[i]?.taint ?? (written === null ? unknownTaint('EXCLUDED') : c.taint)]) };
  });
  const scope: Scope = { items: [target.item, itemFromColumns('excluded', null, excludedCols)], parent: outer, ctes: frame };
  assignments(list(conflict.targetList), target, scope, 'INSERT ... ON CONFLICT DO UPDATE', ctx);
  if (conflict.whereClause) predicateTaint(conflict.whereClause, scope, ctx, 'where');
  const infer = conflict.infer as Body | undefined;
  if (infer?.whereClause) predicateTaint(infer.whereClause, scope, ctx, 'where');
}

function insertedColumns(source: unknown, outer: Scope | null, frame: CteFrame | null, ctx: AnalysisContext): Col[] | null {
  if (source === undefined || source === null) return []; // DEFAULT VALUES
  const select = as(source, 'SelectStmt');
  if (select && Array.isArray(select.valuesLists) && !select.withClause) {
    const level: Scope = { items: [], parent: outer, ctes: frame };
    return combineColumns(
      select.valuesLists.map((row: unknown) => list(as(row, 'List')?.items).map((v, i): Col => ({ name: `column${i + 1}`, taint: exprTaint(v, level, ctx) }))),
    );
  }
  return analyzeQueryNode(source, outer, frame, ctx);
}

function merge(body: Body, target: WriteTarget, level: Scope, ctx: AnalysisContext): void {
  fromClause([body.sourceRelation], level, ctx);
  if (body.joinCondition) predicateTaint(body.joinCondition, level, ctx, 'join');
  for (const node of list(body.mergeWhenClauses)) {
    const when = as(node, 'MergeWhenClause');
    if (!when) continue;
    if (when.condition) predicateTaint(when.condition, level, ctx, 'where');
    if (when.commandType === 'CMD_UPDATE') assignments(list(when.targetList), target, level, 'MERGE ... UPDATE', ctx);
    if (when.commandType === 'CMD_INSERT') {
      const named = list(when.targetList).map((t) => as(t, 'ResTarget')?.name).filter((n): n is string => typeof n === 'string');
      const columns = named.length > 0 ? named : target.columns;
      list(when.values).forEach((v, i) => checkWrite(target, columns?.[i], exprTaint(v, level, ctx), 'MERGE ... INSERT', ctx));
    }
  }
}

