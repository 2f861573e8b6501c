/**
 * `hoop agent`: runs inside the database's network and dials OUT to each gateway it is given
 * (`GET /api/v1/agents/link`, a WebSocket, `Authorization: Bearer <agent key>`), so no inbound
 * port opens toward the data. It holds one link per gateway URL (every replica: a session on
 * any replica reaches the agent through that replica's own link), reconnects each with jittered
 * exponential backoff, and serves the gateway's OPENs (mux.ts) by dialling TCP — only to targets
 * on its allow-list (allow.ts). It relays bytes and never reads them: the gateway's TLS to the
 * database runs through it end to end.
 *
 * It has no listener; its health is its log: `agent connected` per gateway, `agent link lost`,
 * `refused a dial outside the allow-list`.
 */
import { hostname } from 'node:os';
import { connect as netConnect, type Socket } from 'node:net';
import type { Logger } from 'pino';
import { WebSocket } from 'ws';
import { errorMessage } from '../errors.js';
import type { AllowList } from './allow.js';
import { MAX_FRAME, MuxLink, RefuseCode, type MuxStream, type Target } from './mux.js';

export const AGENT_LINK_PATH = '/api/v1/agents/link';
/** Header with the name the agent expects its key to belong to (`--name`). */
export const AGENT_NAME_HEADER = 'x-hoop-agent-name';
/** Header naming this agent process, for the gateway's log and audit (host name and pid). */
export const AGENT_INSTANCE_HEADER = 'x-hoop-agent-instance';
/**
 * On the link's 101 response of a gateway with `workers: N`: `k/N`, the worker (1-based) that
 * took the link. The agent keeps links until every worker behind the URL has one.
 */
export const GATEWAY_WORKER_HEADER = 'x-hoop-gateway-worker';

export const DEFAULT_HEARTBEAT_MS = 5_000;
export const DEFAULT_BACKOFF_MAX_MS = 10_000;
const BACKOFF_INITIAL_MS = 250;
const DIAL_TIMEOUT_MS = 10_000;

export interface AgentOptions {
  /** Gateway base URLs (http(s)://host:port); one link each. */
  gateways: string[];
  key: string;
  allow: AllowList;
  /** The agent name the key must belong to (the gateway checks); absent: whatever the key's is. */
  name?: string;
  logger: Logger;
  heartbeatMs?: number;
  backoffMaxMs?: number;
  /** TLS: extra CAs to trust for wss:// (besides the system's and NODE_EXTRA_CA_CERTS). */
  ca?: string;
}

export interface RunningAgent {
  /** Links up now. */
  readonly connected: number;
  close(): Promise<void>;
}

export function linkUrl(gateway: string): string {
  const u = new URL(gateway);
  u.protocol = u.protocol === 'https:' ? 'wss:' : 'ws:';
  u.pathname = `${u.pathname.replace(/\/+$/, '')}${AGENT_LINK_PATH}`;
  return u.toString();
}

export function startAgent(options: AgentOptions): RunningAgent {
  const instance = `${hostname()}:${process.pid}`.slice(0, 128);
  const links = options.gateways.map((g) => new GatewayLink(g, options, instance));
  for (const l of links) l.start();
  return {
    get connected() {
      return links.filter((l) => l.isUp).length;
    },
    async close() {
      await Promise.all(links.map((l) => l.stop()));
    },
  };
}

/** The link to one gateway, kept up until stop(). */
class GatewayLink {
  private link: MuxLink | null = null;
  private ws: WebSocket | null = null;
  private attempt = 0;
  private timer: NodeJS.Timeout | null = null;
  private stopped = false;
  private readonly dials = new Map<number, Socket>();
  private readonly log: Logger;

  constructor(private readonly gateway: string, private readonly o: AgentOptions, private readonly instance: string) {
    this.log = o.logger.child({ gateway });
  }

  get isUp(): boolean {
    return this.link !== null && !this.link.isClosed;
  }

