/**
 * The row estimate behind `estimated_rows` access rules (issue 8): the planner's guess for one
 * statement, read with `EXPLAIN (FORMAT JSON)` on the gateway's own upstream connection (never a
 * client's session), under a short statement timeout.
 *
 * - Never runs the statement: EXPLAIN without ANALYZE only plans. `EXPLAIN ANALYZE q`,
 *   `PREPARE p AS q` and `COPY (q) TO …` are estimated as q (their own text cannot be EXPLAINed,
 *   and EXPLAIN ANALYZE would run q); `COPY t [(cols)] TO …` as `SELECT cols FROM t`.
 * - A write's top plan node (ModifyTable) plans no output rows without RETURNING; its input,
 *   the rows it would change, is the estimate.
 * - A statement with parameters ($1) is planned with the values bound to it (`parameters`: an
 *   extended-protocol Execute's, as the record decodes them), each put in as a quoted literal
 *   (`'…'`, quotes doubled, standard_conforming_strings on; NULL for null), which the planner
 *   types as it would the parameter. Without them it has no estimate: the plan for an unknown
 *   value is not the plan that would run.
 * - null, never an exception, for anything it cannot estimate: a parameter without a value (or
 *   one over PARAMETER_TEXT_MAX, or holding a NUL), several statements, a statement EXPLAIN does
 *   not take, a server error or timeout. The rules count null as matching (fail closed).
 * - The timeout, search_path and role are `SET LOCAL` inside the Query's implicit transaction, so
 *   the connection's own settings (the admin connection's search_path is pg_catalog alone) are
 *   untouched for whatever else uses it.
 * - Names resolve through `searchPath` (default PostgreSQL's own, "$user", public): the admin
 *   connection cannot know a session's `SET search_path`, and a name that does not resolve gives
 *   null, which fails closed. pg_catalog is searched first either way.
 * - Planning can run code: the planner folds IMMUTABLE functions with constant arguments. Pass
 *   the caller's mapped database role as `role` (the service role must be a member of it, as
 *   for the session's own SET ROLE) so that code runs with the caller's privileges, not the
 *   gateway's.
 */
import { scanSync } from 'libpg-query';
import { unwrap } from '../policy/masking/lineage-node.js';
import { parseSql } from '../policy/masking/parse.js';

export interface EstimateConnection {
  query(sql: string): Promise<{ columns: string[]; rows: (string | null)[][] }[]>;
}

/** The server's statement_timeout for the EXPLAIN. */
export const ESTIMATE_STATEMENT_TIMEOUT_MS = 2_000;
/** How long the caller waits at most, whatever the connection does (it may be queued behind other reads). */
export const ESTIMATE_DEADLINE_MS = 5_000;

/** Statements EXPLAIN accepts as they are. */
const EXPLAINABLE: ReadonlySet<string> = new Set(['SelectStmt', 'InsertStmt', 'UpdateStmt', 'DeleteStmt', 'MergeStmt', 'DeclareCursorStmt', 'CreateTableAsStmt']);

export interface EstimateOptions {
  /** Schemas unqualified names resolve in (default `$user`, `public`). */
  searchPath?: string[];
  /** The values bound to the statement's parameters, $1 first (decoded as the record keeps them). */
  parameters?: readonly unknown[];
  /** The database role to plan as (`SET LOCAL ROLE`); null or absent: the connection's own. */
  role?: string | null;
}

export async function estimateRows(admin: EstimateConnection, statementText: string, options: EstimateOptions = {}): Promise<number | null> {
  let explainable: string | null;
  try {
    const text = options.parameters?.length ? withParameters(statementText, options.parameters) : statementText;
    explainable = text === null ? null : explainableText(text, 0);
  } catch {
    return null;
  }
  if (explainable === null) return null;
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<null>((resolve) => {
    timer = setTimeout(() => resolve(null), ESTIMATE_DEADLINE_MS);
    timer.unref();
  });
  const settings = [
    `SET LOCAL statement_timeout = ${ESTIMATE_STATEMENT_TIMEOUT_MS}`,
    ...(options.parameters?.length ? ['SET LOCAL standard_conforming_strings = on'] : []), // what the literals are quoted for
    `SET LOCAL search_path = ${(options.searchPath ?? ['$user', 'public']).map(quoteIdentifier).join(', ')}`,
    ...(options.role ? [`SET LOCAL ROLE ${quoteIdentifier(options.role)}`] : []),
  ];
  const sql = `${settings.join('; ')}; EXPLAIN (FORMAT JSON)\n${explainable}`;
  const ask = admin.query(sql).then(planRows, () => null);
  try {
    return await Promise.race([ask, deadline]);
  } finally {
    clearTimeout(timer);
  }
}

/** A bound value longer than this is not put into the EXPLAIN: no estimate. */
export const PARAMETER_TEXT_MAX = 8 * 1024;

/** `text` with each $n replaced by the literal of parameter n; null when one has no value or cannot be a literal. */
function withParameters(text: string, parameters: readonly unknown[]): string | null {
  const bytes = Buffer.from(text, 'utf8');
  let out = '';
  let at = 0;
  for (const t of scanSync(text).tokens) {
    if (t.tokenName !== 'PARAM') continue;
    const n = Number(t.text.slice(1));
    if (!Number.isSafeInteger(n) || n < 1 || n > parameters.length) return null;
    const value = parameters[n - 1];
    const literal = value === null || value === undefined ? 'NULL' : quoteLiteral(String(value));
    if (literal === null) return null;
    out += `${bytes.subarray(at, t.start).toString('utf8')}${literal}`;
    at = t.end;
  }
  return out + bytes.subarray(at).toString('utf8');
}

