import { createHmac, generateKeyPairSync } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SignJWT, importJWK, base64url, type JWK, type JWTPayload } from 'jose';
import { newSigningKey, startDemoIdp, type DemoIdp } from '../../src/identity/demo-idp.js';
import { OidcVerifier, groupsFrom } from '../../src/identity/oidc-verifier.js';
import { AuthError } from '../../src/errors.js';
import { until } from '../helpers/poll.js';

let idp: DemoIdp;
let key: JWK;
let verifier: OidcVerifier;

async function sign(claims: JWTPayload, opts: { key?: JWK; alg?: string; kid?: string } = {}): Promise<string> {
  const jwk = opts.key ?? key;
  const alg = opts.alg ?? jwk.alg ?? 'RS256';
  return new SignJWT(claims)
    .setProtectedHeader({ alg, kid: opts.kid ?? jwk.kid!, typ: 'at+jwt' })
    .sign(await importJWK(jwk, alg));
}

function good(extra: JWTPayload = {}): JWTPayload {
  const now = Math.floor(Date.now() / 1000);
  return { iss: idp.issuer, aud: 'hoop', sub: 'alice', email: 'alice@bank.example', groups: ['analysts'], iat: now, exp: now + 300, ...extra };
}

async function reason(token: string): Promise<string> {
  try {
    await verifier.authenticate(token);
  } catch (err) {
    expect(err).toBeInstanceOf(AuthError);
    expect((err as AuthError).code).toBe('HOOP_AUTH_REJECTED');
    return (err as AuthError).message;
  }
  throw new Error('token was accepted');
}

beforeAll(async () => {
  key = await newSigningKey('RS256');
  idp = await startDemoIdp({ signingKeys: [key] });
  verifier = new OidcVerifier({ issuer: idp.issuer, audience: 'hoop', clockToleranceSec: 5 });
});
afterAll(async () => {
  await idp.close();
});

