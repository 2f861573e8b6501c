/**
 * The HTTP API under /api/v1 (plus /healthz and /metrics). Every route but the public ones
 * authenticates first; every failure goes through `sendError`, so the status mapping lives in
 * one place (http.ts). Routes are described for clients in openapi.ts.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { isIPv6 } from 'node:net';
import type { Logger } from 'pino';
import { EVENT_TYPE_PATTERN, FULL_SESSION_ID, type NativeListenInfo, type ApprovalRequest, type AuditKey, type AuthConfig, type ConnectionInfo, type MeInfo, type ReloadResult, type SessionKillResult } from '../api/types.js';
import type { AuditEvent, Source } from '../audit/event.js';
import type { AuditRecorder } from '../audit/recorder.js';
import { AuthError, HoopError, UsageError, errorMessage } from '../errors.js';
import { actorOf, type Identity } from '../identity/identity.js';
import { SESSION_ID_PREFIX } from '../store/filters.js';
import type { EventFilter, SessionFilter, Store } from '../store/store.js';
import { rulesFor } from '../policy/risk/rules.js';
import { DeniedError, admitConnection, reasonHeader, recordDenial, requestSource } from './access.js';
import type { AuditKeys } from './audit-keys.js';
import type { AuthenticatorChain } from './authn.js';
import type { ConfigHolder } from './live-config.js';
import type { ConfigReloader } from './reload.js';
import { isAdmin, mayReadAllSessions, mayReadAuditLog, mayReadOperatorDetail, mayReadSession, mayUseByGrant, mayUseConnection, namesIdentity, rolesOf, sharesGroup } from './authz.js';
import type { ConnectionConfig, GatewayConfig } from './config.js';
import { eventsFor } from './event-view.js';
import { HttpError, readBody, sendError, sendJson, sendText } from './http.js';
import type { GatewayMetrics } from './metrics.js';
import type { SessionKills } from './kills.js';
import type { Notifier } from './notify.js';
import type { ApprovalService } from './approvals.js';
import { createRequest, decideReview, getRequest, listReviews } from './approval-routes.js';
import { openApiDocument } from './openapi.js';
import { auditExport, type ExportParts } from './audit-routes.js';
import type { TrustedProxies } from './proxies.js';
import type { AgentStatuses } from './agents.js';

export interface ApiContext {
  /** The snapshot this request reads throughout (live-config.ts); `configs.current()` may be newer. */
  config: GatewayConfig;
  store: Store;
  recorder: AuditRecorder;
  /** What exports need: the checkpointer (a bundle's span ends at a fresh checkpoint) and the signing key. */
  audit: ExportParts;
  authn: AuthenticatorChain;
  /** The config in effect now, and the reload that replaces it. */
  configs: ConfigHolder;
  reloader: ConfigReloader;
  metrics: GatewayMetrics;
  /** `workers: N`: every worker's metrics (cluster.ts); absent: `metrics.render()`. */
  metricsText?: () => Promise<string>;
  /** `workers: N`: the agents as every worker sees them (agents.ts mergeAgentReports); absent: `agents`. */
  agentsNow?: () => Promise<AgentStatuses>;
  logger: Logger;
  /** Bounds how many auth.failed events one address can cause. */
  authFailures: FailureLimiter;
  /** The same for access.denied, per identity: a signed-in caller cannot flood the log either. */
  denials: FailureLimiter;
  /** The sessions this gateway holds, and kill requests for them from any replica. */
  kills: SessionKills;
  /** Approver notifications by webhook, from the store's outbox (notify.ts). */
  notifier: Notifier;
  /** Approval requests: held statements, reviewers' decisions, ahead-of-time requests (approvals.ts). */
  approvals: ApprovalService;
  /** Whose X-Forwarded-For is believed (trusted_proxies). */
  proxies: TrustedProxies;
  /** Where the native PostgreSQL listener listens (`postgres_listen`), or null. */
  postgresListen?: () => NativeListenInfo | null;
  /** Live agent links (agents.ts), for each connection's agent status. */
  agents?: AgentStatuses;
  /** The audit signing keys, active and retired, with their use (audit-keys.ts). */
  auditKeys: AuditKeys;
}

type Handler = (ctx: ApiContext, req: IncomingMessage, res: ServerResponse, params: { url: URL; match: RegExpExecArray; body: Buffer }) => Promise<void>;

interface Route {
  pattern: RegExp;
  /** Public routes answer without a bearer token. */
  public: boolean;
  handler: Handler;
  /** Default GET and HEAD. */
  methods?: readonly string[];
}

