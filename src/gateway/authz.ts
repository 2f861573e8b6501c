/**
 * Authorization decisions, pure and in one place.
 *
 * - A connection may be used by an identity that shares a group with its `access` list, or with
 *   its `access_by_grant` list inside an approved grant's window (access.ts checks the window).
 *   Roles do not widen data access: an admin or auditor who must query a connection is put in its
 *   `access` groups like anyone else, so every data path is visible in the connection's config.
 * - Recorded sessions may be read in full by admins and auditors; everyone else sees only their
 *   own (matched on subject).
 * - Operator detail in recorded events (where and as whom the gateway reaches a database, the
 *   database's own error text) is for admins and auditors; a session's user sees what they were
 *   told (event-view.ts).
 */
import type { Identity } from '../identity/identity.js';

export interface Roles {
  admin: readonly string[];
  auditor: readonly string[];
}

export function sharesGroup(identity: Identity, groups: readonly string[]): boolean {
  return identity.groups.some((g) => groups.includes(g));
}

export function mayUseConnection(identity: Identity, connection: { access: readonly string[] }): boolean {
  return sharesGroup(identity, connection.access);
}

/**
 * Whether an identity may use a connection only inside an approved, time-bound grant: one of its
 * groups is in `access_by_grant` and none is in `access` (members of `access` need no grant).
 */
export function mayUseByGrant(identity: Identity, connection: { access: readonly string[]; accessByGrant: readonly string[] }): boolean {
  return !mayUseConnection(identity, connection) && sharesGroup(identity, connection.accessByGrant);
}

export function isAdmin(identity: Identity, roles: Roles): boolean {
  return sharesGroup(identity, roles.admin);
}

export function mayReadAllSessions(identity: Identity, roles: Roles): boolean {
  return isAdmin(identity, roles) || sharesGroup(identity, roles.auditor);
}

/** Whether an identity is served events with their operator-only fields (event-view.ts). */
export function mayReadOperatorDetail(identity: Identity, roles: Roles): boolean {
  return mayReadAllSessions(identity, roles);
}

/** `GET /api/v1/audit/events` (`hoop audit events`): every event, of every user. */
export function mayReadAuditLog(identity: Identity, roles: Roles): boolean {
  return mayReadAllSessions(identity, roles);
}

/**
 * Whether `user`, as `hoop sessions --user` takes it, names this identity: its subject, its email
 * (case-insensitive), or for an API key its name (`alice` for `apikey:alice`).
 */
export function namesIdentity(identity: Identity, user: string): boolean {
  if (user === identity.subject) return true;
  if (identity.email && user.toLowerCase() === identity.email.toLowerCase()) return true;
  return identity.method === 'api_key' && `apikey:${user}` === identity.subject;
}

export function mayReadSession(identity: Identity, roles: Roles, session: { subject: string }): boolean {
  return mayReadAllSessions(identity, roles) || session.subject === identity.subject;
}

/** The roles an identity holds, for `GET /api/v1/me`. */
export function rolesOf(identity: Identity, roles: Roles): ('admin' | 'auditor')[] {
  const out: ('admin' | 'auditor')[] = [];
  if (isAdmin(identity, roles)) out.push('admin');
  if (sharesGroup(identity, roles.auditor)) out.push('auditor');
  return out;
}