  start(): void {
    if (this.stopped) return;
    const ws = new WebSocket(linkUrl(this.gateway), {
      headers: {
        authorization: `Bearer ${this.o.key}`,
        [AGENT_INSTANCE_HEADER]: this.instance,
        ...(this.o.name ? { [AGENT_NAME_HEADER]: this.o.name } : {}),
      },
      maxPayload: MAX_FRAME,
      perMessageDeflate: false,
      handshakeTimeout: 10_000,
      ...(this.o.ca ? { ca: this.o.ca } : {}),
    });
    this.ws = ws;
    ws.on('unexpected-response', (_req, res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => { if (body.length < 2_000) body += c; });
      res.on('end', () => {
        this.log.error({ status: res.statusCode, reason: reasonOf(body) }, 'the gateway refused the agent link');
        ws.terminate();
      });
    });
    ws.on('error', (err) => this.log.warn({ err: errorMessage(err) }, 'agent link error'));
    ws.on('open', () => {
      this.attempt = 0;
      this.link = new MuxLink(ws, {
        role: 'agent',
        heartbeatMs: this.o.heartbeatMs ?? DEFAULT_HEARTBEAT_MS,
        onOpen: (id, target) => this.dial(id, target),
        onCancel: (id) => this.dials.get(id)?.destroy(),
      });
      this.link.onClose((reason) => this.log.warn({ reason }, 'agent link lost'));
      this.log.info({ allow: this.o.allow.size }, 'agent connected');
    });
    ws.on('close', () => {
      this.link = null;
      this.ws = null;
      this.retry();
    });
  }

  private retry(): void {
    if (this.stopped) return;
    const cap = this.o.backoffMaxMs ?? DEFAULT_BACKOFF_MAX_MS;
    const base = Math.min(cap, BACKOFF_INITIAL_MS * 2 ** Math.min(this.attempt, 20));
    const delay = Math.round(base / 2 + Math.random() * (base / 2)); // jitter: replicas restarting together are not hit at once
    this.attempt += 1;
    this.log.info({ in_ms: delay, attempt: this.attempt }, 'reconnecting');
    this.timer = setTimeout(() => this.start(), delay);
  }

  /** An OPEN: refused unless allowed; else a TCP connection, then ACCEPT and a relay both ways. */
  private dial(id: number, target: Target): void {
    const link = this.link!;
    const where = `${target.host}:${target.port}`;
    if (!this.o.allow.allows(target)) {
      this.log.warn({ target: where }, 'refused a dial outside the allow-list');
      link.refuse(id, RefuseCode.NOT_ALLOWED, `${where} is not in the agent's allow-list`);
      return;
    }
    const socket = netConnect({ host: target.host, port: target.port });
    this.dials.set(id, socket);
    const timer = setTimeout(() => socket.destroy(new Error(`no answer within ${DIAL_TIMEOUT_MS} ms`)), DIAL_TIMEOUT_MS);
    const failed = (err: Error) => {
      clearTimeout(timer);
      this.dials.delete(id);
      this.log.warn({ target: where, err: errorMessage(err) }, 'could not dial the target');
      if (!link.isClosed) link.refuse(id, RefuseCode.DIAL_FAILED, `could not connect to ${where}: ${errorMessage(err)}`);
    };
    socket.once('error', failed);
    socket.once('close', () => {
      clearTimeout(timer); // also after a cancel (the gateway gave up): nothing is kept for it
      this.dials.delete(id);
    });
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.off('error', failed);
      this.dials.delete(id);
      if (link.isClosed) {
        socket.destroy();
        return;
      }
      socket.setNoDelay(true);
      socket.setKeepAlive(true, 60_000);
      const stream = link.accept(id);
      relay(socket, stream);
      this.log.debug({ target: where, stream: id }, 'stream opened');
      stream.once('close', () => this.log.debug({ target: where, stream: id, ...(stream.errored ? { err: errorMessage(stream.errored) } : {}) }, 'stream closed'));
    });
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    for (const s of this.dials.values()) s.destroy();
    const ws = this.ws;
    if (!ws) return;
    const closed = new Promise<void>((r) => ws.once('close', () => r()));
    this.link?.close(1001, 'agent stopping');
    if (!this.link) ws.terminate();
    await Promise.race([closed, new Promise<void>((r) => setTimeout(r, 3_000).unref())]);
  }
}

/** TCP <-> stream, with backpressure both ways (pipe) and half-close; an error on either side ends both. */
function relay(socket: Socket, stream: MuxStream): void {
  socket.pipe(stream);
  stream.pipe(socket);
  socket.on('error', (err) => stream.destroy(err));
  // A clean end (FIN) reaches the gateway as END behind the last bytes; only a broken connection is a RESET
  // (which would drop what the gateway has not read yet, such as the server's last ErrorResponse).
  socket.on('close', (hadError) => {
    if (hadError || !socket.readableEnded) stream.destroy(new Error('the connection to the target broke'));
  });
  // A reset or a lost link cuts the TCP connection; a clean end lets the socket flush and close itself.
  stream.on('close', () => {
    if (stream.errored || !stream.readableEnded) socket.destroy();
  });
}

function reasonOf(body: string): string {
  try {
    const parsed = JSON.parse(body) as { error?: { message?: string } };
    if (parsed.error?.message) return parsed.error.message.slice(0, 300);
  } catch { /* not JSON */ }
  return body.slice(0, 300);
}
