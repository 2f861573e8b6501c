/**
 * The retention job's rules on a real SQLite store (src/audit/retention.ts): an events prune is
 * recorded before its delete, so a run cut short leaves a log that still verifies and the next
 * run finishes it without a second record; a failing payload prune still records what it
 * deleted; and the job never deletes past a start it cannot explain or a head whose hash differs
 * from the one signed; two replicas on one PostgreSQL store pruning at once delete each row once.
 * (On a real gateway with statements: test/gateway/retention.test.ts.)
 */
import { generateKeyPairSync, randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, afterEach, expect, inject, test } from 'vitest';
import { CheckpointSigner } from '../../src/audit/checkpoint.js';
import { SYSTEM_ACTOR, type UnsealedEvent } from '../../src/audit/event.js';
import { AuditRecorder } from '../../src/audit/recorder.js';
import { RetentionJob } from '../../src/audit/retention.js';
import { verifyStore } from '../../src/audit/verify.js';
import { openStore } from '../../src/store/index.js';
import type { Store } from '../../src/store/store.js';
import { createTestDatabase } from '../helpers/postgres.js';

const dir = mkdtempSync(join(tmpdir(), 'hoop-retention-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
writeFileSync(join(dir, 'signing.key'), generateKeyPairSync('ed25519').privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
const signer = CheckpointSigner.fromFile(join(dir, 'signing.key'));

const DAY = 86_400_000;
const T0 = Date.UTC(2020, 0, 1);
const open: Store[] = [];
afterEach(async () => {
  await Promise.all(open.splice(0).map((s) => s.close()));
});

const logger = { warn() {}, error() {}, info() {} };

/** A store with `days` days of history: each day two events (one with a payload) and a checkpoint of the head. */
async function history(days: number, url?: string): Promise<{ store: Store; path: string }> {
  const path = join(dir, `${randomUUID()}.db`);
  const store = await openStore(url ?? `sqlite:${path}`);
  open.push(store);
  for (let d = 0; d < days; d++) {
    const time = (h: number) => new Date(T0 + d * DAY + h * 3_600_000).toISOString();
    const ev = (h: number, over: Partial<UnsealedEvent> = {}): UnsealedEvent => ({ id: randomUUID(), time: time(h), type: 'query.end', actor: null, source: null, connection: 'bank', session_id: null, data: { d, h }, ...over });
    await store.appendEvents([ev(1), ev(2, { payload: { 'result.sets': [{ columns: ['d'], rows: [[String(d)]], tag: 'SELECT 1', statement: 0 }] } })]);
    const head = (await store.head())!;
    await store.appendEvents([ev(3, { type: 'checkpoint', actor: SYSTEM_ACTOR, connection: null, data: { ...signer.sign(head) } })]);
  }
  return { store, path };
}

function job(store: Store, now: number, over: Partial<ConstructorParameters<typeof RetentionJob>[0]> = {}) {
  const recorder = new AuditRecorder(store, { logger });
  return new RetentionJob({ store, recorder, logger, payloadsMs: null, eventsMs: 2 * DAY, now: () => now, ...over });
}

/** `store` with one method replaced (fault injection); everything else is the real store. */
function replacing<K extends keyof Store>(store: Store, name: K, fn: Store[K]): Store {
  return new Proxy(store, {
    get(target, prop) {
      if (prop === name) return fn;
      const v = Reflect.get(target, prop, target) as unknown;
      return typeof v === 'function' ? v.bind(target) : v;
    },
  });
}

const records = async (store: Store) => (await store.readEvents({ types: ['audit.pruned'] })).map((e) => e.data);

test('an events prune cut short is recorded already, still verifies, and the next run finishes it once', async () => {
  const { store } = await history(10);
  // Day d holds seqs 3d+1, 3d+2 (a payload) and 3d+3, the checkpoint of 3d+2. Day 7 12:00 less two
  // days: the newest checkpoint before day 5 12:00 is day 5's (seq 18), which signed seq 17.
  const now = T0 + 7 * DAY + 12 * 3_600_000;
  let batches = 0;
  const failing = replacing(store, 'pruneEvents', async (r) => {
    if (++batches > 1) throw new Error('the store went away');
    return store.pruneEvents({ ...r, limit: 4 });
  });
  expect((await job(failing, now).run()).events).toBeNull(); // the run failed (and logged it)...
  expect(await records(store)).toEqual([{ // ...after recording, before the delete, what it would delete
    kind: 'events', before: new Date(now - 2 * DAY).toISOString(), count: 16, first_seq: 1, last_seq: 16, new_first_seq: 17, anchor_checkpoint_seq: 18,
  }]);
  expect((await store.readEvents({ limit: 1 }))[0]!.seq).toBe(5); // 4 went, then the store failed
  expect(await verifyStore(store)).toMatchObject({ ok: true, pruned_start: { first_seq: 5 } });
  // The next run (a replica, or this gateway after a restart) finishes without recording again.
  expect((await job(store, now).run()).events).toBeNull();
  expect((await store.readEvents({ limit: 1 }))[0]!.seq).toBe(17);
  expect((await records(store)).filter((d) => d['kind'] === 'events')).toHaveLength(1);
  expect(await verifyStore(store)).toMatchObject({ ok: true, pruned_start: { first_seq: 17, checkpoint_seq: 18 } });
  // A day later, another prune: recorded again, from where the log starts now.
  expect((await job(store, now + DAY).run()).events).toMatchObject({ first_seq: 17, last_seq: 19, new_first_seq: 20, anchor_checkpoint_seq: 21 });
  expect(await verifyStore(store)).toMatchObject({ ok: true, first_seq: 20 });
});

test('a payload prune that fails midway still records what it deleted', async () => {
  const { store } = await history(6);
  let batches = 0;
  const failing = replacing(store, 'prunePayloads', async (r) => {
    if (++batches > 2) throw new Error('the store went away');
    return store.prunePayloads({ ...r, limit: 1 });
  });
  const outcome = await job(failing, T0 + 10 * DAY, { payloadsMs: DAY, eventsMs: null }).run();
  expect(outcome.payloads).toBeNull(); // the run failed...
  expect(await records(store)).toEqual([expect.objectContaining({ kind: 'payloads', count: 2, first_seq: 2, last_seq: 5 })]); // ...after recording what went
  expect(await verifyStore(store)).toMatchObject({ ok: true, payloads_pruned: 2 });
});

test('no events are pruned past a start nothing explains, nor up to a head whose hash differs from the one signed', async () => {
  const gap = await history(6);
  const db = new Database(gap.path);
  db.exec('DROP TRIGGER events_no_delete; DELETE FROM events WHERE seq < 3');
  expect((await job(gap.store, T0 + 8 * DAY).run()).events).toBeNull();
  expect((await gap.store.readEvents({ limit: 1 }))[0]!.seq).toBe(3);
  expect(await records(gap.store)).toEqual([]);
  // A rewritten head: the checkpoint of day 3 (seq 12) signed seq 11, which now reads otherwise.
  const rewritten = await history(6);
  const db2 = new Database(rewritten.path);
  db2.exec(`DROP TRIGGER events_no_update; UPDATE events SET hash = '${'0'.repeat(64)}' WHERE seq = 11`);
  expect((await job(rewritten.store, T0 + 5 * DAY + 12 * 3_600_000).run()).events).toBeNull();
  expect((await rewritten.store.readEvents({ limit: 1 }))[0]!.seq).toBe(1);
  db.close();
  db2.close();
});

test('two replicas on one PostgreSQL store pruning at once: each row goes once, the log verifies, the records add up', async () => {
  const db = await createTestDatabase(inject('upstream'), 'hoop_retention');
  try {
    const url = `postgres://${db.info.users.trust}@${db.info.host}:${db.info.port}/${db.info.database}`;
    const { store: a } = await history(12, url);
    const b = await openStore(url);
    open.push(b);
    const now = T0 + 10 * DAY + 12 * 3_600_000; // payloads before day 9 12:00, events before day 8 12:00
    const both = await Promise.all([a, b].map((s) => job(s, now, { payloadsMs: DAY, eventsMs: 2 * DAY }).run()));
    // Events of days 0..7 and day 8's first (the newest checkpoint before the cutoff, seq 27, signed 26): the log starts at 26.
    expect((await a.readEvents({ limit: 1 }))[0]!.seq).toBe(26);
    const report = await verifyStore(b);
    expect(report).toMatchObject({ ok: true, first_seq: 26, pruned_start: { first_seq: 26, checkpoint_seq: 27 } });
    // Payloads of days 0..9 (seqs 2, 5, …, 29): each deleted by one replica, the counts add up.
    const records = (await a.readEvents({ types: ['audit.pruned'] })).map((e) => e.data);
    const payloads = records.filter((d) => d['kind'] === 'payloads');
    expect(payloads.reduce((n, d) => n + (d['count'] as number), 0)).toBe(10);
    expect(both.map((o) => o.payloads?.count ?? 0).reduce((x, y) => x + y)).toBe(10);
    // The events prune is recorded once, or by both with the same range; nothing else.
    const events = records.filter((d) => d['kind'] === 'events');
    expect(events.length).toBeGreaterThanOrEqual(1);
    for (const d of events) expect(d).toMatchObject({ first_seq: 1, last_seq: 25, new_first_seq: 26, anchor_checkpoint_seq: 27 });
    expect(report.payloads_pruned).toBe(2); // days 8 and 9 (seqs 26, 29) remain as events, their payloads gone
  } finally {
    await Promise.all(open.splice(0).map((s) => s.close()));
    await db.drop();
  }
});
