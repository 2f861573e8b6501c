/**
 * Message framing for the PostgreSQL wire protocol (protocol v3, "Message Formats").
 *
 * In the style of pg-protocol's parser: one growing buffer plus an offset, and only whole frames
 * leave. Unlike it, frames are reported as boundaries (`type`, `start`, `end`) inside a buffer the
 * caller may keep, so the hot path forwards original bytes without copying or decoding them.
 *
 * Two shapes exist on the wire:
 * - typed messages: Byte1 type, Int32 length (counting itself, not the type), body;
 * - startup-phase packets (StartupMessage, SSLRequest, GSSENCRequest, CancelRequest):
 *   Int32 length (counting itself), Int32 code or protocol version, body.
 *
 * A declared length is validated as soon as its header is complete, before any body is buffered.
 */
import { ProtocolError } from '../../errors.js';

export const DEFAULT_MAX_FRAME_BYTES = 64 * 1024 * 1024;
/** PostgreSQL refuses startup packets above 10000 bytes (MAX_STARTUP_PACKET_LENGTH). */
export const MAX_STARTUP_PACKET_BYTES = 10_000;

/** Request codes sent in place of a protocol version in startup-phase packets. */
export const PROTOCOL_VERSION_3 = 196608; // 3 << 16
export const SSL_REQUEST_CODE = 80877103;
export const GSSENC_REQUEST_CODE = 80877104;
export const CANCEL_REQUEST_CODE = 80877102;

/** `type` of an untyped startup-phase packet. */
export const STARTUP_PACKET = 0;

export interface Frame {
  /** Message type byte (e.g. 0x51 'Q'), or STARTUP_PACKET for a startup-phase packet. */
  type: number;
  /** Offset of the frame's first byte (type byte, or length for startup packets). */
  start: number;
  /** Offset of the first body byte (after the length). */
  bodyStart: number;
  /** Offset one past the frame's last byte. */
  end: number;
}

export interface FrameBatch {
  /** The bytes the frames index into. Owned by the caller from now on: the reader never writes it again. */
  buffer: Buffer;
  frames: Frame[];
}

export interface FrameReaderOptions {
  maxFrameBytes?: number;
  /** Start in the startup phase (untyped packets) — true for the frontend side of a server. */
  startup?: boolean;
  /** Names the peer in error messages ("client", "server"). */
  peer?: string;
}

const EMPTY = Buffer.alloc(0);

export class FrameReader {
  private readonly maxFrameBytes: number;
  private readonly peer: string;
  private startupPhase: boolean;
  /** Pending bytes of an incomplete frame live in acc[0, accLen). The caller never holds acc. */
  private acc: Buffer = EMPTY;
  private accLen = 0;
  private failed: ProtocolError | null = null;

  constructor(options: FrameReaderOptions = {}) {
    this.maxFrameBytes = options.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES;
    this.startupPhase = options.startup ?? false;
    this.peer = options.peer ?? 'peer';
  }

  /** True while untyped startup-phase packets are expected. */
  get inStartupPhase(): boolean {
    return this.startupPhase;
  }

  /** Hands over the bytes of an incomplete frame (e.g. when the caller stops framing) and forgets them. */
  takePending(): Buffer {
    const out = Buffer.from(this.acc.subarray(0, this.accLen));
    this.acc = EMPTY;
    this.accLen = 0;
    return out;
  }

  /** Bytes received but not yet part of a whole frame. */
  get pendingBytes(): number {
    return this.accLen;
  }

  /**
   * The incomplete frame at the tail of the last push, once its header is whole: its type byte
   * and total size. Its received bytes are the last `pendingBytes` of the last batch's buffer.
   */
  get pendingFrame(): { type: number; total: number } | null {
    if (this.need === 0 || this.accLen === 0 || this.startupPhase) return null;
    return { type: this.acc[0]!, total: this.need };
  }

  /**
   * Forgets the incomplete tail frame: the caller passes its bytes on as they arrive instead of
   * waiting for it whole, and must not push the `total - pendingBytes` bytes still to come.
   */
  dropPendingFrame(): void {
    // Never reuse acc: the last batch's buffer may be acc itself, and its bytes are in flight.
    this.acc = EMPTY;
    this.accLen = 0;
    this.need = 0;
  }

