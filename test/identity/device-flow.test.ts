import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDemoIdp, DEMO_SCOPES, type DemoIdp } from '../../src/identity/demo-idp.js';
import { OidcClient, translate, type TokenSet } from '../../src/identity/device-flow.js';
import { OidcVerifier } from '../../src/identity/oidc-verifier.js';
import { freePort } from '../../src/demo/postgres-cluster.js';
import { HoopError } from '../../src/errors.js';
import { until } from '../helpers/poll.js';
import { completeDeviceLogin } from './browser.js';

let idp: DemoIdp;
let verifier: OidcVerifier;
let client: OidcClient;
let tokens: TokenSet;

async function failure(p: Promise<unknown>): Promise<HoopError> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(HoopError);
    return err as HoopError;
  }
  throw new Error('expected a failure');
}

beforeAll(async () => {
  idp = await startDemoIdp({ accessTokenTtl: 120, pollInterval: 1 });
  verifier = new OidcVerifier({ issuer: idp.issuer, audience: 'hoop' });
  client = await OidcClient.discover(idp.issuer, idp.clientId);
});
afterAll(async () => {
  await idp.close();
});

describe('device authorization grant against the embedded provider', () => {
  it('completes through the real HTML pages and yields a token the gateway verifier accepts', async () => {
    const handle = await client.initiateDeviceAuthorization(DEMO_SCOPES, 'hoop');
    expect(handle.userCode).toMatch(/^[A-Z]{4}-[A-Z]{4}$/);
    expect(handle.verificationUriComplete).toContain(encodeURIComponent(handle.userCode).replace('%2D', '-'));
    const alice = idp.users.find((u) => u.username === 'alice')!;
    const [set, page] = await Promise.all([
      handle.pollDeviceAuthorizationGrant(),
      completeDeviceLogin(handle.verificationUri, handle.userCode, alice),
    ]);
    expect(page.html).toContain('You are signed in');
    tokens = set;
    expect(tokens.refreshToken).toBeTruthy();
    expect(tokens.expiresAt!.getTime()).toBeGreaterThan(Date.now() + 60_000);
    expect(tokens.idClaims).toMatchObject({ sub: 'alice', email: 'alice@bank.example' });
    const identity = await verifier.authenticate(tokens.accessToken);
    expect(identity).toMatchObject({ subject: 'alice', email: 'alice@bank.example', groups: ['analysts'], method: 'oidc' });
  });

  it('refreshes, rotating the refresh token, and the old refresh token stops working', async () => {
    const refreshed = await client.refreshTokenGrant(tokens.refreshToken!);
    expect(refreshed.accessToken).not.toBe(tokens.accessToken);
    expect(refreshed.refreshToken).not.toBe(tokens.refreshToken);
    expect((await verifier.authenticate(refreshed.accessToken))!.subject).toBe('alice');
    const err = await failure(client.refreshTokenGrant(tokens.refreshToken!));
    expect(err.code).toBe('HOOP_AUTH_REJECTED');
    tokens = refreshed;
  });

  it('revocation of the refresh token ends the session at the provider', async () => {
    expect(await client.tokenRevocation(tokens.refreshToken!, 'refresh_token')).toBe(true);
    const err = await failure(client.refreshTokenGrant(tokens.refreshToken!));
    expect(err.code).toBe('HOOP_AUTH_REJECTED');
    expect(err.message).toContain('refresh token no longer valid');
  });

  it('a user who denies at the consent page ends the poll with access_denied', async () => {
    const handle = await client.initiateDeviceAuthorization(DEMO_SCOPES);
    const bob = idp.users.find((u) => u.username === 'bob')!;
    const [err] = await Promise.all([
      failure(handle.pollDeviceAuthorizationGrant()),
      completeDeviceLogin(handle.verificationUri, handle.userCode, bob, { deny: true }),
    ]);
    expect(err.code).toBe('HOOP_AUTH_REJECTED');
    expect(err.message).toBe('the login was denied at the identity provider');
  });

  it('polls at the advertised interval and five seconds slower after slow_down', async () => {
    const busy = await startDemoIdp({ pollInterval: 1, busyPolls: 1 });
    try {
      const c = await OidcClient.discover(busy.issuer, busy.clientId);
      const started = Date.now();
      const handle = await c.initiateDeviceAuthorization(DEMO_SCOPES);
      expect(handle.interval).toBe(1);
      const polling = handle.pollDeviceAuthorizationGrant();
      await until(() => busy.devicePolls()[0]?.length === 1, { intervalMs: 50, what: 'the first poll' });
      await completeDeviceLogin(handle.verificationUri, handle.userCode, busy.users[0]!);
      const tokens = await polling;
      expect(tokens.accessToken).toBeTruthy();
      const [first, second, ...rest] = busy.devicePolls()[0]!;
      expect(first! - started).toBeGreaterThanOrEqual(900); // waited the advertised second
      expect(second! - first!).toBeGreaterThanOrEqual(5_900); // 1 s + 5 s after slow_down
      expect(rest).toEqual([]);
    } finally {
      await busy.close();
    }
  });

  it('Ctrl-C (an aborted signal) ends the poll with a clean message', async () => {
    const handle = await client.initiateDeviceAuthorization(DEMO_SCOPES);
    const ctrlC = new AbortController();
    const polls = () => idp.devicePolls().flat().length;
    const before = polls();
    const polling = failure(handle.pollDeviceAuthorizationGrant(ctrlC.signal));
    // Ctrl-C while the flow is between polls, as a user waiting at the prompt presses it
    await until(() => polls() > before, { intervalMs: 50, what: 'the first poll' });
    const pressed = Date.now();
    ctrlC.abort();
    const err = await polling;
    expect(err.code).toBe('HOOP_AUTH_REJECTED');
    expect(err.message).toBe('login cancelled');
    expect(Date.now() - pressed).toBeLessThan(500); // at once, not at the next poll
  });

  it('a code nobody enters expires after expires_in with a clear message', async () => {
    const short = await startDemoIdp({ deviceCodeTtl: 1 });
    try {
      const c = await OidcClient.discover(short.issuer, short.clientId);
      const handle = await c.initiateDeviceAuthorization(DEMO_SCOPES);
      const err = await failure(handle.pollDeviceAuthorizationGrant());
      expect(err.code).toBe('HOOP_AUTH_REJECTED');
      expect(err.message).toBe('the login code expired before it was used');
    } finally {
      await short.close();
    }
  });

  it('client credentials for the service client, and a wrong secret is refused', async () => {
    const service = await OidcClient.discover(idp.issuer, idp.serviceClient.clientId, { clientSecret: idp.serviceClient.clientSecret });
    const set = await service.clientCredentialsGrant();
    expect((await verifier.authenticate(set.accessToken))!.groups).toEqual(['etl']);
    const wrong = await OidcClient.discover(idp.issuer, idp.serviceClient.clientId, { clientSecret: 'not-the-secret' });
    const err = await failure(wrong.clientCredentialsGrant());
    expect(err.code).toBe('HOOP_AUTH_REJECTED');
  });

  it('an unreachable provider is a network error', async () => {
    const port = await freePort();
    const err = await failure(OidcClient.discover(`http://127.0.0.1:${port}`, 'hoop-cli'));
    expect(err.code).toBe('HOOP_NETWORK');
    expect(err.message).toBe(`cannot reach the identity provider http://127.0.0.1:${port}`);
  });

  it('plain http is refused for a provider that is not on loopback', async () => {
    const err = await failure(OidcClient.discover('http://idp.example.com', 'hoop-cli'));
    expect(err.code).toBe('HOOP_AUTH_REJECTED');
    expect(err.message).toContain('refusing to log in over plain http');
  });
});

describe('provider errors become one-line HoopErrors', () => {
  it.each([
    ['expired_token', 'HOOP_AUTH_REJECTED', 'the login code expired before it was used'],
    ['access_denied', 'HOOP_AUTH_REJECTED', 'the login was denied at the identity provider'],
    ['invalid_client', 'HOOP_AUTH_REJECTED', 'the identity provider refused the client (invalid_client)'],
    ['server_error', 'HOOP_AUTH_REJECTED', 'the identity provider refused the request (server_error)'],
    ['<script>\u001b[31m', 'HOOP_AUTH_REJECTED', 'the identity provider refused the request (error)'],
  ])('%s', (error, code, message) => {
    const err = translate({ error }, 'https://idp.example');
    expect(err.code).toBe(code);
    expect(err.message).toBe(message);
  });

  it('connection failures are network errors', () => {
    const refused = Object.assign(new TypeError('fetch failed'), { cause: Object.assign(new Error('connect'), { code: 'ECONNREFUSED' }) });
    expect(translate(refused, 'https://idp.example')).toMatchObject({ code: 'HOOP_NETWORK', message: 'cannot reach the identity provider https://idp.example' });
  });
});
