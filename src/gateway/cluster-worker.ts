/**
 * A worker's side of `workers: N` (cluster.ts has the primary's): the few things one worker cannot
 * answer alone, asked of the primary over the IPC channel node:cluster opened.
 *
 *   takeSlot / releaseSlot  max_sessions_per_user, counted by the primary across all workers
 *   forwardCancel           a CancelRequest whose key this worker does not hold (the client's
 *                           cancel connection reached another worker than its session)
 *   gather                  what every worker reports of itself: its metrics (GET /metrics,
 *                           each series labelled worker="k"), its agent links (GET /api/v1/connections)
 *   reloadOthers            POST /api/v1/admin/reload applied here: the other workers reload too
 *
 * The primary is the worker's parent process: what comes over the channel is trusted.
 */
import { randomUUID } from 'node:crypto';
import { HoopError } from '../errors.js';
import type { Identity } from '../identity/identity.js';
import type { CancelKeyRequest } from '../protocols/engine.js';

/** Where a worker listens, once it does (the primary's `gateway listening` line reports it). */
export interface WorkerListening {
  url: string;
  postgres: { host: string; port: number; tls: boolean } | null;
}


export type WorkerToPrimary =
  | { t: 'listening'; listening: WorkerListening }
  | { t: 'slot'; id: string; key: string; max: number | null }
  | { t: 'slot-release'; key: string }
  | { t: 'cancel'; cancel: CancelKeyRequest }
  | { t: 'gather'; id: string; what: Report }
  | { t: 'report'; id: string; value: unknown }
  | { t: 'reload'; by: Identity | null }
  | { t: 'pong' };

export type PrimaryToWorker =
  | { t: 'slot'; id: string; open: number | null }
  | { t: 'cancel'; cancel: CancelKeyRequest }
  | { t: 'gathered'; id: string; reports: WorkerReport[] }
  | { t: 'report'; id: string; what: Report }
  | { t: 'reload'; source: 'sighup' | 'api'; by: Identity | null }
  | { t: 'ping' };

/** What a worker reports of itself when the primary gathers it (onReport). */
export type Report = 'metrics' | 'agents';

/** One worker's report (1-based index). */
export interface WorkerReport {
  worker: number;
  value: unknown;
}

/** The environment variable that tells a forked process which worker it is ("2/4"). */
export const WORKER_ENV = 'HOOP_GATEWAY_WORKER';

/** What the primary answers within, or the question is answered without it. */
const ASK_TIMEOUT_MS = 5_000;

/** The worker's identity and its channel to the primary. */
export class ClusterWorker {
  private readonly pending = new Map<string, (message: PrimaryToWorker) => void>();
  private cancelHandler: (c: CancelKeyRequest) => void = () => {};
  private readonly reporters = new Map<Report, () => unknown>();
  private reloadHandler: (source: 'sighup' | 'api', by: Identity | null) => void = () => {};

  constructor(
    /** 1-based. */
    readonly index: number,
    readonly count: number,
    private readonly send: (message: WorkerToPrimary) => void,
  ) {}

  /** This process's worker, when node:cluster forked it with WORKER_ENV set; else null. */
  static fromProcess(): ClusterWorker | null {
    const m = /^(\d{1,3})\/(\d{1,3})$/.exec(process.env[WORKER_ENV] ?? '');
    if (!m || !process.send) return null;
    const worker = new ClusterWorker(Number(m[1]), Number(m[2]), (message) => void process.send!(message));
    process.on('message', (message: PrimaryToWorker) => worker.receive(message));
    return worker;
  }

  /**
   * This worker's share of a per-address limit: the primary hands connections to the workers in
   * turn, so each sees about 1/N of an address's attempts.
   */
  share(limit: number): number {
    return Math.ceil(limit / this.count);
  }

  /** "2/4": how logs and metrics name this worker. */
  get label(): string {
    return `${this.index}/${this.count}`;
  }

  receive(message: PrimaryToWorker): void {
    switch (message.t) {
      case 'slot':
      case 'gathered': {
        const answer = this.pending.get(message.id);
        this.pending.delete(message.id);
        answer?.(message);
        return;
      }
      case 'cancel':
        return this.cancelHandler(message.cancel);
      case 'report':
        return this.send({ t: 'report', id: message.id, value: this.reporters.get(message.what)?.() ?? null });
      case 'reload':
        return this.reloadHandler(message.source, message.by);
      case 'ping': // the primary's watchdog: a worker whose event loop is stuck cannot answer
        return this.send({ t: 'pong' });
    }
  }

  announceListening(listening: WorkerListening): void {
    this.send({ t: 'listening', listening });
  }

  /**
   * Counts a session of `key` (connection and subject) against `max` across all workers: null
   * when it is counted, else the number already open that refuses it. Fails closed: a primary
   * that does not answer in time (it counts nothing then) refuses the session.
   */
  async takeSlot(key: string, max: number | null): Promise<number | null> {
    const answer = await this.ask((id) => ({ t: 'slot', id, key, max }));
    if (answer?.t !== 'slot') throw new HoopError('HOOP_INTERNAL', 'the gateway could not count this session against max_sessions_per_user (its primary process did not answer); try again');
    return answer.open;
  }

  releaseSlot(key: string): void {
    this.send({ t: 'slot-release', key });
  }

  forwardCancel(cancel: CancelKeyRequest): void {
    this.send({ t: 'cancel', cancel });
  }

  /** A CancelRequest another worker received for a key that may be one of this worker's sessions. */
  onCancel(handler: (c: CancelKeyRequest) => void): void {
    this.cancelHandler = handler;
  }

  /**
   * Every worker's report of `what` (this one's included), each worker answering within the
   * primary's wait; only this worker's own when the primary does not answer.
   */
  async gather(what: Report): Promise<WorkerReport[]> {
    const answer = await this.ask((id) => ({ t: 'gather', id, what }));
    return answer?.t === 'gathered' ? answer.reports : [{ worker: this.index, value: this.reporters.get(what)?.() ?? null }];
  }

  /** How this worker answers a gather of `what`. */
  onReport(what: Report, report: () => unknown): void {
    this.reporters.set(what, report);
  }

  /** After an API reload here: the same reload on every other worker. */
  reloadOthers(by: Identity | null): void {
    this.send({ t: 'reload', by });
  }

  onReload(handler: (source: 'sighup' | 'api', by: Identity | null) => void): void {
    this.reloadHandler = handler;
  }

  private ask(question: (id: string) => WorkerToPrimary): Promise<PrimaryToWorker | null> {
    const id = randomUUID();
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        resolve(null);
      }, ASK_TIMEOUT_MS);
      timer.unref();
      this.pending.set(id, (message) => {
        clearTimeout(timer);
        resolve(message);
      });
      this.send(question(id));
    });
  }
}
