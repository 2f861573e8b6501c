/** Stream helpers for the hot path: backpressure-aware pumping and writing, and chunk iteration. */
import type { Duplex, Writable } from 'node:stream';
import { errorResponse } from './messages.js';

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

/**
 * Ends a session as PostgreSQL does when it refuses one: a FATAL ErrorResponse with `code` (a
 * SQLSTATE) and `message`, then the end of the stream (destroyed if the peer lingers).
 */
export function sendFatal(stream: Duplex, code: string, message: string): void {
  endStream(stream, errorResponse({ severity: 'FATAL', code, message }));
}

/** Writes unless the stream is gone; the caller checks `drained` once per batch. */
export function write(stream: Writable, bytes: Buffer): void {
  if (bytes.length === 0 || stream.destroyed || stream.writableEnded) return;
  stream.write(bytes);
}

/** Nothing when the stream can take more; else a promise that settles on 'drain' or close. */
export function drained(stream: Writable): void | Promise<void> {
  if (!stream.writableNeedDrain || stream.destroyed) return;
  return new Promise<void>((resolve) => {
    const done = () => {
      stream.off('drain', done);
      stream.off('close', done);
      stream.off('error', done);
      resolve();
    };
    stream.on('drain', done);
    stream.on('close', done);
    stream.on('error', done);
  });
}

/**
 * Delivers a readable side's chunks to `handle` one at a time and in order, in flowing mode (no
 * pause/resume per chunk). While a call is pending (a write-ahead hook, or the other side needing
 * 'drain') chunks queue, and past `maxQueuedBytes` the source is paused: memory stays bounded.
 * Resolves when the stream ends or closes; rejects with the handler's error.
 */
export function pump(stream: Duplex, handle: (chunk: Buffer) => void | Promise<void>, maxQueuedBytes = 64 * 1024): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const queue: Buffer[] = [];
    let queued = 0;
    let running = false;
    let ended = false;
    let settled = false;
    const settle = (err?: unknown) => {
      if (settled) return;
      settled = true;
      stream.off('data', onData);
      stream.off('end', onEnd);
      stream.off('close', onEnd);
      if (err === undefined) resolve();
      else reject(err);
    };
    const drain = async () => {
      running = true;
      try {
        while (queue.length > 0 && !settled) {
          const chunk = queue.shift()!;
          queued -= chunk.length;
          const pending = handle(chunk);
          if (pending) await pending;
        }
      } catch (err) {
        settle(err);
        return;
      }
      running = false;
      if (ended) settle();
      else if (stream.isPaused() && !stream.destroyed) stream.resume();
    };
    const onData = (chunk: Buffer) => {
      queue.push(chunk);
      queued += chunk.length;
      if (queued > maxQueuedBytes) stream.pause();
      if (!running) void drain();
    };
    const onEnd = () => {
      ended = true;
      if (!running) settle();
    };
    stream.on('data', onData);
    stream.once('end', onEnd);
    stream.once('close', onEnd);
    stream.resume();
  });
}

/** Runs a fire-and-forget hook: its failures must not break the data path. */
export function safely(fn: () => void): void {
  try {
    fn();
  } catch {
    // ignored on purpose
  }
}
