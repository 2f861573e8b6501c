/**
 * Approver webhooks against a real HTTP receiver (node:http on a free port): signed deliveries
 * verified the way docs/approvals-webhooks.md tells receivers to, retries with backoff while the
 * receiver fails or is gone, in order per target, giving up with notify.failed, a restart, two
 * replicas on one PostgreSQL store, Slack's shape, and the gateway's own notifier.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterAll, afterEach, describe, expect, inject, test } from 'vitest';
import { AuditRecorder } from '../../src/audit/recorder.js';
import { GatewayMetrics } from '../../src/gateway/metrics.js';
import { Notifier, retryDelayMs, targetForDisplay, type NotifierOptions, type NotifyEvent } from '../../src/gateway/notify.js';
import type { NotifyTarget } from '../../src/policy/risk/types.js';
import { openStore } from '../../src/store/index.js';
import type { Notification, Store } from '../../src/store/store.js';
import { startTestGateway } from '../helpers/gateway.js';
import { until } from '../helpers/poll.js';
import { createTestDatabase } from '../helpers/postgres.js';

const upstream = inject('upstream');
const dir = mkdtempSync(join(tmpdir(), 'hoop-notify-test-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

interface Received {
  path: string;
  headers: IncomingHttpHeaders;
  body: string;
  at: number;
}

/** A webhook receiver: records every request, answers with what `respond` says (default 200). */
class Receiver {
  readonly requests: Received[] = [];
  respond: (r: Received) => number | Promise<number> = () => 200;
  private server: Server | null = null;
  port = 0;

  async start(port = 0): Promise<this> {
    const server = createServer((req, res) => void this.handle(req, res));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => resolve());
    });
    this.server = server;
    this.port = (server.address() as AddressInfo).port;
    return this;
  }

  url(path = '/hook'): string {
    return `http://127.0.0.1:${this.port}${path}`;
  }

  /** Stops listening: the port refuses connections until start(port) again. */
  async stop(): Promise<void> {
    const s = this.server;
    this.server = null;
    if (!s) return;
    const closed = new Promise<void>((r) => s.close(() => r()));
    s.closeAllConnections();
    await closed;
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const r: Received = { path: req.url ?? '', headers: req.headers, body: Buffer.concat(chunks).toString('utf8'), at: Date.now() };
    this.requests.push(r);
    const status = await this.respond(r);
    res.writeHead(status, { 'content-type': 'text/plain' }).end(status >= 300 ? `receiver says no (${status})` : 'ok');
  }
}

/**
 * The receiver's check, exactly as docs/approvals-webhooks.md gives it for Node: the timestamp
 * within 5 minutes, then the HMAC over "<t>.<raw body>" compared in constant time.
 */
function verifySignature(secret: string, header: string | undefined, rawBody: string, nowSeconds = Math.floor(Date.now() / 1000)): boolean {
  const parts = Object.fromEntries((header ?? '').split(',').map((kv) => kv.split('=', 2) as [string, string]));
  const t = Number(parts['t']);
  if (!Number.isInteger(t) || Math.abs(nowSeconds - t) > 300 || !parts['v1']) return false;
  const expected = createHmac('sha256', secret).update(`${t}.${rawBody}`).digest();
  const given = Buffer.from(parts['v1'], 'hex');
  return given.length === expected.length && timingSafeEqual(given, expected);
}

function request(over: Partial<NotifyEvent> = {}): NotifyEvent {
  return {
    event: 'approval.requested',
    id: 'r-7f3a0c1d',
    kind: 'statement',
    connection: 'bank',
    requester: { subject: 'alice', email: 'alice@bank.example', groups: ['analysts'] },
    statement: 'SELECT * FROM customers WHERE id < $1',
    parameters: [42],
    reason: 'INC-42',
    rule: 'full-export',
    estimate: 125_000,
    duration_ms: null,
    status: 'pending',
    created_at: '2026-02-01T10:00:00.000Z',
    expires_at: '2026-02-01T10:10:00.000Z',
    approvals: [],
    min_approvals: 1,
    ...over,
  };
}

const receivers: Receiver[] = [];
const closers: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of closers.splice(0).reverse()) await c().catch(() => {});
  await Promise.all(receivers.splice(0).map((r) => r.stop()));
});

