/**
 * Audit sinks end to end: a real gateway, statements through the tunnel, and real receivers —
 * rsyslogd and an HTTP collector process (both killed with SIGKILL mid-stream and started again),
 * a TLS syslog receiver trusting a test CA, an HTTP receiver and a rotating file. Every event reaches every sink, in order
 * (repeats allowed where the transport cannot know), checkpoints among them, and /metrics shows
 * the lag rising while a sink is down and back to 0.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { afterAll, afterEach, expect, inject, test } from 'vitest';
import { canonicalJson } from '../../src/audit/chain.js';
import type { AuditEvent } from '../../src/audit/event.js';
import { openStore } from '../../src/store/index.js';
import { newApiKey, startTestGateway } from '../helpers/gateway.js';
import { createTestDatabase } from '../helpers/postgres.js';
import { until } from '../helpers/poll.js';
import { startHttpCollector, startRsyslog, startTlsSyslog, type SyslogMessage } from '../helpers/syslog.js';
import { makeCertificates } from '../helpers/tls.js';
import { tunnelClient } from './ws-client.js';

const dir = mkdtempSync(join(tmpdir(), 'hoop-sinks-e2e-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
/** Receivers, servers and databases a test started, stopped after it in reverse order whatever happened. */
const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => {});
});
const listenOnLoopback = async (server: Server): Promise<number> => {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  cleanups.push(() => new Promise<void>((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  }));
  return (server.address() as AddressInfo).port;
};

const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i);

/** Seqs as received: repeats dropped, the rest must then be exactly 1..head in order. */
function firstSeen(seqs: number[]): number[] {
  const seen = new Set<number>();
  return seqs.filter((s) => (seen.has(s) ? false : (seen.add(s), true)));
}

async function metric(url: string, name: string, sink: string): Promise<number | null> {
  const text = await (await request(`${url}/metrics`)).body.text();
  const m = new RegExp(`^${name}\\{sink="${sink}"\\} (\\S+)$`, 'm').exec(text);
  return m ? Number(m[1]) : null;
}

function syslogSeqs(messages: SyslogMessage[]): number[] {
  return messages.map((m) => Number(m.sd['hoop@32473']!['seq']));
}