const READ_METHODS = ['GET', 'HEAD'] as const;

const SESSION_ID = /^[A-Za-z0-9_-]{1,64}$/;

const routes: Route[] = [
  { pattern: /^\/healthz$/, public: true, handler: healthz },
  { pattern: /^\/metrics$/, public: true, handler: metrics },
  { pattern: /^\/api\/v1\/openapi\.json$/, public: true, handler: openapi },
  { pattern: /^\/api\/v1\/auth\/config$/, public: true, handler: authConfig },
  { pattern: /^\/api\/v1\/me$/, public: false, handler: me },
  { pattern: /^\/api\/v1\/connections$/, public: false, handler: connections },
  { pattern: /^\/api\/v1\/connections\/([^/]+)$/, public: false, handler: connection },
  { pattern: /^\/api\/v1\/sessions$/, public: false, handler: sessions },
  { pattern: /^\/api\/v1\/sessions\/([^/]+)$/, public: false, handler: session },
  { pattern: /^\/api\/v1\/sessions\/([^/]+)\/kill$/, public: false, handler: killSession, methods: ['POST'] },
  { pattern: /^\/api\/v1\/audit\/events$/, public: false, handler: auditEvents },
  { pattern: /^\/api\/v1\/audit\/export$/, public: false, handler: (ctx, req, res, p) => auditExport(ctx, identityOf(req), req, res, p), methods: ['GET'] },
  { pattern: /^\/api\/v1\/audit\/keys$/, public: false, handler: auditKeys },
  { pattern: /^\/api\/v1\/admin\/reload$/, public: false, handler: reloadConfig, methods: ['POST'] },
  { pattern: /^\/api\/v1\/reviews$/, public: false, handler: (ctx, req, res, p) => listReviews(ctx, identityOf(req), res, p) },
  { pattern: /^\/api\/v1\/reviews\/([^/]+)$/, public: false, handler: (ctx, req, res, p) => getRequest(ctx, identityOf(req), res, p) },
  { pattern: /^\/api\/v1\/reviews\/([^/]+)\/(approve|deny)$/, public: false, handler: (ctx, req, res, p) => decideReview(ctx, identityOf(req), res, p), methods: ['POST'] },
  { pattern: /^\/api\/v1\/connections\/([^/]+)\/requests$/, public: false, handler: (ctx, req, res, p) => createRequest(ctx, identityOf(req), res, p), methods: ['POST'] },
  { pattern: /^\/api\/v1\/requests\/([^/]+)$/, public: false, handler: (ctx, req, res, p) => getRequest(ctx, identityOf(req), res, p) },
  { pattern: /^\/api\/v1\/connections\/([^/]+)\/tunnel$/, public: true, handler: tunnelWithoutUpgrade },
];

const identities = new WeakMap<IncomingMessage, Identity>();

export async function handleRequest(ctx: ApiContext, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const started = performance.now();
  try {
    const url = new URL(req.url ?? '/', 'http://gateway.invalid');
    const found = routes.map((r) => ({ r, match: r.pattern.exec(url.pathname) })).find((x) => x.match);
    if (!found) throw new HoopError('HOOP_NOT_FOUND', 'no such route');
    const methods = found.r.methods ?? READ_METHODS;
    if (!methods.includes(req.method ?? '')) {
      res.setHeader('allow', methods.join(', '));
      throw new HttpError(405, 'HOOP_USAGE', `method ${req.method} not allowed`);
    }
    const body = await readBody(req); // read (and bounded) even where no route takes one
    if (!found.r.public) identities.set(req, await authenticateRequest(ctx, req));
    await found.r.handler(ctx, req, res, { url, match: found.match!, body });
  } catch (err) {
    const identity = identities.get(req);
    if (err instanceof DeniedError && identity) recordDenial(ctx, req, identity, err, 'api');
    if (!(err instanceof HoopError)) ctx.logger.error({ err: errorMessage(err) }, 'request failed');
    if (!res.headersSent) {
      sendError(res, err);
    } else res.destroy();
  } finally {
    ctx.metrics.httpRequests.inc(String(res.statusCode));
    ctx.logger.debug({ method: req.method, status: res.statusCode, ms: Math.round(performance.now() - started) }, 'http');
  }
}

/**
 * Authenticates a request (API route or tunnel upgrade). A failure is counted and recorded as
 * `auth.failed` with the reason and the source address, never the token, then rethrown.
 */
