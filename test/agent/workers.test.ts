/**
 * An agent behind one URL that reaches several gateway workers (`workers: N`, node:cluster's
 * round robin in production). Built from real parts: two in-process gateways, each told its
 * place among two workers, behind a small real TCP balancer written here that hands each
 * accepted connection to a backend in turn; the agent is given only the balancer's URL. The
 * agent must end with one link on each gateway (a link landing on a worker already linked is
 * closed at once), each gateway's sessions reach the database through it, and a restarted worker
 * is linked again while the other's link stays as it was. Also: a gateway without workers sends
 * no worker header and keeps one link, and an agent that can never cover every worker backs off.
 */
import { createServer, connect, type AddressInfo, type Server, type Socket } from 'node:net';
import pg from 'pg';
import { pino, type Logger } from 'pino';
import { afterAll, beforeAll, describe, expect, inject, test } from 'vitest';
import { WebSocket } from 'ws';
import { GATEWAY_WORKER_HEADER, linkUrl, parseWorkerHeader, startAgent, type RunningAgent } from '../../src/agent/agent.js';
import { AllowList } from '../../src/agent/allow.js';
import type { ConnectionInfo } from '../../src/api/types.js';
import { openLocalTunnel } from '../../src/client/tunnel.js';
import { freePort } from '../../src/demo/postgres-cluster.js';
import { newAgentKey, sha256Hex } from '../helpers/agent.js';
import { bankConnection, startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { until } from '../helpers/poll.js';

const upstream = inject('upstream');
const agentKey = newAgentKey();
const allow = new AllowList([{ host: upstream.host, port: upstream.port }]);
const MISSED = 'closed a link to a worker linked already; trying again';
const BACKED_OFF = 'closed a link to a worker linked already; backing off';

/** A gateway whose connection `bank` goes through agent dc1; on `port` when given (a restart keeps it). */
function startWorker(worker?: { index: number; count: number }, port?: number): Promise<TestGateway> {
  return startTestGateway({
    upstream,
    config: { agents: [{ name: 'dc1', sha256: sha256Hex(agentKey) }], ...(port ? { listen: `127.0.0.1:${port}` } : {}) },
    connections: [bankConnection(upstream, { agent: 'dc1' })],
    ...(worker ? { worker } : {}),
  });
}

/** The agent in this process, its log lines kept as objects. */
function agentTo(url: string): { agent: RunningAgent; lines: Record<string, unknown>[]; logs: (msg: string, fields?: Record<string, unknown>) => Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const logger: Logger = pino({ level: 'debug' }, { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) });
  const agent = startAgent({ gateways: [url], key: agentKey, allow, logger, backoffMaxMs: 500 });
  const logs = (msg: string, fields: Record<string, unknown> = {}) =>
    lines.filter((l) => l['msg'] === msg && Object.entries(fields).every(([k, v]) => l[k] === v));
  return { agent, lines, logs };
}

/**
 * A TCP balancer on a free port: the n-th accepted connection (from 0) is piped to
 * `backends()[route(n)]`; a backend that is down closes the client's connection.
 */
