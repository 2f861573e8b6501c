/** A small bank catalog and rule set for the lineage tests (rules.ts is not used: its own
 *  tests cover the globs). */
import type { AnalysisEnv, MaskRule, OutputColumn, ProtectionLookup, RelationInfo, SchemaView, Taint } from '../../../src/policy/masking/types.js';

let oid = 1000;
function rel(schema: string, name: string, columns: string[], extra: Partial<RelationInfo> = {}): RelationInfo {
  return { oid: oid++, schema, name, kind: 'table', columns: columns.map((c, i) => ({ name: c, attnum: i + 1, typeOid: 25 })), ...extra };
}
function view(schema: string, name: string, columns: string[], definition: string): RelationInfo {
  return rel(schema, name, columns, { kind: 'view', definition });
}

export const RELATIONS: RelationInfo[] = [
  rel('public', 'customers', ['id', 'full_name', 'ssn', 'email', 'credit_score', 'created_at']),
  rel('public', 'accounts', ['id', 'customer_id', 'account_number', 'balance']),
  rel('public', 'notes', ['id', 'body']),
  rel('public', 'vault', ['id', 'ssn_copy']),
  rel('archive', 'notes', ['id', 'ssn_hint']),
  rel('archive', 'accounts', ['id', 'customer_id', 'account_number', 'balance']),
  view('public', 'v_customers', ['id', 'ssn'], 'SELECT customers.id, customers.ssn FROM public.customers'),
  view('public', 'v_v', ['id', 'ssn'], 'SELECT v_customers.id, v_customers.ssn FROM public.v_customers'),
  view('public', 'v_upper', ['id', 's'], 'SELECT id, upper(ssn) AS s FROM public.customers'),
  view('public', 'v_filtered', ['id'], "SELECT id FROM public.customers WHERE ssn LIKE '1%'"),
  view('public', 'v_leaky', ['id', 'x'], 'SELECT id, public.leak(ssn) AS x FROM public.customers'),
  // A view column with a rule of its own (redact) over a partial one: a write lands in customers.ssn.
  view('archive', 'v_hint', ['id', 'ssn_hint'], 'SELECT customers.id, customers.ssn AS ssn_hint FROM public.customers'),
  // A system view over the function pg_stat_activity reads too, showing no statement text.
  view('pg_catalog', 'pg_stat_ssl', ['pid', 'ssl'], 'SELECT s.pid, s.ssl FROM pg_catalog.pg_stat_get_activity(NULL::integer) s(pid, ssl)'),
  // Constraints that read a column run on every row written (CHECK, FOREIGN KEY), as does a domain's check.
  rel('public', 'guarded', ['id', 'account_number', 'note'], { checks: ['account_number'] }),
  rel('public', 'keyed', ['id', 'customer_id', 'account_number'], { keys: ['customer_id'] }),
  rel('public', 'unique_acct', ['id', 'account_number', 'note'], { keys: ['account_number'] }),
  rel('public', 'unique_email', ['id', 'email'], { keys: ['email'] }),
  { ...rel('public', 'typed', ['id', 'account_number']), columns: [{ name: 'id', attnum: 1, typeOid: 23 }, { name: 'account_number', attnum: 2, typeOid: 90001, domain: true }] },
  view('public', 'v_loop_a', ['id'], 'SELECT id FROM public.v_loop_b'),
  view('public', 'v_loop_b', ['id'], 'SELECT id FROM public.v_loop_a'),
];

// A table customers inherits from (made outside hoop): no rule names its columns, but its rows include customers'.
RELATIONS.push(rel('public', 'people', ['id', 'ssn', 'full_name'], { children: [RELATIONS[0]!.oid] }));
RELATIONS[0]!.parents = [RELATIONS.at(-1)!.oid];

// A FOREIGN KEY from a column no rule protects to customers.ssn: writing a guess there looks it up.
RELATIONS.push(rel('public', 'orders', ['id', 'customer_ssn'], { keys: ['customer_ssn'], references: [{ column: 'customer_ssn', relation: RELATIONS[0]!.oid, referenced: 'ssn' }] }));

