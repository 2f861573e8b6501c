/**
 * `workers: N` (N > 1): the primary process of `hoop gateway`. It forks N workers (node:cluster),
 * each a whole gateway on the shared postgres:// store — replicas on one machine: the audit chain
 * stays one chain, each worker appending its group commits under the store's chain lock. The
 * listening sockets are the primary's; it accepts and hands each connection to the next worker.
 * The primary serves no session itself. It holds what must be counted across workers and relays
 * what one worker cannot answer alone (cluster-worker.ts has the worker's side):
 *
 *   slot, slot-release   max_sessions_per_user, counted here for all workers
 *   cancel               a CancelRequest whose key the receiving worker does not hold: to the others
 *   gather               every worker's report (metrics, agent links) for the one that asks
 *   reload               an API reload on one worker: the others reload too; SIGHUP here: all
 *
 * A worker that exits after the start is forked again, with backoff; the sessions counted for
 * it are given back. One that stops answering (its event loop stuck, the process frozen) for
 * `hangMs` is killed, and so forked again. One that cannot start stops the whole gateway with
 * its error. stop(): every worker stops (its sessions end and are recorded, its last checkpoint
 * is signed), then the primary.
 */
import cluster, { type Worker } from 'node:cluster';
import type { Logger } from 'pino';
import { HoopError } from '../errors.js';
import { WORKER_ENV, type PrimaryToWorker, type Report, type WorkerListening, type WorkerReport, type WorkerToPrimary } from './cluster-worker.js';

/** How long a gather waits for each worker's report (one that does not answer is left out). */
const REPORT_WAIT_MS = 2_000;
/** How long stop() waits for the workers to end their sessions before it kills them. */
const STOP_WAIT_MS = 20_000;
const RESTART_MIN_MS = 500;
const RESTART_MAX_MS = 30_000;
/** A worker that ran this long before it exited starts again without waiting. */
const HEALTHY_RUN_MS = 60_000;
/** A listening worker that has not answered the primary's pings for this long is killed. */
const DEFAULT_HANG_MS = 10_000;

/** A forked worker, with the sessions the primary counts for it. */
interface Forked {
  index: number;
  worker: Worker;
  /** Its sessions counted against max_sessions_per_user, per key (connection and subject). */
  sessions: Map<string, number>;
  startedAt: number;
  /** Restarts in a row that followed a short run (backoff). */
  crashes: number;
  /** Whether it has listened (a worker that exits before it did, during start(), stops the gateway). */
  listened: boolean;
  /** When it last answered a ping (or listened); null until it listens, and once it is killed. */
  answeredAt: number | null;
}

export class GatewayPrimary {
  private readonly forked = new Map<number, Forked>();
  /** Sessions open per key over all workers. */
  private readonly open = new Map<string, number>();
  private stopping = false;
  /** While start() waits: told of each worker that listens, and of one that exits before it did. */
  private starting: { listening(index: number, at: WorkerListening): void; failed(index: number, why: string): void } | null = null;

  private watchdog: NodeJS.Timeout | null = null;

  constructor(private readonly o: { count: number; logger: Logger; hangMs?: number }) {}

  private get hangMs(): number {
    return this.o.hangMs ?? DEFAULT_HANG_MS;
  }

  /** Forks every worker; resolves once each has listened, with where; rejects (and stops the rest) if one exits before it listened. */
  start(): Promise<WorkerListening> {
    return new Promise((resolve, reject) => {
      const listening = new Set<number>();
      let first: WorkerListening | null = null;
      this.starting = {
        listening: (index, at) => {
          first ??= at;
          listening.add(index);
          if (listening.size === this.o.count) {
            this.starting = null;
            resolve(first);
          }
        },
        failed: (index, why) => {
          this.starting = null; // no restart: the gateway stops
          void this.stop().then(() => reject(new HoopError('HOOP_CONFIG_INVALID', `gateway worker ${index}/${this.o.count} could not start: ${why}`)));
        },
      };
      for (let index = 1; index <= this.o.count; index++) this.fork(index, 0);
      this.watchdog = setInterval(() => this.watch(), Math.max(50, Math.floor(this.hangMs / 4)));
      this.watchdog.unref();
    });
  }

  /** Pings every listening worker; kills one that has not answered for hangMs (its exit forks it again). */
  private watch(): void {
    const now = Date.now();
    for (const [index, entry] of this.forked) {
      if (entry.answeredAt === null || entry.worker.isDead()) continue;
      if (now - entry.answeredAt > this.hangMs) {
        this.o.logger.error({ worker: this.label(index), pid: entry.worker.process.pid, silent_ms: now - entry.answeredAt }, 'gateway worker stopped answering; killing it');
        entry.answeredAt = null; // killed once
        entry.worker.process.kill('SIGKILL');
        continue;
      }
      send(entry.worker, { t: 'ping' });
    }
  }

  /** SIGHUP: every worker reads the config again. */
  reload(): void {
    for (const { worker } of this.forked.values()) send(worker, { t: 'reload', source: 'sighup', by: null });
  }

