/**
 * The one behavioural suite every Store implementation must pass. A backend's test file calls
 * `storeSuite()` with a harness that opens fresh, migrated stores on its own database.
 */
import { randomUUID } from 'node:crypto';
import { afterEach, describe, expect, test } from 'vitest';
import { EncodedEvent, GENESIS_HASH, canonicalJson, verifyChain } from '../../src/audit/chain.js';
import type { Actor, AuditEventType, UnsealedEvent } from '../../src/audit/event.js';
import { verifyStore } from '../../src/audit/verify.js';
import { StoreError, UsageError } from '../../src/errors.js';
import type { ApprovalRequest, NotificationDraft, Store } from '../../src/store/store.js';

type AuditEventLike = { seq: number; data: Record<string, unknown> };

export interface StoreHarness {
  /** A fresh, migrated, empty store on a database of its own. */
  fresh(): Promise<Store>;
  /** Another Store instance on the same database as `store` (a second gateway replica). */
  another(store: Store): Promise<Store>;
  /** Runs raw SQL on `store`'s database, bypassing the Store interface (to play the attacker). */
  sql(store: Store, statement: string): Promise<void>;
  /** The JSON columns of every event as stored (text), in seq order. */
  jsonColumns(store: Store): Promise<{ actor: string | null; source: string | null; data: string }[]>;
  dialect: 'sqlite' | 'postgres';
}

const alice: Actor = { subject: 'alice', email: 'alice@bank.example', groups: ['analysts'], auth_method: 'api_key' };
const bob: Actor = { subject: 'bob', email: null, groups: ['dba', 'ops'], auth_method: 'oidc' };

let clock = Date.UTC(2026, 0, 1, 9, 0, 0);
function at(iso?: string): string {
  return iso ?? new Date((clock += 1000)).toISOString();
}

export function event(over: Partial<UnsealedEvent> & { type?: AuditEventType } = {}): UnsealedEvent {
  return {
    id: randomUUID(),
    time: at(),
    type: 'config.loaded',
    actor: alice,
    source: { address: '127.0.0.1', application: 'psql' },
    connection: 'bank',
    session_id: null,
    data: { n: 1 },
    ...over,
  };
}

