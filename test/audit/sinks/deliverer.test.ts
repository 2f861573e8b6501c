/**
 * The deliverer against a real store and real receivers (an HTTP server in this process, files):
 * order, retries from the cursor, lag, payloads, rotation, leases between replicas, close.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, afterEach, describe, expect, test } from 'vitest';
import { verifyChain } from '../../../src/audit/chain.js';
import type { AuditEvent } from '../../../src/audit/event.js';
import { SinkDeliverer, type SinkMetrics } from '../../../src/audit/sinks/deliverer.js';
import { FileTransport } from '../../../src/audit/sinks/file.js';
import { HttpTransport } from '../../../src/audit/sinks/http.js';
import { SyslogTransport } from '../../../src/audit/sinks/syslog.js';
import { createServer as createTcpServer, type Socket } from 'node:net';
import { OctetCountedReader, parseSyslogMessage } from '../../helpers/syslog.js';
import type { FileSinkConfig, HttpSinkConfig, SyslogSinkConfig } from '../../../src/audit/sinks/sink.js';
import { openStore } from '../../../src/store/index.js';
import type { Store } from '../../../src/store/store.js';
import { until } from '../../helpers/poll.js';
import { event } from '../../store/store-suite.js';

const dir = mkdtempSync(join(tmpdir(), 'hoop-sinks-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const FAST = { pollMs: 20, retryBaseMs: 20, retryMaxMs: 100, leaseMs: 5_000, deliverTimeoutMs: 2_000, leaseMarginMs: 500 };
const quiet = { info() {}, warn() {} };
const cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
});

class Recorded implements SinkMetrics {
  delivered = 0;
  errors = 0;
  lag: number[] = [];
  last = 0;
  sinkDelivered(_s: string, n: number, at: number) {
    this.delivered += n;
    this.last = at;
  }
  sinkError() {
    this.errors += 1;
  }
  sinkLag(_s: string, n: number) {
    this.lag.push(n);
  }
}

interface Received {
  headers: IncomingMessage['headers'];
  body: string;
  status: number;
}

/** A receiver that answers `status()` to each POST and keeps what it got. */
async function receiver(status: () => number = () => 200, delayMs = 0): Promise<{ url: string; got: Received[]; maxConcurrent: () => number }> {
  const got: Received[] = [];
  let active = 0;
  let max = 0;
  const server: Server = createServer((req, res) => {
    active += 1;
    max = Math.max(max, active);
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      setTimeout(() => {
        const s = status();
        got.push({ headers: req.headers, body: Buffer.concat(chunks).toString('utf8'), status: s });
        active -= 1;
        res.writeHead(s, { 'content-type': 'text/plain' }).end(s === 200 ? 'ok' : 'store unavailable');
      }, delayMs);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  cleanup.push(() => new Promise<void>((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  }));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/services/collector`, got, maxConcurrent: () => max };
}

async function store(path = ':memory:'): Promise<Store> {
  const s = await openStore(path === ':memory:' ? 'sqlite::memory:' : `sqlite:${path}`);
  cleanup.push(() => s.close());
  return s;
}

function httpSink(url: string, over: Partial<HttpSinkConfig> = {}): HttpSinkConfig {
  return { kind: 'http', id: 'hec', name: 'hec', url, token: 'hec-secret-token', format: 'hec', headers: { 'x-tenant': 'bank' }, includePayload: false, start: 'beginning', ...over };
}

function deliverer(s: Store, sink: HttpSinkConfig | FileSinkConfig, o: { owner?: string; metrics?: SinkMetrics; tuning?: object } = {}): SinkDeliverer {
  const transport = sink.kind === 'http' ? new HttpTransport(sink) : new FileTransport(sink);
  const d = new SinkDeliverer({ store: s, sink, transport, owner: o.owner ?? 'gw-test', logger: quiet, metrics: o.metrics, tuning: { ...FAST, ...o.tuning } });
  cleanup.push(() => d.close(0));
  return d;
}

const many = (n: number, over: Parameters<typeof event>[0] = {}) => Array.from({ length: n }, () => event(over));
/** HEC bodies: the events, in the order the receiver stored them (2xx answers only). */
const hecEvents = (got: Received[]) => got.filter((r) => r.status === 200).flatMap((r) => r.body.split('\n').map((l) => JSON.parse(l) as { event: AuditEvent } & Record<string, unknown>));
const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i);

describe('HTTP sink', () => {
  test('a receiver answering 500s gets every event, in order, once it recovers; lag rises and returns to 0', async () => {
    const s = await store();
    await s.appendEvents(many(30));
    let failing = true;
    const r = await receiver(() => (failing ? 500 : 200));
    const metrics = new Recorded();
    const d = deliverer(s, httpSink(r.url), { metrics, tuning: { pageEvents: 7 } });
    d.start();
    await until(() => metrics.errors >= 3, { what: 'failed attempts' });
    expect(metrics.lag.at(-1)).toBe(30);
    expect(metrics.delivered).toBe(0);
    expect((await s.readSinkCursor('hec'))!.delivered_seq).toBe(0);
    await s.appendEvents(many(10)); // produced while it is down
    failing = false;
    await until(async () => (await s.readSinkCursor('hec'))?.delivered_seq === 40, { what: 'cursor at the head' });
    await until(() => metrics.lag.at(-1) === 0, { what: 'lag back to 0' });
    const events = hecEvents(r.got);
    expect(events.map((e) => e.event.seq)).toEqual(range(1, 40));
    expect(events.map((e) => e.event)).toEqual(await s.readEvents({ payload: false }));
    expect(verifyChain(events.map((e) => e.event))).toEqual({ ok: true });
    expect(metrics.delivered).toBe(40);
    // The HEC shape, the token as Splunk asks for it, the extra header, and which seqs each batch holds.
    const first = events[0]!;
    expect(Object.keys(first)).toEqual(['event', 'host', 'source', 'sourcetype', 'time']);
    expect(first).toMatchObject({ source: 'hoop', sourcetype: 'hoop:audit', time: Date.parse(first.event.time) / 1000 });
    const ok = r.got.filter((g) => g.status === 200);
    expect(ok[0]!.headers).toMatchObject({ authorization: 'Splunk hec-secret-token', 'x-tenant': 'bank', 'content-type': 'application/json', 'x-hoop-first-seq': '1', 'x-hoop-last-seq': '7' });
    expect(ok.every((g) => g.body.split('\n').length <= 7)).toBe(true);
  });

  test('format json: an array of events, Bearer token, payloads when include_payload (null once pruned)', async () => {
    const path = join(dir, 'payloads.db');
    const s = await store(path);
    const payload = { 'result.sets': [{ columns: ['n'], rows: [['1']], tag: 'SELECT 1', statement: 0 }] };
    await s.appendEvents([event(), event({ type: 'query.end', data: { rows: 1 }, payload }), event(), event({ type: 'query.end', data: { rows: 1 }, payload })]);
    const db = new Database(path);
    db.prepare('DELETE FROM event_payloads WHERE seq = 4').run(); // as retention does
    db.close();
    const r = await receiver();
    const d = deliverer(s, httpSink(r.url, { id: 'json', format: 'json', includePayload: true, headers: {} }));
    d.start();
    await until(async () => (await s.readSinkCursor('json'))?.delivered_seq === 4);
    const batches = r.got.map((g) => JSON.parse(g.body) as AuditEvent[]);
    expect(r.got[0]!.headers['authorization']).toBe('Bearer hec-secret-token');
    const events = batches.flat();
    expect(events.map((e) => e.seq)).toEqual([1, 2, 3, 4]);
    expect(events[1]!.payload).toEqual(payload);
    expect(events[0]!.payload).toBeUndefined();
    expect(events[3]!.payload).toBeNull();
    expect(verifyChain(events)).toEqual({ ok: true }); // the payload is beside the hash, not in it
  });

  test('start: now skips what was logged before the sink was first seen; close delivers what is left', async () => {
    const s = await store();
    await s.appendEvents(many(5));
    const r = await receiver();
    const d = deliverer(s, httpSink(r.url, { id: 'late', start: 'now' }), { tuning: { pollMs: 60_000 } });
    d.start();
    await until(async () => (await s.readSinkCursor('late'))?.delivered_seq === 5);
    await s.appendEvents(many(3));
    await d.close(2_000); // the poll is a minute away: close itself delivers 6..8
    expect(hecEvents(r.got).map((e) => e.event.seq)).toEqual([6, 7, 8]);
    expect(await s.readSinkCursor('late')).toMatchObject({ delivered_seq: 8, lease_owner: null });
  });

  test('replicas: of two deliverers on one store only the lease holder sends; when it stops the other continues from the cursor', async () => {
    const path = join(dir, 'replicas.db');
    const [a, b] = [await store(path), await store(path)];
    await a.appendEvents(many(40));
    const r = await receiver(() => 200, 10);
    const sink = httpSink(r.url, { id: 'shared' });
    const [ma, mb] = [new Recorded(), new Recorded()];
    const da = deliverer(a, sink, { owner: 'gw-a', metrics: ma, tuning: { pageEvents: 5 } });
    const db = deliverer(b, sink, { owner: 'gw-b', metrics: mb, tuning: { pageEvents: 5 } });
    da.start();
    await until(async () => ((await a.readSinkCursor('shared'))?.delivered_seq ?? 0) >= 10);
    db.start(); // claims every poll while a holds the lease, and gets nothing
    await b.appendEvents(many(20));
    await until(async () => (await a.readSinkCursor('shared'))?.delivered_seq === 60, { timeoutMs: 10_000 });
    await until(() => mb.lag.length >= 3, { what: 'b watching' });
    expect(mb.delivered).toBe(0);
    expect(ma.delivered).toBe(60);
    await da.close(2_000); // caught up: releases the lease at once
    await b.appendEvents(many(10));
    await until(async () => (await b.readSinkCursor('shared'))?.delivered_seq === 70, { timeoutMs: 10_000 });
    expect(await b.readSinkCursor('shared')).toMatchObject({ lease_owner: 'gw-b' });
    expect(mb.delivered).toBe(10);
    expect(r.maxConcurrent()).toBe(1);
    expect(hecEvents(r.got).map((e) => e.event.seq)).toEqual(range(1, 70));
  });
});

describe('file sink', () => {
  test('JSON lines, rotated by size to PATH.1 … PATH.keep, 0600, nothing split, the newest kept in order', async () => {
    const s = await store();
    const pad = 'p'.repeat(500);
    await s.appendEvents(many(40, { data: { pad } }));
    const path = join(dir, 'rot', 'audit.jsonl');
    const sink: FileSinkConfig = { kind: 'file', id: 'file', name: 'file', path, maxBytes: 4096, keep: 2, includePayload: false, start: 'beginning' };
    const d = deliverer(s, sink, { tuning: { pageEvents: 9 } });
    d.start();
    await until(async () => (await s.readSinkCursor('file'))?.delivered_seq === 40);
    await d.close(0);
    expect(readdirSync(join(dir, 'rot')).sort()).toEqual(['audit.jsonl', 'audit.jsonl.1', 'audit.jsonl.2']);
    const files = [`${path}.2`, `${path}.1`, path];
    const lines = files.flatMap((f) => {
      expect(statSync(f).mode & 0o777).toBe(0o600);
      expect(statSync(f).size).toBeLessThanOrEqual(4096);
      const text = readFileSync(f, 'utf8');
      expect(text.endsWith('\n')).toBe(true);
      return text.trimEnd().split('\n').map((l) => JSON.parse(l) as AuditEvent);
    });
    const seqs = lines.map((e) => e.seq);
    expect(seqs.at(-1)).toBe(40);
    expect(seqs).toEqual(range(seqs[0]!, 40)); // contiguous: the oldest files were dropped whole
    expect(seqs[0]).toBeGreaterThan(1);
    expect(lines).toEqual(await s.readEvents({ afterSeq: seqs[0]! - 1, payload: false }));
    expect(statSync(join(dir, 'rot')).mode & 0o777).toBe(0o700);
  });
});

describe('syslog sink', () => {
  test('later batches are written while earlier ones wait out their grace period; the cursor follows in order', async () => {
    const s = await store();
    await s.appendEvents(many(800));
    const seqs: number[] = [];
    const sockets: Socket[] = [];
    const server = createTcpServer((socket) => {
      sockets.push(socket);
      const reader = new OctetCountedReader();
      socket.on('data', (c: Buffer) => {
        for (const m of reader.push(c)) seqs.push(Number(parseSyslogMessage(m).sd['hoop@32473']!['seq']));
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
    cleanup.push(() => new Promise<void>((resolve) => {
      for (const k of sockets) k.destroy();
      server.close(() => resolve());
    }));
    const sink: SyslogSinkConfig = { kind: 'syslog', id: 'sys', name: 'sys', host: '127.0.0.1', port: (server.address() as AddressInfo).port, tls: false, ca: null, appName: 'hoop', includePayload: false, start: 'beginning' };
    const d = new SinkDeliverer({ store: s, sink, transport: new SyslogTransport(sink, { graceMs: 3_000 }), owner: 'gw', logger: quiet, tuning: { ...FAST, leaseMs: 30_000, deliverTimeoutMs: 10_000, pageEvents: 100 } });
    cleanup.push(() => d.close(0));
    d.start();
    // Several batches arrive before the first has counted as delivered.
    await until(() => seqs.length >= 300, { what: 'batches written ahead' });
    expect((await s.readSinkCursor('sys'))!.delivered_seq).toBeLessThan(300);
    await until(async () => (await s.readSinkCursor('sys'))?.delivered_seq === 800, { timeoutMs: 15_000 });
    expect(seqs).toEqual(range(1, 800));
  });
});
