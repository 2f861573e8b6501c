import { randomUUID } from 'node:crypto';
import { describe, expect, test } from 'vitest';
import { GENESIS_HASH, sealEvent } from '../../src/audit/chain.js';
import type { AuditEvent } from '../../src/audit/event.js';
import { verifyEvents, verifyStore } from '../../src/audit/verify.js';
import { openStore } from '../../src/store/index.js';

function chain(n: number): AuditEvent[] {
  const out: AuditEvent[] = [];
  let prev = GENESIS_HASH;
  for (let i = 1; i <= n; i++) {
    const e = sealEvent(
      { id: randomUUID(), time: new Date(Date.UTC(2026, 5, 1, 0, 0, i)).toISOString(), type: 'query.start', actor: null, source: null, connection: 'bank', session_id: 's', data: { i } },
      i,
      prev,
    );
    out.push(e);
    prev = e.hash;
  }
  return out;
}

describe('verifyEvents', () => {
  test('reports what an intact log vouches for', () => {
    const events = chain(5);
    const none = { checkpoints: 0, last_checkpoint: null, key_ids: [], payloads: 0, payloads_pruned: 0 };
    expect(verifyEvents(events)).toEqual({ ok: true, events: 5, first_seq: 1, last_seq: 5, head_hash: events[4]!.hash, failure: null, ...none });
    expect(verifyEvents([])).toEqual({ ok: true, events: 0, first_seq: null, last_seq: null, head_hash: null, failure: null, ...none });
  });

  test('names the first failing event', () => {
    const events = chain(5);
    (events[2]!.data as { i: number }).i = 99;
    expect(verifyEvents(events)).toMatchObject({ ok: false, events: 2, last_seq: 2, failure: { seq: 3, reason: expect.stringMatching(/hash mismatch/) } });
  });

  test('a whole log must start at seq 1', () => {
    expect(verifyEvents(chain(5).slice(2), { fromGenesis: true })).toMatchObject({ ok: false, failure: { seq: 3, reason: expect.stringMatching(/starts at seq 3/) } });
    const events = chain(5);
    expect(verifyEvents(events.slice(2), { expectedPrev: events[1]!.hash })).toMatchObject({ ok: true, first_seq: 3 });
  });

  test('an expected head (from a checkpoint) catches removal of the newest events and a different head', () => {
    const events = chain(5);
    const head = { seq: 5, hash: events[4]!.hash };
    expect(verifyEvents(events, { expectedHead: head }).ok).toBe(true);
    expect(verifyEvents(events, { expectedHead: { seq: 3, hash: events[2]!.hash } }).ok).toBe(true);
    expect(verifyEvents(events.slice(0, 3), { expectedHead: head })).toMatchObject({ ok: false, failure: { seq: 4, reason: expect.stringMatching(/events missing.*ends at seq 3/) } });
    expect(verifyEvents(events, { expectedHead: { seq: 4, hash: 'a'.repeat(64) } })).toMatchObject({ ok: false, failure: { seq: 4, reason: expect.stringMatching(/head hash differs/) } });
  });
});

describe('verifyStore', () => {
  test('walks a store page by page, linking pages, and names a failure on a page boundary', async () => {
    const store = await openStore('sqlite::memory:');
    const events = chain(10);
    await store.appendEvents(events.map(({ seq: _s, prev_hash: _p, hash: _h, payload_sha256: _ps, payload: _pl, ...e }) => e));
    expect(await verifyStore(store, { pageSize: 3 })).toMatchObject({ ok: true, events: 10, last_seq: 10 });
    // The same log with event 4 (first of the second page) forged and rehashed: the link from seq 3 still holds,
    // but event 5 no longer links to it.
    const forged = [...(await store.readEvents({}))];
    const { seq: _s, prev_hash: _p, hash: _h, payload_sha256: _ps, payload: _pl, ...fourth } = forged[3]!;
    forged[3] = sealEvent({ ...fourth, data: { i: 'forged' } }, 4, forged[2]!.hash);
    const paged = { readEvents: async (f: { afterSeq?: number; limit?: number }) => forged.filter((e) => e.seq > (f.afterSeq ?? 0)).slice(0, f.limit), readPayloads: async () => new Map() };
    expect(await verifyStore(paged, { pageSize: 3 })).toMatchObject({ ok: false, failure: { seq: 5, reason: expect.stringMatching(/prev link broken.*seq 4/) } });
    await store.close();
  });
});