  /**
   * Adds a chunk and returns every whole frame now available. In the startup phase at most one
   * packet is returned per call; after a StartupMessage (or CancelRequest) the reader switches to
   * typed messages, and `push(EMPTY)` yields frames that arrived behind it.
   * Throws ProtocolError on a declared length < 4 or > the limit; the reader then stays failed.
   */
  push(chunk: Buffer): FrameBatch {
    if (this.failed) throw this.failed;
    let buf: Buffer;
    let owned: boolean; // buf is our accumulator (not the caller's chunk)
    if (this.accLen === 0) {
      buf = chunk;
      owned = false;
    } else {
      this.reserve(this.accLen + chunk.length);
      chunk.copy(this.acc, this.accLen);
      buf = this.acc.subarray(0, this.accLen + chunk.length);
      owned = true;
    }
    const frames: Frame[] = [];
    let offset = 0;
    try {
      offset = this.scan(buf, frames);
    } catch (err) {
      this.failed = err as ProtocolError;
      this.acc = EMPTY;
      this.accLen = 0;
      throw err;
    }
    const leftover = buf.length - offset;
    if (owned && frames.length > 0) {
      // The caller now holds slices of acc: start a fresh accumulator for the leftover.
      this.acc = EMPTY;
      this.accLen = 0;
    }
    if (!owned || frames.length > 0) {
      if (leftover > 0) {
        this.reserve(leftover);
        buf.copy(this.acc, 0, offset);
      }
    }
    this.accLen = leftover;
    return { buffer: buf, frames };
  }

  /** Total size of the incomplete frame at the tail, once its header is known (0 otherwise). */
  private need = 0;

  private scan(buf: Buffer, frames: Frame[]): number {
    let offset = 0;
    this.need = 0;
    for (;;) {
      const remaining = buf.length - offset;
      const typed = !this.startupPhase;
      const header = typed ? 5 : 4;
      if (remaining < header) return offset;
      const type = typed ? buf[offset]! : STARTUP_PACKET;
      const length = buf.readInt32BE(typed ? offset + 1 : offset);
      this.check(length, typed, type);
      const total = length + (typed ? 1 : 0);
      if (remaining < total) {
        this.need = total;
        return offset;
      }
      frames.push({ type, start: offset, bodyStart: offset + header, end: offset + total });
      offset += total;
      if (!typed) {
        const code = length >= 8 ? buf.readInt32BE(offset - total + 4) : 0;
        if (code !== SSL_REQUEST_CODE && code !== GSSENC_REQUEST_CODE) this.startupPhase = false;
        return offset; // at most one startup packet per push
      }
    }
  }

  private check(length: number, typed: boolean, type: number): void {
    const what = typed ? `message type ${describeType(type)}` : 'startup packet';
    if (length < 4) {
      throw new ProtocolError(`invalid ${this.peer} ${what}: declared length ${length} is below the minimum of 4`);
    }
    const max = typed ? this.maxFrameBytes : Math.min(this.maxFrameBytes, MAX_STARTUP_PACKET_BYTES);
    if (length > max) {
      throw new ProtocolError(`invalid ${this.peer} ${what}: declared length ${length} exceeds the limit of ${max} bytes`);
    }
  }

  /** Grows acc to hold `size` bytes, doubling (capped at the pending frame's size) so that a
   *  trickled large frame costs amortized O(n) copies and memory follows bytes actually received. */
  private reserve(size: number): void {
    if (this.acc.length >= size) return;
    const doubled = Math.max(this.acc.length * 2, 4096);
    const next = Buffer.allocUnsafe(Math.max(size, this.need > 0 ? Math.min(doubled, this.need) : doubled));
    this.acc.copy(next, 0, 0, this.accLen);
    this.acc = next;
  }
}

/** 'Q' for printable type bytes, 0x00 style otherwise — safe to put in an error message. */
export function describeType(type: number): string {
  return type >= 0x20 && type < 0x7f ? `'${String.fromCharCode(type)}'` : `0x${type.toString(16).padStart(2, '0')}`;
}
