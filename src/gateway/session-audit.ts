/**
 * The audit side of one tunnel session: the engine's SessionHooks, mapped to audit events
 * through the AuditRecorder.
 *
 *   sessionStart -> session.start  (awaited: a session that cannot be recorded is refused)
 *   queryStart   -> query.start    (awaited: WRITE-AHEAD, the statement waits for durability)
 *   queryEnd     -> query.end      (recordLater)
 *   sessionEnd   -> session.end    (recordLater)
 *   protocolError-> protocol.error (recordLater)
 *
 * Every event carries the session's actor, source, connection and session id.
 */
import type { AuditEventDraft, AuditEventType, QueryEndData, QueryStartData, Source } from '../audit/event.js';
import type { AuditRecorder } from '../audit/recorder.js';
import { actorOf, type Identity } from '../identity/identity.js';
import type { SessionHooks, StartupInfo, StatementEnd, StatementStart } from '../protocols/postgres/engine.js';
import type { StatementExtras } from '../protocols/postgres/results.js';
import type { GatewayMetrics } from './metrics.js';

export interface SessionAuditOptions {
  recorder: AuditRecorder;
  metrics: GatewayMetrics;
  identity: Identity;
  connection: string;
  sessionId: string;
  /** The tunnel's peer address. */
  address: string | null;
  /** From the X-Hoop-Reason header. */
  reason: string | null;
  /** The database the connection is configured for (what the session really reaches). */
  database: string;
  maxSessionMs: number | null;
  /** Called once session.start is durable (e.g. to start the session-limit timer). */
  onStarted?: () => void;
  /** Replaces the engine's end reason when the gateway ended the session (e.g. max_session). */
  endReason?: () => string | null;
  /** Called as the session ends, with the engine's reason and error (e.g. to log an upstream failure). */
  onEnded?: (info: { reason: string; error: string | null }) => void;
}

export function sessionAuditHooks(o: SessionAuditOptions): SessionHooks {
  const actor = actorOf(o.identity);
  let source: Source = { address: o.address, application: null };
  const draft = (type: AuditEventType, data: Record<string, unknown>): AuditEventDraft => ({
    type,
    actor,
    source,
    connection: o.connection,
    session_id: o.sessionId,
    data,
  });

  return {
    async sessionStart(info: StartupInfo): Promise<void> {
      source = { address: o.address, application: info.application };
      await o.recorder.record(draft('session.start', {
        database: o.database,
        user: info.user,
        requested_database: info.database,
        parameters: info.parameters,
        reason: o.reason,
        max_session_ms: o.maxSessionMs,
      }));
      o.onStarted?.();
    },

    async queryStart(s: StatementStart): Promise<void> {
      await o.recorder.record(draft('query.start', queryStartData(s) as unknown as Record<string, unknown>));
    },

    queryEnd(e: StatementEnd): void {
      o.metrics.statements.inc(e.outcome);
      o.recorder.recordLater(draft('query.end', queryEndData(e) as unknown as Record<string, unknown>));
    },

    sessionEnd(info: { reason: string; error: string | null }): void {
      o.onEnded?.(info);
      const override = o.endReason?.() ?? null;
      o.recorder.recordLater(draft('session.end', {
        reason: override ?? info.reason,
        error: info.error,
        ...(override ? { engine_reason: info.reason } : {}),
      }));
    },

    protocolError(info: { message: string }): void {
      o.metrics.protocolErrors.inc();
      o.recorder.recordLater(draft('protocol.error', { message: info.message }));
    },
  };
}

export function queryStartData(s: StatementStart): QueryStartData {
  return {
    query_id: s.queryId,
    protocol: s.protocol,
    statement: s.statement,
    statement_name: s.statementName,
    portal: s.portal,
    parameters: s.parameters,
    ...(s.statements ? { statements: s.statements } : {}),
  };
}

/** `messages` and `upload` (results.ts) ride along on the engine's StatementEnd when present. */
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
  };
}
