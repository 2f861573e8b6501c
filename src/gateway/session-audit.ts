/**
 * The audit side of one tunnel session: the engine's SessionHooks, mapped to audit events
 * through the AuditRecorder.
 *
 *   sessionStart -> session.start  (awaited: a session that cannot be recorded is refused)
 *   queryStart   -> query.start    (awaited: WRITE-AHEAD, the statement waits for durability)
 *   queryEnd     -> query.end      (recordLater)
 *   sessionEnd   -> session.end    (recordLater): `error` is what the client was told, `detail` the
 *                   operator's account (upstream address, account, the server's words); the API
 *                   shows `detail` to admins and auditors only (event-view.ts)
 *   protocolError-> protocol.error (recordLater)
 *
 * Every event carries the session's actor, source, connection and session id.
 */
import { auditConstant } from '../audit/chain.js';
import { QUERY_END_PAYLOAD_PATHS, splitPayload } from '../audit/payload.js';
import type { AuditEventDraft, AuditEventType, QueryEndData, QueryStartData, Source } from '../audit/event.js';
import type { AuditRecorder } from '../audit/recorder.js';
import { actorOf, type Identity } from '../identity/identity.js';
export type { SessionEndInfo } from '../protocols/engine.js';
import { RUN, type FinalPlan, type SessionEndInfo, type SessionHooks, type StartupInfo, type StatementEnd, type StatementPlan, type StatementStart } from '../protocols/engine.js';
import { redactSecret } from '../store/redact.js';
import type { StatementExtras } from '../protocols/postgres/results.js';
import type { GatewayMetrics } from './metrics.js';

export interface SessionAuditOptions {
  recorder: AuditRecorder;
  metrics: GatewayMetrics;
  identity: Identity;
  connection: string;
  sessionId: string;
  /** How the session reached the gateway: a `hoop connect` tunnel, or the native PostgreSQL listener. */
  path: 'tunnel' | 'native';
  /** The native listener's sessions: the TLS version the client connected with, or null (loopback, plaintext). */
  tls?: string | null;
  /** The client's address: the tunnel's peer, or behind a trusted proxy the one it forwarded for. */
  address: string | null;
  /** The trusted proxy the tunnel came through (trusted_proxies), if any. */
  proxy?: string;
  /** From the X-Hoop-Reason header. */
  reason: string | null;
  /** The database the connection is configured for (what the session really reaches). */
  database: string;
  maxSessionMs: number | null;
  /** The access grant the session was admitted under (`access_by_grant`): its id and end, in session.start. */
  grant?: { request: string; until: string } | null;
  /** Called once session.start is durable (e.g. to start the session-limit timer). */
  onStarted?: () => void;
  /** Replaces the engine's end reason when the gateway ended the session (e.g. max_session). */
  endReason?: () => string | null;
  /** Called as the session ends, with the engine's reason, error and detail (e.g. to log an upstream failure). */
  onEnded?: (info: SessionEndInfo) => void;
  /** Never written into an event or passed to onEnded (the upstream password), should a message echo one. */
  secrets?: readonly (string | undefined)[];
}


