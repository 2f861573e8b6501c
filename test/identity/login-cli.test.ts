import { mkdtempSync, readFileSync, rmSync, statSync, existsSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { startDemoIdp, type DemoIdp } from '../../src/identity/demo-idp.js';
import { OidcClient } from '../../src/identity/device-flow.js';
import { freePort } from '../../src/demo/postgres-cluster.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { until } from '../helpers/poll.js';
import { psql } from '../helpers/clients.js';
import { completeDeviceLogin } from './browser.js';
import { assertBuilt, hoop, hoopRun } from './cli.js';

let idp: DemoIdp;
let gateway: TestGateway;
let home: string;
let env: Record<string, string>;
let credentialsFile: string;

interface CredentialsFile {
  gateways: Record<string, { access_token: string; refresh_token: string; expires_at: string; saved_at: string; subject: string }>;
}
const readCredentials = (): CredentialsFile => JSON.parse(readFileSync(credentialsFile, 'utf8')) as CredentialsFile;

beforeAll(async () => {
  assertBuilt();
  idp = await startDemoIdp({ pollInterval: 1 });
  gateway = await startTestGateway({
    upstream: inject('upstream'),
    config: {
      identity: {
        oidc: { issuer: idp.issuer, client_id: idp.clientId, audience: 'hoop', scopes: ['openid', 'email', 'profile', 'groups', 'offline_access'] },
        api_keys: [],
      },
    },
  });
  home = mkdtempSync(join(tmpdir(), 'hoop-login-'));
  env = { HOME: home, XDG_CONFIG_HOME: join(home, 'cfg'), HOOP_KEYRING: 'file' };
  credentialsFile = join(home, 'cfg', 'hoop', 'credentials.json');
});
afterAll(async () => {
  await gateway?.close();
  await idp?.close();
  rmSync(home, { recursive: true, force: true });
});

/** `hoop login` in a process while the test signs in through the provider's pages. */
async function login(user: string, extraEnv: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  const run = hoop(['login', '--gateway', gateway.url, '--no-browser'], { ...env, ...extraEnv });
  const [, url] = await run.waitForStderr(/To sign in, open (\S+)/);
  const [, code] = await run.waitForStderr(/enter the code: (\S+)/);
  const u = idp.users.find((x) => x.username === user)!;
  await completeDeviceLogin(url!, code!, u);
  const exit = await run.exit;
  return { code: exit, stdout: run.stdout(), stderr: run.stderr() };
}

describe('hoop login / whoami / logout against the embedded provider and a real gateway', () => {
  it('hoop login: device flow, stored in a 0600 file, default gateway saved', async () => {
    const r = await login('alice');
    expect(r.stderr).toContain(`Logged in to ${gateway.url} as alice@bank.example (groups: analysts)`);
    expect(r.stderr).toMatch(/\(or open http:\/\/127\.0\.0\.1:\d+\/device\?user_code=\w{4}-\w{4} which has the code filled in\)/);
    expect(r.code).toBe(0);
    expect(statSync(credentialsFile).mode & 0o777).toBe(0o600);
    const stored = readCredentials().gateways[gateway.url]!;
    expect(stored.subject).toBe('alice');
    expect(stored.refresh_token).toBeTruthy();
    expect(JSON.parse(readFileSync(join(home, 'cfg', 'hoop', 'config.json'), 'utf8'))).toEqual({ default_gateway: gateway.url });
    // the tokens themselves never reach the terminal
    expect(r.stderr + r.stdout).not.toContain(stored.access_token);
    expect(r.stderr + r.stdout).not.toContain(stored.refresh_token);
  });

  it('hoop whoami uses the saved gateway and says where the token is kept', async () => {
    const r = await hoopRun(['whoami'], env);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`Gateway:   ${gateway.url}`);
    expect(r.stdout).toContain('Subject:   alice');
    expect(r.stdout).toContain('Email:     alice@bank.example');
    expect(r.stdout).toContain('Groups:    analysts');
    expect(r.stdout).toContain(`Stored in: ${credentialsFile}`);
    const j = await hoopRun(['whoami', '--json'], env);
    expect(JSON.parse(j.stdout)).toMatchObject({ gateway: gateway.url, subject: 'alice', groups: ['analysts'], method: 'oidc', stored_in: credentialsFile });
  });

  it('hoop whoami with the gateway down shows the stored login, with a warning', async () => {
    const down = `http://127.0.0.1:${await freePort()}`;
    const file = readCredentials();
    file.gateways[down] = { ...file.gateways[gateway.url]!, gateway: down } as (typeof file.gateways)[string];
    writeFileSync(credentialsFile, JSON.stringify(file), { mode: 0o600 });
    try {
      const r = await hoopRun(['whoami', '--gateway', down], env);
      expect(r.code).toBe(0);
      expect(r.stderr).toContain(`warning: cannot reach the gateway ${down}; showing the identity stored at login`);
      expect(r.stdout).toContain('Subject:   alice');
      expect(r.stdout).toContain('Groups:    analysts');
    } finally {
      const f = readCredentials();
      delete f.gateways[down];
      writeFileSync(credentialsFile, JSON.stringify(f), { mode: 0o600 });
    }
  });

  it('refreshes an access token that is about to expire, and stores the new tokens', async () => {
    const before = readCredentials().gateways[gateway.url]!;
    // pretend the token was issued an hour ago and expires in 10 seconds
    const file = readCredentials();
    file.gateways[gateway.url]!.expires_at = new Date(Date.now() + 10_000).toISOString();
    file.gateways[gateway.url]!.saved_at = new Date(Date.now() - 3_600_000).toISOString();
    writeFileSync(credentialsFile, JSON.stringify(file), { mode: 0o600 });
    const r = await hoopRun(['whoami', '--json'], env);
    expect(r.code).toBe(0);
    const after = readCredentials().gateways[gateway.url]!;
    expect(after.access_token).not.toBe(before.access_token);
    expect(after.refresh_token).not.toBe(before.refresh_token); // the provider rotates them
    expect(Date.parse(after.expires_at)).toBeGreaterThan(Date.now() + 60_000);
    expect(statSync(credentialsFile).mode & 0o777).toBe(0o600);
    // the stored token is the one the gateway now accepts
    const me = await fetch(`${gateway.url}/api/v1/me`, { headers: { authorization: `Bearer ${after.access_token}` } });
    expect(((await me.json()) as { subject: string }).subject).toBe('alice');
  });

  it('hoop connect with the stored login: psql runs through the tunnel as alice, recorded as oidc', async () => {
    const run = hoop(['connect', 'bank', '--port', '0', '--json'], env);
    try {
      const [line] = await run.waitForStdout(/^\{.*\}$/m, 20_000);
      const info = JSON.parse(line) as { uri: string; user: string };
      expect(info.user).toBe('alice');
      const r = await psql(info.uri, ['-c', "select 'through hoop as ' || 'oidc'"]);
      expect(r.stderr).toBe('');
      expect(r.stdout.trim()).toBe('through hoop as oidc');
      const events = await gateway.store.readEvents({});
      const start = events.filter((e) => e.type === 'session.start').at(-1)!;
      expect(start.actor).toEqual({ subject: 'alice', email: 'alice@bank.example', groups: ['analysts'], auth_method: 'oidc' });
      expect(events.some((e) => e.type === 'query.start' && e.session_id === start.session_id && JSON.stringify(e.data).includes('through hoop as'))).toBe(true);
    } finally {
      run.child.kill('SIGINT');
      await run.exit;
    }
  });

  it('a keychain that hangs does not hang the CLI', async () => {
    // A D-Bus "session bus" that accepts connections and never answers: the Secret Service
    // client inside the keychain helper waits forever.
    const socket = join(home, 'dbus.sock');
    const hung: Server = createServer(() => undefined);
    await new Promise<void>((r) => hung.listen(socket, r));
    try {
      const started = Date.now();
      const { HOOP_KEYRING: _, ...keychainEnv } = env;
      const r = await hoopRun(['whoami'], { ...keychainEnv, DBUS_SESSION_BUS_ADDRESS: `unix:path=${socket}`, HOOP_KEYRING_TIMEOUT_MS: '1000' });
      expect(r.code).toBe(0);
      expect(r.stdout).toContain('Subject:   alice');
      expect(r.stderr).toMatch(/Notice: OS keychain unavailable \(.*\); using .*credentials\.json \(mode 0600\)\./);
      expect(Date.now() - started).toBeLessThan(8_000);
    } finally {
      hung.close();
    }
  });

  it('the gateway refuses a tampered token with its reason and records auth.failed without the token', async () => {
    const token = readCredentials().gateways[gateway.url]!.access_token;
    const [h, p, s] = token.split('.');
    const claims = JSON.parse(Buffer.from(p!, 'base64url').toString()) as Record<string, unknown>;
    const forged = `${h}.${Buffer.from(JSON.stringify({ ...claims, groups: ['dba'] })).toString('base64url')}.${s}`;
    const res = await fetch(`${gateway.url}/api/v1/me`, { headers: { authorization: `Bearer ${forged}` } });
    expect(res.status).toBe(401);
    expect(((await res.json()) as { error: { code: string; message: string } }).error).toMatchObject({ code: 'HOOP_AUTH_REJECTED', message: 'signature invalid' });
    // auth.failed is recorded after the answer: wait for it to be durable
    const events = await until(async () => {
      const all = await gateway.store.readEvents({});
      return all.some((e) => e.type === 'auth.failed') && all;
    }, { what: 'auth.failed recorded' });
    const failed = events.filter((e) => e.type === 'auth.failed');
    expect(failed.at(-1)!.data).toMatchObject({ reason: 'signature invalid', code: 'HOOP_AUTH_REJECTED' });
    expect(JSON.stringify(events)).not.toContain(s!);
  });

  it('hoop logout revokes the refresh token at the provider and forgets the credentials', async () => {
    const stored = readCredentials().gateways[gateway.url]!;
    const r = await hoopRun(['logout'], env);
    expect(r.code).toBe(0);
    expect(r.stderr).toContain(`Logged out of ${gateway.url} (refresh token revoked).`);
    expect(existsSync(credentialsFile)).toBe(false);
    const client = await OidcClient.discover(idp.issuer, idp.clientId);
    await expect(client.refreshTokenGrant(stored.refresh_token)).rejects.toThrow(/refresh token no longer valid/);
    const w = await hoopRun(['whoami'], env);
    expect(w.code).toBe(4);
    expect(w.stderr).toContain(`hoop: not logged in to ${gateway.url}`);
  });

  it('Ctrl-C while waiting ends with exit 4, a clear message, and nothing stored', async () => {
    const run = hoop(['login', '--gateway', gateway.url, '--no-browser'], env);
    await run.waitForStderr(/enter the code: (\S+)/);
    run.child.kill('SIGINT');
    expect(await run.exit).toBe(4);
    expect(run.stderr()).toContain('hoop: login cancelled');
    expect(existsSync(credentialsFile)).toBe(false);
  });

  it('an unreachable gateway is exit 1 with a one-line message', async () => {
    const port = await freePort();
    const r = await hoopRun(['login', '--gateway', `http://127.0.0.1:${port}`, '--no-browser'], env);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`hoop: cannot reach the gateway http://127.0.0.1:${port}`);
  });

  it('hoop login --client-credentials signs in a service identity', async () => {
    const r = await hoopRun(['login', '--client-credentials', '--gateway', gateway.url], {
      ...env,
      HOOP_CLIENT_ID: idp.serviceClient.clientId,
      HOOP_CLIENT_SECRET: idp.serviceClient.clientSecret,
    });
    expect(r.stderr).toContain(`Logged in to ${gateway.url} as hoop-service (groups: etl)`);
    expect(r.code).toBe(0);
    const bad = await hoopRun(['login', '--client-credentials', '--gateway', gateway.url], {
      ...env,
      HOOP_CLIENT_ID: idp.serviceClient.clientId,
      HOOP_CLIENT_SECRET: 'wrong',
    });
    expect(bad.code).toBe(4);
    expect(bad.stderr).toContain('hoop: the identity provider refused the client (invalid_client)');
  });
});
