/**
 * Offline verification of an audit log (the core of `hoop audit verify`): the hash chain over a
 * list of events, or over a whole store read page by page. Signed checkpoints, which also catch
 * removal of the newest events, are checked on top of this.
 */
import { verifyChain } from './chain.js';
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
}

export interface VerifyOptions {
  /** Hash the first event must link to; GENESIS_HASH when the list starts at seq 1. */
  expectedPrev?: string;
  /** The log must start at seq 1 (a whole log rather than a segment). */
  fromGenesis?: boolean;
  /** A head known from elsewhere (a checkpoint): the log must reach it with this hash. */
  expectedHead?: { seq: number; hash: string };
}

export function verifyEvents(events: AuditEvent[], options: VerifyOptions = {}): VerifyReport {
  const report = new ChainWalk(options);
  report.add(events);
  return report.finish();
}

/** Verifies everything in a store from seq 1, `pageSize` events at a time. */
export async function verifyStore(store: Pick<Store, 'readEvents'>, options: { pageSize?: number } = {}): Promise<VerifyReport> {
  const pageSize = options.pageSize ?? 1000;
  const walk = new ChainWalk({ fromGenesis: true });
  for (;;) {
    const page = await store.readEvents({ afterSeq: walk.lastSeq ?? 0, limit: pageSize });
    if (!walk.add(page) || page.length < pageSize) return walk.finish();
  }
}

/** Incremental verifier: feed events in order, page by page. */
class ChainWalk {
  private count = 0;
  private first: AuditEvent | null = null;
  private last: AuditEvent | null = null;
  private failure: { seq: number; reason: string } | null = null;
  private headHash: string | null = null;

  constructor(private readonly options: VerifyOptions) {}

  get lastSeq(): number | null {
    return this.last?.seq ?? null;
  }

  /** Returns false once a failure is found. */
  add(events: AuditEvent[]): boolean {
    if (this.failure || events.length === 0) return !this.failure;
    if (!this.first) {
      const start = events[0]!;
      if (this.options.fromGenesis && start.seq !== 1) {
        this.failure = { seq: start.seq, reason: `the log starts at seq ${start.seq}, not 1 (events missing)` };
        return false;
      }
    }
    // Re-checking the previous page's last event links this page to it.
    const verdict = this.last ? verifyChain([this.last, ...events]) : verifyChain(events, this.options.expectedPrev);
    if (verdict.ok) {
      this.accept(events);
      return true;
    }
    // The events before the failing one are good: count them, so the report says how far it held.
    const good = events.findIndex((e) => e.seq === verdict.seq);
    if (good > 0) this.accept(events.slice(0, good));
    this.failure = { seq: verdict.seq, reason: verdict.reason };
    return false;
  }

  private accept(events: AuditEvent[]): void {
    this.first ??= events[0]!;
    this.last = events[events.length - 1]!;
    this.count += events.length;
    const head = this.options.expectedHead;
    if (head) this.headHash ??= events.find((e) => e.seq === head.seq)?.hash ?? null;
  }

  finish(): VerifyReport {
    const head = this.options.expectedHead;
    if (!this.failure && head) this.failure = this.checkHead(head);
    return {
      ok: this.failure === null,
      events: this.count,
      first_seq: this.first?.seq ?? null,
      last_seq: this.last?.seq ?? null,
      head_hash: this.last?.hash ?? null,
      failure: this.failure,
    };
  }

  private checkHead(head: { seq: number; hash: string }): { seq: number; reason: string } | null {
    const lastSeq = this.last?.seq ?? 0;
    if (lastSeq < head.seq) return { seq: lastSeq + 1, reason: `events missing: the log ends at seq ${lastSeq}, the expected head is seq ${head.seq}` };
    if (this.headHash !== head.hash) return { seq: head.seq, reason: 'the head hash differs from the expected head' };
    return null;
  }
}
