/**
 * Delivery to the SIEM sinks (docs/audit-sinks.md): at least once, in seq order, from a durable
 * per-sink cursor in the store, in the background.
 *
 * Per sink, one loop:
 *   claim       take or renew the sink's lease (store.claimSinkLease): with replicas on one
 *               PostgreSQL store only the holder delivers; the others only watch its lag
 *   read        the events after the cursor, one page bounded by count and bytes, without
 *               payloads (with `include_payload`, fetched a few at a time and cut at the budget)
 *   deliver     hand the page to the transport, with a deadline well inside the lease
 *   advance     move the cursor to the page's last seq (compare-and-set by lease owner); a lease
 *               lost meanwhile means another replica has taken over, and this one stops
 *   on failure  nothing advances: the same events go again after an exponential backoff with
 *               jitter (1 s doubling to 60 s), so a receiver down for an hour gets every event,
 *               in order, when it returns; repeats are possible (each event carries seq and hash)
 *
 * Never in the gateway's way: statements and the recorder never wait for a sink; a slow or dead
 * sink only lags (`hoop_audit_sink_lag_events`). Memory per sink is one page.
 */
import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { errorMessage } from '../../errors.js';
import type { Store } from '../../store/store.js';
import type { AuditEvent } from '../event.js';
import { FileTransport } from './file.js';
import { HttpTransport } from './http.js';
import { sinkRecordOf, type SinkConfig, type SinkRecord, type SinkTransport } from './sink.js';
import { SyslogTransport } from './syslog.js';

export interface SinkMetrics {
  /** `events` more were delivered to `sink`, the last at `atMs`. */
  sinkDelivered(sink: string, events: number, atMs: number): void;
  sinkError(sink: string): void;
  /** Head seq minus the sink's delivered seq. */
  sinkLag(sink: string, events: number): void;
}

export interface SinkLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}

export type SinkStore = Pick<Store, 'head' | 'readEventPage' | 'readPayloads' | 'readSinkCursor' | 'claimSinkLease' | 'advanceSinkCursor' | 'releaseSinkLease'>;

export interface DeliveryTuning {
  /** Most events per batch. Default 500. */
  pageEvents: number;
  /** Most bytes of event JSON per batch (one larger event still goes, alone). Default 1 MiB: on SQLite a page is read on the store's one thread, between appends, so it stays short. */
  pageBytes: number;
  /** How long a claimed lease lasts; renewed at every pass (a pass ends before a delivery could outlast it). Default 30 s. */
  leaseMs: number;
  /** Longest one delivery may take before it is cut off and counted as failed. Default 15 s. */
  deliverTimeoutMs: number;
  /**
   * A delivery starts only while the lease outlasts its deadline by this much, so that a replica
   * whose clock runs up to this far ahead cannot take the sink over while it is sent. Default 10 s.
   */
  leaseMarginMs: number;
  /** How often a caught-up (or not leaseholding) sink looks again. Default 1 s. */
  pollMs: number;
  /** First retry delay after a failure, doubled per failure up to `retryMaxMs`. Defaults 1 s, 60 s. */
  retryBaseMs: number;
  retryMaxMs: number;
}

export const DEFAULT_TUNING: DeliveryTuning = {
  pageEvents: 500,
  pageBytes: 1024 * 1024,
  leaseMs: 30_000,
  deliverTimeoutMs: 15_000,
  leaseMarginMs: 10_000,
  pollMs: 1_000,
  retryBaseMs: 1_000,
  retryMaxMs: 60_000,
};

/** Payloads are fetched this many events at a time. */
const PAYLOAD_CHUNK = 16;

export interface DelivererOptions {
  store: SinkStore;
  sink: SinkConfig;
  transport: SinkTransport;
  /** This process's lease owner id. */
  owner: string;
  logger: SinkLogger;
  metrics?: SinkMetrics | undefined;
  tuning?: Partial<DeliveryTuning> | undefined;
  now?: (() => number) | undefined;
  random?: (() => number) | undefined;
}

/** The wait after the `failures`-th failure in a row: base·2^(failures-1), capped, half of it random. */
export function backoffMs(failures: number, baseMs: number, maxMs: number, random: () => number = Math.random): number {
  const ceiling = Math.min(maxMs, baseMs * 2 ** Math.max(0, failures - 1));
  return Math.round(ceiling / 2 + (random() * ceiling) / 2);
}

export class SinkDeliverer {
  readonly id: string;
  private readonly t: DeliveryTuning;
  private readonly now: () => number;
  private readonly random: () => number;
  private loop: Promise<void> | null = null;
  private stopping = false;
  /** While closing: deliver what is there until caught up or this time, then stop. */
  private drainUntil = Infinity;
  private wakeUp: (() => void) | null = null;
  private readonly inflight = new Set<AbortController>();
  private failures = 0;
  private holding = false;

