/**
 * Network isolation made real: a PostgreSQL that listens only inside a Linux network namespace
 * (its own loopback), an agent inside that namespace, a gateway process outside it that can reach
 * the agent's side only through a veth pair — and psql through `hoop connect` reaching the
 * database through the agent, with TLS (sslmode=verify-full) running end to end through it,
 * while the gateway itself cannot reach the database at all.
 *
 * Needs root and iproute2 (`ip netns`); without them the test FAILS saying so (never skips).
 * Names are unique (hoop-t-<random>), addresses private (10.x), and afterAll removes the
 * namespace (and with it the veth pair), the processes and the temp dirs even after a failure.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { openLocalTunnel } from '../../src/client/tunnel.js';
import { PostgresCluster, freePort } from '../../src/demo/postgres-cluster.js';
import { BIN, apiGet, newAgentKey, sha256Hex, startAgentProc, startGatewayProc, stopAll } from '../helpers/agent.js';
import { runClient } from '../helpers/clients.js';
import { newApiKey } from '../helpers/gateway.js';
import { until } from '../helpers/poll.js';
import { makeCertificates } from '../helpers/tls.js';
import type { ConnectionInfo } from '../../src/api/types.js';

const tag = randomBytes(3).toString('hex');
const ns = `hoop-t-${tag}`;
const hostIf = `hh${tag}`; // interface names: at most 15 characters
const nsIf = `hn${tag}`;
const net = `10.${200 + (parseInt(tag.slice(0, 2), 16) % 50)}.${parseInt(tag.slice(2, 4), 16)}`;
const hostAddr = `${net}.1`;
const nsAddr = `${net}.2`;
const dir = mkdtempSync(join(tmpdir(), 'hoop-netns-'));
const home = join(dir, 'home');
const agentKey = newAgentKey();
const apiKey = newApiKey();
let cluster: PostgresCluster | null = null;
let nsCreated = false;
let url: string;

function ip(...args: string[]): string {
  return execFileSync('ip', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

beforeAll(async () => {
  if (userInfo().uid !== 0) throw new Error('this test needs root: it creates a network namespace and a veth pair (ip netns add); run the suite as root');
  try {
    ip('netns', 'add', ns);
    nsCreated = true;
    ip('link', 'add', hostIf, 'type', 'veth', 'peer', 'name', nsIf);
    ip('link', 'set', nsIf, 'netns', ns);
    ip('addr', 'add', `${hostAddr}/30`, 'dev', hostIf);
    ip('link', 'set', hostIf, 'up');
    ip('netns', 'exec', ns, 'ip', 'addr', 'add', `${nsAddr}/30`, 'dev', nsIf);
    ip('netns', 'exec', ns, 'ip', 'link', 'set', nsIf, 'up');
    ip('netns', 'exec', ns, 'ip', 'link', 'set', 'lo', 'up');
  } catch (err) {
    throw new Error(`cannot set up the network namespace ${ns} (needs root and iproute2): ${(err as { stderr?: string }).stderr ?? String(err)}`);
  }
  // PostgreSQL inside the namespace: it listens on the namespace's own 127.0.0.1 only, with TLS.
  const certs = makeCertificates();
  cluster = await PostgresCluster.start({
    name: 'hoop-netns-pg',
    prefix: ['ip', 'netns', 'exec', ns],
    tls: { cert: certs.cert, key: certs.key },
    hba: ['local all all trust', 'hostssl all all 127.0.0.1/32 scram-sha-256', 'host all all 0.0.0.0/0 reject'],
  });
  // Set up over the Unix socket (a file, not the network).
  await cluster.psql("SET password_encryption = 'scram-sha-256'; CREATE ROLE hoop_svc LOGIN PASSWORD 'svc-secret'");
  await cluster.psql('CREATE DATABASE bank OWNER hoop_svc');
  await cluster.psql("CREATE TABLE marker (v text, ssn text); INSERT INTO marker VALUES ('inside the namespace', '123-45-6789'); ALTER TABLE marker OWNER TO hoop_svc", 'bank');

  const port = await freePort();
  url = `http://${hostAddr}:${port}`;
  const config = join(dir, 'hoop.yaml');
  const upstream = { host: '127.0.0.1', port: cluster.port, database: 'bank', user: 'hoop_svc', password: 'svc-secret', sslmode: 'verify-full', ca: certs.ca };
  writeFileSync(config, JSON.stringify({
    listen: `${hostAddr}:${port}`,
    store: `sqlite:${join(dir, 'hoop.db')}`,
    identity: { api_keys: [{ name: 'alice', sha256: sha256Hex(apiKey), groups: ['analysts'] }] },
    agents: [{ name: 'dc1', sha256: sha256Hex(agentKey) }],
    connections: [
      // Masking reads the catalog on a connection of its own: through the agent too.
      { name: 'bank', type: 'postgres', upstream, access: ['analysts'], agent: 'dc1', masking: { columns: [{ column: 'public.marker.ssn', type: 'ssn', method: 'partial', keep: 4 }] } },
      // The same database without the agent: the gateway would dial it itself.
      { name: 'direct', type: 'postgres', upstream: { ...upstream, connect_timeout: '2s' }, access: ['analysts'] },
    ],
    audit: { signing_key: join(dir, 'signing.key') },
  }));
  await startGatewayProc(config, url, { HOOP_INSECURE_HTTP: '1' });
  // The agent runs in the namespace: the database on its loopback, the gateway over the veth pair.
  const agent = startAgentProc(['--gateway', url, '--allow', `127.0.0.1:${cluster.port}`], agentKey, { HOOP_INSECURE_HTTP: '1' }, ['ip', 'netns', 'exec', ns]);
  await agent.waitForLog('agent connected');
}, 120_000);

afterAll(async () => {
  await stopAll();
  await cluster?.stop();
  if (nsCreated) {
    try {
      ip('netns', 'del', ns); // takes the veth pair with it
    } catch { /* already gone */ }
  }
  try {
    ip('link', 'del', hostIf);
  } catch { /* gone with the namespace */ }
  rmSync(dir, { recursive: true, force: true });
});

