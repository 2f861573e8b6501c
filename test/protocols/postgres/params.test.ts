import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { decodeParameter, Oid } from '../../../src/protocols/postgres/params.js';
import { passwordOf } from '../../helpers/postgres.js';

const upstream = inject('upstream');

/** Fetches a value's binary wire form (via its type's send function) and text form from PostgreSQL. */
let client: pg.Client;
async function wire(expr: string): Promise<{ binary: Buffer; text: string; oid: number }> {
  const raw = { getTypeParser: () => (v: unknown) => v };
  const meta = await client.query(`SELECT pg_typeof(${expr})::oid::int AS oid, (SELECT typsend::text FROM pg_type WHERE oid = pg_typeof(${expr})) AS send`);
  const { oid, send } = meta.rows[0] as { oid: number; send: string };
  const bin = await client.query(`SELECT ${send}(${expr}) AS b`);
  const txt = await client.query({ text: `SELECT ${expr} AS v`, types: raw } as pg.QueryConfig);
  return { binary: bin.rows[0].b as Buffer, text: String(txt.rows[0].v), oid };
}

beforeAll(async () => {
  client = new pg.Client({ host: upstream.host, port: upstream.port, user: upstream.users.scram, password: passwordOf(upstream.users.scram), database: upstream.database });
  await client.connect();
  await client.query(`SET TimeZone = 'UTC'; SET extra_float_digits = 1`);
});
afterAll(async () => client?.end());

describe('decodeParameter', () => {
  it('text format is the UTF-8 string; NULL is null', () => {
    expect(decodeParameter(Buffer.from('héllo'), 0, Oid.int4)).toBe('héllo');
    expect(decodeParameter(null, 1, Oid.int4)).toBeNull();
  });

  const sameAsText = [
    `'héllo'::text`, `'abc'::varchar`, `'ab'::char(4)`, `'relname'::name`,
    `'{"a": [1, 2]}'::json`, `'{"b": 1, "a": [1, 2]}'::jsonb`,
    `123.4500::numeric`, `-0.00001234::numeric`, `'NaN'::numeric`, `0::numeric`, `1000000::numeric`, `-98765.4321::numeric(12,6)`,
    `'00000000-1111-2222-3333-444444444444'::uuid`, `'2024-02-29'::date`, `'infinity'::date`, `'1999-12-31'::date`,
    `'2024-01-02 03:04:05.123456'::timestamp`, `'1970-01-01 00:00:00'::timestamp`, `'2024-01-02 03:04:05.5+00'::timestamptz`,
    `'\\x00ff10'::bytea`, `9223372036854775807::int8`, `(-9223372036854775808)::int8`,
  ];
  it.each(sameAsText)('binary %s decodes to its PostgreSQL text form', async (expr) => {
    const w = await wire(expr);
    expect(decodeParameter(w.binary, 1, w.oid)).toBe(w.text);
  });

  it.each([
    [`true`, true], [`false`, false], [`(-32768)::int2`, -32768], [`2147483647::int4`, 2147483647],
    [`1.5::float4`, 1.5], [`-2.25::float8`, -2.25], [`'NaN'::float8`, 'NaN'], [`'-Infinity'::float8`, '-Infinity'], [`4000000000::oid`, 4000000000],
  ])('binary %s decodes to %s', async (expr, expected) => {
    const w = await wire(expr);
    expect(decodeParameter(w.binary, 1, w.oid)).toEqual(expected);
  });

  it('unknown types and malformed binary values are kept as hex', () => {
    expect(decodeParameter(Buffer.from([1, 2, 3]), 1, 999999)).toBe('\\x010203');
    expect(decodeParameter(Buffer.from([1, 2, 3]), 1, undefined)).toBe('\\x010203');
    expect(decodeParameter(Buffer.from([1, 2, 3]), 1, Oid.int4)).toBe('\\x010203');
    expect(decodeParameter(Buffer.from([0, 1, 0, 0, 0, 0, 0, 0]), 1, Oid.numeric)).toBe('\\x0001000000000000');
  });
});
