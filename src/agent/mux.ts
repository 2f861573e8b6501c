/**
 * The agent link's multiplexing protocol, shared by `hoop agent` (src/agent/agent.ts) and the
 * gateway (src/gateway/agents.ts): many TCP streams over one WebSocket (RFC 6455), each binary
 * message one frame.
 *
 *   frame  = type (u8) · stream id (u32 BE) · payload
 *   OPEN    gateway → agent   port (u16 BE) · host (UTF-8, 1..255 bytes): dial this target
 *   ACCEPT  agent → gateway   (empty): the TCP connection is up; both sides may send DATA
 *   REFUSE  agent → gateway   code (u8) · reason (UTF-8): not dialled (allow-list, dial failed, limit)
 *   DATA    both              1..MAX_DATA bytes of the stream
 *   CREDIT  both              n (u32 BE): the receiver consumed n more bytes; the sender may send n more
 *   END     both              (empty): the sender sends no more (TCP half-close)
 *   RESET   both              reason (UTF-8): the stream is gone, in both directions
 *
 * Flow control is per stream: a sender starts with STREAM_WINDOW bytes of credit and sends DATA
 * only within it; the receiver gives credit back as its consumer (the TCP socket on the agent,
 * the protocol engine on the gateway) takes the bytes. So a slow reader stops the far side's TCP
 * reads instead of growing a buffer: each side holds at most about one window per stream.
 *
 * Neither side trusts the other: a frame that breaks these rules (unknown type, DATA beyond the
 * credit given, more credit than was used, an OPEN to the gateway, a second OPEN of a live id)
 * closes the whole link with 1002. Frames for a stream that is already gone are dropped (a RESET
 * and the peer's last frames cross on the wire). Heartbeats are WebSocket pings: a link that
 * shows no sign of life for three intervals is terminated, which ends its streams.
 */
import { Duplex } from 'node:stream';
import type { WebSocket } from 'ws';
import { HoopError } from '../errors.js';

export const FrameType = { OPEN: 1, ACCEPT: 2, REFUSE: 3, DATA: 4, CREDIT: 5, END: 6, RESET: 7 } as const;
export type FrameType = (typeof FrameType)[keyof typeof FrameType];

export const HEADER_BYTES = 5;
/** Largest DATA payload: big enough for bulk results, small enough that streams interleave. */
export const MAX_DATA = 64 * 1024;
/** Largest frame either side accepts (the WebSocket maxPayload). */
export const MAX_FRAME = HEADER_BYTES + MAX_DATA;
/** Bytes a sender may have in flight per stream before the receiver gives credit back. */
export const STREAM_WINDOW = 256 * 1024;
/** Streams one link carries at once (the agent refuses more). */
export const MAX_STREAMS = 1024;
const MAX_REASON_BYTES = 512;
const MAX_HOST_BYTES = 255;

/** Why an agent did not dial. */
export const RefuseCode = { NOT_ALLOWED: 1, DIAL_FAILED: 2, LIMIT: 3 } as const;
export type RefuseCode = (typeof RefuseCode)[keyof typeof RefuseCode];

export interface Target { host: string; port: number }

export function frame(type: FrameType, id: number, payload?: Buffer): Buffer {
  const head = Buffer.allocUnsafe(HEADER_BYTES);
  head.writeUInt8(type, 0);
  head.writeUInt32BE(id, 1);
  return payload && payload.length > 0 ? Buffer.concat([head, payload]) : head;
}

export function encodeTarget(t: Target): Buffer {
  const host = Buffer.from(t.host, 'utf8');
  const out = Buffer.allocUnsafe(2 + host.length);
  out.writeUInt16BE(t.port, 0);
  host.copy(out, 2);
  return out;
}

