/**
 * `hoop agent` end to end with real processes: a `hoop gateway` process whose connections name
 * `agent: dc1`, agents started from bin/hoop.js, the shared PostgreSQL, and clients through the
 * local tunnel `hoop connect` uses. The allow-list refusal (recorded on both sides), two agents
 * sharing the work, an agent killed mid-query, agents reconnecting after a gateway restart, and a
 * slow reader across the agent with every process's memory flat.
 * (Network isolation — the gateway cannot reach the database at all — is netns.test.ts.)
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import pg from 'pg';
import { serialize } from 'pg-protocol';
import { to as copyTo } from 'pg-copy-streams';
import { afterAll, beforeAll, describe, expect, inject, test } from 'vitest';
import type { AuditEvent, ConnectionInfo } from '../../src/api/types.js';
import { openLocalTunnel, type LocalTunnel, type TunnelEvent } from '../../src/client/tunnel.js';
import { freePort } from '../../src/demo/postgres-cluster.js';
import { runClient } from '../helpers/clients.js';
import { BIN, apiGet, newAgentKey, sha256Hex, startAgentProc, startGatewayProc, stopAll, type Proc } from '../helpers/agent.js';
import { newApiKey } from '../helpers/gateway.js';
import { runHoop } from '../cli/helpers.js';
import { until } from '../helpers/poll.js';
import { passwordOf, runningPids } from '../helpers/postgres.js';

const upstream = inject('upstream');
const dir = mkdtempSync(join(tmpdir(), 'hoop-agent-'));
const agentKey = newAgentKey();
const secondKey = newAgentKey(); // a second key of the same agent name (one pool, two keys)
const keys = { alice: newApiKey(), root: newApiKey() };
const allowed = `${upstream.host}:${upstream.port}`;
let port: number;
let url: string;
let config: string;
let gateway: Proc;
const tunnels: LocalTunnel[] = [];

function writeConfig(): void {
  const user = upstream.users.scram;
  const db = (host: string) => ({ host, port: upstream.port, database: upstream.database, user, password: passwordOf(user), sslmode: 'disable' });
  // JSON is YAML.
  writeFileSync(config, JSON.stringify({
    listen: `127.0.0.1:${port}`,
    store: `sqlite:${join(dir, 'hoop.db')}`,
    identity: { api_keys: [{ name: 'alice', sha256: sha256Hex(keys.alice), groups: ['analysts'] }, { name: 'root', sha256: sha256Hex(keys.root), groups: ['platform'] }] },
    roles: { admin: ['platform'] },
    agents: [{ name: 'dc1', sha256: sha256Hex(agentKey) }, { name: 'dc1', sha256: sha256Hex(secondKey) }],
    connections: [
      { name: 'bank', type: 'postgres', upstream: db(upstream.host), access: ['analysts'], agent: 'dc1' },
      // The same server under a name the agents' allow-list does not have: refused by the agent.
      { name: 'vault', type: 'postgres', upstream: db('localhost'), access: ['analysts'], agent: 'dc1' },
      // TLS to the database, end to end through the agent (the TLS-only user must come over TLS).
      { name: 'secure', type: 'postgres', upstream: { ...db(upstream.host), user: upstream.users.tlsOnly, password: passwordOf(upstream.users.tlsOnly), sslmode: 'verify-full', ca: upstream.ca }, access: ['analysts'], agent: 'dc1' },
    ],
    audit: { signing_key: join(dir, 'signing.key') },
  }));
}

function agent(key = agentKey, extra: string[] = []): Proc {
  return startAgentProc(['--gateway', url, '--allow', allowed, '--log-level', 'debug', ...extra], key);
}

async function links(): Promise<number> {
  const list = await apiGet<ConnectionInfo[]>(url, '/api/v1/connections', keys.alice);
  return list.find((c) => c.name === 'bank')!.agent!.links;
}

async function events(type: string): Promise<AuditEvent[]> {
  return apiGet<AuditEvent[]>(url, `/api/v1/audit/events?type=${type}&limit=1000`, keys.root);
}

/** A pg client through a fresh local tunnel to `connection`; the session id arrives in `session`. */
async function client(connection: string, application: string): Promise<{ c: pg.Client; session: () => string | undefined }> {
  let session: string | undefined;
  const t = await openLocalTunnel({
    gateway: url, connection, token: async () => keys.alice, port: 0, user: 'alice', database: upstream.database,
    onEvent: (e: TunnelEvent) => void (e.sessionId && (session = e.sessionId)),
  });
  tunnels.push(t);
  const c = new pg.Client({ host: t.host, port: t.port, user: t.user, password: t.password, database: t.database, application_name: application });
  c.on('error', () => {});
  return { c, session: () => session };
}

