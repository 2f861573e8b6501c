/**
 * The gateway's side of the agents (`hoop agent`, src/agent/): the link endpoint
 * `GET /api/v1/agents/link` (a WebSocket; `Authorization: Bearer <agent key>`), the registry of
 * live links by agent name, and `dialVia`, which the upstream dial of a connection with `agent:`
 * becomes (every dial: sessions, cancel requests, the catalog reads, EXPLAIN).
 *
 * - Only an agent key authenticates here (its SHA-256 compared in constant time with every
 *   `agents` entry) and an agent key authenticates nowhere else (config.ts refuses an agent hash
 *   that is also an API key's). Failures are recorded as auth.failed (bounded per address, as
 *   the API's), and an address that keeps failing is answered 429 for the rest of the window.
 * - agent.connected / agent.disconnected are recorded per link; agent.refused when an agent
 *   refuses a dial (its allow-list), with the connection and the session that asked.
 * - New streams are spread round robin over the live links of the name; an agent that cannot
 *   dial the target passes the dial to the next link. A link that drops ends its streams, and
 *   each session on it is told first (`onLost`), so its client gets a clear error; the next dial
 *   uses another link. No live link: the dial fails with what the client is
 *   told ("connection bank is offline: no agent dc1 connected").
 */
import { createHash, randomUUID, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import { WebSocketServer, type WebSocket } from 'ws';
import { AGENT_INSTANCE_HEADER, AGENT_LINK_PATH, AGENT_NAME_HEADER, DEFAULT_HEARTBEAT_MS, GATEWAY_WORKER_HEADER } from '../agent/agent.js';
import { MAX_FRAME, MuxLink, MuxRefusal, RefuseCode, type MuxStream } from '../agent/mux.js';
import type { Actor, Source } from '../audit/event.js';
import type { AuditRecorder } from '../audit/recorder.js';
import { AuthError, HoopError, errorMessage } from '../errors.js';
import type { AgentKeyConfig } from './config.js';
import { HttpError } from './http.js';
import type { GatewayMetrics } from './metrics.js';
import { refuseUpgrade } from './tunnel.js';
import type { FailureLimiter } from './routes.js';

export { AGENT_LINK_PATH };

/** Failed link attempts from one address in a minute before it is answered 429 without a check. */
const FAILURES_BEFORE_THROTTLE = 10;
const THROTTLE_WINDOW_MS = 60_000;

/** A dial the gateway could not make through an agent; `clientMessage` is what the session's client may be told. */
export class AgentDialError extends HoopError {
  constructor(message: string, readonly clientMessage: string, hint?: string) {
    super('HOOP_UPSTREAM', message, hint ? { hint } : undefined);
  }
}

export interface AgentDeps {
  /** The `agents` entries in effect now (a reload changes them). */
  keys(): readonly AgentKeyConfig[];
  recorder: AuditRecorder;
  logger: Logger;
  metrics: GatewayMetrics;
  /** Who the request is from (trusted_proxies applied). */
  source(req: IncomingMessage): Source;
  /** Bounds auth.failed events per address (the API's limiter). */
  authFailures: FailureLimiter;
  heartbeatMs?: number;
  /**
   * This process's place among the gateway's workers (`workers: N`; index 1-based), told to each
   * agent on its link's 101 (GATEWAY_WORKER_HEADER) so that it links to every worker. Absent: a
   * single process, no header.
   */
  worker?: { index: number; count: number };
}

interface LiveLink {
  id: string;
  name: string;
  sha256: string;
  instance: string;
  address: string | null;
  mux: MuxLink;
}

export interface DialRequest {
  host: string;
  port: number;
  connection: string;
  sessionId: string | null;
  timeoutMs: number;
  /** The link under the stream dropped: called before the stream is destroyed. */
  onLost?: (message: string) => void;
}

export interface AgentStatus {
  name: string;
  online: boolean;
  links: number;
  /** With `workers: N`: the workers, and how many of them hold a link. */
  workers?: { count: number; linked: number };
}

/** Where the agents' state is read: this process's registry, or every worker's (mergeAgentReports). */
export interface AgentStatuses { status(name: string): AgentStatus }

/**
 * The agents as a gateway of `workers: N` sees them, from every worker's linkCounts: `links` is
 * the sum, and `online` holds only when every worker has a link, since a session reaches the
 * agent through the link of the worker it landed on (a worker that did not report counts as
 * unlinked); `workers` says how many are linked.
 */
export function mergeAgentReports(reports: readonly { worker: number; value: unknown }[], count: number): AgentStatuses {
  return {
    status(name) {
      const per = reports.map((r) => Number((r.value as Record<string, number> | null)?.[name] ?? 0));
      const linked = per.filter((n) => n > 0).length;
      return { name, online: linked === count, links: per.reduce((a, b) => a + b, 0), workers: { count, linked } };
    },
  };
}

export class AgentRegistry {
  private readonly wss = new WebSocketServer({ noServer: true, maxPayload: MAX_FRAME, perMessageDeflate: false, clientTracking: false });
  private readonly links = new Map<string, LiveLink[]>();
  private readonly turn = new Map<string, number>();
  private readonly throttle = new Throttle(FAILURES_BEFORE_THROTTLE, THROTTLE_WINDOW_MS);
  private closing = false;

  constructor(private readonly deps: AgentDeps) {
    const worker = deps.worker;
    // This server upgrades only agent links, so only they carry the header.
    if (worker) this.wss.on('headers', (headers) => void headers.push(`${GATEWAY_WORKER_HEADER}: ${worker.index}/${worker.count}`));
  }

  static matches(req: IncomingMessage): boolean {
    return new URL(req.url ?? '/', 'http://gateway.invalid').pathname === AGENT_LINK_PATH;
  }

  status(name: string): AgentStatus {
    const links = this.usable(name).length;
    return { name, online: links > 0, links };
  }

  /** Live links per agent name, for `names` (what a worker of `workers: N` reports: mergeAgentReports). */
  linkCounts(names: readonly string[]): Record<string, number> {
    return Object.fromEntries(names.map((n) => [n, this.usable(n).length]));
  }

  /** The server's 'upgrade' listener for AGENT_LINK_PATH. */
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    socket.on('error', () => socket.destroy());
    let key: AgentKeyConfig;
    try {
      if (this.closing) throw new HttpError(503, 'HOOP_NETWORK', 'the gateway is shutting down; retry in a moment');
      if (req.method !== 'GET') throw new HoopError('HOOP_USAGE', 'the agent link is opened with GET and Upgrade: websocket');
      key = this.authenticate(req);
    } catch (err) {
      const status = err instanceof HttpError ? err.status : err instanceof AuthError ? 401 : 400;
      refuseUpgrade(socket, err, status);
      return;
    }
    this.wss.handleUpgrade(req, socket, head, (ws) => this.serve(ws, req, key));
  }

  /**
   * A stream to host:port through a live agent of `name`. Rejects with AgentDialError (what the
   * client may be told) when none is connected or the agent refuses.
   */
  async dialVia(name: string, request: DialRequest): Promise<Duplex> {
    const live = this.usable(name);
    if (live.length === 0) {
      throw new AgentDialError(`no agent ${name} connected to this gateway`, `connection ${request.connection} is offline: no agent ${name} connected`, `start hoop agent with a key of agent ${name}, pointed at this gateway`);
    }
    const first = this.turn.get(name) ?? 0;
    this.turn.set(name, (first + 1) % 1_000_000);
    // An agent that cannot reach the target (or whose link drops meanwhile) hands the dial to the
    // next one, within the one connect timeout; an allow-list refusal is an answer, not a failure.
    const deadline = Date.now() + request.timeoutMs;
    let failure: AgentDialError | null = null;
    for (let i = 0; i < live.length; i++) {
      const link = live[(first + i) % live.length]!;
      const left = deadline - Date.now();
      if (left <= 0) break;
      if (link.mux.isClosed) continue;
      try {
        const stream = await link.mux.open({ host: request.host, port: request.port }, left);
        if (request.onLost) this.tellLoss(link, stream, request.onLost);
        return stream;
      } catch (err) {
        failure = this.refusal(link, request, err);
        if (err instanceof MuxRefusal && err.refuseCode === RefuseCode.NOT_ALLOWED) throw failure;
      }
    }
    throw failure ?? new AgentDialError(`no agent ${name} answered within ${request.timeoutMs} ms`, `the database behind connection ${request.connection} is unreachable from agent ${name}; an administrator can find the cause in the gateway's log`);
  }

  /** `onLost` hears of the link's end while the stream is open (before the stream itself ends). */
  private tellLoss(link: LiveLink, stream: MuxStream, onLost: (message: string) => void): void {
    const listener = () => onLost(`hoop: the agent link to ${link.name} was lost`);
    link.mux.onClose(listener);
    stream.once('close', () => link.mux.offClose(listener));
  }

  /** Ends every link (at gateway shutdown, after the sessions). */
  close(): void {
    this.closing = true;
    for (const list of this.links.values()) for (const l of list) l.mux.close(1001, 'gateway shutting down');
    this.wss.close();
  }

  private refusal(link: LiveLink, request: DialRequest, err: unknown): AgentDialError {
    const target = `${request.host}:${request.port}`;
    const log = this.deps.logger.child({ agent: link.name, instance: link.instance, target, connection: request.connection, session: request.sessionId });
    if (err instanceof MuxRefusal && err.refuseCode === RefuseCode.NOT_ALLOWED) {
      log.warn({ reason: err.reason }, 'the agent refused a dial outside its allow-list');
      this.deps.recorder.recordLater({
        type: 'agent.refused', actor: agentActor(link.name), source: { address: link.address },
        connection: request.connection, session_id: request.sessionId,
        data: { agent: link.name, instance: link.instance, link: link.id, target, reason: err.reason },
      });
      return new AgentDialError(`agent ${link.name} refused ${target}: ${err.reason}`, `the agent ${link.name} refused to reach the database of connection ${request.connection} (not in its allow-list); an administrator can find the cause in the gateway's log`, `add ${target} to the agent's --allow list`);
    }
    const why = errorMessage(err);
    log.warn({ err: why }, 'could not open a stream through the agent');
    return new AgentDialError(`through agent ${link.name}: ${why}`, `the database behind connection ${request.connection} is unreachable from agent ${link.name}; an administrator can find the cause in the gateway's log`);
  }

  /** Links of `name` whose key is still configured (a reload may have removed it). */
  private usable(name: string): LiveLink[] {
    const keys = new Set(this.deps.keys().filter((k) => k.name === name).map((k) => k.sha256));
    return (this.links.get(name) ?? []).filter((l) => !l.mux.isClosed && keys.has(l.sha256));
  }

  private authenticate(req: IncomingMessage): AgentKeyConfig {
    const source = this.deps.source(req);
    const address = source.address ?? null;
    const throttleKey = address ?? 'unknown';
    // Checked before the key: a guesser that is throttled learns nothing, not even a 401.
    if (this.throttle.blocked(throttleKey)) {
      this.deps.metrics.authFailures.inc('HOOP_AUTH_REJECTED');
      throw new HttpError(429, 'HOOP_AUTH_REJECTED', 'too many failed agent logins from this address; retry in a minute');
    }
    const header = req.headers.authorization;
    const m = typeof header === 'string' ? /^Bearer ([\x21-\x7e]{1,512})$/.exec(header) : null;
    const found = m ? findKey(this.deps.keys(), m[1]!) : undefined;
    const expected = headerText(req, AGENT_NAME_HEADER);
    if (found && (expected === null || expected === found.name)) return found;
    const reason = !m ? 'no agent key (Authorization: Bearer <key>)' : !found ? 'unknown agent key' : `the key belongs to agent ${found.name}, not ${expected}`;
    const err = new AuthError('HOOP_AUTH_REJECTED', found ? reason : 'agent key rejected', { hint: 'check HOOP_AGENT_KEY and the SHA-256 under agents in the gateway config' });
    this.deps.metrics.authFailures.inc(err.code);
    this.throttle.fail(throttleKey);
    const admitted = this.deps.authFailures.admit(`agent\u0000${throttleKey}`);
    if (admitted !== null) {
      this.deps.logger.info({ reason, address }, 'agent authentication failed');
      this.deps.recorder.recordLater({
        type: 'auth.failed', actor: null, source,
        data: { stage: 'agent', code: err.code, reason, path: AGENT_LINK_PATH, ...(admitted > 0 ? { suppressed: admitted } : {}) },
      });
    }
    throw err;
  }

  private serve(ws: WebSocket, req: IncomingMessage, key: AgentKeyConfig): void {
    const id = randomUUID();
    const address = this.deps.source(req).address ?? null;
    const instance = headerText(req, AGENT_INSTANCE_HEADER) ?? 'unnamed';
    const { metrics } = this.deps;
    const mux = new MuxLink(ws, {
      role: 'gateway',
      heartbeatMs: this.deps.heartbeatMs ?? DEFAULT_HEARTBEAT_MS,
      onBytes: (direction, n) => metrics.agentStreamBytes.inc(direction === 'sent' ? 'to_agent' : 'from_agent', n),
      onStreams: (delta) => metrics.agentStreams.add(delta),
    });
    const link: LiveLink = { id, name: key.name, sha256: key.sha256, instance, address, mux };
    const list = this.links.get(key.name) ?? [];
    list.push(link);
    this.links.set(key.name, list);
    metrics.agentLinks.add(1, key.name);
    const log = this.deps.logger.child({ agent: key.name, instance, link: id });
    log.info({ address }, 'agent connected');
    const connectedAt = Date.now();
    this.deps.recorder.recordLater({ type: 'agent.connected', actor: agentActor(key.name), source: { address }, data: { agent: key.name, instance, link: id } });
    mux.onClose((reason) => {
      const rest = (this.links.get(key.name) ?? []).filter((l) => l !== link);
      if (rest.length > 0) this.links.set(key.name, rest);
      else this.links.delete(key.name);
      metrics.agentLinks.add(-1, key.name);
      log.info({ reason }, 'agent disconnected');
      this.deps.recorder.recordLater({
        type: 'agent.disconnected', actor: agentActor(key.name), source: { address },
        data: { agent: key.name, instance, link: id, reason, connected_ms: Date.now() - connectedAt },
      });
    });
  }
}

