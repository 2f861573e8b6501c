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
 * connection, shared by the pre-check and the tunnel so the two can never disagree; for a member
 * of `access_by_grant` only, that includes an approved grant open now (the store is asked).
 */
import type { IncomingMessage } from 'node:http';
import type { Source } from '../audit/event.js';
import type { ApprovalRequest } from '../api/types.js';
import { AuthError, UsageError, type HoopErrorCode } from '../errors.js';
import { actorOf, type Identity } from '../identity/identity.js';
import { mayUseByGrant, mayUseConnection } from './authz.js';
import type { ConnectionConfig, GatewayConfig } from './config.js';
import { noRoleReason, sessionRoleOf } from './db-roles.js';
import { headerText } from './http.js';
import { suggestedDuration } from '../units.js';
import type { ApiContext } from './routes.js';

/** Which check refused: access groups, a missing reason, a session limit, an unknown connection,
 *  a gateway role (admin, auditor), no database role mapped for the caller (`upstream.roles`),
 *  no approved access grant open now for a member of `access_by_grant` only, a native-listener
 *  login whose user name does not name the identity its password (token) proves. */
export type DenialStage = 'authorize' | 'reason' | 'limit' | 'connection' | 'role' | 'database_role' | 'grant' | 'user';

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

/** Which path a refused attempt took: the HTTP API, a tunnel, the native PostgreSQL listener. */
export type DenialVia = 'api' | 'tunnel' | 'native';

/** Records one refusal: who, from where, which connection, which check and why (never a token). */
export function recordDenial(ctx: ApiContext, req: IncomingMessage, identity: Identity, err: DeniedError, via: DenialVia): void {
  recordRefusal(ctx, { source: requestSource(ctx, req), path: (req.url ?? '').split('?')[0]!.slice(0, 200) }, identity, err, via);
}

/** The same for a refusal that came by no HTTP request (the native listener): where from is given. */
export function recordRefusal(ctx: Pick<ApiContext, 'denials' | 'logger' | 'recorder'>, at: { source: Source; path: string }, identity: Identity, err: DeniedError, via: DenialVia): void {
  const { denial } = err;
  const admitted = ctx.denials.admit(identity.subject);
  if (admitted === null) return; // past the burst: the next admitted event says how many were not recorded
  ctx.logger.info({ subject: identity.subject, connection: denial.connection ?? null, stage: denial.stage, via }, 'access denied');
  ctx.recorder.recordLater({
    type: 'access.denied',
    actor: actorOf(identity),
    source: at.source,
    connection: denial.connection ?? null,
    data: {
      via,
      stage: denial.stage,
      code: err.code,
      reason: denial.recorded ?? err.message,
      path: at.path,
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

/** The approved grant of `subject` on `connection` open now, or null (ApprovalService.activeGrant). */
export type GrantLookup = (subject: string, connection: string) => Promise<ApprovalRequest | null>;

/** Who may open a session: the connection, and the grant the session runs under (null: the caller is in `access`). */
export interface Admission {
  connection: ConnectionConfig;
  grant: ApprovalRequest | null;
}

/**
 * Whether `identity` may open a session on connection `name` now, else a DeniedError: unknown
 * connection (404), in neither its `access` nor its `access_by_grant` groups (403), no reason
 * where `require_reason` asks for one, no database role mapped for its groups where
 * `upstream.roles` is set (403), or — for a member of `access_by_grant` only — no approved grant
 * open now (403, stage `grant`, saying how to ask for one). The store is asked last, so a caller
 * is never told to ask for a grant that another check would refuse anyway.
 */
export async function admitConnection(config: GatewayConfig, identity: Identity, name: string, reason: string | null, activeGrant: GrantLookup): Promise<Admission> {
  const connection = admitWithoutGrant(config, identity, name, reason);
  if (!mayUseByGrant(identity, connection)) return { connection, grant: null };
  const grant = await activeGrant(identity.subject, connection.name);
  if (!grant) {
    const why = `${identity.subject} may use connection ${connection.name} only inside an approved access grant, and has none open now; ask for one with: ${grantCommand(connection)}`;
    throw new DeniedError('HOOP_FORBIDDEN', why, { stage: 'grant', connection: connection.name }, { hint: `an approver (${approverList(connection)}) decides it; connect again once it is approved` });
  }
  return { connection, grant };
}

/**
 * A grant request (`POST …/requests {duration}`): the same checks as a session but the grant
 * itself, for members of `access_by_grant` only — a member of `access` needs none (400).
 */
export function admitGrantRequest(config: GatewayConfig, identity: Identity, name: string, reason: string | null): ConnectionConfig {
  const connection = admitWithoutGrant(config, identity, name, reason);
  if (!mayUseByGrant(identity, connection)) {
    throw new UsageError(`you may use connection ${connection.name} without a grant (one of your groups is in its access list)`);
  }
  return connection;
}

/** The command that asks for a grant on `connection`, with a duration its `grant_max` allows. */
export function grantCommand(connection: ConnectionConfig): string {
  return `hoop request ${connection.name} --duration ${suggestedDuration(connection.approval?.grantMaxMs ?? 3_600_000)} --reason "…"`;
}

function approverList(connection: ConnectionConfig): string {
  return connection.approval?.approvers.join(', ') || 'an admin';
}

/** Every check but the grant's window. */
function admitWithoutGrant(config: GatewayConfig, identity: Identity, name: string, reason: string | null): ConnectionConfig {
  const connection = config.connections.find((c) => c.name === name);
  const shown = JSON.stringify(name.slice(0, 64));
  if (!connection) {
    throw new DeniedError('HOOP_NOT_FOUND', `no connection named ${shown}`, { stage: 'connection', data: { requested: name.slice(0, 64) } }, { hint: 'hoop connections lists the ones you may use' });
  }
  if (!mayUseConnection(identity, connection) && !mayUseByGrant(identity, connection)) {
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
