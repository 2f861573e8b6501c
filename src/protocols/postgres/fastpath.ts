/**
 * Fastpath FunctionCall messages, decoded for the record: which function runs, and with what.
 *
 * A FunctionCall names its function by OID alone. The gateway can only say what runs for
 * functions whose OID it knows, so it knows the builtins libpq's large-object API calls (libpq
 * fe-lobj.c looks them up by name in pg_catalog; other fastpath clients use the same ones).
 * Builtin OIDs are fixed in pg_proc.dat and do not change across releases; the test suite checks
 * this table against pg_proc on a real server. A FunctionCall of any other OID cannot be named,
 * so the engine refuses it (fail closed).
 */
import { decodeParameter, Oid } from './params.js';

export interface FastpathFunction {
  /** Its name in pg_catalog. */
  name: string;
  /** Argument type OIDs, in order (pg_proc.proargtypes). */
  argTypes: number[];
  /** Result type OID (pg_proc.prorettype): how a binary result is read. */
  resultType: number;
}

const { int4, int8, bytea, oid } = Oid;

/** The builtins a fastpath FunctionCall may run, by OID (libpq's lo_* client functions). */
export const FASTPATH_FUNCTIONS: ReadonlyMap<number, FastpathFunction> = new Map<number, FastpathFunction>([
  [715, { name: 'lo_create', argTypes: [oid], resultType: oid }],
  [952, { name: 'lo_open', argTypes: [oid, int4], resultType: int4 }],
  [953, { name: 'lo_close', argTypes: [int4], resultType: int4 }],
  [954, { name: 'loread', argTypes: [int4, int4], resultType: bytea }],
  [955, { name: 'lowrite', argTypes: [int4, bytea], resultType: int4 }],
  [956, { name: 'lo_lseek', argTypes: [int4, int4, int4], resultType: int4 }],
  [957, { name: 'lo_creat', argTypes: [int4], resultType: oid }],
  [958, { name: 'lo_tell', argTypes: [int4], resultType: int4 }],
  [964, { name: 'lo_unlink', argTypes: [oid], resultType: int4 }],
  [1004, { name: 'lo_truncate', argTypes: [int4, int4], resultType: int4 }],
  [3170, { name: 'lo_lseek64', argTypes: [int4, int8, int4], resultType: int8 }],
  [3171, { name: 'lo_tell64', argTypes: [int4], resultType: int8 }],
  [3172, { name: 'lo_truncate64', argTypes: [int4, int8], resultType: int4 }],
]);

export interface FunctionCallDescription {
  /** The function's name, or null when the OID is not a known builtin (the engine refuses it). */
  name: string | null;
  /** What the record shows as the statement: the SQL equivalent of the call. */
  statement: string;
  /** Arguments decoded by the function's argument types (text format as sent; unknown as `\x` hex). */
  parameters: unknown[];
  /** The function as known, for the result's type; null when unknown. */
  function: FastpathFunction | null;
}

/**
 * The record of one FunctionCall: `SELECT pg_catalog.lo_open($1, $2)` with its arguments decoded
 * (int4/int8/oid/bytea binary values read by the function's argument types). Placeholders follow
 * the arguments sent: a call with the wrong number of them is refused by the server before
 * anything runs ("function call message contains N arguments but function requires M").
 */
export function describeFunctionCall(fnOid: number, formats: number[], values: (Buffer | null)[]): FunctionCallDescription {
  const fn = FASTPATH_FUNCTIONS.get(fnOid) ?? null;
  const parameters = values.map((v, i) => decodeParameter(v, formats[i] ?? 0, fn?.argTypes[i]));
  if (!fn) return { name: null, statement: `-- FunctionCall oid ${fnOid} (not a known builtin)`, parameters, function: null };
  const placeholders = values.map((_, i) => `$${i + 1}`).join(', ');
  return { name: fn.name, statement: `SELECT pg_catalog.${fn.name}(${placeholders})`, parameters, function: fn };
}