export async function authenticateRequest(ctx: ApiContext, req: IncomingMessage): Promise<Identity> {
  try {
    return await ctx.authn.authenticate(req.headers.authorization);
  } catch (err) {
    const e = err instanceof AuthError ? err : new AuthError('HOOP_AUTH_REJECTED', 'authentication failed', { cause: err });
    recordAuthFailure(ctx, requestSource(ctx, req), e, { stage: 'authenticate', path: (req.url ?? '').split('?')[0]!.slice(0, 200) });
    throw e;
  }
}

/**
 * Counts a failed authentication and records it as `auth.failed` (the reason and the source,
 * never the credential), at most AUTH_FAILURE_BURST per address and window (FailureLimiter).
 * `data` says where it failed (`stage`, and the HTTP `path` or the native listener's `via`).
 */
export function recordAuthFailure(ctx: Pick<ApiContext, 'metrics' | 'authFailures' | 'logger' | 'recorder'>, source: Source, e: AuthError, data: Record<string, unknown>): void {
  ctx.metrics.authFailures.inc(e.code);
  const address = source.address ?? null;
  const admitted = ctx.authFailures.admit(failureKey(address));
  if (admitted === null) return; // counted in metrics; recorded in the next admitted event's `suppressed`
  ctx.logger.info({ reason: e.message, address, ...data }, 'authentication failed');
  ctx.recorder.recordLater({
    type: 'auth.failed',
    actor: null,
    source,
    data: { ...data, code: e.code, reason: e.message, ...(admitted > 0 ? { suppressed: admitted } : {}) },
  });
}

/**
 * Unauthenticated callers must not be able to flood the audit log (and the write-ahead path that
 * statements wait on): per source address (an IPv6 /64 counts as one address, as one host
 * usually holds all of it), at most `burst` `auth.failed` events per window are recorded, and at
 * most `globalBurst` from all addresses together, so rotating addresses does not help either.
 * The rest are counted and reported as `suppressed` on the next recorded one. At most `maxKeys`
 * addresses are tracked; beyond that they share one window, so memory stays bounded too.
 */
export class FailureLimiter {
  private readonly windows = new Map<string, { start: number; recorded: number; suppressed: number }>();
  private globalStart = Number.NEGATIVE_INFINITY;
  private globalRecorded = 0;
  /** Suppressed failures of windows pruned before they could report them. */
  private orphaned = 0;
  private lastPrune = Number.NEGATIVE_INFINITY;

  constructor(
    private readonly burst: number,
    private readonly windowMs: number,
    private readonly globalBurst = burst * 10,
    private readonly maxKeys = 10_000,
  ) {}

  /** Addresses tracked now (bounded by maxKeys + 1). */
  get size(): number {
    return this.windows.size;
  }

  /** Whether `key` has used its burst in the current window (admit would suppress it); counts nothing. */
  full(key: string, now = Date.now()): boolean {
    const w = this.windows.get(key) ?? (this.windows.size >= this.maxKeys ? this.windows.get('*') : undefined);
    return w !== undefined && now - w.start < this.windowMs && w.recorded >= this.burst;
  }

  /** null to suppress; otherwise how many were suppressed before this one. */
  admit(key: string, now = Date.now()): number | null {
    if (now - this.globalStart >= this.windowMs) {
      this.globalStart = now;
      this.globalRecorded = 0;
    }
    let w = this.windows.get(key);
    if (!w && this.windows.size >= this.maxKeys) {
      this.prune(now);
      if (this.windows.size >= this.maxKeys) {
        key = '*'; // too many addresses at once: the rest share one window
        w = this.windows.get(key);
      }
    }
    if (!w || now - w.start >= this.windowMs) {
      w = { start: now, recorded: 0, suppressed: w?.suppressed ?? 0 };
      this.windows.set(key, w);
    }
    if (w.recorded >= this.burst || this.globalRecorded >= this.globalBurst) {
      w.suppressed += 1;
      return null;
    }
    w.recorded += 1;
    this.globalRecorded += 1;
    const suppressed = w.suppressed + this.orphaned;
    w.suppressed = 0;
    this.orphaned = 0;
    return suppressed;
  }

  /** Forgets expired windows, at most once a second (a full map must not cost a scan per request). */
  private prune(now: number): void {
    if (now - this.lastPrune < 1_000) return;
    this.lastPrune = now;
    for (const [k, w] of this.windows) {
      if (now - w.start < this.windowMs) continue;
      this.orphaned += w.suppressed;
      this.windows.delete(k);
    }
  }
}

