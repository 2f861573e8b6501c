/**
 * A bare protocol client straight to the test server (no engine in between), for tests that need
 * the server's real bytes: the messages it sends, as whole frames with their offsets.
 */
import { connect, type Socket } from 'node:net';
import { FrameReader, type Frame } from '../../../src/protocols/postgres/framing.js';
import { frame, MessageType, startupMessage } from '../../../src/protocols/postgres/messages.js';
import type { UpstreamInfo } from '../../helpers/postgres.js';

export interface Received { type: string; buffer: Buffer; frame: Frame }

export class RawUpstream {
  private readonly reader = new FrameReader({ peer: 'server' });
  private received: Received[] = [];
  private waiter: (() => void) | null = null;
  private closed = false;

  private constructor(readonly socket: Socket) {
    socket.on('data', (chunk: Buffer) => {
      const batch = this.reader.push(chunk);
      for (const f of batch.frames) this.received.push({ type: String.fromCharCode(f.type), buffer: batch.buffer, frame: f });
      this.waiter?.();
    });
    socket.on('close', () => {
      this.closed = true;
      this.waiter?.();
    });
    socket.on('error', () => {});
  }

  /** Logs in as the trust user (127.0.0.1 trust in the test cluster's pg_hba.conf). */
  static async open(upstream: UpstreamInfo): Promise<RawUpstream> {
    const socket = connect(upstream.port, upstream.host);
    await new Promise((r, j) => socket.once('connect', r).once('error', j));
    const c = new RawUpstream(socket);
    socket.write(startupMessage({ user: upstream.users.trust, database: upstream.database }));
    const login = await c.untilReady();
    if (login.some((m) => m.type === 'E')) throw new Error('login failed');
    return c;
  }

  /** Sends `messages`, then returns everything the server sent up to and including ReadyForQuery. */
  async exchange(...messages: Buffer[]): Promise<Received[]> {
    this.socket.write(Buffer.concat(messages));
    return this.untilReady();
  }

  async query(sql: string): Promise<Received[]> {
    return this.exchange(frame(MessageType.Query, Buffer.from(sql + '\0', 'utf8')));
  }

  private async untilReady(): Promise<Received[]> {
    const deadline = Date.now() + 10_000;
    for (;;) {
      const z = this.received.findIndex((m) => m.type === 'Z');
      if (z >= 0) return this.received.splice(0, z + 1);
      if (this.closed) throw new Error('server closed the connection');
      if (Date.now() > deadline) throw new Error('no ReadyForQuery in time');
      await new Promise<void>((r) => {
        this.waiter = r;
        setTimeout(r, 50);
      });
    }
  }

  close(): void {
    this.socket.end(frame(MessageType.Terminate));
  }
}

/** The body of a received message. */
export const bodyOf = (m: Received): Buffer => m.buffer.subarray(m.frame.bodyStart, m.frame.end);
/** The whole message (type, length, body) as the server sent it. */
export const bytesOf = (m: Received): Buffer => m.buffer.subarray(m.frame.start, m.frame.end);
