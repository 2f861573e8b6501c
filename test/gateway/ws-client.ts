/**
 * Test clients for the tunnel endpoint without the CLI: a raw upgrade that reports the refusal,
 * and a socket-like Duplex over the WebSocket that the `pg` driver accepts as its `stream`.
 */
import { Duplex } from 'node:stream';
import pg from 'pg';
import WebSocket, { createWebSocketStream } from 'ws';

export interface Refusal {
  status: number;
  contentType: string | undefined;
  body: any;
}

/** Tries to open a tunnel; resolves with the HTTP refusal, or rejects if the upgrade succeeded. */
export function tryTunnel(gateway: string, connection: string, key?: string, headers: Record<string, string> = {}): Promise<Refusal> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`${gateway.replace(/^http/, 'ws')}/api/v1/connections/${connection}/tunnel`, {
      headers: { ...(key === undefined ? {} : { authorization: `Bearer ${key}` }), ...headers },
    });
    ws.on('unexpected-response', (_req, res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (text += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, contentType: res.headers['content-type'], body: JSON.parse(text) }));
    });
    ws.on('open', () => {
      ws.terminate();
      reject(new Error('the tunnel was opened'));
    });
    ws.on('error', (err) => reject(err));
  });
}

/** What `pg` needs from its stream: a Duplex with connect/setNoDelay/setKeepAlive. */
class TunnelSocket extends Duplex {
  private inner: Duplex | null = null;
  constructor(private readonly url: string, private readonly headers: Record<string, string>) {
    super();
  }
  setNoDelay(): this {
    return this;
  }
  setKeepAlive(): this {
    return this;
  }
  ref(): this {
    return this;
  }
  unref(): this {
    return this;
  }
  connect(): this {
    const ws = new WebSocket(this.url, { headers: this.headers });
    ws.on('unexpected-response', (_req, res) => {
      let text = '';
      res.on('data', (d: Buffer) => (text += d.toString()));
      res.on('end', () => this.destroy(new Error(`tunnel refused (${res.statusCode}): ${text}`)));
    });
    ws.on('open', () => {
      const inner = createWebSocketStream(ws);
      this.inner = inner;
      inner.on('data', (d: Buffer) => {
        if (!this.push(d)) inner.pause();
      });
      inner.on('end', () => {
        // Like a TCP socket whose peer closed: no more data, and the socket goes away.
        this.push(null);
        this.end();
      });
      inner.on('close', () => this.destroy());
      inner.on('error', (err) => this.destroy(err));
      this.emit('connect');
    });
    ws.on('error', (err) => this.destroy(err));
    return this;
  }
  override _read(): void {
    this.inner?.resume();
  }
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    if (!this.inner) return cb(new Error('not connected'));
    if (this.inner.write(chunk)) cb();
    else this.inner.once('drain', () => cb());
  }
  override _final(cb: (err?: Error | null) => void): void {
    this.inner?.end();
    cb();
  }
  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    this.inner?.destroy();
    cb(err);
  }
}

/** A connected `pg` client whose bytes go through the gateway tunnel. */
export async function tunnelClient(gateway: string, connection: string, key: string, options: { reason?: string; user?: string; database?: string; application?: string } = {}): Promise<pg.Client> {
  const headers: Record<string, string> = { authorization: `Bearer ${key}` };
  if (options.reason) headers['x-hoop-reason'] = options.reason;
  const url = `${gateway.replace(/^http/, 'ws')}/api/v1/connections/${connection}/tunnel`;
  const client = new pg.Client({
    user: options.user ?? 'someone',
    database: options.database ?? 'somedb',
    application_name: options.application ?? 'tunnel-test',
    stream: () => new TunnelSocket(url, headers) as never,
  });
  client.on('error', () => {}); // surfaced through the failing query instead
  await client.connect();
  return client;
}