async function startBalancer(backends: () => number[], route: (n: number) => number): Promise<{ url: string; accepted: () => number; close(): Promise<void> }> {
  let n = 0;
  const sockets = new Set<Socket>();
  const server: Server = createServer((client) => {
    const backend = connect({ host: '127.0.0.1', port: backends()[route(n++)]! });
    for (const [s, other] of [[client, backend], [backend, client]] as const) {
      sockets.add(s);
      s.on('error', () => other.destroy());
      s.once('close', () => {
        sockets.delete(s);
        other.destroy();
      });
    }
    client.pipe(backend).pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    accepted: () => n,
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

async function links(gw: TestGateway): Promise<number> {
  const res = await fetch(`${gw.url}/api/v1/connections`, { headers: { authorization: `Bearer ${gw.keys['alice']}` } });
  return ((await res.json()) as ConnectionInfo[]).find((c) => c.name === 'bank')!.agent!.links;
}

async function linkEvents(gw: TestGateway, type: 'agent.connected' | 'agent.disconnected'): Promise<string[]> {
  return (await gw.store.readEvents({ types: [type], limit: 1000 })).map((e) => e.data['link'] as string);
}

/** The links the gateway recorded as connected and not (yet) as disconnected. */
async function liveLinks(gw: TestGateway): Promise<string[]> {
  const gone = new Set(await linkEvents(gw, 'agent.disconnected'));
  return (await linkEvents(gw, 'agent.connected')).filter((id) => !gone.has(id));
}

/** One statement through a local tunnel to `gw`'s connection bank (so through the agent). */
async function queryVia(gw: TestGateway, text: string): Promise<void> {
  const t = await openLocalTunnel({ gateway: gw.url, connection: 'bank', token: async () => gw.keys['alice']!, port: 0, user: 'alice', database: upstream.database });
  try {
    const c = new pg.Client({ host: t.host, port: t.port, user: t.user, password: t.password, database: t.database });
    await c.connect();
    try {
      expect((await c.query('select $1::text as v', [text])).rows).toEqual([{ v: text }]);
    } finally {
      await c.end();
    }
  } finally {
    await t.close();
  }
}

/** The worker header on a raw link upgrade's 101 (undefined when there is none). */
async function workerHeaderOf(gw: TestGateway): Promise<string | string[] | undefined> {
  const ws = new WebSocket(linkUrl(gw.url), { headers: { authorization: `Bearer ${agentKey}` } });
  const [header] = await Promise.all([
    new Promise<string | string[] | undefined>((resolve) => ws.once('upgrade', (res) => resolve(res.headers[GATEWAY_WORKER_HEADER]))),
    new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    }),
  ]);
  ws.close();
  await new Promise<void>((resolve) => ws.once('close', () => resolve()));
  return header;
}

test('the worker header reads k/N with 1 <= k <= N; anything else is no header', () => {
  expect(parseWorkerHeader('2/4')).toEqual({ index: 2, count: 4 });
  expect(parseWorkerHeader('1/1')).toEqual({ index: 1, count: 1 });
  for (const bad of [undefined, '', '0/2', '3/2', '2', '1/2/3', 'a/b', '-1/2', '1/99999', ['1/2', '2/2']]) expect(parseWorkerHeader(bad)).toBeNull();
});

describe('two workers behind one URL', () => {
  const ports: number[] = [];
  const workers: TestGateway[] = [];
  let balancer: Awaited<ReturnType<typeof startBalancer>>;
  let agent: ReturnType<typeof agentTo>;

  beforeAll(async () => {
    ports.push(await freePort(), await freePort());
    workers.push(await startWorker({ index: 1, count: 2 }, ports[0]), await startWorker({ index: 2, count: 2 }, ports[1]));
    // The first two connections to worker 1, then turn by turn: the agent's second link lands on
    // the worker its first one took, as it may behind a busy gateway.
    balancer = await startBalancer(() => ports, (n) => (n === 0 ? 0 : (n - 1) % 2));
    agent = agentTo(balancer.url);
  });

  afterAll(async () => {
    await agent?.agent.close();
    await balancer?.close();
    await Promise.all(workers.map((w) => w.close()));
  });

  test('the agent links to each worker once: the link that landed on a linked worker was closed at once', async () => {
    const [a, b] = workers as [TestGateway, TestGateway];
    await until(async () => agent.agent.connected === 2 && (await links(a)) === 1 && (await links(b)) === 1, { what: () => `a link on each worker (agent: ${agent.agent.connected})` });
    expect(agent.logs('agent connected').map((l) => l['worker']).sort()).toEqual(['1/2', '2/2']);
    expect(agent.logs(MISSED)).toHaveLength(1);
    expect(agent.logs(MISSED)[0]).toMatchObject({ worker: '1/2', linked: '1/2' });
    expect(agent.logs('agent link lost')).toEqual([]); // a duplicate is not a loss
    expect(balancer.accepted()).toBe(3);
    // Worker 1 saw the duplicate come and go; each worker holds one link.
    await until(async () => (await linkEvents(a, 'agent.disconnected')).length === 1, { what: 'the duplicate recorded as gone' });
    expect(await linkEvents(a, 'agent.connected')).toHaveLength(2);
    expect(await liveLinks(a)).toHaveLength(1);
    expect(await liveLinks(b)).toHaveLength(1);
  });

  test('a session on each worker reaches the database through that worker\'s link', async () => {
    const [a, b] = workers as [TestGateway, TestGateway];
    const opened = (worker: string) => agent.logs('stream opened', { worker }).length;
    const before = [opened('1/2'), opened('2/2')];
    await queryVia(a, 'via worker 1');
    await until(() => opened('1/2') > before[0]!, { what: 'a stream on worker 1\'s link' });
    expect(opened('2/2')).toBe(before[1]);
    await queryVia(b, 'via worker 2');
    await until(() => opened('2/2') > before[1]!, { what: 'a stream on worker 2\'s link' });
  });

  test('a restarted worker is linked again; the other worker\'s link stays up, the same link', async () => {
    const [a, b] = workers as [TestGateway, TestGateway];
    const [kept] = await liveLinks(a);
    const connectedBefore = agent.logs('agent connected').length;
    await b.close();
    await until(() => agent.logs('agent link lost', { worker: '2/2' }).length === 1, { what: 'the agent to see worker 2 go' });
    expect(agent.agent.connected).toBe(1);
    const restarted = await startWorker({ index: 2, count: 2 }, ports[1]);
    workers[1] = restarted;
    await until(async () => agent.agent.connected === 2 && (await links(restarted)) === 1, { timeoutMs: 15_000, what: () => `worker 2 linked again (agent: ${agent.agent.connected})` });
    expect(agent.logs('agent connected').slice(connectedBefore).map((l) => l['worker'])).toEqual(['2/2']);
    expect(agent.logs('agent link lost', { worker: '1/2' })).toEqual([]);
    // Worker 1's link is the one it had: every other link it saw meanwhile was a duplicate, closed.
    await until(async () => (await liveLinks(a)).length === 1, { what: 'worker 1 back to one live link in its record' });
    expect(await liveLinks(a)).toEqual([kept]);
    expect(await links(a)).toBe(1);
    await queryVia(restarted, 'via the restarted worker 2');
    await queryVia(a, 'via worker 1 still');
  });

  test('a gateway restarted as one process (no worker header) is held with one link', async () => {
    const [a, b] = workers as [TestGateway, TestGateway];
    await b.close();
    await a.close();
    await until(() => agent.agent.connected === 0, { what: 'both links gone' });
    const single = await startWorker(undefined, ports[0]);
    workers.splice(0, 2, single); // port 1 stays closed: connections the balancer hands there fail
    await until(async () => agent.agent.connected === 1 && (await links(single)) === 1, { timeoutMs: 15_000, what: 'the agent linked to the single gateway' });
    expect(agent.logs('agent connected').at(-1)!['worker']).toBeUndefined();
    const accepted = balancer.accepted();
    await queryVia(single, 'one process');
    // Covered: no further link was tried while the session ran.
    expect(balancer.accepted()).toBe(accepted);
    expect(await liveLinks(single)).toHaveLength(1);
  });
});

describe('without workers', () => {
  test('a single-process gateway sends no worker header and the agent holds one link; a worker sends k/N', async () => {
    const plain = await startWorker();
    const worker = await startWorker({ index: 1, count: 2 });
    try {
      expect(await workerHeaderOf(plain)).toBeUndefined();
      expect(await workerHeaderOf(worker)).toBe('1/2');
      const { agent, logs } = agentTo(plain.url);
      try {
        await until(() => agent.connected === 1, { what: 'the agent linked' });
        await queryVia(plain, 'single');
        expect(agent.connected).toBe(1);
        expect(await links(plain)).toBe(1);
        // The raw link above and the agent's one: no other was tried.
        await until(async () => (await linkEvents(plain, 'agent.connected')).length >= 2, { what: 'both links recorded' });
        expect(await linkEvents(plain, 'agent.connected')).toHaveLength(2);
        expect(logs('agent connected')).toHaveLength(1);
        expect(logs('agent connected')[0]!['worker']).toBeUndefined();
        expect(logs(MISSED)).toEqual([]);
      } finally {
        await agent.close();
      }
    } finally {
      await plain.close();
      await worker.close();
    }
  });

  test('an agent that keeps landing on linked workers backs off after 4 per worker in a row', async () => {
    // Worker 1 of 2, and no worker 2: every link after the first is a duplicate.
    const lonely = await startWorker({ index: 1, count: 2 });
    const { agent, lines, logs } = agentTo(lonely.url);
    try {
      await until(() => logs(BACKED_OFF).length >= 2, { timeoutMs: 20_000, what: 'two back-offs' });
      // A duplicate is up for a moment at each try; between tries only the first link is.
      await until(() => agent.connected === 1, { what: 'one link up between tries' });
      await until(async () => (await links(lonely)) === 1, { what: 'the gateway holding one link between tries' });
      // 4 × 2 duplicates in a row: 7 quick retries (m), then the 8th waits the backoff (B).
      const order = lines.flatMap((l) => (l['msg'] === MISSED ? ['m'] : l['msg'] === BACKED_OFF ? ['B'] : [])).join('');
      expect(order.slice(0, 16)).toBe('mmmmmmmBmmmmmmmB');
      expect(logs('reconnecting').length).toBeGreaterThanOrEqual(2);
    } finally {
      await agent.close();
      await lonely.close();
    }
  });
});
