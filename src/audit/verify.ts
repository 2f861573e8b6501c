/**
 * Offline verification of an audit log (the core of `hoop audit verify`): the hash chain over a
 * list of events, or over a whole store read page by page, and every signed `checkpoint` in it:
 * its signature, and that the head it vouches for is the event the chain has at that seq (a log
 * rewritten with recomputed hashes fails here). Which signing keys to trust is the caller's
 * question: the report lists the key ids that signed.
 */
import { verifyCheckpoint } from './checkpoint.js';
import { checkPayload, verifyChain } from './chain.js';
import type { AuditEvent } from './event.js';
import type { Store } from '../store/store.js';

export interface VerifyReport {
  ok: boolean;
  /** Events that were checked. */
  events: number;
  first_seq: number | null;
  last_seq: number | null;
  /** Hash of the last event checked: the head the log vouches for. */
  head_hash: string | null;
  /** The first event that failed and why; null when ok. */
  failure: { seq: number; reason: string } | null;
  /** Checkpoints whose signature and head were checked, and the newest of them. */
  checkpoints: number;
  last_checkpoint: { seq: number; covers_seq: number; key_id: string } | null;
  /** The keys (key_id) that signed the checkpoints, in order of first use. */
  key_ids: string[];
  /** Payloads checked against their event's payload_sha256. */
  payloads: number;
  /** Events with a payload_sha256 whose payload was read back as pruned (null): audit retention, not tampering. */
  payloads_pruned: number;
  /**
   * Present only when the log starts after seq 1 because audit retention deleted its oldest events
   * (see `prunedStart`): where it starts, the `audit.pruned` event that recorded it, and the
   * checkpoint that vouches for the new start.
   */
  pruned_start?: { first_seq: number; pruned_event_seq: number; checkpoint_seq: number };
}

/** How far back a checkpoint's head may lie (it is signed just before it is appended). */
export const CHECKPOINT_WINDOW = 100_000;

export interface VerifyOptions {
  /** Hash the first event must link to; GENESIS_HASH when the list starts at seq 1. */
  expectedPrev?: string;
  /** The log must start at seq 1 (a whole log rather than a segment). */
  fromGenesis?: boolean;
  /** A head known from elsewhere (a checkpoint): the log must reach it with this hash. */
  expectedHead?: { seq: number; hash: string };
  /**
   * With `fromGenesis`: also accept a log whose first event F is after seq 1 when audit retention
   * deleted what came before (src/audit/retention.ts), which holds when the log itself says so: an
   * `audit.pruned` event of kind `events` with first_seq <= F <= new_first_seq (recorded before the
   * delete), and a signed checkpoint in the log that vouches for an event at or after F (so the
   * start is the gateway's, not a rebuilt chain). Checkpoints that vouch for deleted events are
   * skipped. Any other start is "events missing".
   */
  prunedStart?: boolean;
}

export function verifyEvents(events: AuditEvent[], options: VerifyOptions = {}): VerifyReport {
  const report = new ChainWalk(options);
  report.add(events);
  return report.finish();
}

export interface VerifyStoreOptions {
  /** Events read per page (and payloads per readPayloads call); at most 1000. Default 1000. */
  pageSize?: number;
  /** A head known from elsewhere (the last checkpoint a SIEM or a bundle holds): the store must still reach it. */
  expectedHead?: { seq: number; hash: string };
  /** Accept a log that starts where audit retention left it (default true); false: only seq 1. */
  prunedStart?: boolean;
}

/**
 * Verifies everything in a store from seq 1, a page at a time: events without their payloads,
 * then the payloads of that page's events that have one (readPayloads), each checked against its
 * payload_sha256. A payload the store no longer has (null: retention pruned it) is counted in
 * `payloads_pruned`, not a failure. Memory holds one page of events and one of payloads.
 */
