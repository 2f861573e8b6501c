/**
 * `npm run bench:audit`: audit export throughput and memory on a store of a million events.
 *
 * 1. Builds a SQLite store of BENCH_EVENTS events (default 1,000,000) straight through
 *    store.appendEvents in batches: sessions of query.start / query.end pairs, a tenth of the
 *    statements with a recorded result of BENCH_PAYLOAD bytes, a checkpoint every 10,000 events.
 * 2. Starts a gateway on it (in this process) and exports the whole range through
 *    GET /api/v1/audit/export, once per format in BENCH_FORMATS, reading and discarding the body.
 *    Reports events/s, body bytes, and the process's peak RSS and heap over the run (the gateway
 *    and the reading client share the process, so both are included).
 *
 * The verify half (hoop audit verify throughput, same store) is bench/audit-verify.mjs.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { request } from 'undici';
import { cleanup, cleanupOnSignals, cleanups, dist, env, log } from './lib.mjs';

const EVENTS = Number(env('BENCH_EVENTS', '1000000'));
const PAYLOAD = Number(env('BENCH_PAYLOAD', '2000'));
const FORMATS = env('BENCH_FORMATS', 'jsonl,bundle').split(',');
const BATCH = 5000;

cleanupOnSignals();
const work = mkdtempSync(join(tmpdir(), 'hoop-bench-audit-'));
cleanups.push(() => rmSync(work, { recursive: true, force: true }));

async function buildStore(url) {
  const { openStore } = await dist('store/index.js');
  const { CheckpointSigner } = await dist('audit/checkpoint.js');
  const { generateKeyPairSync } = await import('node:crypto');
  const { writeFileSync } = await import('node:fs');
  const keyFile = join(work, 'signing.key');
  writeFileSync(keyFile, generateKeyPairSync('ed25519').privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
  const signer = CheckpointSigner.fromFile(keyFile);
  const store = await openStore(url);
  await store.migrate?.();
  const actor = { subject: 'apikey:alice', email: 'alice@bank.example', groups: ['analysts'], auth_method: 'api_key' };
  const source = { address: '10.0.0.7', application: 'psql' };
  const blob = randomBytes(Math.ceil((PAYLOAD * 3) / 4)).toString('base64').slice(0, PAYLOAD);
  const t0 = Date.parse('2026-01-01T00:00:00Z');
  let session = randomUUID();
  const started = performance.now();
  let n = 0;
  while (n < EVENTS) {
    const batch = [];
    while (batch.length < BATCH && n + batch.length < EVENTS) {
      const i = n + batch.length;
      const time = new Date(t0 + i * 10).toISOString();
      if (i % 1000 === 0) session = randomUUID();
      const q = `q${Math.floor(i / 2)}`;
      batch.push(i % 2 === 0
        ? { id: randomUUID(), time, type: 'query.start', actor, source, connection: 'bank', session_id: session, data: { query_id: q, protocol: 'simple', statement: `SELECT * FROM accounts WHERE id = ${i}` } }
        : { id: randomUUID(), time, type: 'query.end', actor, source, connection: 'bank', session_id: session,
            data: { query_id: q, outcome: 'ok', command_tags: ['SELECT 1'], rows: 1, bytes: PAYLOAD, duration_ms: 1, result: { truncated: false, sha256: '0'.repeat(64) } },
            ...(i % 20 === 1 ? { payload: { 'result.sets': [{ columns: ['row'], rows: [[`${i}:${blob}`]], tag: 'SELECT 1', statement: 0 }] } } : {}) });
    }
    const sealed = await store.appendEvents(batch);
    n += batch.length;
    if (n % 10_000 === 0) {
      const head = sealed.at(-1);
      await store.appendEvents([{ id: randomUUID(), time: new Date(t0 + n * 10).toISOString(), type: 'checkpoint', actor: { subject: 'system:gateway', email: null, groups: [], auth_method: 'system' }, source: null, connection: null, session_id: null, data: { ...signer.sign({ seq: head.seq, hash: head.hash }) } }]);
    }
    if (n % 100_000 === 0) log(`  built ${n} events`);
  }
  await store.close();
  log(`store of ${EVENTS} events built in ${((performance.now() - started) / 1000).toFixed(1)} s`);
  return keyFile;
}

async function main() {
  const url = `sqlite:${join(work, 'hoop.db')}`;
  log(`building a store of ${EVENTS} events (${PAYLOAD}-byte results on every tenth statement)`);
  const keyFile = await buildStore(url);
  const { parseConfig } = await dist('gateway/config.js');
  const { startGateway } = await dist('gateway/gateway.js');
  const { apiKeyHash } = await dist('identity/api-keys.js');
  const key = `hoop_bench_${randomBytes(16).toString('hex')}`;
  const config = parseConfig({
    listen: '127.0.0.1:0', store: url,
    identity: { api_keys: [{ name: 'auditor', sha256: apiKeyHash(key), groups: ['audit'] }] },
    roles: { auditor: ['audit'] },
    connections: [{ name: 'bank', type: 'postgres', upstream: { host: '127.0.0.1', port: 1, database: 'bank', user: 'u', password: 'p', sslmode: 'disable' }, access: ['analysts'] }],
    audit: { signing_key: keyFile },
  }, 'bench', work);
  const gateway = await startGateway(config, { logger: pino({ level: 'warn' }, pino.destination(2)) });
  cleanups.push(() => gateway.close());
  const results = [];
  for (const format of FORMATS) {
    if (global.gc) global.gc();
    const base = process.memoryUsage();
    let peakRss = base.rss;
    let peakHeap = base.heapUsed;
    const sampler = setInterval(() => {
      const m = process.memoryUsage();
      peakRss = Math.max(peakRss, m.rss);
      peakHeap = Math.max(peakHeap, m.heapUsed);
    }, 20);
    const started = performance.now();
    const res = await request(`${gateway.url}/api/v1/audit/export?format=${format}&since=2025-01-01T00:00:00Z&until=2027-01-01T00:00:00Z`, { headers: { authorization: `Bearer ${key}` }, bodyTimeout: 0, headersTimeout: 0 });
    if (res.statusCode !== 200) throw new Error(`export ${format}: ${res.statusCode} ${await res.body.text()}`);
    let bytes = 0;
    for await (const chunk of res.body) bytes += chunk.length;
    const secs = (performance.now() - started) / 1000;
    clearInterval(sampler);
    const r = { format, events: EVENTS, seconds: Number(secs.toFixed(2)), events_per_s: Math.round(EVENTS / secs), bytes, peak_rss_mb: Math.round(peakRss / 2 ** 20), rss_growth_mb: Math.round((peakRss - base.rss) / 2 ** 20), heap_growth_mb: Math.round((peakHeap - base.heapUsed) / 2 ** 20) };
    results.push(r);
    log(`export ${format.padEnd(6)} ${String(r.events_per_s).padStart(8)} events/s  ${r.seconds} s  ${(bytes / 2 ** 20).toFixed(0)} MiB  peak RSS ${r.peak_rss_mb} MiB (+${r.rss_growth_mb})  heap +${r.heap_growth_mb} MiB`);
  }
  if (env('BENCH_JSON', '') === '1') process.stdout.write(`${JSON.stringify({ export: results })}\n`);
  // The verify half of issue 9's speed goal lives in bench/audit-verify.mjs (same store shape).
}

main().then(cleanup, async (err) => {
  log(`bench: ${err?.stack ?? err}`);
  await cleanup();
  process.exit(1);
});
