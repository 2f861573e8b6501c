/**
 * The real PostgreSQL parser (libpg-query, compiled to WASM), loaded once at gateway start.
 * The WASM module is instantiated asynchronously; after that, parsing is synchronous, so the
 * statement analysis never waits on the data path.
 */
import { loadModule, parsePlPgSQLSync, parseSync } from 'libpg-query';
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
