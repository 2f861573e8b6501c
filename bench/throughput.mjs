#!/usr/bin/env node
/**
 * Bulk throughput and per-statement latency of the hoop data path, directly and through hoop, in
 * one run against one throwaway PostgreSQL:
 *
 *   1. `COPY (SELECT repeat('x', 1000) FROM generate_series(1, N)) TO STDOUT` with psql to
 *      /dev/null (about 300 MB at the default N): MB/s of CopyData.
 *   1b. `COPY bench_copy_in FROM STDIN` with psql reading a file of BENCH_COPY_IN_ROWS such rows
 *      (about 100 MB): MB/s of CopyData the other way (client -> gateway frames are masked).
 *   2. A big `SELECT g, repeat('x', 200) FROM generate_series(1, N) g` with psql -At to /dev/null
 *      (500,000 rows, about 110 MB of DataRow): MB/s and rows/s.
 *   3. Sequential `SELECT 1` over one `pg` connection: p50 / p99 / mean.
 *
 * "Through hoop" is psql -> local tunnel (`openLocalTunnel`, by default in its own process, as
 * `hoop connect` runs on a user's machine) -> WebSocket -> gateway (`startGateway`, API key,
 * write-ahead audit) -> PostgreSQL, once per audit store in BENCH_STORES.
 *
 * Runs the built code: `npm run build` first (or BENCH_DIST=<dir> for another build of src/).
 * Everything it starts is removed at the end, also on Ctrl-C.
 *
 * Environment: BENCH_STORES (comma-separated, default `sqlite::memory:,sqlite:hoop.db`; a
 * relative sqlite path is in the temp dir), BENCH_COPY_ROWS (300000), BENCH_SELECT_ROWS (500000),
 * BENCH_QUERIES (2000), BENCH_REPEAT (best of N runs per bulk measurement, 3),
 * BENCH_TUNNEL (`process` default, or `inprocess`), BENCH_PAYLOAD_LIMIT (the gateway's
 * audit.payload_limit, e.g. 64KiB; default the config default), BENCH_PROFILE=<dir> (the tunnel child runs
 * with --cpu-prof into <dir>; run this script itself with `node --cpu-prof` for the gateway),
 * BENCH_JSON=1 (one JSON line with every number on stdout).
 */
