/**
 * The masking plan: from an analysis and the server's RowDescription to per-column transforms,
 * and the refusals. A property test runs random rows through the plan's transforms and the
 * engine's own DataRow rewriting: no protected value ever comes out, and every column the plan
 * leaves alone comes out byte-identical.
 */
import { beforeAll, describe, expect, test } from 'vitest';
import { createScrubber } from '../../../src/policy/masking/detectors.js';
import { analyzeQuery } from '../../../src/policy/masking/lineage.js';
import { loadParser } from '../../../src/policy/masking/parse.js';
import { joinTaints, planMasking, type DescribedColumn, type MaskingRun } from '../../../src/policy/masking/plan.js';
import type { MaskingConfig, Taint } from '../../../src/policy/masking/types.js';
import { transformDataRow } from '../../../src/protocols/postgres/transform.js';
import { applyTransform } from '../../../src/protocols/value-sink.js';
import { RELATIONS, makeEnv } from './lineage-fixture.js';

beforeAll(loadParser);

const CONFIG: MaskingConfig = { columns: [], detectors: ['ssn', 'card_number', 'iban', 'email'], exempt: [], predicates: 'deny', trustedFunctions: [] };
const KEY = Buffer.alloc(32, 1);
const TEXT = 25;
const customers = RELATIONS.find((r) => r.schema === 'public' && r.name === 'customers')!;

function plan(sql: string, config: MaskingConfig = CONFIG) {
  const env = makeEnv();
  return planMasking({ analysis: analyzeQuery(sql, env), config, env, key: KEY, scrubber: createScrubber(config.detectors), connection: 'bank' });
}

function run(sql: string): MaskingRun {
  const p = plan(sql);
  if (p.action !== 'run') throw new Error(`refused: ${p.message}`);
  return p;
}

const col = (name: string, origin: { oid: number; attnum: number } | null = null): DescribedColumn =>
  ({ name, tableOid: origin?.oid ?? 0, column: origin?.attnum ?? 0, typeOid: TEXT, format: 0 });
const ofCustomers = (name: string) => col(name, { oid: customers.oid, attnum: customers.columns.find((c) => c.name === name)!.attnum });

function apply(p: MaskingRun, columns: DescribedColumn[], values: (string | null)[]): { out: (string | null)[]; tallies: Record<string, number> } {
  const tallies: Record<string, number> = {};
  const transforms = p.columns(columns, { statement: 0, tally: (label, n = 1) => (tallies[label] = (tallies[label] ?? 0) + n) });
  const out = values.map((v, i) => {
    if (v === null || !transforms[i]) return v;
    const r = applyTransform(transforms[i]!, Buffer.from(v), 0);
    return r === null ? null : r.toString();
  });
  return { out, tallies };
}

describe('refusals', () => {
  test('a predicate on a protected column is refused with the action named; allow lets it run', () => {
    expect(plan("SELECT id FROM customers WHERE ssn LIKE '1%'")).toMatchObject({ action: 'refuse', code: '42501', message: expect.stringContaining('protected column public.customers.ssn in a WHERE condition, which reveals its values one guess at a time (masking.predicates is deny on connection bank)') });
    // require_approval: it runs masked once approved; the gateway's hold takes it from here.
    expect(plan("SELECT id FROM customers WHERE ssn LIKE '1%'", { ...CONFIG, predicates: 'require_approval' })).toMatchObject({ action: 'run', approvalRequired: expect.stringContaining('protected column public.customers.ssn in a WHERE condition') });
    expect(plan("SELECT id FROM customers WHERE ssn LIKE '1%'", { ...CONFIG, predicates: 'allow' })).toMatchObject({ action: 'run' });
  });

  test('lineage the gateway cannot follow, and text it cannot parse', () => {
    expect(plan('DO $$ BEGIN END $$')).toMatchObject({ action: 'refuse', code: '42501' });
    expect(plan('SELEC 1')).toMatchObject({ action: 'refuse', code: '42601', message: expect.stringContaining('cannot parse') });
  });
});

