/** What the benchmark scripts share: the built code, settings from the environment, cleanup. */
import { execFile, execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import pg from 'pg';
import pino from 'pino';

const execFileAsync = promisify(execFile);

export const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const distDir = resolve(root, process.env.BENCH_DIST || 'dist');

/** Imports a module of the built code (dist/, or BENCH_DIST for another build of src/). */
export const dist = (p) => import(pathToFileURL(join(distDir, p)).href);

/** An environment setting, with a default for unset or empty. */
export function env(name, fallback) {
  const v = process.env[name];
  return v === undefined || v === '' ? fallback : v;
}

export const log = (msg) => process.stderr.write(`${msg}\n`);

/** Undo actions, last in first out; run once, at the end or on a signal. */
export const cleanups = [];
let cleaning = null;
export function cleanup() {
  cleaning ??= (async () => {
    for (let c = cleanups.pop(); c; c = cleanups.pop()) {
      try {
        await c();
      } catch (err) {
        log(`bench: cleanup failed: ${err?.message ?? err}`);
      }
    }
  })();
  return cleaning;
}
/** Ctrl-C or SIGTERM: undo everything, then exit. */
export function cleanupOnSignals() {
  for (const sig of ['SIGINT', 'SIGTERM']) {
    process.once(sig, () => {
      log(`bench: ${sig}, cleaning up`);
      void cleanup().then(() => process.exit(130));
    });
  }
}

/** p50/p99/mean of `n` sequential `SELECT 1` over one connection, after 100 unmeasured. */
export async function sequentialLatency(c, n) {
  const client = new pg.Client({ ...c, ssl: false });
  await client.connect();
  try {
    for (let i = 0; i < 100; i++) await client.query('SELECT 1');
    const samples = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      const t0 = process.hrtime.bigint();
      await client.query('SELECT 1');
      samples[i] = Number(process.hrtime.bigint() - t0) / 1e6;
    }
    samples.sort();
    const at = (q) => samples[Math.min(n - 1, Math.floor(q * n))];
    return { p50Ms: round(at(0.5)), p99Ms: round(at(0.99)), meanMs: round(samples.reduce((a, b) => a + b, 0) / n), n };
  } finally {
    await client.end();
  }
}

export function round(x) {
  return Math.round(x * 1000) / 1000;
}

/**
 * A throwaway PostgreSQL cluster (stopped by cleanup()) with a SCRAM role `bench` owning the
 * database `bench`; `direct` is how a client reaches it without hoop.
 */
export async function startBenchDatabase(name) {
  const { PostgresCluster } = await dist('demo/postgres-cluster.js');
  log('bench: starting a throwaway PostgreSQL');
  const cluster = await PostgresCluster.start({
    name,
    settings: { max_connections: 100 },
    hba: ['local all all trust', 'host all all 127.0.0.1/32 scram-sha-256'],
  });
  cleanups.push(() => cluster.stop());
  const password = randomBytes(18).toString('base64url');
  const admin = new pg.Client({ host: cluster.socketDir, port: cluster.port, user: 'postgres', database: 'postgres' });
  await admin.connect();
  await admin.query(`CREATE ROLE bench LOGIN PASSWORD ${admin.escapeLiteral(password)}`);
  await admin.query('CREATE DATABASE bench OWNER bench');
  const { rows } = await admin.query('SHOW server_version');
  await admin.end();
  return { cluster, serverVersion: rows[0].server_version, direct: { host: cluster.host, port: cluster.port, user: 'bench', password, database: 'bench' } };
}

/**
 * A gateway (its own config, an API key for the group `bench`) with one connection `bench` to the
 * benchmark database, and one more to the same database per entry of `connections` (`{ name,
 * ...keys }`: other keys of the connection, e.g. `masking`); resolves with it and the key. The
 * caller closes it.
 */
export async function startBenchGateway({ cluster, direct, work, store, payloadLimit, connections = [], config: extra = {} }) {
  const { parseConfig } = await dist('gateway/config.js');
  const { startGateway } = await dist('gateway/gateway.js');
  const { apiKeyHash } = await dist('identity/api-keys.js');
  const key = `hoop_bench_${randomBytes(16).toString('hex')}`;
  const config = parseConfig(
    {
      listen: '127.0.0.1:0',
      store,
      identity: { api_keys: [{ name: 'bench', sha256: apiKeyHash(key), groups: ['bench'] }] },
      connections: [{ name: 'bench' }, ...connections].map(({ name, ...rest }) => ({
        name,
        type: 'postgres',
        upstream: { host: cluster.host, port: cluster.port, database: 'bench', user: direct.user, password: direct.password, sslmode: 'disable' },
        access: ['bench'],
        // pgbench -c N opens N sessions as one identity: past the default of 10 they would be refused.
        max_sessions_per_user: 10_000,
        ...rest,
      })),
      audit: { signing_key: 'signing.key', ...(payloadLimit ? { payload_limit: payloadLimit } : {}) },
      ...extra,
    },
    'bench',
    work,
  );
  const gateway = await startGateway(config, { logger: pino({ level: 'warn' }, pino.destination(2)) });
  return { gateway, key };
}

