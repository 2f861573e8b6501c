/**
 * Where the code of a DO block or a CREATE FUNCTION / PROCEDURE is in the parse tree (its
 * language and body text), and which builtins run a query given as text. Read by the
 * shared-credential guard (guard.ts) and the access rules (risk/), which both look inside code
 * before it runs. Pure.
 */
import { as, list, type Body } from './masking/lineage-node.js';

/** A DO block's language (lower case; PL/pgSQL when it names none) and body. */
export function doBlockCode(stmt: Body): { language: string; code: string | null } {
  let code: string | null = null;
  let language = 'plpgsql';
  for (const a of list(stmt['args'])) {
    const d = as(a, 'DefElem');
    const value = as(d?.['arg'], 'String')?.['sval'];
    if (typeof value !== 'string') continue;
    if (d?.['defname'] === 'as') code = value;
    if (d?.['defname'] === 'language') language = value.toLowerCase();
  }
  return { language, code };
}

/**
 * A function's or procedure's language (lower case; null when it names none) and body: the AS
 * string, or null when the body is part of the parse tree (BEGIN ATOMIC, RETURN) or is object
 * code (`AS 'library', 'symbol'`: `objectCode`).
 */
export function functionCode(stmt: Body): { language: string | null; code: string | null; objectCode: boolean } {
  let code: string | null = null;
  let language: string | null = null;
  let objectCode = false;
  for (const o of list(stmt['options'])) {
    const d = as(o, 'DefElem');
    if (d?.['defname'] === 'language') language = String(as(d['arg'], 'String')?.['sval'] ?? '').toLowerCase();
    if (d?.['defname'] === 'as') {
      const items = list(as(d['arg'], 'List')?.['items']);
      const text = items.length === 1 ? as(items[0], 'String')?.['sval'] : undefined;
      code = typeof text === 'string' ? text : null;
      objectCode = code === null;
    }
  }
  return { language, code, objectCode };
}

/** Functions that run a query given as text, and which of their arguments (by argument count)
 *  are such queries. ts_rewrite(query, target, substitute) takes none; ts_rewrite(query, select)
 *  one; crosstab(text, int) one (a number is not a query: callers skip non-string constants). */
const QUERY_TEXT_ARGS: ReadonlyMap<string, (args: number) => number[]> = new Map([
  ...['query_to_xml', 'query_to_xmlschema', 'query_to_xml_and_xmlschema', 'ts_stat'].map((f): [string, (args: number) => number[]] => [f, () => [0]]),
  ['ts_rewrite', (args: number) => (args === 2 ? [1] : [])],
  ...['crosstab', 'crosstab_hash'].map((f): [string, (args: number) => number[]] => [f, () => [0, 1]]),
]);

/** The positions of the query texts a call of `name` (lower case, unqualified) with `args`
 *  arguments runs; null when it runs none. */
export function queryTextArguments(name: string, args: number): number[] | null {
  return QUERY_TEXT_ARGS.get(name)?.(args) ?? null;
}

/** A string constant (through casts: `'customers'::regclass`), or null for anything else. */
export function stringConstant(arg: unknown): string | null {
  const cast = as(arg, 'TypeCast');
  if (cast) return stringConstant(cast['arg']);
  const value = as(arg, 'A_Const')?.['sval'];
  // libpg-query writes the empty string as `sval: {}`.
  return value !== null && typeof value === 'object' ? String((value as Body)['sval'] ?? '') : null;
}

/** A constant that is not a string (a number, a boolean, NULL): it cannot be a query. */
export function nonStringConstant(arg: unknown): boolean {
  const cast = as(arg, 'TypeCast');
  if (cast) return nonStringConstant(cast['arg']);
  const c = as(arg, 'A_Const');
  return c !== null && c['sval'] === undefined;
}

/** The form of dynamic SQL a compiled PL/pgSQL node is (`EXECUTE`, `OPEN … FOR EXECUTE`,
 *  `RETURN QUERY EXECUTE`), or null: what it runs is a string made at run time. */
export function dynamicSql(type: string, node: unknown): string | null {
  if (type === 'PLpgSQL_stmt_dynexecute' || type === 'PLpgSQL_stmt_dynfors') return 'EXECUTE';
  const dynquery = node !== null && typeof node === 'object' && (node as Body)['dynquery'] !== undefined;
  if (type === 'PLpgSQL_stmt_open' && dynquery) return 'OPEN … FOR EXECUTE';
  if (type === 'PLpgSQL_stmt_return_query' && dynquery) return 'RETURN QUERY EXECUTE';
  return null;
}