async function receiver(): Promise<Receiver> {
  const r = await new Receiver().start();
  receivers.push(r);
  return r;
}

let files = 0;
async function sqliteStore(path = join(dir, `n-${++files}.db`)): Promise<{ store: Store; path: string }> {
  const store = await openStore(`sqlite:${path}`);
  closers.push(() => store.close());
  return { store, path };
}

/** Log lines as written (JSON text), to look for secrets in. */
function capturingLogger(): { logger: pino.Logger; lines: string[] } {
  const lines: string[] = [];
  return { logger: pino({ level: 'debug' }, { write: (s: string) => void lines.push(s) }), lines };
}

function notifier(store: Store, over: Partial<NotifierOptions> = {}): { notifier: Notifier; recorder: AuditRecorder; metrics: GatewayMetrics } {
  const recorder = new AuditRecorder(store);
  const metrics = new GatewayMetrics(() => 0);
  const n = new Notifier({ store, recorder, logger: pino({ level: 'silent' }), metrics, pollMs: 20, ...over });
  closers.push(async () => {
    await n.close();
    await recorder.flush();
  });
  return { notifier: n, recorder, metrics };
}

/** The stored row for a delivery a receiver saw (X-Hoop-Delivery is the notification id). */
const rowOf = (store: Store, r: Received) => store.getNotification(String(r.headers['x-hoop-delivery']));

