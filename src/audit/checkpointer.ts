/**
 * Appends a signed `checkpoint` of the chain head every `intervalMs`, and once more when the
 * gateway stops, whenever the log has moved since: an idle log gains no checkpoints, and replicas
 * sharing one log do not answer each other's.
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

export class Checkpointer {
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<void> | null = null;

  constructor(private readonly o: CheckpointerOptions) {}

  start(): void {
    this.timer ??= setInterval(() => void this.checkpoint(), this.o.intervalMs);
    this.timer.unref();
  }

  /** Signs the current head unless it already is a checkpoint; resolves once that is durable. */
  checkpoint(): Promise<void> {
    this.running ??= this.write().finally(() => (this.running = null));
    return this.running;
  }

  /** Stops the timer and checkpoints what the gateway wrote last. */
  async close(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.running;
    await this.checkpoint();
  }

  private async write(): Promise<void> {
    try {
      await this.o.recorder.flush(); // what was recorded before now is covered
      const head = await this.o.store.head();
      if (!head) return;
      const [last] = await this.o.store.readEvents({ afterSeq: head.seq - 1, limit: 1 });
      if (last?.type === 'checkpoint') return;
      await this.o.recorder.record({ type: 'checkpoint', actor: SYSTEM_ACTOR, data: { ...this.o.signer.sign(head) } });
    } catch (err) {
      // The chain still holds; the next interval tries again. Statements are not affected.
      this.o.logger.warn({ error: errorMessage(err) }, 'audit checkpoint could not be written');
    }
  }
}
