/**
 * Which function calls the analysis can follow. Builtin (pg_catalog) functions pass their
 * arguments' taint to their result; the exceptions are listed here, in one place.
 * User-defined and unknown functions are refused unless the operator trusts them
 * (masking.trusted_functions): their bodies may copy, store or reveal what flows in.
 */
import type { AnalysisEnv, Taint } from './types.js';
import { describeTaint, isClear } from './lineage-taint.js';

/** Builtins that run a query given as text, read a cursor, or sample column values: what they
 *  return cannot be traced to columns. Always refused. */
const OPAQUE_READERS: ReadonlyMap<string, string> = new Map([
  // The *_to_xml family runs a query (or reads a whole table, schema, database or cursor).
  ...[
    'query_to_xml', 'query_to_xmlschema', 'query_to_xml_and_xmlschema',
    'table_to_xml', 'table_to_xmlschema', 'table_to_xml_and_xmlschema',
    'cursor_to_xml', 'cursor_to_xmlschema',
    'schema_to_xml', 'schema_to_xmlschema', 'schema_to_xml_and_xmlschema',
    'database_to_xml', 'database_to_xmlschema', 'database_to_xml_and_xmlschema',
  ].map((name): [string, string] => [name, 'it reads rows the gateway cannot trace']),
  // ts_stat(sqlquery) and ts_rewrite(query, sqlquery) run the query text they are given.
  ['ts_stat', 'it runs a query given as text'],
  ['ts_rewrite', 'it can run a query given as text'],
  // The most-common-values list of extended statistics: sampled column values.
  ['pg_mcv_list_items', 'it returns sampled column values'],
  // What pg_stat_activity reads: other sessions' statement texts.
  ...['pg_stat_get_activity', 'pg_stat_get_backend_activity']
    .map((name): [string, string] => [name, "it returns other sessions' statements, with the values they carry"]),
  // Logical decoding: every change written to the database (an exempt user's UPDATE of a credit
  // score included), values and all, from a slot (one a CDC tool made, or one's own).
  ...['pg_logical_slot_get_changes', 'pg_logical_slot_peek_changes', 'pg_logical_slot_get_binary_changes', 'pg_logical_slot_peek_binary_changes']
    .map((name): [string, string] => [name, 'it returns the changes written to the database, with their values, unmasked']),
  // Server files hold the tables' own pages and the server's log, unmasked.
  ...['pg_read_file', 'pg_read_binary_file', 'lo_import']
    .map((name): [string, string] => [name, "it reads the server's files, which hold table data and statements unmasked"]),
]);

/** Catalog relations that hold column values out of the tables' sight, by why: sampled values
 *  (most common values, histograms), and the statement texts of other sessions (the literals an
 *  exempt user's `UPDATE customers SET credit_score = 712` carries). pg_stat_statements is an
 *  extension's view, in whatever schema it was installed in. */
export const VALUE_HOLDING_RELATIONS: ReadonlyMap<string, { why: string; anySchema: boolean }> = new Map([
  ...['pg_stats', 'pg_stats_ext', 'pg_stats_ext_exprs', 'pg_statistic', 'pg_statistic_ext_data'] // pg_statistic_ext holds only definitions (pg_dump reads it)
    .map((name): [string, { why: string; anySchema: boolean }] => [name, { why: 'it holds sampled column values', anySchema: false }]),
  ['pg_stat_activity', { why: "it shows other sessions' statements, with the values they carry", anySchema: false }],
  ['pg_stat_statements', { why: "it shows other sessions' statements, with the values they carry", anySchema: true }],
]);

/** Builtins with a side effect that carries their arguments out of the result (a setting, a
 *  notification, a large object, a lock key, WAL, a sequence, a delay): refused when protected
 *  data flows in. */
const SIDE_EFFECT_SINKS: ReadonlySet<string> = new Set([
  'set_config', 'pg_notify', 'pg_logical_emit_message', 'setval', 'pg_create_restore_point',
  'pg_sleep', 'pg_sleep_for', 'pg_sleep_until', 'lowrite',
]);
const SIDE_EFFECT_SINK_PREFIXES = ['lo_', 'pg_advisory_', 'pg_try_advisory_'];

/**
 * Builtins that return a value, never an error, for every value protected data can give them,
 * by where it may go: `all` arguments, or only the first n. Anything else over protected data
 * may fail for some values and not others (`chr(x)`, `convert_to` of an unconvertible character,
 * `substr(s, 1, n)` with a negative n, `x::int`), and whether the statement failed then tells
 * those values apart: a predicate (clause `error`).
 */
