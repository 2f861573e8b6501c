/**
 * Every client session the gateway serves, whichever way it arrived: through a `hoop connect`
 * tunnel (tunnel.ts, a WebSocket) or straight to the gateway's own PostgreSQL listener
 * (native-listener.ts). Each path authenticates and admits its caller its own way (a Bearer
 * header; a password that is a token), then hands the byte stream here, so that both paths get
 * exactly the same session: `max_sessions_per_user` counted across both, the session limit
 * (`max_session`), an admin's kill, the end of an access grant, the statement policy (guard,
 * masking, access rules, approvals), the write-ahead audit hooks, and one shutdown.
 *
 *   tunnel.ts ─┐  (identity, connection, grant, source, reason, path)
 *              ├─▶ SessionHost.serve(stream, request) ─▶ engine.serve(stream, ctx)
 *   native  ───┘
 */
import type { Duplex } from 'node:stream';
import { errorMessage } from '../errors.js';
import type { Identity } from '../identity/identity.js';
import type { ApprovalRequest } from '../api/types.js';
import { SYSTEM_ACTOR, type Source } from '../audit/event.js';
import type { Engine, StartupInfo, StatementEnd, StatementPlan, StatementStart, UpstreamConfig } from '../protocols/engine.js';
import { killMessage, killReason } from './kills.js';
import { DeniedError, grantCommand, recordRefusal } from './access.js';
import { endWithGrant } from './grant-end.js';
import { upstreamConfigOf, type ConnectionConfig } from './config.js';
import { sessionRoleOf } from './db-roles.js';
import { SessionPolicy, type HoldEvent, type PolicyDeps } from './statement-policy.js';
import type { ApiContext } from './routes.js';
import { sessionAuditHooks } from './session-audit.js';
import { formatDuration } from '../units.js';
import type { ClusterWorker } from './cluster-worker.js';

/** Longest a session under an ended grant waits for grant.ended to be durable before it is ended. */
const GRANT_END_RECORD_WAIT_MS = 1_000;

/** What serves sessions: the API's shared parts, the engines, the statement policy. */
export interface SessionHostContext extends ApiContext {
  /** The engine for a connection type. */
  engines(type: string): Engine;
  /** What decides every session's statements: guard, masking, access rules (statement-policy.ts). */
  policy: PolicyDeps;
  /** Replaces the policy as the statement decision (tests). */
  planner?: Planner;
  /** Opens a connection's upstream byte stream: TCP, or through its agent (agents.ts). */
  dialUpstream: UpstreamDial;
  /** This process's place among `workers: N` (cluster-worker.ts), or absent: the only one. */
  cluster?: ClusterWorker;
}

/**
 * The upstream dial of a connection. `session`: the session it is for; `onLost` is told when the
 * stream's agent link drops, before the stream ends (so the client hears why).
 */
export type UpstreamDial = (connection: ConnectionConfig, upstream: UpstreamConfig, session?: { id: string; onLost?: (message: string) => void }) => Promise<Duplex>;

/** The decision for one statement of a session (the engine's plan hook, with who and where). */
export type Planner = (statement: StatementStart, session: { identity: Identity; connection: ConnectionConfig }) => Promise<StatementPlan>;

/** How a session reached the gateway; `session.start` records it as `path`. */
export type SessionPath = 'tunnel' | 'native';

/** One admitted caller's session, as its path hands it over. */
export interface SessionRequest {
  identity: Identity;
  connection: ConnectionConfig;
  /** The access grant it was admitted under (`access_by_grant`), or null. */
  grant: ApprovalRequest | null;
  sessionId: string;
  path: SessionPath;
  /** Where the client is (address, the trusted proxy it came through). */
  source: Source;
  /** What the access.denied record of a refusal at the session limit names as its `path`. */
  requestPath: string;
  /** Why the caller connects (X-Hoop-Reason, or `-c hoop.reason=` on the native listener). */
  reason: string | null;
  /** Out-of-band word of a held statement, for a path that has a channel for it. */
  onHold?: (hold: HoldEvent) => void;
  /** The client's TLS version on the native listener (null: plaintext, loopback); the tunnel's TLS is the HTTP server's. */
  tls?: string | null;
  /** Bytes the path already read from the client: the engine reads them first. */
  preread?: Buffer;
  /** A CancelRequest reaches this session by its key alone (engine.ts `keyCancel`). */
  keyCancel?: boolean;
  /** Tears the transport down (after a shutdown that did not end the session in time). */
  terminate(): void;
}

interface LiveSession {
  done: Promise<void>;
  /** Ends the session with a FATAL saying the gateway is stopping. */
  shutdown(): void;
  terminate(): void;
}

export class SessionHost {
  private readonly live = new Set<LiveSession>();
  private closing = false;
  /** Sessions open or being opened, per connection and identity (for max_sessions_per_user). */
  private readonly openPerUser = new Map<string, number>();