  constructor(private readonly o: DelivererOptions) {
    this.id = o.sink.id;
    this.t = { ...DEFAULT_TUNING, ...o.tuning };
    if (this.t.leaseMs <= this.t.deliverTimeoutMs + this.t.leaseMarginMs) throw new Error('audit sink tuning: leaseMs must exceed deliverTimeoutMs + leaseMarginMs');
    this.now = o.now ?? Date.now;
    this.random = o.random ?? Math.random;
  }

  start(): void {
    this.loop ??= this.run();
  }

  /** Looks for new events now instead of at the next poll. */
  wake(): void {
    this.wakeUp?.();
  }

  /**
   * Delivers what it can until the sink is caught up or `drainMs` has passed, then stops: a
   * delivery still in flight is cut off (not counted; sent again by the next run), the lease is
   * released for another replica, and the transport closed.
   */
  async close(drainMs = 2_000): Promise<void> {
    if (!this.loop) {
      await this.o.transport.close();
      return;
    }
    this.drainUntil = this.now() + drainMs;
    this.wake();
    const timer = setTimeout(() => {
      this.stopping = true;
      for (const ac of this.inflight) ac.abort(new Error('the gateway is stopping'));
      this.wake();
    }, drainMs);
    timer.unref();
    await this.loop;
    clearTimeout(timer);
    if (this.holding) await this.o.store.releaseSinkLease(this.id, this.o.owner).catch(() => {});
    await this.o.transport.close();
  }

  private async run(): Promise<void> {
    while (!this.stopping) {
      let wait: number;
      try {
        wait = await this.step();
        if (this.failures > 0) this.o.logger.info({ sink: this.id }, 'audit sink delivering again');
        this.failures = 0;
      } catch (err) {
        if (this.stopping) break;
        this.failures += 1;
        this.o.metrics?.sinkError(this.id);
        wait = backoffMs(this.failures, this.t.retryBaseMs, this.t.retryMaxMs, this.random);
        this.o.logger.warn({ sink: this.id, failures: this.failures, retry_in_ms: wait, err: errorMessage(err) }, 'audit sink delivery failed; retrying from its cursor');
      }
      if (this.drainUntil !== Infinity && (wait > 0 || this.now() >= this.drainUntil)) break; // closing: caught up, failing, or out of time
      if (wait > 0) await this.sleep(wait);
    }
  }

  /**
   * One pass: claim, then read-deliver-advance until caught up or the lease needs renewing.
   * Returns how long to wait before the next pass (0: at once). With a transport `window` above 1
   * (syslog), the next batches are written while earlier ones wait out their grace period, on the
   * same stream and in order; the cursor still advances batch by batch, in order, and a failure
   * ends the pass with everything after the last advance sent again by the next one.
   */
  private async step(): Promise<number> {
    const head = (await this.o.store.head())?.seq ?? 0;
    const claimedAt = this.now();
    const cursor = await this.o.store.claimSinkLease({
      sink: this.id,
      owner: this.o.owner,
      now: new Date(claimedAt).toISOString(),
      leaseUntil: new Date(claimedAt + this.t.leaseMs).toISOString(),
      startSeq: this.o.sink.start === 'now' ? head : 0, // used only when the sink has no cursor yet
    });
    if (!cursor) {
      if (this.holding) this.o.logger.info({ sink: this.id }, 'another gateway now delivers to this audit sink');
      this.holding = false;
      const theirs = await this.o.store.readSinkCursor(this.id);
      this.o.metrics?.sinkLag(this.id, Math.max(0, head - (theirs?.delivered_seq ?? 0)));
      return this.t.pollMs;
    }
    this.holding = true;
    this.o.metrics?.sinkLag(this.id, Math.max(0, head - cursor.delivered_seq));
    const window = Math.max(1, this.o.transport.window ?? 1);
    // A delivery starts only while the lease outlasts it by a margin: then the pass ends and the next one renews.
    const mayStart = () => claimedAt + this.t.leaseMs - this.now() > this.t.deliverTimeoutMs + this.t.leaseMarginMs;
    const pending: { last: number; count: number; done: Promise<void>; abort(): void }[] = [];
    let readAfter = cursor.delivered_seq;
    let caughtUp = false;
    try {
      for (;;) {
        while (!caughtUp && pending.length < window && !this.stopping && mayStart() && !(pending.length > 0 && this.o.transport.busy?.())) {
          const page = await this.o.store.readEventPage({ afterSeq: readAfter, limit: this.t.pageEvents, maxBytes: this.t.pageBytes });
          if (page.events.length === 0) {
            caughtUp = true;
            break;
          }
          const records = this.o.sink.includePayload ? await this.withPayloads(page.events) : page.events.map(sinkRecordOf);
          const last = records[records.length - 1]!.seq;
          caughtUp = page.next === null && last === page.events[page.events.length - 1]!.seq;
          readAfter = last;
          pending.push({ last, count: records.length, ...this.deliver(records) });
        }
        const first = pending.shift();
        if (!first) break;
        await first.done;
        const advanced = await this.o.store.advanceSinkCursor({ sink: this.id, owner: this.o.owner, deliveredSeq: first.last, now: new Date(this.now()).toISOString() });
        if (!advanced) {
          // The lease ran out and another gateway took the sink over: it resends from the cursor.
          this.o.logger.warn({ sink: this.id, seq: first.last }, 'audit sink lease lost during a delivery; another gateway continues from the cursor');
          this.holding = false;
          return this.t.pollMs;
        }
        this.o.metrics?.sinkDelivered(this.id, first.count, this.now());
        this.o.metrics?.sinkLag(this.id, Math.max(0, Math.max(head, readAfter) - first.last));
      }
    } finally {
      // After a failure (or a lost lease) the rest is not counted: stop it, and let it settle.
      for (const p of pending) p.abort();
      await Promise.allSettled(pending.map((p) => p.done));
    }
    return caughtUp ? this.t.pollMs : 0;
  }

