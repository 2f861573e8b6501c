/**
 * The write-ahead audit recorder, with group commit.
 *
 * record() places a draft in a FIFO queue and returns a promise. One batch at a time goes to
 * `store.appendEvents` (one transaction, one fsync); everything recorded while that batch is in
 * flight waits and goes together in the next one. Under concurrency the cost of an fsync is
 * shared by every statement waiting for it, instead of paid once per statement in series.
 *
 * Guarantees:
 *  - a record() promise resolves only after its batch is durable, with the sealed event;
 *  - if the batch fails, every record() in it rejects with AuditUnavailableError (fail closed:
 *    the caller must not proceed), and the next batch is tried afresh;
 *  - events enter the chain in the order of record() calls;
 *  - the queue is bounded: past `maxQueue` waiting events, record() rejects at once rather than
 *    letting memory grow while the store is slow or down.
 *
 * recordLater() events (query.end, session.end) do not start a batch of their own: they ride with
 * the next record() batch, or go after `lazyFlushMs`. A client running statements one after
 * another then pays one fsync per statement instead of two.
 */
import { AuditUnavailableError, errorMessage } from '../errors.js';
import type { Store } from '../store/store.js';
import { EncodedEvent } from './chain.js';
import { eventId } from './event-id.js';
import type { AuditEvent, AuditEventDraft } from './event.js';

export interface RecorderLogger {
  warn(obj: object, msg: string): void;
}

export interface AuditRecorderOptions {
  logger?: RecorderLogger;
  /** Events waiting for the store beyond which record() rejects. Default 10 000. */
  maxQueue?: number;
  /**
   * Size of the events waiting (characters of canonical JSON, about bytes) beyond which
   * record() rejects: query.end events carry results up to payload_limit each, so counting
   * events alone does not bound memory. Default 256 MiB. An event larger than this is still
   * taken when the queue is empty.
   */
  maxQueueBytes?: number;
  /** Most events in one appendEvents call. Default 1 000. */
  maxBatch?: number;
  /** Size (as maxQueueBytes) beyond which a batch is cut; it always holds at least one event. Default 32 MiB. */
  maxBatchBytes?: number;
  /** Longest a recordLater() event waits for a record() batch to ride with. Default 20 ms. */
  lazyFlushMs?: number;
}

interface Pending {
  event: EncodedEvent;
  bytes: number;
  resolve(e: AuditEvent): void;
  reject(err: AuditUnavailableError): void;
}

const stderrLogger: RecorderLogger = {
  warn(obj, msg) {
    process.stderr.write(`${JSON.stringify({ level: 'warn', time: new Date().toISOString(), msg, ...obj })}\n`);
  },
};

export class AuditRecorder {
  private readonly logger: RecorderLogger;
  private readonly maxQueue: number;
  private readonly maxQueueBytes: number;
  private readonly maxBatch: number;
  private readonly maxBatchBytes: number;
  private readonly lazyFlushMs: number;
  private lazyTimer: NodeJS.Timeout | null = null;
  private readonly queue: Pending[] = [];
  private queuedBytes = 0;
  private draining = false;
  /** Events accepted into the queue, and those whose batch has settled (durable or failed). */
  private accepted = 0;
  private settled = 0;
  private readonly flushWaiters: { upTo: number; resolve(): void }[] = [];

  constructor(
    private readonly store: Store,
    options: AuditRecorderOptions = {},
  ) {
    this.logger = options.logger ?? stderrLogger;
    this.maxQueue = options.maxQueue ?? 10_000;
    this.maxQueueBytes = options.maxQueueBytes ?? 256 * 1024 * 1024;
    this.maxBatch = options.maxBatch ?? 1_000;
    this.maxBatchBytes = options.maxBatchBytes ?? 32 * 1024 * 1024;
    this.lazyFlushMs = options.lazyFlushMs ?? 20;
  }

  /** Resolves with the sealed event once it is durable; rejects with AuditUnavailableError. */
  record(draft: AuditEventDraft): Promise<AuditEvent> {
    return this.enqueue(draft, true);
  }

  private enqueue(draft: AuditEventDraft, urgent: boolean): Promise<AuditEvent> {
    let event: EncodedEvent;
    let bytes: number;
    try {
      ({ event, bytes } = unsealedOf(draft));
    } catch (err) {
      return Promise.reject(new AuditUnavailableError(`audit event ${String(draft.type)} cannot be encoded: ${errorMessage(err)}`, { cause: err }));
    }
    const full = this.queue.length >= this.maxQueue || (this.queue.length > 0 && this.queuedBytes + bytes > this.maxQueueBytes);
    if (full) {
      return Promise.reject(
        new AuditUnavailableError(`the audit queue is full (${this.queue.length} events, ${this.queuedBytes} bytes waiting for the store)`, {
          hint: 'the audit store is too slow or unavailable; check its health',
        }),
      );
    }
    return new Promise<AuditEvent>((resolve, reject) => {
      this.queue.push({ event, bytes, resolve, reject });
      this.queuedBytes += bytes;
      this.accepted++;
      this.schedule(urgent);
    });
  }