let first: Proc;

beforeAll(async () => {
  port = await freePort();
  url = `http://127.0.0.1:${port}`;
  config = join(dir, 'hoop.yaml');
  writeConfig();
  gateway = await startGatewayProc(config, url);
  first = agent();
  await first.waitForLog('agent connected');
  await until(async () => (await links()) === 1, { what: 'one agent link' });
});

afterAll(async () => {
  await Promise.all(tunnels.map((t) => t.close().catch(() => {})));
  await stopAll();
  rmSync(dir, { recursive: true, force: true });
});

test('hoop agent refuses bad usage with exit 2 and a line saying what to do', async () => {
  const key = { HOOP_AGENT_KEY: 'k' };
  expect(await runHoop(['agent', '--gateway', url, '--allow', allowed], { env: {} })).toMatchObject({ code: 2, stderr: expect.stringContaining('HOOP_AGENT_KEY is not set') });
  expect(await runHoop(['agent', '--allow', allowed], { env: key })).toMatchObject({ code: 2, stderr: expect.stringContaining('no gateway to link to') });
  expect(await runHoop(['agent', '--gateway', url], { env: key })).toMatchObject({ code: 2, stderr: expect.stringContaining('the allow-list is empty') });
  expect(await runHoop(['agent', '--gateway', url, '--allow', 'db.internal'], { env: key })).toMatchObject({ code: 2, stderr: expect.stringContaining('invalid allow-list entry "db.internal" (from --allow): expected HOST:PORT') });
  expect(await runHoop(['agent', '--gateway', url], { env: { ...key, HOOP_AGENT_ALLOW: 'a:1,b:x' } })).toMatchObject({ code: 2, stderr: expect.stringContaining('"b:x" (from HOOP_AGENT_ALLOW)') });
  expect(await runHoop(['agent', '--gateway', 'http://10.1.2.3:8009', '--allow', allowed], { env: key })).toMatchObject({ code: 2, stderr: expect.stringContaining('refusing to send credentials over plain http') });
});

test('a session runs through the agent: listed online, counted in /metrics, recorded as agent.connected', async () => {
  const { c } = await client('bank', 'agent-basic');
  await c.connect();
  expect((await c.query("select 'through the agent' as v")).rows).toEqual([{ v: 'through the agent' }]);
  const streams = async () => Number(/^hoop_agent_streams (\d+)$/m.exec(await (await fetch(`${url}/metrics`)).text())?.[1]);
  expect(await streams()).toBe(1);
  await c.end();
  let seen = -1;
  await until(async () => (seen = await streams()) === 0, { what: () => `the stream closed with the session (streams: ${seen})` });
  const bank = (await apiGet<ConnectionInfo[]>(url, '/api/v1/connections', keys.alice)).find((x) => x.name === 'bank')!;
  expect(bank.agent).toEqual({ name: 'dc1', online: true, links: 1 });
  const metrics = await (await fetch(`${url}/metrics`)).text();
  expect(metrics).toMatch(/^hoop_agent_links\{agent="dc1"\} 1$/m);
  expect(Number(/^hoop_agent_stream_bytes_total\{direction="from_agent"\} (\d+)$/m.exec(metrics)?.[1])).toBeGreaterThan(0);
  expect(Number(/^hoop_agent_stream_bytes_total\{direction="to_agent"\} (\d+)$/m.exec(metrics)?.[1])).toBeGreaterThan(0);
  const listed = await runHoop(['connections'], { env: { HOOP_GATEWAY: url, HOOP_TOKEN: keys.alice } });
  expect(listed.stdout.split('\n').find((l) => l.startsWith('bank\t'))).toMatch(/\tdc1 online \(1 link\)$/);
  const connected = await events('agent.connected');
  expect(connected.length).toBeGreaterThanOrEqual(1);
  expect(connected[0]!.actor).toMatchObject({ subject: 'agent:dc1', auth_method: 'agent_key' });
  expect(connected[0]!.data).toMatchObject({ agent: 'dc1' });
  // The agent never logs its key.
  expect(first.stderr()).not.toContain(agentKey);
  expect(gateway.stderr()).not.toContain(agentKey);
});