/** The limiter's key for a peer address: IPv4 as is, IPv6 by its /64 prefix. */
export function failureKey(address: string | null): string {
  if (address === null) return 'unknown';
  const a = address.split('%')[0]!.toLowerCase();
  if (!isIPv6(a) || a.includes('.')) return a; // IPv4, or IPv4-mapped/embedded IPv6
  const halves = a.split('::');
  const left = halves[0] ? halves[0].split(':') : [];
  const right = halves.length > 1 && halves[1] ? halves[1].split(':') : [];
  const groups = halves.length > 1 ? [...left, ...Array<string>(Math.max(0, 8 - left.length - right.length)).fill('0'), ...right] : left;
  return `${groups.slice(0, 4).map((g) => parseInt(g, 16).toString(16)).join(':')}::/64`;
}

export const AUTH_FAILURE_BURST = 20;

function identityOf(req: IncomingMessage): Identity {
  const identity = identities.get(req);
  if (!identity) throw new AuthError('HOOP_NOT_LOGGED_IN', 'missing bearer token');
  return identity;
}

// ---------------------------------------------------------------------------------------------

async function healthz(ctx: ApiContext, _req: IncomingMessage, res: ServerResponse): Promise<void> {
  try {
    await withTimeout(ctx.store.head(), 2_000);
    sendJson(res, 200, { status: 'ok', store: 'ok' });
  } catch (err) {
    ctx.logger.warn({ err: errorMessage(err) }, 'health check: store unreachable');
    sendJson(res, 503, { status: 'unavailable', store: 'unreachable', error: { code: 'HOOP_STORE', message: 'the audit store is unreachable' } });
  }
}

async function metrics(ctx: ApiContext, _req: IncomingMessage, res: ServerResponse): Promise<void> {
  sendText(res, 200, 'text/plain; version=0.0.4; charset=utf-8', ctx.metricsText ? await ctx.metricsText() : ctx.metrics.render());
}

async function openapi(_ctx: ApiContext, _req: IncomingMessage, res: ServerResponse): Promise<void> {
  sendJson(res, 200, openApiDocument());
}

async function authConfig(ctx: ApiContext, _req: IncomingMessage, res: ServerResponse): Promise<void> {
  const oidc = ctx.config.identity.oidc;
  if (!oidc) return sendJson(res, 200, { oidc: null } satisfies AuthConfig);
  return sendJson(res, 200, { issuer: oidc.issuer, client_id: oidc.client_id, audience: oidc.audience, scopes: oidc.scopes } satisfies AuthConfig);
}

async function me(ctx: ApiContext, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const id = identityOf(req);
  sendJson(res, 200, {
    subject: id.subject,
    name: id.name,
    email: id.email,
    groups: id.groups,
    method: id.method,
    expires_at: id.expiresAt ? id.expiresAt.toISOString() : null,
    roles: rolesOf(id, ctx.config.roles),
  } satisfies MeInfo);
}

async function connections(ctx: ApiContext, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const id = identityOf(req);
  // The store is asked only about connections the caller may use by grant alone.
  const grants = await Promise.all(ctx.config.connections.map((c) => (mayUseByGrant(id, c) ? ctx.approvals.activeGrant(id.subject, c.name) : null)));
  const native = nativeAddressFor(ctx, req);
  const agents = await agentsOf(ctx);
  sendJson(res, 200, ctx.config.connections.map((c, i) => connectionInfo(id, c, grants[i] ?? null, native, agents)));
}

/**
 * One connection, answered only if the caller may open a session on it now (with the reason in
 * X-Hoop-Reason where `require_reason` asks for one): the check `hoop connect` makes before it
 * opens a local port. A refusal is recorded as access.denied, like the tunnel's.
 */
async function connection(ctx: ApiContext, req: IncomingMessage, res: ServerResponse, { match }: { match: RegExpExecArray }): Promise<void> {
  const id = identityOf(req);
  const { connection: c, grant } = await admitConnection(ctx.config, id, decodeURIComponentSafe(match[1]!), reasonHeader(req), (s, n) => ctx.approvals.activeGrant(s, n));
  sendJson(res, 200, connectionInfo(id, c, grant, nativeAddressFor(ctx, req), await agentsOf(ctx)));
}

/** The agents' links as this gateway sees them: this process's, or with `workers: N` every worker's. */
async function agentsOf(ctx: ApiContext): Promise<AgentStatuses | undefined> {
  return ctx.agentsNow ? ctx.agentsNow() : ctx.agents;
}

/**
 * The native listener as a client reaches it: a wildcard listen address (0.0.0.0, ::) is
 * replaced by the host the client reached the API at (its Host header), else left to the client.
 */
