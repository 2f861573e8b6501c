/**
 * The gateway's agent side without agent processes: the `agents`/`agent` config keys and their
 * precise errors, and who may open `GET /api/v1/agents/link` — only an agent key, which in turn
 * opens nothing else; failures recorded as auth.failed and throttled per address.
 */
import { once } from 'node:events';
import { afterAll, beforeAll, describe, expect, inject, test } from 'vitest';
import { pino } from 'pino';
import { WebSocket } from 'ws';
import { AGENT_LINK_PATH, startAgent } from '../../src/agent/agent.js';
import { AllowList } from '../../src/agent/allow.js';
import { ConfigError } from '../../src/errors.js';
import { parseConfig } from '../../src/gateway/config.js';
import { configChanges } from '../../src/gateway/reload.js';
import { newAgentKey, sha256Hex } from '../helpers/agent.js';
import { bankConnection, startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { until } from '../helpers/poll.js';
import { makeCertificates } from '../helpers/tls.js';

const HASH = 'ab'.repeat(32);
const OTHER = 'cd'.repeat(32);

function raw(overrides: Record<string, unknown> = {}, connection: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    identity: { api_keys: [{ name: 'etl', sha256: HASH, groups: ['etl'] }] },
    connections: [{ name: 'bank', type: 'postgres', upstream: { host: 'db.internal', database: 'bank', user: 'svc', sslmode: 'disable' }, access: ['analysts'], ...connection }],
    ...overrides,
  };
}

function problems(config: unknown): string[] {
  try {
    parseConfig(config, 'hoop.yaml', '/tmp');
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as Error).message.split('\n');
  }
  throw new Error('config was accepted');
}

describe('config', () => {
  test('agents: several keys may share a name; a connection names one with agent', () => {
    const c = parseConfig(raw({ agents: [{ name: 'dc1', sha256: OTHER.toUpperCase() }, { name: 'dc1', sha256: 'ef'.repeat(32) }] }, { agent: 'dc1' }), 'hoop.yaml', '/tmp');
    expect(c.agents).toEqual([{ name: 'dc1', sha256: OTHER }, { name: 'dc1', sha256: 'ef'.repeat(32) }]);
    expect(c.connections[0]!.agent).toBe('dc1');
    expect(parseConfig(raw(), 'hoop.yaml', '/tmp').connections[0]!.agent).toBeNull();
  });

  test('a connection naming an agent that is not configured', () => {
    expect(problems(raw({ agents: [{ name: 'dc1', sha256: OTHER }] }, { agent: 'dc2' }))).toEqual([
      'hoop.yaml: connections[0].agent: no agent named dc2 in agents (configured: dc1): add {name: dc2, sha256: <hex of its key\'s SHA-256>} to agents',
    ]);
    expect(problems(raw({}, { agent: 'dc1' }))).toEqual([
      'hoop.yaml: connections[0].agent: no agent named dc1 in agents (the list is empty): add {name: dc1, sha256: <hex of its key\'s SHA-256>} to agents',
    ]);
  });

  test('a reload records which agent names had keys added, removed or replaced (names only)', () => {
    const c = (agents: { name: string; sha256: string }[]) => parseConfig(raw({ agents }), 'hoop.yaml', '/tmp');
    const k = (n: number) => String(n).repeat(64);
    const before = c([{ name: 'dc1', sha256: k(1) }, { name: 'dc2', sha256: k(2) }, { name: 'dc3', sha256: k(3) }]);
    const after = c([{ name: 'dc2', sha256: k(2) }, { name: 'dc1', sha256: k(4) }, { name: 'dc1', sha256: k(1) }, { name: 'dc4', sha256: k(5) }]);
    const changes = configChanges(before, after);
    expect(changes.agents).toEqual(['dc1', 'dc3', 'dc4']);
    expect(JSON.stringify(changes)).not.toContain(k(4));
    expect(configChanges(before, before).agents).toEqual([]);
  });

  test('bad entries, a key listed twice, and an agent key that is also an API key', () => {
    expect(problems(raw({ agents: [{ name: 'DC 1', sha256: 'xyz' }, { name: 'dc1', sha256: OTHER, groups: [] }] })).sort()).toEqual([
      'hoop.yaml: agents[0].name: must be a lowercase slug: a-z, 0-9, "-" and "_", starting with a letter or digit, at most 63 characters',
      'hoop.yaml: agents[0].sha256: expected the 64 hex digits of the agent key\'s SHA-256 (printf %s "$KEY" | sha256sum)',
      'hoop.yaml: agents[1].groups: unknown key',
    ]);
    expect(problems(raw({ agents: [{ name: 'dc1', sha256: OTHER }, { name: 'dc2', sha256: OTHER }] }))).toEqual([
      'hoop.yaml: agents[1].sha256: duplicate agent key hash (the same as agents[0].sha256)',
    ]);
    expect(problems(raw({ agents: [{ name: 'dc1', sha256: HASH }] }))).toEqual([
      'hoop.yaml: agents[0].sha256: is also the hash of an identity.api_keys entry; an agent key must be a key of its own',
    ]);
  });
});

