/**
 * Looking ahead within a batch of client frames: whether a Parse or Bind is executed in the same
 * breath (then its Execute's record covers it), and carrying frames to the next chunk when the
 * batch ends before that shows. Drivers write Bind, Describe and Execute separately, so they may
 * arrive apart; until a Flush or Sync the client cannot expect an answer, so waiting costs nothing.
 */
import type { Frame, FrameBatch } from './framing.js';
import { MessageType, decodeBind, decodeExecute } from './messages.js';

/** Bounds on the frames kept from a Parse or Bind until the next chunk shows whether it is executed. */
const MAX_CARRIED_FRAMES = 8;
const MAX_CARRIED_BYTES = 1024 * 1024;
const EMPTY = Buffer.alloc(0);

export type Next = 'yes' | 'no' | 'undecided';

/** Whether the frames after a Bind at i (Describes aside) execute its portal. */
export function executedNext(batch: FrameBatch, i: number, portal: string): Next {
  for (let j = i + 1; j < batch.frames.length; j++) {
    const f = batch.frames[j]!;
    if (f.type === MessageType.Describe) continue;
    return f.type === MessageType.Execute && decodeExecute(batch.buffer.subarray(f.bodyStart, f.end)).portal === portal ? 'yes' : 'no';
  }
  return mayCarry(batch, i) ? 'undecided' : 'no';
}

/** Whether an unnamed Parse at i is bound right after it (Describes aside): that record names its SQL. */
export function boundNext(batch: FrameBatch, i: number): Next {
  for (let j = i + 1; j < batch.frames.length; j++) {
    const f = batch.frames[j]!;
    if (f.type === MessageType.Describe) continue;
    if (f.type !== MessageType.Bind) return 'no';
    return decodeBind(batch.buffer.subarray(f.bodyStart, f.end)).statement === '' ? 'yes' : 'no';
  }
  return mayCarry(batch, i) ? 'undecided' : 'no';
}

/** What is carried is copied once per chunk: a client trickling messages gets a record instead. */
function mayCarry(batch: FrameBatch, i: number): boolean {
  const carried = batch.frames[batch.frames.length - 1]!.end - batch.frames[i]!.start;
  return batch.frames.length - i <= MAX_CARRIED_FRAMES && carried <= MAX_CARRIED_BYTES;
}

/** The Bind (only Describes between) that the Execute at i covers, if it is still held. */
export function coveredBind(batch: FrameBatch, i: number, runStart: number): number {
  let j = i - 1;
  while (j >= 0 && batch.frames[j]!.type === MessageType.Describe) j--;
  return j >= 0 && batch.frames[j]!.type === MessageType.Bind && batch.frames[j]!.start >= runStart ? j : -1;
}

/** Frames kept from one chunk to be read again at the front of the next. */
export class Carried {
  private carried: FrameBatch | null = null;

  /** Keeps frames[i..]; the reader never writes a batch's buffer again, so no copy is needed. */
  keep(batch: FrameBatch, i: number): void {
    const from = batch.frames[i]!.start;
    const last = batch.frames[batch.frames.length - 1]!;
    this.carried = {
      buffer: batch.buffer.subarray(from, last.end),
      frames: batch.frames.slice(i).map((f) => ({ type: f.type, start: f.start - from, bodyStart: f.bodyStart - from, end: f.end - from })),
    };
  }

  /** The carried frames followed by a new batch's. */
  before(batch: FrameBatch): FrameBatch {
    const carried = this.carried;
    if (!carried) return batch;
    if (batch.frames.length === 0) return { buffer: EMPTY, frames: [] };
    this.carried = null;
    const first = batch.frames[0]!.start;
    const shift = carried.buffer.length - first;
    return {
      buffer: Buffer.concat([carried.buffer, batch.buffer.subarray(first, batch.frames[batch.frames.length - 1]!.end)]),
      frames: [...carried.frames, ...batch.frames.map((f: Frame) => ({ type: f.type, start: f.start + shift, bodyStart: f.bodyStart + shift, end: f.end + shift }))],
    };
  }
}
