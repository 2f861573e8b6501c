/**
 * The SQLite store writes in a worker thread: the gateway's event loop keeps turning while
 * commits wait for fsync (or for another writer's lock), and a dead worker fails closed.
 */
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { createServer, connect, type AddressInfo, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Worker } from 'node:worker_threads';
import Database from 'better-sqlite3';
import { afterAll, afterEach, describe, expect, test } from 'vitest';
import { sealEvent, verifyChain } from '../../src/audit/chain.js';
import type { AuditEvent } from '../../src/audit/event.js';
import { StoreError } from '../../src/errors.js';
import { openStore } from '../../src/store/index.js';
import type { SqliteStore } from '../../src/store/sqlite.js';
import type { Store } from '../../src/store/store.js';
import { until } from '../helpers/poll.js';
import { event } from './store-suite.js';

const dir = mkdtempSync(join(tmpdir(), 'hoop-sqlite-worker-test-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

let n = 0;
const open: Store[] = [];
async function fresh(): Promise<{ store: Store; path: string }> {
  const path = join(dir, `w-${++n}.db`);
  const store = await openStore(`sqlite:${path}`);
  open.push(store);
  return { store, path };
}
afterEach(async () => {
  await Promise.all(open.splice(0).map((s) => s.close()));
});

const workerOf = (store: Store) => (store as unknown as { worker: Worker }).worker;

/** Settles `p`, or fails the test if it is still pending after `ms`: a hung promise is the bug. */
function settledWithin<T>(p: Promise<T>, ms: number): Promise<PromiseSettledResult<T>> {
  return Promise.race([
    p.then(
      (value) => ({ status: 'fulfilled', value }) as const,
      (reason: unknown) => ({ status: 'rejected', reason }) as const,
    ),
    new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`still pending after ${ms} ms`)), ms).unref()),
  ]);
}

