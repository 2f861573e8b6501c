/**
 * Where the code of a DO block or a CREATE FUNCTION / PROCEDURE is in the parse tree: its
 * language and body text. Read by the shared-credential guard (guard.ts) and the access rules
 * (risk/code.ts), which both look inside code before it runs. Pure.
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
