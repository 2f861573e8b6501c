/**
 * Verification throughput and peak memory on a large audit log (issue 9, "Speed": ≥ 50,000
 * events/s verify, flat memory):
 *
 * 1. builds a SQLite store of BENCH_EVENTS events (default 1,000,000): sessions of statements,
 *    each query.end with a small payload (its rows), a signed checkpoint every 10,000 events;
 * 2. `verifyStore` over it (events a page at a time without payloads, then the page's payloads);
 * 3. writes a bundle of the whole log (a streaming ustar + gzip writer here, per the bundle
 *    format; the gateway's exporter is measured in bench/audit.mjs) and `verifyBundle` over the
 *    file, as `hoop audit verify BUNDLE` runs it.
 *
 * Each measured step runs in a child process of its own, so its peak RSS (getrusage maxrss) is
 * its own. Prints one JSON line per step to stdout; progress to stderr. Uses dist/ (npm run build).
 *
 *   node bench/audit-verify.mjs                 # 1M events (about 2-3 minutes on 2 cores)
 *   BENCH_EVENTS=200000 node bench/audit-verify.mjs
 */
import { execFileSync } from 'node:child_process';
import { createHash, generateKeyPairSync, randomUUID, sign } from 'node:crypto';
import { createReadStream, createWriteStream, existsSync, mkdirSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { once } from 'node:events';
import { createGzip } from 'node:zlib';
import { fileURLToPath } from 'node:url';
import { dist, env, log } from './lib.mjs';


async function main() {
  const events = Number(env('BENCH_EVENTS', '1000000'));
  // BENCH_DIR: keep the store and bundle there, and reuse a store built before (for repeated runs).
  const kept = env('BENCH_DIR', '');
  if (kept) mkdirSync(kept, { recursive: true });
  const dir = kept || mkdtempSync(join(tmpdir(), 'hoop-bench-verify-'));
  try {
    const db = join(dir, 'hoop.db');
    const started = performance.now();
    if (!kept || !existsSync(db)) await buildStore(db, events);
    log(`bench: store of ${events} events ready in ${((performance.now() - started) / 1000).toFixed(1)} s`);
    const self = fileURLToPath(import.meta.url);
    const run = (args) => JSON.parse(execFileSync(process.execPath, [self, ...args], { stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 1 << 20 }).toString());
    const store = run(['verify-store', db]);
    console.log(JSON.stringify({ step: 'verifyStore (SQLite)', ...store }));
    const bundle = join(dir, 'bundle.tar.gz');
    const w0 = performance.now();
    await writeBundle(db, bundle);
    log(`bench: bundle written (${(statSync(bundle).size / 1e6).toFixed(0)} MB) in ${((performance.now() - w0) / 1000).toFixed(1)} s`);
    const verified = run(['verify-bundle', bundle]);
    console.log(JSON.stringify({ step: 'verifyBundle (file)', bundle_mb: Math.round(statSync(bundle).size / 1e6), ...verified }));
  } finally {
    if (!kept) rmSync(dir, { recursive: true, force: true });
  }
}

/** A key pair in the shape test/helpers/bundle.ts uses: raw public key, id, PEM. */
function newKey() {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const raw = publicKey.export({ type: 'spki', format: 'der' }).subarray(12);
  return { privateKey, raw, id: createHash('sha256').update(raw).digest('hex'), pem: publicKey.export({ type: 'spki', format: 'pem' }) };
}

const KEY = newKey();
const actor = { subject: 'apikey:alice', email: 'alice@bank.example', groups: ['analysts'], auth_method: 'api_key' };
const source = { address: '10.0.0.7', application: 'psql' };

async function buildStore(path, total) {
  const { openStore } = await dist('store/index.js');
  const store = await openStore(`sqlite:${path}`);
  let clock = Date.UTC(2026, 2, 3, 9, 0, 0);
  const at = () => new Date((clock += 7)).toISOString();
  let batch = [];
  let n = 0;
  let session = randomUUID();
  const flush = async () => {
    if (batch.length) await store.appendEvents(batch);
    batch = [];
  };
  const push = (e) => {
    batch.push({ id: randomUUID(), time: at(), actor, source, connection: 'bank', session_id: session, ...e });
    n++;
  };
  while (n < total - 1) {
    if (n % 10_000 === 9_999) {
      await flush();
      const head = await store.head();
      const message = Buffer.from(`hoop-checkpoint-v1\n${head.seq}\n${head.hash}`);
      push({ type: 'checkpoint', actor: null, source: null, connection: null, session_id: null, data: { seq: head.seq, hash: head.hash, algorithm: 'Ed25519', key_id: KEY.id, public_key: KEY.raw.toString('base64'), signature: sign(null, message, KEY.privateKey).toString('base64') } });
      continue;
    }
    if (n % 100 === 0) session = randomUUID();
    const query = randomUUID();
    if (n % 2 === 0) push({ type: 'query.start', data: { query_id: query, protocol: 'simple', statement: `SELECT id, balance, owner FROM accounts WHERE id = ${n}`, parameters: [] } });
    else {
      push({
        type: 'query.end',
        data: { query_id: query, outcome: 'ok', error: null, command_tags: ['SELECT 1'], rows: 1, bytes: 48, duration_ms: 0.4, result: { truncated: false, sha256: createHash('sha256').update(String(n)).digest('hex') } },
        payload: { 'result.sets': [{ columns: ['id', 'balance', 'owner'], rows: [[String(n), `${n % 9000}.25`, 'Maria Muster']], tag: 'SELECT 1', statement: 0 }] },
      });
    }
    if (batch.length >= 2000) {
      await flush();
      if (n % 100_000 < 2000) log(`bench: ${n} events`);
    }
  }
  await flush();
  const head = await store.head();
  const message = Buffer.from(`hoop-checkpoint-v1\n${head.seq}\n${head.hash}`);
  await store.appendEvents([{ id: randomUUID(), time: at(), type: 'checkpoint', actor: null, source: null, connection: null, session_id: null, data: { seq: head.seq, hash: head.hash, algorithm: 'Ed25519', key_id: KEY.id, public_key: KEY.raw.toString('base64'), signature: sign(null, message, KEY.privateKey).toString('base64') } }]);
  await store.close();
}

/** A minimal streaming tar.gz writer for the bundle's regular files (names < 100 bytes). */
class TarGzWriter {
  constructor(path) {
    this.gzip = createGzip({ level: 6 });
    this.out = createWriteStream(path);
    this.gzip.pipe(this.out);
  }
  async write(buf) {
    if (!this.gzip.write(buf)) await once(this.gzip, 'drain');
  }
  header(name, size) {
    const h = Buffer.alloc(512);
    h.write(name, 0, 'utf8');
    h.write('0000644\0', 100);
    h.write('0000000\0', 108);
    h.write('0000000\0', 116);
    h.write(`${size.toString(8).padStart(11, '0')}\0`, 124);
    h.write(`${Math.floor(Date.UTC(2026, 2, 4) / 1000).toString(8).padStart(11, '0')}\0`, 136);
    h.write('        ', 148);
    h.write('0', 156);
    h.write('ustar\u000000', 257, 'latin1');
    let sum = 0;
    for (const b of h) sum += b;
    h.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'latin1');
    return h;
  }
  async file(name, body) {
    await this.write(this.header(name, body.length));
    await this.write(body);
    if (body.length % 512) await this.write(Buffer.alloc(512 - (body.length % 512)));
  }
  async end() {
    await this.write(Buffer.alloc(1024));
    this.gzip.end();
    await once(this.out, 'finish');
  }
}