const RULES: { pattern: [string, string, string]; rule: MaskRule }[] = [
  { pattern: ['public', 'customers', 'ssn'], rule: { column: 'public.customers.ssn', type: 'ssn', method: 'partial', keep: 4 } },
  { pattern: ['*', '*', 'account_number'], rule: { column: '*.*.account_number', type: 'account_number', method: 'hash' } },
  { pattern: ['public', 'customers', 'credit_score'], rule: { column: 'public.customers.credit_score', type: 'credit_score', method: 'null' } },
  { pattern: ['public', 'customers', 'email'], rule: { column: 'public.customers.email', type: 'email', method: 'redact' } },
  { pattern: ['archive', 'notes', 'ssn_hint'], rule: { column: 'archive.notes.ssn_hint', type: 'ssn', method: 'redact' } },
  { pattern: ['archive', 'v_hint', 'ssn_hint'], rule: { column: 'archive.v_hint.ssn_hint', type: 'ssn', method: 'redact' } },
  { pattern: ['public', 'unique_email', 'email'], rule: { column: 'public.unique_email.email', type: 'email', method: 'redact' } },
  { pattern: ['public', 'vault', 'ssn_copy'], rule: { column: 'public.vault.ssn_copy', type: 'ssn', method: 'redact' } },
];

export const protection: ProtectionLookup = (schema, table, column) => {
  const part = (p: string, v: string) => p === '*' || p === v;
  return RULES.find((r) => part(r.pattern[0], schema) && part(r.pattern[1], table) && part(r.pattern[2], column))?.rule ?? null;
};

const BUILTINS = new Set([
  'upper', 'lower', 'substr', 'substring', 'replace', 'reverse', 'encode', 'convert_to', 'format', 'concat', 'row_to_json', 'to_jsonb', 'to_json',
  'array_agg', 'string_agg', 'json_agg', 'jsonb_agg', 'count', 'max', 'min', 'sum', 'avg', 'length', 'md5', 'generate_series', 'unnest',
  'json_to_recordset', 'jsonb_each', 'set_config', 'pg_notify', 'query_to_xml', 'table_to_xml', 'ts_stat', 'lo_from_bytea', 'pg_sleep',
  'pg_advisory_lock', 'row_number', 'rank', 'lag', 'percentile_disc', 'mode', 'now', 'current_setting', 'btrim', 'extract', 'date_part',
  'pg_logical_emit_message', 'setval', 'nextval', 'lpad', 'left', 'right', 'split_part', 'regexp_replace', 'translate', 'overlay', 'position',
]);
const SET_RETURNING = new Set(['generate_series', 'unnest', 'json_to_recordset', 'jsonb_each']);
const USER_FUNCTIONS: Record<string, string[]> = { leak: ['public'], safe_fn: ['public'], twice: ['public', 'util'], upper: [] };

export const schemaView: SchemaView = {
  relations: (schema, name) => RELATIONS.filter((r) => r.name === name && (schema === null || r.schema === schema)),
  relationByOid: (o) => RELATIONS.find((r) => r.oid === o),
  functionKind: (schema, name) => {
    if (schema === null) return (USER_FUNCTIONS[name]?.length ?? 0) > 0 ? 'user' : BUILTINS.has(name) ? 'builtin' : 'unknown';
    if (schema === 'pg_catalog') return BUILTINS.has(name) ? 'builtin' : 'unknown';
    return USER_FUNCTIONS[name]?.includes(schema) ? 'user' : 'unknown';
  },
  userFunctionSchemas: (name) => USER_FUNCTIONS[name] ?? [],
  returnsSet: (schema, name) => (schema === null || schema === 'pg_catalog') && SET_RETURNING.has(name),
  // A type named varchar outside pg_catalog (as a domain public.varchar would be).
  typeShadowed: (name) => name === 'varchar',
};

const TRUSTED = new Set(['public.safe_fn', 'public.twice']);

export function makeEnv(names: { prepared?: Record<string, OutputColumn[] | null>; cursors?: Record<string, OutputColumn[] | null> } = {}): AnalysisEnv {
  return {
    schema: schemaView,
    protection,
    names: {
      prepared: (n) => (names.prepared && n in names.prepared ? names.prepared[n] : undefined),
      cursor: (n) => (names.cursors && n in names.cursors ? names.cursors[n] : undefined),
    },
    trusted: (schema, name) => TRUSTED.has(`${schema}.${name}`),
  };
}

/** A taint as a short string for assertions: `clear`, `direct:<col>`, `derived:<cols>`, `unknown`. */
export function shape(t: Taint): string {
  if (t.unknown !== null) return 'unknown';
  if (t.sources.length === 0) return 'clear';
  const cols = t.sources.map((s) => s.column).sort().join(',');
  return t.direct ? `direct:${cols}` : `derived:${cols}`;
}
