/**
 * Enforces a connection's `max_session` without reaching into the engine: the engine talks to
 * the client through this Duplex, which passes bytes both ways with backpressure and tracks the
 * boundaries of backend messages (type byte + Int32 length, PostgreSQL protocol "Message
 * Formats"). At the limit it waits for the message in flight to finish, sends the client a FATAL
 * ErrorResponse that says why, closes the client side and ends the engine's input, so the
 * engine closes upstream and reports the session's end. A half-written message is never cut.
 */
import { Duplex } from 'node:stream';
import { errorResponse } from '../protocols/postgres/messages.js';

/** admin_shutdown: "terminating connection due to administrator command" is the closest class. */
const SQLSTATE_ADMIN_SHUTDOWN = '57P01';

export class LimitedSessionStream extends Duplex {
  /** Bytes of the current backend message not yet passed on; 0 at a boundary. */
  private remaining = 0;
  /** How many bytes of a 5-byte message header split across chunks are in `header` (0 if none). */
  private headerLength = 0;
  private readonly header = Buffer.alloc(5);
  private fatal: Buffer | null = null;
  private terminated = false;
  private forceTimer: NodeJS.Timeout | null = null;

  constructor(private readonly client: Duplex, options: { highWaterMark?: number } = {}) {
    super({ allowHalfOpen: false, highWaterMark: options.highWaterMark });
    client.on('data', (chunk: Buffer) => {
      if (this.terminated) return;
      if (!this.push(chunk)) client.pause();
    });
    client.on('end', () => this.push(null));
    client.on('error', (err) => this.destroy(err));
    client.on('close', () => {
      if (!this.destroyed) this.destroy();
    });
  }

  /** Ends the session at the next message boundary with a FATAL `message`. */
  terminate(message: string): void {
    if (this.terminated || this.fatal) return;
    this.fatal = errorResponse({ severity: 'FATAL', code: SQLSTATE_ADMIN_SHUTDOWN, message });
    if (this.atBoundary()) this.finish();
    else this.forceTimer = setTimeout(() => this.finish(), 5_000).unref();
  }

  get isTerminated(): boolean {
    return this.terminated;
  }

  override _read(): void {
    this.client.resume();
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    if (this.terminated) return callback();
    let out = chunk;
    if (this.fatal) {
      const cut = this.boundaryWithin(chunk);
      out = cut === null ? chunk : chunk.subarray(0, cut);
    } else {
      this.track(chunk);
    }
    const ok = this.client.write(out);
    if (this.fatal && this.atBoundary()) this.finish();
    if (ok || this.terminated) callback();
    else this.client.once('drain', () => callback());
  }

  override _final(callback: (error?: Error | null) => void): void {
    if (!this.terminated) this.client.end();
    callback();
  }

  override _destroy(err: Error | null, callback: (error?: Error | null) => void): void {
    if (this.forceTimer) clearTimeout(this.forceTimer);
    this.client.destroy();
    callback(err);
  }

  private atBoundary(): boolean {
    return this.remaining === 0 && this.headerLength === 0;
  }

  private finish(): void {
    if (this.terminated || !this.fatal) return;
    this.terminated = true;
    if (this.forceTimer) clearTimeout(this.forceTimer);
    if (this.atBoundary()) this.client.write(this.fatal);
    this.client.end();
    this.push(null); // the engine sees the client go away and closes upstream
  }

  /** Advances the framing state over `chunk`. */
  private track(chunk: Buffer): void {
    this.boundaryWithin(chunk, false);
  }

  /**
   * Advances the framing state over `chunk`; with `stopAtBoundary`, stops at the first message
   * boundary and returns its offset (null if none within the chunk). Whole headers are read in
   * place and bodies skipped by arithmetic: no allocation per message.
   */
  private boundaryWithin(chunk: Buffer, stopAtBoundary = true): number | null {
    let i = 0;
    const n = chunk.length;
    for (;;) {
      if (stopAtBoundary && this.atBoundary()) return i;
      if (i >= n) return null;
      if (this.remaining > 0) {
        const take = Math.min(this.remaining, n - i);
        this.remaining -= take;
        i += take;
      } else if (this.headerLength === 0 && n - i >= 5) {
        this.remaining = Math.max(0, chunk.readInt32BE(i + 1) - 4);
        i += 5;
      } else {
        this.header[this.headerLength++] = chunk[i++]!;
        if (this.headerLength === 5) {
          this.remaining = Math.max(0, this.header.readInt32BE(1) - 4);
          this.headerLength = 0;
        }
      }
    }
  }
}
