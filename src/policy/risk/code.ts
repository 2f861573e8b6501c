/**
 * The statements inside code that a statement runs or defines, for the access rules: a DO
 * block's body, a function's or procedure's body (it runs later, for whoever calls it). Without
 * them any rule could be walked around by wrapping its statement in code: `DO $$ BEGIN DELETE
 * FROM accounts; END $$` is a delete, and `CREATE FUNCTION f() … AS 'DELETE FROM accounts'`
 * defines one. Pure.
 *
 * What cannot be read is `opaque`, with the reason: dynamic SQL (EXECUTE and its forms), a
 * language other than SQL and PL/pgSQL, a body that does not compile, CALL (the procedure's body
 * was defined elsewhere). The rules then decide as if it could be any statement (rules.ts).
 * (A BEGIN ATOMIC body is part of the parse tree, where the classifier's walk finds its writes.)
 */
import { unwrap, type Body } from '../masking/lineage-node.js';
import { doBlockCode, dynamicSql, functionCode } from '../code-body.js';
import { doText, parsePlpgsql, parseSql, statementTexts } from '../masking/parse.js';

/** One statement found inside code: its parse tree and its own text. */
export interface EmbeddedStatement {
  stmt: unknown;
  source: string;
}

export interface EmbeddedCode {
  statements: EmbeddedStatement[];
  /** Why some of the code cannot be read; null when every part of it was. */
  opaque: string | null;
}

/** The code inside `stmt` (whose own text is `source`), or null when it holds none. */
export function embeddedCode(stmt: unknown, source: string): EmbeddedCode | null {
  const u = unwrap(stmt);
  if (!u) return null;
  const [type, body] = u;
  switch (type) {
    case 'DoStmt':
      return doBlock(body);
    case 'CreateFunctionStmt':
      return functionBody(body, source);
    case 'CallStmt':
      return { statements: [], opaque: 'CALL runs a procedure whose body hoop does not see' };
    default:
      return null;
  }
}

function doBlock(body: Body): EmbeddedCode {
  const { language, code } = doBlockCode(body);
  if (language !== 'plpgsql') return opaque(`a DO block in ${language}`);
  if (code === null) return opaque('a DO block without a body');
  return plpgsql(doText(code), 'a DO block');
}

function functionBody(body: Body, source: string): EmbeddedCode | null {
  const { language, code, objectCode } = functionCode(body);
  if (objectCode) return opaque('a function in object code');
  if (code === null) return null; // BEGIN ATOMIC or RETURN: in the parse tree itself
  if (language === 'sql') return sqlStatements(code, 'a function body');
  if (language === 'plpgsql') return plpgsql(source, 'a function body');
  return opaque(`a function in ${language ?? 'an unnamed language'}`);
}

/** The statements of an SQL text (a function's body, a query given as text to query_to_xml). */
export function sqlStatements(text: string, what: string): EmbeddedCode {
  try {
    const parsed = parseSql(text).stmts ?? [];
    const sources = statementTexts(text, parsed);
    return { statements: parsed.map((p, i) => ({ stmt: p.stmt, source: sources[i] ?? '' })), opaque: null };
  } catch (err) {
    return opaque(`${what} that does not parse (${err instanceof Error ? err.message : String(err)})`);
  }
}

/** A PL/pgSQL body compiled from its statement's text: every embedded statement and expression. */
function plpgsql(text: string, what: string): EmbeddedCode {
  let tree: unknown;
  try {
    tree = parsePlpgsql(text);
  } catch (err) {
    return opaque(`${what} that does not compile (${err instanceof Error ? err.message : String(err)})`);
  }
  const found: EmbeddedCode = { statements: [], opaque: null };
  const visit = (value: unknown): void => {
    if (found.opaque !== null || value === null || typeof value !== 'object') return;
    if (Array.isArray(value)) return value.forEach(visit);
    for (const [type, node] of Object.entries(value as Record<string, unknown>)) {
      const n = node !== null && typeof node === 'object' ? (node as Record<string, unknown>) : {};
      const dynamic = dynamicSql(type, node);
      if (dynamic) {
        found.opaque = `${what} with dynamic SQL (${dynamic})`;
        return;
      }
      if (type === 'PLpgSQL_expr') {
        const part = expression(String(n['query'] ?? ''), Number(n['parseMode'] ?? 0), what);
        found.statements.push(...part.statements);
        found.opaque ??= part.opaque;
        continue;
      }
      visit(node);
    }
  };
  visit(tree);
  return found;
}

/** A PL/pgSQL statement's SQL (parse mode 0) or an expression (the others, read as a SELECT of it). */
function expression(query: string, parseMode: number, what: string): EmbeddedCode {
  const texts = parseMode === 0 ? [query] : [`SELECT ${query}`, `SELECT ${query.replace(/^[^:=]*:?=/, '')}`];
  for (const text of texts) {
    const read = sqlStatements(text, what);
    if (read.opaque === null) return read;
  }
  return opaque(`${what} with a part hoop cannot read (${query.slice(0, 60)})`);
}

function opaque(why: string): EmbeddedCode {
  return { statements: [], opaque: why };
}