import { spawn } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { isAbsolute, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { cleanupOnSignals, cleanups, dist, env, log, round, runBenchmark, sequentialLatency, startBenchDatabase, startBenchGateway, benchEnvironment } from './lib.mjs';


// --- child mode: a local tunnel in its own process -------------------------------------------
if (process.argv[2] === '--tunnel-child') {
  const [, , , gateway, key, connection, user, database] = process.argv;
  const { openLocalTunnel } = await dist('client/tunnel.js');
  const tunnel = await openLocalTunnel({ gateway, connection, token: async () => key, port: 0, user, database });
  process.stdout.write(`${JSON.stringify({ host: tunnel.host, port: tunnel.port, user: tunnel.user, password: tunnel.password, database: tunnel.database, uri: tunnel.uri })}\n`);
  const stop = () => void tunnel.close().then(() => process.exit(0));
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  await new Promise(() => {});
}

cleanupOnSignals();
const settings = {
  stores: env('BENCH_STORES', 'sqlite::memory:,sqlite:hoop.db').split(',').map((s) => s.trim()).filter(Boolean),
  copyRows: Number(env('BENCH_COPY_ROWS', '300000')),
  copyInRows: Number(env('BENCH_COPY_IN_ROWS', '100000')),
  selectRows: Number(env('BENCH_SELECT_ROWS', '500000')),
  queries: Number(env('BENCH_QUERIES', '2000')),
  repeat: Number(env('BENCH_REPEAT', '3')),
  tunnel: env('BENCH_TUNNEL', 'process'),
  payloadLimit: env('BENCH_PAYLOAD_LIMIT', ''),
  profile: env('BENCH_PROFILE', ''),
  json: env('BENCH_JSON', '') === '1',
};

const COPY_SQL = (n) => `COPY (SELECT repeat('x', 1000) FROM generate_series(1, ${n})) TO STDOUT`;
const COPY_IN_SQL = 'COPY bench_copy_in FROM STDIN';
const SELECT_SQL = (n) => `SELECT g, repeat('x', 200) FROM generate_series(1, ${n}) g`;

/** Bytes of CopyData messages the client receives: 5-byte header + 1000 x + newline per row. */
const copyWireBytes = (n) => n * (5 + 1001);
/** Bytes of DataRow messages: header 5, field count 2, two fields each with a 4-byte length. */
function selectWireBytes(n) {
  let digits = 0;
  for (let p = 1, d = 1; p <= n; p *= 10, d++) digits += (Math.min(n, p * 10 - 1) - p + 1) * d;
  return n * (5 + 2 + 4 + 4 + 200) + digits;
}

let copyInFile = '';
let truncateCopyIn = async () => {};

async function main() {
  const { openLocalTunnel } = await dist('client/tunnel.js');

  const work = mkdtempSync(join(tmpdir(), 'hoop-throughput-'));
  cleanups.push(() => rmSync(work, { recursive: true, force: true }));

  const { cluster, direct, serverVersion } = await startBenchDatabase('hoop-throughput-pg');
  // COPY FROM STDIN input: rows of 1000 x, into an unlogged table emptied before each run.
  copyInFile = join(work, 'copy-in.txt');
  writeFileSync(copyInFile, `${'x'.repeat(1000)}\n`.repeat(settings.copyInRows));
  truncateCopyIn = async () => {
    const c = new pg.Client({ ...direct, ssl: false });
    await c.connect();
    try {
      await c.query('CREATE UNLOGGED TABLE IF NOT EXISTS bench_copy_in (v text); TRUNCATE bench_copy_in');
    } finally {
      await c.end();
    }
  };

  const result = {
    environment: {
      ...benchEnvironment(serverVersion),
      tunnel: settings.tunnel === 'inprocess' ? 'openLocalTunnel in the gateway process' : 'openLocalTunnel in its own process',
      loadavgAtStart: loadavg()[0],
    },
    settings,
    direct: await measure('direct', direct, null),
    hoop: {},
  };

  for (const store of settings.stores) {
    const storeUrl = store.startsWith('sqlite:') && !store.startsWith('sqlite::memory:') && !isAbsolute(store.slice(7)) ? `sqlite:${join(work, store.slice(7))}` : store;
    log(`bench: gateway with store ${store}`);
    const { gateway, key } = await startBenchGateway({ cluster, direct, work, store: storeUrl, payloadLimit: settings.payloadLimit });
    const tunnel = settings.tunnel === 'inprocess'
      ? await openLocalTunnel({ gateway: gateway.url, connection: 'bench', token: async () => key, port: 0, user: direct.user, database: 'bench' })
      : await tunnelChild(gateway.url, key, 'bench', direct.user, 'bench');
    try {
      const tunneled = { host: tunnel.host, port: tunnel.port, user: tunnel.user, password: tunnel.password, database: tunnel.database };
      result.hoop[store] = await measure(`hoop (${store})`, tunneled, { tunnelPid: tunnel.pid ?? null });
    } finally {
      await tunnel.close();
      await gateway.close();
    }
  }
  result.environment.loadavgAtEnd = loadavg()[0];
  printReport(result);
  if (settings.json) process.stdout.write(`${JSON.stringify(result)}\n`);
}

/** `procs`: for runs through hoop, CPU seconds of the gateway (this process) and tunnel child. */
async function measure(label, c, procs) {
  log(`bench: ${label}: COPY TO STDOUT x${settings.repeat}`);
  const copy = await best(() => psqlTimed(c, ['-c', COPY_SQL(settings.copyRows)]), copyWireBytes(settings.copyRows), settings.copyRows, procs);
  log(`bench: ${label}: COPY FROM STDIN x${settings.repeat}`);
  const copyIn = await best(async () => {
    await truncateCopyIn();
    return psqlTimed(c, ['-c', COPY_IN_SQL], copyInFile);
  }, copyWireBytes(settings.copyInRows), settings.copyInRows, procs);
  log(`bench: ${label}: SELECT ${settings.selectRows} rows x${settings.repeat}`);
  const select = await best(() => psqlTimed(c, ['-At', '-c', SELECT_SQL(settings.selectRows)]), selectWireBytes(settings.selectRows), settings.selectRows, procs);
  log(`bench: ${label}: ${settings.queries} sequential SELECT 1`);
  const select1 = await sequentialLatency(c, settings.queries);
  return { copy, copyIn, select, select1 };
}

/** Best (shortest) of `repeat` runs: the other agents on this machine only ever add time. */
async function best(fn, bytes, rows, procs) {
  const runs = [];
  for (let i = 0; i < settings.repeat; i++) {
    const cpu0 = procs ? cpuNow(procs) : null;
    const seconds = await fn();
    const cpu = cpu0 ? cpuSince(procs, cpu0) : null;
    runs.push({ seconds, cpu });
  }
  const top = runs.reduce((a, b) => (b.seconds < a.seconds ? b : a));
  const s = top.seconds;
  return {
    seconds: round(s),
    runs: runs.map((r) => round(r.seconds)),
    mbPerSec: round(bytes / 1e6 / s),
    rowsPerSec: Math.round(rows / s),
    wireBytes: bytes,
    ...(top.cpu ? { cpuSeconds: { gateway: round(top.cpu.gateway), tunnel: top.cpu.tunnel === null ? null : round(top.cpu.tunnel) } } : {}),
  };
}

/** CPU seconds used so far by this process (the gateway) and by the tunnel child (from /proc). */
function cpuNow(procs) {
  const u = process.cpuUsage();
  return { gateway: (u.user + u.system) / 1e6, tunnel: procCpuSeconds(procs.tunnelPid) };
}
function cpuSince(procs, before) {
  const now = cpuNow(procs);
  return { gateway: now.gateway - before.gateway, tunnel: now.tunnel === null || before.tunnel === null ? null : now.tunnel - before.tunnel };
}
function procCpuSeconds(pid) {
  if (!pid) return null;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100; // utime + stime, in clock ticks (USER_HZ 100)
  } catch {
    return null;
  }
}

