/**
 * The tunnel endpoint: `GET /api/v1/connections/{name}/tunnel`, upgraded to a WebSocket
 * (RFC 6455) whose binary messages carry one PostgreSQL client session's raw bytes.
 *
 * Everything is decided BEFORE the upgrade: authentication (401), the connection (404) and the
 * identity's access to it (403; for `access_by_grant`, an approved grant open now) are answered
 * as plain HTTP responses with the JSON error body, which the local tunnel turns into a FATAL
 * for psql. Only then does the socket become a WebSocket and the engine serve it, with audit
 * hooks from session-audit.ts. A session under a grant ends when the grant does.
 *
 * Out of band, to a client that asks for them (`X-Hoop-Events: 1`, sent by `hoop connect`): TEXT
 * messages, each one JSON event, e.g. `{"event":"hold","request":"r-…","rule":"…","notice":"…"}`
 * when a statement of the session is held. Only on request: a client that reads every message
 * as PostgreSQL bytes (an older `hoop connect`) would hand a text message to psql as such.
 */
import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { STATUS_CODES } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type WebSocket } from 'ws';
import { HoopError, errorMessage } from '../errors.js';
import type { Identity } from '../identity/identity.js';
import type { ApprovalRequest } from '../api/types.js';
import { SYSTEM_ACTOR, type Source } from '../audit/event.js';
import type { Engine, StartupInfo, StatementEnd, StatementPlan, StatementStart, UpstreamConfig } from '../protocols/engine.js';
import { killMessage, killReason } from './kills.js';
import { DeniedError, admitConnection, grantCommand, reasonHeader, recordDenial, requestSource, type Admission } from './access.js';
import { endWithGrant } from './grant-end.js';
import { upstreamConfigOf, type ConnectionConfig } from './config.js';
import { sessionRoleOf } from './db-roles.js';
import { SessionPolicy, type HoldEvent, type PolicyDeps } from './statement-policy.js';
import { HttpError, errorBody, statusOf } from './http.js';
import { authenticateRequest, type ApiContext } from './routes.js';
import { sessionAuditHooks } from './session-audit.js';
import { formatDuration } from '../units.js';
import { webSocketStream } from '../tunnel-stream.js';

/** Largest WebSocket message accepted from a client (the engine's own frame limit is separate). */
export const MAX_WS_PAYLOAD = 16 * 1024 * 1024;
/** Ping interval; a peer that misses one whole interval is cut off. */
const KEEPALIVE_MS = 30_000;
/** Longest a session under an ended grant waits for grant.ended to be durable before it is ended. */
const GRANT_END_RECORD_WAIT_MS = 1_000;
const TUNNEL_PATH = /^\/api\/v1\/connections\/([^/]+)\/tunnel$/;
/** The request header by which a client asks for the out-of-band events (text messages). */
export const EVENTS_HEADER = 'x-hoop-events';
/** The one version of the events there is. */
export const EVENTS_VERSION = '1';

/** An out-of-band event for the client (a text message): a statement of the session is held. */
export type TunnelHoldEvent = { event: 'hold' } & HoldEvent;

export interface TunnelContext extends ApiContext {
  /** The engine for a connection type. */
  engines(type: string): Engine;
  /** What decides every session's statements: guard, masking, access rules (statement-policy.ts). */
  policy: PolicyDeps;
  /** Replaces the policy as the statement decision (tests). */
  planner?: Planner;
  /** Opens a connection's upstream byte stream: TCP, or through its agent (agents.ts). */
  dialUpstream: UpstreamDial;
}

/**
 * The upstream dial of a connection. `session`: the session it is for; `onLost` is told when the
 * stream's agent link drops, before the stream ends (so the client hears why).
 */
export type UpstreamDial = (connection: ConnectionConfig, upstream: UpstreamConfig, session?: { id: string; onLost?: (message: string) => void }) => Promise<Duplex>;

/** The decision for one statement of a session (the engine's plan hook, with who and where). */
export type Planner = (statement: StatementStart, session: { identity: Identity; connection: ConnectionConfig }) => Promise<StatementPlan>;

interface LiveTunnel {
  ws: WebSocket;
  done: Promise<void>;
  /** Ends the session with a FATAL saying the gateway is stopping. */
  shutdown(): void;
}

