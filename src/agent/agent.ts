/**
 * `hoop agent`: runs inside the database's network and dials OUT to each gateway it is given
 * (`GET /api/v1/agents/link`, a WebSocket, `Authorization: Bearer <agent key>`), so no inbound
 * port opens toward the data. It holds one link per gateway URL (every replica: a session on
 * any replica reaches the agent through that replica's own link) — or, when the gateway behind
 * the URL runs `workers: N` (its 101 names the worker: GATEWAY_WORKER_HEADER), one link per
 * worker. It reconnects each with jittered exponential backoff, and serves the gateway's OPENs
 * (mux.ts) by dialling TCP — only to targets on its allow-list (allow.ts). It relays bytes and
 * never reads them: the gateway's TLS to the database runs through it end to end.
 *
 * It has no listener; its health is its log: `agent connected` per link (with `worker: k/N`
 * behind a multi-worker gateway), `agent link lost`, `refused a dial outside the allow-list`.
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
  /**
   * Links up now, over every gateway URL: one per URL, or one per worker behind a URL whose
   * gateway runs `workers: N` (up to N). A link closed at once because its worker already had
   * one is never counted.
   */
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
  const groups = options.gateways.map((g) => new GatewayLinks(g, options, instance));
  for (const g of groups) g.start();
  return {
    get connected() {
      return groups.reduce((n, g) => n + g.connected, 0);
    },
    async close() {
      await Promise.all(groups.map((g) => g.stop()));
    },
  };
}

/** The gateway worker that took a link (1-based index of count); a gateway without the header is one process, 1/1. */
export interface GatewayWorker {
  index: number;
  count: number;
}

const MAX_WORKERS = 1024;
/** What a gateway that names no worker is: one process. */
const ONE_PROCESS: GatewayWorker = { index: 1, count: 1 };

/** GATEWAY_WORKER_HEADER's `k/N`, or null when absent or unreadable. */
export function parseWorkerHeader(value: string | string[] | undefined): GatewayWorker | null {
  const m = typeof value === 'string' ? /^(\d{1,4})\/(\d{1,4})$/.exec(value.trim()) : null;
  if (!m) return null;
  const index = Number(m[1]);
  const count = Number(m[2]);
  return index >= 1 && index <= count && count <= MAX_WORKERS ? { index, count } : null;
}

/** Links in a row that may land on already linked workers, per worker, before the next attempt waits the backoff. */
const MISSES_PER_WORKER = 4;
/** The pause before another attempt after a link landed on a worker already linked (jittered between the two). */
const MISS_DELAY_MS = [50, 200] as const;

/**
 * The links to one gateway URL. Behind it is one process, or (`workers: N`) N worker processes
 * that take turns accepting connections; each link's 101 names its worker
 * (GATEWAY_WORKER_HEADER). Links are opened one at a time until every worker has one: a link that
 * lands on a worker already linked is closed at once and another is tried shortly after (after
 * MISSES_PER_WORKER × N such in a row, with the backoff, so a busy gateway cannot make the agent
 * spin). A worker whose link drops is linked again; the other workers' links are untouched.
 */
class GatewayLinks {
  /** Workers behind the URL, as the newest link said (a gateway restarted with another count changes it). */
  private count = 1;
  private readonly kept = new Map<number, GatewayLink>();
  private trying: GatewayLink | null = null;
  private timer: NodeJS.Timeout | null = null;
  /** Attempts that failed (or links that dropped) since a link was last kept: the backoff's exponent. */
  private failures = 0;
  /** Links in a row that landed on a worker already linked. */
  private misses = 0;
  private stopped = false;
  private readonly log: Logger;

  constructor(private readonly gateway: string, private readonly o: AgentOptions, private readonly instance: string) {
    this.log = o.logger.child({ gateway });
  }

  get connected(): number {
    let n = 0;
    for (const l of this.kept.values()) if (l.isUp) n += 1;
    return n;
  }

  start(): void {
    this.tryNext();
  }

  /** Opens the next link, unless one is on its way or due, or every worker has one. */
  private tryNext(): void {
    if (this.stopped || this.trying || this.timer || this.kept.size >= this.count) return;
    const link: GatewayLink = new GatewayLink(this.gateway, this.o, this.instance, this.log, {
      opened: (worker) => this.opened(link, worker),
      closed: () => this.closed(link),
    });
    this.trying = link;
    link.start();
  }

  /** The handshake is done: the link is kept if its worker has none yet, else closed and another tried. */
  private opened(link: GatewayLink, worker: GatewayWorker): void {
    this.trying = null;
    if (this.stopped) return link.dismiss('agent stopping');
    if (worker.count !== this.count) this.follow(worker.count);
    if (this.kept.has(worker.index)) return this.missed(link, worker);
    this.kept.set(worker.index, link);
    this.failures = 0;
    this.misses = 0;
    link.keep();
    this.tryNext();
  }