describe('the agent link endpoint', () => {
  const upstream = inject('upstream');
  const agentKey = newAgentKey();
  let gw: TestGateway;
  let wsBase: string;

  beforeAll(async () => {
    gw = await startTestGateway({
      upstream,
      config: { agents: [{ name: 'dc1', sha256: sha256Hex(agentKey) }] },
      connections: [bankConnection(upstream, { agent: 'dc1' })],
    });
    wsBase = gw.url.replace(/^http/, 'ws');
  });
  afterAll(() => gw.close());

  /** The HTTP status of the upgrade: 101, or the refusal's with its JSON error message. */
  async function linkWith(headers: Record<string, string>): Promise<{ status: number; message?: string; ws?: WebSocket }> {
    const ws = new WebSocket(`${wsBase}${AGENT_LINK_PATH}`, { headers });
    return new Promise((resolve, reject) => {
      ws.once('open', () => resolve({ status: 101, ws }));
      ws.once('unexpected-response', (_req, res) => {
        let body = '';
        res.on('data', (d: Buffer) => (body += d.toString()));
        res.on('end', () => resolve({ status: res.statusCode!, message: (JSON.parse(body) as { error: { message: string } }).error.message }));
      });
      ws.once('error', (err) => (ws.readyState === ws.CLOSED ? undefined : reject(err)));
    });
  }

  async function events(type: string) {
    return gw.store.readEvents({ types: [type], limit: 100 });
  }

  test('an agent key opens a link (agent.connected), and closing it is recorded (agent.disconnected)', async () => {
    const { status, ws } = await linkWith({ authorization: `Bearer ${agentKey}`, 'x-hoop-agent-instance': 'test-host:1' });
    expect(status).toBe(101);
    const connected = await until(async () => (await events('agent.connected'))[0]);
    expect(connected.data).toMatchObject({ agent: 'dc1', instance: 'test-host:1' });
    expect(connected.actor).toEqual({ subject: 'agent:dc1', email: null, groups: [], auth_method: 'agent_key' });
    const res = await fetch(`${gw.url}/api/v1/connections`, { headers: { authorization: `Bearer ${gw.keys['alice']}` } });
    expect(((await res.json()) as { agent: unknown }[])[0]!.agent).toEqual({ name: 'dc1', online: true, links: 1 });
    ws!.close();
    await once(ws!, 'close');
    const gone = await until(async () => (await events('agent.disconnected'))[0]);
    expect(gone.data).toMatchObject({ agent: 'dc1', instance: 'test-host:1', link: connected.data['link'] });
  });

  test('anything but an agent key is refused and recorded as auth.failed; an agent key opens nothing else', async () => {
    expect(await linkWith({})).toMatchObject({ status: 401, message: 'agent key rejected' });
    expect(await linkWith({ authorization: `Bearer ${newAgentKey()}` })).toMatchObject({ status: 401 });
    // An API key is no agent key.
    expect(await linkWith({ authorization: `Bearer ${gw.keys['root']}` })).toMatchObject({ status: 401 });
    // The right key for another agent name than the one the agent says it is.
    expect(await linkWith({ authorization: `Bearer ${agentKey}`, 'x-hoop-agent-name': 'dc2' })).toMatchObject({ status: 401, message: 'the key belongs to agent dc1, not dc2' });
    const failed = await until(async () => {
      const list = (await events('auth.failed')).filter((e) => e.data['stage'] === 'agent');
      return list.length >= 4 ? list : null;
    });
    expect(JSON.stringify(failed)).not.toContain(agentKey);
    // The agent key on the API and on the tunnel.
    expect((await fetch(`${gw.url}/api/v1/me`, { headers: { authorization: `Bearer ${agentKey}` } })).status).toBe(401);
    const tunnel = new WebSocket(`${wsBase}/api/v1/connections/bank/tunnel`, { headers: { authorization: `Bearer ${agentKey}` } });
    const [, res] = (await once(tunnel, 'unexpected-response')) as [unknown, { statusCode: number }];
    expect(res.statusCode).toBe(401);
  });

  test('an address that keeps failing is answered 429, even with the right key, for the rest of the window', async () => {
    for (let i = 0; i < 10; i++) await linkWith({ authorization: `Bearer wrong-${i}` });
    expect(await linkWith({ authorization: `Bearer ${agentKey}` })).toMatchObject({ status: 429, message: 'too many failed agent logins from this address; retry in a minute' });
  });
});

describe('over TLS', () => {
  test('an agent links to an https gateway (wss://) whose certificate it verifies', async () => {
    const upstream = inject('upstream');
    const certs = makeCertificates();
    const key = newAgentKey();
    const gw = await startTestGateway({
      upstream,
      config: { tls: { cert: certs.cert, key: certs.key }, agents: [{ name: 'dc1', sha256: sha256Hex(key) }] },
      connections: [bankConnection(upstream, { agent: 'dc1' })],
    });
    const logger = pino({ level: 'silent' });
    const allow = new AllowList([{ host: upstream.host, port: upstream.port }]);
    const untrusting = startAgent({ gateways: [gw.url], key, allow, logger, backoffMaxMs: 100 });
    const agent = startAgent({ gateways: [gw.url], key, allow, logger, ca: certs.ca });
    try {
      expect(gw.url).toMatch(/^https:/);
      await until(() => agent.connected === 1, { what: 'the agent linked over TLS' });
      await until(async () => (await gw.store.readEvents({ types: ['agent.connected'], limit: 10 })).length === 1);
      // Without the CA the handshake fails, and it never links.
      expect(untrusting.connected).toBe(0);
    } finally {
      await untrusting.close();
      await agent.close();
      await gw.close();
    }
  });
});
