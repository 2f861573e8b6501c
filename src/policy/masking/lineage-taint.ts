/** The algebra of Taint: what may flow into a value. */
import type { MaskRule, OutputColumn, PredicateUse, ProtectedSource, Taint } from './types.js';

export function clearTaint(): Taint {
  return { sources: [], direct: false, unknown: null };
}

export function unknownTaint(reason: string): Taint {
  return { sources: [], direct: false, unknown: reason };
}

export function directTaint(column: string, rule: MaskRule): Taint {
  return { sources: [{ column, rule }], direct: true, unknown: null };
}

export function isClear(t: Taint): boolean {
  return t.sources.length === 0 && t.unknown === null;
}

function mergeSources(ts: Taint[]): ProtectedSource[] {
  const seen = new Map<string, ProtectedSource>();
  for (const t of ts) for (const s of t.sources) if (!seen.has(s.column)) seen.set(s.column, s);
  return [...seen.values()];
}

/** An expression over these values: derived from all of them. */
export function unionTaints(ts: Taint[]): Taint {
  const unknown = ts.find((t) => t.unknown !== null)?.unknown ?? null;
  return { sources: mergeSources(ts), direct: false, unknown };
}

/** One of these values, unchanged (UNION branches, a USING column, relations sharing a name):
 *  direct only when every one is the same protected column, unchanged. */
export function branchTaint(ts: Taint[]): Taint {
  if (ts.length === 0) return clearTaint();
  const first = ts[0]!;
  const same = ts.every((t) => t.direct && t.unknown === null && t.sources.length === 1 && t.sources[0]!.column === first.sources[0]?.column);
  if (same && first.direct) return { sources: [first.sources[0]!], direct: true, unknown: null };
  return unionTaints(ts);
}

/** The taint of a value passed on unchanged, as a fresh object. */
export function copyTaint(t: Taint): Taint {
  return { sources: [...t.sources], direct: t.direct, unknown: t.unknown };
}

/** Positional combination of result columns (set operations, VALUES rows); null when the
 *  shapes disagree or one cannot be named. */
export function combineColumns(branches: (OutputColumn[] | null)[]): OutputColumn[] | null {
  if (branches.length === 0 || branches.some((b) => b === null)) return null;
  const first = branches[0]!;
  if (branches.some((b) => b!.length !== first.length)) return null;
  return first.map((c, i) => ({ name: c.name, taint: branchTaint(branches.map((b) => b![i]!.taint)) }));
}

/** What a refusal message says flows (schema.table.column names, or why it is unknown). */
export function describeTaint(t: Taint): string {
  const parts = t.sources.map((s) => s.column);
  if (t.unknown !== null) parts.push(`data the gateway cannot name (${t.unknown})`);
  return parts.join(', ');
}

/** The predicate uses a taint stands for in a clause. */
export function predicateUses(t: Taint, clause: PredicateUse['clause']): PredicateUse[] {
  const uses: PredicateUse[] = t.sources.map((s) => ({ column: s.column, clause }));
  if (t.unknown !== null) uses.push({ column: `unknown: ${t.unknown}`, clause });
  return uses;
}