export class TunnelEndpoint {
  private readonly wss = new WebSocketServer({ noServer: true, maxPayload: MAX_WS_PAYLOAD, perMessageDeflate: false, clientTracking: false });
  private readonly live = new Set<LiveTunnel>();
  private closing = false;
  /** Sessions open or being opened, per connection and identity (for max_sessions_per_user). */
  private readonly openPerUser = new Map<string, number>();
  /** The session id chosen for an upgrade, also sent to the client in X-Hoop-Session. */
  private readonly sessionIds = new WeakMap<IncomingMessage, string>();

  constructor(private readonly ctx: TunnelContext) {
    // `hoop connect` shows it, so the person can find the session with `hoop sessions show`.
    this.wss.on('headers', (headers, req) => {
      const id = this.sessionIds.get(req);
      if (id) headers.push(`X-Hoop-Session: ${id}`);
    });
  }

  get size(): number {
    return this.live.size;
  }

  /** The server's 'upgrade' listener. */
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    socket.on('error', () => socket.destroy());
    this.admit(req).then(
      ({ identity, connection, grant }) => {
        if (socket.destroyed) return;
        if (this.closing) return refuseUpgrade(socket, shuttingDown(), 503);
        const sessionId = randomUUID();
        this.sessionIds.set(req, sessionId);
        this.wss.handleUpgrade(req, socket, head, (ws) => this.serve(ws, req, identity, connection, sessionId, grant));
      },
      (err: unknown) => {
        const status = statusOf(err);
        this.ctx.metrics.tunnelRefusals.inc(String(status));
        if (!(err instanceof HoopError)) this.ctx.logger.error({ err: errorMessage(err) }, 'tunnel upgrade failed');
        refuseUpgrade(socket, err, status);
      },
    );
  }

  /** Stops accepting tunnels and ends the live ones (their sessions end and are recorded). */
  async close(timeoutMs = 5_000): Promise<void> {
    this.closing = true;
    const all = [...this.live];
    for (const t of all) t.shutdown();
    const timer = new Promise<void>((r) => setTimeout(r, timeoutMs).unref());
    await Promise.race([Promise.all(all.map((t) => t.done)), timer]);
    for (const t of this.live) t.ws.terminate();
    await Promise.race([Promise.all([...this.live].map((t) => t.done)), new Promise<void>((r) => setTimeout(r, 1_000).unref())]);
    this.wss.close();
  }

  private async admit(req: IncomingMessage): Promise<Admission & { identity: Identity }> {
    if (this.closing) throw shuttingDown();
    const path = new URL(req.url ?? '/', 'http://gateway.invalid').pathname;
    const m = TUNNEL_PATH.exec(path);
    if (!m) throw new HoopError('HOOP_NOT_FOUND', 'no such route');
    if (req.method !== 'GET') throw new HoopError('HOOP_USAGE', 'a tunnel is opened with GET and Upgrade: websocket');
    const identity = await authenticateRequest(this.ctx, req);
    let name: string;
    try {
      name = decodeURIComponent(m[1]!);
    } catch {
      throw new HoopError('HOOP_NOT_FOUND', 'no such connection');
    }
    try {
      return { identity, ...(await admitConnection(this.ctx.config, identity, name, reasonHeader(req), (s, c) => this.ctx.approvals.activeGrant(s, c))) };
    } catch (err) {
      if (err instanceof DeniedError) recordDenial(this.ctx, req, identity, err, 'tunnel');
      throw err;
    }
  }

  /**
   * Counts a session against the connection's max_sessions_per_user (one person or job cannot
   * take all of the database's connections) when it starts — a tunnel that only carries a
   * CancelRequest is not a session and is never refused; the returned function gives it back.
   */
  private reserveSession(req: IncomingMessage, identity: Identity, connection: ConnectionConfig): () => void {
    const key = `${connection.name}\u0000${identity.subject}`;
    const open = this.openPerUser.get(key) ?? 0;
    const max = connection.maxSessionsPerUser;
    if (max !== null && open >= max) {
      const reason = `${identity.subject} already has ${open} open session${open === 1 ? '' : 's'} on connection ${connection.name}, the limit (max_sessions_per_user ${max}); close one to open another`;
      const err = new DeniedError('HOOP_POLICY_DENIED', reason, { stage: 'limit', connection: connection.name });
      recordDenial(this.ctx, req, identity, err, 'tunnel');
      throw err;
    }
    this.openPerUser.set(key, open + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const left = (this.openPerUser.get(key) ?? 1) - 1;
      if (left > 0) this.openPerUser.set(key, left);
      else this.openPerUser.delete(key);
    };
  }

  private serve(ws: WebSocket, req: IncomingMessage, identity: Identity, connection: ConnectionConfig, sessionId: string, grant: ApprovalRequest | null): void {
    const { ctx } = this;
    if (this.closing) {
      ws.close(1001, 'gateway shutting down');
      return;
    }
    let release = () => {};
    const log = ctx.logger.child({ session: sessionId, connection: connection.name, subject: identity.subject });
    ctx.metrics.sessions.inc();

    ws.on('message', (_data, isBinary) => {
      if (!isBinary) ws.close(1003, 'binary messages only');
    });
    ws.on('error', (err) => log.info({ err: errorMessage(err) }, 'tunnel websocket error'));

    // Keepalive: a ping each interval; no pong since the last one means the peer is gone.
    let alive = true;
    ws.on('pong', () => { alive = true; });
    const keepalive = setInterval(() => {
      if (!alive) return ws.terminate();
      alive = false;
      ws.ping();
    }, KEEPALIVE_MS);
    keepalive.unref();

    const stream = webSocketStream(ws);
    stream.on('error', (err) => log.debug({ err: errorMessage(err) }, 'tunnel stream error'));
    // Ends the session at a message boundary, with a FATAL carrying the reason (limit, shutdown).
    const ending = new AbortController();
    let limitTimer: NodeJS.Timeout | null = null;
    let endedBy: string | null = null;
    const limit = connection.maxSessionMs;
    // An admin's `hoop sessions kill`, from this gateway or another replica (kills.ts).
    const unhold = ctx.kills.hold(sessionId, (kill) => {
      endedBy ??= killReason(kill);
      log.info({ requested_by: kill.requested_by }, 'session killed by an admin');
      ending.abort(killMessage(kill));
    });

    // Under an access grant: the session ends when the grant does (grant-end.ts), recorded as grant.ended.
    let started = false;
    const grantEnd = grant ? endWithGrant({
      grant,
      next: () => ctx.approvals.activeGrant(identity.subject, connection.name),
      onEnd: (ended, error) => {
        if (error !== undefined) log.warn({ err: errorMessage(error), request: ended.id }, 'cannot read access grants at a grant\'s end; the session ends');
        endedBy ??= `access grant ${ended.id} ended at ${ended.expires_at}`;
        log.info({ request: ended.id }, 'access grant ended');
        const message = `hoop: your access grant ${ended.id} to connection ${connection.name} ended at ${ended.expires_at}; ask for another with: ${grantCommand(connection)}`;
        if (!started) return ending.abort(message); // nothing recorded yet that grant.ended could belong to
        // Recorded before session.end, so the record says why the session ended; a slow store
        // delays the end by a second at most.
        const recorded = ctx.recorder.record({
          type: 'grant.ended', actor: SYSTEM_ACTOR, connection: connection.name, session_id: sessionId,
          data: { request: ended.id, requester: identity.subject, until: ended.expires_at, session_ended: true },
        }).catch((err: unknown) => log.error({ err: errorMessage(err), request: ended.id }, 'cannot record grant.ended'));
        void Promise.race([recorded, new Promise((r) => setTimeout(r, GRANT_END_RECORD_WAIT_MS).unref())]).then(() => ending.abort(message));
      },
    }) : null;

    const audit = sessionAuditHooks({
      recorder: ctx.recorder,
      metrics: ctx.metrics,
      identity,
      connection: connection.name,
      sessionId,
      ...sourceFields(requestSource(this.ctx, req)),
      reason: reasonHeader(req),
      database: connection.upstream.database,
      maxSessionMs: limit,
      grant: grant ? { request: grant.id, until: grant.expires_at } : null,
      onStarted: () => {
        started = true;
        log.info('session started');
        if (limit === null) return;
        limitTimer = setTimeout(() => {
          endedBy = `session limit reached (max_session ${formatDuration(limit)})`;
          log.info('session limit reached');
          ending.abort(`hoop: this session reached the ${formatDuration(limit)} limit of connection ${connection.name}; reconnect to start a new session`);
        }, limit);
        limitTimer.unref();
      },
      endReason: () => endedBy,
      // The client was told only which step failed (error); the operator's account is detail.
      onEnded: ({ reason, error, detail }) => {
        if (reason === 'upstream-failed') log.warn({ err: detail ?? error }, 'could not connect to the upstream database');
      },
      secrets: [connection.upstream.password],
    });
    // Over the limit, the session is refused before session.start: a FATAL that says why.
    // The statement decisions: a planner given to the gateway (tests), else the policy.
    const planner = ctx.planner;
    const tell = wantsEvents(req) ? (e: TunnelHoldEvent) => sendEvent(ws, e) : null;
    const policy = planner ? null : new SessionPolicy(ctx.policy, {
      identity, connection: connection.name, sessionId, reason: reasonHeader(req),
      ...(tell ? { onHold: (h: HoldEvent) => tell({ event: 'hold', ...h }) } : {}),
    });
    const hooks = {
      ...audit,
      sessionStart: async (info: StartupInfo) => {
        release = this.reserveSession(req, identity, connection);
        await audit.sessionStart(info);
      },
      ...(planner ? { plan: (s: StatementStart) => planner(s, { identity, connection }) } : {}),
      ...(policy ? {
        plan: (s: StatementStart) => policy.plan(s),
        queryEnd: (end: StatementEnd) => {
          audit.queryEnd(end);
          policy.queryEnded(end);
        },
      } : {}),
    };

    // The caller's mapped database role (admission refused a caller with none); the catalog reads stay the service role's.
    const upstream = upstreamConfigOf(connection, sessionRoleOf(connection, identity));
    // The session's own stream (the first dial) ends the session with a clear FATAL if its agent
    // link drops; a cancel request's stream (later dials) ends by itself.
    let dials = 0;
    const onLost = (message: string) => {
      endedBy ??= message.replace(/^hoop: /, '');
      log.warn('the agent link under this session was lost');
      ending.abort(message);
    };
    const done = ctx.engines(connection.type)
      .serve(stream, {
        upstream,
        dial: () => ctx.dialUpstream(connection, upstream, dials++ === 0 ? { id: sessionId, onLost } : { id: sessionId }),
        hooks,
        signal: ending.signal,
        payloadLimit: ctx.config.audit.payload_limit,
        owner: identity.subject,
        ...(policy ? { scrubText: policy.scrubText } : {}),
      })
      .catch((err: unknown) => log.error({ err: errorMessage(err) }, 'engine failed'))
      .finally(() => {
        clearInterval(keepalive);
        if (limitTimer) clearTimeout(limitTimer);
        grantEnd?.stop();
        if (ws.readyState === ws.OPEN) ws.close(1000, endedBy ?? 'session ended');
        setTimeout(() => ws.terminate(), 2_000).unref();
        this.live.delete(entry);
        unhold();
        release();
      });
    const entry: LiveTunnel = {
      ws,
      done,
      shutdown: () => {
        endedBy ??= 'gateway shutting down';
        ending.abort('hoop: the gateway is shutting down; reconnect in a moment');
      },
    };
    this.live.add(entry);
  }
}


