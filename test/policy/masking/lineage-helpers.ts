import type { StatementAnalysis } from '../../../src/policy/masking/types.js';
import { analyzeQuery } from '../../../src/policy/masking/lineage.js';
import { makeEnv, shape } from './lineage-fixture.js';

type Names = Parameters<typeof makeEnv>[0];

/** The one statement of `sql`, analysed. */
export function one(sql: string, names?: Names): StatementAnalysis {
  const a = analyzeQuery(sql, makeEnv(names));
  if (a.parseError !== null) throw new Error(`parse error: ${a.parseError}`);
  if (a.statements.length !== 1) throw new Error(`expected one statement, got ${a.statements.length}`);
  return a.statements[0]!;
}

/** `name=shape` per result column, or null. */
export function columns(sql: string, names?: Names): string[] | null {
  return one(sql, names).result?.map((c) => `${c.name}=${shape(c.taint)}`) ?? null;
}

export function predicates(sql: string): string[] {
  return one(sql).predicates.map((p) => `${p.clause}:${p.column}`);
}

export function refusals(sql: string): string[] {
  return one(sql).refusals;
}