describe('columns', () => {
  test('analysis and RowDescription agree: direct columns get their rule, the rest pass', () => {
    const p = run('SELECT id, ssn, email, credit_score FROM customers');
    const { out, tallies } = apply(p, [ofCustomers('id'), ofCustomers('ssn'), ofCustomers('email'), ofCustomers('credit_score')], ['7', '123-45-6789', 'a@b.io', '700']);
    expect(out).toEqual(['7', '***-**-6789', '****', null]);
    expect(tallies).toEqual({ 'ssn (partial)': 1, 'email (redact)': 1, 'credit_score (null)': 1 });
  });

  test('a derived value is redacted, even where partial is configured', () => {
    expect(apply(run('SELECT reverse(ssn) AS r FROM customers'), [col('r')], ['9876-54-321']).out).toEqual(['****']);
  });

  test('the server naming a protected column wins over an analysis that found nothing', () => {
    // The analysis says clear (a constant), the RowDescription says customers.ssn: masked.
    expect(apply(run("SELECT 'x' AS s"), [ofCustomers('ssn')], ['123-45-6789']).out).toEqual(['***-**-6789']);
  });

  test('more columns than the analysis found: every one the server cannot name is masked', () => {
    const { out } = apply(run('SELECT id FROM customers'), [ofCustomers('id'), col('extra')], ['1', 'secret']);
    expect(out).toEqual(['1', '****']);
  });

  test('a clear column goes through the detectors; a clean value is byte-identical', () => {
    const { out, tallies } = apply(run('SELECT full_name FROM customers'), [ofCustomers('full_name')], ['card 4111 1111 1111 1111']);
    expect(out).toEqual(['card **** **** **** ****']);
    expect(tallies).toEqual({ 'detector:card_number': 1 });
    const p = run('SELECT full_name FROM customers');
    const transform = p.columns([ofCustomers('full_name')], { statement: 0, tally: () => {} })[0]!;
    const clean = Buffer.from('Ada Lovelace');
    expect(applyTransform(transform, clean, 0)).toBe(clean);
  });

  test('a clear column of a type the detectors never scan gets no transform at all', () => {
    const p = run('SELECT id, full_name FROM customers');
    const [id, name] = p.columns([{ ...ofCustomers('id'), typeOid: 23 }, ofCustomers('full_name')], { statement: 0, tally: () => {} });
    expect(id).toBeNull(); // int4: the row can pass untouched
    expect(name).toBeTypeOf('function');
  });

  test('joinTaints: protected wins; a proven clear origin settles an unknown', () => {
    const clear: Taint = { sources: [], direct: false, unknown: null };
    const unknown: Taint = { sources: [], direct: false, unknown: 'x' };
    const ssn: Taint = { sources: [{ column: 'public.customers.ssn', rule: { column: 'public.customers.ssn', type: 'ssn', method: 'partial' } }], direct: true, unknown: null };
    expect(joinTaints(unknown, clear)).toEqual(clear);
    expect(joinTaints(ssn, clear)).toBe(ssn);
    expect(joinTaints(clear, ssn)).toBe(ssn);
    expect(joinTaints(clear, unknown)).toBe(unknown);
    expect(joinTaints(unknown, null)).toBe(unknown);
  });
});

/** A seeded PRNG (mulberry32): the same cases on every run. */
function prng(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

test('property: random rows through the plan and the engine never emit a protected value; untouched columns are byte-identical', () => {
  const rand = prng(7);
  const digits = (n: number) => Array.from({ length: n }, () => Math.floor(rand() * 10)).join('');
  const words = () => Array.from({ length: 1 + Math.floor(rand() * 4) }, () => ['alpha', 'ref', 'no', 'x1', 'Main St', '42', '-', 'ok'][Math.floor(rand() * 8)]).join(' ');
  const p = run('SELECT id, ssn, email, full_name, created_at FROM customers');
  const columns = ['id', 'ssn', 'email', 'full_name', 'created_at'].map(ofCustomers);
  const transforms = p.columns(columns, { statement: 0, tally: () => {} });
  for (let i = 0; i < 2_000; i++) {
    const ssn = `${digits(3)}-${digits(2)}-${digits(4)}`;
    const email = `user${digits(5)}@example${digits(2)}.org`;
    const values = [digits(1 + Math.floor(rand() * 6)), ssn, email, rand() < 0.2 ? `note ${ssn}` : words(), rand() < 0.5 ? null : `2026-0${1 + Math.floor(rand() * 9)}-1${digits(1)}`];
    const body = dataRowBody(values);
    const out = transformDataRow(body, transforms, [0])!; // the ssn always changes
    const text = out.toString('latin1');
    expect(text.includes(ssn)).toBe(false);
    expect(text.includes(email)).toBe(false);
    const fields = parseDataRow(out);
    expect(fields[1]).toBe(`***-**-${ssn.slice(-4)}`);
    expect(fields[0]).toBe(values[0]);
    expect(fields[4]).toBe(values[4]);
    if (!values[3]!.includes(ssn)) expect(fields[3]).toBe(values[3]);
  }
});

function dataRowBody(values: (string | null)[]): Buffer {
  const parts: Buffer[] = [Buffer.from([0, values.length])];
  for (const v of values) {
    const len = Buffer.alloc(4);
    len.writeInt32BE(v === null ? -1 : Buffer.byteLength(v));
    parts.push(len);
    if (v !== null) parts.push(Buffer.from(v));
  }
  return Buffer.concat(parts);
}

function parseDataRow(message: Buffer): (string | null)[] {
  const n = message.readInt16BE(5);
  const out: (string | null)[] = [];
  let at = 7;
  for (let i = 0; i < n; i++) {
    const len = message.readInt32BE(at);
    at += 4;
    out.push(len < 0 ? null : message.subarray(at, at + len).toString());
    if (len > 0) at += len;
  }
  return out;
}