/** The OPEN payload, or null when it is not a valid target. */
export function decodeTarget(payload: Buffer): Target | null {
  if (payload.length < 3 || payload.length > 2 + MAX_HOST_BYTES) return null;
  const port = payload.readUInt16BE(0);
  const host = payload.subarray(2).toString('utf8');
  if (port === 0 || !/^[^\s\x00-\x1f\x7f/]+$/.test(host) || Buffer.byteLength(host) !== payload.length - 2) return null;
  return { host, port };
}

function reasonBytes(reason: string): Buffer {
  const b = Buffer.from(reason, 'utf8');
  return b.length <= MAX_REASON_BYTES ? b : b.subarray(0, MAX_REASON_BYTES);
}

/** A peer's words, made safe to log: bounded, printable. */
function peerText(b: Buffer): string {
  return b.subarray(0, MAX_REASON_BYTES).toString('utf8').replace(/[\x00-\x1f\x7f]/g, ' ');
}

/** The agent refused an OPEN. `reason` is the agent's own words (for the operator). */
export class MuxRefusal extends HoopError {
  constructor(readonly refuseCode: number, readonly reason: string) {
    super('HOOP_UPSTREAM', `the agent refused the stream: ${reason}`);
  }
}

/** The link a stream ran over is gone. */
export class LinkLostError extends HoopError {
  constructor(message: string) {
    super('HOOP_UPSTREAM', message);
  }
}

export interface MuxLinkOptions {
  /** 'gateway' opens streams; 'agent' accepts them (onOpen). */
  role: 'gateway' | 'agent';
  /** An OPEN arrived (agent role): answer with link.accept(id) or link.refuse(id, …). */
  onOpen?: (id: number, target: Target) => void;
  /** A RESET arrived for a stream not yet accepted (agent role): stop dialling it. */
  onCancel?: (id: number) => void;
  /** Ping interval; three without a sign of life terminate the link. 0: no heartbeat. */
  heartbeatMs?: number;
  /** Counts payload bytes: `sent` left this side, `received` arrived. */
  onBytes?: (direction: 'sent' | 'received', n: number) => void;
  /** Streams opened and closed (for a gauge). */
  onStreams?: (delta: 1 | -1) => void;
  window?: number;
}

interface PendingOpen {
  resolve(stream: MuxStream): void;
  reject(err: Error): void;
}

/** One WebSocket carrying many streams. */
export class MuxLink {
  private readonly streams = new Map<number, MuxStream>();
  private readonly pending = new Map<number, PendingOpen>();
  /** Agent: OPENs being dialled, not yet answered (they count against MAX_STREAMS too). */
  private readonly dialling = new Set<number>();
  private nextId = 1;
  private lastSeen = Date.now();
  private heartbeat: NodeJS.Timeout | null = null;
  private closedWith: string | null = null;
  private readonly closeListeners: ((reason: string) => void)[] = [];
  readonly window: number;