describe('webhook delivery', () => {
  test('a JSON notification is POSTed once, signed, with the request and the commands', async () => {
    const rx = await receiver();
    const { store } = await sqliteStore();
    const { notifier: n, metrics } = notifier(store);
    n.start();
    const secret = 'whsec_0123456789abcdef';
    await n.enqueue({ webhook: rx.url(), format: 'json', secret }, request());
    await n.enqueue({ webhook: rx.url('/unsigned'), format: 'json', secret: null }, request({ id: 'r-00000002' }));
    await until(() => rx.requests.length === 2 && metrics.notifications.get('delivered') === 2, { what: 'two deliveries' });

    const signed = rx.requests.find((r) => r.path === '/hook')!;
    expect(signed.headers['content-type']).toBe('application/json');
    expect(verifySignature(secret, signed.headers['x-hoop-signature'] as string, signed.body)).toBe(true);
    // The signature covers the body and the timestamp: change either and it fails.
    expect(verifySignature(secret, signed.headers['x-hoop-signature'] as string, `${signed.body} `)).toBe(false);
    expect(verifySignature('another-secret', signed.headers['x-hoop-signature'] as string, signed.body)).toBe(false);
    expect(verifySignature(secret, signed.headers['x-hoop-signature'] as string, signed.body, Math.floor(Date.now() / 1000) + 600)).toBe(false);
    expect(JSON.parse(signed.body)).toEqual({
      event: 'approval.requested', id: 'r-7f3a0c1d', kind: 'statement', connection: 'bank',
      requester: { subject: 'alice', email: 'alice@bank.example', groups: ['analysts'] },
      statement: 'SELECT * FROM customers WHERE id < $1', parameters: [42], rule: 'full-export', estimate: 125_000,
      duration_ms: null, reason: 'INC-42', status: 'pending', created_at: '2026-02-01T10:00:00.000Z', expires_at: '2026-02-01T10:10:00.000Z',
      approvals: [], min_approvals: 1,
      approve: 'hoop review approve r-7f3a0c1d', deny: 'hoop review deny r-7f3a0c1d --comment "<why>"',
    });
    const row = await rowOf(store, signed);
    expect(row).toMatchObject({ attempts: 0, last_error: null, request_id: 'r-7f3a0c1d', connection: 'bank', signed: true });
    expect(row!.delivered_at).not.toBeNull();
    expect(row!.body).toBe(signed.body);

    const unsigned = rx.requests.find((r) => r.path === '/unsigned')!;
    expect(unsigned.headers['x-hoop-signature']).toBeUndefined();
    expect(unsigned.headers['x-hoop-delivery']).not.toBe(signed.headers['x-hoop-delivery']);
    expect(metrics.render()).toContain('hoop_notifications_total{outcome="delivered"} 2');
  });

  test('a failing receiver (500, then a closed port) is retried with growing waits until it recovers, in order', async () => {
    const rx = await receiver();
    const port = rx.port;
    const { store } = await sqliteStore();
    const { logger, lines } = capturingLogger();
    // random 1: each wait is the full ceiling, 20 ms, 40, 80, 160 …; no poll: the retry timer alone.
    const { notifier: n, metrics } = notifier(store, { retry: { baseMs: 20, maxMs: 1_000 }, random: () => 1, pollMs: 60_000, timeoutMs: 2_000, logger });
    const log = () => lines.join('');
    let errors = 0;
    rx.respond = () => (++errors <= 2 ? 500 : 200);
    const target: NotifyTarget = { webhook: rx.url(), format: 'json', secret: null };
    for (const id of ['r-00000001', 'r-00000002', 'r-00000003']) await n.enqueue(target, request({ id }));
    n.start();

    // Two 500s, then the receiver goes away: the next attempts find the port closed.
    await until(() => rx.requests.length === 2, { what: () => `two failed attempts: ${log()}` });
    await rx.stop();
    const first = await rowOf(store, rx.requests[0]!);
    const refused = await until(async () => {
      const row = (await store.getNotification(first!.id))!;
      return row.attempts >= 4 && row;
    }, { timeoutMs: 10_000, what: () => `attempts against the closed port: ${log()}` });
    expect(refused.last_error).toMatch(/ECONNREFUSED/);
    expect(refused.delivered_at).toBeNull();
    expect(rx.requests).toHaveLength(2); // the others wait behind the first

    await rx.start(port);
    await until(() => rx.requests.length === 5, { timeoutMs: 10_000, what: () => `the first delivered, then the two behind it: ${log()}` });
    const ids = rx.requests.map((r) => JSON.parse(r.body).id as string);
    expect(ids).toEqual(['r-00000001', 'r-00000001', 'r-00000001', 'r-00000002', 'r-00000003']);
    // Waits grow: 20 ms after the first failure; 40 + 80 + 160 before the fourth failure's retry succeeded.
    expect(rx.requests[1]!.at - rx.requests[0]!.at).toBeGreaterThanOrEqual(20 - 2);
    expect(rx.requests[2]!.at - rx.requests[1]!.at).toBeGreaterThanOrEqual(40 + 80 + 160 - 5);
    const done = await until(async () => {
      const row = (await store.getNotification(first!.id))!;
      return row.delivered_at !== null && row;
    });
    expect(done.attempts).toBe(4);
    expect(metrics.notifications.get('failed')).toBe(4);
    await until(() => metrics.notifications.get('delivered') === 3);
  });

  test('after the last attempt it gives up: notify.failed names the target without credentials, never the secret', async () => {
    const rx = await receiver();
    const { store } = await sqliteStore();
    const { logger, lines } = capturingLogger();
    const { notifier: n, metrics } = notifier(store, { retry: { baseMs: 5, maxMs: 20, maxAttempts: 3 }, logger });
    rx.respond = () => 500;
    const secret = 'whsec_do_not_leak_me';
    const webhook = `http://hook-user:basic-pa55@127.0.0.1:${rx.port}/approvals/hook?token=query-t0ken`;
    n.start();
    await n.enqueue({ webhook, format: 'json', secret }, request());
    const [failed] = await until(() => store.readEvents({ types: ['notify.failed'] }).then((e) => e.length > 0 && e), { what: 'notify.failed' });

    expect(failed!.connection).toBe('bank');
    expect(failed!.actor).toMatchObject({ subject: 'system:gateway' });
    expect(failed!.data).toMatchObject({
      request: 'r-7f3a0c1d',
      event: 'approval.requested',
      target: `http://127.0.0.1:${rx.port}/approvals/hook`,
      format: 'json',
      attempts: 3,
      error: 'HTTP 500: receiver says no (500)',
    });
    expect(rx.requests).toHaveLength(3);
    // The receiver got the URL's credentials as Basic auth, not in the URL.
    expect(rx.requests[0]!.headers['authorization']).toBe(`Basic ${Buffer.from('hook-user:basic-pa55').toString('base64')}`);
    expect(rx.requests[0]!.path).toBe('/approvals/hook?token=query-t0ken');
    const row = (await store.getNotification(String(failed!.data['notification'])))!;
    expect(row.dead_at).not.toBeNull();
    expect(row.attempts).toBe(3);
    expect(metrics.notifications.get('failed')).toBe(2);
    expect(metrics.notifications.get('gave_up')).toBe(1);
    await until(() => lines.some((l) => l.includes('given up')), { what: 'the give-up log line' });
    const everything = JSON.stringify(await store.readEvents({})) + lines.join('');
    for (const leak of [secret, 'basic-pa55', 'query-t0ken']) expect(everything).not.toContain(leak);
    // Given up: never sent again.
    n.wake();
    await n.close();
    expect(rx.requests).toHaveLength(3);
  });

  test('a notification older than the age limit is given up at its next failure (injected clock)', async () => {
    const rx = await receiver();
    const { store } = await sqliteStore();
    let clock = Date.now();
    const { notifier: n } = notifier(store, { retry: { baseMs: 5, maxMs: 5, maxAttempts: 100, maxAgeMs: 60 * 60_000 }, now: () => clock });
    rx.respond = () => {
      clock += 2 * 60 * 60_000; // two hours pass while the receiver fails
      return 503;
    };
    n.start();
    await n.enqueue({ webhook: rx.url(), format: 'json', secret: null }, request());
    const [failed] = await until(() => store.readEvents({ types: ['notify.failed'] }).then((e) => e.length > 0 && e));
    expect(failed!.data).toMatchObject({ attempts: 1, error: expect.stringMatching(/^HTTP 503/) });
    expect(rx.requests).toHaveLength(1);
  });

  test('a restarted gateway delivers what the last one left, signing with the configured secret', async () => {
    const rx = await receiver();
    const { store, path } = await sqliteStore();
    const secret = 'whsec_restart';
    const target: NotifyTarget = { webhook: rx.url(), format: 'json', secret };
    const first = notifier(store, { retry: { baseMs: 60_000, maxMs: 60_000 } });
    rx.respond = () => 500;
    first.notifier.start();
    await first.notifier.enqueue(target, request({ id: 'r-00000001' }));
    await first.notifier.enqueue(target, request({ id: 'r-00000002' }));
    await until(async () => (await rowOf(store, rx.requests[0]!))?.attempts === 1, { what: 'a failed attempt' });
    await first.notifier.close();
    await store.close();

    // A new process: the store opened again, a notifier that never saw these rows or their secret.
    const { store: reopened } = await sqliteStore(path);
    rx.respond = () => 200;
    // Without the configured secret a signed row is not sent unsigned: the attempt fails.
    const blind = notifier(reopened, { retry: { baseMs: 60_000, maxMs: 60_000 }, now: () => Date.now() + 120_000 });
    blind.notifier.start();
    const stuck = await until(async () => {
      const row = await reopened.getNotification(String(rx.requests[0]!.headers['x-hoop-delivery']));
      return row?.attempts === 2 && row;
    }, { what: 'an attempt without a secret' });
    expect(stuck.last_error).toMatch(/no signing secret/);
    expect(rx.requests).toHaveLength(1);
    await blind.notifier.close();

    const second = notifier(reopened, { targets: () => [target], now: () => Date.now() + 10 * 60_000 });
    second.notifier.start();
    await until(() => rx.requests.length === 3, { what: 'both delivered by the new notifier' });
    expect(rx.requests.slice(1).map((r) => JSON.parse(r.body).id)).toEqual(['r-00000001', 'r-00000002']);
    for (const r of rx.requests.slice(1)) expect(verifySignature(secret, r.headers['x-hoop-signature'] as string, r.body, Math.floor((Date.now() + 10 * 60_000) / 1000))).toBe(true);
    expect(rx.requests[1]!.headers['x-hoop-delivery']).toBe(rx.requests[0]!.headers['x-hoop-delivery']); // the same delivery, again
  });

  test('closing cuts off a request in flight at once and leaves the row due for the next gateway', async () => {
    const rx = await receiver();
    const { store } = await sqliteStore();
    rx.respond = () => new Promise<number>(() => {}); // never answers
    const { notifier: n } = notifier(store, { retry: { baseMs: 60_000, maxMs: 60_000, maxAttempts: 1 } });
    n.start();
    await n.enqueue({ webhook: rx.url(), format: 'json', secret: null }, request());
    await until(() => rx.requests.length === 1);
    const started = Date.now();
    await n.close();
    expect(Date.now() - started).toBeLessThan(5_000); // not the 10 s timeout
    const row = (await rowOf(store, rx.requests[0]!))!;
    // Counted, but never given up on the way out (maxAttempts 1), and due again now.
    expect(row).toMatchObject({ attempts: 1, last_error: 'the gateway is stopping', dead_at: null, delivered_at: null });
    expect(Date.parse(row.next_attempt_at)).toBeLessThanOrEqual(Date.now());
    expect(await store.readEvents({ types: ['notify.failed'] })).toEqual([]);
  });

  test('two gateways on one PostgreSQL store never send a notification twice, nor two of one target at once', async () => {
    const db = await createTestDatabase(upstream, 'hoop_notify');
    closers.push(() => db.drop());
    const url = `postgres://${db.info.users.trust}@${db.info.host}:${db.info.port}/${db.info.database}`;
    const [storeA, storeB] = [await openStore(url), await openStore(url)];
    closers.push(() => storeA.close(), () => storeB.close());
    const rx = await receiver();
    const inFlight = new Map<string, number>();
    let overlap = 0;
    rx.respond = async (r) => {
      const n = (inFlight.get(r.path) ?? 0) + 1;
      inFlight.set(r.path, n);
      if (n > 1) overlap++;
      // Hold each answer a little so that the two gateways' deliveries overlap in time.
      await new Promise((resolve) => setTimeout(resolve, Math.random() * 10));
      inFlight.set(r.path, inFlight.get(r.path)! - 1);
      return 200;
    };
    const secret = 'whsec_replicas';
    const targets: NotifyTarget[] = [0, 1, 2, 3, 4].map((i) => ({ webhook: rx.url(`/t${i}`), format: 'json', secret }));
    const a = notifier(storeA, { targets: () => targets });
    const b = notifier(storeB, { targets: () => targets });
    a.notifier.start();
    b.notifier.start();
    const sent: string[] = [];
    for (let i = 0; i < 60; i++) {
      const id = `r-${String(i).padStart(8, '0')}`;
      sent.push(id);
      await (i % 2 ? a : b).notifier.enqueue(targets[i % 5]!, request({ id }));
    }
    await until(() => rx.requests.length >= 60, { timeoutMs: 20_000, what: '60 deliveries' });
    await until(() => a.metrics.notifications.get('delivered') + b.metrics.notifications.get('delivered') === 60);
    expect(rx.requests).toHaveLength(60);
    expect(new Set(rx.requests.map((r) => r.headers['x-hoop-delivery'])).size).toBe(60);
    expect(overlap).toBe(0);
    for (const [i, t] of targets.entries()) {
      const got = rx.requests.filter((r) => r.path === new URL(t.webhook).pathname).map((r) => JSON.parse(r.body).id);
      expect(got).toEqual(sent.filter((_, j) => j % 5 === i));
    }
    for (const r of rx.requests) expect(verifySignature(secret, r.headers['x-hoop-signature'] as string, r.body)).toBe(true);
    // Both gateways took part.
    expect(a.metrics.notifications.get('delivered')).toBeGreaterThan(0);
    expect(b.metrics.notifications.get('delivered')).toBeGreaterThan(0);
  });

  test("format slack posts Slack's incoming-webhook shape: who asks for what, where, and the commands", async () => {
    const rx = await receiver();
    const { store } = await sqliteStore();
    const { notifier: n } = notifier(store);
    n.start();
    const target: NotifyTarget = { webhook: rx.url('/services/T000/B000/XXXXSECRET'), format: 'slack', secret: null };
    await n.enqueue(target, request({ statement: 'SELECT * FROM customers WHERE note <> \'<@here> & ```\'' }));
    await n.enqueue(target, request({
      event: 'approval.decided', status: 'approved',
      approvals: [{ approver: 'bob@bank.example', decision: 'approve', comment: 'ok for INC-42', at: '2026-02-01T10:02:00.000Z' }],
    }));
    await until(() => rx.requests.length === 2);
    const [asked, decided] = rx.requests.map((r) => JSON.parse(r.body) as { text: string; blocks: { type: string; text?: { type: string; text: string }; fields?: { type: string; text: string }[] }[] });
    expect(Object.keys(asked!).sort()).toEqual(['blocks', 'text']);
    expect(asked!.text).toBe('alice@bank.example asks to run a statement on bank: approve with hoop review approve r-7f3a0c1d');
    expect(asked!.blocks.every((b) => b.type === 'section')).toBe(true);
    expect(asked!.blocks[0]!.text).toEqual({ type: 'mrkdwn', text: '*alice@bank.example* asks to run a statement on *bank* (rule `full-export`): request `r-7f3a0c1d`' });
    // The statement in a code block, Slack's control characters escaped (no @here ping, no early end).
    expect(asked!.blocks[1]!.text!.text).toBe("```SELECT * FROM customers WHERE note &lt;&gt; '&lt;@here&gt; &amp; `\u200b`\u200b`'```");
    expect(asked!.blocks[2]!.fields!.map((f) => f.text)).toEqual([
      '*Reason*\nINC-42', '*Parameters*\n`[42]`', '*Estimated rows*\n125000', '*Approvals*\n0 of 1', '*Expires*\n2026-02-01T10:10:00.000Z',
    ]);
    expect(asked!.blocks[3]!.text!.text).toBe('Approve: `hoop review approve r-7f3a0c1d`\nDeny: `hoop review deny r-7f3a0c1d --comment "<why>"`');
    expect(decided!.text).toBe('Request r-7f3a0c1d by alice@bank.example on bank is approved');
    expect(decided!.blocks[0]!.text!.text).toBe('Request `r-7f3a0c1d` by *alice@bank.example* on *bank* is *approved* (approved by bob@bank.example: ok for INC-42)');
    // A Slack webhook URL's path is its credential: shown only up to its first segment.
    expect(targetForDisplay(target.webhook, 'slack')).toBe(`http://127.0.0.1:${rx.port}/services/***`);
  });

  test('the backoff starts near a second, doubles, and stops growing at five minutes', () => {
    const policy = { baseMs: 1_000, maxMs: 300_000 };
    expect(retryDelayMs(1, policy, () => 0)).toBe(500);
    expect(retryDelayMs(1, policy, () => 0.999999)).toBe(1_000);
    expect(retryDelayMs(2, policy, () => 1)).toBe(2_000);
    expect(retryDelayMs(9, policy, () => 1)).toBe(256_000);
    expect(retryDelayMs(10, policy, () => 1)).toBe(300_000);
    expect(retryDelayMs(40, policy, () => 0)).toBe(150_000);
  });

  test('a target that is not an http(s) URL is refused at enqueue', async () => {
    const { store } = await sqliteStore();
    const { notifier: n } = notifier(store);
    await expect(n.enqueue({ webhook: 'file:///etc/passwd', format: 'json', secret: null }, request())).rejects.toThrow(/not an http\(s\) URL/);
    await expect(n.enqueue({ webhook: 'not a url', format: 'json', secret: null }, request())).rejects.toThrow(/not an http\(s\) URL/);
  });
});

describe("the gateway's notifier", () => {
  test('starts with the gateway, delivers, counts in /metrics, and stops with it', async () => {
    const rx = await receiver();
    const gw = await startTestGateway({ upstream });
    closers.push(() => gw.close());
    await gw.notifier.enqueue({ webhook: rx.url(), format: 'json', secret: null }, request());
    await until(() => rx.requests.length === 1, { what: 'a delivery from the gateway' });
    const metrics = await until(async () => {
      const text = await (await fetch(`${gw.url}/metrics`)).text();
      return text.includes('hoop_notifications_total{outcome="delivered"} 1') && text;
    });
    expect(metrics).toContain('# TYPE hoop_notifications_total counter');
    const row: Notification | null = await rowOf(gw.store, rx.requests[0]!);
    await until(async () => (await rowOf(gw.store, rx.requests[0]!))?.delivered_at);
    expect(row?.request_id).toBe('r-7f3a0c1d');
  });
});