export function sessionAuditHooks(o: SessionAuditOptions): SessionHooks {
  // Every event of the session carries these: encoded once (auditConstant: frozen snapshots
  // whose canonical JSON each event reuses) rather than walked and parsed again per statement.
  const actor = auditConstant(actorOf(o.identity));
  const via = o.proxy !== undefined ? { proxy: o.proxy } : {};
  let source: Source = auditConstant({ address: o.address, application: null, ...via });
  const draft = (type: AuditEventType, data: Record<string, unknown>): AuditEventDraft => ({
    type,
    actor,
    source,
    connection: o.connection,
    session_id: o.sessionId,
    data,
  });

  const scrub = (message: string): string => (o.secrets ?? []).reduce<string>((m, secret) => redactSecret(m, secret), message);

  return {
    async sessionStart(info: StartupInfo): Promise<void> {
      source = auditConstant({ address: o.address, application: info.application, ...via });
      await o.recorder.record(draft('session.start', {
        path: o.path,
        ...(o.tls !== undefined ? { tls: o.tls } : {}),
        database: o.database,
        user: info.user,
        requested_database: info.database,
        parameters: info.parameters,
        reason: o.reason,
        max_session_ms: o.maxSessionMs,
        ...(o.grant ? { grant: o.grant } : {}),
      }));
      o.onStarted?.();
    },

    // Masking and approvals fill this in; today every statement runs as sent.
    plan: (): StatementPlan => RUN,

    async queryStart(s: StatementStart, decision: FinalPlan): Promise<void> {
      await o.recorder.record(draft('query.start', queryStartData(s, decision) as unknown as Record<string, unknown>));
    },

    queryEnd(e: StatementEnd): void {
      o.metrics.statements.inc(e.outcome);
      // The returned rows go to the payload: hashed apart, so retention can drop them (src/audit/payload.ts).
      const { data, payload } = splitPayload(queryEndData(e) as unknown as Record<string, unknown>, QUERY_END_PAYLOAD_PATHS);
      o.recorder.recordLater({ ...draft('query.end', data), ...(payload ? { payload } : {}) });
    },

    sessionEnd(raw: SessionEndInfo): void {
      const info: SessionEndInfo = {
        reason: raw.reason,
        error: raw.error === null ? null : scrub(raw.error),
        ...(raw.detail !== undefined && raw.detail !== null ? { detail: scrub(raw.detail) } : {}),
      };
      o.onEnded?.(info);
      const override = o.endReason?.() ?? null;
      o.recorder.recordLater(draft('session.end', {
        reason: override ?? info.reason,
        error: info.error,
        ...(info.detail !== undefined ? { detail: info.detail } : {}),
        ...(override ? { engine_reason: info.reason } : {}),
      }));
    },

    unattributed(message: Record<string, unknown>): void {
      o.recorder.recordLater(draft('session.message', message));
    },

    protocolError(info: { message: string }): void {
      o.metrics.protocolErrors.inc();
      o.recorder.recordLater(draft('protocol.error', { message: info.message }));
    },
  };
}

export function queryStartData(s: StatementStart, decision?: FinalPlan): QueryStartData {
  return {
    query_id: s.queryId,
    protocol: s.protocol,
    statement: s.statement,
    ...(s.statementBytes !== undefined ? { statement_bytes: s.statementBytes } : {}),
    ...(s.statementSha256 !== undefined ? { statement_sha256: s.statementSha256 } : {}),
    ...(s.statementTruncated ? { statement_truncated: true } : {}),
    ...(s.phase ? { phase: s.phase } : {}),
    ...(s.unknown ? { unknown: true } : {}),
    statement_name: s.statementName,
    portal: s.portal,
    parameters: s.parameters,
    ...(s.statements ? { statements: s.statements } : {}),
    ...(decision && (decision.action !== 'run' || decision.summary) ? { decision: decisionData(decision) } : {}),
  };
}

/** What query.start keeps of a decision: the action, the refusal's words, the plan's own summary. */
function decisionData(d: FinalPlan): Record<string, unknown> {
  if (d.action === 'refuse') return { action: 'refuse', code: d.code, message: d.message, ...(d.summary ?? {}) };
  return { action: 'run', ...(d.rowCap !== undefined ? { row_cap: d.rowCap } : {}), ...(d.summary ?? {}) };
}

/** `messages` and `upload` (results.ts) ride along on the engine's StatementEnd when present;
 *  `masked` (values the plan's transforms and the scrubber changed, by label) only when there were any. */
export function queryEndData(e: StatementEnd & StatementExtras): QueryEndData {
  return {
    query_id: e.queryId,
    outcome: e.outcome,
    error: e.error,
    command_tags: e.commandTags,
    rows: e.rows,
    bytes: e.bytes,
    duration_ms: e.durationMs,
    result: { sets: e.result.sets, truncated: e.result.truncated, sha256: e.result.sha256 },
    ...(e.messages ? { messages: e.messages } : {}),
    ...(e.upload ? { upload: e.upload } : {}),
    ...(e.masked ? { masked: e.masked } : {}),
  };
}