describe('SQLite store off the event loop', () => {
  test('timers and other sockets keep running while 200 appends are in flight', async () => {
    const { store } = await fresh();
    // Another "session": a loopback ping-pong that counts round trips.
    const server = createServer((s) => s.on('data', (b) => s.write(b)).on('error', () => {}));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const client: Socket = connect((server.address() as AddressInfo).port, '127.0.0.1').on('error', () => {});
    await new Promise((r) => client.once('connect', r));
    let pongs = 0;
    client.on('data', () => {
      pongs++;
      client.write('p');
    });
    client.write('p');
    let ticks = 0;
    const interval = setInterval(() => ticks++, 1);
    const ticksAtSettle: number[] = [];
    try {
      const startTicks = ticks;
      const startPongs = pongs;
      // As the recorder does under load: many appends queued at once, each one durable commit.
      const done = await Promise.all(
        Array.from({ length: 200 }, (_, i) =>
          store.appendEvents([event({ data: { i } })]).then((r) => {
            ticksAtSettle.push(ticks);
            return r;
          }),
        ),
      );
      expect(done.map(([e]) => e!.seq)).toEqual(Array.from({ length: 200 }, (_, i) => i + 1));
      // With a synchronous driver every commit ran inside appendEvents(): zero ticks, zero pongs.
      expect(ticks - startTicks).toBeGreaterThanOrEqual(20);
      expect(pongs - startPongs).toBeGreaterThanOrEqual(100);
      // The interval fired between appends, not only before the first or after the last.
      expect(new Set(ticksAtSettle).size).toBeGreaterThanOrEqual(20);
    } finally {
      clearInterval(interval);
      client.destroy();
      await new Promise((r) => server.close(r));
    }
    expect(verifyChain(await store.readEvents({}))).toEqual({ ok: true });
  });

  test('an append waiting for another writer\'s lock does not block the loop, then seals on the new head', async () => {
    const { store, path } = await fresh();
    const [first] = await store.appendEvents([event()]);
    // Another process on the same file holds the write lock and appends a correctly sealed event.
    const other = new Database(path);
    try {
      other.prepare('BEGIN IMMEDIATE').run();
      const theirs = sealEvent(event({ data: { who: 'other process' } }), 2, first!.hash);
      other
        .prepare('INSERT INTO events VALUES (@seq, @id, @time, @type, @actor, @source, @connection, @session_id, @data, @prev_hash, @hash, NULL)')
        .run({ ...theirs, actor: JSON.stringify(theirs.actor), source: JSON.stringify(theirs.source), data: JSON.stringify(theirs.data) });
      const pending = store.appendEvents([event({ data: { who: 'this store' } })]);
      let settled = false;
      void pending.then(() => (settled = true), () => (settled = true));
      let ticks = 0;
      const interval = setInterval(() => ticks++, 2);
      // The loop keeps turning while the store's worker waits (busy_timeout) for the lock; a
      // driver that waited on the loop's thread would have answered (or failed) first.
      await until(() => ticks >= 10, { what: 'ten timer ticks' });
      clearInterval(interval);
      expect(settled).toBe(false);
      other.prepare('COMMIT').run();
      const [mine] = await pending;
      // It had sealed on seq 1; under the lock it found seq 2 and sealed again after it.
      expect(mine!.seq).toBe(3);
      expect(mine!.prev_hash).toBe(theirs.hash);
    } finally {
      other.close();
    }
    const all = await store.readEvents({});
    expect(all.map((e) => e.data['who'] ?? null)).toEqual([null, 'other process', 'this store']);
    expect(verifyChain(all)).toEqual({ ok: true });
  });

  test('a worker that dies with appends in flight fails them with StoreError, fails closed, then a new one takes over', async () => {
    const { store, path } = await fresh();
    await store.appendEvents([event()]);
    const appends = Array.from({ length: 50 }, (_, i) => store.appendEvents([event({ data: { i } })]));
    await new Promise((r) => setImmediate(r));
    void workerOf(store).terminate(); // the thread is gone, whatever it was doing
    const results = await Promise.all(appends.map((p) => settledWithin(p, 5_000)));
    const rejected = results.filter((r) => r.status === 'rejected');
    expect(rejected.length).toBeGreaterThan(0);
    for (const r of rejected) {
      expect(r.reason).toBeInstanceOf(StoreError);
      expect((r.reason as StoreError).message).toMatch(/SQLite store .* is unavailable: its thread exited/);
    }
    // Later work is refused at once, not queued behind a thread that will never answer.
    const later: Promise<unknown>[] = [store.appendEvents([event()]), store.head(), store.readEvents({})];
    for (const p of later) {
      const r = await settledWithin(p, 500);
      expect(r.status).toBe('rejected');
      expect((r as PromiseRejectedResult).reason).toBeInstanceOf(StoreError);
    }
    // About a second later a new thread has the file open; appends continue on the real head,
    // whatever the dead thread committed before it went.
    const resumed = await until(() => store.appendEvents([event({ data: { resumed: true } })]).catch(() => null), {
      timeoutMs: 5_000,
      intervalMs: 100,
      what: 'an append on a new worker',
    });
    expect(resumed).toHaveLength(1);
    await store.close();
    // What was acknowledged is durable; the chain is intact.
    const reopened = await openStore(`sqlite:${path}`);
    open.push(reopened);
    const all = await reopened.readEvents({});
    expect(verifyChain(all)).toEqual({ ok: true });
    const acknowledged = results.flatMap((r) => (r.status === 'fulfilled' ? (r.value as AuditEvent[]) : []));
    for (const e of acknowledged) expect(all[e.seq - 1]).toEqual(e);
  });

  test('an uncaught exception in the worker is reported as a crash and rejects the pending append', async () => {
    const { store } = await fresh();
    // A message the worker cannot even answer: its handler throws outside any try.
    workerOf(store).postMessage(null);
    const r = await settledWithin(store.appendEvents([event()]), 5_000);
    expect(r.status).toBe('rejected');
    expect((r as PromiseRejectedResult).reason).toBeInstanceOf(StoreError);
    expect(((r as PromiseRejectedResult).reason as StoreError).message).toMatch(/unavailable: its thread (crashed|exited)/);
    await expect(store.head()).rejects.toBeInstanceOf(StoreError);
  });

  test('close() lets accepted appends finish first', async () => {
    const { store } = await fresh();
    const appends = Array.from({ length: 20 }, () => store.appendEvents([event()]));
    await store.close();
    const sealed = await Promise.all(appends);
    expect(sealed.map(([e]) => e!.seq)).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
    await expect(store.appendEvents([event()])).rejects.toThrow(/closed/);
  });

  test('a thread of its own copies the WAL into the file, so the writer never does; when it dies it comes back', async () => {
    const { store, path } = await fresh();
    const sqlite = store as SqliteStore;
    // The writer's own mark is out of reach of this test's appends (20,000 pages).
    expect(await sqlite.pragma('wal_autocheckpoint')).toBe(20_000);
    const fileBefore = statSync(path).size;
    const big = 'x'.repeat(2_000);
    for (let i = 0; i < 20; i++) await store.appendEvents(Array.from({ length: 10 }, () => event({ data: { big } })));
    // The pages reach the database file itself, not only the WAL: a checkpoint ran, and not the writer's.
    await until(() => statSync(path).size > fileBefore + 200 * 2_000 && sqlite.checkpoints > 0, { what: 'the file to hold the appended pages' });
    const reader = new Database(path, { readonly: true });
    try {
      expect((reader.prepare('SELECT count(*) AS n FROM events').get() as { n: number }).n).toBe(200);
    } finally {
      reader.close();
    }
    // Killed, it is started again (about a second later) and checkpoints again; appends never noticed.
    const thread = (store as unknown as { checkpointer: Worker }).checkpointer;
    await thread.terminate();
    const counted = sqlite.checkpoints;
    await store.appendEvents([event({ data: { big } })]);
    await until(() => (store as unknown as { checkpointer: Worker | null }).checkpointer !== null, { timeoutMs: 5_000, what: 'a new checkpoint thread' });
    for (let i = 0; i < 5; i++) await store.appendEvents(Array.from({ length: 10 }, () => event({ data: { big } })));
    await until(() => sqlite.checkpoints > counted, { timeoutMs: 5_000, what: 'a checkpoint by the new thread' });
    expect(verifyChain(await store.readEvents({}))).toEqual({ ok: true });
  });
});