function nativeAddressFor(ctx: ApiContext, req: IncomingMessage): NativeListenInfo | null {
  const at = ctx.postgresListen?.() ?? null;
  if (!at) return null;
  if (at.host !== '0.0.0.0' && at.host !== '::') return at;
  const host = hostOfHeader(req.headers.host);
  return { ...at, host: host ?? at.host };
}

/** The host of a Host header (`gw.example:8443`, `[::1]:8009`), unbracketed; null when absent or odd. */
function hostOfHeader(header: string | undefined): string | null {
  if (!header) return null;
  try {
    const host = new URL(`http://${header}`).hostname;
    return host.startsWith('[') ? host.slice(1, -1) : host;
  } catch {
    return null;
  }
}

/** `grant`: the caller's grant open now on `c`, where it may use `c` by grant only. */
function connectionInfo(id: Identity, c: ConnectionConfig, grant: ApprovalRequest | null, native: NativeListenInfo | null, agents: AgentStatuses | undefined): ConnectionInfo {
  const applying = rulesFor(c.approval?.rules ?? [], id.groups).map((r) => ({ name: r.name, action: r.action }));
  const approval = { holds: applying.some((r) => r.action === 'require_approval'), rules: applying };
  return {
    name: c.name,
    type: c.type,
    database: c.upstream.database,
    access: c.access,
    allowed: mayUseConnection(id, c) || grant !== null,
    requires_approval: approval.holds,
    requires_reason: c.requireReason,
    masking: {
      enabled: c.masking !== null,
      exempt: c.masking !== null && sharesGroup(id, c.masking.exempt),
      columns: c.masking?.columns.length ?? 0,
      detectors: c.masking ? [...c.masking.detectors] : [],
    },
    approval,
    grant: { required: mayUseByGrant(id, c), request: grant?.id ?? null, active_until: grant?.expires_at ?? null, max_duration_ms: c.approval?.grantMaxMs ?? null },
    postgres_listen: c.type === 'postgres' ? native : null,
    agent: c.agent === null ? null : (agents?.status(c.agent) ?? { name: c.agent, online: false, links: 0 }),
  };
}

const SESSION_QUERY = new Set(['user', 'connection', 'since', 'until', 'id_prefix', 'limit']);

async function sessions(ctx: ApiContext, req: IncomingMessage, res: ServerResponse, { url }: { url: URL }): Promise<void> {
  const id = identityOf(req);
  const q = url.searchParams;
  for (const key of q.keys()) {
    if (!SESSION_QUERY.has(key)) throw new UsageError(`unknown query parameter ${JSON.stringify(key.slice(0, 40))}; accepted: user, connection, since, until, id_prefix, limit`);
  }
  const filter: SessionFilter = { limit: 100 };
  const user = single(q, 'user');
  if (user !== undefined && user.length > 256) throw new UsageError('user: too long');
  const connection = single(q, 'connection');
  if (connection !== undefined) {
    if (!/^[a-z0-9][a-z0-9_-]{0,62}$/.test(connection)) throw new UsageError('connection: not a connection name');
    filter.connection = connection;
  }
  Object.assign(filter, timeAndLimit(q));
  const idPrefix = single(q, 'id_prefix');
  if (idPrefix !== undefined) {
    if (!SESSION_ID_PREFIX.test(idPrefix)) throw new UsageError('id_prefix: expected the start of a session id (hex digits and dashes)');
    filter.idPrefix = idPrefix;
  }
  if (mayReadAllSessions(id, ctx.config.roles)) {
    if (user !== undefined) filter.user = user;
  } else {
    // `user` may name the caller by subject, email or API key name: that is their own list.
    if (user !== undefined && !namesIdentity(id, user)) {
      throw new DeniedError('HOOP_FORBIDDEN', 'only admins and auditors may list other users\' sessions', { stage: 'role', data: { user: user.slice(0, 256) } });
    }
    filter.subject = id.subject;
  }
  sendJson(res, 200, await ctx.store.listSessions(filter));
}

/** A session-detail page holds at most this many bytes of stored event JSON (one larger event comes alone). */
export const SESSION_PAGE_BYTES = 8 * 1024 * 1024;
const SESSION_PAGE_LIMIT = 1000;
const SESSION_PAGE_QUERY = new Set(['after', 'limit']);

/**
 * GET /api/v1/sessions/{id}[?after=<seq>&limit=<n>]: the session's summary and one page of its
 * events in seq order, at most `limit` (default and most 1000) and at most SESSION_PAGE_BYTES of
 * stored JSON, so memory stays bounded whatever the session's size; `next` is the `after` of the
 * following page, or null. Every page is recorded as `audit.read` (who, which session, which
 * events: the page's first and last seq), durably before it is sent: one event per request, as
 * for every read of the log, so paging cannot flood it more than asking for first pages could.
 */
