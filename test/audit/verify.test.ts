import { generateKeyPairSync, randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { GENESIS_HASH, sealEvent } from '../../src/audit/chain.js';
import { CheckpointSigner } from '../../src/audit/checkpoint.js';
import type { AuditEvent, AuditEventDraft } from '../../src/audit/event.js';
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

describe('a log that audit retention cut at the front (prunedStart)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'hoop-verify-pruned-'));
  const keyPath = join(dir, 'signing.key');
  writeFileSync(keyPath, generateKeyPairSync('ed25519').privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
  const signer = CheckpointSigner.fromFile(keyPath);
  rmSync(dir, { recursive: true, force: true });

  /** Seals drafts in order; `checkpoint` signs the head before it, `pruned` records events retention up to `start`. */
  function log(steps: ('event' | 'checkpoint' | { pruned: { first: number; start: number; anchor: number } })[]): AuditEvent[] {
    const out: AuditEvent[] = [];
    for (const step of steps) {
      const prev = out.at(-1);
      const base = { id: randomUUID(), time: new Date(Date.UTC(2026, 5, 1, 0, 0, out.length)).toISOString(), actor: null, source: null, connection: null, session_id: null };
      const draft: Pick<AuditEventDraft, 'type' | 'data'> = step === 'event'
        ? { type: 'query.start', data: { n: out.length + 1 } }
        : step === 'checkpoint'
          ? { type: 'checkpoint', data: { ...signer.sign({ seq: prev!.seq, hash: prev!.hash }) } }
          : { type: 'audit.pruned', data: { kind: 'events', before: base.time, count: step.pruned.start - step.pruned.first, first_seq: step.pruned.first, last_seq: step.pruned.start - 1, new_first_seq: step.pruned.start, anchor_checkpoint_seq: step.pruned.anchor } };
      out.push(sealEvent({ ...base, ...draft }, out.length + 1, prev?.hash ?? GENESIS_HASH));
    }
    return out;
  }
  // 1-3 events, 4 checkpoint of 3, 5 event, 6 checkpoint of 5, 7 the record: seqs 1..2 go, the log starts at 3.
  const whole = log(['event', 'event', 'event', 'checkpoint', 'event', 'checkpoint', { pruned: { first: 1, start: 3, anchor: 4 } }, 'event']);

  test('starts where the audit.pruned record says, vouched for by a checkpoint; checkpoints of deleted heads are skipped', () => {
    expect(verifyEvents(whole, { fromGenesis: true })).toMatchObject({ ok: true });
    expect(verifyEvents(whole, { fromGenesis: true })).not.toHaveProperty('pruned_start');
    expect(verifyEvents(whole.slice(2), { fromGenesis: true, prunedStart: true })).toMatchObject({
      ok: true, first_seq: 3, checkpoints: 2, pruned_start: { first_seq: 3, pruned_event_seq: 7, checkpoint_seq: 4 },
    });
    // A delete cut short (the record is written first) starts inside the recorded range: still fine.
    expect(verifyEvents(whole.slice(1), { fromGenesis: true, prunedStart: true })).toMatchObject({ ok: true, pruned_start: { first_seq: 2 } });
    // Without the option, as before.
    expect(verifyEvents(whole.slice(2), { fromGenesis: true })).toMatchObject({ ok: false, failure: { seq: 3, reason: expect.stringMatching(/starts at seq 3/) } });
  });

  test('any other start is events missing: beyond the record, without a record, or without a checkpoint from there on', () => {
    expect(verifyEvents(whole.slice(3), { fromGenesis: true, prunedStart: true })).toMatchObject({ ok: false, failure: { seq: 4, reason: expect.stringMatching(/no audit.pruned event/) } });
    const unrecorded = log(['event', 'event', 'event', 'checkpoint', 'event']);
    expect(verifyEvents(unrecorded.slice(2), { fromGenesis: true, prunedStart: true })).toMatchObject({ ok: false, failure: { seq: 3, reason: expect.stringMatching(/no audit.pruned event/) } });
    const unanchored = log(['event', 'event', 'event', { pruned: { first: 1, start: 3, anchor: 9 } }, 'event']);
    expect(verifyEvents(unanchored.slice(2), { fromGenesis: true, prunedStart: true })).toMatchObject({ ok: false, failure: { seq: 3, reason: expect.stringMatching(/no signed checkpoint/) } });
    // An edit after the cut is caught as anywhere else.
    const edited = whole.slice(2).map((e) => (e.seq === 5 ? { ...e, data: { n: 99 } } : e));
    expect(verifyEvents(edited, { fromGenesis: true, prunedStart: true })).toMatchObject({ ok: false, failure: { seq: 5, reason: expect.stringMatching(/hash mismatch/) } });
  });
});
