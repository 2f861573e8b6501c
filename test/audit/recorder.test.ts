import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, afterEach, describe, expect, inject, test, vi } from 'vitest';
import type { AuditEventDraft } from '../../src/audit/event.js';
import { AuditRecorder, type RecorderLogger } from '../../src/audit/recorder.js';
import { verifyStore } from '../../src/audit/verify.js';
import { AuditUnavailableError } from '../../src/errors.js';
import { openStore } from '../../src/store/index.js';
import type { SessionPageRequest, Store } from '../../src/store/store.js';
import { until } from '../helpers/poll.js';

const dir = mkdtempSync(join(tmpdir(), 'hoop-recorder-test-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A real store behind a handle that counts append calls, can slow or hold them, and can be swapped. */
class CountingStore implements Store {
  readonly batches: number[] = [];
  delayMs = 0;
  /** While set, appends wait for it: a batch in flight for as long as the test wants. */
  gate: Promise<void> | null = null;
  constructor(public target: Store) {}
  async appendEvents(events: Parameters<Store['appendEvents']>[0]) {
    this.batches.push(events.length);
    if (this.delayMs) await new Promise((r) => setTimeout(r, this.delayMs));
    await this.gate;
    return this.target.appendEvents(events);
  }
  /** Holds appends until the returned function is called. */
  hold(): () => void {
    let release!: () => void;
    this.gate = new Promise<void>((r) => (release = r)).then(() => void (this.gate = null));
    return release;
  }
  migrate() { return this.target.migrate(); }
  head() { return this.target.head(); }
  readEvents(f: Parameters<Store['readEvents']>[0]) { return this.target.readEvents(f); }
  listSessions(f: Parameters<Store['listSessions']>[0]) { return this.target.listSessions(f); }
  getSession(id: string) { return this.target.getSession(id); }
  readSessionEvents(id: string, page: SessionPageRequest) { return this.target.readSessionEvents(id, page); }
  readPayloads(seqs: readonly number[]) { return this.target.readPayloads(seqs); }
  readEventPage(page: Parameters<Store['readEventPage']>[0]) { return this.target.readEventPage(page); }
  readSinkCursor(sink: string) { return this.target.readSinkCursor(sink); }
  claimSinkLease(c: Parameters<Store['claimSinkLease']>[0]) { return this.target.claimSinkLease(c); }
  advanceSinkCursor(a: Parameters<Store['advanceSinkCursor']>[0]) { return this.target.advanceSinkCursor(a); }
  releaseSinkLease(sink: string, owner: string) { return this.target.releaseSinkLease(sink, owner); }
  prunePayloads(r: Parameters<Store['prunePayloads']>[0]) { return this.target.prunePayloads(r); }
  pruneEvents(r: Parameters<Store['pruneEvents']>[0]) { return this.target.pruneEvents(r); }
  newestCheckpointBefore(before: string) { return this.target.newestCheckpointBefore(before); }
  checkpointKeys(afterSeq: number) { return this.target.checkpointKeys(afterSeq); }
  requestKill(k: Parameters<Store['requestKill']>[0]) { return this.target.requestKill(k); }
  killsFor(ids: readonly string[]) { return this.target.killsFor(ids); }
  watchKills(wake: (id: string) => void) { return this.target.watchKills(wake); }
  enqueueNotification(n: Parameters<Store['enqueueNotification']>[0]) { return this.target.enqueueNotification(n); }
  claimNotifications(c: Parameters<Store['claimNotifications']>[0]) { return this.target.claimNotifications(c); }
  markNotificationDelivered(id: string, at: string) { return this.target.markNotificationDelivered(id, at); }
  markNotificationFailed(id: string, f: Parameters<Store['markNotificationFailed']>[1]) { return this.target.markNotificationFailed(id, f); }
  markNotificationDead(id: string, f: Parameters<Store['markNotificationDead']>[1]) { return this.target.markNotificationDead(id, f); }
  getNotification(id: string) { return this.target.getNotification(id); }
  createApprovalRequest(r: Parameters<Store['createApprovalRequest']>[0]) { return this.target.createApprovalRequest(r); }
  getApprovalRequest(id: string) { return this.target.getApprovalRequest(id); }
  listApprovalRequests(f: Parameters<Store['listApprovalRequests']>[0]) { return this.target.listApprovalRequests(f); }
  recordApprovalDecision(d: Parameters<Store['recordApprovalDecision']>[0]) { return this.target.recordApprovalDecision(d); }
  markApprovalUsed(id: string, at: string) { return this.target.markApprovalUsed(id, at); }
  expireApprovalRequests(now: string) { return this.target.expireApprovalRequests(now); }
  cancelApprovalRequest(id: string, at: string) { return this.target.cancelApprovalRequest(id, at); }
  activeGrant(subject: string, connection: string, now: string) { return this.target.activeGrant(subject, connection, now); }
  watchApprovals(wake: (id: string) => void) { return this.target.watchApprovals(wake); }
  close() { return this.target.close(); }
}

const toClose: Store[] = [];
afterEach(async () => {
  await Promise.all(toClose.splice(0).map((s) => s.close().catch(() => {})));
});

let files = 0;
async function fileStore(): Promise<{ path: string; store: CountingStore }> {
  const path = join(dir, `r-${++files}.db`);
  const store = new CountingStore(await openStore(`sqlite:${path}`));
  toClose.push(store);
  return { path, store };
}

function draft(data: Record<string, unknown>, over: Partial<AuditEventDraft> = {}): AuditEventDraft {
  return {
    type: 'query.start',
    actor: { subject: 'alice', email: null, groups: ['analysts'], auth_method: 'api_key' },
    source: { address: '127.0.0.1', application: 'psql' },
    connection: 'bank',
    session_id: 's-1',
    data,
    ...over,
  };
}

const quietLogger = (): RecorderLogger & { lines: { obj: object; msg: string }[] } => {
  const lines: { obj: object; msg: string }[] = [];
  return { lines, warn: (obj, msg) => lines.push({ obj, msg }) };
};

const nextTick = () => new Promise((r) => setImmediate(r));

describe('AuditRecorder group commit', () => {
  test('records arriving together go to the store in one appendEvents call', async () => {
    const { store } = await fileStore();
    const recorder = new AuditRecorder(store, { logger: quietLogger() });
    const events = await Promise.all(Array.from({ length: 200 }, (_, i) => recorder.record(draft({ i }))));
    expect(store.batches).toEqual([200]);
    expect(events.map((e) => e.seq)).toEqual(Array.from({ length: 200 }, (_, i) => i + 1));
    expect(events.map((e) => e.data['i'])).toEqual(Array.from({ length: 200 }, (_, i) => i));
  });

  test('records made while a batch is in flight wait and go together in the next call', async () => {
    const { store } = await fileStore();
    const release = store.hold();
    const recorder = new AuditRecorder(store, { logger: quietLogger() });
    const first = recorder.record(draft({ i: 0 }));
    await until(() => store.batches.length === 1); // in flight now, until released
    const rest: Promise<unknown>[] = [];
    for (let i = 1; i < 100; i++) {
      rest.push(recorder.record(draft({ i })));
      await nextTick(); // each from a different loop turn, as from different client sockets
    }
    expect(store.batches).toEqual([1]);
    release();
    await Promise.all([first, ...rest]);
    expect(store.batches).toEqual([1, 99]);
    expect(await verifyStore(store)).toMatchObject({ ok: true, events: 100 });
  });

  test('recordLater events ride with the next record() batch instead of paying their own', async () => {
    const { store } = await fileStore();
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] }); // the lazy timer's clock; I/O and setImmediate stay real
    try {
      const recorder = new AuditRecorder(store, { lazyFlushMs: 10_000 });
      recorder.recordLater(draft({ n: 1 }, { type: 'query.end' }));
      await vi.advanceTimersByTimeAsync(9_999); // up to just before lazyFlushMs
      await nextTick(); // where a drain of its own would have started
      expect(store.batches).toEqual([]);
      await recorder.record(draft({ n: 2 }));
      expect(store.batches).toEqual([2]);
    } finally {
      vi.useRealTimers();
    }
  });

  test('a lone recordLater event is written after lazyFlushMs, and flush() does not wait for the timer', async () => {
    const { store } = await fileStore();
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    try {
      const recorder = new AuditRecorder(store, { lazyFlushMs: 20 });
      recorder.recordLater(draft({ n: 1 }, { type: 'query.end' }));
      await vi.advanceTimersByTimeAsync(19);
      await nextTick();
      expect(store.batches).toEqual([]);
      await vi.advanceTimersByTimeAsync(1);
      await expect.poll(() => store.batches).toEqual([1]);
      await recorder.flush();
      const slow = new AuditRecorder(store, { lazyFlushMs: 60_000 });
      slow.recordLater(draft({ n: 2 }, { type: 'session.end' }));
      await slow.flush();
      expect(store.batches).toEqual([1, 1]);
    } finally {
      vi.useRealTimers();
    }
  });

  test('with a real PostgreSQL store, 8 clients recording in series share fsyncs', async () => {
    const upstream = inject('upstream');
    const name = `hoop_rec_${randomBytes(6).toString('hex')}`;
    const admin = new pg.Client({ host: upstream.host, port: upstream.port, user: upstream.users.trust, database: upstream.database });
    await admin.connect();
    await admin.query(`CREATE DATABASE ${name}`);
    try {
      const store = new CountingStore(await openStore(`postgres://${upstream.users.trust}@${upstream.host}:${upstream.port}/${name}`));
      const recorder = new AuditRecorder(store, { logger: quietLogger() });
      const client = async (c: number) => {
        for (let i = 0; i < 25; i++) await recorder.record(draft({ c, i }, { session_id: `s-${c}` }));
      };
      await Promise.all(Array.from({ length: 8 }, (_, c) => client(c)));
      expect(store.batches.reduce((a, b) => a + b, 0)).toBe(200);
      expect(store.batches.length).toBeLessThanOrEqual(50); // one call per statement would be 200
      expect(await verifyStore(store)).toMatchObject({ ok: true, events: 200 });
      for (let c = 0; c < 8; c++) {
        const own = (await store.readEvents({})).filter((e) => e.session_id === `s-${c}`).map((e) => e.data['i']);
        expect(own).toEqual(Array.from({ length: 25 }, (_, i) => i));
      }
      await store.close();
    } finally {
      await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await admin.end();
    }
  });
});