/** Failures per address in a window; at `limit` the address is refused until the window ends. Bounded in size. */
class Throttle {
  private readonly windows = new Map<string, { start: number; failures: number }>();
  constructor(private readonly limit: number, private readonly windowMs: number, private readonly maxKeys = 10_000) {}

  blocked(key: string, now = Date.now()): boolean {
    const w = this.windows.get(key);
    return w !== undefined && now - w.start < this.windowMs && w.failures >= this.limit;
  }

  fail(key: string, now = Date.now()): void {
    let w = this.windows.get(key);
    if (!w || now - w.start >= this.windowMs) {
      if (!w && this.windows.size >= this.maxKeys) {
        for (const [k, v] of this.windows) if (now - v.start >= this.windowMs) this.windows.delete(k);
        if (this.windows.size >= this.maxKeys) key = '*'; // too many at once: the rest share one window
      }
      w = this.windows.get(key);
      if (!w || now - w.start >= this.windowMs) this.windows.set(key, (w = { start: now, failures: 0 }));
    }
    w.failures += 1;
  }
}

function agentActor(name: string): Actor {
  return { subject: `agent:${name}`, email: null, groups: [], auth_method: 'agent_key' };
}

/** The entry whose hash is the key's, comparing with every entry in constant time. */
function findKey(keys: readonly AgentKeyConfig[], key: string): AgentKeyConfig | undefined {
  const digest = createHash('sha256').update(key, 'utf8').digest();
  let found: AgentKeyConfig | undefined;
  for (const k of keys) {
    if (timingSafeEqual(digest, Buffer.from(k.sha256, 'hex')) && !found) found = k;
  }
  return found;
}

/** A printable header value up to 128 characters, else null. */
function headerText(req: IncomingMessage, name: string): string | null {
  const v = req.headers[name];
  return typeof v === 'string' && /^[\x20-\x7e]{1,128}$/.test(v) ? v : null;
}
