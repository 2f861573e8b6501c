/**
 * Name resolution: the FROM items a query level can see, the levels around it (correlated
 * subqueries), and the CTEs in force. Resolution follows PostgreSQL's order (a column name at
 * any level first, then a relation name as a whole-row reference) and fails closed: an item
 * whose columns cannot be named answers every name with its (unknown) taint.
 */
import type { AnalysisEnv, OutputColumn, PredicateUse, Taint } from './types.js';
import { clearTaint, copyTaint, predicateUses, unionTaints } from './lineage-taint.js';

export type Col = OutputColumn;

export interface RangeItem {
  /** The name that qualifies its columns (alias, or relation / CTE / function name); null for
   *  the merged columns of a JOIN USING. */
  name: string | null;
  /** For `schema.table.column`: set on a relation read without an alias. */
  schema: string | null;
  /** Its columns in order, as `*` expands them; null when their number or order is not known. */
  star: Col[] | null;
  /** The columns its names resolve to (when not `open`). */
  named: Col[];
  /** Answers every column name with `whole` (its columns are not known). */
  open: boolean;
  /** The row as one value. */
  whole: Taint;
  /** Names its unqualified references leave to a JOIN's merged USING column. */
  hidden: Set<string>;
  /** A stored relation: system columns (ctid, xmin, ...) resolve, clear. */
  stored: boolean;
}

export interface CteFrame {
  defs: Map<string, Col[] | null>;
  parent: CteFrame | null;
}

export interface Scope {
  items: RangeItem[];
  parent: Scope | null;
  ctes: CteFrame | null;
}

const SYSTEM_COLUMNS = new Set(['ctid', 'xmin', 'xmax', 'cmin', 'cmax', 'tableoid']);

export function itemFromColumns(name: string | null, schema: string | null, cols: Col[], stored = false): RangeItem {
  return { name, schema, star: cols, named: cols, open: false, whole: unionTaints(cols.map((c) => c.taint)), hidden: new Set(), stored };
}

export function openItem(name: string | null, taint: Taint): RangeItem {
  return { name, schema: null, star: null, named: [], open: true, whole: taint, hidden: new Set(), stored: false };
}

/** Rename the first columns (`AS alias(a, b)`). */
export function renameColumns(cols: Col[], names: string[]): Col[] {
  return cols.map((c, i) => ({ name: names[i] ?? c.name, taint: c.taint }));
}

/** The column of an item, or undefined if it has none of that name. */
export function columnOf(item: RangeItem, name: string): Taint | undefined {
  if (item.open) return copyTaint(item.whole);
  const hits = item.named.filter((c) => c.name === name);
  if (hits.length === 1) return copyTaint(hits[0]!.taint);
  if (hits.length > 1) return unionTaints(hits.map((c) => c.taint));
  if (item.stored && SYSTEM_COLUMNS.has(name)) return clearTaint();
  return undefined;
}

/** An unqualified column name, innermost level first. */
export function findColumn(scope: Scope | null, name: string): Taint | undefined {
  for (let s = scope; s; s = s.parent) {
    const known = s.items.filter((i) => !i.open && !i.hidden.has(name)).map((i) => columnOf(i, name)).filter((t): t is Taint => t !== undefined);
    // Two matches is an ambiguity error in PostgreSQL; the union fails closed all the same.
    if (known.length === 1) return known[0];
    if (known.length > 1) return unionTaints(known);
    const open = s.items.filter((i) => i.open);
    if (open.length > 0) return unionTaints(open.map((i) => i.whole));
  }
  return undefined;
}

/** A FROM item by the name that qualifies it, innermost level first. */
export function findItem(scope: Scope | null, name: string, schema: string | null = null): RangeItem | undefined {
  for (let s = scope; s; s = s.parent) {
    const hit = s.items.find((i) => i.name === name && (schema === null || i.schema === schema));
    if (hit) return hit;
  }
  return undefined;
}

export function findCte(frame: CteFrame | null, name: string): Col[] | null | undefined {
  for (let f = frame; f; f = f.parent) if (f.defs.has(name)) return f.defs.get(name);
  return undefined;
}

/** What one statement's analysis accumulates. */
export class AnalysisContext {
  readonly predicates: PredicateUse[] = [];
  readonly refusals: string[] = [];
  touches = false;
  private readonly seenPredicates = new Set<string>();

  constructor(readonly env: AnalysisEnv) {}

  refuse(reason: string): void {
    if (!this.refusals.includes(reason)) this.refusals.push(reason);
  }

  usePredicate(use: PredicateUse): void {
    const key = `${use.clause}\u0000${use.column}`;
    if (this.seenPredicates.has(key)) return;
    this.seenPredicates.add(key);
    this.predicates.push(use);
  }

  predicate(t: Taint, clause: PredicateUse['clause']): void {
    for (const use of predicateUses(t, clause)) this.usePredicate(use);
  }

  /** A value was read: note whether it carries protected (or unnameable) data. */
  read(t: Taint): Taint {
    if (t.sources.length > 0 || t.unknown !== null) this.touches = true;
    return t;
  }
}