async function session(ctx: ApiContext, req: IncomingMessage, res: ServerResponse, { match, url }: { match: RegExpExecArray; url: URL }): Promise<void> {
  const id = identityOf(req);
  const sessionId = decodeURIComponentSafe(match[1]!);
  if (!SESSION_ID.test(sessionId)) throw new UsageError('not a session id');
  const q = url.searchParams;
  for (const key of q.keys()) {
    if (!SESSION_PAGE_QUERY.has(key)) throw new UsageError(`unknown query parameter ${JSON.stringify(key.slice(0, 40))}; accepted: after, limit`);
  }
  const afterText = single(q, 'after');
  if (afterText !== undefined && !/^\d{1,15}$/.test(afterText)) throw new UsageError('after: expected the seq of an event (the `next` of the previous page)');
  const after = afterText === undefined ? undefined : Number(afterText);
  const { limit = SESSION_PAGE_LIMIT } = timeAndLimit(new URLSearchParams(q.has('limit') ? { limit: q.get('limit')! } : {}));
  // The summary alone first: the events are read only for someone who may see them.
  const found = SESSION_ID_PREFIX.test(sessionId) ? await sessionSummary(ctx.store, sessionId) : null;
  if (!found) throw new HoopError('HOOP_NOT_FOUND', `no session ${sessionId}`);
  // Someone else's session is reported as missing, so ids cannot be probed; the record says why.
  if (!mayReadSession(id, ctx.config.roles, found)) {
    throw new DeniedError('HOOP_NOT_FOUND', `no session ${sessionId}`, {
      stage: 'role', connection: found.connection || null, recorded: `session ${sessionId} is another user's`, data: { session: sessionId },
    });
  }
  const page = await ctx.store.readSessionEvents(sessionId, { afterSeq: after ?? 0, limit, maxBytes: SESSION_PAGE_BYTES });
  // Every page: which events of the session this caller received.
  await ctx.recorder.record({
    type: 'audit.read',
    actor: actorOf(id),
    source: requestSource(ctx, req),
    // Not session_id: the read is not part of the session it reads (it would show in its events).
    data: {
      path: url.pathname, session: sessionId, connection: found.connection || null, page: { after: after ?? null, limit },
      events: page.events.length, first_seq: page.events[0]?.seq ?? null, last_seq: page.events.at(-1)?.seq ?? null, next: page.next,
    },
  });
  // Operator-only event data (an upstream failure's address and account) for admins and auditors.
  sendJson(res, 200, { session: found, events: eventsFor(page.events, mayReadOperatorDetail(id, ctx.config.roles)), next: page.next });
}

export const MAX_KILL_REASON = 500;
/** How long the kill route waits for the holder to record session.end before answering 202. */
const KILL_WAIT_MS = 5_000;

/**
 * POST /api/v1/sessions/{id}/kill (admins): records session.kill, stores the request for
 * whichever replica holds the session (kills.ts), and waits a little for session.end, so the
 * answer can say "ended" (200) rather than "requested" (202). Idempotent while the session is
 * live; an unknown or ended session is 404.
 */
