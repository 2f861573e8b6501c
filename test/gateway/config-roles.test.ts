/**
 * `upstream.roles` (group -> database role, or a template) and the default of
 * `max_sessions_per_user`, as the config loader reads them.
 */
import { describe, expect, test } from 'vitest';
import { ConfigError } from '../../src/errors.js';
import { DEFAULT_MAX_SESSIONS_PER_USER, parseConfig, upstreamConfigOf } from '../../src/gateway/config.js';
import { mappedRole, protectedRolesOf, sessionRoleOf } from '../../src/gateway/db-roles.js';

const HASH = 'ab'.repeat(32);

function withRoles(roles: unknown, extra: Record<string, unknown> = {}) {
  return {
    identity: { api_keys: [{ name: 'etl', sha256: HASH, groups: ['etl'] }] },
    connections: [{
      name: 'bank', type: 'postgres', access: ['analysts', 'dba'],
      upstream: { host: 'db.internal', database: 'bank', user: 'hoop_svc', password: 'pw', sslmode: 'disable', ...(roles === undefined ? {} : { roles }) },
      ...extra,
    }],
  };
}

function problems(raw: unknown): string[] {
  try {
    parseConfig(raw, 'hoop.yaml', '/tmp');
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as Error).message.split('\n');
  }
  throw new Error('config was accepted');
}

describe('upstream.roles', () => {
  test('a map keeps the file\'s order; the first entry whose group the caller has wins', () => {
    const c = parseConfig(withRoles({ dba: 'hoop_dba', analysts: 'hoop_analyst' }), 'hoop.yaml', '/tmp').connections[0]!;
    expect(c.roles).toEqual({ map: { dba: 'hoop_dba', analysts: 'hoop_analyst' } });
    expect(mappedRole(c.roles!, ['analysts', 'dba'])).toBe('hoop_dba');
    expect(mappedRole(c.roles!, ['analysts'])).toBe('hoop_analyst');
    expect(mappedRole(c.roles!, ['etl'])).toBeNull();
    expect(sessionRoleOf(c, { groups: ['analysts'] })).toBe('hoop_analyst');
    expect(protectedRolesOf(c, { groups: [] })).toEqual(['hoop_svc', 'hoop_dba', 'hoop_analyst']);
    expect(upstreamConfigOf(c, 'hoop_analyst')).toMatchObject({ user: 'hoop_svc', role: 'hoop_analyst' });
    expect(upstreamConfigOf(c)).not.toHaveProperty('role');
  });

  test('a template takes the caller\'s first group, in the identity\'s order, that makes a valid role name', () => {
    const c = parseConfig(withRoles('hoop_{group}'), 'hoop.yaml', '/tmp').connections[0]!;
    expect(c.roles).toEqual({ template: 'hoop_{group}' });
    expect(mappedRole(c.roles!, ['Data-Eng', 'analysts', 'dba'])).toBe('hoop_analysts');
    expect(mappedRole(c.roles!, ['data-eng'])).toBeNull();
    expect(protectedRolesOf(c, { groups: ['etl'] })).toEqual(['hoop_svc', 'hoop_analysts', 'hoop_dba', 'hoop_etl']);
  });

  test('without it, sessions are the service role\'s own', () => {
    const c = parseConfig(withRoles(undefined), 'hoop.yaml', '/tmp').connections[0]!;
    expect(c.roles).toBeNull();
    expect(sessionRoleOf(c, { groups: ['analysts'] })).toBeNull();
    expect(protectedRolesOf(c, { groups: ['analysts'] })).toEqual(['hoop_svc']);
  });

  test.each([
    [{ analysts: 'Hoop-Analyst' }, 'hoop.yaml: connections[0].upstream.roles.analysts: expected a database role name: lowercase letters, digits, "_" and "$", starting with a letter or "_", at most 63 characters'],
    [{ analysts: 'x'.repeat(64) }, 'hoop.yaml: connections[0].upstream.roles.analysts: expected a database role name: lowercase letters, digits, "_" and "$", starting with a letter or "_", at most 63 characters'],
    [{ analysts: 'hoop_svc' }, 'hoop.yaml: connections[0].upstream.roles.analysts: must not be the service role itself (upstream.user): the mapped roles are what the service role switches to'],
    [{}, 'hoop.yaml: connections[0].upstream.roles: map at least one group to a database role, or leave out upstream.roles'],
    ['hoop_analyst', 'hoop.yaml: connections[0].upstream.roles: expected a template such as hoop_{group}: a database role name containing {group}'],
    ['Hoop_{group}', 'hoop.yaml: connections[0].upstream.roles: expected a template such as hoop_{group}: a database role name containing {group}'],
    [['hoop_analyst'], 'hoop.yaml: connections[0].upstream.roles: expected a mapping of group to database role (analysts: hoop_analyst) or a template such as hoop_{group}'],
  ])('refused: %j', (roles, message) => {
    expect(problems(withRoles(roles))).toEqual([message]);
  });
});

describe('max_sessions_per_user', () => {
  test(`defaults to ${DEFAULT_MAX_SESSIONS_PER_USER}; a given value wins`, () => {
    expect(DEFAULT_MAX_SESSIONS_PER_USER).toBe(10);
    expect(parseConfig(withRoles(undefined), 'hoop.yaml', '/tmp').connections[0]!.maxSessionsPerUser).toBe(10);
    expect(parseConfig(withRoles(undefined, { max_sessions_per_user: 50 }), 'hoop.yaml', '/tmp').connections[0]!.maxSessionsPerUser).toBe(50);
  });
});