/** Clock ticks a second of /proc/PID/stat's CPU times (100 on Linux). */
export const CLK_TCK = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    return 100;
  }
})();

/** utime + stime of a process, all its threads, in seconds (/proc/PID/stat fields 14 and 15). */
export function cpuSeconds(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' '); // fields[0] is field 3 (state)
  return (Number(fields[14 - 3]) + Number(fields[15 - 3])) / CLK_TCK;
}

/** Busy CPU seconds of the whole machine so far (/proc/stat: user, nice, system, irq, softirq of
 *  all cores): what every process of a run used together, PostgreSQL's and the reader's too. */
export function machineBusySeconds() {
  const f = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0].trim().split(/\s+/).slice(1).map(Number);
  return (f[0] + f[1] + f[2] + f[5] + f[6]) / CLK_TCK;
}

/** The machine and versions a result was measured on, for its report. */
export function benchEnvironment(serverVersion) {
  return { cpus: cpus().length, cpu: cpus()[0]?.model ?? 'unknown', node: process.version, postgres: String(serverVersion ?? '').split(' ')[0] };
}

/** Runs a benchmark's main, then undoes everything it started; a failure exits 1. */
export function runBenchmark(main) {
  main().then(
    () => cleanup(),
    async (err) => {
      log(`bench: ${err?.stack ?? err}`);
      await cleanup();
      process.exitCode = 1;
    },
  );
}

/**
 * `hoop connect <name> --port 0 --json` as its own process, as a user runs it (in production the
 * tunnel runs on the user's machine, not in the gateway's process); resolves with its JSON line.
 */
export async function hoopConnect(gatewayUrl, key, name) {
  const child = spawn(process.execPath, [...(process.env.BENCH_NODE_ARGS ? process.env.BENCH_NODE_ARGS.split(' ') : []), join(root, 'bin', 'hoop.js'), 'connect', name, '--port', '0', '--json'], {
    env: { ...process.env, HOOP_GATEWAY: gatewayUrl, HOOP_TOKEN: key, NO_COLOR: '1' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const exited = new Promise((resolve) => child.once('close', resolve));
  let stdout = '';
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  const info = await new Promise((resolve, reject) => {
    child.stdout.on('data', (d) => {
      stdout += d;
      const nl = stdout.indexOf('\n');
      if (nl >= 0) resolve(JSON.parse(stdout.slice(0, nl)));
    });
    void exited.then((code) => reject(new Error(`hoop connect exited (${code}): ${stderr.trim()}`)));
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

export function connArgs(c) {
  return ['-h', c.host, '-p', String(c.port), '-U', c.user, c.database];
}

/** Runs a client tool with the password in PGPASSWORD (never on the command line); returns stdout. */
export async function run(file, args, password) {
  try {
    const { stdout } = await execFileAsync(file, args, {
      env: { ...process.env, PGPASSWORD: password, PGAPPNAME: 'hoop-bench', PGSSLMODE: 'disable' },
      maxBuffer: 16 * 1024 * 1024,
    });
    return stdout;
  } catch (err) {
    throw new Error(`${file} ${args.slice(0, 8).join(' ')} failed: ${(err.stderr || err.message).trim()}`);
  }
}

export function parsePgbench(out) {
  const tps = /tps = ([\d.]+) \(without initial connection time\)/.exec(out) ?? /tps = ([\d.]+)/.exec(out);
  const latency = /latency average = ([\d.]+) ms/.exec(out);
  const transactions = /number of transactions actually processed: (\d+)/.exec(out);
  const failed = /number of failed transactions: (\d+)/.exec(out);
  if (!tps) throw new Error(`cannot read pgbench output:\n${out}`);
  return {
    tps: Number(tps[1]),
    latencyAvgMs: latency ? Number(latency[1]) : null,
    transactions: transactions ? Number(transactions[1]) : null,
    failed: failed ? Number(failed[1]) : 0,
  };
}