  constructor(private readonly ctx: SessionHostContext) {}

  get size(): number {
    return this.live.size;
  }

  get isClosing(): boolean {
    return this.closing;
  }

  /** Stops serving and ends the live sessions (they end and are recorded); then tears down what is left. */
  async close(timeoutMs = 5_000): Promise<void> {
    this.closing = true;
    const all = [...this.live];
    for (const s of all) s.shutdown();
    const timer = new Promise<void>((r) => setTimeout(r, timeoutMs).unref());
    await Promise.race([Promise.all(all.map((s) => s.done)), timer]);
    for (const s of this.live) s.terminate();
    await Promise.race([Promise.all([...this.live].map((s) => s.done)), new Promise<void>((r) => setTimeout(r, 1_000).unref())]);
  }

  /**
   * Counts a session against the connection's max_sessions_per_user (one person or job cannot
   * take all of the database's connections) when it starts — a stream that only carries a
   * CancelRequest is not a session and is never refused; the returned function gives it back.
   * With `workers: N` the primary counts for all workers (cluster.ts).
   */
  private async reserveSession(r: SessionRequest): Promise<() => void> {
    const { identity, connection } = r;
    const key = `${connection.name}\u0000${identity.subject}`;
    const max = connection.maxSessionsPerUser;
    const { cluster } = this.ctx;
    const open = cluster ? await cluster.takeSlot(key, max) : this.takeLocalSlot(key, max);
    if (open !== null) {
      const reason = `${identity.subject} already has ${open} open session${open === 1 ? '' : 's'} on connection ${connection.name}, the limit (max_sessions_per_user ${max}); close one to open another`;
      const err = new DeniedError('HOOP_POLICY_DENIED', reason, { stage: 'limit', connection: connection.name });
      recordRefusal(this.ctx, { source: r.source, path: r.requestPath }, identity, err, r.path);
      throw err;
    }
    let released = false;
    return () => {
      if (released) return;
      released = true;
      if (cluster) return cluster.releaseSlot(key);
      const left = (this.openPerUser.get(key) ?? 1) - 1;
      if (left > 0) this.openPerUser.set(key, left);
      else this.openPerUser.delete(key);
    };
  }

  /** null: counted; else how many are open, which refuses it. */
  private takeLocalSlot(key: string, max: number | null): number | null {
    const open = this.openPerUser.get(key) ?? 0;
    if (max !== null && open >= max) return open;
    this.openPerUser.set(key, open + 1);
    return null;
  }

  /**
   * Serves one admitted session on `stream` until it ends; resolves with what ended it when the
   * gateway did (limit, kill, grant, shutdown), else null. Never rejects.
   */
  serve(stream: Duplex, r: SessionRequest): Promise<string | null> {
    const { ctx } = this;
    const { identity, connection, sessionId, grant } = r;
    let release = () => {};
    const log = ctx.logger.child({ session: sessionId, connection: connection.name, subject: identity.subject, path: r.path });
    ctx.metrics.sessions.inc();

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
        void Promise.race([recorded, new Promise((res) => setTimeout(res, GRANT_END_RECORD_WAIT_MS).unref())]).then(() => ending.abort(message));
      },
    }) : null;

    const audit = sessionAuditHooks({
      recorder: ctx.recorder,
      metrics: ctx.metrics,
      identity,
      connection: connection.name,
      sessionId,
      path: r.path,
      ...(r.tls !== undefined ? { tls: r.tls } : {}),
      address: r.source.address ?? null,
      ...(r.source.proxy ? { proxy: r.source.proxy } : {}),
      reason: r.reason,
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
    // The statement decisions: a planner given to the gateway (tests), else the policy.
    const planner = ctx.planner;
    const policy = planner ? null : new SessionPolicy(ctx.policy, {
      identity, connection: connection.name, sessionId, reason: r.reason,
      ...(r.onHold ? { onHold: r.onHold } : {}),
    });
    const hooks = {
      ...audit,
      // Over the limit, the session is refused before session.start: a FATAL that says why.
      sessionStart: async (info: StartupInfo) => {
        release = await this.reserveSession(r);
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
    let entry: LiveSession | null = null;
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
        ...(r.keyCancel ? { keyCancel: true } : {}),
        ...(r.preread ? { preread: r.preread } : {}),
        ...(policy ? { scrubText: policy.scrubText } : {}),
      })
      .catch((err: unknown) => log.error({ err: errorMessage(err) }, 'engine failed'))
      .finally(() => {
        if (limitTimer) clearTimeout(limitTimer);
        grantEnd?.stop();
        if (entry) this.live.delete(entry);
        unhold();
        release();
      });
    entry = {
      done,
      shutdown: () => {
        endedBy ??= 'gateway shutting down';
        ending.abort('hoop: the gateway is shutting down; reconnect in a moment');
      },
      terminate: r.terminate,
    };
    this.live.add(entry);
    return done.then(() => endedBy);
  }
}
