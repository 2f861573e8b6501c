/**
 * Two real `hoop gateway` replicas on one postgres:// store and one `hoop agent` given both
 * URLs: an agent holds a link to every replica, so a session on either replica reaches the
 * database through that replica's own link; the audit chain (one store) has both links'
 * `agent.connected`, and either replica lists the sessions of both. A replica going away leaves
 * the other's link, and its sessions, untouched.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, expect, inject, test } from 'vitest';
import type { AuditEvent, ConnectionInfo } from '../../src/api/types.js';
import { openLocalTunnel, type LocalTunnel } from '../../src/client/tunnel.js';
import { freePort } from '../../src/demo/postgres-cluster.js';
import { apiGet, newAgentKey, sha256Hex, startAgentProc, startGatewayProc, stopAll, type Proc } from '../helpers/agent.js';
import { newApiKey } from '../helpers/gateway.js';
import { until } from '../helpers/poll.js';
import { createTestDatabase, passwordOf, type UpstreamInfo } from '../helpers/postgres.js';

const shared = inject('upstream');
const dir = mkdtempSync(join(tmpdir(), 'hoop-agent-replicas-'));
const agentKey = newAgentKey();
const keys = { alice: newApiKey(), root: newApiKey() };
let storeDb: { info: UpstreamInfo; drop(): Promise<void> };
const replicas: { url: string; proc: Proc }[] = [];
let agent: Proc;
const tunnels: LocalTunnel[] = [];

async function startReplica(): Promise<{ url: string; proc: Proc }> {
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const s = storeDb.info;
  const user = shared.users.scram;
  const config = join(dir, `hoop-${port}.yaml`);
  // The same config for both but the port (a replica per host would share it whole).
  writeFileSync(config, JSON.stringify({
    listen: `127.0.0.1:${port}`,
    workers: 1, // a replica per process here; workers of one gateway: test/e2e/workers.test.ts
    store: `postgres://${s.users.scram}:${passwordOf(s.users.scram)}@${s.host}:${s.port}/${s.database}`,
    identity: { api_keys: [{ name: 'alice', sha256: sha256Hex(keys.alice), groups: ['analysts'] }, { name: 'root', sha256: sha256Hex(keys.root), groups: ['platform'] }] },
    roles: { admin: ['platform'] },
    agents: [{ name: 'dc1', sha256: sha256Hex(agentKey) }],
    connections: [{ name: 'bank', type: 'postgres', upstream: { host: shared.host, port: shared.port, database: shared.database, user, password: passwordOf(user), sslmode: 'disable' }, access: ['analysts'], agent: 'dc1' }],
    audit: { signing_key: join(dir, 'signing.key') },
  }));
  const r = { url, proc: await startGatewayProc(config, url) };
  replicas.push(r);
  return r;
}

async function links(url: string): Promise<number> {
  return (await apiGet<ConnectionInfo[]>(url, '/api/v1/connections', keys.alice))[0]!.agent!.links;
}

/** One statement through `url`; resolves with the session's id. */
async function queryVia(url: string, application: string): Promise<string> {
  let session: string | undefined;
  const t = await openLocalTunnel({ gateway: url, connection: 'bank', token: async () => keys.alice, port: 0, user: 'alice', database: shared.database, onEvent: (e) => void (e.sessionId && (session = e.sessionId)) });
  tunnels.push(t);
  const c = new pg.Client({ host: t.host, port: t.port, user: t.user, password: t.password, database: t.database, application_name: application });
  await c.connect();
  expect((await c.query('select $1::text as via', [application])).rows).toEqual([{ via: application }]);
  await c.end();
  return until(() => session);
}

beforeAll(async () => {
  storeDb = await createTestDatabase(shared, 'agent_replicas_store');
  await startReplica(); // first: creates the store's schema and the signing key
  await startReplica();
  agent = startAgentProc(['--gateway', replicas[0]!.url, '--gateway', replicas[1]!.url, '--allow', `${shared.host}:${shared.port}`], agentKey);
  await agent.waitForLog('agent connected', {}, 2);
}, 120_000);

afterAll(async () => {
  await Promise.all(tunnels.map((t) => t.close().catch(() => {})));
  await stopAll();
  await storeDb?.drop().catch(() => {});
  rmSync(dir, { recursive: true, force: true });
});

test('one agent, two replicas: each replica reaches the database over its own link; one chain, one session list', async () => {
  const [a, b] = replicas as [{ url: string; proc: Proc }, { url: string; proc: Proc }];
  await until(async () => (await links(a.url)) === 1 && (await links(b.url)) === 1, { what: 'a link on each replica' });
  expect(agent.logs('agent connected').map((l) => l['gateway']).sort()).toEqual([a.url, b.url].sort());
  const viaA = await queryVia(a.url, 'agent-replica-a');
  const viaB = await queryVia(b.url, 'agent-replica-b');
  // Either replica lists both sessions (one store).
  const listed = await until(async () => {
    const ids = (await apiGet<{ id: string }[]>(b.url, '/api/v1/sessions?connection=bank', keys.alice)).map((s) => s.id);
    return ids.includes(viaA) && ids.includes(viaB) ? ids : null;
  });
  expect(listed).toEqual(expect.arrayContaining([viaA, viaB]));
  const connected = await apiGet<AuditEvent[]>(a.url, '/api/v1/audit/events?type=agent.connected', keys.root);
  expect(connected.length).toBe(2);
  expect(new Set(connected.map((e) => e.data['link'])).size).toBe(2);

  // Replica A goes away: the agent keeps its link to B, and B's sessions go on.
  await a.proc.kill('SIGKILL');
  await agent.waitForLog('agent link lost', { gateway: a.url });
  expect(await links(b.url)).toBe(1);
  await queryVia(b.url, 'agent-replica-b-alone');
  await agent.waitForLog('reconnecting', { gateway: a.url });
});