test('every event reaches syslog and HEC (killed and restarted), TLS syslog, HTTP and file sinks, in order; lag up while down, then 0', async () => {
  const rsyslog = await startRsyslog();
  cleanups.push(() => rsyslog.close());
  const collector = await startHttpCollector();
  cleanups.push(() => collector.close());
  const certs = makeCertificates();
  const tlsRx = await startTlsSyslog(certs);
  cleanups.push(() => tlsRx.close());
  const httpGot: AuditEvent[][] = [];
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      if (req.headers['authorization'] !== 'Bearer http-sink-token') return void res.writeHead(401).end();
      httpGot.push(JSON.parse(Buffer.concat(chunks).toString('utf8')) as AuditEvent[]);
      res.writeHead(204).end();
    });
  });
  const httpPort = await listenOnLoopback(server);
  const storePath = join(dir, 'hoop.db');
  const filePath = join(dir, 'sink', 'audit.jsonl');
  const gw = await startTestGateway({
    upstream: inject('upstream'),
    store: `sqlite:${storePath}`,
    config: {
      audit: {
        payload_limit: '1MiB',
        signing_key: join(dir, 'signing.key'),
        checkpoint_interval: '1s',
        sinks: [
          { syslog: `tcp://127.0.0.1:${rsyslog.port}`, name: 'rsyslog', app_name: 'hoop-test' },
          { syslog: `tcp://localhost:${tlsRx.port}`, tls: true, ca: certs.ca, name: 'tls' },
          { http: `http://127.0.0.1:${httpPort}/ingest`, format: 'json', token: 'http-sink-token', name: 'http' },
          { file: filePath, max_bytes: '64KiB', keep: 1000, name: 'file' },
          { http: `http://127.0.0.1:${collector.port}/services/collector`, token: 'hec-token', name: 'hec' },
        ],
      },
    },
  });
  let producing = true;
  let statements = 0;
  const client = await tunnelClient(gw.url, 'bank', gw.keys['alice']!, { application: 'sink-test' });
  const producer = (async () => {
    while (producing) {
      await client.query('SELECT $1::int AS n, repeat($2, 20) AS pad', [statements, 'é']);
      statements += 1;
    }
  })();
  try {
    await until(() => rsyslog.messages().length >= 10, { timeoutMs: 20_000, what: 'rsyslog receiving' });
    await until(() => collector.bodies().length >= 2, { timeoutMs: 20_000, what: 'the collector receiving' });
    await Promise.all([rsyslog.kill('SIGKILL'), collector.kill('SIGKILL')]);
    const atKill = statements;
    // Down: the statements go on (no sink ever holds them up), the lag grows, attempts fail.
    await until(() => statements > atKill + 20, { timeoutMs: 20_000, what: 'statements while the sink is down' });
    const headWhileDown = (await gw.store.head())!.seq;
    await until(async () => ((await metric(gw.url, 'hoop_audit_sink_errors_total', 'rsyslog')) ?? 0) >= 1, { timeoutMs: 20_000, what: 'failed attempts' });
    // Each failed attempt reads the head again: the lag reaches at least what was logged since the kill.
    await until(async () => ((await metric(gw.url, 'hoop_audit_sink_lag_events', 'rsyslog')) ?? 0) >= headWhileDown - rsyslog.messages().length, { timeoutMs: 20_000, what: 'lag rising' });
    await until(async () => ((await metric(gw.url, 'hoop_audit_sink_errors_total', 'hec')) ?? 0) >= 1, { timeoutMs: 20_000, what: 'failed HEC attempts' });
    await Promise.all([rsyslog.restart(), collector.restart()]);
    await until(() => statements > atKill + 40, { timeoutMs: 20_000 });
    producing = false;
    await producer;
    await client.end();
    const head = (await gw.store.head())!.seq;
    const stored = await gw.store.readEvents({ payload: false, limit: head }); // more may come (session.end, checkpoints)
    await until(() => firstSeen(syslogSeqs(rsyslog.messages())).length >= head, { timeoutMs: 30_000, what: () => `rsyslog has ${firstSeen(syslogSeqs(rsyslog.messages())).length} of ${head}` });
    await until(async () => ((await gw.store.readSinkCursor('rsyslog'))?.delivered_seq ?? 0) >= head, { timeoutMs: 10_000, what: 'rsyslog cursor' });
    await until(async () => (await metric(gw.url, 'hoop_audit_sink_lag_events', 'rsyslog')) === 0, { timeoutMs: 10_000, what: 'lag back to 0' });

    // rsyslog: every event, in order once repeats (a resend after the kill) are dropped; each
    // message's MSG is the stored event, its structured data names it, its severity fits.
    const received = rsyslog.messages();
    expect(firstSeen(syslogSeqs(received)).slice(0, head)).toEqual(range(1, head));
    const bySeq = new Map(stored.map((e) => [e.seq, e]));
    for (const m of received.filter((x) => Number(x.sd['hoop@32473']!['seq']) <= head)) {
      const e = bySeq.get(Number(m.sd['hoop@32473']!['seq']))!;
      expect(m.msg).toBe(canonicalJson(e));
      expect(m).toMatchObject({ bom: true, appName: 'hoop-test', msgId: e.type, timestamp: e.time, pri: 13 * 8 + (e.type === 'config.loaded' ? 5 : 6) });
      expect(m.sd['hoop@32473']).toEqual({ seq: String(e.seq), type: e.type, hash: e.hash });
    }
    // Repeats come only as a resend of a run that was cut off: after dedupe, nothing goes back.
    const seqs = syslogSeqs(received);
    expect(seqs.filter((s, i) => i > 0 && s < seqs[i - 1]!).length).toBeLessThanOrEqual(1);
    // Checkpoints went out like every event: a copy outside the gateway anchors the chain.
    expect(received.some((m) => m.msgId === 'checkpoint')).toBe(true);

    // The HEC collector, killed too: every event after dropping repeats (a batch it stored whose answer was lost).
    const hecSeqs = () => collector.bodies().flatMap((b) => b.split('\n').map((l) => (JSON.parse(l) as { event: AuditEvent }).event.seq));
    await until(() => firstSeen(hecSeqs()).length >= head, { timeoutMs: 30_000, what: 'the collector catching up' });
    expect(firstSeen(hecSeqs()).slice(0, head)).toEqual(range(1, head));
    await until(async () => ((await gw.store.readSinkCursor('hec'))?.delivered_seq ?? 0) >= head, { timeoutMs: 10_000, what: 'hec cursor' });
    await until(async () => (await metric(gw.url, 'hoop_audit_sink_lag_events', 'hec')) === 0, { timeoutMs: 10_000, what: 'hec lag 0' });

    // The other sinks were never down: exactly the log, once each.
    await until(() => tlsRx.messages.length >= head, { timeoutMs: 10_000, what: 'TLS receiver' });
    expect(syslogSeqs(tlsRx.messages).slice(0, head)).toEqual(range(1, head));
    await until(() => httpGot.flat().length >= head, { timeoutMs: 10_000, what: 'HTTP receiver' });
    expect(httpGot.flat().slice(0, head)).toEqual(stored);
    for (const sink of ['tls', 'http', 'file']) {
      // The gauge is recomputed at each pass: once the cursor is past `head`, it reads 0 again.
      await until(async () => ((await gw.store.readSinkCursor(sink))?.delivered_seq ?? 0) >= head, { timeoutMs: 10_000, what: `${sink} cursor` });
      await until(async () => (await metric(gw.url, 'hoop_audit_sink_lag_events', sink)) === 0, { timeoutMs: 10_000, what: `${sink} lag 0` });
      await until(async () => ((await metric(gw.url, 'hoop_audit_sink_delivered_total', sink)) ?? 0) >= head, { timeoutMs: 10_000, what: `${sink} delivered` });
      expect(await metric(gw.url, 'hoop_audit_sink_errors_total', sink)).toBe(0);
      expect(await metric(gw.url, 'hoop_audit_sink_last_delivery_timestamp_seconds', sink)).toBeGreaterThan(Date.now() / 1000 - 120);
    }
  } finally {
    producing = false;
    await producer.catch(() => {});
    await gw.close();
  }
  // At shutdown the gateway signs its last head and gives the sinks a moment: the file ends with it.
  const store = await openStore(`sqlite:${storePath}`);
  try {
    const last = (await store.readEvents({ newestFirst: true, limit: 1, payload: false }))[0]!;
    expect(last.type).toBe('checkpoint');
    // Rotated at 64 KiB: PATH.n (oldest) … PATH.1, then PATH.
    const rotated = readdirSync(join(dir, 'sink')).filter((f) => /^audit\.jsonl\.\d+$/.test(f)).sort((x, y) => Number(y.split('.').pop()) - Number(x.split('.').pop()));
    expect(rotated.length).toBeGreaterThan(0);
    const lines = [...rotated.map((f) => join(dir, 'sink', f)), filePath].flatMap((f) => readFileSync(f, 'utf8').trimEnd().split('\n'));
    expect(lines.at(-1)).toBe(canonicalJson(last));
    expect(lines).toHaveLength(last.seq);
    expect((await store.readSinkCursor('file'))!).toMatchObject({ delivered_seq: last.seq, lease_owner: null });
  } finally {
    await store.close();
  }
});

