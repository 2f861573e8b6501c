/**
 * "The record is the truth" in general, not only for the hand-made cases: random pipelines of
 * simple and extended messages (failing statements, Syncs and Flushes at random points, named
 * and unnamed statements and portals, multi-statement Queries, COPY in and out), each sent in
 * one write through the real tunnel. The oracle is PostgreSQL's own statement log and the bytes
 * the client received: every statement the server ran is in the record with its text, nothing
 * is recorded as run that the server did not run, and every row the client received is in the
 * record. The seed is printed on failure; the same seed gives the same pipelines.
 */
import { afterAll, beforeAll, expect, test } from 'vitest';
import { fe, rowsIn, type BackendMessage } from '../helpers/raw-client.js';
import { brief, recordedRows, ruleViolations } from '../helpers/record.js';
import { startTruth, type Truth } from '../helpers/truth.js';

let t: Truth;
beforeAll(async () => {
  t = await startTruth('hoop-truth-fuzz');
  await t.pg.sql('CREATE TABLE fz (n int)');
});
afterAll(async () => {
  await t?.stop();
});

/** mulberry32: small, fast, and the same everywhere. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = Math.imul(a ^ (a >>> 15), 1 | a);
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x;
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

/** A random pipeline, ending with a Sync and a marker Query whose row says the round is over. */
function pipeline(rand: () => number, round: number): Buffer[] {
  const pick = <T>(xs: T[]): T => xs[Math.floor(rand() * xs.length)]!;
  const n = () => Math.floor(rand() * 1000);
  const statement = () => pick([
    () => `SELECT ${n()} AS v`,
    () => `SELECT ${n()} AS a, 'r${round}' AS b UNION ALL SELECT ${n()}, 'x'`,
    () => `INSERT INTO fz VALUES (${n()})`,
    () => `SELECT 1/0 AS boom`,
    () => `SELECT * FROM no_such_table_${n()}`,
    () => `UPDATE fz SET n = n + 1 WHERE n = ${n()}`,
  ])();
  const frames: Buffer[] = [];
  const count = 3 + Math.floor(rand() * 8);
  for (let k = 0; k < count; k++) {
    const kind = rand();
    if (kind < 0.25) frames.push(fe.query(rand() < 0.3 ? `${statement()}; ${statement()}` : statement()));
    else if (kind < 0.75) {
      const named = rand() < 0.3 ? `s${round}_${k}` : '';
      const portal = rand() < 0.2 ? `p${round}_${k}` : '';
      frames.push(fe.parse(named, statement()), fe.bind(portal, named));
      if (rand() < 0.3) frames.push(fe.describe('P', portal));
      frames.push(fe.execute(portal));
      if (rand() < 0.15) frames.push(fe.flush());
    } else if (kind < 0.85) frames.push(fe.sync());
    else if (kind < 0.92) frames.push(fe.parse('', statement()), fe.describe('S', ''));
    else frames.push(fe.query(`COPY (SELECT ${n()} AS c) TO STDOUT`));
  }
  frames.push(fe.sync(), fe.query(`SELECT 'end of round ${round}' AS marker`));
  return frames;
}

test('random pipelines: the record agrees with the server log and with what the client received', async () => {
  const seed = Number(process.env['HOOP_FUZZ_SEED'] ?? Date.now() % 100000);
  const rand = prng(seed);
  const c = await t.open('fuzz');
  const received: (string | null)[][] = [];
  for (let round = 0; round < 25; round++) {
    const from = c.messages.length;
    c.send(Buffer.concat(pipeline(rand, round)));
    const marker = `end of round ${round}`;
    const r = await c.waitFor(from, (ms: BackendMessage[]) => ms.some((m) => m.type === 'D' && m.text?.[0] === marker) && ms.at(-1)?.type === 'Z', `round ${round} (seed ${seed})`, 30_000);
    received.push(...rowsIn(r.messages).filter((row) => row[0] !== marker));
  }
  const rec = await (async () => {
    await c.end();
    return t.record(c);
  })();
  const logged = await t.logged('fuzz');
  expect(ruleViolations(rec.statements, logged), `seed ${seed}: ${JSON.stringify(brief(rec.statements)).slice(0, 4000)}`).toEqual([]);
  // Every row the client received is in the record (COPY data as its line).
  const recorded = rec.statements.flatMap((s) => recordedRows(s)).map((row) => JSON.stringify(row.map((v) => (v ?? '').replace(/\n$/, ''))));
  const pool = new Map<string, number>();
  for (const k of recorded) pool.set(k, (pool.get(k) ?? 0) + 1);
  const missing = received.map((row) => JSON.stringify(row.map((v) => (v ?? '').replace(/\n$/, '')))).filter((k) => {
    const left = pool.get(k) ?? 0;
    if (left === 0) return true;
    pool.set(k, left - 1);
    return false;
  });
  expect(missing, `seed ${seed}: rows the client received that no record holds`).toEqual([]);
}, 120_000);
