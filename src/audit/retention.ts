/**
 * Audit retention (`audit.retention: {payloads: 400d, events: 7y}`; docs/audit-retention.md): a
 * job in the gateway that runs at start and then every hour and deletes, in short batches so
 * statements keep being recorded meanwhile:
 *
 * - payloads: the payloads (returned rows, kept notices, uploaded COPY data) of events recorded
 *   more than `payloads` ago. The events stay with their payload_sha256, so the chain verifies as
 *   before and readers see `payload: null` ("pruned"). Recorded after the delete as `audit.pruned`
 *   {kind: payloads, before, count, first_seq, last_seq}, only when something was deleted.
 *
 * - events: a whole prefix of the log, so that it starts at an event a signed checkpoint vouches
 *   for. C = the newest checkpoint recorded more than `events` ago; it signed head S (data.seq,
 *   before C itself). Everything before S goes (with its payloads); S, C and everything after
 *   stay, so the remaining log starts at S and C, still in it, vouches for S's hash: a verifier
 *   checks the whole remaining log against a signature. Recorded BEFORE the delete (write-ahead,
 *   as statements are): `audit.pruned` {kind: events, before, count, first_seq, last_seq: S - 1,
 *   new_first_seq: S, anchor_checkpoint_seq: C}. A log whose first event lies in
 *   first_seq..new_first_seq of such a record verifies (src/audit/verify.ts `prunedStart`); any
 *   other start is "events missing". The job never extends a start it cannot explain: if the log
 *   already starts after 1 without such a record (events deleted by someone else), it deletes no
 *   events and logs an error, so retention cannot launder a deletion.
 *
 * Replicas on one PostgreSQL store each run the job. Deletes are idempotent (a row goes once;
 * payload batches skip rows another replica holds); payload records count what each replica
 * deleted; an events prune already recorded (by another replica, or by a run cut short) is
 * finished without a second record. Two replicas planning the same events prune at the same
 * instant may both record it: the same range twice, harmless to verification.
 */
import { errorMessage } from '../errors.js';
import type { Store } from '../store/store.js';
import { verifyCheckpoint } from './checkpoint.js';
import { SYSTEM_ACTOR, type AuditPrunedData } from './event.js';
import type { AuditRecorder, RecorderLogger } from './recorder.js';

export const RETENTION_INTERVAL_MS = 3_600_000;

/** Batch bounds: each batch is one short transaction. */
const PAYLOAD_BATCH = 1000;
const PAYLOAD_BATCH_BYTES = 32 * 1024 * 1024;
const EVENT_BATCH = 5000;

export interface RetentionOptions {
  store: Pick<Store, 'prunePayloads' | 'pruneEvents' | 'newestCheckpointBefore' | 'readEvents'>;
  recorder: Pick<AuditRecorder, 'record'>;
  logger: RecorderLogger & { error?(obj: object, msg: string): void; info?(obj: object, msg: string): void };
  /** How long payloads and events are kept, in ms; null: forever. */
  payloadsMs: number | null;
  eventsMs: number | null;
  /** Between runs; default one hour. */
  intervalMs?: number;
  /** The clock (tests move it forward). */
  now?: () => number;
}

/** What one run deleted; null where that kind is not configured or nothing was deleted. */
export interface RetentionOutcome {
  payloads: Extract<AuditPrunedData, { kind: 'payloads' }> | null;
  events: Extract<AuditPrunedData, { kind: 'events' }> | null;
}

export class RetentionJob {
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<RetentionOutcome> | null = null;
  private closing = false;

  constructor(private readonly o: RetentionOptions) {}

  /** Runs now, then every interval. */
  start(): void {
    if (this.timer || this.closing) return;
    void this.run();
    this.timer = setInterval(() => void this.run(), this.o.intervalMs ?? RETENTION_INTERVAL_MS);
    this.timer.unref();
  }

  /** One run (joins the one in progress). Never rejects: a failure is logged and the next run tries again. */
  run(): Promise<RetentionOutcome> {
    this.running ??= this.prune().finally(() => (this.running = null));
    return this.running;
  }

  /** Stops the timer and waits for the run in progress, which stops after its current batch. */
  async close(): Promise<void> {
    this.closing = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.running;
  }

  private async prune(): Promise<RetentionOutcome> {
    const now = (this.o.now ?? Date.now)();
    const outcome: RetentionOutcome = { payloads: null, events: null };
    if (this.o.payloadsMs !== null) {
      try {
        outcome.payloads = await this.prunePayloads(new Date(now - this.o.payloadsMs).toISOString());
      } catch (err) {
        this.o.logger.warn({ error: errorMessage(err) }, 'audit retention could not prune payloads; the next run tries again');
      }
    }
    if (this.o.eventsMs !== null) {
      try {
        outcome.events = await this.pruneEvents(new Date(now - this.o.eventsMs).toISOString());
      } catch (err) {
        this.o.logger.warn({ error: errorMessage(err) }, 'audit retention could not prune events; the next run tries again');
      }
    }
    return outcome;
  }

