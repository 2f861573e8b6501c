import { describe, expect, test } from 'vitest';
import { AuthError } from '../../src/errors.js';
import { AuthenticatorChain, bearerOf } from '../../src/gateway/authn.js';
import { mayReadAllSessions, mayReadSession, mayUseConnection, rolesOf } from '../../src/gateway/authz.js';
import { ApiKeyAuthenticator, apiKeyHash } from '../../src/identity/api-keys.js';
import type { Authenticator, Identity } from '../../src/identity/identity.js';

const keys = new ApiKeyAuthenticator([
  { name: 'etl', sha256: apiKeyHash('hoop_etl-key'), groups: ['etl'] },
  { name: 'ops', sha256: apiKeyHash('hoop_ops-key'), groups: ['dba', 'platform'] },
]);

async function reason(p: Promise<unknown>): Promise<string> {
  const err = await p.then(() => null, (e: unknown) => e);
  expect(err).toBeInstanceOf(AuthError);
  return `${(err as AuthError).code}: ${(err as AuthError).message}`;
}

describe('API keys', () => {
  test('a configured key becomes its identity', async () => {
    expect(await keys.authenticate('hoop_ops-key')).toEqual({
      subject: 'apikey:ops', name: 'ops', email: null, groups: ['dba', 'platform'], method: 'api_key', expiresAt: null,
    });
  });

  test('an unknown key, or a configured hash presented as the key, is refused', async () => {
    expect(await reason(keys.authenticate('hoop_etl-kez'))).toBe('HOOP_AUTH_REJECTED: unknown API key');
    expect(await reason(keys.authenticate(apiKeyHash('hoop_etl-key')))).toBe('HOOP_AUTH_REJECTED: unknown API key');
  });

  test('a JWT is not an API key: null, so the OIDC authenticator can judge it', async () => {
    expect(await keys.authenticate('eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln')).toBeNull();
  });

  test('returned groups are copies', async () => {
    const a = await keys.authenticate('hoop_etl-key');
    a!.groups.push('admin');
    expect((await keys.authenticate('hoop_etl-key'))!.groups).toEqual(['etl']);
  });
});

describe('the authenticator chain', () => {
  const jwtOnly: Authenticator = {
    async authenticate(bearer) {
      if (!bearer.includes('.')) return null;
      if (bearer === 'a.b.c') return { subject: 'oidc|1', name: null, email: 'x@example.com', groups: ['g'], method: 'oidc', expiresAt: new Date(0) };
      throw new AuthError('HOOP_AUTH_REJECTED', 'token expired');
    },
  };
  const broken: Authenticator = { async authenticate() { throw new Error('JWKS fetch failed: secret detail'); } };
  const chain = new AuthenticatorChain([jwtOnly, keys]);

  test('asks each in turn; the first that recognises the credential decides', async () => {
    expect((await chain.authenticate('Bearer a.b.c')).subject).toBe('oidc|1');
    expect((await chain.authenticate('bearer hoop_etl-key')).subject).toBe('apikey:etl');
    expect(await reason(chain.authenticate('Bearer x.y.z'))).toBe('HOOP_AUTH_REJECTED: token expired');
  });

  test('missing, malformed and oversized headers have safe reasons', async () => {
    expect(await reason(chain.authenticate(undefined))).toBe('HOOP_NOT_LOGGED_IN: missing bearer token');
    expect(await reason(chain.authenticate('  '))).toBe('HOOP_NOT_LOGGED_IN: missing bearer token');
    expect(await reason(chain.authenticate('Basic Zm9vOmJhcg=='))).toMatch(/malformed Authorization header/);
    expect(await reason(chain.authenticate('Bearer two words'))).toMatch(/malformed Authorization header/);
    expect(await reason(chain.authenticate(`Bearer ${'a'.repeat(20_000)}`))).toBe('HOOP_AUTH_REJECTED: bearer token too long');
    expect(() => bearerOf('Bearer tok\u00e9n')).toThrow(/malformed/);
  });

  test('an authenticator that breaks fails closed without leaking its error', async () => {
    const c = new AuthenticatorChain([broken, keys]);
    expect(await reason(c.authenticate('Bearer hoop_etl-key'))).toBe('HOOP_AUTH_REJECTED: the credential could not be verified');
  });

  test('nobody recognises it', async () => {
    expect(await reason(new AuthenticatorChain([jwtOnly]).authenticate('Bearer opaque'))).toBe('HOOP_AUTH_REJECTED: unrecognised bearer token');
  });
});

describe('authorization', () => {
  const who = (groups: string[], subject = 'apikey:x'): Identity => ({ subject, name: null, email: null, groups, method: 'api_key', expiresAt: null });
  const roles = { admin: ['platform'], auditor: ['audit'] };

  test('connections by access groups only; admins get no implicit access', () => {
    expect(mayUseConnection(who(['analysts']), { access: ['analysts', 'dba'] })).toBe(true);
    expect(mayUseConnection(who(['platform']), { access: ['analysts'] })).toBe(false);
    expect(mayUseConnection(who([]), { access: [] })).toBe(false);
  });

  test('sessions: admins and auditors all, others their own', () => {
    expect(mayReadAllSessions(who(['audit']), roles)).toBe(true);
    expect(mayReadAllSessions(who(['platform']), roles)).toBe(true);
    expect(mayReadAllSessions(who(['analysts']), roles)).toBe(false);
    expect(mayReadSession(who(['analysts'], 'apikey:a'), roles, { subject: 'apikey:a' })).toBe(true);
    expect(mayReadSession(who(['analysts'], 'apikey:a'), roles, { subject: 'apikey:b' })).toBe(false);
    expect(rolesOf(who(['platform', 'audit']), roles)).toEqual(['admin', 'auditor']);
  });
});