async function killSession(ctx: ApiContext, req: IncomingMessage, res: ServerResponse, { match, body }: { match: RegExpExecArray; body: Buffer }): Promise<void> {
  const id = identityOf(req);
  if (!isAdmin(id, ctx.config.roles)) throw new DeniedError('HOOP_FORBIDDEN', 'only admins may end sessions', { stage: 'role', data: { session: match[1]!.slice(0, 64) } });
  const sessionId = decodeURIComponentSafe(match[1]!);
  if (!FULL_SESSION_ID.test(sessionId)) throw new UsageError('not a session id: expected the whole id (hoop sessions kill resolves a short one)');
  const reason = killRequestReason(body);
  const live = await liveSession(ctx.store, sessionId);
  if (!live) throw new HoopError('HOOP_NOT_FOUND', `no live session ${sessionId}`, { hint: 'it may have ended already: hoop sessions show it' });
  let kill = (await ctx.store.killsFor([sessionId]))[0];
  if (!kill) {
    // Durable before the request can take effect: the record says who asked before the session ends.
    await ctx.recorder.record({
      type: 'session.kill',
      actor: actorOf(id),
      source: requestSource(ctx, req),
      connection: live.connection,
      session_id: sessionId,
      data: { reason, user: live.subject },
    });
    kill = await ctx.store.requestKill({ session_id: sessionId, requested_by: id.subject, reason, requested_at: new Date().toISOString() });
    ctx.logger.info({ session: sessionId, requested_by: id.subject }, 'session kill requested');
  }
  ctx.kills.endHere(kill);
  const deadline = Date.now() + KILL_WAIT_MS;
  let endedAt: string | null = null;
  for (;;) {
    endedAt = (await sessionSummary(ctx.store, sessionId))?.ended_at ?? null;
    if (endedAt || Date.now() >= deadline) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  sendJson(res, endedAt ? 200 : 202, { ...kill, ended_at: endedAt } satisfies SessionKillResult);
}

/** `{"reason": "..."}` or an empty body; control characters become spaces. */
function killRequestReason(body: Buffer): string | null {
  if (body.length === 0) return null;
  let parsed: unknown;
  try {
    parsed = JSON.parse(body.toString('utf8'));
  } catch {
    throw new UsageError('the body must be JSON: {"reason": "..."}');
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new UsageError('the body must be a JSON object: {"reason": "..."}');
  const extra = Object.keys(parsed).filter((k) => k !== 'reason');
  if (extra.length) throw new UsageError(`unknown field ${JSON.stringify(extra[0]!.slice(0, 40))}; accepted: reason`);
  const raw = (parsed as { reason?: unknown }).reason;
  if (raw === undefined || raw === null) return null;
  if (typeof raw !== 'string') throw new UsageError('reason: expected a string');
  // eslint-disable-next-line no-control-regex
  const text = raw.replace(/[\x00-\x1f\x7f]+/g, ' ').trim();
  if (text.length > MAX_KILL_REASON) throw new UsageError(`reason: at most ${MAX_KILL_REASON} characters`);
  return text === '' ? null : text;
}

/** A session's summary without reading its events (they may hold large results). */
async function sessionSummary(store: Store, sessionId: string) {
  return (await store.listSessions({ idPrefix: sessionId, limit: 2 })).find((s) => s.id === sessionId) ?? null;
}

async function liveSession(store: Store, sessionId: string) {
  const s = await sessionSummary(store, sessionId);
  return s && s.ended_at === null ? s : null;
}

const AUDIT_EVENTS_QUERY = new Set(['type', 'since', 'until', 'limit', 'before']);
/** An audit events page holds at most this many bytes of stored event JSON, payloads included (one larger event comes alone). */
export const AUDIT_EVENTS_PAGE_BYTES = SESSION_PAGE_BYTES;

/**
 * Audit events by type and time, newest first (`hoop audit events`): auditors and admins only.
 * A page holds at most `limit` events and AUDIT_EVENTS_PAGE_BYTES of their stored JSON, so no
 * listing loads more than that whatever the events hold; when more events match, the
 * `X-Hoop-Next-Before` header gives the `before` (a seq) of the next page. Every page is itself
 * recorded (`audit.read`: who, which filter, which page, how many events) and durable before the
 * events are sent.
 */
async function auditEvents(ctx: ApiContext, req: IncomingMessage, res: ServerResponse, { url }: { url: URL }): Promise<void> {
  const id = identityOf(req);
  const q = url.searchParams;
  for (const key of q.keys()) {
    if (!AUDIT_EVENTS_QUERY.has(key)) throw new UsageError(`unknown query parameter ${JSON.stringify(key.slice(0, 40))}; accepted: type, since, until, limit, before`);
  }
  const beforeText = single(q, 'before');
  if (beforeText !== undefined && (!/^\d{1,15}$/.test(beforeText) || Number(beforeText) < 1)) {
    throw new UsageError('before: expected the seq of an event (the X-Hoop-Next-Before of the previous page)');
  }
  const filter: EventFilter = { limit: 100, newestFirst: true };
  const type = single(q, 'type');
  if (type !== undefined) {
    const types = type.split(',').map((t) => t.trim()).filter((t) => t !== '');
    const bad = types.find((t) => t.length > 64 || !EVENT_TYPE_PATTERN.test(t));
    if (types.length === 0 || types.length > 50 || bad !== undefined) {
      throw new UsageError(`type: expected event types separated by commas, such as access.denied,auth.failed or auth.*${bad !== undefined ? ` (not a type: ${JSON.stringify(bad.slice(0, 40))})` : ''}`);
    }
    filter.types = types;
  }
  Object.assign(filter, timeAndLimit(q));
  if (beforeText !== undefined) filter.beforeSeq = Number(beforeText);
  const asked = { types: filter.types ?? null, since: filter.since ?? null, until: filter.until ?? null, limit: filter.limit };
  if (!mayReadAuditLog(id, ctx.config.roles)) {
    throw new DeniedError('HOOP_FORBIDDEN', 'only admins and auditors may read the audit log', { stage: 'role', data: { filter: asked } });
  }
  const page = await ctx.store.readEventPage({ ...filter, limit: filter.limit ?? 100, maxBytes: AUDIT_EVENTS_PAGE_BYTES, payload: true });
  const events: AuditEvent[] = page.events;
  await ctx.recorder.record({
    type: 'audit.read',
    actor: actorOf(id),
    source: requestSource(ctx, req),
    data: { path: url.pathname, filter: asked, page: { before: filter.beforeSeq ?? null }, events: events.length, next: page.next },
  });
  sendJson(res, 200, eventsFor(events, mayReadOperatorDetail(id, ctx.config.roles)), page.next === null ? {} : { 'x-hoop-next-before': String(page.next) });
}

/**
 * The audit signing keys with their first and last use (`AuditKey`): for any signed-in identity,
 * since the keys are public and an examiner handed a bundle needs the ids to trust. Not recorded:
 * it reads no event, only which keys signed checkpoints and when.
 */
async function auditKeys(ctx: ApiContext, _req: IncomingMessage, res: ServerResponse, { url }: { url: URL }): Promise<void> {
  if ([...url.searchParams.keys()].length > 0) throw new UsageError('this route takes no query parameters');
  sendJson(res, 200, (await ctx.auditKeys.list()) satisfies AuditKey[]);
}

/**
 * POST /api/v1/admin/reload (admins): reads the config file again and applies it to new sessions
 * and statements (reload.ts). A file with problems changes nothing: 422 with every problem.
 */
async function reloadConfig(ctx: ApiContext, req: IncomingMessage, res: ServerResponse, { body }: { body: Buffer }): Promise<void> {
  const id = identityOf(req);
  if (!isAdmin(id, ctx.config.roles)) throw new DeniedError('HOOP_FORBIDDEN', 'only admins may reload the gateway config', { stage: 'role' });
  const text = body.toString('utf8').trim();
  if (text !== '' && text !== '{}') throw new UsageError('this route takes no body (or {})');
  const outcome = await ctx.reloader.reload('api', id);
  if (!outcome.ok) {
    const n = outcome.problems.length;
    return sendJson(res, 422, {
      error: {
        code: 'HOOP_CONFIG_INVALID',
        message: `the config has ${n} problem${n === 1 ? '' : 's'}; the running config is kept`,
        hint: 'fix the file and reload again; hoop gateway --config FILE --check validates it',
        problems: outcome.problems,
      },
    });
  }
  sendJson(res, 200, { reloaded: true, sha256: outcome.sha256, changes: outcome.changes, needs_restart: outcome.changes.needs_restart } satisfies ReloadResult);
}

async function tunnelWithoutUpgrade(): Promise<void> {
  throw new HttpError(426, 'HOOP_USAGE', 'this endpoint is a WebSocket tunnel; use hoop connect');
}

// ---------------------------------------------------------------------------------------------

export function single(q: URLSearchParams, key: string): string | undefined {
  const all = q.getAll(key);
  if (all.length > 1) throw new UsageError(`${key}: given more than once`);
  return all[0];
}

/** `since`, `until` (RFC 3339) and `limit` (1-1000), as the listing routes take them; only those given. */
function timeAndLimit(q: URLSearchParams): { since?: string; until?: string; limit?: number } {
  const out: { since?: string; until?: string; limit?: number } = {};
  const since = single(q, 'since');
  if (since !== undefined) out.since = timestamp('since', since);
  const until = single(q, 'until');
  if (until !== undefined) out.until = timestamp('until', until);
  const limit = single(q, 'limit');
  if (limit !== undefined) {
    if (!/^\d{1,4}$/.test(limit) || Number(limit) < 1 || Number(limit) > 1000) throw new UsageError('limit: expected a number from 1 to 1000');
    out.limit = Number(limit);
  }
  return out;
}

/** RFC 3339 (date-time, with offset or Z), normalised to UTC. */
export function timestamp(key: string, v: string): string {
  if (!/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:\d{2})$/i.test(v) || Number.isNaN(Date.parse(v))) {
    throw new UsageError(`${key}: expected an RFC 3339 time such as 2026-01-31T09:00:00Z`);
  }
  return new Date(v).toISOString();
}

function decodeURIComponentSafe(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    throw new UsageError('malformed percent-encoding in the path');
  }
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms`)), ms);
    p.then((v) => { clearTimeout(timer); resolve(v); }, (e: unknown) => { clearTimeout(timer); reject(e); });
  });
}