  private async prunePayloads(before: string): Promise<RetentionOutcome['payloads']> {
    let count = 0;
    let first = Number.POSITIVE_INFINITY;
    let last = 0;
    let failure: unknown = null;
    try {
      while (!this.closing) {
        const r = await this.o.store.prunePayloads({ before, limit: PAYLOAD_BATCH, maxBytes: PAYLOAD_BATCH_BYTES });
        if (r.count === 0) break;
        count += r.count;
        first = Math.min(first, r.first_seq!);
        last = Math.max(last, r.last_seq!);
      }
    } catch (err) {
      failure = err; // what was deleted before is still recorded
    }
    let data: RetentionOutcome['payloads'] = null;
    if (count > 0) {
      data = { kind: 'payloads', before, count, first_seq: first, last_seq: last };
      await this.o.recorder.record({ type: 'audit.pruned', actor: SYSTEM_ACTOR, data });
      this.o.logger.info?.({ before, count }, 'audit retention pruned payloads');
    }
    if (failure) throw failure;
    return data;
  }

  private async pruneEvents(before: string): Promise<RetentionOutcome['events']> {
    const anchor = await this.o.store.newestCheckpointBefore(before);
    if (!anchor) return null;
    const signed = verifyCheckpoint(anchor.data);
    if (!signed.ok || signed.data.seq >= anchor.seq) {
      this.o.logger.warn({ seq: anchor.seq }, 'audit retention: the newest checkpoint before the cutoff does not verify; no events pruned');
      return null;
    }
    const start = signed.data.seq; // the new first event
    const [first] = await this.o.store.readEvents({ limit: 1, payload: false });
    if (!first || first.seq >= start) return null;
    // Never delete the evidence of a rewrite: the new start must be the event the checkpoint signed.
    const [head] = await this.o.store.readEvents({ afterSeq: start - 1, limit: 1, payload: false });
    if (head?.seq !== start || head.hash !== signed.data.hash) {
      (this.o.logger.error ?? this.o.logger.warn).call(this.o.logger, { seq: start, checkpoint: anchor.seq },
        'audit retention: the event a checkpoint signed does not have the hash it signed (the log was changed); no events pruned');
      return null;
    }
    const prior = await this.latestEventsPruning();
    if (first.seq > 1 && !(prior && prior.first_seq <= first.seq && first.seq <= prior.new_first_seq)) {
      (this.o.logger.error ?? this.o.logger.warn).call(this.o.logger, { first_seq: first.seq },
        'audit retention: the audit log starts after seq 1 with no audit.pruned record of why (events were deleted outside hoop); no events pruned');
      return null;
    }
    let data: RetentionOutcome['events'] = null;
    // Not recorded yet (neither by another replica nor by a run cut short): record it first.
    if (!(prior && prior.first_seq <= first.seq && prior.new_first_seq >= start)) {
      data = { kind: 'events', before, count: start - first.seq, first_seq: first.seq, last_seq: start - 1, new_first_seq: start, anchor_checkpoint_seq: anchor.seq };
      await this.o.recorder.record({ type: 'audit.pruned', actor: SYSTEM_ACTOR, data });
    }
    // Their payloads first, bounded by bytes; then the events, a few thousand at a time.
    while (!this.closing && (await this.o.store.prunePayloads({ beforeSeq: start, limit: PAYLOAD_BATCH, maxBytes: PAYLOAD_BATCH_BYTES })).count > 0);
    let deleted = 0;
    while (!this.closing) {
      const r = await this.o.store.pruneEvents({ beforeSeq: start, limit: EVENT_BATCH });
      if (r.count === 0) break;
      deleted += r.count;
    }
    if (deleted > 0) this.o.logger.info?.({ before, deleted, new_first_seq: start }, 'audit retention pruned events');
    return data;
  }

  /** The newest `audit.pruned` record of kind events, or null: read newest first, a page at a time. */
  private async latestEventsPruning(): Promise<Extract<AuditPrunedData, { kind: 'events' }> | null> {
    let beforeSeq: number | undefined;
    for (;;) {
      const page = await this.o.store.readEvents({ types: ['audit.pruned'], newestFirst: true, limit: 100, payload: false, ...(beforeSeq ? { beforeSeq } : {}) });
      for (const e of page) {
        const d = e.data as Partial<Extract<AuditPrunedData, { kind: 'events' }>>;
        if (d.kind === 'events' && typeof d.first_seq === 'number' && typeof d.new_first_seq === 'number') return d as Extract<AuditPrunedData, { kind: 'events' }>;
      }
      if (page.length < 100) return null;
      beforeSeq = page.at(-1)!.seq;
    }
  }
}