test('a cancel request (psql\'s Ctrl-C) reaches the database through the agent too', async () => {
  const { c } = await client('bank', 'agent-cancel');
  await c.connect();
  const sql = 'select pg_sleep(30) as agent_cancel';
  const running = c.query(sql).then(() => null, (e: Error) => e);
  await until(async () => (await runningPids(upstream, sql)).length === 1, { what: 'the query running upstream' });
  // As libpq does: a CancelRequest with the session's key on a connection of its own.
  const { processID, secretKey } = c as unknown as { processID: number; secretKey: number };
  const t = tunnels.at(-1)!;
  const streamsBefore = first.logs('stream opened').length;
  await new Promise<void>((resolve, reject) => {
    const s = connect({ host: t.host, port: t.port }, () => s.end(serialize.cancel(processID, secretKey)));
    s.on('close', () => resolve());
    s.on('error', reject);
  });
  expect((await running)?.message).toBe('canceling statement due to user request');
  expect(first.logs('stream opened').length).toBe(streamsBefore + 1); // the cancel's own stream, through the agent
  expect((await c.query('select 3 as n')).rows).toEqual([{ n: 3 }]); // the session goes on
  await c.end();
});

test('the server ending a session reaches the client whole: its last ErrorResponse comes before the end', async () => {
  const { c } = await client('bank', 'agent-terminated');
  const errors: string[] = [];
  c.on('error', (e: Error) => errors.push(e.message));
  await c.connect();
  const pid = (await c.query<{ pid: number }>('select pg_backend_pid() as pid')).rows[0]!.pid;
  const direct = new pg.Client({ host: upstream.host, port: upstream.port, user: upstream.users.trust, database: 'postgres' });
  await direct.connect();
  await direct.query('select pg_terminate_backend($1)', [pid]);
  await direct.end();
  await until(() => errors.length > 0, { what: 'the client to hear of the end' });
  expect(errors[0]).toBe('terminating connection due to administrator command');
});

test('a target outside the allow-list is refused by the agent: the client is told, both sides log it, agent.refused is recorded with the session', async () => {
  const { c, session } = await client('vault', 'agent-refused');
  const err = await c.connect().then(() => null, (e: Error) => e);
  expect(err?.message).toBe('hoop: the agent dc1 refused to reach the database of connection vault (not in its allow-list); an administrator can find the cause in the gateway\'s log');
  const target = `localhost:${upstream.port}`;
  await first.waitForLog('refused a dial outside the allow-list', { target });
  await gateway.waitForLog('the agent refused a dial outside its allow-list', { target, connection: 'vault' });
  const refused = await until(async () => (await events('agent.refused')).find((e) => e.connection === 'vault'));
  expect(refused.session_id).toBe(session());
  expect(refused.data).toMatchObject({ agent: 'dc1', target, reason: `${target} is not in the agent's allow-list` });
});