  constructor(readonly ws: WebSocket, private readonly options: MuxLinkOptions) {
    this.window = options.window ?? STREAM_WINDOW;
    ws.on('message', (data: Buffer | ArrayBuffer | Buffer[], isBinary: boolean) => {
      this.lastSeen = Date.now();
      if (!isBinary) return this.violation('text message on the agent link');
      const buf = Buffer.isBuffer(data) ? data : Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data);
      this.onFrame(buf);
    });
    ws.on('pong', () => (this.lastSeen = Date.now()));
    ws.on('ping', () => (this.lastSeen = Date.now()));
    ws.on('error', () => {}); // surfaces as 'close'
    ws.on('close', (code: number, reason: Buffer) => this.lost(`link closed (${code}${reason.length > 0 ? ` ${peerText(reason)}` : ''})`));
    const every = options.heartbeatMs ?? 0;
    if (every > 0) {
      this.heartbeat = setInterval(() => {
        if (Date.now() - this.lastSeen > every * 3) {
          this.lost(`no heartbeat for ${every * 3} ms`);
          ws.terminate();
          return;
        }
        if (ws.readyState === ws.OPEN) ws.ping();
      }, every);
      this.heartbeat.unref();
    }
  }

  get isClosed(): boolean {
    return this.closedWith !== null;
  }

  /** Streams open now (including opens awaiting an answer). */
  get size(): number {
    return this.streams.size + this.pending.size + this.dialling.size;
  }

  onClose(listener: (reason: string) => void): void {
    if (this.closedWith !== null) listener(this.closedWith);
    else this.closeListeners.push(listener);
  }

  offClose(listener: (reason: string) => void): void {
    const i = this.closeListeners.indexOf(listener);
    if (i >= 0) this.closeListeners.splice(i, 1);
  }

  /** Gateway: asks the agent to dial `target`; resolves with the stream once it is up. */
  open(target: Target, timeoutMs: number): Promise<MuxStream> {
    if (this.options.role !== 'gateway') throw new Error('only the gateway opens streams');
    if (this.closedWith !== null) return Promise.reject(new LinkLostError(`the agent link is closed: ${this.closedWith}`));
    const id = this.nextId;
    this.nextId = this.nextId >= 0xffffffff ? 1 : this.nextId + 1;
    return new Promise<MuxStream>((resolve, reject) => {
      const timer = setTimeout(() => {
        if (!this.pending.delete(id)) return;
        this.send(FrameType.RESET, id, reasonBytes('open timed out'));
        reject(new HoopError('HOOP_UPSTREAM', `the agent did not open a stream to ${target.host}:${target.port} within ${timeoutMs} ms`));
      }, timeoutMs);
      timer.unref();
      this.pending.set(id, {
        resolve: (s) => { clearTimeout(timer); resolve(s); },
        reject: (e) => { clearTimeout(timer); reject(e); },
      });
      this.send(FrameType.OPEN, id, encodeTarget(target));
    });
  }

  /** Agent: the target of OPEN `id` is connected; returns its stream. */
  accept(id: number): MuxStream {
    this.dialling.delete(id);
    const stream = this.addStream(id);
    this.send(FrameType.ACCEPT, id);
    return stream;
  }

  /** Agent: OPEN `id` is not dialled. */
  refuse(id: number, code: RefuseCode, reason: string): void {
    this.dialling.delete(id);
    const b = reasonBytes(reason);
    const payload = Buffer.allocUnsafe(1 + b.length);
    payload.writeUInt8(code, 0);
    b.copy(payload, 1);
    this.send(FrameType.REFUSE, id, payload);
  }

  /** Ends the link (and every stream on it). */
  close(code = 1000, reason = 'closing'): void {
    this.lost(reason);
    if (this.ws.readyState === this.ws.OPEN || this.ws.readyState === this.ws.CONNECTING) this.ws.close(code, reason);
    setTimeout(() => this.ws.terminate(), 2_000).unref();
  }

  /** @internal */ send(type: FrameType, id: number, payload?: Buffer): void {
    if (this.closedWith !== null || this.ws.readyState !== this.ws.OPEN) return;
    this.ws.send(frame(type, id, payload), { binary: true });
    if (type === FrameType.DATA && payload) this.options.onBytes?.('sent', payload.length);
  }

  /** @internal */ forget(id: number): void {
    if (this.streams.delete(id)) this.options.onStreams?.(-1);
  }

  /** Consumed by a violation; a hostile or broken peer loses the link. */
  private violation(what: string): void {
    if (this.closedWith !== null) return;
    this.lost(`protocol violation: ${what}`);
    if (this.ws.readyState === this.ws.OPEN) this.ws.close(1002, what.slice(0, 100));
    setTimeout(() => this.ws.terminate(), 1_000).unref();
  }

  private addStream(id: number): MuxStream {
    // The gateway's end behaves like a TCP socket (as tcpDial's): once the database's side has
    // ended, so does its own, or a session whose server hung up first would leave its stream
    // open. The agent's end stays half-open: the database may still answer after the gateway's END.
    const stream = new MuxStream(this, id, this.window, this.options.role === 'agent');
    stream.on('error', () => {}); // a reset or a lost link also surfaces as 'close'; users add their own
    this.streams.set(id, stream);
    this.options.onStreams?.(1);
    return stream;
  }

  private onFrame(buf: Buffer): void {
    if (buf.length < HEADER_BYTES) return this.violation('frame shorter than its header');
    if (buf.length > MAX_FRAME) return this.violation('frame larger than the limit');
    const type = buf.readUInt8(0);
    const id = buf.readUInt32BE(1);
    const payload = buf.subarray(HEADER_BYTES);
    if (id === 0) return this.violation('stream id 0');
    const agent = this.options.role === 'agent';
    switch (type) {
      case FrameType.OPEN: {
        if (!agent) return this.violation('OPEN sent to the gateway');
        if (this.streams.has(id) || this.dialling.has(id)) return this.violation(`OPEN of stream ${id}, which is open`);
        const target = decodeTarget(payload);
        if (!target) return this.violation('OPEN with an invalid target');
        if (this.streams.size + this.dialling.size >= MAX_STREAMS) return this.refuse(id, RefuseCode.LIMIT, `the agent carries ${MAX_STREAMS} streams on this link already`);
        this.dialling.add(id);
        this.options.onOpen?.(id, target);
        return;
      }
      case FrameType.ACCEPT:
      case FrameType.REFUSE: {
        if (agent) return this.violation(`${type === FrameType.ACCEPT ? 'ACCEPT' : 'REFUSE'} sent to the agent`);
        const p = this.pending.get(id);
        if (!p) return; // an open the gateway gave up on (timeout), answered late
        this.pending.delete(id);
        if (type === FrameType.ACCEPT) {
          if (payload.length !== 0) return this.violation('ACCEPT with a payload');
          p.resolve(this.addStream(id));
        } else {
          if (payload.length < 1) return this.violation('REFUSE without a code');
          p.reject(new MuxRefusal(payload.readUInt8(0), peerText(payload.subarray(1))));
        }
        return;
      }
      case FrameType.DATA:
        return this.toStream(id, payload.length === 0 ? 'empty DATA' : null, (s) => {
          this.options.onBytes?.('received', payload.length);
          return s.onData(payload);
        });
      case FrameType.CREDIT:
        return this.toStream(id, payload.length !== 4 ? 'CREDIT of the wrong length' : null, (s) => s.onCredit(payload.readUInt32BE(0)));
      case FrameType.END:
        return this.toStream(id, payload.length !== 0 ? 'END with a payload' : null, (s) => s.onEnd());
      case FrameType.RESET: {
        const s = this.streams.get(id);
        if (s) s.onReset(peerText(payload));
        else if (agent && this.dialling.delete(id)) this.options.onCancel?.(id);
        return;
      }
      default:
        return this.violation(`unknown frame type ${type}`);
    }
  }

  /** A stream's frame: `malformed` closes the link; a stream that is gone drops it; else `deliver` (which may find a violation). */
  private toStream(id: number, malformed: string | null, deliver: (s: MuxStream) => string | null): void {
    if (malformed) return this.violation(malformed);
    const s = this.streams.get(id);
    if (!s) return;
    const problem = deliver(s);
    if (problem) this.violation(problem);
  }

  private lost(reason: string): void {
    if (this.closedWith !== null) return;
    this.closedWith = reason;
    if (this.heartbeat) clearInterval(this.heartbeat);
    for (const l of this.closeListeners.splice(0)) l(reason);
    const err = new LinkLostError(`the agent link was lost: ${reason}`);
    for (const p of this.pending.values()) p.reject(err);
    this.pending.clear();
    for (const s of [...this.streams.values()]) s.destroy(err);
  }
}