function wantsEvents(req: IncomingMessage): boolean {
  return req.headers[EVENTS_HEADER] === EVENTS_VERSION;
}

/** One event as a text message, queued in order with the session's bytes; dropped once the socket is closing. */
function sendEvent(ws: WebSocket, event: TunnelHoldEvent): void {
  if (ws.readyState !== ws.OPEN) return;
  ws.send(JSON.stringify(event), { binary: false });
}

function shuttingDown(): HttpError {
  return new HttpError(503, 'HOOP_NETWORK', 'the gateway is shutting down; retry in a moment');
}

/** A plain HTTP response on the raw socket, before any upgrade; the JSON body says why. */
export function refuseUpgrade(socket: Duplex, err: unknown, status: number): void {
  if (socket.destroyed) return;
  const body = JSON.stringify(errorBody(err));
  const head = [
    `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Error'}`,
    'Content-Type: application/json; charset=utf-8',
    `Content-Length: ${Buffer.byteLength(body)}`,
    'Cache-Control: no-store',
    'Connection: close',
    ...(status === 401 ? ['WWW-Authenticate: Bearer realm="hoop"'] : []),
  ];
  socket.end(`${head.join('\r\n')}\r\n\r\n${body}`);
  setTimeout(() => socket.destroy(), 1_000).unref();
}

function sourceFields(source: Source): { address: string | null; proxy?: string } {
  return { address: source.address ?? null, ...(source.proxy ? { proxy: source.proxy } : {}) };
}