  /** Stops every worker (SIGTERM: each ends its sessions, flushes and signs), killing any that outlasts STOP_WAIT_MS. */
  async stop(): Promise<void> {
    this.stopping = true;
    if (this.watchdog) clearInterval(this.watchdog);
    const exits = [...this.forked.values()].map(({ worker }) => new Promise<void>((resolve) => {
      if (worker.isDead()) return resolve();
      worker.once('exit', () => resolve());
      worker.process.kill('SIGTERM');
      setTimeout(() => worker.process.kill('SIGKILL'), STOP_WAIT_MS).unref();
    }));
    await Promise.all(exits);
  }

  private fork(index: number, crashes: number): void {
    const worker = cluster.fork({ [WORKER_ENV]: this.label(index) });
    const entry: Forked = { index, worker, sessions: new Map(), startedAt: Date.now(), crashes, listened: false, answeredAt: null };
    this.forked.set(index, entry);
    const log = this.o.logger.child({ worker: this.label(index), pid: worker.process.pid });
    worker.on('message', (message: WorkerToPrimary) => this.receive(entry, message));
    worker.on('exit', (code, signal) => {
      this.giveBack(entry);
      if (this.stopping) return;
      const why = signal ? `ended by ${signal}` : `exited with code ${code}`;
      if (!entry.listened && this.starting) return this.starting.failed(index, `${why} (its log says why)`);
      const ranLong = Date.now() - entry.startedAt >= HEALTHY_RUN_MS;
      const next = ranLong ? 0 : crashes + 1;
      const delay = ranLong ? 0 : Math.min(RESTART_MAX_MS, RESTART_MIN_MS * 2 ** Math.min(crashes, 10));
      log.error({ code, signal, restart_in_ms: delay }, `gateway worker ${why}; starting it again`);
      setTimeout(() => {
        if (!this.stopping) this.fork(index, next);
      }, delay).unref();
    });
  }

  private receive(from: Forked, message: WorkerToPrimary): void {
    switch (message.t) {
      case 'listening':
        from.listened = true;
        from.answeredAt = Date.now();
        return this.starting?.listening(from.index, message.listening);
      case 'pong':
        if (from.answeredAt !== null) from.answeredAt = Date.now(); // not once it is being killed
        return;
      case 'slot':
        return send(from.worker, { t: 'slot', id: message.id, open: this.countSession(from, message.key, message.max) });
      case 'slot-release':
        return this.uncountSession(from, message.key);
      case 'cancel':
        return this.toOthers(from, { t: 'cancel', cancel: message.cancel });
      case 'gather':
        void this.gather(message.what).then((reports) => send(from.worker, { t: 'gathered', id: message.id, reports }));
        return;
      case 'reload':
        return this.toOthers(from, { t: 'reload', source: 'api', by: message.by });
      case 'report':
        return; // an answer, taken by its waiter (gather)
    }
  }

  private toOthers(from: Forked, message: PrimaryToWorker): void {
    for (const f of this.forked.values()) if (f !== from) send(f.worker, message);
  }

  /** "2/4": how logs and the worker's environment name worker `index`. */
  private label(index: number): string {
    return `${index}/${this.o.count}`;
  }

  /** null: counted; else how many are open, which refuses it. */
  private countSession(from: Forked, key: string, max: number | null): number | null {
    const open = this.open.get(key) ?? 0;
    if (max !== null && open >= max) return open;
    this.open.set(key, open + 1);
    from.sessions.set(key, (from.sessions.get(key) ?? 0) + 1);
    return null;
  }

  private uncountSession(from: Forked, key: string, n = 1): void {
    const held = from.sessions.get(key) ?? 0;
    if (held === 0) return;
    const taken = Math.min(n, held);
    if (held > taken) from.sessions.set(key, held - taken);
    else from.sessions.delete(key);
    const left = (this.open.get(key) ?? taken) - taken;
    if (left > 0) this.open.set(key, left);
    else this.open.delete(key);
  }

  /** A worker that exited holds no sessions any more. */
  private giveBack(entry: Forked): void {
    for (const [key, n] of [...entry.sessions]) this.uncountSession(entry, key, n);
  }

  /** Every live worker's report of `what`, each answering within REPORT_WAIT_MS (the silent left out). */
  private async gather(what: Report): Promise<WorkerReport[]> {
    const live = [...this.forked.entries()].filter(([, f]) => !f.worker.isDead());
    const reports = await Promise.all(live.map(([index, f]) => new Promise<WorkerReport | null>((resolve) => {
      const id = `${index}:${Date.now()}:${Math.random()}`;
      const onMessage = (message: WorkerToPrimary) => {
        if (message.t === 'report' && message.id === id) done({ worker: index, value: message.value });
      };
      const timer = setTimeout(() => done(null), REPORT_WAIT_MS);
      const done = (r: WorkerReport | null) => {
        clearTimeout(timer);
        f.worker.off('message', onMessage);
        resolve(r);
      };
      f.worker.on('message', onMessage);
      send(f.worker, { t: 'report', id, what });
    })));
    return reports.filter((r): r is WorkerReport => r !== null);
  }
}

function send(worker: Worker, message: PrimaryToWorker): void {
  if (worker.isConnected()) worker.send(message);
}
