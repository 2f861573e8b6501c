/** The gateway's refusals as a user meets them: psql through `hoop connect`'s local tunnel. */
import { afterAll, beforeAll, expect, inject, test } from 'vitest';
import { openLocalTunnel, type LocalTunnel, type TunnelEvent } from '../../src/client/tunnel.js';
import { psql } from '../helpers/clients.js';
import { bankConnection, startTestGateway, type TestGateway } from '../helpers/gateway.js';

const upstream = inject('upstream');
let gw: TestGateway;
const tunnels: LocalTunnel[] = [];

beforeAll(async () => {
  gw = await startTestGateway({ upstream, connections: [bankConnection(upstream), bankConnection(upstream, { name: 'ledger', access: ['finance'] })] });
});
afterAll(async () => {
  for (const t of tunnels) await t.close();
  await gw?.close();
});

async function tunnel(connection: string, key: string, events: TunnelEvent[] = [], reason?: string): Promise<LocalTunnel> {
  const t = await openLocalTunnel({
    gateway: gw.url, connection, token: async () => key, port: 0, user: 'me', database: upstream.database,
    onEvent: (e) => events.push(e), ...(reason ? { reason } : {}),
  });
  tunnels.push(t);
  return t;
}

test('psql works through the local tunnel and the session carries the reason', async () => {
  const t = await tunnel('bank', gw.keys['bob']!, [], 'INC-7 check balances');
  const r = await psql(t.uri, ['-c', 'SELECT 6 * 7']);
  expect(r.stdout.trim()).toBe('42');
  const [s] = await gw.store.listSessions({ subject: 'apikey:bob' });
  const got = await gw.store.getSession(s!.id);
  expect(got!.events[0]!.data['reason']).toBe('INC-7 check balances');
});

test('403 and 401 reach psql as a FATAL with the gateway\'s reason', async () => {
  const events: TunnelEvent[] = [];
  const denied = await tunnel('ledger', gw.keys['alice']!, events);
  const r = await psql(denied.uri, ['-c', 'SELECT 1']);
  expect(r.code).not.toBe(0);
  expect(r.stderr).toContain('apikey:alice may not use connection ledger (it requires one of the groups: finance)');
  expect(events.some((e) => e.kind === 'refused')).toBe(true);

  const bad = await tunnel('bank', 'hoop_revoked-or-mistyped');
  const r2 = await psql(bad.uri, ['-c', 'SELECT 1']);
  expect(r2.stderr).toContain('unknown API key');
});
