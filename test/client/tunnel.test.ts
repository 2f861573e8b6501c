import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { connect } from 'node:net';
import type { AddressInfo } from 'node:net';
import pg from 'pg';
import { serialize } from 'pg-protocol';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { WebSocketServer, createWebSocketStream } from 'ws';
import { openLocalTunnel, parseRefusal, tunnelUrl, type LocalTunnel, type TunnelEvent } from '../../src/client/tunnel.js';
import { PostgresEngine, type SessionContext, type StatementStart } from '../../src/protocols/postgres/engine.js';
import { RUN } from '../../src/protocols/engine.js';
import { tcpDial } from '../../src/protocols/postgres/upstream.js';
import { untilRunning } from '../helpers/postgres.js';
import { upstreamConfig } from '../protocols/postgres/engine-harness.js';

const upstream = inject('upstream');
const GOOD_TOKEN = 'good-token';

/** A stand-in gateway: checks the path and Bearer token like the real one, then hands the
 *  WebSocket's byte stream to the engine. */
let gateway: Server;
let gatewayUrl: string;
const engine = new PostgresEngine();
const starts: StatementStart[] = [];
const reasons: (string | undefined)[] = [];
const wss = new WebSocketServer({ noServer: true });

function refuse(socket: import('node:stream').Duplex, status: number, code: string, message: string) {
  const body = JSON.stringify({ error: { code, message } });
  socket.end(`HTTP/1.1 ${status} Refused\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
}

beforeAll(async () => {
  gateway = createServer((_req, res) => res.writeHead(404).end());
  gateway.on('upgrade', (req: IncomingMessage, socket, head) => {
    const m = /^\/api\/v1\/connections\/([^/]+)\/tunnel$/.exec(req.url ?? '');
    if (req.headers.authorization !== `Bearer ${GOOD_TOKEN}`) return refuse(socket, 401, 'HOOP_AUTH_REJECTED', 'token rejected: run hoop login');
    if (m?.[1] === 'vault') return refuse(socket, 403, 'HOOP_FORBIDDEN', 'alice may not use connection "vault" (needs group dba)');
    if (!m || m[1] !== 'bank') return refuse(socket, 404, 'HOOP_NOT_FOUND', `unknown connection "${decodeURIComponent(m?.[1] ?? '')}"`);
    reasons.push(req.headers['x-hoop-reason'] as string | undefined);
    wss.handleUpgrade(req, socket, head, (ws) => {
      const cfg = upstreamConfig(upstream);
      const ctx: SessionContext = {
        upstream: cfg,
        dial: () => tcpDial(cfg),
        payloadLimit: 1 << 20,
        owner: 'alice',
        hooks: {
          sessionStart: async () => {},
          plan: async () => RUN,
          queryStart: async (s) => void starts.push(s),
          queryEnd: () => {},
          sessionEnd: () => {},
          protocolError: () => {},
        },
      };
      void engine.serve(createWebSocketStream(ws), ctx);
    });
  });
  await new Promise<void>((r) => gateway.listen(0, '127.0.0.1', () => r()));
  gatewayUrl = `http://127.0.0.1:${(gateway.address() as AddressInfo).port}`;
});
afterAll(async () => {
  for (const c of wss.clients) c.terminate();
  gateway.closeAllConnections();
  await new Promise((r) => gateway.close(r));
});

async function withTunnel(opts: { token?: string; connection?: string; reason?: string }, fn: (t: LocalTunnel, events: TunnelEvent[]) => Promise<void>) {
  const events: TunnelEvent[] = [];
  const t = await openLocalTunnel({
    gateway: gatewayUrl,
    connection: opts.connection ?? 'bank',
    token: async () => opts.token ?? GOOD_TOKEN,
    port: 0,
    user: 'alice',
    database: 'bank',
    reason: opts.reason,
    onEvent: (e) => events.push(e),
  });
  try {
    await fn(t, events);
  } finally {
    await t.close();
  }
}

function psql(uri: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const p = spawn('psql', [uri, '-X', '-w', ...args], { env: { ...process.env, PGPASSWORD: '', PGCONNECT_TIMEOUT: '10' } });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => (stdout += d));
    p.stderr.on('data', (d) => (stderr += d));
    p.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
    p.stdin.end();
  });
}

