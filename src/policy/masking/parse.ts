/**
 * The real PostgreSQL parser (libpg-query, compiled to WASM), loaded once at gateway start.
 * The WASM module is instantiated asynchronously; after that, parsing is synchronous, so the
 * statement analysis never waits on the data path.
 */
import { createHash } from 'node:crypto';
import { fingerprintSync, loadModule, parsePlPgSQLSync, parseSync } from 'libpg-query';
import type { ParseResult } from 'libpg-query';

export type { ParseResult };

let loading: Promise<void> | null = null;
let loaded = false;

/** Instantiate the parser (idempotent; a failed load may be retried). */
export function loadParser(): Promise<void> {
  loading ??= loadModule().then(
    () => {
      loaded = true;
    },
    (err: unknown) => {
      loading = null;
      throw err;
    },
  );
  return loading;
}

export function parserLoaded(): boolean {
  return loaded;
}

/** Parse a query string into raw statements. Throws if the parser is not loaded or on a syntax
 *  error (the message carries the server's wording and the cursor position). */
export function parseSql(text: string): ParseResult {
  if (!loaded) throw new Error('the SQL parser is not loaded (call loadParser() at start)');
  // libpg-query refuses an empty string; PostgreSQL answers it with EmptyQueryResponse.
  if (text.trim() === '') return { version: 0, stmts: [] } as ParseResult;
  try {
    return parseSync(text);
  } catch (err) {
    const details = (err as { sqlDetails?: { cursorPosition?: number } }).sqlDetails;
    const message = err instanceof Error ? err.message : String(err);
    const at = details?.cursorPosition;
    throw new Error(at !== undefined && at >= 0 ? `${message} (at character ${at + 1})` : message);
  }
}

/** Compile a PL/pgSQL function or DO block (the statement's whole text, e.g. `DO $$ … $$`) into
 *  PL/pgSQL's own tree, without running it. Throws as parseSql does, also on a body that does
 *  not compile (an unknown variable, RETURN QUERY outside a set-returning function). */
export function parsePlpgsql(text: string): unknown {
  if (!loaded) throw new Error('the SQL parser is not loaded (call loadParser() at start)');
  try {
    return parsePlPgSQLSync(text);
  } catch (err) {
    throw new Error(err instanceof Error ? err.message : String(err));
  }
}

/**
 * What an approval is bound to (with the parameters, compared apart): libpg-query's fingerprint
 * of the statement, then a hash of its parse tree without positions. The fingerprint alone is
 * the same for texts that differ only in their constants — `DELETE … WHERE id = 1` and
 * `… WHERE id = 2`, `LIMIT 10` and `LIMIT 1000000` — so an approval of one would let the other
 * run; the tree hash keeps constants and still ignores whitespace, comments and keyword case.
 * A text the parser refuses is bound to its exact bytes (`text:` and their SHA-256).
 */
export function fingerprintSql(text: string): string {
  if (!loaded) throw new Error('the SQL parser is not loaded (call loadParser() at start)');
  try {
    const tree = JSON.stringify(parseSync(text), (key, value: unknown) => (key === 'location' || key === 'stmt_location' || key === 'stmt_len' ? undefined : value));
    return `${fingerprintSync(text)}.${createHash('sha256').update(tree).digest('hex').slice(0, 32)}`;
  } catch {
    return `text:${createHash('sha256').update(text).digest('hex')}`;
  }
}

/** Each parsed statement's own text: locations and lengths are in UTF-8 bytes (0: to the end). */
export function statementTexts(text: string, parsed: { stmt_location?: number; stmt_len?: number }[]): string[] {
  const bytes = Buffer.from(text, 'utf8');
  return parsed.map((p) => {
    const from = p.stmt_location ?? 0;
    return bytes.toString('utf8', from, p.stmt_len ? from + p.stmt_len : bytes.length);
  });
}

/** A DO statement around `body`, dollar-quoted with a tag the body does not contain. */
export function doText(body: string): string {
  let tag = 'hoop';
  for (let i = 0; body.includes(`$${tag}$`); i++) tag = `hoop${i}`;
  return `DO $${tag}$${body}$${tag}$`;
}
