import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { CredentialsStore, type StoredCredentials } from '../../src/identity/credentials-store.js';
import { startDemoIdp, DEMO_SCOPES, type DemoIdp } from '../../src/identity/demo-idp.js';
import { OidcClient } from '../../src/identity/device-flow.js';
import { OidcVerifier } from '../../src/identity/oidc-verifier.js';
import { TokenProvider, keepTokenFresh } from '../../src/identity/token-provider.js';
import { until } from '../helpers/poll.js';
import { completeDeviceLogin } from './browser.js';

const GATEWAY = 'http://gateway.test:8009';
let idp: DemoIdp;
let home: string;
let store: CredentialsStore;
let verifier: OidcVerifier;

beforeAll(async () => {
  idp = await startDemoIdp({ accessTokenTtl: 4, pollInterval: 1 });
  home = mkdtempSync(join(tmpdir(), 'hoop-tokens-'));
  store = new CredentialsStore({ env: { XDG_CONFIG_HOME: home, HOOP_KEYRING: 'file' } });
  verifier = new OidcVerifier({ issuer: idp.issuer, audience: 'hoop', clockToleranceSec: 0 });
  const client = await OidcClient.discover(idp.issuer, idp.clientId);
  const handle = await client.initiateDeviceAuthorization(DEMO_SCOPES);
  const [tokens] = await Promise.all([
    handle.pollDeviceAuthorizationGrant(),
    completeDeviceLogin(handle.verificationUri, handle.userCode, idp.users[0]!),
  ]);
  const credentials: StoredCredentials = {
    gateway: GATEWAY,
    issuer: idp.issuer,
    client_id: idp.clientId,
    grant: 'device',
    access_token: tokens.accessToken,
    refresh_token: tokens.refreshToken,
    expires_at: tokens.expiresAt!.toISOString(),
    subject: 'alice',
    email: 'alice@bank.example',
    groups: ['analysts'],
    saved_at: new Date().toISOString(),
  };
  await store.save(credentials);
});
afterAll(async () => {
  await idp.close();
  rmSync(home, { recursive: true, force: true });
});

describe('token refresh', () => {
  it('two processes refreshing at once spend the rotating refresh token only once', async () => {
    const before = (await store.load(GATEWAY))!.credentials;
    // both see a token about to expire
    await store.save({ ...before, expires_at: new Date(Date.now() + 500).toISOString() });
    const a = new TokenProvider({ store: new CredentialsStore({ env: { XDG_CONFIG_HOME: home, HOOP_KEYRING: 'file' } }) });
    const b = new TokenProvider({ store: new CredentialsStore({ env: { XDG_CONFIG_HOME: home, HOOP_KEYRING: 'file' } }) });
    const [ta, tb] = await Promise.all([a.storedToken(GATEWAY), b.storedToken(GATEWAY)]);
    expect(ta).toBe(tb);
    expect(ta).not.toBe(before.access_token);
    expect((await verifier.authenticate(ta!))!.subject).toBe('alice');
  });

  it('refreshes in the background before expiry, and reports a refresh that fails without stopping', async () => {
    const tokens = new TokenProvider({ store });
    const failures: string[] = [];
    const attempts = vi.spyOn(tokens, 'storedToken'); // each background refresh starts with one
    const failed = () => attempts.mock.settledResults.filter((r) => r.type === 'rejected').length;
    const start = (await store.load(GATEWAY))!.credentials;
    const stop = keepTokenFresh(tokens, GATEWAY, { onFailure: (m) => failures.push(m), retryMs: 1_000 });
    try {
      // the 4 s token is replaced before it expires
      await until(async () => (await store.load(GATEWAY))!.credentials.access_token !== start.access_token, { timeoutMs: 6_000, intervalMs: 100 });
      const fresh = (await store.load(GATEWAY))!.credentials;
      expect(Date.parse(fresh.expires_at!)).toBeGreaterThan(Date.parse(start.expires_at!));
      expect((await verifier.authenticate(fresh.access_token))!.subject).toBe('alice');
      // the session ends at the provider: the next refresh fails, and the user is told once
      const client = await OidcClient.discover(idp.issuer, idp.clientId);
      await client.tokenRevocation(fresh.refresh_token!, 'refresh_token');
      await until(() => failures.length > 0, { timeoutMs: 8_000, intervalMs: 100 });
      expect(failures[0]).toMatch(/your login to http:\/\/gateway\.test:8009 has expired .*run `hoop login --gateway http:\/\/gateway\.test:8009` again; open sessions continue/);
      // the retry (retryMs) fails again, and says nothing
      await until(() => failed() >= 2, { timeoutMs: 8_000, intervalMs: 100, what: 'a second failed refresh' });
      expect(failures).toHaveLength(1);
    } finally {
      stop();
    }
  });
});