function refused(host: string, port: number): Promise<string> {
  return new Promise((resolve) => {
    const s = connect({ host, port, timeout: 2_000 });
    s.once('connect', () => {
      s.destroy();
      resolve('connected');
    });
    s.once('timeout', () => {
      s.destroy();
      resolve('timeout');
    });
    s.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
  });
}

test('psql through hoop connect reaches the namespaced database only through the agent, over TLS end to end, masked with the catalog read through the agent too; the gateway cannot reach it itself', async () => {
  // From the gateway's network the database is not there: not on loopback, not on the namespace's address.
  expect(await refused('127.0.0.1', cluster!.port)).toBe('ECONNREFUSED');
  expect(await refused(nsAddr, cluster!.port)).toBe('ECONNREFUSED');
  const bank = (await apiGet<ConnectionInfo[]>(url, '/api/v1/connections', apiKey)).find((c) => c.name === 'bank')!;
  expect(bank.agent).toEqual({ name: 'dc1', online: true, links: 1 });

  const env = { HOOP_GATEWAY: url, HOOP_TOKEN: apiKey, HOOP_INSECURE_HTTP: '1', HOME: home, XDG_CONFIG_HOME: join(home, '.config') };
  const sql = 'select v, ssn, (select ssl from pg_stat_ssl where pid = pg_backend_pid()) from marker';
  const through = await runClient(process.execPath, [BIN, 'connect', 'bank', '--', 'psql', '-X', '-At', '-c', sql], { env });
  expect(through.stderr).not.toMatch(/error|FATAL/i);
  expect(through.code).toBe(0);
  const [v, ssn, ssl] = through.stdout.trim().split('|');
  expect([v, ssl]).toEqual(['inside the namespace', 't']);
  expect(ssn).toMatch(/6789$/);
  expect(ssn).not.toContain('123-45');

  // The same database as a connection without the agent: the gateway's own dial fails.
  const direct = await runClient(process.execPath, [BIN, 'connect', 'direct', '--', 'psql', '-X', '-At', '-c', 'select 1'], { env });
  expect(direct.code).not.toBe(0);
  expect(direct.stderr).toContain('the database behind this connection is unreachable from the gateway');
});

test('an agent that cannot reach the database (outside the namespace) hands each dial on to one that can', async () => {
  const outside = startAgentProc(['--gateway', url, '--allow', `127.0.0.1:${cluster!.port}`], agentKey, { HOOP_INSECURE_HTTP: '1' });
  await outside.waitForLog('agent connected');
  await until(async () => (await apiGet<ConnectionInfo[]>(url, '/api/v1/connections', apiKey)).find((c) => c.name === 'bank')!.agent!.links === 2);
  const tunnel = await openLocalTunnel({ gateway: url, connection: 'bank', token: async () => apiKey, port: 0, user: 'alice', database: 'bank' });
  try {
    for (let i = 0; i < 4; i++) {
      const c = new pg.Client({ host: tunnel.host, port: tunnel.port, user: tunnel.user, password: tunnel.password, database: tunnel.database });
      await c.connect();
      expect((await c.query('select v from marker')).rows).toEqual([{ v: 'inside the namespace' }]);
      await c.end();
    }
  } finally {
    await tunnel.close();
  }
  // Its turn came, it could not connect, and the gateway went on to the agent inside.
  expect(outside.logs('could not dial the target').length).toBeGreaterThan(0);
  await outside.kill();
});
