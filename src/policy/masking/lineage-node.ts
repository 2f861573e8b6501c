/**
 * Reading libpg-query's JSON parse tree. A node is `{ TypeName: body }`; some fields hold a bare
 * body instead (a SelectStmt's larg/rarg, a statement's `relation`, `alias`, `withClause`). The
 * tree is read loosely: every field is optional, and code that does not recognise a shape falls
 * back to the generic walk (which fails closed).
 */

// The parse tree is deep and its TypeScript union is unwieldy to narrow field by field; bodies
// are read as loose records and every access is checked at run time.
export type Body = Record<string, any>;

/** `{ TypeName: body }` -> [TypeName, body]; null for anything else. */
export function unwrap(node: unknown): [string, Body] | null {
  if (node === null || typeof node !== 'object' || Array.isArray(node)) return null;
  const keys = Object.keys(node);
  if (keys.length !== 1) return null;
  const type = keys[0]!;
  if (!/^[A-Z]/.test(type)) return null;
  const body = (node as Body)[type];
  return [type, body !== null && typeof body === 'object' ? (body as Body) : {}];
}

/** The body if the node is of this type. */
export function as(node: unknown, type: string): Body | null {
  const u = unwrap(node);
  return u && u[0] === type ? u[1] : null;
}

export function list(value: unknown): unknown[] {
  return Array.isArray(value) ? value : [];
}

/** The svals of a list of String nodes (names, column lists). */
export function strings(value: unknown): string[] {
  return list(value).map((n) => as(n, 'String')?.sval).filter((s): s is string => typeof s === 'string');
}

/** Every child node of a body, for the generic walk: wrapped nodes as they are, bare bodies of
 *  known shapes descended into. */
export function children(body: Body): unknown[] {
  const out: unknown[] = [];
  const visit = (value: unknown): void => {
    if (value === null || typeof value !== 'object') return;
    if (Array.isArray(value)) {
      for (const v of value) visit(v);
      return;
    }
    if (unwrap(value)) {
      out.push(value);
      return;
    }
    for (const v of Object.values(value)) visit(v);
  };
  for (const v of Object.values(body)) visit(v);
  return out;
}