describe('OIDC token verification against the embedded provider', () => {
  it('accepts a real access token from the provider (client credentials) with its groups', async () => {
    const basic = Buffer.from(`${idp.serviceClient.clientId}:${idp.serviceClient.clientSecret}`).toString('base64');
    const res = await fetch(`${idp.issuer}/token`, {
      method: 'POST',
      headers: { authorization: `Basic ${basic}`, 'content-type': 'application/x-www-form-urlencoded' },
      body: 'grant_type=client_credentials',
    });
    expect(res.status).toBe(200);
    const body = (await res.json()) as { access_token: string };
    const identity = await verifier.authenticate(body.access_token);
    expect(identity).toMatchObject({ subject: idp.serviceClient.clientId, groups: ['etl'], method: 'oidc' });
    expect(identity!.expiresAt!.getTime()).toBeGreaterThan(Date.now());
  });

  it('returns null for bearer strings that are not JWTs, so API keys are tried', async () => {
    expect(await verifier.authenticate('hoop_k_abcdef0123456789')).toBeNull();
    expect(await verifier.authenticate('a.b.c')).toBeNull();
  });

  it('accepts a well-formed token and maps its claims', async () => {
    const identity = await verifier.authenticate(await sign(good()));
    expect(identity).toMatchObject({ subject: 'alice', email: 'alice@bank.example', groups: ['analysts'] });
  });

  it('refuses an expired token', async () => {
    const now = Math.floor(Date.now() / 1000);
    expect(await reason(await sign(good({ iat: now - 600, exp: now - 120 })))).toBe('token expired');
  });

  it('refuses a token that is not yet valid', async () => {
    const now = Math.floor(Date.now() / 1000);
    expect(await reason(await sign(good({ nbf: now + 300 })))).toBe('token not yet valid');
  });

  it('refuses a token without exp', async () => {
    const claims = good();
    delete claims.exp;
    expect(await reason(await sign(claims))).toBe('token has no valid expiry');
  });

  it('refuses the wrong audience', async () => {
    expect(await reason(await sign(good({ aud: 'hoop-cli' })))).toBe('wrong audience');
  });

  it('refuses the wrong issuer', async () => {
    expect(await reason(await sign(good({ iss: 'https://evil.example' })))).toBe('wrong issuer');
  });

  it('refuses alg none', async () => {
    const header = base64url.encode(JSON.stringify({ alg: 'none', typ: 'JWT' }));
    const payload = base64url.encode(JSON.stringify(good()));
    expect(await reason(`${header}.${payload}.`)).toBe('algorithm not allowed');
  });

  it('refuses a token signed by another key that claims the real kid', async () => {
    const other = await newSigningKey('RS256');
    expect(await reason(await sign(good(), { key: other, kid: key.kid! }))).toBe('signature invalid');
  });

  it('refuses a token signed by another key with its own kid', async () => {
    const other = await newSigningKey('ES256');
    expect(await reason(await sign(good(), { key: other }))).toBe('signed by an unknown key');
  });

  it('refuses HS256 signed with the public key as the HMAC secret', async () => {
    const jwks = (await (await fetch(`${idp.issuer}/jwks`)).json()) as { keys: JWK[] };
    const publicPem = JSON.stringify(jwks.keys[0]);
    const header = base64url.encode(JSON.stringify({ alg: 'HS256', kid: key.kid }));
    const payload = base64url.encode(JSON.stringify(good()));
    const mac = createHmac('sha256', publicPem).update(`${header}.${payload}`).digest('base64url');
    expect(await reason(`${header}.${payload}.${mac}`)).toBe('algorithm not allowed');
    // and with the PEM form of the public key
    const { publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const pem = publicKey.export({ type: 'spki', format: 'pem' });
    const mac2 = createHmac('sha256', pem).update(`${header}.${payload}`).digest('base64url');
    expect(await reason(`${header}.${payload}.${mac2}`)).toBe('algorithm not allowed');
  });

  it('refuses a token that carries its own key in the header (jwk injection)', async () => {
    const attacker = await newSigningKey('RS256');
    const { d: _d, p: _p, q: _q, dp: _dp, dq: _dq, qi: _qi, ...publicJwk } = attacker;
    const token = await new SignJWT(good())
      .setProtectedHeader({ alg: 'RS256', jwk: publicJwk, typ: 'at+jwt' })
      .sign(await importJWK(attacker, 'RS256'));
    expect(await reason(token)).toBe('signature invalid'); // checked against the issuer's key, not the header's
    const withKid = await new SignJWT(good())
      .setProtectedHeader({ alg: 'RS256', kid: key.kid!, jwk: publicJwk })
      .sign(await importJWK(attacker, 'RS256'));
    expect(await reason(withKid)).toBe('signature invalid');
  });

  it('refuses a tampered payload', async () => {
    const [h, , s] = (await sign(good())).split('.');
    const tampered = base64url.encode(JSON.stringify(good({ groups: ['dba'] })));
    expect(await reason(`${h}.${tampered}.${s}`)).toBe('signature invalid');
  });

  it('refuses a subject in the gateway\'s own namespaces, or one that is not a string', async () => {
    expect(await reason(await sign(good({ sub: 'apikey:nightly-etl' })))).toBe('token subject is reserved');
    expect(await reason(await sign(good({ sub: 'System:gateway' })))).toBe('token subject is reserved');
    expect(await reason(await sign({ ...good(), sub: 42 as unknown as string }))).toBe('token has no subject');
  });

  it('refuses a token without a subject', async () => {
    const claims = good();
    delete claims.sub;
    expect(await reason(await sign(claims))).toBe('token has no subject');
  });
});

describe('groups claim', () => {
  it('reads plain, nested and namespaced claims', () => {
    expect(groupsFrom({ groups: ['a', 'b', 3] }, 'groups')).toEqual(['a', 'b']);
    expect(groupsFrom({ realm_access: { roles: ['dba'] } }, 'realm_access.roles')).toEqual(['dba']);
    expect(groupsFrom({ 'https://hoop.dev/groups': ['x'] }, 'https://hoop.dev/groups')).toEqual(['x']);
    expect(groupsFrom({ role: 'audit' }, 'role')).toEqual(['audit']);
    expect(groupsFrom({}, 'realm_access.roles')).toEqual([]);
  });

  it('uses a dotted path from the verifier config', async () => {
    const v = new OidcVerifier({ issuer: idp.issuer, audience: 'hoop', groupsClaim: 'realm_access.roles' });
    const identity = await v.authenticate(await sign(good({ realm_access: { roles: ['dba', 'approver'] } })));
    expect(identity!.groups).toEqual(['dba', 'approver']);
  });
});

describe('JWKS rotation', () => {
  it('refetches once for an unknown kid, then rate-limits refetches', async () => {
    const k1 = await newSigningKey('RS256');
    const k2 = await newSigningKey('ES256');
    let rotating = await startDemoIdp({ signingKeys: [k1] });
    const port = new URL(rotating.issuer).port;
    const v = new OidcVerifier({ issuer: rotating.issuer, audience: 'hoop', jwksCooldownMs: 60_000 });
    const claims = (): JWTPayload => good({ iss: rotating.issuer });
    try {
      expect(await v.authenticate(await sign(claims(), { key: k1 }))).not.toBeNull();
      expect(await v.authenticate(await sign(claims(), { key: k1 }))).not.toBeNull();
      expect(rotating.requestCount('/jwks')).toBe(1); // cached
      // The provider restarts with a new signing key (the old one kept for verification).
      await rotating.close();
      rotating = await startDemoIdp({ port: Number(port), signingKeys: [k2, k1] });
      // Within the cooldown even an unknown kid does not refetch ...
      expect(await reasonOf(v, await sign(claims(), { key: k2 }))).toBe('signed by an unknown key');
      expect(rotating.requestCount('/jwks')).toBe(0);
    } finally {
      await rotating.close();
    }
  });

  it('an unknown kid after the cooldown triggers exactly one refetch', async () => {
    const k1 = await newSigningKey('RS256');
    const k2 = await newSigningKey('EdDSA');
    let rotating = await startDemoIdp({ signingKeys: [k1] });
    const port = new URL(rotating.issuer).port;
    const stranger = await newSigningKey('ES256');
    const v = new OidcVerifier({ issuer: rotating.issuer, audience: 'hoop', jwksCooldownMs: 1_000 });
    const claims = (): JWTPayload => good({ iss: rotating.issuer });
    try {
      expect(await v.authenticate(await sign(claims(), { key: k1 }))).not.toBeNull();
      await rotating.close();
      rotating = await startDemoIdp({ port: Number(port), signingKeys: [k2, k1] });
      // Until the cooldown is over the new kid is unknown and nothing is fetched; then the first
      // token that names it fetches the set once.
      const rotated = await sign(claims(), { key: k2 });
      const identity = await until(() => v.authenticate(rotated), { timeoutMs: 5_000, intervalMs: 50, what: 'the new key accepted' });
      expect(identity.subject).toBe('alice');
      expect(rotating.requestCount('/jwks')).toBe(1);
      // a flood of forged kids right after does not hammer the provider
      for (let i = 0; i < 5; i++) {
        expect(await reasonOf(v, await sign(claims(), { key: stranger }))).toBe('signed by an unknown key');
      }
      expect(rotating.requestCount('/jwks')).toBe(1);
      // old tokens still verify against the cached set
      expect(await v.authenticate(await sign(claims(), { key: k1 }))).not.toBeNull();
    } finally {
      await rotating.close();
    }
  });
});

async function reasonOf(v: OidcVerifier, token: string): Promise<string> {
  try {
    await v.authenticate(token);
  } catch (err) {
    return (err as Error).message;
  }
  return 'accepted';
}