describe('openLocalTunnel', () => {
  it('prints a URI with a generated one-time password that psql can use', async () => {
    await withTunnel({ reason: 'ticket-42\nInjected: x' }, async (t, events) => {
      expect(t.password.length).toBeGreaterThanOrEqual(24);
      expect(t.uri).toBe(`postgresql://alice:${encodeURIComponent(t.password)}@127.0.0.1:${t.port}/bank?sslmode=disable`);
      const r = await psql(t.uri, ['-At', '-c', 'select 40 + 2']);
      expect(r).toMatchObject({ code: 0, stdout: '42\n' });
      expect(starts.some((s) => s.statement === 'select 40 + 2')).toBe(true);
      expect(reasons.at(-1)).toBe('ticket-42?Injected: x');
      expect(events.map((e) => e.kind)).toContain('client-connected');
    });
  });

  it('refuses a wrong or missing password with 28P01 before contacting the gateway', async () => {
    await withTunnel({}, async (t, events) => {
      const before = reasons.length;
      const wrong = t.uri.replace(encodeURIComponent(t.password), 'not-the-password');
      const r = await psql(wrong, ['-c', 'select 1']);
      expect(r.code).not.toBe(0);
      expect(r.stderr).toMatch(/password authentication failed for user "alice"/);
      const err = await new pg.Client({ connectionString: wrong }).connect().catch((e) => e);
      expect(err.code).toBe('28P01');
      const none = await psql(`postgresql://alice@127.0.0.1:${t.port}/bank?sslmode=disable`, ['-c', 'select 1']);
      expect(none.code).not.toBe(0);
      expect(none.stderr).toMatch(/no password supplied|password authentication failed/);
      expect(reasons.length).toBe(before);
      expect(events.some((e) => e.kind === 'refused')).toBe(true);
    });
  });

  it('answers SSLRequest with N (psql sslmode=prefer works)', async () => {
    await withTunnel({}, async (t) => {
      const r = await psql(t.uri.replace('sslmode=disable', 'sslmode=prefer'), ['-At', '-c', 'select 1']);
      expect(r).toMatchObject({ code: 0, stdout: '1\n' });
    });
  });

  it('shows the gateway refusal (401, 403, 404) to psql as a FATAL and emits refused', async () => {
    await withTunnel({ connection: 'vault' }, async (t, events) => {
      const r = await psql(t.uri, ['-c', 'select 1']);
      expect(r.code).not.toBe(0);
      expect(r.stderr).toMatch(/FATAL: {2}hoop: alice may not use connection "vault" \(needs group dba\)/);
      expect(events.filter((e) => e.kind === 'refused')).toHaveLength(1);
      const err = await new pg.Client({ connectionString: t.uri }).connect().catch((e) => e);
      expect(err.code).toBe('42501');
    });
    await withTunnel({ token: 'bad-token' }, async (t, events) => {
      const r = await psql(t.uri, ['-c', 'select 1']);
      expect(r.code).not.toBe(0);
      expect(r.stderr).toMatch(/hoop: token rejected: run hoop login/);
      expect(events).toContainEqual({ kind: 'refused', message: 'hoop: token rejected: run hoop login' });
    });
    await withTunnel({ connection: 'nope' }, async (t) => {
      const err = await new pg.Client({ connectionString: t.uri }).connect().catch((e) => e);
      expect(err.message).toBe('hoop: unknown connection "nope"');
      expect(err.code).toBe('3D000');
    });
  });

  it('carries the pg driver with parameters, and cancel through its own WebSocket', async () => {
    await withTunnel({}, async (t) => {
      const c = new pg.Client({ connectionString: t.uri });
      await c.connect();
      expect((await c.query('select $1::int * 2 as v', [21])).rows).toEqual([{ v: 42 }]);
      const SLEEP = 'select pg_sleep(30) as local_tunnel_cancel';
      const sleeping = c.query(SLEEP).catch((e) => e);
      await untilRunning(upstream, SLEEP); // a cancel that arrives before the statement is lost
      const s = connect(t.port, '127.0.0.1');
      await new Promise((r) => s.once('connect', r));
      s.end(serialize.cancel((c as any).processID, (c as any).secretKey));
      expect(await sleeping).toMatchObject({ code: '57014' });
      expect((await c.query('select 1 as one')).rows).toEqual([{ one: 1 }]);
      await c.end();
    });
  });

  it('streams a large COPY TO STDOUT intact', async () => {
    await withTunnel({}, async (t) => {
      const r = await psql(t.uri, ['-c', `COPY (select g, repeat('x', 100) from generate_series(1, 100000) g) TO STDOUT`]);
      expect(r.code).toBe(0);
      const expected = Array.from({ length: 100000 }, (_, i) => `${i + 1}\t${'x'.repeat(100)}\n`).join('');
      expect(createHash('sha256').update(r.stdout).digest('hex')).toBe(createHash('sha256').update(expected).digest('hex'));
    });
  });

  it('reaches an https gateway trusted through the ca option, and reports an untrusted one', async () => {
    const { makeCertificates } = await import('../helpers/tls.js');
    const { createServer: createHttpsServer } = await import('node:https');
    const certs = makeCertificates();
    const tlsGateway = createHttpsServer({ cert: certs.cert, key: certs.key });
    tlsGateway.on('upgrade', (req, socket, head) => gateway.emit('upgrade', req, socket, head));
    await new Promise<void>((r) => tlsGateway.listen(0, '127.0.0.1', () => r()));
    const url = `https://127.0.0.1:${(tlsGateway.address() as AddressInfo).port}`;
    try {
      for (const ca of [certs.ca, undefined]) {
        const events: TunnelEvent[] = [];
        const t = await openLocalTunnel({ gateway: url, connection: 'bank', token: async () => GOOD_TOKEN, port: 0, user: 'alice', database: 'bank', ca, onEvent: (e) => events.push(e) });
        try {
          const r = await psql(t.uri, ['-At', '-c', 'select 5']);
          if (ca) expect(r).toMatchObject({ code: 0, stdout: '5\n' });
          else {
            expect(r.stderr).toMatch(/hoop: cannot reach the gateway at https:\/\/127\.0\.0\.1:\d+: .*certificate/);
            expect(events.some((e) => e.kind === 'error')).toBe(true);
          }
        } finally {
          await t.close();
        }
      }
    } finally {
      tlsGateway.closeAllConnections();
      await new Promise((r) => tlsGateway.close(r));
    }
  });

  it('builds the tunnel URL and parses refusals', () => {
    expect(tunnelUrl('https://gw.example/base/', 'a b')).toBe('wss://gw.example/base/api/v1/connections/a%20b/tunnel');
    expect(tunnelUrl('http://127.0.0.1:8009', 'bank')).toBe('ws://127.0.0.1:8009/api/v1/connections/bank/tunnel');
    expect(parseRefusal(403, '{"error":{"code":"HOOP_FORBIDDEN","message":"not in group analysts"}}')).toEqual({ code: 'HOOP_FORBIDDEN', message: 'not in group analysts', sqlstate: '42501' });
    expect(parseRefusal(502, '<html>')).toMatchObject({ message: 'gateway refused the tunnel (HTTP 502)' });
  });
});