/**
 * One multiplexed stream as a Node Duplex: what is written goes out as DATA
 * within the credit; what arrives is pushed to the reader, and credit goes back as it is read.
 */
export class MuxStream extends Duplex {
  private sendCredit: number;
  /** Bytes sent and not yet credited back (a peer may never credit more). */
  private unacked = 0;
  /** Bytes received; the part not yet read is readableLength. */
  private received = 0;
  private credited = 0;
  private pendingWrite: { chunk: Buffer; offset: number; callback: (err?: Error | null) => void } | null = null;
  private sentEnd = false;
  private gotEnd = false;
  private gotReset = false;
  private creditScheduled = false;

  constructor(private readonly link: MuxLink, readonly id: number, private readonly window: number, halfOpen: boolean) {
    super({ allowHalfOpen: halfOpen, readableHighWaterMark: 64 * 1024, writableHighWaterMark: 64 * 1024 });
    this.sendCredit = window;
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (err?: Error | null) => void): void {
    this.pendingWrite = { chunk, offset: 0, callback };
    this.flush();
  }

  override _final(callback: (err?: Error | null) => void): void {
    this.sentEnd = true;
    this.link.send(FrameType.END, this.id);
    callback();
  }

  override _read(): void {
    this.giveCredit();
  }

  override _destroy(err: Error | null, callback: (err?: Error | null) => void): void {
    const whole = this.sentEnd && this.gotEnd;
    if (!whole && !this.gotReset && !(err instanceof LinkLostError)) this.link.send(FrameType.RESET, this.id, reasonBytes(err?.message ?? 'closed'));
    const w = this.pendingWrite;
    this.pendingWrite = null;
    this.link.forget(this.id);
    if (w) w.callback(err ?? new Error('stream destroyed'));
    callback(err);
  }