/** psql with stdout to /dev/null; seconds from spawn to exit (includes connecting: a few ms). */
function psqlTimed(c, args, inputFile) {
  return new Promise((resolvePromise, reject) => {
    const input = inputFile ? openSync(inputFile, 'r') : null;
    const t0 = process.hrtime.bigint();
    const childEnv = {};
    for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('PG')) childEnv[k] = v;
    const child = spawn('psql', ['-X', '-w', '-v', 'ON_ERROR_STOP=1', '-h', c.host, '-p', String(c.port), '-U', c.user, '-d', c.database, ...args], {
      env: { ...childEnv, PGPASSWORD: c.password, PGSSLMODE: 'disable', PSQLRC: '/dev/null', PAGER: 'cat' },
      stdio: [inputFile ? input : 'ignore', 'ignore', 'pipe'],
    });
    if (input !== null) closeSync(input); // the child has its own copy of the descriptor
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    child.once('error', reject);
    child.once('close', (code) => {
      if (code !== 0) return reject(new Error(`psql exited ${code}: ${stderr.trim()}`));
      resolvePromise(Number(process.hrtime.bigint() - t0) / 1e9);
    });
  });
}


/** The local tunnel as its own process (this script in child mode), as `hoop connect` runs. */
async function tunnelChild(gatewayUrl, key, connection, user, database) {
  const nodeArgs = settings.profile ? ['--cpu-prof', '--cpu-prof-dir', resolve(settings.profile)] : [];
  const child = spawn(process.execPath, [...nodeArgs, fileURLToPath(import.meta.url), '--tunnel-child', gatewayUrl, key, connection, user, database], {
    env: process.env,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const exited = new Promise((r) => child.once('close', r));
  let stdout = '';
  const info = await new Promise((resolvePromise, reject) => {
    child.stdout.on('data', (d) => {
      stdout += d;
      const nl = stdout.indexOf('\n');
      if (nl >= 0) resolvePromise(JSON.parse(stdout.slice(0, nl)));
    });
    void exited.then((code) => reject(new Error(`tunnel child exited (${code})`)));
  });
  return {
    ...info,
    pid: child.pid,
    async close() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGINT');
      await exited;
    },
  };
}


function printReport(r) {
  const fmt = (x, d = 0) => x.toLocaleString('en-US', { minimumFractionDigits: d, maximumFractionDigits: d });
  const cpuText = (m) => (m.cpuSeconds ? `   cpu: gateway ${fmt(m.cpuSeconds.gateway, 2)} s, tunnel ${m.cpuSeconds.tunnel === null ? 'n/a' : `${fmt(m.cpuSeconds.tunnel, 2)} s`}` : '');
  const e = r.environment;
  const s = r.settings;
  const rows = [['direct', r.direct], ...Object.entries(r.hoop).map(([store, m]) => [`hoop, ${store}`, m])];
  const width = Math.max(...rows.map(([l]) => l.length)) + 2;
  const lines = [
    '',
    `hoop throughput — ${e.cpus} × ${e.cpu}, Node ${e.node}, PostgreSQL ${e.postgres}; tunnel: ${e.tunnel}`,
    `load average ${fmt(e.loadavgAtStart, 2)} at start, ${fmt(e.loadavgAtEnd, 2)} at end; best of ${s.repeat} runs`,
    '',
    `COPY TO STDOUT, ${fmt(s.copyRows)} rows × 1001 bytes (${fmt(copyWireBytes(s.copyRows) / 1e6, 1)} MB of CopyData), psql > /dev/null`,
    ...rows.map(([l, m]) => `  ${l.padEnd(width)} ${fmt(m.copy.seconds, 3).padStart(7)} s   ${fmt(m.copy.mbPerSec, 1).padStart(7)} MB/s${cpuText(m.copy)}`),
    '',
    `COPY FROM STDIN, ${fmt(s.copyInRows)} rows × 1001 bytes (${fmt(copyWireBytes(s.copyInRows) / 1e6, 1)} MB of CopyData), psql < file`,
    ...rows.map(([l, m]) => `  ${l.padEnd(width)} ${fmt(m.copyIn.seconds, 3).padStart(7)} s   ${fmt(m.copyIn.mbPerSec, 1).padStart(7)} MB/s${cpuText(m.copyIn)}`),
    '',
    `SELECT g, repeat('x', 200), ${fmt(s.selectRows)} rows (${fmt(selectWireBytes(s.selectRows) / 1e6, 1)} MB of DataRow), psql -At > /dev/null`,
    ...rows.map(([l, m]) => `  ${l.padEnd(width)} ${fmt(m.select.seconds, 3).padStart(7)} s   ${fmt(m.select.mbPerSec, 1).padStart(7)} MB/s   ${fmt(m.select.rowsPerSec).padStart(9)} rows/s${cpuText(m.select)}`),
    '',
    `${fmt(s.queries)} sequential SELECT 1 (pg driver, one connection)`,
    ...rows.map(([l, m]) => `  ${l.padEnd(width)} p50 ${fmt(m.select1.p50Ms, 3)} ms   p99 ${fmt(m.select1.p99Ms, 3)} ms   mean ${fmt(m.select1.meanMs, 3)} ms`),
    '',
  ];
  process.stdout.write(lines.join('\n'));
}

runBenchmark(main);