export async function verifyStore(store: Pick<Store, 'readEvents' | 'readPayloads'>, options: VerifyStoreOptions = {}): Promise<VerifyReport> {
  const pageSize = Math.min(options.pageSize ?? 1000, 1000);
  const walk = new ChainWalk({ fromGenesis: true, prunedStart: options.prunedStart ?? true, ...(options.expectedHead ? { expectedHead: options.expectedHead } : {}) });
  const read = (afterSeq: number) => store.readEvents({ afterSeq, limit: pageSize, payload: false });
  let next = read(0);
  for (;;) {
    const page = await next;
    // The next page is read while this one's payloads and chain are checked (two pages at most in memory).
    if (page.length === pageSize) next = read(page[page.length - 1]!.seq);
    const bad = await walk.checkPayloads(store, page);
    // The chain is checked up to the first bad payload, so the report names whichever comes first.
    const upTo = bad ? page.filter((e) => e.seq < bad.seq) : page;
    const ok = walk.add(upTo);
    if (!ok || bad || page.length < pageSize) {
      if (page.length === pageSize) await next.catch(() => {}); // nothing left running
      return ok && bad ? walk.failWith(bad) : walk.finish();
    }
  }
}

/** Incremental verifier: feed events in order, page by page. */
class ChainWalk {
  private count = 0;
  private first: AuditEvent | null = null;
  private last: AuditEvent | null = null;
  private failure: { seq: number; reason: string } | null = null;
  private headHash: string | null = null;
  /** Hashes of the last CHECKPOINT_WINDOW events, by seq, for the heads checkpoints name. */
  private readonly recent = new Map<number, string>();
  private checkpoints = 0;
  private lastCheckpoint: VerifyReport['last_checkpoint'] = null;
  private readonly keyIds: string[] = [];
  private payloadsPruned = 0;
  /** The first seq of a log that starts after 1 (prunedStart), and what vouches for that start. */
  private prunedFrom: number | null = null;
  private prunedBy: number | null = null;
  private prunedAnchor: number | null = null;
  private payloads = 0;

  constructor(private readonly options: VerifyOptions) {}

  /** Reads and checks the payloads of `page` (read without them); the first bad one, if any. */
  async checkPayloads(store: Pick<Store, 'readPayloads'>, page: AuditEvent[]): Promise<{ seq: number; reason: string } | null> {
    const withPayload = page.filter((e) => e.payload_sha256 !== undefined);
    if (withPayload.length === 0) return null;
    const payloads = await store.readPayloads(withPayload.map((e) => e.seq));
    for (const e of withPayload) {
      const payload = payloads.get(e.seq);
      if (payload === undefined) return { seq: e.seq, reason: 'the store returned no payload state for an event with a payload_sha256' };
      if (payload === null) {
        this.payloadsPruned++;
        continue;
      }
      const bad = checkPayload({ payload_sha256: e.payload_sha256, payload });
      if (bad) return { seq: e.seq, reason: bad };
      this.payloads++;
    }
    return null;
  }

  /** Ends the walk with this failure (found outside the chain: a payload). */
  failWith(failure: { seq: number; reason: string }): VerifyReport {
    this.failure ??= failure;
    return this.finish();
  }

  get lastSeq(): number | null {
    return this.last?.seq ?? null;
  }

  /** Returns false once a failure is found. */
  add(events: AuditEvent[]): boolean {
    if (this.failure || events.length === 0) return !this.failure;
    if (!this.first) {
      const start = events[0]!;
      if (this.options.fromGenesis && start.seq !== 1) {
        if (!this.options.prunedStart) {
          this.failure = { seq: start.seq, reason: `the log starts at seq ${start.seq}, not 1 (events missing)` };
          return false;
        }
        this.prunedFrom = start.seq; // checked at finish: the log must say why
      }
    }
    // Re-checking the previous page's last event links this page to it.
    const verdict = this.last ? verifyChain([this.last, ...events]) : verifyChain(events, this.options.expectedPrev);
    const good = verdict.ok ? events.length : events.findIndex((e) => e.seq === verdict.seq);
    // The events before a failing one are good: count them, so the report says how far it held.
    for (const e of events.slice(0, Math.max(good, 0))) {
      const bad = this.accept(e);
      if (bad) {
        this.failure = bad;
        return false;
      }
    }
    if (!verdict.ok) this.failure = { seq: verdict.seq, reason: verdict.reason };
    return verdict.ok;
  }