  /** @internal A DATA frame; returns a violation, or null. */
  onData(payload: Buffer): string | null {
    if (this.gotEnd) return `DATA on stream ${this.id} after its END`;
    const inFlight = this.received - this.credited;
    if (inFlight + payload.length > this.window) return `DATA on stream ${this.id} beyond the credit given`;
    this.received += payload.length;
    if (this.destroyed) return null;
    this.push(payload);
    this.scheduleCredit();
    return null;
  }

  /** @internal */
  onCredit(n: number): string | null {
    if (n === 0 || n > this.unacked) return `CREDIT on stream ${this.id} for more than was sent`;
    this.unacked -= n;
    this.sendCredit += n;
    this.flush();
    return null;
  }

  /** @internal */
  onEnd(): string | null {
    if (this.gotEnd) return `second END on stream ${this.id}`;
    this.gotEnd = true;
    this.push(null);
    return null;
  }

  /** @internal */
  onReset(reason: string): void {
    this.gotReset = true;
    this.destroy(new HoopError('HOOP_UPSTREAM', `the stream was reset by the other side: ${reason}`));
  }

  private flush(): void {
    const w = this.pendingWrite;
    if (!w) return;
    while (w.offset < w.chunk.length && this.sendCredit > 0) {
      const n = Math.min(w.chunk.length - w.offset, this.sendCredit, MAX_DATA);
      this.link.send(FrameType.DATA, this.id, w.chunk.subarray(w.offset, w.offset + n));
      w.offset += n;
      this.sendCredit -= n;
      this.unacked += n;
    }
    if (w.offset === w.chunk.length) {
      this.pendingWrite = null;
      w.callback();
    }
  }

  private scheduleCredit(): void {
    if (this.creditScheduled) return;
    this.creditScheduled = true;
    queueMicrotask(() => {
      this.creditScheduled = false;
      this.giveCredit();
    });
  }

  /**
   * Credit for what the reader took, in quarters of the window: the sender always has at least
   * three quarters in hand while the reader keeps up, so this never stalls a stream.
   */
  private giveCredit(): void {
    if (this.destroyed) return;
    const owed = this.received - this.readableLength - this.credited;
    if (owed < this.window / 4) return;
    this.credited += owed;
    const b = Buffer.allocUnsafe(4);
    b.writeUInt32BE(owed, 0);
    this.link.send(FrameType.CREDIT, this.id, b);
  }
}