  private missed(link: GatewayLink, worker: GatewayWorker): void {
    link.dismiss('this worker is linked already');
    this.misses += 1;
    const linked = `${this.kept.size}/${this.count}`;
    if (this.misses >= MISSES_PER_WORKER * this.count) {
      this.log.debug({ worker: workerLabel(worker), linked, misses: this.misses }, 'closed a link to a worker linked already; backing off');
      this.misses = 0;
      this.retry();
      return;
    }
    const [low, high] = MISS_DELAY_MS;
    const delay = Math.round(low + Math.random() * (high - low));
    this.log.debug({ worker: workerLabel(worker), linked, in_ms: delay }, 'closed a link to a worker linked already; trying again');
    this.schedule(delay);
  }

  /** The gateway restarted with `count` workers: links counted under another number belong to workers gone. */
  private follow(count: number): void {
    this.count = count;
    for (const [index, l] of this.kept) {
      if (l.worker?.count === count) continue;
      this.kept.delete(index);
      l.dismiss('the gateway\'s worker count changed');
    }
  }

  private closed(link: GatewayLink): void {
    if (this.trying === link) {
      this.trying = null; // it never opened: refused, unreachable, or the handshake timed out
      this.retry();
      return;
    }
    const index = link.worker?.index;
    if (index !== undefined && this.kept.get(index) === link) {
      this.kept.delete(index);
      this.retry();
    }
  }

  private retry(): void {
    if (this.stopped || this.trying || this.timer) return;
    const cap = this.o.backoffMaxMs ?? DEFAULT_BACKOFF_MAX_MS;
    const base = Math.min(cap, BACKOFF_INITIAL_MS * 2 ** Math.min(this.failures, 20));
    const delay = Math.round(base / 2 + Math.random() * (base / 2)); // jitter: replicas restarting together are not hit at once
    this.failures += 1;
    this.log.info({ in_ms: delay, attempt: this.failures }, 'reconnecting');
    this.schedule(delay);
  }

  private schedule(delay: number): void {
    this.timer = setTimeout(() => {
      this.timer = null;
      this.tryNext();
    }, delay);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    const links = [...this.kept.values(), ...(this.trying ? [this.trying] : [])];
    await Promise.all(links.map((l) => l.stop()));
  }
}

function workerLabel(w: GatewayWorker): string {
  return `${w.index}/${w.count}`;
}

/** One WebSocket to a gateway, from its handshake to its close; once open, its group keeps it (a mux link serving OPENs) or dismisses it. */
class GatewayLink {
  private link: MuxLink | null = null;
  private ws: WebSocket | null = null;
  /** The worker the 101 named (1/1 without the header); null until the handshake is done. */
  worker: GatewayWorker | null = null;
  /** Whether the gateway named its worker (else it is one process, and the log says nothing of workers). */
  private named = false;
  private readonly dials = new Map<number, Socket>();
  private log: Logger;

  constructor(
    private readonly gateway: string,
    private readonly o: AgentOptions,
    private readonly instance: string,
    log: Logger,
    private readonly group: { opened(worker: GatewayWorker): void; closed(): void },
  ) {
    this.log = log;
  }

  get isUp(): boolean {
    return this.link !== null && !this.link.isClosed;
  }

  start(): void {
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
    ws.on('upgrade', (res) => {
      const header = res.headers[GATEWAY_WORKER_HEADER];
      const worker = parseWorkerHeader(header);
      if (header !== undefined && !worker) this.log.warn({ header: String(header).slice(0, 64) }, 'unreadable gateway worker header: holding one link to this gateway');
      this.named = worker !== null;
      this.worker = worker ?? ONE_PROCESS;
    });
    ws.on('open', () => this.group.opened(this.worker ?? ONE_PROCESS)); // 'upgrade' came first and set it
    ws.on('close', () => {
      this.link = null;
      this.ws = null;
      this.group.closed();
    });
  }

  /** Serves the gateway's OPENs on this link from now on. */
  keep(): void {
    const ws = this.ws!;
    if (this.named) this.log = this.log.child({ worker: workerLabel(this.worker!) });
    this.link = new MuxLink(ws, {
      role: 'agent',
      heartbeatMs: this.o.heartbeatMs ?? DEFAULT_HEARTBEAT_MS,
      onOpen: (id, target) => this.dial(id, target),
      onCancel: (id) => this.dials.get(id)?.destroy(),
    });
    this.link.onClose((reason) => this.log.warn({ reason }, 'agent link lost'));
    this.log.info({ allow: this.o.allow.size }, 'agent connected');
  }

  /** Closes an open link its group has no use for (its worker has one already, or is gone). */
  dismiss(reason: string): void {
    if (this.link) this.link.close(1000, reason);
    else this.ws?.close(1000, reason);
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
