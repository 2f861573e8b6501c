/**
 * A bare protocol client straight to the test server (no engine in between), for tests that need
 * the server's real bytes as whole frames with their offsets: the shared raw client
 * (test/helpers/raw-client.ts) underneath, each message given as a frame of its own buffer.
 */
import type { Frame } from '../../../src/protocols/postgres/framing.js';
import { fe, rawDirect, type RawClient } from '../../helpers/raw-client.js';
import type { UpstreamInfo } from '../../helpers/postgres.js';

export interface Received { type: string; buffer: Buffer; frame: Frame }

export class RawUpstream {
  private constructor(private readonly client: RawClient) {}

  /** Logs in as the trust user (127.0.0.1 trust in the test cluster's pg_hba.conf). */
  static async open(upstream: UpstreamInfo): Promise<RawUpstream> {
    return new RawUpstream(await rawDirect(upstream.host, upstream.port, { application: 'raw-upstream', user: upstream.users.trust, database: upstream.database }));
  }

  /** Sends `messages`, then returns everything the server sent up to and including ReadyForQuery. */
  async exchange(...messages: Buffer[]): Promise<Received[]> {
    const r = await this.client.exchange(messages, 1);
    if (r.closed) throw new Error('server closed the connection');
    return r.messages.map((m) => ({ type: m.type, buffer: m.raw, frame: { type: m.raw[0]!, start: 0, bodyStart: 5, end: m.raw.length } }));
  }

  query(sql: string): Promise<Received[]> {
    return this.exchange(fe.query(sql));
  }

  close(): void {
    void this.client.end().catch(() => {});
  }
}

/** The body of a received message. */
export const bodyOf = (m: Received): Buffer => m.buffer.subarray(m.frame.bodyStart, m.frame.end);
/** The whole message (type, length, body) as the server sent it. */
export const bytesOf = (m: Received): Buffer => m.buffer.subarray(m.frame.start, m.frame.end);