/** A string constant under standard_conforming_strings (a backslash is itself); null for a NUL or an over-long value. */
function quoteLiteral(value: string): string | null {
  if (value.length > PARAMETER_TEXT_MAX || value.includes('\0')) return null;
  return `'${value.replace(/'/g, "''")}'`;
}

/** The text to EXPLAIN for this one statement, or null when there is none. */
function explainableText(text: string, depth: number): string | null {
  const stmts = parseSql(text).stmts ?? [];
  if (stmts.length !== 1 || depth > 3) return null;
  const tokens = scanSync(text).tokens;
  // A parameter has no value here; the plan for an unknown value is not the plan that would run.
  if (tokens.some((t) => t.tokenName === 'PARAM')) return null;
  const u = unwrap(stmts[0]!.stmt);
  if (!u) return null;
  const [type, body] = u;
  if (EXPLAINABLE.has(type)) return text;
  const bytes = Buffer.from(text, 'utf8');
  const from = (i: number) => (i < tokens.length ? bytes.subarray(tokens[i]!.start).toString('utf8') : '');
  const between = (a: number, b: number) => bytes.subarray(tokens[a]!.start, tokens[b]!.end).toString('utf8');
  const word = (i: number) => tokens[i]?.text.toUpperCase();
  switch (type) {
    case 'ExplainStmt': {
      let i = 1;
      if (word(i) === '(') i = closing(tokens, i) + 1;
      else while (word(i) === 'ANALYZE' || word(i) === 'ANALYSE' || word(i) === 'VERBOSE') i++;
      return explainableText(from(i), depth + 1);
    }
    case 'PrepareStmt': {
      const as = tokens.findIndex((t) => t.text.toUpperCase() === 'AS' && t.keywordKind !== 0);
      return as < 0 ? null : explainableText(from(as + 1), depth + 1);
    }
    case 'CopyStmt': {
      if (body.is_from || body.is_program) return null;
      if (body.query) {
        if (word(1) !== '(') return null;
        const end = closing(tokens, 1);
        return end <= 2 ? null : explainableText(between(2, end - 1), depth + 1);
      }
      // COPY relation [(columns)] TO …: the relation's name runs up to the column list or TO.
      const stop = tokens.findIndex((t, i) => i > 0 && (t.text === '(' || t.text.toUpperCase() === 'TO'));
      if (stop <= 1) return null;
      const relation = between(1, stop - 1);
      const columns = tokens[stop]!.text === '(' ? between(stop + 1, closing(tokens, stop) - 1) : '*';
      return explainableText(`SELECT ${columns} FROM ${relation}`, depth + 1);
    }
    default:
      return null;
  }
}

/**
 * The search_path a client's session of this login role starts with in this database, from
 * `ALTER ROLE … [IN DATABASE …] SET search_path` and `ALTER DATABASE … SET search_path` (the most
 * specific wins, as at login); undefined where none is set (then PostgreSQL's default applies,
 * or postgresql.conf's, which only a superuser can read). The admin connection's own path is
 * pg_catalog alone, so it cannot simply ask for its current one.
 */
export async function defaultSearchPath(admin: EstimateConnection): Promise<string[] | undefined> {
  const [result] = await admin.query(`SELECT pg_catalog.array_to_string(s.setconfig, chr(1))
  FROM pg_catalog.pg_db_role_setting s
 WHERE (s.setdatabase = 0 OR s.setdatabase = (SELECT oid FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database()))
   AND (s.setrole = 0 OR s.setrole = (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = current_user))
 ORDER BY s.setrole <> 0 DESC, s.setdatabase <> 0 DESC`);
  for (const [config] of result?.rows ?? []) {
    const setting = (config ?? '').split('\u0001').find((c) => c.startsWith('search_path='));
    if (setting !== undefined) return splitSearchPath(setting.slice('search_path='.length));
  }
  return undefined;
}

/** A search_path value's schemas as PostgreSQL reads them: quoted names as written, others folded to lower case. */
export function splitSearchPath(value: string): string[] {
  const names: string[] = [];
  for (const m of value.matchAll(/\s*(?:"((?:[^"]|"")*)"|([^,]*?))\s*(?:,|$)/g)) {
    if (m[0] === '') break;
    const name = m[1] !== undefined ? m[1].replace(/""/g, '"') : m[2]!.toLowerCase();
    if (name !== '') names.push(name);
  }
  return names;
}

/** An identifier as SQL text: always quoted, so no name is read as anything else. */
function quoteIdentifier(name: string): string {
  return `"${name.replace(/\0/g, '').replace(/"/g, '""')}"`;
}

/** The index of the `)` matching the `(` at `open` (the last token when unbalanced). */
function closing(tokens: { text: string }[], open: number): number {
  let depth = 0;
  for (let i = open; i < tokens.length; i++) {
    if (tokens[i]!.text === '(') depth++;
    else if (tokens[i]!.text === ')' && --depth === 0) return i;
  }
  return tokens.length - 1;
}

interface PlanNode {
  'Node Type'?: string;
  'Plan Rows'?: number;
  Plans?: PlanNode[];
}

function planRows(results: { rows: (string | null)[][] }[]): number | null {
  const text = results[results.length - 1]?.rows[0]?.[0];
  if (typeof text !== 'string') return null;
  let top: PlanNode | undefined;
  try {
    top = (JSON.parse(text) as { Plan?: PlanNode }[])[0]?.Plan;
  } catch {
    return null;
  }
  const node = top?.['Node Type'] === 'ModifyTable' ? top.Plans?.[0] : top;
  const rows = node?.['Plan Rows'];
  return typeof rows === 'number' && Number.isFinite(rows) && rows >= 0 ? rows : null;
}