describe('two agents', () => {
  let second: Proc;

  test('new sessions are spread over both, one stream each in turn', async () => {
    second = agent(secondKey);
    await second.waitForLog('agent connected');
    await until(async () => (await links()) === 2, { what: 'two agent links' });
    const before = [first.logs('stream opened').length, second.logs('stream opened').length];
    for (let i = 0; i < 4; i++) {
      const { c } = await client('bank', `agent-spread-${i}`);
      await c.connect();
      await c.query('select 1');
      await c.end();
    }
    await until(() => first.logs('stream opened').length + second.logs('stream opened').length - before[0]! - before[1]! === 4);
    expect(first.logs('stream opened').length - before[0]!).toBe(2);
    expect(second.logs('stream opened').length - before[1]!).toBe(2);
  });

  test('killing the agent under a running query ends that session with a clear error and a record; the statement is cancelled and the next session goes through the other agent', async () => {
    const sql = 'select pg_sleep(60) as agent_loss';
    const { c, session } = await client('bank', 'agent-loss');
    const opened = [first.logs('stream opened').length, second.logs('stream opened').length];
    await c.connect();
    const carrier = first.logs('stream opened').length > opened[0]! ? first : second;
    const survivor = carrier === first ? second : first;
    const running = c.query(sql).then(() => null, (e: Error) => e);
    const pid = await until(async () => (await runningPids(upstream, sql))[0], { what: 'the query running upstream' });
    expect(pid).toBeGreaterThan(0);
    await carrier.kill('SIGKILL');
    const err = await running;
    expect(err?.message).toBe('hoop: the agent link to dc1 was lost');
    // The gateway's cancel went through the surviving agent: the statement stops upstream.
    await until(async () => (await runningPids(upstream, sql)).length === 0, { what: 'the statement to be cancelled upstream' });
    const end = await until(async () => (await events('session.end')).find((e) => e.session_id === session()));
    expect(JSON.stringify(end.data)).toContain('the agent link to dc1 was lost');
    await until(async () => (await events('agent.disconnected')).length >= 1);
    await until(async () => (await links()) === 1, { what: 'the dead link gone' });
    const next = await client('bank', 'agent-after-loss');
    await next.c.connect();
    expect((await next.c.query('select 2 as n')).rows).toEqual([{ n: 2 }]);
    await next.c.end();
    expect(survivor.child.exitCode).toBeNull();
    first = survivor;
  });
});

test('with no agent connected, a session is refused with a FATAL that says so; a restarted gateway gets its agent back by itself', async () => {
  await gateway.kill('SIGTERM');
  await first.waitForLog('agent link lost');
  await first.waitForLog('reconnecting');
  gateway = await startGatewayProc(config, url);
  await first.waitForLog('agent connected', {}, 2, 20_000);
  await until(async () => (await links()) === 1, { what: 'the agent back on the new gateway' });
  const { c } = await client('bank', 'agent-after-restart');
  await c.connect();
  expect((await c.query("select 'back' as v")).rows).toEqual([{ v: 'back' }]);
  await c.end();
  // And once it is gone for good, sessions are refused with what is wrong.
  await first.kill('SIGTERM');
  await until(async () => (await links()) === 0, { what: 'no link left' });
  const bank = (await apiGet<ConnectionInfo[]>(url, '/api/v1/connections', keys.alice)).find((x) => x.name === 'bank')!;
  expect(bank.agent).toEqual({ name: 'dc1', online: false, links: 0 });
  const offline = await client('bank', 'agent-offline');
  const err = await offline.c.connect().then(() => null, (e: Error) => e);
  expect(err?.message).toBe('hoop: connection bank is offline: no agent dc1 connected');
  // hoop connect says so before the client even starts, and psql gets the FATAL.
  const home = join(dir, 'home');
  const run = await runClient(process.execPath, [BIN, 'connect', 'bank', '--', 'psql', '-X', '-c', 'select 1'], { env: { HOOP_GATEWAY: url, HOOP_TOKEN: keys.alice, HOME: home, XDG_CONFIG_HOME: join(home, '.config') } });
  expect(run.code).not.toBe(0);
  expect(run.stderr).toContain(`connection bank is offline: no agent dc1 is connected to ${url}; sessions are refused until one connects`);
  expect(run.stderr).toContain('FATAL:  hoop: connection bank is offline: no agent dc1 connected');
});

/** The slow reader's COPY size: 200 MB by default; HOOP_AGENT_SLOW_READER_MB=2000 is the 2 GB (minutes, not in the default run). */
const SLOW_READER_MB = Number(process.env['HOOP_AGENT_SLOW_READER_MB'] ?? 200);

