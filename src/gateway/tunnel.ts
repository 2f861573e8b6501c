/**
 * The tunnel endpoint: `GET /api/v1/connections/{name}/tunnel`, upgraded to a WebSocket
 * (RFC 6455) whose binary messages carry one PostgreSQL client session's raw bytes.
 *
 * Everything is decided BEFORE the upgrade: authentication (401), the connection (404) and the
 * identity's access to it (403; for `access_by_grant`, an approved grant open now) are answered
 * as plain HTTP responses with the JSON error body, which the local tunnel turns into a FATAL
 * for psql. Only then does the socket become a WebSocket, whose byte stream session-host.ts
 * serves as every session is served (limits, policy, write-ahead audit, kills, grants).
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
import { DeniedError, admitConnection, reasonHeader, recordDenial, requestSource, type Admission } from './access.js';
import type { ConnectionConfig } from './config.js';
import type { HoldEvent } from './statement-policy.js';
import { HttpError, errorBody, statusOf } from './http.js';
import { authenticateRequest } from './routes.js';
import type { SessionHost, SessionHostContext } from './session-host.js';
import { webSocketStream } from '../tunnel-stream.js';

export type { Planner } from './session-host.js';

/** Largest WebSocket message accepted from a client (the engine's own frame limit is separate). */
export const MAX_WS_PAYLOAD = 16 * 1024 * 1024;
/** Ping interval; a peer that misses one whole interval is cut off. */
const KEEPALIVE_MS = 30_000;
const TUNNEL_PATH = /^\/api\/v1\/connections\/([^/]+)\/tunnel$/;
/** The request header by which a client asks for the out-of-band events (text messages). */
export const EVENTS_HEADER = 'x-hoop-events';
/** The one version of the events there is. */
export const EVENTS_VERSION = '1';

/** An out-of-band event for the client (a text message): a statement of the session is held. */
export type TunnelHoldEvent = { event: 'hold' } & HoldEvent;

/** What the tunnel needs: the API's context (authentication, admission) and what serves sessions. */
export type TunnelContext = SessionHostContext;

export class TunnelEndpoint {
  private readonly wss = new WebSocketServer({ noServer: true, maxPayload: MAX_WS_PAYLOAD, perMessageDeflate: false, clientTracking: false });
  /** The session id chosen for an upgrade, also sent to the client in X-Hoop-Session. */
  private readonly sessionIds = new WeakMap<IncomingMessage, string>();

  constructor(private readonly ctx: TunnelContext, private readonly sessions: SessionHost) {
    // `hoop connect` shows it, so the person can find the session with `hoop sessions show`.
    this.wss.on('headers', (headers, req) => {
      const id = this.sessionIds.get(req);
      if (id) headers.push(`X-Hoop-Session: ${id}`);
    });
  }

  /** The server's 'upgrade' listener. */
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    socket.on('error', () => socket.destroy());
    this.admit(req).then(
      ({ identity, connection, grant }) => {
        if (socket.destroyed) return;
        if (this.sessions.isClosing) return refuseUpgrade(socket, shuttingDown(), 503);
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

  /** Stops accepting tunnels (the SessionHost ends the live sessions). */
  close(): void {
    this.wss.close();
  }

  private async admit(req: IncomingMessage): Promise<Admission & { identity: Identity }> {
    if (this.sessions.isClosing) throw shuttingDown();
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

  private serve(ws: WebSocket, req: IncomingMessage, identity: Identity, connection: ConnectionConfig, sessionId: string, grant: ApprovalRequest | null): void {
    const { ctx } = this;
    if (this.sessions.isClosing) {
      ws.close(1001, 'gateway shutting down');
      return;
    }
    const log = ctx.logger.child({ session: sessionId, connection: connection.name, subject: identity.subject });

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
    const tell = wantsEvents(req) ? (e: TunnelHoldEvent) => sendEvent(ws, e) : null;
    void this.sessions.serve(stream, {
      identity,
      connection,
      grant,
      sessionId,
      path: 'tunnel',
      source: requestSource(ctx, req),
      requestPath: (req.url ?? '').split('?')[0]!.slice(0, 200),
      reason: reasonHeader(req),
      ...(tell ? { onHold: (h: HoldEvent) => tell({ event: 'hold', ...h }) } : {}),
      terminate: () => ws.terminate(),
    }).then((endedBy) => {
      clearInterval(keepalive);
      if (ws.readyState === ws.OPEN) ws.close(1000, endedBy ?? 'session ended');
      setTimeout(() => ws.terminate(), 2_000).unref();
    });
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