describe('AuditRecorder durability and failure', () => {
  test('record() resolves only once the event is durable: another connection already sees it', async () => {
    const { path, store } = await fileStore();
    const recorder = new AuditRecorder(store, { logger: quietLogger() });
    const e = await recorder.record(draft({ statement: 'select 1' }));
    const other = await openStore(`sqlite:${path}`);
    toClose.push(other);
    expect(await other.readEvents({})).toEqual([e]);
  });

  test('a failed batch rejects every record in it with AuditUnavailableError, and the next batch succeeds', async () => {
    const { path, store } = await fileStore();
    const logger = quietLogger();
    const recorder = new AuditRecorder(store, { logger });
    const [before] = await Promise.all([recorder.record(draft({ n: 'before' }))]);
    await store.target.close(); // the store goes down
    const outcomes = await Promise.allSettled(Array.from({ length: 5 }, (_, i) => recorder.record(draft({ n: `lost-${i}` }))));
    expect(store.batches).toEqual([1, 5]);
    for (const o of outcomes) {
      expect(o.status).toBe('rejected');
      const err = (o as PromiseRejectedResult).reason as AuditUnavailableError;
      expect(err).toBeInstanceOf(AuditUnavailableError);
      expect(err.code).toBe('HOOP_AUDIT_UNAVAILABLE');
      expect(err.message).toMatch(/could not be written.*closed/);
    }
    expect(logger.lines.map((l) => l.msg)).toEqual(['audit store append failed; the events of this batch were refused']);
    store.target = await openStore(`sqlite:${path}`); // and comes back
    const after = await Promise.all([recorder.record(draft({ n: 'after-1' })), recorder.record(draft({ n: 'after-2' }))]);
    expect(after.map((e) => e.seq)).toEqual([2, 3]);
    expect(after[0]!.prev_hash).toBe(before!.hash);
    const all = await store.readEvents({});
    expect(all.map((e) => e.data['n'])).toEqual(['before', 'after-1', 'after-2']);
    expect(await verifyStore(store)).toMatchObject({ ok: true });
  });

  test('the queue is bounded: past maxQueue, record() rejects at once', async () => {
    const { store } = await fileStore();
    store.delayMs = 20;
    const recorder = new AuditRecorder(store, { logger: quietLogger(), maxQueue: 10 });
    const accepted = Array.from({ length: 10 }, (_, i) => recorder.record(draft({ i })));
    await expect(recorder.record(draft({ i: 10 }))).rejects.toThrow(/audit queue is full/);
    await expect(recorder.record(draft({ i: 11 }))).rejects.toBeInstanceOf(AuditUnavailableError);
    expect((await Promise.all(accepted)).map((e) => e.seq)).toEqual(Array.from({ length: 10 }, (_, i) => i + 1));
    expect((await recorder.record(draft({ i: 12 }))).seq).toBe(11); // room again once drained
  });

  test('the queue is bounded in bytes too, and batches are cut by size', async () => {
    const { store } = await fileStore();
    store.delayMs = 20;
    const recorder = new AuditRecorder(store, { logger: quietLogger(), maxQueueBytes: 100_000, maxBatchBytes: 30_000 });
    const big = (i: number) => draft({ i, rows: [['x'.repeat(20_000)]] }, { type: 'query.end' });
    const accepted = Array.from({ length: 4 }, (_, i) => recorder.record(big(i)));
    await expect(recorder.record(big(4))).rejects.toThrow(/audit queue is full \(4 events, \d+ bytes/);
    expect((await Promise.all(accepted)).map((e) => e.seq)).toEqual([1, 2, 3, 4]);
    expect(store.batches).toEqual([1, 1, 1, 1]); // each over half of maxBatchBytes
    const huge = await recorder.record(draft({ rows: [['y'.repeat(150_000)]] })); // alone, an oversize event still goes
    expect(huge.seq).toBe(5);
  });

  test('maxBatch splits a burst into several appends, in order', async () => {
    const { store } = await fileStore();
    const recorder = new AuditRecorder(store, { logger: quietLogger(), maxBatch: 40 });
    const events = await Promise.all(Array.from({ length: 100 }, (_, i) => recorder.record(draft({ i }))));
    expect(store.batches).toEqual([40, 40, 20]);
    expect(events.map((e) => e.data['i'])).toEqual(events.map((e) => e.seq - 1));
  });
});

describe('AuditRecorder events', () => {
  test('order in the chain is the order of record() and recordLater() calls', async () => {
    const { store } = await fileStore();
    store.delayMs = 3;
    const recorder = new AuditRecorder(store, { logger: quietLogger() });
    const pending: Promise<unknown>[] = [];
    for (let i = 0; i < 300; i++) {
      if (i % 3 === 0) recorder.recordLater(draft({ i }, { type: 'query.end' }));
      else pending.push(recorder.record(draft({ i })));
      if (i % 7 === 0) await nextTick();
      if (i % 50 === 0) await new Promise((r) => setTimeout(r, 4));
    }
    await Promise.all(pending);
    await recorder.flush();
    const all = await store.readEvents({});
    expect(all.map((e) => e.data['i'])).toEqual(Array.from({ length: 300 }, (_, i) => i));
    expect(store.batches.length).toBeGreaterThan(1);
    expect(store.batches.length).toBeLessThan(300);
  });

  test('stamps a v7 uuid of the event time and an ISO UTC millisecond time, and snapshots the draft', async () => {
    const { store } = await fileStore();
    const recorder = new AuditRecorder(store, { logger: quietLogger() });
    const params = ['123-45-6789'];
    const d = draft({ statement: 'select $1', parameters: params, absent: undefined });
    const before = Date.now();
    const pendingEvent = recorder.record(d);
    params[0] = 'changed';
    d.connection = 'changed';
    const e = await pendingEvent;
    expect(e.id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(e.time).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/);
    expect(parseInt(e.id.replace(/-/g, '').slice(0, 12), 16)).toBe(Date.parse(e.time));
    expect(Date.parse(e.time)).toBeGreaterThanOrEqual(before - 1);
    expect(e.data).toEqual({ statement: 'select $1', parameters: ['123-45-6789'] });
    expect(e.connection).toBe('bank');
    expect((await store.readEvents({}))[0]).toEqual(e);
  });

  test('a draft that cannot be encoded is refused alone; the others in its batch are recorded', async () => {
    const { store } = await fileStore();
    const recorder = new AuditRecorder(store, { logger: quietLogger() });
    const [a, bad, c] = await Promise.allSettled([
      recorder.record(draft({ i: 1 })),
      recorder.record(draft({ i: 2, n: Number.NaN })),
      recorder.record(draft({ i: 3 })),
    ]);
    expect(a.status).toBe('fulfilled');
    expect(c.status).toBe('fulfilled');
    expect((bad as PromiseRejectedResult).reason).toBeInstanceOf(AuditUnavailableError);
    expect(((bad as PromiseRejectedResult).reason as Error).message).toMatch(/cannot be encoded.*\$\.data\.n is NaN/);
    expect((await store.readEvents({})).map((e) => e.data['i'])).toEqual([1, 3]);
  });

  test('recordLater never throws and logs failures without the event data', async () => {
    const { store } = await fileStore();
    const logger = quietLogger();
    const recorder = new AuditRecorder(store, { logger });
    expect(() => recorder.recordLater(draft({ secret: 'ssn 123-45-6789', n: Number.NaN }))).not.toThrow();
    await store.target.close();
    expect(() => recorder.recordLater(draft({ rows: [['4111111111111111']] }, { type: 'query.end', session_id: 's-9' }))).not.toThrow();
    await recorder.flush();
    await nextTick();
    const logged = JSON.stringify(logger.lines);
    expect(logger.lines.filter((l) => l.msg === 'audit event could not be recorded')).toHaveLength(2);
    expect(logger.lines.find((l) => (l.obj as { session_id?: string }).session_id === 's-9')?.obj).toMatchObject({ type: 'query.end', error: expect.stringMatching(/closed/) });
    expect(logged).not.toMatch(/123-45-6789|4111111111111111/);
  });

  test('flush waits for everything recorded before it', async () => {
    const { store } = await fileStore();
    store.delayMs = 10;
    const recorder = new AuditRecorder(store, { logger: quietLogger() });
    await recorder.flush(); // nothing pending: resolves
    for (let i = 0; i < 20; i++) recorder.recordLater(draft({ i }));
    await recorder.flush();
    expect((await store.head())!.seq).toBe(20);
  });
});
