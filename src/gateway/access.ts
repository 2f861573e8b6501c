/**
 * Refusals of an authenticated identity, and the one record each leaves: `access.denied`.
 *
 * Whatever path a refused attempt takes — the CLI's pre-check (`GET /api/v1/connections/{name}`),
 * the tunnel upgrade, another user's sessions, the audit log without a role — the code that
 * refuses throws a DeniedError, and the entry point (routes.ts `handleRequest`, tunnel.ts
 * `handleUpgrade`) records it in one place, so no refusal path can forget to. A failed
 * authentication (no identity yet) is `auth.failed` instead (routes.ts `authenticateRequest`).
 *
 * `admitConnection` is the one decision of whether an identity may open a session on a
 * connection, shared by the pre-check and the tunnel so the two can never disagree.
 */
import type { IncomingMessage } from 'node:http';
import type { Source } from '../audit/event.js';
import { AuthError, type HoopErrorCode } from '../errors.js';
import { actorOf, type Identity } from '../identity/identity.js';
import { mayUseConnection } from './authz.js';
import type { ConnectionConfig, GatewayConfig } from './config.js';
import { noRoleReason, sessionRoleOf } from './db-roles.js';
import { headerText } from './http.js';
import type { ApiContext } from './routes.js';

/** Which check refused: access groups, a missing reason, a session limit, an unknown connection,
 *  a gateway role (admin, auditor), no database role mapped for the caller (`upstream.roles`). */
export type DenialStage = 'authorize' | 'reason' | 'limit' | 'connection' | 'role' | 'database_role';

export interface Denial {
  stage: DenialStage;
  /** The connection the attempt was for, when it names a configured one. */
  connection?: string | null;
  /** What is recorded as `reason` when the client is told less (a session id probe sees 404). */
  recorded?: string;
  /** More `data` for the record (the filter asked for, the name of an unknown connection). */
  data?: Record<string, unknown>;
}

/** A refusal that is recorded as `access.denied` where it is caught. The message is what the client is told. */
export class DeniedError extends AuthError {
  constructor(code: HoopErrorCode, message: string, readonly denial: Denial, options?: { hint?: string }) {
    super(code, message, options);
  }
}

/** Records one refusal: who, from where, which connection, which check and why (never a token). */
export function recordDenial(ctx: ApiContext, req: IncomingMessage, identity: Identity, err: DeniedError, via: 'api' | 'tunnel'): void {
  const { denial } = err;
  const admitted = ctx.denials.admit(identity.subject);
  if (admitted === null) return; // past the burst: the next admitted event says how many were not recorded
  ctx.logger.info({ subject: identity.subject, connection: denial.connection ?? null, stage: denial.stage, via }, 'access denied');
  ctx.recorder.recordLater({
    type: 'access.denied',
    actor: actorOf(identity),
    source: requestSource(ctx, req),
    connection: denial.connection ?? null,
    data: {
      via,
      stage: denial.stage,
      code: err.code,
      reason: denial.recorded ?? err.message,
      path: (req.url ?? '').split('?')[0]!.slice(0, 200),
      ...denial.data,
      ...(admitted > 0 ? { suppressed: admitted } : {}),
    },
  });
}

/** Where a request came from, for the record: the client (behind trusted proxies, the forwarded one), its proxy, its User-Agent. */
export function requestSource(ctx: Pick<ApiContext, 'proxies'>, req: IncomingMessage): Source {
  const { address, proxy } = ctx.proxies.clientOf(req.socket.remoteAddress ?? null, req.headersDistinct['x-forwarded-for'] ?? []);
  return { address, application: headerText(req, 'user-agent', 200), ...(proxy !== undefined ? { proxy } : {}) };
}

/**
 * The connection `name` if `identity` may open a session on it now, else a DeniedError: unknown
 * connection (404), not in its access groups (403), no reason where `require_reason` asks for one,
 * or no database role mapped for its groups where `upstream.roles` is set (403).
 */
export function admitConnection(config: GatewayConfig, identity: Identity, name: string, reason: string | null): ConnectionConfig {
  const connection = config.connections.find((c) => c.name === name);
  const shown = JSON.stringify(name.slice(0, 64));
  if (!connection) {
    throw new DeniedError('HOOP_NOT_FOUND', `no connection named ${shown}`, { stage: 'connection', data: { requested: name.slice(0, 64) } }, { hint: 'hoop connections lists the ones you may use' });
  }
  if (!mayUseConnection(identity, connection)) {
    const why = `${identity.subject} may not use connection ${connection.name} (it requires one of the groups: ${connection.access.join(', ') || 'none'})`;
    throw new DeniedError('HOOP_FORBIDDEN', why, { stage: 'authorize', connection: connection.name }, { hint: 'ask an administrator to add you to one of those groups' });
  }
  if (connection.requireReason && (reason === null || reason.trim() === '')) {
    const why = `connection ${connection.name} requires a reason for every session; give one with: hoop connect ${connection.name} --reason "…"`;
    throw new DeniedError('HOOP_POLICY_DENIED', why, { stage: 'reason', connection: connection.name });
  }
  // With upstream.roles, a session runs only as a role mapped from the caller's groups, never as the service role.
  if (connection.roles && sessionRoleOf(connection, identity) === null) {
    throw new DeniedError('HOOP_FORBIDDEN', noRoleReason(connection), { stage: 'database_role', connection: connection.name }, { hint: 'ask an administrator to map one of your groups in upstream.roles' });
  }
  return connection;
}

/** X-Hoop-Reason: UTF-8 sent raw arrives as latin1 in Node's header strings; undo that when valid. */
export function reasonHeader(req: IncomingMessage): string | null {
  const raw = headerText(req, 'x-hoop-reason', 4000);
  if (raw === null) return null;
  const utf8 = Buffer.from(raw, 'latin1').toString('utf8');
  const text = utf8.includes('\uFFFD') ? raw : utf8;
  return text.slice(0, 1000);
}
