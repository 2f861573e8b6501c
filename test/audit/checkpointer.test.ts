/**
 * The Checkpointer with an injected clock (Date faked; timers stay real): replicas sharing one
 * log sign once per interval between them, not once each, whatever the offset of their timers.
 * Each replica is its own recorder and Checkpointer over one real store, as two gateway processes
 * on one PostgreSQL store are; ticks are driven by hand at chosen times.
 */
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeEach, expect, test, vi } from 'vitest';
import { CheckpointSigner } from '../../src/audit/checkpoint.js';
import { Checkpointer, checkpointSlackMs } from '../../src/audit/checkpointer.js';
import { SYSTEM_ACTOR } from '../../src/audit/event.js';
import { AuditRecorder } from '../../src/audit/recorder.js';
import { verifyStore } from '../../src/audit/verify.js';
import { openStore } from '../../src/store/index.js';
import type { Store } from '../../src/store/store.js';

const dir = mkdtempSync(join(tmpdir(), 'hoop-checkpointer-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const keyPath = join(dir, 'signing.key');
writeFileSync(keyPath, generateKeyPairSync('ed25519').privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
const signer = CheckpointSigner.fromFile(keyPath); // one shared key, as replicas share the Secret

const INTERVAL = 60_000;
const T0 = Date.parse('2026-06-01T00:00:00.000Z');
const silent = { warn() {} };

let store: Store;
beforeEach(async () => {
  vi.useFakeTimers({ toFake: ['Date'] });
  vi.setSystemTime(T0);
  store = await openStore('sqlite::memory:');
});
afterEach(async () => {
  await store.close();
  vi.useRealTimers();
});

interface Replica { recorder: AuditRecorder; checkpointer: Checkpointer }
function replica(by: CheckpointSigner = signer): Replica {
  const recorder = new AuditRecorder(store, { logger: silent });
  return { recorder, checkpointer: new Checkpointer({ store, recorder, signer: by, intervalMs: INTERVAL, logger: silent }) };
}
const traffic = (r: Replica, i: number) => r.recorder.record({ type: 'query.start', actor: SYSTEM_ACTOR, data: { i } });
const checkpoints = async () => (await store.readEvents({ types: ['checkpoint'] })).length;

/** Ticks of replicas at `offsets` (ms into each interval) for `intervals` intervals, with traffic before every tick. */
async function run(replicas: Replica[], offsets: number[], intervals: number, jitter: (k: number) => number = () => 0): Promise<void> {
  const ticks = replicas.flatMap((r, i) => Array.from({ length: intervals }, (_, k) => ({ r, at: k * INTERVAL + offsets[i]! + jitter(k) })));
  ticks.sort((x, y) => x.at - y.at);
  for (const [n, t] of ticks.entries()) {
    vi.setSystemTime(T0 + t.at);
    await traffic(t.r, n);
    await t.r.checkpointer.tick();
  }
}

test.each([
  { offset: 1_000, note: 'B just after A: A signs every interval' },
  { offset: 30_000, note: 'B half an interval behind' },
  { offset: INTERVAL - checkpointSlackMs(INTERVAL) + 1_000, note: 'B late enough to take over from A' },
])('two replicas, traffic throughout: one checkpoint per interval ($note)', async ({ offset }) => {
  const [a, b] = [replica(), replica()];
  const N = 10;
  await run([a, b], [0, offset], N);
  const count = await checkpoints();
  // Without the check both would sign at every tick: 2N.
  expect(count).toBeGreaterThanOrEqual(N);
  expect(count).toBeLessThanOrEqual(N + 1);
  expect(await verifyStore(store)).toMatchObject({ ok: true, checkpoints: count, key_ids: [signer.keyId] });
});

test('one replica whose ticks come a little early or late still signs every interval', async () => {
  const a = replica();
  const slack = checkpointSlackMs(INTERVAL);
  // Alternating early and late by almost half the slack: consecutive ticks as little as I - slack + 2 ms apart.
  await run([a], [0], 12, (k) => (k % 2 === 0 ? slack / 2 - 1 : -(slack / 2 - 1)) + slack);
  expect(await checkpoints()).toBe(12);
});

test('a recent checkpoint by another replica does not hold back the one at shutdown; an idle log gains none', async () => {
  const [a, b] = [replica(), replica()];
  await traffic(a, 1);
  await a.checkpointer.tick();
  expect(await checkpoints()).toBe(1);
  vi.setSystemTime(T0 + 5_000);
  await traffic(b, 2);
  await b.checkpointer.tick(); // within A's interval: left to A
  expect(await checkpoints()).toBe(1);
  await b.checkpointer.close(); // B stops: what it wrote is signed now
  expect(await checkpoints()).toBe(2);
  const [last] = await store.readEvents({ newestFirst: true, limit: 1 });
  expect(last).toMatchObject({ type: 'checkpoint', data: { seq: last!.seq - 1 } });
  // Idle: the head is a checkpoint, whatever the time.
  vi.setSystemTime(T0 + 10 * INTERVAL);
  await a.checkpointer.tick();
  await a.checkpointer.close();
  expect(await checkpoints()).toBe(2);
});

test('a replica with a key of its own still leaves a log that verifies; the report names both keys', async () => {
  const otherPath = join(dir, 'other.key');
  writeFileSync(otherPath, generateKeyPairSync('ed25519').privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
  const other = CheckpointSigner.fromFile(otherPath);
  const [a, b] = [replica(), replica(other)];
  await run([a, b], [0, INTERVAL - checkpointSlackMs(INTERVAL) + 1_000], 3); // B takes over from A's second interval
  const report = await verifyStore(store);
  expect(report).toMatchObject({ ok: true });
  expect([...report.key_ids].sort()).toEqual([signer.keyId, other.keyId].sort());
});

test('the slack is a quarter of the interval, at most 10 s', () => {
  expect(checkpointSlackMs(1_000)).toBe(250);
  expect(checkpointSlackMs(60_000)).toBe(10_000);
  expect(checkpointSlackMs(3_600_000)).toBe(10_000);
});