  /** For after-the-fact events (query.end, session.end): failures are logged, never thrown. */
  recordLater(draft: AuditEventDraft): void {
    this.enqueue(draft, false).catch((err: unknown) => {
      // Type and session only: data may hold statements, parameters and results.
      this.logger.warn(
        { type: draft.type, session_id: draft.session_id ?? null, connection: draft.connection ?? null, error: errorMessage(err) },
        'audit event could not be recorded',
      );
    });
  }

  /** Resolves once every event recorded before this call is durable or has failed. */
  flush(): Promise<void> {
    if (this.settled >= this.accepted) return Promise.resolve();
    const done = new Promise<void>((resolve) => this.flushWaiters.push({ upTo: this.accepted, resolve }));
    this.schedule(true);
    return done;
  }

  private schedule(urgent: boolean): void {
    if (this.draining) return; // the running drain takes everything queued
    if (!urgent) {
      this.lazyTimer ??= setTimeout(() => this.schedule(true), this.lazyFlushMs);
      return;
    }
    if (this.lazyTimer) {
      clearTimeout(this.lazyTimer);
      this.lazyTimer = null;
    }
    this.draining = true;
    // setImmediate, not a microtask: lets the I/O callbacks of this loop turn record too, so
    // statements arriving together share the first batch.
    setImmediate(() => void this.drain());
  }

  private async drain(): Promise<void> {
    while (this.queue.length > 0) {
      const batch = this.queue.splice(0, this.batchLength());
      for (const p of batch) this.queuedBytes -= p.bytes;
      await this.append(batch);
      this.settled += batch.length;
      this.wakeFlushWaiters();
      if (this.queue.length > 0) await new Promise((r) => setImmediate(r));
    }
    this.draining = false;
  }

  /** How many queued events the next batch takes: up to maxBatch events and maxBatchBytes, at least one. */
  private batchLength(): number {
    let n = 0;
    let bytes = 0;
    while (n < this.queue.length && n < this.maxBatch) {
      bytes += this.queue[n]!.bytes;
      if (n > 0 && bytes > this.maxBatchBytes) break;
      n++;
    }
    return n;
  }

  private async append(batch: Pending[]): Promise<void> {
    let sealed: AuditEvent[];
    try {
      sealed = await this.store.appendEvents(batch.map((p) => p.event));
      if (sealed.length !== batch.length) throw new Error(`the store returned ${sealed.length} events for a batch of ${batch.length}`);
    } catch (err) {
      const failure = new AuditUnavailableError(`the audit log could not be written: ${errorMessage(err)}`, {
        cause: err,
        hint: 'the statement was not run; check the audit store and retry',
      });
      this.logger.warn({ events: batch.length, error: errorMessage(err) }, 'audit store append failed; the events of this batch were refused');
      for (const p of batch) p.reject(failure);
      return;
    }
    batch.forEach((p, i) => p.resolve(sealed[i]!));
  }

  private wakeFlushWaiters(): void {
    for (let i = this.flushWaiters.length - 1; i >= 0; i--) {
      const w = this.flushWaiters[i]!;
      if (this.settled >= w.upTo) {
        this.flushWaiters.splice(i, 1);
        w.resolve();
      }
    }
  }
}

/** The current time as RFC 3339 UTC milliseconds; formatted once per millisecond (events come in bursts). */
let lastMs = Number.NaN;
let lastIso = '';
function isoNow(ms: number): string {
  if (ms !== lastMs) {
    lastIso = new Date(ms).toISOString();
    lastMs = ms;
  }
  return lastIso;
}

/**
 * Stamps id and time and encodes the event once (EncodedEvent: canonical JSON of each field, and
 * a snapshot read back from it), so that a caller mutating its objects afterwards cannot change
 * what is recorded, what is returned equals what is stored, and the store hashes and writes that
 * JSON without encoding the event again.
 */
function unsealedOf(draft: AuditEventDraft): { event: EncodedEvent; bytes: number } {
  if (typeof draft.type !== 'string' || (draft.type as string) === '') throw new TypeError('type must be a non-empty string');
  if (typeof draft.data !== 'object' || draft.data === null || Array.isArray(draft.data)) throw new TypeError('data must be an object');
  const now = Date.now();
  const event = EncodedEvent.of({
    id: eventId(now),
    time: isoNow(now),
    type: draft.type,
    actor: draft.actor ?? null,
    source: draft.source ?? null,
    connection: draft.connection ?? null,
    session_id: draft.session_id ?? null,
    data: draft.data,
    ...(draft.payload !== undefined ? { payload: draft.payload } : {}),
  });
  let bytes = event.payloadJson?.length ?? 0;
  for (const text of Object.values(event.json)) bytes += text?.length ?? 0;
  return { event, bytes };
}
