/**
 * A long `hoop connect` across token expiry, with the real CLI, provider, gateway and psql:
 * open sessions outlive their token, new tunnels get a refreshed one, and when refreshing fails
 * the user is told to log in again while open sessions carry on.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, expect, inject, it } from 'vitest';
import { startDemoIdp, type DemoIdp } from '../../src/identity/demo-idp.js';
import { OidcClient } from '../../src/identity/device-flow.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { until } from '../helpers/poll.js';
import { completeDeviceLogin } from './browser.js';
import { assertBuilt, hoop, type Run } from './cli.js';

const ACCESS_TOKEN_SECONDS = 3;

let idp: DemoIdp;
let gateway: TestGateway;
let home: string;
let env: Record<string, string>;
let connect: Run | undefined;

const stored = () =>
  (JSON.parse(readFileSync(join(home, 'cfg', 'hoop', 'credentials.json'), 'utf8')) as { gateways: Record<string, { access_token: string; refresh_token: string }> })
    .gateways[gateway.url]!;

beforeAll(async () => {
  assertBuilt();
  idp = await startDemoIdp({ pollInterval: 1, accessTokenTtl: ACCESS_TOKEN_SECONDS });
  gateway = await startTestGateway({
    upstream: inject('upstream'),
    config: { identity: { oidc: { issuer: idp.issuer, client_id: idp.clientId, audience: 'hoop', scopes: ['openid', 'email', 'profile', 'groups', 'offline_access'] }, api_keys: [] } },
  });
  home = mkdtempSync(join(tmpdir(), 'hoop-connect-refresh-'));
  env = { HOME: home, XDG_CONFIG_HOME: join(home, 'cfg'), HOOP_KEYRING: 'file' };
  const login = hoop(['login', '--gateway', gateway.url, '--no-browser'], env);
  const [, url] = await login.waitForStderr(/To sign in, open (\S+)/);
  const [, code] = await login.waitForStderr(/enter the code: (\S+)/);
  await completeDeviceLogin(url!, code!, idp.users.find((u) => u.username === 'alice')!);
  expect(await login.exit).toBe(0);
});

afterAll(async () => {
  if (connect) {
    connect.child.kill('SIGINT');
    await connect.exit;
  }
  await gateway?.close();
  await idp?.close();
  rmSync(home, { recursive: true, force: true });
});

it('open sessions outlive the token; new tunnels use refreshed ones; a failed refresh asks for a new login', async () => {
  connect = hoop(['connect', 'bank', '--port', '0', '--json'], env);
  const [line] = await connect.waitForStdout(/^\{.*\}$/m, 20_000);
  const { uri } = JSON.parse(line) as { uri: string };
  const query = async (client: pg.Client) => (await client.query<{ who: string }>('select current_user as who')).rows[0]!.who;

  const early = new pg.Client({ connectionString: uri });
  await early.connect();
  const upstreamUser = await query(early);
  const firstToken = stored().access_token;

  // The background refresh replaces the token before it expires; a new tunnel then works with it.
  await until(() => stored().access_token !== firstToken, { timeoutMs: (ACCESS_TOKEN_SECONDS + 5) * 1000, intervalMs: 100 });
  const later = new pg.Client({ connectionString: uri });
  await later.connect();
  expect(await query(later)).toBe(upstreamUser);
  await later.end();

  // The provider ends the login: the next refresh fails and `hoop connect` says so, once.
  const client = await OidcClient.discover(idp.issuer, idp.clientId);
  await client.tokenRevocation(stored().refresh_token, 'refresh_token');
  await connect.waitForStderr(/your login to \S+ has expired .*run `hoop login --gateway \S+` again; open sessions continue/, (ACCESS_TOKEN_SECONDS + 5) * 1000);

  // A new connection is refused with that instruction, as a PostgreSQL error psql shows...
  const refused = new pg.Client({ connectionString: uri });
  await expect(refused.connect()).rejects.toThrow(/hoop login/);
  await refused.end().catch(() => {});
  // ...while the session opened with the first token, long expired, keeps working.
  expect(await query(early)).toBe(upstreamUser);
  await early.end();
  expect(connect.child.exitCode).toBeNull();
}, 60_000);