  /** Starts one delivery with its own deadline; `done` settles when the transport says so. */
  private deliver(records: SinkRecord[]): { done: Promise<void>; abort(): void } {
    const ac = new AbortController();
    this.inflight.add(ac);
    const timer = setTimeout(() => ac.abort(new Error(`no delivery within ${this.t.deliverTimeoutMs} ms`)), this.t.deliverTimeoutMs);
    const done = this.o.transport.deliver(records, ac.signal).finally(() => {
      clearTimeout(timer);
      this.inflight.delete(ac);
    });
    done.catch(() => {}); // awaited in order by step(); a later one failing first must not go unhandled
    return { done, abort: () => ac.abort(new Error('an earlier batch failed')) };
  }

  /** The page's events with their payloads, cut once they exceed the page's byte budget (at least one). */
  private async withPayloads(events: AuditEvent[]): Promise<SinkRecord[]> {
    const out: SinkRecord[] = [];
    let bytes = 0;
    for (let i = 0; i < events.length; i += PAYLOAD_CHUNK) {
      const chunk = events.slice(i, i + PAYLOAD_CHUNK);
      const wanted = chunk.filter((e) => e.payload_sha256 !== undefined).map((e) => e.seq);
      const payloads = wanted.length ? await this.o.store.readPayloads(wanted) : new Map();
      for (const e of chunk) {
        const r = sinkRecordOf(e.payload_sha256 !== undefined ? { ...e, payload: payloads.get(e.seq) ?? null } : e);
        if (out.length > 0 && bytes + r.json.length > this.t.pageBytes) return out;
        out.push(r);
        bytes += r.json.length;
      }
    }
    return out;
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.wakeUp = () => {
        this.wakeUp = null;
        done();
      };
    });
  }
}

export interface AuditSinksOptions {
  store: SinkStore;
  sinks: readonly SinkConfig[];
  logger: SinkLogger;
  metrics?: SinkMetrics | undefined;
  tuning?: Partial<DeliveryTuning> | undefined;
  /** Builds each sink's transport (tests give their own). Default: transportFor. */
  transport?: ((sink: SinkConfig) => SinkTransport) | undefined;
  owner?: string;
}

/** Every configured sink's deliverer, started and stopped together. */
export class AuditSinks {
  readonly owner: string;
  readonly deliverers: SinkDeliverer[];

  constructor(o: AuditSinksOptions) {
    // Readable in the sink_cursors table: which gateway holds a lease.
    this.owner = o.owner ?? `${hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`;
    const make = o.transport ?? transportFor;
    this.deliverers = o.sinks.map((sink) => new SinkDeliverer({
      store: o.store, sink, transport: make(sink), owner: this.owner, logger: o.logger, metrics: o.metrics, tuning: o.tuning,
    }));
  }

  start(): void {
    for (const d of this.deliverers) d.start();
  }

  wake(): void {
    for (const d of this.deliverers) d.wake();
  }

  async close(drainMs = 2_000): Promise<void> {
    await Promise.all(this.deliverers.map((d) => d.close(drainMs)));
  }
}

export function transportFor(sink: SinkConfig): SinkTransport {
  switch (sink.kind) {
    case 'syslog':
      return new SyslogTransport(sink);
    case 'http':
      return new HttpTransport(sink);
    case 'file':
      return new FileTransport(sink);
  }
}
