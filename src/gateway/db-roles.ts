/**
 * Which database role a caller's session runs as (`upstream.roles`), and which roles the
 * shared-credential guard protects on a connection.
 *
 * Every session logs in as the connection's one service role (`upstream.user`) and, with
 * `upstream.roles`, starts as the role mapped from the caller's groups, so the database's own
 * privileges, pg_stat_activity visibility and signal rules apply per group (docs/roles.md):
 * - a map `{analysts: hoop_analyst, dba: hoop_dba}`: the first entry, in the file's order, whose
 *   group the caller has (the map's order is the operator's precedence, not the identity's);
 * - a template `hoop_{group}`: the caller's first group, in the order the identity lists them,
 *   whose name makes a valid role name (groups with other characters are passed over).
 * No role for the caller: the session is refused before it starts (access.ts admitConnection).
 */
import type { Identity } from '../identity/identity.js';
import { DATABASE_ROLE_NAME, type ConnectionConfig, type RoleMapping } from './config.js';

/** The role mapped from `groups`, or null when none is. */
export function mappedRole(mapping: RoleMapping, groups: readonly string[]): string | null {
  if ('map' in mapping) {
    for (const [group, role] of Object.entries(mapping.map)) if (groups.includes(group)) return role;
    return null;
  }
  for (const group of groups) {
    const role = templateRole(mapping.template, group);
    if (role !== null) return role;
  }
  return null;
}

/** The session's database role: the mapped one, null without `upstream.roles` (the service role's own session). */
export function sessionRoleOf(connection: ConnectionConfig, identity: Pick<Identity, 'groups'>): string | null {
  return connection.roles ? mappedRole(connection.roles, identity.groups) : null;
}

/**
 * The roles the guard protects on `connection`, the service role first: it and every role a
 * caller of the connection may be mapped to (a template: over the connection's access groups and
 * the caller's own groups, the ones that can be known).
 */
export function protectedRolesOf(connection: ConnectionConfig, identity: Pick<Identity, 'groups'>): string[] {
  const roles = new Set([connection.upstream.user.toLowerCase()]);
  const mapping = connection.roles;
  if (mapping && 'map' in mapping) for (const role of Object.values(mapping.map)) roles.add(role);
  if (mapping && 'template' in mapping) {
    for (const group of [...connection.access, ...identity.groups]) {
      const role = templateRole(mapping.template, group);
      if (role !== null) roles.add(role);
    }
  }
  return [...roles];
}

/** Why a caller has no role on a connection with `upstream.roles` (what the refusal says). */
export function noRoleReason(connection: ConnectionConfig): string {
  const mapping = connection.roles;
  const how = !mapping ? '' : 'map' in mapping
    ? ` (upstream.roles maps the groups: ${Object.keys(mapping.map).join(', ')})`
    : ` (upstream.roles is ${mapping.template}, and none of the groups makes a valid role name)`;
  return `no database role is mapped for your groups on connection ${connection.name}${how}`;
}

function templateRole(template: string, group: string): string | null {
  const role = template.replaceAll('{group}', group);
  return DATABASE_ROLE_NAME.test(role) ? role : null;
}
