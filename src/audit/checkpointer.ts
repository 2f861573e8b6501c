/**
 * Appends a signed `checkpoint` of the chain head every `intervalMs`, and once more when the
 * gateway stops, whenever the log has moved since: an idle log gains no checkpoints.
 *
 * Replicas sharing one log (a PostgreSQL store) each run a Checkpointer, but the log gets one
 * checkpoint per interval, not one per replica: a tick first looks for a checkpoint younger than
 * the interval (less `checkpointSlackMs`), whoever wrote it, and leaves the head alone if there is
 * one. Replicas' timers are not aligned, so whichever ticks first after the interval has passed
 * signs; two ticking in the same few milliseconds may both sign (harmless: both verify). The
 * comparison uses event times, so replicas' clocks must agree (NTP) to well within the slack.
 * The checkpoint at shutdown is always written (when the head moved): it covers what the
 * stopping replica wrote last.
 */
import { errorMessage } from '../errors.js';
import type { Store } from '../store/store.js';
import type { CheckpointSigner } from './checkpoint.js';
import { SYSTEM_ACTOR } from './event.js';
import type { AuditRecorder, RecorderLogger } from './recorder.js';

export interface CheckpointerOptions {
  store: Pick<Store, 'head' | 'readEvents'>;
  recorder: Pick<AuditRecorder, 'flush' | 'record'>;
  signer: CheckpointSigner;
  intervalMs: number;
  logger: RecorderLogger;
}

/**
 * How much younger than the interval a checkpoint may be and still count for it: a checkpoint's
 * time is taken after its tick began (the flush before it takes a moment) and timers drift, so
 * without slack a replica would skip every other interval after its own checkpoint.
 */
export function checkpointSlackMs(intervalMs: number): number {
  return Math.min(intervalMs / 4, 10_000);
}

export class Checkpointer {
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<void> | null = null;

  constructor(private readonly o: CheckpointerOptions) {}

  start(): void {
    this.timer ??= setInterval(() => void this.tick(), this.o.intervalMs);
    this.timer.unref();
  }

  /** One interval's turn: signs the head unless it is a checkpoint or any replica signed within the interval. */
  tick(): Promise<void> {
    return this.run(true);
  }

  /** Signs the current head unless it already is a checkpoint; resolves once that is durable. */
  checkpoint(): Promise<void> {
    return this.run(false);
  }

  /** Stops the timer and checkpoints what the gateway wrote last. */
  async close(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.running;
    await this.checkpoint();
  }

  private run(periodic: boolean): Promise<void> {
    this.running ??= this.write(periodic).finally(() => (this.running = null));
    return this.running;
  }

  private async write(periodic: boolean): Promise<void> {
    try {
      await this.o.recorder.flush(); // what was recorded before now is covered
      const head = await this.o.store.head();
      if (!head) return;
      const [last] = await this.o.store.readEvents({ afterSeq: head.seq - 1, limit: 1 });
      if (last?.type === 'checkpoint') return;
      if (periodic && (await this.signedWithinInterval())) return;
      await this.o.recorder.record({ type: 'checkpoint', actor: SYSTEM_ACTOR, data: { ...this.o.signer.sign(head) } });
    } catch (err) {
      // The chain still holds; the next interval tries again. Statements are not affected.
      this.o.logger.warn({ error: errorMessage(err) }, 'audit checkpoint could not be written');
    }
  }

  /** Whether the log holds a checkpoint (by any replica) younger than this interval; an index range read (type, time). */
  private async signedWithinInterval(): Promise<boolean> {
    const since = new Date(Date.now() - (this.o.intervalMs - checkpointSlackMs(this.o.intervalMs))).toISOString();
    const recent = await this.o.store.readEvents({ types: ['checkpoint'], since, newestFirst: true, limit: 1 });
    return recent.length > 0;
  }
}