test('a slow reader of a large COPY TO STDOUT keeps the agent and the gateway flat in memory', async () => {
  await first.kill(); // the one agent below carries the stream
  const carrier = agent();
  await carrier.waitForLog('agent connected');
  await until(async () => (await links()) === 1);
  const rows = SLOW_READER_MB * 1000;
  const width = 1000; // SLOW_READER_MB MB in all
  const { c } = await client('bank', 'agent-slow-reader');
  await c.connect();
  const base = { agent: carrier.rss(), gateway: gateway.rss() };
  const peak = { ...base };
  const sample = setInterval(() => {
    try {
      peak.agent = Math.max(peak.agent, carrier.rss());
      peak.gateway = Math.max(peak.gateway, gateway.rss());
    } catch { /* exited: the test fails below */ }
  }, 100);
  let bytes = 0;
  let chunks = 0;
  try {
    await pipeline(
      c.query(copyTo(`COPY (SELECT repeat('x', ${width - 8}) || lpad(i::text, 7, '0') FROM generate_series(1, ${rows}) i) TO STDOUT`)),
      new Writable({
        highWaterMark: 16 * 1024,
        // Slow: a pause every few chunks, far slower than the database produces.
        write(chunk: Buffer, _e, cb) {
          bytes += chunk.length;
          if (++chunks % 8 === 0) setTimeout(cb, 1);
          else cb();
        },
      }),
    );
  } finally {
    clearInterval(sample);
  }
  await c.end();
  expect(bytes).toBe(rows * width);
  const mib = (n: number) => Math.round(n / 1024 / 1024);
  // SLOW_READER_MB MB passed through each; a process that buffered it would have grown by about
  // that (an agent without flow control grows by over 200 MiB at the default). Garbage between
  // collections and socket buffers account for some tens of MiB.
  expect(mib(peak.agent - base.agent), `agent RSS ${mib(base.agent)} -> ${mib(peak.agent)} MiB`).toBeLessThan(100);
  expect(mib(peak.gateway - base.gateway), `gateway RSS ${mib(base.gateway)} -> ${mib(peak.gateway)} MiB`).toBeLessThan(120);
  await carrier.kill();
}, 60_000 + SLOW_READER_MB * 100);

test('a TLS session (verify-full through the agent) whose agent dies mid-query ends with the clear error and its record', async () => {
  const carrier = agent();
  await carrier.waitForLog('agent connected');
  await until(async () => (await links()) === 1);
  const { c, session } = await client('secure', 'agent-tls-loss');
  await c.connect();
  expect((await c.query('select ssl from pg_stat_ssl where pid = pg_backend_pid()')).rows).toEqual([{ ssl: true }]);
  const sql = 'select pg_sleep(8) as agent_tls_loss';
  const running = c.query(sql).then(() => null, (e: Error) => e);
  await until(async () => (await runningPids(upstream, sql)).length === 1, { what: 'the query running upstream' });
  await carrier.kill('SIGKILL');
  expect((await running)?.message).toBe('hoop: the agent link to dc1 was lost');
  const end = await until(async () => (await events('session.end')).find((e) => e.session_id === session()), { timeoutMs: 15_000, what: 'session.end' });
  expect(JSON.stringify(end.data)).toContain('the agent link to dc1 was lost');
});

test('a frozen agent (its TCP connection still open) is dropped by the heartbeat within seconds, and links again when it wakes', async () => {
  const frozen = agent();
  await frozen.waitForLog('agent connected');
  await until(async () => (await links()) === 1);
  const before = (await events('agent.disconnected')).length;
  frozen.child.kill('SIGSTOP');
  try {
    await until(async () => (await links()) === 0, { timeoutMs: 10_000, what: 'the gateway to drop the silent link' });
    const gone = await until(async () => {
      const list = await events('agent.disconnected');
      return list.length > before ? list[0] : null;
    });
    expect(gone.data['reason']).toMatch(/no heartbeat/);
  } finally {
    frozen.child.kill('SIGCONT');
  }
  await until(async () => (await links()) === 1, { timeoutMs: 15_000, what: 'the agent back after it woke' });
  await frozen.kill();
});

test('an agent with a key the gateway does not know says so in its log and keeps trying, never logging the key', async () => {
  const wrong = newAgentKey();
  const stray = startAgentProc(['--gateway', url, '--allow', allowed], wrong);
  const [refusal] = await stray.waitForLog('the gateway refused the agent link');
  expect(refusal).toMatchObject({ status: 401, reason: 'agent key rejected', gateway: url });
  await stray.waitForLog('reconnecting');
  await stray.kill(); // before the gateway's throttle of failed logins from this address applies
  expect(stray.stderr()).not.toContain(wrong);
  const failed = await until(async () => (await events('auth.failed')).find((e) => e.data['stage'] === 'agent'));
  expect(failed.data).toMatchObject({ code: 'HOOP_AUTH_REJECTED', path: '/api/v1/agents/link' });
});
