/** Stream helpers for the hot path: writes that respect backpressure, and chunk iteration. */
import type { Duplex, Writable } from 'node:stream';

/**
 * Writes `buf`; when the stream's buffer is full, waits for 'drain' (or for the stream to close,
 * so that a dead peer never leaves the other direction waiting forever). Returns false when the
 * stream can no longer be written.
 */
export function writeWithBackpressure(stream: Writable, buf: Buffer): boolean | Promise<boolean> {
  if (stream.destroyed || stream.writableEnded) return false;
  if (stream.write(buf)) return true;
  return new Promise<boolean>((resolve) => {
    const done = (ok: boolean) => {
      stream.off('drain', onDrain);
      stream.off('close', onClose);
      stream.off('error', onClose);
      resolve(ok);
    };
    const onDrain = () => done(true);
    const onClose = () => done(false);
    stream.on('drain', onDrain);
    stream.on('close', onClose);
    stream.on('error', onClose);
  });
}

/** Chunks of a readable side, pulled one at a time (so an awaiting consumer pauses the peer). */
export function chunksOf(stream: Duplex): AsyncIterable<Buffer> {
  const it = stream.iterator({ destroyOnReturn: false });
  return { [Symbol.asyncIterator]: () => it };
}

/** Ends a stream gracefully, destroying it if it has not closed after `graceMs`. */
export function endStream(stream: Duplex, last?: Buffer, graceMs = 5000): void {
  if (stream.destroyed) return;
  if (!stream.writableEnded) {
    try {
      if (last) stream.end(last);
      else stream.end();
    } catch {
      stream.destroy();
      return;
    }
  }
  const timer = setTimeout(() => stream.destroy(), graceMs);
  timer.unref();
  stream.once('close', () => clearTimeout(timer));
}