export function storeSuite(h: StoreHarness): void {
  const open: Store[] = [];
  const fresh = async (): Promise<Store> => {
    const s = await h.fresh();
    open.push(s);
    return s;
  };
  const another = async (s: Store): Promise<Store> => {
    const t = await h.another(s);
    open.push(t);
    return t;
  };
  afterEach(async () => {
    await Promise.all(open.splice(0).map((s) => s.close()));
  });

  describe('audit events', () => {
    test('append seals at the head and reads back exactly what it returned', async () => {
      const store = await fresh();
      expect(await store.head()).toBeNull();
      const first = await store.appendEvents([event(), event({ actor: null, source: null, connection: null })]);
      const second = await store.appendEvents([event({ type: 'auth.failed', data: { reason: 'bad key' } })]);
      expect(first.map((e) => e.seq)).toEqual([1, 2]);
      expect(first[0]!.prev_hash).toBe(GENESIS_HASH);
      expect(first[1]!.prev_hash).toBe(first[0]!.hash);
      expect(second[0]!.seq).toBe(3);
      expect(second[0]!.prev_hash).toBe(first[1]!.hash);
      const read = await store.readEvents({});
      expect(read).toEqual([...first, ...second]);
      expect(verifyChain(read)).toEqual({ ok: true });
      expect(await store.head()).toEqual({ seq: 3, hash: second[0]!.hash });
    });

    test('an empty batch writes nothing', async () => {
      const store = await fresh();
      expect(await store.appendEvents([])).toEqual([]);
      expect(await store.head()).toBeNull();
    });

    test('awkward values round-trip without breaking the hash', async () => {
      const store = await fresh();
      const data = {
        statement: "select 'é中文😀', E'\\\\x00'",
        nul: 'a\u0000b',
        quote: 'he said "hi" \\ back',
        big: 9007199254740991,
        small: -1.5e-300,
        empty: {},
        list: [],
        nested: { z: [null, true, { y: 'x' }], a: 0 },
        rows: [['1', null], ['\\x00ff', 'tab\there']],
      };
      await store.appendEvents([event({ data, actor: { ...bob, email: undefined } as Actor })]);
      const [e] = await store.readEvents({});
      expect(e!.data).toEqual(data);
      expect(verifyChain([e!])).toEqual({ ok: true });
    });

    test('the JSON columns hold the canonical JSON the hash covers, and read back as the same values', async () => {
      const store = await fresh();
      const data = { '10': 'ten', '9': 'nine', z: [1, { b: null, a: 'é😀\u0000' }], when: new Date(0), gone: undefined };
      const plain = event({ data, actor: { ...bob, email: undefined } as Actor, source: null });
      const encoded = EncodedEvent.of(event({ data: { n: -0, nested: { y: 2, x: 1 } } }));
      const appended = await store.appendEvents([plain, encoded]);
      expect(await h.jsonColumns(store)).toEqual([
        { actor: canonicalJson(plain.actor), source: null, data: canonicalJson(data) },
        { actor: canonicalJson(encoded.actor), source: canonicalJson(encoded.source), data: '{"n":0,"nested":{"x":1,"y":2}}' },
      ]);
      const read = await store.readEvents({});
      expect(read).toEqual(appended);
      expect(read[0]!.data).toEqual({ '10': 'ten', '9': 'nine', z: [1, { b: null, a: 'é😀\u0000' }], when: '1970-01-01T00:00:00.000Z' });
      expect(read[0]!.actor).toEqual({ subject: 'bob', groups: ['dba', 'ops'], auth_method: 'oidc' });
      expect(verifyChain(read)).toEqual({ ok: true });
    });

    test('a batch with an event that cannot be sealed writes none of it', async () => {
      const store = await fresh();
      await store.appendEvents([event()]);
      const bad = event({ data: { n: Number.NaN } });
      await expect(store.appendEvents([event(), bad])).rejects.toBeInstanceOf(StoreError);
      expect((await store.head())!.seq).toBe(1);
      expect((await store.appendEvents([event()]))[0]!.seq).toBe(2);
    });

    test('500 concurrent appends keep one linear chain', async () => {
      const store = await fresh();
      const results = await Promise.all(Array.from({ length: 500 }, (_, i) => store.appendEvents([event({ data: { i } })])));
      const read = await store.readEvents({});
      expect(read).toHaveLength(500);
      expect(read.map((e) => e.seq)).toEqual(Array.from({ length: 500 }, (_, i) => i + 1));
      expect(verifyChain(read)).toEqual({ ok: true });
      for (const [sealed] of results) expect(read[sealed!.seq - 1]).toEqual(sealed);
      expect(new Set(read.map((e) => (e.data as { i: number }).i)).size).toBe(500);
    });

    test('two store instances on one database (two replicas) appending concurrently keep one chain', async () => {
      const a = await fresh();
      const b = await another(a);
      const work = (s: Store, who: string) =>
        Array.from({ length: 150 }, (_, i) => s.appendEvents(Array.from({ length: 1 + (i % 3) }, () => event({ data: { who, i } }))));
      await Promise.all([...work(a, 'a'), ...work(b, 'b')]);
      const read = await b.readEvents({});
      expect(read).toHaveLength(2 * (50 * 1 + 50 * 2 + 50 * 3));
      expect(verifyChain(read)).toEqual({ ok: true });
      expect(new Set(read.map((e) => (e.data as { who: string }).who))).toEqual(new Set(['a', 'b']));
      expect(await a.head()).toEqual(await b.head());
      expect(await verifyStore(a, { pageSize: 97 })).toMatchObject({ ok: true, events: read.length, last_seq: read.length });
    });

    test('read filters: afterSeq, beforeSeq, limit, since (inclusive) and until (exclusive)', async () => {
      const store = await fresh();
      const times = ['2026-03-01T10:00:00.000Z', '2026-03-01T11:00:00.000Z', '2026-03-01T12:00:00.000Z', '2026-03-01T13:00:00.000Z'];
      await store.appendEvents(times.map((t) => event({ time: t })));
      const seqs = async (f: Parameters<Store['readEvents']>[0]) => (await store.readEvents(f)).map((e) => e.seq);
      expect(await seqs({ afterSeq: 2 })).toEqual([3, 4]);
      expect(await seqs({ limit: 2 })).toEqual([1, 2]);
      expect(await seqs({ afterSeq: 1, limit: 2 })).toEqual([2, 3]);
      expect(await seqs({ since: '2026-03-01T11:00:00Z' })).toEqual([2, 3, 4]);
      expect(await seqs({ until: '2026-03-01T12:00:00.000Z' })).toEqual([1, 2]);
      expect(await seqs({ since: '2026-03-01T11:30:00+01:00', until: '2026-03-01T12:00:00.001Z' })).toEqual([2, 3]);
      expect(await seqs({ limit: 0 })).toEqual([]);
      expect(await seqs({ beforeSeq: 3 })).toEqual([1, 2]);
      expect(await seqs({ afterSeq: 1, beforeSeq: 4, newestFirst: true, limit: 1 })).toEqual([3]);
      await expect(store.readEvents({ since: 'yesterday-ish' })).rejects.toBeInstanceOf(UsageError);
      await expect(store.readEvents({ beforeSeq: 0 })).rejects.toBeInstanceOf(UsageError);
    });

    test('read filters by type: exact names and families (auth.*), oldest or newest first', async () => {
      const store = await fresh();
      const types: AuditEventType[] = ['auth.failed', 'access.denied', 'query.start', 'auth.succeeded', 'access.denied', 'session.start'];
      await store.appendEvents(types.map((type) => event({ type })));
      const seqs = async (f: Parameters<Store['readEvents']>[0]) => (await store.readEvents(f)).map((e) => e.seq);
      expect(await seqs({ types: ['access.denied'] })).toEqual([2, 5]);
      expect(await seqs({ types: ['access.denied', 'auth.failed'] })).toEqual([1, 2, 5]);
      expect(await seqs({ types: ['auth.*'] })).toEqual([1, 4]);
      expect(await seqs({ types: ['auth.*', 'session.start'], newestFirst: true })).toEqual([6, 4, 1]);
      expect(await seqs({ types: ['access.denied', 'auth.failed'], newestFirst: true, limit: 2 })).toEqual([5, 2]);
      expect(await seqs({ types: ['nothing.here'] })).toEqual([]);
      // `_` is not a wildcard in a family, nor is `%` an event type.
      await store.appendEvents([event({ type: 'authxfailed' as AuditEventType })]);
      expect(await seqs({ types: ['auth.*'] })).toEqual([1, 4]);
      for (const bad of [[], ['%'], ['auth%'], ['Auth.failed'], ["x' OR '1'='1"]]) await expect(store.readEvents({ types: bad })).rejects.toBeInstanceOf(UsageError);
    });

    test('migrate is idempotent and keeps the chain', async () => {
      const store = await fresh();
      const [e1] = await store.appendEvents([event()]);
      await store.migrate();
      await store.migrate();
      const [e2] = await store.appendEvents([event()]);
      expect(e2!.prev_hash).toBe(e1!.hash);
      expect(verifyChain(await store.readEvents({}))).toEqual({ ok: true });
    });

    test('events are append-only in the database, and a forced edit is caught by verification', async () => {
      const store = await fresh();
      await store.appendEvents([event(), event({ data: { statement: 'select balance from accounts' } }), event()]);
      await expect(h.sql(store, `UPDATE events SET connection = 'other' WHERE seq = 2`)).rejects.toThrow(/append-only/);
      await expect(h.sql(store, 'DELETE FROM events WHERE seq = 3')).rejects.toThrow(/append-only/);
      // An administrator can remove the guard; the chain still shows what changed.
      if (h.dialect === 'sqlite') await h.sql(store, 'DROP TRIGGER events_no_update');
      else await h.sql(store, 'ALTER TABLE events DISABLE TRIGGER events_append_only');
      await h.sql(store, `UPDATE events SET connection = 'other' WHERE seq = 2`);
      expect(await verifyStore(store)).toMatchObject({ ok: false, failure: { seq: 2, reason: expect.stringMatching(/hash mismatch/) } });
    });

    test('a payload is stored apart, hashed by payload_sha256, read back (or left out), and a pruned one still verifies', async () => {
      const store = await fresh();
      const payload = { 'result.sets': [{ columns: ['ssn'], rows: [['***-**-6789'], [null]], tag: 'SELECT 2', statement: 0 }] };
      const [, sealed] = await store.appendEvents([event(), event({ type: 'query.end', data: { rows: 2 }, payload }), event()]);
      expect(sealed!.payload_sha256).toMatch(/^[0-9a-f]{64}$/);
      expect(sealed!.payload).toEqual(payload);
      const [back] = await store.readEvents({ afterSeq: 1, limit: 1 });
      expect(back).toEqual(sealed);
      const [lean] = await store.readEvents({ afterSeq: 1, limit: 1, payload: false });
      expect(lean).not.toHaveProperty('payload');
      expect(lean!.payload_sha256).toBe(sealed!.payload_sha256);
      expect((await store.readEvents({ afterSeq: 0, limit: 1 }))[0]).not.toHaveProperty('payload_sha256'); // none: the v1 shape
      expect(await verifyStore(store)).toMatchObject({ ok: true, events: 3 });
      // An edited payload is caught; a deleted one (what retention does) reads as pruned and verifies.
      await h.sql(store, `UPDATE event_payloads SET payload = '{"result.sets":[]}' WHERE seq = 2`);
      expect(await verifyStore(store)).toMatchObject({ ok: false, failure: { seq: 2, reason: expect.stringMatching(/payload mismatch/) } });
      expect(await store.readPayloads([1, 2, 3, 99])).toEqual(new Map([[2, { 'result.sets': [] }]]));
      await h.sql(store, 'DELETE FROM event_payloads WHERE seq = 2');
      expect((await store.readEvents({ afterSeq: 1, limit: 1 }))[0]!.payload).toBeNull();
      expect(await store.readPayloads([2])).toEqual(new Map([[2, null]]));
      await expect(store.readPayloads([0])).rejects.toThrow(/not a seq/);
      expect(await verifyStore(store)).toMatchObject({ ok: true, events: 3 });
    });

    test('checkpointKeys: per key that signed checkpoints, its first and last use, after a seq', async () => {
      const store = await fresh();
      const cp = (key: string, time: string) => event({ type: 'checkpoint', actor: null, connection: null, time, data: { seq: 1, hash: '0'.repeat(64), key_id: key, public_key: `${key}-pub` } });
      expect(await store.checkpointKeys(0)).toEqual([]);
      await store.appendEvents([event(), cp('a', '2026-02-01T00:00:00.000Z'), event(), cp('a', '2026-02-01T00:01:00.000Z'), cp('b', '2026-02-01T00:02:00.000Z'), cp('a', '2026-02-01T00:03:00.000Z')]);
      expect(await store.checkpointKeys(0)).toEqual([
        { key_id: 'a', public_key: 'a-pub', first_used: '2026-02-01T00:00:00.000Z', last_used: '2026-02-01T00:03:00.000Z', last_seq: 6, checkpoints: 3 },
        { key_id: 'b', public_key: 'b-pub', first_used: '2026-02-01T00:02:00.000Z', last_used: '2026-02-01T00:02:00.000Z', last_seq: 5, checkpoints: 1 },
      ]);
      expect(await store.checkpointKeys(5)).toEqual([{ key_id: 'a', public_key: 'a-pub', first_used: '2026-02-01T00:03:00.000Z', last_used: '2026-02-01T00:03:00.000Z', last_seq: 6, checkpoints: 1 }]);
      await expect(store.checkpointKeys(-1)).rejects.toThrow(/not a seq/);
    });

    test('a closed store rejects with StoreError', async () => {
      const store = await fresh();
      await store.close();
      await expect(store.appendEvents([event()])).rejects.toBeInstanceOf(StoreError);
      await expect(store.readEvents({})).rejects.toBeInstanceOf(StoreError);
    });
  });

  describe('audit retention', () => {
    const payload = (n: number) => ({ 'result.sets': [{ columns: ['n'], rows: [[String(n).repeat(n)]], tag: 'SELECT 1', statement: 0 }] });
    const day = (d: number) => `2026-02-${String(d).padStart(2, '0')}T12:00:00.000Z`;

    test('prunePayloads deletes old payloads in batches, lowest seq first, within count and bytes; the chain still verifies', async () => {
      const store = await fresh();
      // seq 1..8: a payload on each even seq, one day apart; seq 9 has none.
      await store.appendEvents(Array.from({ length: 9 }, (_, i) => event({ time: day(i + 1), type: 'query.end', data: { i }, ...(i % 2 === 1 && i < 8 ? { payload: payload(i + 1) } : {}) })));
      const before = day(7); // events 1..6 are older: payloads of 2, 4, 6
      expect(await store.prunePayloads({ before, limit: 2, maxBytes: 1_000_000 })).toEqual({ count: 2, first_seq: 2, last_seq: 4 });
      expect(await store.prunePayloads({ before, limit: 2, maxBytes: 1_000_000 })).toEqual({ count: 1, first_seq: 6, last_seq: 6 });
      expect(await store.prunePayloads({ before, limit: 2, maxBytes: 1_000_000 })).toEqual({ count: 0, first_seq: null, last_seq: null });
      const read = await store.readEvents({});
      expect(read.map((e) => e.payload)).toEqual([undefined, null, undefined, null, undefined, null, undefined, payload(8), undefined]);
      expect(await verifyStore(store)).toMatchObject({ ok: true, events: 9, payloads_pruned: 3 });
      // By seq, and by bytes: a batch stops at maxBytes, but always takes one.
      await store.appendEvents([event({ time: day(20), payload: payload(50) }), event({ time: day(21), payload: payload(60) })]);
      expect(await store.prunePayloads({ beforeSeq: 12, limit: 10, maxBytes: 1 })).toEqual({ count: 1, first_seq: 8, last_seq: 8 });
      expect(await store.prunePayloads({ beforeSeq: 12, limit: 10, maxBytes: 1 })).toEqual({ count: 1, first_seq: 10, last_seq: 10 });
      expect(await store.prunePayloads({ beforeSeq: 12, before: day(21), limit: 10, maxBytes: 1_000_000 })).toEqual({ count: 0, first_seq: null, last_seq: null });
      expect((await store.readEvents({ afterSeq: 10 }))[0]!.payload).toEqual(payload(60));
      await expect(store.prunePayloads({ limit: 10, maxBytes: 10 })).rejects.toBeInstanceOf(UsageError);
      await expect(store.prunePayloads({ beforeSeq: 3, limit: 0, maxBytes: 10 })).rejects.toBeInstanceOf(UsageError);
    });

    test('pruneEvents deletes a prefix (with its payloads) in batches; the triggers still refuse any other delete', async () => {
      const store = await fresh();
      await store.appendEvents(Array.from({ length: 10 }, (_, i) => event({ data: { i }, ...(i === 1 ? { payload: payload(3) } : {}) })));
      expect(await store.pruneEvents({ beforeSeq: 6, limit: 3 })).toEqual({ count: 3, first_seq: 1, last_seq: 3 });
      expect(await store.pruneEvents({ beforeSeq: 6, limit: 3 })).toEqual({ count: 2, first_seq: 4, last_seq: 5 });
      expect(await store.pruneEvents({ beforeSeq: 6, limit: 3 })).toEqual({ count: 0, first_seq: null, last_seq: null });
      expect((await store.readEvents({})).map((e) => e.seq)).toEqual([6, 7, 8, 9, 10]);
      expect(await store.readPayloads([2])).toEqual(new Map());
      // The log goes on from the head; the guard is closed again outside the prune.
      const [next] = await store.appendEvents([event()]);
      expect(next!.seq).toBe(11);
      await expect(h.sql(store, 'DELETE FROM events WHERE seq = 7')).rejects.toThrow(/append-only/);
      await expect(h.sql(store, `UPDATE events SET connection = 'x' WHERE seq = 7`)).rejects.toThrow(/append-only/);
      // A log cut short at the front without a record of retention does not verify.
      expect(await verifyStore(store)).toMatchObject({ ok: false, failure: { seq: 6, reason: expect.stringMatching(/no audit.pruned event/) } });
    });

    test('two replicas pruning at once delete each row once', async () => {
      const store = await fresh();
      const other = await another(store);
      await store.appendEvents(Array.from({ length: 300 }, (_, i) => event({ time: day(1 + (i % 2)), payload: payload(2) })));
      const drain = async (run: () => ReturnType<Store['prunePayloads']>) => {
        let n = 0;
        for (let r = await run(); r.count > 0; r = await run()) n += r.count;
        return n;
      };
      const [a, b] = await Promise.all([store, other].map((s) => drain(() => s.prunePayloads({ before: day(2), limit: 7, maxBytes: 1_000_000 }))));
      expect(a! + b!).toBe(150);
      const events = async (s: Store) => {
        let n = 0;
        for (let r = await s.pruneEvents({ beforeSeq: 201, limit: 9 }); r.count > 0; r = await s.pruneEvents({ beforeSeq: 201, limit: 9 })) n += r.count;
        return n;
      };
      const [c, d] = await Promise.all([events(store), events(other)]);
      expect(c! + d!).toBe(200);
      expect((await store.readEvents({ limit: 1 }))[0]!.seq).toBe(201);
    });

    test('newestCheckpointBefore finds the newest checkpoint by time; readEventPage pages by count and bytes, both ways', async () => {
      const store = await fresh();
      await store.appendEvents([
        event({ time: day(1), type: 'checkpoint', data: { seq: 0 } }),
        event({ time: day(2), data: { blob: 'x'.repeat(5000) } }),
        event({ time: day(3), type: 'checkpoint', data: { seq: 2 } }),
        event({ time: day(4), data: { blob: 'y'.repeat(5000) } }),
        event({ time: day(5), type: 'checkpoint', data: { seq: 4 } }),
      ]);
      expect((await store.newestCheckpointBefore(day(5)))?.seq).toBe(3);
      expect((await store.newestCheckpointBefore('2026-02-03T12:00:00.001Z'))?.seq).toBe(3);
      expect(await store.newestCheckpointBefore(day(1))).toBeNull();
      const pages = async (f: Omit<Parameters<Store['readEventPage']>[0], 'maxBytes'>, maxBytes: number) => {
        const out: number[][] = [];
        let cursor: number | null = null;
        do {
          const page: Awaited<ReturnType<Store['readEventPage']>> = await store.readEventPage({ ...f, maxBytes, payload: true, ...(cursor === null ? {} : f.newestFirst ? { beforeSeq: cursor } : { afterSeq: cursor }) });
          out.push(page.events.map((e) => e.seq));
          cursor = page.next;
        } while (cursor !== null && out.length < 10);
        return out;
      };
      expect(await pages({ limit: 2 }, 1_000_000)).toEqual([[1, 2], [3, 4], [5]]);
      expect(await pages({ limit: 2, newestFirst: true }, 1_000_000)).toEqual([[5, 4], [3, 2], [1]]);
      expect(await pages({ limit: 100, newestFirst: true }, 1)).toEqual([[5], [4], [3], [2], [1]]); // one event alone when larger than the bound
      expect(await pages({ limit: 100 }, 12_000)).toEqual([[1, 2, 3], [4, 5]]); // two 5 kB events do not fit with a third event's overhead
      expect(await pages({ limit: 100, types: ['checkpoint'], newestFirst: true }, 1_000_000)).toEqual([[5, 3, 1]]);
      expect(await pages({ limit: 100, since: day(2), until: day(5) }, 1_000_000)).toEqual([[2, 3, 4]]);
      expect(await store.readEventPage({ limit: 10, afterSeq: 5, maxBytes: 100 })).toEqual({ events: [], next: null });
      await expect(store.readEventPage({ limit: 0, maxBytes: 100 })).rejects.toBeInstanceOf(UsageError);
      await expect(store.readEventPage({ limit: 10, maxBytes: 0 })).rejects.toBeInstanceOf(UsageError);
      // Payloads only when asked for: a page of the whole log is as readEvents gives it without them.
      await store.appendEvents([event({ type: 'query.end', payload: { 'result.sets': [{ rows: [['x']] }] } })]);
      const lean = await store.readEventPage({ afterSeq: 4, limit: 10, maxBytes: 1_000_000 });
      expect(lean).toEqual({ events: await store.readEvents({ afterSeq: 4, payload: false }), next: null });
      expect(lean.events[1]).not.toHaveProperty('payload');
      expect((await store.readEventPage({ afterSeq: 5, limit: 10, maxBytes: 1_000_000, payload: true })).events[0]!.payload).toEqual({ 'result.sets': [{ rows: [['x']] }] });
    });
  });

  describe('sessions', () => {
    async function recordSessions(store: Store) {
      const s1 = randomUUID();
      const s2 = randomUUID();
      const s3 = randomUUID();
      const src = { address: '10.1.2.3', application: null };
      await store.appendEvents([
        event({ type: 'session.start', session_id: s1, actor: alice, source: src, time: '2026-02-01T09:00:00.000Z', data: { application: 'psql', database: 'bank' } }),
        event({ type: 'query.start', session_id: s1, time: '2026-02-01T09:00:01.000Z', data: { query_id: 'q1', statement: 'select 1' } }),
        event({ type: 'session.start', session_id: s2, actor: bob, connection: 'ledger', source: { address: '10.9.9.9', application: 'pgbench' }, time: '2026-02-02T09:00:00.000Z', data: { database: 'ledger' } }),
        event({ type: 'query.end', session_id: s1, time: '2026-02-01T09:00:02.000Z', data: { query_id: 'q1', outcome: 'ok' } }),
        event({ type: 'query.start', session_id: s1, time: '2026-02-01T09:00:03.000Z', data: { query_id: 'q2', statement: 'select 2' } }),
        event({ type: 'query.start', session_id: s2, time: '2026-02-02T09:00:01.000Z', data: { query_id: 'q3', statement: 'select 3' } }),
        event({ type: 'session.end', session_id: s1, time: '2026-02-01T09:10:00.000Z', data: { reason: 'client closed', error: null } }),
        event({ type: 'session.start', session_id: s3, actor: alice, time: '2026-02-03T09:00:00.000Z', data: { application: 'DBeaver', database: 'bank', reason: 'INC-7: refunds' } }),
        event({ type: 'config.loaded', session_id: null, data: {} }),
      ]);
      return { s1, s2, s3 };
    }

    test('list derives summaries from session.start, session.end and query.start, newest first', async () => {
      const store = await fresh();
      const { s1, s2, s3 } = await recordSessions(store);
      const list = await store.listSessions({});
      expect(list.map((s) => s.id)).toEqual([s3, s2, s1]);
      expect(list[2]).toEqual({
        id: s1,
        connection: 'bank',
        subject: 'alice',
        email: 'alice@bank.example',
        groups: ['analysts'],
        source_address: '10.1.2.3',
        client_application: 'psql',
        started_at: '2026-02-01T09:00:00.000Z',
        ended_at: '2026-02-01T09:10:00.000Z',
        statements: 2,
        end_reason: 'client closed',
        reason: null,
      });
      expect(list[1]).toMatchObject({ id: s2, subject: 'bob', email: null, groups: ['dba', 'ops'], connection: 'ledger', client_application: 'pgbench', statements: 1, ended_at: null, end_reason: null });
      expect(list[0]).toMatchObject({ id: s3, client_application: 'DBeaver', statements: 0, reason: 'INC-7: refunds' });
    });

    test('list filters by subject, connection, since, until, id prefix and limit', async () => {
      const store = await fresh();
      const { s1, s2, s3 } = await recordSessions(store);
      const ids = async (f: Parameters<Store['listSessions']>[0]) => (await store.listSessions(f)).map((s) => s.id);
      expect(await ids({ subject: 'alice' })).toEqual([s3, s1]);
      expect(await ids({ subject: 'nobody' })).toEqual([]);
      // user: the subject, the email (any case) or an API key's name.
      expect(await ids({ user: 'alice' })).toEqual([s3, s1]);
      expect(await ids({ user: 'Alice@Bank.example' })).toEqual([s3, s1]);
      expect(await ids({ user: 'bob' })).toEqual([s2]);
      expect(await ids({ user: 'alice@bank' })).toEqual([]);
      expect(await ids({ user: '%' })).toEqual([]);
      expect(await ids({ connection: 'ledger' })).toEqual([s2]);
      expect(await ids({ since: '2026-02-02T09:00:00Z' })).toEqual([s3, s2]);
      expect(await ids({ until: '2026-02-02T09:00:00Z' })).toEqual([s1]);
      expect(await ids({ subject: 'alice', since: '2026-02-01T00:00:00Z', until: '2026-02-03T00:00:00Z' })).toEqual([s1]);
      expect(await ids({ limit: 2 })).toEqual([s3, s2]);
      expect(await ids({ idPrefix: s2.slice(0, 8) })).toEqual([s2]);
      expect(await ids({ idPrefix: s2 })).toEqual([s2]);
      await expect(store.listSessions({ until: 'not a time' })).rejects.toBeInstanceOf(UsageError);
      // Only hex digits and dashes: a LIKE wildcard is not a prefix.
      for (const idPrefix of ['%', '_', 'AB', '']) await expect(store.listSessions({ idPrefix })).rejects.toBeInstanceOf(UsageError);
    });

    test('show returns the summary and only that session\'s events in seq order', async () => {
      const store = await fresh();
      const { s1 } = await recordSessions(store);
      const got = await store.getSession(s1);
      expect(got!.session).toMatchObject({ id: s1, statements: 2, end_reason: 'client closed' });
      expect(got!.events.map((e) => e.type)).toEqual(['session.start', 'query.start', 'query.end', 'query.start', 'session.end']);
      expect(got!.events.every((e) => e.session_id === s1)).toBe(true);
      const seqs = got!.events.map((e) => e.seq);
      expect(seqs).toEqual([...seqs].sort((x, y) => x - y));
      expect(await store.getSession(randomUUID())).toBeNull();
    });

    test('a session reads in pages bounded by count and by stored bytes, one large event alone', async () => {
      const store = await fresh();
      const id = randomUUID();
      const other = randomUUID();
      const big = 'x'.repeat(100_000);
      const evs: UnsealedEvent[] = [event({ type: 'session.start', session_id: id, data: { application: 'psql' } })];
      for (let i = 0; i < 9; i++) {
        evs.push(event({ type: 'query.start', session_id: id, data: { query_id: `q${i}`, statement: 'select 1' } }));
        if (i === 4) evs.push(event({ type: 'config.loaded', session_id: other })); // another session's event in between
        evs.push(event({ type: 'query.end', session_id: id, data: { query_id: `q${i}`, blob: i === 6 ? big.repeat(4) : big } }));
      }
      await store.appendEvents(evs);
      const all = (await store.getSession(id))!.events;
      expect(all).toHaveLength(19);
      // By count.
      const seen: number[] = [];
      let after = 0;
      for (let n = 0; n < 20; n++) {
        const page = await store.readSessionEvents(id, { afterSeq: after, limit: 5, maxBytes: 10_000_000 });
        expect(page.events.length).toBeLessThanOrEqual(5);
        seen.push(...page.events.map((e) => e.seq));
        if (page.next === null) break;
        expect(page.next).toBe(page.events.at(-1)!.seq);
        after = page.next;
      }
      expect(seen).toEqual(all.map((e) => e.seq));
      // By bytes: 250 kB takes two 100 kB events; the 400 kB one comes alone.
      const sizes: number[] = [];
      const pages: AuditEventLike[][] = [];
      after = 0;
      for (let n = 0; n < 40; n++) {
        const page = await store.readSessionEvents(id, { afterSeq: after, limit: 1000, maxBytes: 250_000 });
        pages.push(page.events);
        sizes.push(page.events.reduce((t, e) => t + JSON.stringify(e.data).length, 0));
        if (page.next === null) break;
        after = page.next;
      }
      expect(pages.flat().map((e) => e.seq)).toEqual(all.map((e) => e.seq));
      expect(pages.flat()).toEqual(all);
      const alone = pages.find((p) => p.some((e) => JSON.stringify(e.data).length > 400_000))!;
      expect(alone).toHaveLength(1);
      for (const [i, p] of pages.entries()) if (p !== alone) expect(sizes[i]).toBeLessThanOrEqual(250_000);
      expect(await store.readSessionEvents(randomUUID(), { limit: 10, maxBytes: 1000 })).toEqual({ events: [], next: null });
      expect(await store.readSessionEvents(id, { afterSeq: all.at(-1)!.seq, limit: 10, maxBytes: 1000 })).toEqual({ events: [], next: null });
    });
  });

  describe('notification outbox', () => {
    const t0 = Date.UTC(2026, 1, 1, 10, 0, 0);
    const iso = (ms: number) => new Date(ms).toISOString();
    const draft = (target: string, over: Partial<NotificationDraft> = {}): NotificationDraft => ({
      id: randomUUID(),
      target,
      format: 'json',
      body: JSON.stringify({ event: 'approval.requested', id: 'r-0000abcd', statement: "select 'é😀'" }),
      signed: true,
      event: 'approval.requested',
      connection: 'bank',
      request_id: 'r-0000abcd',
      created_at: iso(t0),
      ...over,
    });
    const claim = (store: Store, nowMs: number, limit = 10) => store.claimNotifications({ now: iso(nowMs), leaseUntil: iso(nowMs + 60_000), limit });
    const ids = (rows: { id: string }[]) => rows.map((r) => r.id);

    test('a stored notification reads back as queued, due at once', async () => {
      const store = await fresh();
      const n = draft('https://hooks.example/a', { signed: false, format: 'slack', connection: null, request_id: null });
      await store.enqueueNotification(n);
      expect(await store.getNotification(n.id)).toEqual({
        ...n, attempts: 0, next_attempt_at: n.created_at, delivered_at: null, dead_at: null, last_error: null,
      });
      expect(await store.getNotification(randomUUID())).toBeNull();
      // Not due before it was queued.
      expect(await claim(store, t0 - 1)).toEqual([]);
    });

    test('a claim takes the oldest pending row of each target, due ones only, oldest first, and leases it', async () => {
      const store = await fresh();
      const a1 = draft('https://hooks.example/a', { created_at: iso(t0) });
      const b1 = draft('https://hooks.example/b', { created_at: iso(t0 + 1) });
      const a2 = draft('https://hooks.example/a', { created_at: iso(t0 + 2) });
      const late = draft('https://hooks.example/c', { created_at: iso(t0 + 10_000) });
      for (const n of [a1, b1, a2, late]) await store.enqueueNotification(n);
      const claimed = await claim(store, t0 + 5);
      expect(ids(claimed)).toEqual([a1.id, b1.id]); // a2 waits behind a1; c is not due yet
      expect(claimed[0]).toMatchObject({ attempts: 0, next_attempt_at: iso(t0 + 5 + 60_000), body: a1.body, signed: true });
      // Leased: a second claim (another replica) gets neither, nor a2 behind the leased a1.
      expect(await claim(store, t0 + 5)).toEqual([]);
      expect(ids(await claim(store, t0 + 20_000))).toEqual([late.id]);
      // A lease that ran out (its claimer died) makes the row due again.
      expect(ids(await claim(store, t0 + 70_000))).toEqual([a1.id, b1.id]);
    });

    test('delivered and given-up rows let the next through; a failed one holds its target back until due', async () => {
      const store = await fresh();
      const [a1, a2, a3] = [0, 1, 2].map((i) => draft('https://hooks.example/a', { created_at: iso(t0 + i) }));
      const b1 = draft('https://hooks.example/b');
      for (const n of [a1!, a2!, a3!, b1]) await store.enqueueNotification(n);
      expect(ids(await claim(store, t0 + 10))).toEqual([a1!.id, b1.id]);
      await store.markNotificationFailed(a1!.id, { error: 'HTTP 500: boom', nextAttemptAt: iso(t0 + 1_000) });
      await store.markNotificationDelivered(b1.id, iso(t0 + 11));
      expect(await store.getNotification(a1!.id)).toMatchObject({ attempts: 1, last_error: 'HTTP 500: boom', next_attempt_at: iso(t0 + 1_000), delivered_at: null });
      expect(await store.getNotification(b1.id)).toMatchObject({ attempts: 0, delivered_at: iso(t0 + 11) });
      expect(await claim(store, t0 + 999)).toEqual([]); // a1 not due: a2 and a3 wait too
      expect(ids(await claim(store, t0 + 1_000))).toEqual([a1!.id]);
      await store.markNotificationDead(a1!.id, { error: 'connect ECONNREFUSED', at: iso(t0 + 1_001) });
      expect(await store.getNotification(a1!.id)).toMatchObject({ attempts: 2, last_error: 'connect ECONNREFUSED', dead_at: iso(t0 + 1_001) });
      expect(ids(await claim(store, t0 + 1_002))).toEqual([a2!.id]);
      await store.markNotificationDelivered(a2!.id, iso(t0 + 1_003));
      // Done rows stay done: a late mark from a replica whose lease ran out changes nothing.
      await store.markNotificationFailed(a2!.id, { error: 'late', nextAttemptAt: iso(t0) });
      await store.markNotificationFailed(a1!.id, { error: 'late', nextAttemptAt: iso(t0) });
      expect(await store.getNotification(a2!.id)).toMatchObject({ attempts: 0, last_error: null, delivered_at: iso(t0 + 1_003) });
      expect(await store.getNotification(a1!.id)).toMatchObject({ attempts: 2, last_error: 'connect ECONNREFUSED' });
      expect(ids(await claim(store, t0 + 1_004))).toEqual([a3!.id]);
      await store.markNotificationDelivered(a3!.id, iso(t0 + 1_005));
      expect(await claim(store, t0 + 1_000_000)).toEqual([]);
    });

    test('two replicas claiming at once never get the same row', async () => {
      const store = await fresh();
      const other = await another(store);
      const queued = Array.from({ length: 60 }, (_, i) => draft(`https://hooks.example/${i % 30}`, { created_at: iso(t0 + i) }));
      for (const n of queued) await store.enqueueNotification(n);
      const seen: string[][] = [[], []];
      // Each replica claims, "delivers" at once, and claims again; it stops when it finds nothing
      // due (the other holds the rest, and claims their successors itself).
      const work = async (s: Store, into: string[]) => {
        for (let rows = await claim(s, t0 + 100, 4); rows.length > 0; rows = await claim(s, t0 + 100, 4)) {
          for (const r of rows) {
            into.push(r.id);
            await s.markNotificationDelivered(r.id, iso(t0 + 200));
          }
        }
      };
      await Promise.all([work(store, seen[0]!), work(other, seen[1]!)]);
      const all = [...seen[0]!, ...seen[1]!];
      expect(all).toHaveLength(60);
      expect(new Set(all).size).toBe(60);
      // Per target, in queued order.
      const order = new Map(queued.map((n, i) => [n.id, i]));
      for (const n of queued) expect((await store.getNotification(n.id))!.delivered_at).not.toBeNull();
      for (const list of seen) {
        const byTarget = new Map<string, number[]>();
        for (const id of list) {
          const i = order.get(id)!;
          const t = queued[i]!.target;
          byTarget.set(t, [...(byTarget.get(t) ?? []), i]);
        }
        for (const idx of byTarget.values()) expect(idx).toEqual([...idx].sort((x, y) => x - y));
      }
    });
  });

  describe('sink cursors', () => {
    const t0 = Date.UTC(2026, 2, 1, 10, 0, 0);
    const iso = (ms: number) => new Date(ms).toISOString();
    const claim = (store: Store, owner: string, nowMs: number, over: { sink?: string; startSeq?: number; leaseMs?: number } = {}) =>
      store.claimSinkLease({ sink: over.sink ?? 'siem', owner, now: iso(nowMs), leaseUntil: iso(nowMs + (over.leaseMs ?? 30_000)), startSeq: over.startSeq ?? 0 });

    test('a first claim creates the cursor at its start; the owner renews, others wait for the lease to end or be released', async () => {
      const store = await fresh();
      expect(await store.readSinkCursor('siem')).toBeNull();
      expect(await claim(store, 'gw-a', t0, { startSeq: 7 })).toEqual({ sink: 'siem', delivered_seq: 7, updated_at: iso(t0), lease_owner: 'gw-a', lease_until: iso(t0 + 30_000) });
      // The start applies only to a new cursor.
      expect(await claim(store, 'gw-a', t0 + 1_000, { startSeq: 99 })).toMatchObject({ delivered_seq: 7, lease_owner: 'gw-a', lease_until: iso(t0 + 31_000) });
      expect(await claim(store, 'gw-b', t0 + 2_000)).toBeNull();
      expect(await store.advanceSinkCursor({ sink: 'siem', owner: 'gw-b', deliveredSeq: 10, now: iso(t0 + 2_000) })).toBe(false);
      expect(await store.advanceSinkCursor({ sink: 'siem', owner: 'gw-a', deliveredSeq: 10, now: iso(t0 + 2_000) })).toBe(true);
      // Never backwards.
      expect(await store.advanceSinkCursor({ sink: 'siem', owner: 'gw-a', deliveredSeq: 9, now: iso(t0 + 2_100) })).toBe(false);
      expect(await store.readSinkCursor('siem')).toMatchObject({ delivered_seq: 10, updated_at: iso(t0 + 2_000) });
      // The lease ran out (its owner died): another takes it over, and the old owner can no longer advance.
      expect(await claim(store, 'gw-b', t0 + 31_000)).toMatchObject({ delivered_seq: 10, lease_owner: 'gw-b' });
      expect(await store.advanceSinkCursor({ sink: 'siem', owner: 'gw-a', deliveredSeq: 12, now: iso(t0 + 31_001) })).toBe(false);
      expect(await claim(store, 'gw-a', t0 + 31_002)).toBeNull();
      // A release (the owner stopping) frees it at once; releasing someone else's lease does nothing.
      await store.releaseSinkLease('siem', 'gw-a');
      expect(await claim(store, 'gw-a', t0 + 31_003)).toBeNull();
      await store.releaseSinkLease('siem', 'gw-b');
      expect(await store.readSinkCursor('siem')).toMatchObject({ delivered_seq: 10, lease_owner: null, lease_until: null });
      expect(await claim(store, 'gw-a', t0 + 31_004)).toMatchObject({ delivered_seq: 10, lease_owner: 'gw-a' });
      // Cursors are per sink.
      expect(await claim(store, 'gw-b', t0 + 31_005, { sink: 'file:/var/log/hoop.jsonl' })).toMatchObject({ delivered_seq: 0, lease_owner: 'gw-b' });
    });

    test('two store instances claiming one sink never both hold it, and only the holder advances', async () => {
      const store = await fresh();
      const other = await another(store);
      const stores = [store, other];
      let delivered = 0;
      for (let round = 0; round < 15; round++) {
        const now = t0 + round * 60_000; // every earlier lease has ended
        const got = await Promise.all(stores.flatMap((s, i) => [claim(s, `gw-${i}-a`, now), claim(s, `gw-${i}-b`, now)]));
        const holders = got.filter((c) => c !== null);
        expect(holders).toHaveLength(1);
        const owner = holders[0]!.lease_owner!;
        const advanced = await Promise.all(stores.flatMap((s, i) => ['a', 'b'].map((x) => s.advanceSinkCursor({ sink: 'siem', owner: `gw-${i}-${x}`, deliveredSeq: delivered + 1, now: iso(now + 1) }))));
        expect(advanced.filter(Boolean)).toHaveLength(1);
        delivered += 1;
        expect(await other.readSinkCursor('siem')).toMatchObject({ delivered_seq: delivered, lease_owner: owner });
      }
    });

    test('readEventPage pages the whole log without payloads, bounded by count and bytes', async () => {
      const store = await fresh();
      const big = 'x'.repeat(4_000);
      await store.appendEvents([
        event(), event({ data: { big } }), event(), event({ type: 'query.end', data: { rows: 1 }, payload: { 'result.sets': [{ rows: [[big]] }] } }), event(),
      ]);
      expect(await store.readEventPage({ afterSeq: 0, limit: 2, maxBytes: 1_000_000 })).toMatchObject({ events: [{ seq: 1 }, { seq: 2 }], next: 2 });
      // Event 2 alone is larger than 3000 bytes: pages cut before it, and it comes alone.
      const small = await store.readEventPage({ afterSeq: 0, limit: 100, maxBytes: 3_000 });
      expect(small.events.map((e) => e.seq)).toEqual([1]);
      expect(small.next).toBe(1);
      expect((await store.readEventPage({ afterSeq: 1, limit: 100, maxBytes: 3_000 })).events.map((e) => e.seq)).toEqual([2]);
      const rest = await store.readEventPage({ afterSeq: 2, limit: 100, maxBytes: 1_000_000 });
      expect(rest.events.map((e) => e.seq)).toEqual([3, 4, 5]);
      expect(rest.next).toBeNull();
      // The payload is not read (only counted by its hash); the events are as readEvents gives them without it.
      expect(rest.events[1]!.payload).toBeUndefined();
      expect(rest.events[1]!.payload_sha256).toMatch(/^[0-9a-f]{64}$/);
      expect(rest.events).toEqual(await store.readEvents({ afterSeq: 2, payload: false }));
      expect(await store.readEventPage({ afterSeq: 5, limit: 10, maxBytes: 1_000 })).toEqual({ events: [], next: null });
      await expect(store.readEventPage({ afterSeq: 0, limit: 0, maxBytes: 1_000 })).rejects.toThrow(UsageError);
    });
  });

  describe('session kills', () => {
    const kill = (session_id: string, requested_by = 'apikey:root', reason: string | null = 'incident 7') =>
      ({ session_id, requested_by, reason, requested_at: new Date(Date.UTC(2026, 0, 2, 9, 0, 0)).toISOString() });

    test('the first request for a session stands; killsFor finds requests by session id', async () => {
      const store = await fresh();
      const [a, b] = [randomUUID(), randomUUID()];
      expect(await store.requestKill(kill(a))).toEqual(kill(a));
      // Idempotent: a second request (another admin, another reason) returns the first.
      expect(await store.requestKill(kill(a, 'apikey:other', null))).toEqual(kill(a));
      expect(await store.requestKill(kill(b, 'apikey:root', null))).toEqual(kill(b, 'apikey:root', null));
      expect(await store.killsFor([])).toEqual([]);
      expect(await store.killsFor([randomUUID()])).toEqual([]);
      expect((await store.killsFor([a, b, randomUUID()])).map((k) => k.session_id).sort()).toEqual([a, b].sort());
      // Another replica sees them.
      const other = await another(store);
      expect(await other.killsFor([a])).toEqual([kill(a)]);
    });

    test('watchKills wakes the other replicas with the session id (PostgreSQL), and stops', async () => {
      const store = await fresh();
      const other = await another(store);
      const woken: string[] = [];
      const stop = await other.watchKills((id) => woken.push(id));
      const id = randomUUID();
      await store.requestKill(kill(id));
      if (h.dialect === 'postgres') {
        await expect.poll(() => woken).toEqual([id]);
        await store.requestKill(kill(id)); // already requested: no second wake-up
      }
      await stop();
      if (h.dialect === 'postgres') {
        // A stopped watcher hears nothing more; a new one hears the next request.
        const seen: string[] = [];
        const again = await other.watchKills((x) => seen.push(x));
        const last = randomUUID();
        await store.requestKill(kill(last));
        await expect.poll(() => seen).toEqual([last]);
        await again();
        expect(woken).toEqual([id]);
      } else expect(woken).toEqual([]); // no cross-process signal: the gateways poll killsFor
    });
  });

  describe('approval requests', () => {
    const t0 = Date.UTC(2026, 0, 3, 9, 0, 0);
    const iso = (ms: number) => new Date(ms).toISOString();
    let n = 0;
    const request = (over: Partial<ApprovalRequest> = {}): ApprovalRequest => ({
      id: `r-${(0x10000000 + n++).toString(16)}`,
      kind: 'statement',
      connection: 'bank',
      requester: { subject: 'alice', email: 'alice@bank.example', groups: ['analysts'] },
      statement: 'SELECT * FROM customers WHERE id = $1',
      fingerprint: 'a1b2c3d4e5f60718',
      parameters: ['42', null, { nested: ['é😀'] }],
      reason: 'INC-42',
      rule: 'full-export',
      estimate: 12000,
      duration_ms: null,
      session_id: null,
      status: 'pending',
      created_at: iso(t0),
      expires_at: iso(t0 + 600_000),
      approvals: [],
      min_approvals: 1,
      approvers: ['dba'],
      ...over,
    });
    const decide = (id: string, approver: string, decision: 'approve' | 'deny', atMs = t0 + 1000, comment: string | null = null) =>
      ({ id, approver, decision, comment, at: iso(atMs) });

    test('a request reads back as stored, on another replica too; a duplicate id is refused', async () => {
      const store = await fresh();
      const r = request({ estimate: 1.5, session_id: randomUUID() });
      await store.createApprovalRequest(r);
      expect(await store.getApprovalRequest(r.id)).toEqual(r);
      expect(await store.getApprovalRequest('r-00000000')).toBeNull();
      expect(await (await another(store)).getApprovalRequest(r.id)).toEqual(r);
      await expect(store.createApprovalRequest(r)).rejects.toBeInstanceOf(StoreError);
      const grant = request({ kind: 'grant', statement: null, fingerprint: null, parameters: [], rule: null, estimate: null, duration_ms: 7_200_000 });
      await store.createApprovalRequest(grant);
      expect(await store.getApprovalRequest(grant.id)).toEqual(grant);
    });

    test('lists newest first, filtered by status, connection, requester and approver groups', async () => {
      const store = await fresh();
      const a = request({ created_at: iso(t0) });
      const b = request({ created_at: iso(t0 + 1000), connection: 'crm', approvers: ['ops', 'dba'] });
      const c = request({ created_at: iso(t0 + 2000), requester: { subject: 'bob', email: null, groups: ['dba'] }, approvers: ['security'] });
      for (const r of [a, b, c]) await store.createApprovalRequest(r);
      await store.recordApprovalDecision(decide(a.id, 'carol', 'deny'));
      const ids = async (f: Parameters<Store['listApprovalRequests']>[0]) => (await store.listApprovalRequests(f)).map((r) => r.id);
      expect(await ids({})).toEqual([c.id, b.id, a.id]);
      expect(await ids({ limit: 2 })).toEqual([c.id, b.id]);
      expect(await ids({ status: ['pending'] })).toEqual([c.id, b.id]);
      expect(await ids({ status: ['denied', 'approved'] })).toEqual([a.id]);
      expect(await ids({ connection: 'crm' })).toEqual([b.id]);
      expect(await ids({ requester: 'alice' })).toEqual([b.id, a.id]);
      expect(await ids({ approverGroups: ['ops'] })).toEqual([b.id]);
      expect(await ids({ approverGroups: ['dba', 'security'], status: ['pending'] })).toEqual([c.id, b.id]);
      expect(await ids({ approverGroups: [] })).toEqual([]);
      expect((await store.listApprovalRequests({ status: ['denied'] }))[0]!.approvals).toEqual([{ approver: 'carol', decision: 'deny', comment: null, at: iso(t0 + 1000) }]);
      await expect(store.listApprovalRequests({ status: ['bogus' as 'pending'] })).rejects.toBeInstanceOf(UsageError);
    });

    test('one approval approves (and opens a use window as long as the wait); decisions are final', async () => {
      const store = await fresh();
      const r = request();
      await store.createApprovalRequest(r);
      const done = await store.recordApprovalDecision({ ...decide(r.id, 'bob', 'approve', t0 + 5000), comment: 'ok for INC-42' });
      expect(done).toEqual({
        ok: true,
        request: { ...r, status: 'approved', expires_at: iso(t0 + 5000 + 600_000), approvals: [{ approver: 'bob', decision: 'approve', comment: 'ok for INC-42', at: iso(t0 + 5000) }] },
      });
      expect(await store.getApprovalRequest(r.id)).toEqual(done.ok && done.request);
      const late = await store.recordApprovalDecision(decide(r.id, 'dave', 'deny', t0 + 6000));
      expect(late).toMatchObject({ ok: false, reason: 'not_pending', request: { status: 'approved' } });
      expect(await store.recordApprovalDecision(decide('r-ffffffff', 'bob', 'approve'))).toEqual({ ok: false, reason: 'not_found' });
    });

    test('two-person rule: the same approver twice is refused; a second approver approves; a grant lasts its duration', async () => {
      const store = await fresh();
      const r = request({ min_approvals: 2 });
      await store.createApprovalRequest(r);
      expect(await store.recordApprovalDecision(decide(r.id, 'bob', 'approve'))).toMatchObject({ ok: true, request: { status: 'pending' } });
      expect(await store.recordApprovalDecision(decide(r.id, 'bob', 'approve', t0 + 2000))).toMatchObject({ ok: false, reason: 'already_decided', request: { status: 'pending' } });
      const second = await store.recordApprovalDecision(decide(r.id, 'dave', 'approve', t0 + 3000));
      expect(second).toMatchObject({ ok: true, request: { status: 'approved' } });
      expect(second.ok && second.request.approvals.map((a) => a.approver)).toEqual(['bob', 'dave']);
      const grant = request({ kind: 'grant', duration_ms: 3_600_000, statement: null, fingerprint: null, parameters: [] });
      await store.createApprovalRequest(grant);
      expect(await store.recordApprovalDecision(decide(grant.id, 'bob', 'approve', t0 + 4000))).toMatchObject({ ok: true, request: { status: 'approved', expires_at: iso(t0 + 4000 + 3_600_000) } });
    });

    test('one deny denies, even after an approval toward two', async () => {
      const store = await fresh();
      const r = request({ min_approvals: 2 });
      await store.createApprovalRequest(r);
      await store.recordApprovalDecision(decide(r.id, 'bob', 'approve'));
      expect(await store.recordApprovalDecision({ ...decide(r.id, 'dave', 'deny', t0 + 2000), comment: 'too broad' })).toMatchObject({ ok: true, request: { status: 'denied' } });
      expect((await store.getApprovalRequest(r.id))!.approvals.map((a) => [a.approver, a.decision, a.comment])).toEqual([['bob', 'approve', null], ['dave', 'deny', 'too broad']]);
    });

    test('concurrent decisions through two replicas: each is kept once and the status follows both', async () => {
      const store = await fresh();
      const other = await another(store);
      const r = request({ min_approvals: 2 });
      await store.createApprovalRequest(r);
      const [x, y] = await Promise.all([store.recordApprovalDecision(decide(r.id, 'bob', 'approve')), other.recordApprovalDecision(decide(r.id, 'dave', 'approve'))]);
      expect([x.ok, y.ok]).toEqual([true, true]);
      expect(await store.getApprovalRequest(r.id)).toMatchObject({ status: 'approved' });
      expect((await store.getApprovalRequest(r.id))!.approvals).toHaveLength(2);
      // The same approver racing with itself: one is kept.
      const s = request();
      await store.createApprovalRequest(s);
      const both = await Promise.all([store.recordApprovalDecision(decide(s.id, 'bob', 'approve')), other.recordApprovalDecision(decide(s.id, 'bob', 'deny'))]);
      expect(both.filter((o) => o.ok)).toHaveLength(1);
      expect((await store.getApprovalRequest(s.id))!.approvals).toHaveLength(1);
    });

    test('a decision past the deadline is refused and expires the request', async () => {
      const store = await fresh();
      const r = request();
      await store.createApprovalRequest(r);
      expect(await store.recordApprovalDecision(decide(r.id, 'bob', 'approve', t0 + 600_000))).toMatchObject({ ok: false, reason: 'not_pending', request: { status: 'expired', approvals: [] } });
      expect(await store.getApprovalRequest(r.id)).toMatchObject({ status: 'expired' });
    });

    test('markApprovalUsed: approved -> used exactly once, never before approval or after the window', async () => {
      const store = await fresh();
      const other = await another(store);
      const r = request();
      await store.createApprovalRequest(r);
      expect(await store.markApprovalUsed(r.id, iso(t0 + 1000))).toBeNull(); // pending
      await store.recordApprovalDecision(decide(r.id, 'bob', 'approve'));
      const raced = await Promise.all([store.markApprovalUsed(r.id, iso(t0 + 2000)), other.markApprovalUsed(r.id, iso(t0 + 2000))]);
      expect(raced.filter(Boolean)).toHaveLength(1);
      expect(raced.find(Boolean)).toMatchObject({ id: r.id, status: 'used', approvals: [{ approver: 'bob' }] });
      expect(await store.markApprovalUsed(r.id, iso(t0 + 3000))).toBeNull();
      const late = request();
      await store.createApprovalRequest(late);
      await store.recordApprovalDecision(decide(late.id, 'bob', 'approve')); // usable until t0 + 1000 + 600 000
      expect(await store.markApprovalUsed(late.id, iso(t0 + 1000 + 600_000))).toBeNull();
      expect(await store.markApprovalUsed('r-ffffffff', iso(t0))).toBeNull();
    });

    test('expire ends pending and unused approved requests past their deadline, nothing else; cancel ends a pending one', async () => {
      const store = await fresh();
      const soon = request({ expires_at: iso(t0 + 1000) });
      const later = request({ expires_at: iso(t0 + 900_000) });
      const approved = request({ expires_at: iso(t0 + 1000) });
      const denied = request({ expires_at: iso(t0 + 1000) });
      for (const r of [soon, later, approved, denied]) await store.createApprovalRequest(r);
      await store.recordApprovalDecision(decide(approved.id, 'bob', 'approve', t0 + 500)); // usable until t0 + 1500
      await store.recordApprovalDecision(decide(denied.id, 'bob', 'deny', t0 + 500));
      expect((await store.expireApprovalRequests(iso(t0 + 1000))).map((r) => [r.id, r.status])).toEqual([[soon.id, 'expired']]);
      expect((await store.expireApprovalRequests(iso(t0 + 2000))).map((r) => [r.id, r.status])).toEqual([[approved.id, 'expired']]);
      expect(await store.expireApprovalRequests(iso(t0 + 2000))).toEqual([]);
      expect(await store.getApprovalRequest(denied.id)).toMatchObject({ status: 'denied' });
      expect(await store.cancelApprovalRequest(later.id, iso(t0 + 3000))).toMatchObject({ id: later.id, status: 'cancelled' });
      expect(await store.cancelApprovalRequest(later.id, iso(t0 + 3000))).toBeNull();
      expect(await store.cancelApprovalRequest(denied.id, iso(t0 + 3000))).toBeNull();
      expect(await store.recordApprovalDecision(decide(later.id, 'bob', 'approve', t0 + 4000))).toMatchObject({ ok: false, reason: 'not_pending', request: { status: 'cancelled' } });
    });

    test('activeGrant: only an approved grant of that person and connection, inside its window; the longest-lasting of several', async () => {
      const store = await fresh();
      const grant = (over: Partial<ApprovalRequest> = {}) => request({ kind: 'grant', statement: null, fingerprint: null, parameters: [], rule: null, estimate: null, duration_ms: 3_600_000, ...over });
      const at = (ms: number) => store.activeGrant('alice', 'bank', iso(ms));
      const g = grant();
      const pendingOne = grant();
      const otherConnection = grant({ connection: 'crm' });
      const statement = request(); // approved ahead of time: not a grant
      for (const r of [g, pendingOne, otherConnection, statement]) await store.createApprovalRequest(r);
      expect(await at(t0 + 1000)).toBeNull(); // nothing approved yet
      for (const r of [g, otherConnection, statement]) await store.recordApprovalDecision(decide(r.id, 'bob', 'approve', t0 + 1000));
      // The window: [approval, approval + duration).
      expect(await at(t0 + 999)).toBeNull();
      expect(await at(t0 + 1000)).toMatchObject({ id: g.id, status: 'approved', expires_at: iso(t0 + 1000 + 3_600_000), approvals: [{ approver: 'bob' }] });
      expect(await (await another(store)).activeGrant('alice', 'bank', iso(t0 + 2000))).toMatchObject({ id: g.id });
      expect(await at(t0 + 1000 + 3_600_000)).toBeNull();
      expect(await store.activeGrant('bob', 'bank', iso(t0 + 2000))).toBeNull();
      expect(await store.activeGrant('alice', 'crm', iso(t0 + 2000))).toMatchObject({ id: otherConnection.id });
      // A longer grant approved later wins once its window is open; a denied one never counts.
      const longer = grant({ duration_ms: 7_200_000 });
      const denied = grant({ duration_ms: 9_000_000 });
      for (const r of [longer, denied]) await store.createApprovalRequest(r);
      await store.recordApprovalDecision(decide(longer.id, 'bob', 'approve', t0 + 5000));
      await store.recordApprovalDecision(decide(denied.id, 'bob', 'deny', t0 + 5000));
      expect(await at(t0 + 4000)).toMatchObject({ id: g.id }); // the longer one is not open yet
      expect(await at(t0 + 6000)).toMatchObject({ id: longer.id });
      expect(await at(t0 + 5000 + 7_200_000 - 1)).toMatchObject({ id: longer.id });
      // Expired by the sweep: gone, even where the clock says otherwise.
      await store.expireApprovalRequests(iso(t0 + 1000 + 3_600_000));
      expect(await store.getApprovalRequest(g.id)).toMatchObject({ status: 'expired' });
      expect(await at(t0 + 6000)).toMatchObject({ id: longer.id });
    });

    test('watchApprovals hears every change of state: from other replicas (PostgreSQL) or this store (SQLite), and stops', async () => {
      const store = await fresh();
      const watcher = h.dialect === 'postgres' ? await another(store) : store;
      const woken: string[] = [];
      const stop = await watcher.watchApprovals((id) => woken.push(id));
      const [a, b, c] = [request(), request({ expires_at: iso(t0 + 1000) }), request()];
      for (const r of [a, b, c]) await store.createApprovalRequest(r);
      await store.recordApprovalDecision(decide(a.id, 'bob', 'approve'));
      await expect.poll(() => woken).toEqual([a.id]);
      await store.markApprovalUsed(a.id, iso(t0 + 2000));
      await store.expireApprovalRequests(iso(t0 + 1000));
      await store.cancelApprovalRequest(c.id, iso(t0 + 3000));
      await expect.poll(() => woken).toEqual([a.id, a.id, b.id, c.id]);
      await store.cancelApprovalRequest(c.id, iso(t0 + 3000)); // no change: no wake-up
      await stop();
      const d = request();
      await store.createApprovalRequest(d);
      await store.recordApprovalDecision(decide(d.id, 'bob', 'deny'));
      const seen: string[] = [];
      const again = await watcher.watchApprovals((x) => seen.push(x));
      await store.cancelApprovalRequest((await store.getApprovalRequest(d.id))!.id, iso(t0)); // denied: nothing
      const e = request();
      await store.createApprovalRequest(e);
      await store.cancelApprovalRequest(e.id, iso(t0 + 10));
      await expect.poll(() => seen).toEqual([e.id]);
      await again();
      expect(woken).toEqual([a.id, a.id, b.id, c.id]);
    });
  });
}