async function* eventPages(store, withPayloads) {
  let after = 0;
  for (;;) {
    const page = await store.readEvents({ afterSeq: after, limit: 1000, payload: withPayloads });
    if (page.length === 0) return;
    yield page;
    after = page.at(-1).seq;
  }
}

async function writeBundle(dbPath, path) {
  const { openStore } = await dist('store/index.js');
  const { canonicalJson } = await dist('audit/chain.js');
  const store = await openStore(`sqlite:${dbPath}`);
  const line = (e) => {
    const { payload: _p, ...rest } = e;
    return `${canonicalJson(rest)}\n`;
  };
  // Pass 1: the size of events.jsonl (a tar header precedes its body) and the counts.
  let size = 0;
  let full = 0;
  let head = null;
  for await (const page of eventPages(store, false)) for (const e of page) (size += Buffer.byteLength(line(e)), full++, (head = e));
  const payloadSeqs = [];
  const manifest = {
    format: 'hoop-audit-bundle-v1', created_at: '2026-03-04T00:00:00.000Z', created_by: { subject: 'apikey:carol', email: null }, gateway_version: '0.1.0',
    range: { since: '1970-01-01T00:00:00.000Z', until: '2030-01-01T00:00:00.000Z' }, filters: { user: null, connection: null },
    span: { first_seq: 1, last_seq: head.seq, first_prev_hash: '0'.repeat(64) },
    counts: { events_full: full, events_omitted: 0, statements: 0, payloads: 0, payloads_pruned: 0 },
    pruned_payloads: [], signing_key_id: KEY.id, key_ids: [KEY.id],
  };
  // Payload count first (the manifest precedes the events).
  for await (const page of eventPages(store, false)) for (const e of page) if (e.payload_sha256) payloadSeqs.push(e.seq);
  manifest.counts.payloads = payloadSeqs.length;
  manifest.counts.statements = payloadSeqs.length;
  const w = new TarGzWriter(path);
  const sums = [];
  const addFile = async (name, body) => {
    sums.push([name, createHash('sha256').update(body).digest('hex')]);
    await w.file(name, body);
  };
  await addFile('README.txt', Buffer.from('hoop audit verify bundle.tar.gz --key <key id>\n'));
  await addFile('manifest.json', Buffer.from(canonicalJson(manifest)));
  await w.write(w.header('events.jsonl', size));
  const hash = createHash('sha256');
  for await (const page of eventPages(store, false)) {
    const text = Buffer.from(page.map(line).join(''));
    hash.update(text);
    await w.write(text);
  }
  if (size % 512) await w.write(Buffer.alloc(512 - (size % 512)));
  sums.push(['events.jsonl', hash.digest('hex')]);
  for (let i = 0; i < payloadSeqs.length; i += 1000) {
    const payloads = await store.readPayloads(payloadSeqs.slice(i, i + 1000));
    for (const seq of payloadSeqs.slice(i, i + 1000)) await addFile(`payloads/${seq}.json`, Buffer.from(canonicalJson(payloads.get(seq))));
  }
  await addFile(`keys/${KEY.id}.pem`, Buffer.from(KEY.pem));
  await addFile('summary.csv', Buffer.from('time,user\n'));
  await addFile('report.html', Buffer.from('<!doctype html><title>report</title>\n'));
  sums.sort((a, b) => Buffer.compare(Buffer.from(a[0]), Buffer.from(b[0])));
  const sumsText = Buffer.from(sums.map(([n, h]) => `${h}  ${n}\n`).join(''));
  await w.file('SHA256SUMS', sumsText);
  await w.file('SHA256SUMS.sig', sign(null, sumsText, KEY.privateKey));
  await w.end();
  await store.close();
}

function measured(result, events, started) {
  const seconds = (performance.now() - started) / 1000;
  return { ok: result.ok, events, seconds: Number(seconds.toFixed(2)), events_per_s: Math.round(events / seconds), peak_rss_mb: Math.round(process.resourceUsage().maxRSS / 1024), ...(result.ok ? {} : { failure: result.failure }) };
}

async function verifyStoreStep(path) {
  const { openStore } = await dist('store/index.js');
  const { verifyStore } = await dist('audit/verify.js');
  const store = await openStore(`sqlite:${path}`);
  const started = performance.now();
  const r = await verifyStore(store);
  console.log(JSON.stringify({ ...measured(r, r.events, started), payloads: r.payloads }));
  await store.close();
}

async function verifyBundleStep(path) {
  const { verifyBundle } = await dist('audit/bundle-verify.js');
  const started = performance.now();
  const r = await verifyBundle(createReadStream(path, { highWaterMark: 256 * 1024 }));
  console.log(JSON.stringify({ ...measured(r, r.events, started), payloads: r.payloads_checked }));
}

const step = process.argv[2];
if (step === 'verify-store') await verifyStoreStep(process.argv[3]);
else if (step === 'verify-bundle') await verifyBundleStep(process.argv[3]);
else await main();
