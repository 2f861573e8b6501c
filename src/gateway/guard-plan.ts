/**
 * The shared-credential guard as a planner step (src/policy/guard.ts decides): the coordinator
 * runs it first for every statement of every session, exempt from nothing; null means the guard
 * has no objection and the next step decides.
 *
 * - a simple Query, an extended-protocol Parse or Bind record (`phase`), a fastpath call: decided
 *   by the text the engine names (all statements of a simple Query are in `statement`);
 * - a text cut at the record's text limit: refused, since its unseen end could hold anything;
 * - `unknown` (the engine cannot name what a prepared statement runs): allowed. The guard cannot
 *   see it, and the text that defined it (an SQL PREPARE) was itself guarded; the mapped role's
 *   privileges remain the boundary.
 */
import type { RefusePlan, StatementStart } from '../protocols/engine.js';
import { MAY_NEED_PARSE, SQLSTATE_INSUFFICIENT_PRIVILEGE, guardQuery } from '../policy/guard.js';

export function guardPlan(start: StatementStart, protectedRoles: string[]): RefusePlan | null {
  if (start.unknown) return null;
  // A text longer than the record keeps is looked through whole when the engine can: one that
  // mentions nothing the guard could refuse needs no parse (a 64 MiB INSERT of data).
  if (start.statementTruncated && start.matchesWhole && !start.matchesWhole(MAY_NEED_PARSE)) return null;
  if (start.statementTruncated) {
    return refusal(SQLSTATE_INSUFFICIENT_PRIVILEGE, 'hoop: statement refused: it is longer than hoop reads (audit.payload_limit), so hoop cannot tell whether it would change the database role every user of this connection shares', 'too long');
  }
  const verdict = guardQuery(start.statement, protectedRoles);
  if (verdict.refusal === null) return null;
  return refusal(verdict.code ?? SQLSTATE_INSUFFICIENT_PRIVILEGE, verdict.refusal, verdict.code === SQLSTATE_INSUFFICIENT_PRIVILEGE ? 'shared credential' : 'unparseable');
}

function refusal(code: string, message: string, why: string): RefusePlan {
  return { action: 'refuse', code, message, summary: { guard: { refused: why } } };
}