const TOTAL_FUNCTIONS: ReadonlyMap<string, 'all' | number> = new Map<string, 'all' | number>([
  ...['upper', 'lower', 'initcap', 'length', 'char_length', 'character_length', 'octet_length', 'bit_length', 'md5', 'sha224', 'sha256',
    'sha384', 'sha512', 'concat', 'concat_ws', 'reverse', 'btrim', 'ltrim', 'rtrim', 'replace', 'translate', 'position', 'strpos', 'starts_with',
    'left', 'right', 'quote_literal', 'quote_nullable', 'quote_ident', 'count', 'min', 'max', 'array_agg', 'string_agg', 'json_agg', 'jsonb_agg',
    'row_to_json', 'to_json', 'to_jsonb', 'array_to_json', 'json_build_array', 'jsonb_build_array', 'avg', 'sum', 'bool_and', 'bool_or', 'every',
    'cardinality', 'row_number', 'rank', 'dense_rank', 'percent_rank', 'cume_dist', 'first_value', 'last_value', 'mode',
    'ceil', 'ceiling', 'floor', 'sign', 'string_to_array', 'array_to_string', 'array_position', 'array_positions', 'json_typeof', 'jsonb_typeof',
  ].map((name): [string, 'all'] => [name, 'all']),
  // The value first; the rest (lengths, patterns, formats, offsets) must not be protected.
  // (Not format(): '%I' of a NULL fails, so its arguments tell NULLs apart.)
  ...['substr', 'substring', 'lpad', 'rpad', 'split_part', 'encode', 'regexp_replace', 'to_char', 'lag', 'lead', 'nth_value', 'round', 'trunc', 'array_length']
    .map((name): [string, number] => [name, 1]),
]);

/** Whether a builtin returns a value for every value of protected data at argument `position` (0-based). */
export function totalAt(schema: string | null, name: string, position: number): boolean {
  const builtin = catalogName(schema, name);
  const total = builtin === null ? undefined : TOTAL_FUNCTIONS.get(builtin);
  return total === 'all' || (total !== undefined && position < total);
}

/** Aggregates that reveal only how many rows there are, not their values. */
export const COUNTING_AGGREGATES: ReadonlySet<string> = new Set(['count']);

function isSink(name: string): boolean {
  return SIDE_EFFECT_SINKS.has(name) || SIDE_EFFECT_SINK_PREFIXES.some((p) => name.startsWith(p));
}

/**
 * Settings that steer the plan. A statement without ORDER BY returns rows in the plan's order, so
 * `SET enable_seqscan = off` could make a plain `SELECT id, ssn FROM customers` scan an index
 * over ssn and show how the SSNs compare: refused on a masking connection (RESET is allowed).
 */
const PLANNER_SETTING = /^(enable_[a-z_]+|[a-z_]+_cost|effective_cache_size|min_parallel_[a-z_]+_scan_size)$/;

export function plannerSettingRefusal(name: string): string | null {
  return PLANNER_SETTING.test(name.toLowerCase())
    ? `setting ${name} is refused on a masking connection: it steers the plan, and a plan's row order (an index scan over a protected column) shows how the values compare`
    : null;
}

/** The name an unqualified or pg_catalog-qualified call can reach in pg_catalog (which the
 *  server searches first, whatever else the search_path holds). */
export function catalogName(schema: string | null, name: string): string | null {
  return schema === null || schema === 'pg_catalog' ? name : null;
}

/**
 * Why a call must be refused, or null when it may run and its result carries `argTaint`.
 * `argCount` matters only for ts_rewrite, whose two-argument form runs SQL text.
 */
export function functionRefusal(env: AnalysisEnv, schema: string | null, name: string, argTaint: Taint, argCount: number): string | null {
  const shown = schema === null ? name : `${schema}.${name}`;
  const builtin = catalogName(schema, name);
  if (builtin !== null) {
    const why = OPAQUE_READERS.get(builtin);
    if (why !== undefined && (builtin !== 'ts_rewrite' || argCount === 2)) return `${shown}() is refused on a masking connection: ${why}`;
    if (isSink(builtin) && !isClear(argTaint)) {
      return `${shown}() is refused: protected data (${describeTaint(argTaint)}) would flow into its side effect, where it cannot be masked`;
    }
  }
  const kind = env.schema.functionKind(schema, name);
  if (kind === 'builtin') return null;
  if (schema !== null) {
    if (env.trusted(schema, name)) return null;
    return kind === 'user'
      ? `${shown}() is a user-defined function the gateway cannot follow (not in masking.trusted_functions)`
      : `${shown}() is not a function the gateway knows`;
  }
  if (kind === 'user') {
    const schemas = env.schema.userFunctionSchemas(name);
    const untrusted = schemas.filter((s) => !env.trusted(s, name));
    if (schemas.length > 0 && untrusted.length === 0) return null;
    const which = (untrusted.length > 0 ? untrusted : schemas).map((s) => `${s}.${name}`).join(', ');
    return `${name}() may call the user-defined function ${which || name}, which the gateway cannot follow (not in masking.trusted_functions)`;
  }
  return `${name}() is not a function the gateway knows`;
}