  /** Takes one event the chain vouches for; a checkpoint is checked against what came before. */
  private accept(e: AuditEvent): { seq: number; reason: string } | null {
    if (e.type === 'checkpoint') {
      const bad = this.checkCheckpoint(e);
      if (bad) return { seq: e.seq, reason: bad };
    }
    this.first ??= e;
    this.last = e;
    this.count++;
    // A payload read with the event (verifyEvents) was checked by verifyChain; verifyStore reads them apart.
    if (e.payload_sha256 !== undefined && e.payload !== undefined) {
      if (e.payload === null) this.payloadsPruned++;
      else this.payloads++;
    }
    if (this.prunedFrom !== null && this.prunedBy === null && prunedUpTo(e, this.prunedFrom)) this.prunedBy = e.seq;
    this.recent.set(e.seq, e.hash);
    this.recent.delete(e.seq - CHECKPOINT_WINDOW);
    if (this.options.expectedHead?.seq === e.seq) this.headHash = e.hash;
    return null;
  }

  private checkCheckpoint(e: AuditEvent): string | null {
    const verdict = verifyCheckpoint(e.data);
    if (!verdict.ok) return verdict.reason;
    const { seq, hash, key_id } = verdict.data;
    if (seq >= e.seq) return `checkpoint vouches for seq ${seq}, which is not before it`;
    const actual = this.recent.get(seq);
    if (actual === undefined) {
      const before = this.first ? this.first.seq : e.seq;
      // A segment that starts after the head it names cannot check it; a whole log always can,
      // unless retention deleted that head.
      if (seq < before && (!this.options.fromGenesis || this.prunedFrom !== null)) return null;
      return `checkpoint vouches for seq ${seq}, more than ${CHECKPOINT_WINDOW} events earlier`;
    }
    if (actual !== hash) return `checkpoint vouches for a different hash at seq ${seq}: the log was rewritten after it was signed`;
    this.checkpoints++;
    if (this.prunedFrom !== null && this.prunedAnchor === null && seq >= this.prunedFrom) this.prunedAnchor = e.seq;
    this.lastCheckpoint = { seq: e.seq, covers_seq: seq, key_id };
    if (!this.keyIds.includes(key_id)) this.keyIds.push(key_id);
    return null;
  }

  finish(): VerifyReport {
    const head = this.options.expectedHead;
    if (!this.failure && head) this.failure = this.checkHead(head);
    if (!this.failure && this.prunedFrom !== null) this.failure = this.checkPrunedStart(this.prunedFrom);
    return {
      ok: this.failure === null,
      events: this.count,
      first_seq: this.first?.seq ?? null,
      last_seq: this.last?.seq ?? null,
      head_hash: this.last?.hash ?? null,
      failure: this.failure,
      checkpoints: this.checkpoints,
      last_checkpoint: this.lastCheckpoint,
      key_ids: this.keyIds,
      payloads: this.payloads,
      payloads_pruned: this.payloadsPruned,
      ...(this.prunedFrom !== null && this.failure === null
        ? { pruned_start: { first_seq: this.prunedFrom, pruned_event_seq: this.prunedBy!, checkpoint_seq: this.prunedAnchor! } }
        : {}),
    };
  }

  private checkPrunedStart(from: number): { seq: number; reason: string } | null {
    if (this.prunedBy === null) {
      return { seq: from, reason: `the log starts at seq ${from}, not 1, and no audit.pruned event in it records retention deleting the events before (events missing)` };
    }
    if (this.prunedAnchor === null) {
      return { seq: from, reason: `the log starts at seq ${from} after audit retention, but no signed checkpoint in it vouches for an event from there on` };
    }
    return null;
  }

  private checkHead(head: { seq: number; hash: string }): { seq: number; reason: string } | null {
    const lastSeq = this.last?.seq ?? 0;
    if (lastSeq < head.seq) return { seq: lastSeq + 1, reason: `events missing: the log ends at seq ${lastSeq}, the expected head is seq ${head.seq}` };
    if (this.headHash !== head.hash) return { seq: head.seq, reason: 'the head hash differs from the expected head' };
    return null;
  }
}

/** Whether `e` is an `audit.pruned` record of events retention that explains a log starting at `from`. */
function prunedUpTo(e: AuditEvent, from: number): boolean {
  if (e.type !== 'audit.pruned' || e.data['kind'] !== 'events') return false;
  const first = e.data['first_seq'];
  const next = e.data['new_first_seq'];
  return typeof first === 'number' && typeof next === 'number' && first <= from && from <= next && next < e.seq;
}
