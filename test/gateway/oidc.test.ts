/** OIDC joins the authenticator chain beside API keys: a real provider's tokens, end to end. */
import { request } from 'undici';
import { afterAll, beforeAll, expect, inject, test } from 'vitest';
import { startDemoIdp, type DemoIdp } from '../../src/identity/demo-idp.js';
import { bankConnection, startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { tunnelClient } from './ws-client.js';

const upstream = inject('upstream');
let idp: DemoIdp;
let gw: TestGateway;
let token: string;

beforeAll(async () => {
  idp = await startDemoIdp();
  gw = await startTestGateway({
    upstream,
    connections: [bankConnection(upstream, { access: ['etl'] })],
    apiKeys: [{ name: 'alice', groups: ['analysts'] }],
    oidc: { issuer: idp.issuer, client_id: idp.clientId, audience: idp.audience, groups_claim: 'groups' },
  });
  const basic = Buffer.from(`${idp.serviceClient.clientId}:${idp.serviceClient.clientSecret}`).toString('base64');
  const res = await fetch(`${idp.issuer}/token`, {
    method: 'POST',
    headers: { authorization: `Basic ${basic}`, 'content-type': 'application/x-www-form-urlencoded' },
    body: 'grant_type=client_credentials',
  });
  token = ((await res.json()) as { access_token: string }).access_token;
});
afterAll(async () => {
  await gw?.close();
  await idp?.close();
});

const me = async (bearer: string) => {
  const res = await request(`${gw.url}/api/v1/me`, { headers: { authorization: `Bearer ${bearer}` } });
  return { status: res.statusCode, body: (await res.body.json()) as any };
};

test('auth/config publishes the OIDC settings for hoop login', async () => {
  const res = await request(`${gw.url}/api/v1/auth/config`);
  expect(await res.body.json()).toEqual({ issuer: idp.issuer, client_id: idp.clientId, audience: idp.audience, scopes: ['openid', 'profile', 'email', 'offline_access'] });
});

test('an access token from the provider and an API key both authenticate', async () => {
  const viaOidc = await me(token);
  expect(viaOidc.status).toBe(200);
  expect(viaOidc.body).toMatchObject({ subject: idp.serviceClient.clientId, method: 'oidc', groups: idp.serviceClient.groups });
  expect(Date.parse(viaOidc.body.expires_at)).toBeGreaterThan(Date.now());
  expect((await me(gw.keys['alice']!)).body.subject).toBe('apikey:alice');
});

test('a tampered token is refused with a reason and recorded without the token', async () => {
  const [h, p, s] = token.split('.');
  const payload = JSON.parse(Buffer.from(p!, 'base64url').toString());
  payload.groups = ['platform'];
  const forged = `${h}.${Buffer.from(JSON.stringify(payload)).toString('base64url')}.${s}`;
  const r = await me(forged);
  expect(r.status).toBe(401);
  expect(r.body.error.code).toBe('HOOP_AUTH_REJECTED');
  await expect.poll(async () => (await gw.store.readEvents({})).filter((e) => e.type === 'auth.failed').length).toBeGreaterThan(0);
  expect(JSON.stringify(await gw.store.readEvents({}))).not.toContain(s!);
});

test('a tunnel session with an OIDC identity records auth_method oidc', async () => {
  const client = await tunnelClient(gw.url, 'bank', token);
  expect((await client.query('SELECT 1 AS one')).rows).toEqual([{ one: 1 }]);
  await client.end();
  const [s] = await gw.store.listSessions({ subject: idp.serviceClient.clientId });
  const { events } = (await gw.store.getSession(s!.id))!;
  expect(events[0]!.actor).toMatchObject({ subject: idp.serviceClient.clientId, auth_method: 'oidc', groups: idp.serviceClient.groups });
});