test('two gateways on one PostgreSQL store: one delivers a sink at a time, the other reports its lag and takes over when it stops', async () => {
  const upstream = inject('upstream');
  const db = await createTestDatabase(upstream, 'hoop_sinks');
  cleanups.push(() => db.drop());
  const url = `postgres://${db.info.users.trust}@${db.info.host}:${db.info.port}/${db.info.database}`;
  let active = 0;
  let overlap = 0;
  const got: AuditEvent[] = [];
  const server: Server = createServer((req, res) => {
    active += 1;
    if (active > 1) overlap += 1;
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => setTimeout(() => {
      got.push(...(JSON.parse(Buffer.concat(chunks).toString('utf8')) as AuditEvent[]));
      active -= 1;
      res.writeHead(200).end();
    }, 5));
  });
  const port = await listenOnLoopback(server);
  const keys = { alice: newApiKey() };
  const replica = (n: number) => startTestGateway({
    upstream,
    store: url,
    apiKeys: [{ name: 'alice', groups: ['analysts'] }],
    keys,
    config: {
      audit: {
        payload_limit: '1MiB',
        signing_key: join(dir, `replica-${n}.key`),
        sinks: [{ http: `http://127.0.0.1:${port}/ingest`, format: 'json', name: 'shared' }],
      },
    },
  });
  const a = await replica(1);
  let b: Awaited<ReturnType<typeof replica>> | null = null;
  try {
    b = await replica(2); // close() is idempotent: the finally closes whatever still runs
    for (const gw of [a, b, a, b]) {
      const c = await tunnelClient(gw.url, 'bank', keys.alice);
      for (let i = 0; i < 5; i++) await c.query('SELECT $1::int AS n', [i]);
      await c.end();
    }
    const caughtUp = async (gw: { store: typeof a.store }) => (await gw.store.readSinkCursor('shared'))?.delivered_seq === (await gw.store.head())?.seq;
    await until(() => caughtUp(a), { timeoutMs: 15_000, what: 'the sink caught up' });
    const holder = (await a.store.readSinkCursor('shared'))!.lease_owner;
    // Both report the lag of the one cursor.
    for (const gw of [a, b]) await until(async () => (await metric(gw.url, 'hoop_audit_sink_lag_events', 'shared')) === 0, { timeoutMs: 10_000 });
    const delivered = async (gw: { url: string }) => (await metric(gw.url, 'hoop_audit_sink_delivered_total', 'shared')) ?? 0;
    expect([await delivered(a), await delivered(b)].filter((n) => n > 0)).toHaveLength(1);
    // The holder stops (releasing the lease): the other continues from the cursor.
    const [stopping, staying] = (await delivered(a)) > 0 ? [a, b] : [b, a];
    await stopping.close();
    const c = await tunnelClient(staying.url, 'bank', keys.alice);
    await c.query('SELECT 1');
    await c.end();
    await until(() => caughtUp(staying), { timeoutMs: 15_000, what: 'the other replica delivering' });
    expect((await staying.store.readSinkCursor('shared'))!.lease_owner).not.toBe(holder);
    const head = (await staying.store.head())!.seq;
    expect(overlap).toBe(0);
    expect(firstSeen(got.map((e) => e.seq))).toEqual(range(1, head));
    // Each replica's start is in the log (config.loaded), whichever of them sent it.
    expect(got.filter((e) => e.type === 'config.loaded')).toHaveLength(2);
  } finally {
    await b?.close();
    await a.close();
  }
});
