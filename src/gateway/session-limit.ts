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
  /** A partial 5-byte message header carried between chunks. */
  private header = Buffer.alloc(0);
  private fatal: Buffer | null = null;
  private terminated = false;
  private forceTimer: NodeJS.Timeout | null = null;

  constructor(private readonly client: Duplex) {
    super({ allowHalfOpen: false });
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
    return this.remaining === 0 && this.header.length === 0;
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
   * boundary and returns its offset (null if none within the chunk).
   */
  private boundaryWithin(chunk: Buffer, stopAtBoundary = true): number | null {
    let i = 0;
    for (;;) {
      if (this.atBoundary() && stopAtBoundary) return i;
      if (i >= chunk.length) return null;
      if (this.remaining > 0) {
        const take = Math.min(this.remaining, chunk.length - i);
        this.remaining -= take;
        i += take;
        continue;
      }
      const need = 5 - this.header.length;
      const part = chunk.subarray(i, i + need);
      this.header = Buffer.concat([this.header, part]);
      i += part.length;
      if (this.header.length === 5) {
        this.remaining = Math.max(0, this.header.readInt32BE(1) - 4);
        this.header = Buffer.alloc(0);
      }
    }
  }
}
