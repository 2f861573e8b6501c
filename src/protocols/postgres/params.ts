/**
 * Decodes bound parameter values for the audit record (never for execution: upstream gets the
 * original bytes). Text format values are UTF-8 strings; binary values are decoded by type OID
 * (from Parse, or from the ParameterDescription PostgreSQL sent for the statement); anything
 * unknown or malformed is kept as `\x` hex so that nothing is lost or invented.
 */

// Type OIDs from pg_type.dat.
export const Oid = {
  bool: 16, bytea: 17, name: 19, int8: 20, int2: 21, int4: 23, text: 25, oid: 26,
  json: 114, float4: 700, float8: 701, bpchar: 1042, varchar: 1043, date: 1082,
  timestamp: 1114, timestamptz: 1184, numeric: 1700, uuid: 2950, jsonb: 3802,
} as const;

export const hex = (b: Buffer): string => '\\x' + b.toString('hex');

/** Microseconds between 1970-01-01 and the PostgreSQL epoch 2000-01-01. */
const PG_EPOCH_MS = Date.UTC(2000, 0, 1);

export function decodeParameter(value: Buffer | null, format: number, typeOid: number | undefined): unknown {
  if (value === null) return null;
  if (format === 0) return value.toString('utf8');
  try {
    return decodeBinary(value, typeOid ?? 0) ?? hex(value);
  } catch {
    return hex(value);
  }
}

function decodeBinary(v: Buffer, oid: number): unknown {
  switch (oid) {
    case Oid.bool:
      return v.length === 1 ? v[0] !== 0 : undefined;
    case Oid.int2:
      return v.length === 2 ? v.readInt16BE(0) : undefined;
    case Oid.int4:
      return v.length === 4 ? v.readInt32BE(0) : undefined;
    case Oid.oid:
      return v.length === 4 ? v.readUInt32BE(0) : undefined;
    case Oid.int8:
      return v.length === 8 ? v.readBigInt64BE(0).toString() : undefined; // exact, JSON-safe
    case Oid.float4:
      return v.length === 4 ? jsonNumber(v.readFloatBE(0)) : undefined;
    case Oid.float8:
      return v.length === 8 ? jsonNumber(v.readDoubleBE(0)) : undefined;
    case Oid.text: case Oid.varchar: case Oid.bpchar: case Oid.name: case Oid.json:
      return v.toString('utf8');
    case Oid.jsonb:
      return v.length >= 1 && v[0] === 1 ? v.toString('utf8', 1) : undefined; // version 1 prefix
    case Oid.bytea:
      return hex(v);
    case Oid.uuid:
      return v.length === 16 ? formatUuid(v.toString('hex')) : undefined;
    case Oid.date:
      return v.length === 4 ? formatDate(v.readInt32BE(0)) : undefined;
    case Oid.timestamp:
      return v.length === 8 ? formatTimestamp(v.readBigInt64BE(0), false) : undefined;
    case Oid.timestamptz:
      return v.length === 8 ? formatTimestamp(v.readBigInt64BE(0), true) : undefined;
    case Oid.numeric:
      return decodeNumeric(v);
    default:
      return undefined;
  }
}

/** NaN and infinities are not JSON: keep them as their PostgreSQL spelling. */
function jsonNumber(n: number): number | string {
  if (Number.isNaN(n)) return 'NaN';
  if (!Number.isFinite(n)) return n > 0 ? 'Infinity' : '-Infinity';
  return n;
}

function formatUuid(h: string): string {
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

function formatDate(days: number): string {
  if (days === 0x7fffffff) return 'infinity';
  if (days === -0x80000000) return '-infinity';
  return new Date(PG_EPOCH_MS + days * 86_400_000).toISOString().slice(0, 10);
}

function formatTimestamp(micros: bigint, tz: boolean): string | undefined {
  if (micros === 0x7fffffffffffffffn) return 'infinity';
  if (micros === -0x8000000000000000n) return '-infinity';
  const ms = Number(micros / 1000n) - (micros % 1000n < 0n ? 1 : 0);
  const sub = ((micros % 1_000_000n) + 1_000_000n) % 1_000_000n;
  const d = new Date(PG_EPOCH_MS + ms);
  if (Number.isNaN(d.getTime())) return undefined;
  const base = d.toISOString().slice(0, 19).replace('T', ' ');
  const frac = sub === 0n ? '' : '.' + sub.toString().padStart(6, '0').replace(/0+$/, '');
  return base + frac + (tz ? '+00' : '');
}

/** numeric binary: ndigits, weight, sign, dscale, then base-10000 digits. */
function decodeNumeric(v: Buffer): string | undefined {
  if (v.length < 8) return undefined;
  const ndigits = v.readInt16BE(0);
  const weight = v.readInt16BE(2);
  const sign = v.readUInt16BE(4);
  const dscale = v.readInt16BE(6);
  if (ndigits < 0 || v.length !== 8 + ndigits * 2 || dscale < 0) return undefined;
  if (sign === 0xc000) return 'NaN';
  if (sign === 0xd000) return 'Infinity';
  if (sign === 0xf000) return '-Infinity';
  if (sign !== 0 && sign !== 0x4000) return undefined;
  const digits: number[] = [];
  for (let i = 0; i < ndigits; i++) {
    const d = v.readInt16BE(8 + i * 2);
    if (d < 0 || d > 9999) return undefined;
    digits.push(d);
  }
  let intPart = '';
  for (let i = 0; i <= weight; i++) intPart += (i === 0 ? String(digits[i] ?? 0) : String(digits[i] ?? 0).padStart(4, '0'));
  if (intPart === '') intPart = '0';
  let frac = '';
  for (let i = Math.max(0, weight + 1); i < ndigits; i++) {
    frac += String(digits[i]).padStart(4, '0');
  }
  // Leading zero groups when weight < -1 (e.g. 0.00001234).
  if (weight < -1) frac = '0000'.repeat(-weight - 1) + frac;
  frac = frac.padEnd(dscale, '0').slice(0, dscale);
  const body = dscale > 0 ? `${intPart}.${frac}` : intPart;
  return sign === 0x4000 && /[1-9]/.test(body) ? `-${body}` : body;
}
