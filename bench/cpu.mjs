#!/usr/bin/env node
/**
 * CPU per statement of the proxy on each path to the same PostgreSQL, in one run:
 *
 *   direct      pgbench -> PostgreSQL (no proxy: the tps baseline)
 *   pgbouncer   pgbench -> pgbouncer (session pooling) -> PostgreSQL
 *   relay       pgbench -> Node TCP listener -> ws WebSocket -> Node process -> PostgreSQL
 *               (bench/cpu-child.mjs: two processes, `pipe` both ways; the floor of hoop's topology)
 *   hoop        pgbench -> `hoop connect` -> WebSocket -> gateway (its own process, write-ahead
 *               audit in a SQLite file with real fsyncs) -> PostgreSQL
 *   onehop      pgbench -> the gateway's own PostgreSQL listener (`postgres_listen`, another gateway
 *               process, the same audit store kind; API key as the password, loopback without
 *               TLS like pgbouncer here) -> PostgreSQL
 *   onehop-pg   the one-hop path through `hoop gateway` (the CLI) with `workers: 1` and a postgres://
 *               store (a database of the bench cluster): the baseline of the next
 *   workers     the same with `workers: BENCH_WORKERS` (default: the machine's cores), the
 *               primary handing connections to the worker processes; CPU counts all of them
 *
 * For each pgbench mode (-M extended, prepared, simple) it runs `pgbench -n -S -t N` through each
 * path and reads utime + stime (all threads: /proc/PID/stat fields 14 and 15, in CLK_TCK ticks) of
 * that path's proxy processes before and after; CPU µs per statement is the difference divided by
 * the transactions pgbench reports (-S: one SELECT per transaction). Then 2,000 sequential
 * `SELECT 1` per path (p50/p99), and the ratios. Everything it starts is removed at the end, also
 * on Ctrl-C. See bench/README.md for the settings and how to read the output.
 */
import { execFile, execFileSync, spawn } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:net';
import { availableParallelism, tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import {
  benchEnvironment, CLK_TCK, cleanup, cleanupOnSignals, cleanups, connArgs, cpuSeconds, dist, env, hoopConnect, log, parsePgbench, root, run, runBenchmark,
  sequentialLatency, startBenchDatabase,
} from './lib.mjs';

const execFileAsync = promisify(execFile);
cleanupOnSignals();
const ALL_PATHS = ['direct', 'pgbouncer', 'relay', 'hoop', 'onehop', 'onehop-pg', 'workers'];
const settings = {
  transactions: Number(env('BENCH_TRANSACTIONS', '2000')),
  clients: Number(env('BENCH_CLIENTS', '8')),
  threads: Number(env('BENCH_THREADS', '2')),
  scale: Number(env('BENCH_SCALE', '10')),
  modes: env('BENCH_MODES', 'extended,prepared,simple').split(',').map((m) => m.trim()).filter(Boolean),
  paths: env('BENCH_PATHS', ALL_PATHS.join(',')).split(',').map((p) => p.trim()).filter(Boolean),
  queries: Number(env('BENCH_QUERIES', '2000')),
  store: env('BENCH_STORE', 'sqlite:hoop.db'),
  workers: Number(env('BENCH_WORKERS', String(availableParallelism()))),
  json: env('BENCH_JSON', '') === '1',
};
for (const m of settings.modes) if (!['extended', 'prepared', 'simple'].includes(m)) throw new Error(`BENCH_MODES: unknown mode ${m}`);
for (const p of settings.paths) if (!ALL_PATHS.includes(p)) throw new Error(`BENCH_PATHS: unknown path ${p} (expected ${ALL_PATHS.join(', ')})`);
if (!settings.paths.includes('direct')) settings.paths.unshift('direct'); // the baseline of every ratio

const cpuOf = (procs) => Object.fromEntries(procs.map(({ name, pid }) => [name, cpuSeconds(pid)]));

async function main() {
  const { findPostgresBindir } = await dist('demo/postgres-cluster.js');
  const bindir = findPostgresBindir();
  bindirCache = bindir;
  const pgbench = bindir && existsSync(join(bindir, 'pgbench')) ? join(bindir, 'pgbench') : 'pgbench';

  const work = mkdtempSync(join(tmpdir(), 'hoop-bench-cpu-'));
  cleanups.push(() => rmSync(work, { recursive: true, force: true }));

  const { cluster, direct, serverVersion } = await startBenchDatabase('hoop-bench-cpu-pg');
  log(`bench: pgbench -i -s ${settings.scale}`);
  await run(pgbench, ['-i', '-q', '-s', String(settings.scale), ...connArgs(direct)], direct.password);

  /** name -> { conn, procs: [{ name, pid }] } */
  const paths = new Map();
  const skipped = {};
  paths.set('direct', { conn: direct, procs: [] });
  if (settings.paths.includes('pgbouncer')) {
    const bouncer = await startPgbouncer(work, cluster, direct);
    if (bouncer.skipped) skipped.pgbouncer = bouncer.skipped;
    else paths.set('pgbouncer', bouncer);
  }
  if (settings.paths.includes('relay')) paths.set('relay', await startRelay(cluster, direct));
  let hoopAudit = null;
  if (settings.paths.includes('hoop')) {
    const h = await startHoop(work, cluster, direct);
    paths.set('hoop', h);
    hoopAudit = h.auditEvents;
  }
  let oneHopAudit = null;
  if (settings.paths.includes('onehop')) {
    const h = await startOneHop(work, cluster, direct);
    paths.set('onehop', h);
    oneHopAudit = h.auditEvents;
  }
  const cliAudit = {};
  for (const [name, workers] of [['onehop-pg', 1], ['workers', settings.workers]]) {
    if (!settings.paths.includes(name)) continue;
    const h = await startCliGateway(work, cluster, direct, name, workers);
    paths.set(name, h);
    cliAudit[name] = h.auditEvents;
  }
  for (const [name, why] of Object.entries(skipped)) log(`bench: NOTICE: ${name} skipped: ${why}`);

  const pgbenchArgs = (c, mode, t) => [
    '-n', '-S', '-M', mode, '-c', String(settings.clients), '-j', String(settings.threads), '-t', String(t), ...connArgs(c),
  ];
  log('bench: warming up every path (pgbench -t 200 per client, unmeasured)');
  for (const [, p] of paths) await run(pgbench, pgbenchArgs(p.conn, settings.modes[0], 200), p.conn.password);

  const runs = {}; // mode -> path -> result
  for (const mode of settings.modes) {
    runs[mode] = {};
    for (const [name, p] of paths) {
      log(`bench: pgbench -S -M ${mode} -c ${settings.clients} -j ${settings.threads} -t ${settings.transactions}, ${name}`);
      const before = cpuOf(p.procs);
      const r = parsePgbench(await run(pgbench, pgbenchArgs(p.conn, mode, settings.transactions), p.conn.password));
      await new Promise((resolve) => setTimeout(resolve, 300)); // let deferred work (query.end, session.end) land in the window
      const after = cpuOf(p.procs);
      const cpuUs = Object.fromEntries(Object.keys(before).map((k) => [k, ((after[k] - before[k]) * 1e6) / r.transactions]));
      const total = p.procs.length ? Object.values(cpuUs).reduce((a, b) => a + b, 0) : null;
      runs[mode][name] = { ...r, cpuUsPerStatement: total, cpuUsByProcess: cpuUs };
    }
  }

  log(`bench: ${settings.queries} sequential SELECT 1 per path`);
  const latency = {};
  for (const [name, p] of paths) latency[name] = await sequentialLatency(p.conn, settings.queries);

  const auditEvents = hoopAudit ? await hoopAudit() : null;
  const oneHopAuditEvents = oneHopAudit ? await oneHopAudit() : null;
  const cliAuditEvents = {};
  for (const [name, count] of Object.entries(cliAudit)) cliAuditEvents[name] = await count();
  const ratios = {};
  for (const mode of settings.modes) {
    const m = runs[mode];
    const cpu = (n) => m[n]?.cpuUsPerStatement ?? NaN;
    const tps = (n) => (m[n] ? m[n].tps / m.direct.tps : NaN);
    ratios[mode] = {
      hoopOverRelayCpu: cpu('hoop') / cpu('relay'),
      hoopOverPgbouncerCpu: cpu('hoop') / cpu('pgbouncer'),
      relayOverPgbouncerCpu: cpu('relay') / cpu('pgbouncer'),
      hoopTpsShare: tps('hoop'),
      relayTpsShare: tps('relay'),
      pgbouncerTpsShare: tps('pgbouncer'),
      oneHopOverPgbouncerCpu: cpu('onehop') / cpu('pgbouncer'),
      oneHopOverRelayCpu: cpu('onehop') / cpu('relay'),
      oneHopTpsShare: tps('onehop'),
      workersOverOneWorkerTps: m.workers && m['onehop-pg'] ? m.workers.tps / m['onehop-pg'].tps : NaN,
      workersOverOneWorkerCpu: cpu('workers') / cpu('onehop-pg'),
      workersTpsShare: tps('workers'),
    };
  }
  const result = {
    environment: { ...benchEnvironment(serverVersion), clkTck: CLK_TCK, store: settings.store.startsWith('sqlite::memory:') ? 'sqlite in memory (no fsync)' : settings.store.startsWith('sqlite:') ? 'sqlite file' : 'postgres' },
    settings,
    skipped,
    pgbench: runs,
    select1: latency,
    ratios,
    auditEvents,
    oneHopAuditEvents,
    cliAuditEvents,
  };
  await cleanup();
  printReport(result);
  if (settings.json) process.stdout.write(`${JSON.stringify(result)}\n`);
}

/** A free TCP port on loopback (closed again; the caller binds it right away). */
async function freePort() {
  const s = createServer();
  await new Promise((resolve) => s.listen(0, '127.0.0.1', resolve));
  const { port } = s.address();
  await new Promise((resolve) => s.close(resolve));
  return port;
}

/** A child process of ours, killed by cleanup(); resolves with it and its first stdout JSON line. */
async function startChild(file, args, opts = {}) {
  const child = spawn(file, args, { stdio: ['pipe', 'pipe', 'pipe'], ...opts });
  const exited = new Promise((resolve) => child.once('close', (code, sig) => resolve(code ?? sig)));
  let stderr = '';
  child.stderr.on('data', (d) => {
    stderr += d;
    if (stderr.length > 64 * 1024) stderr = stderr.slice(-32 * 1024);
  });
  const lines = [];
  let buf = '';
  let waiting = null;
  child.stdout.on('data', (d) => {
    buf += d;
    for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
      lines.push(buf.slice(0, nl));
      buf = buf.slice(nl + 1);
      waiting?.();
    }
  });
  const nextLine = () =>
    new Promise((resolve, reject) => {
      const check = () => (lines.length ? resolve(JSON.parse(lines.shift())) : null);
      waiting = check;
      check();
      void exited.then((code) => reject(new Error(`${args[0] ?? file} exited (${code}): ${stderr.trim().slice(-2000)}`)));
    });
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    const t = setTimeout(() => child.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(t);
  };
  cleanups.push(stop);
  return { child, nextLine, stop, exited, stderr: () => stderr };
}

async function startRelay(cluster, direct) {
  log('bench: starting the bare relay (two Node processes over a ws WebSocket)');
  const childFile = join(root, 'bench', 'cpu-child.mjs');
  const remote = await startChild(process.execPath, [childFile, 'relay-remote', cluster.host, String(cluster.port)]);
  const { url } = await remote.nextLine();
  const local = await startChild(process.execPath, [childFile, 'relay-local', url]);
  const { host, port } = await local.nextLine();
  return {
    conn: { host, port, user: direct.user, password: direct.password, database: 'bench' },
    procs: [{ name: 'relay-local', pid: local.child.pid }, { name: 'relay-remote', pid: remote.child.pid }],
  };
}

async function startHoop(work, cluster, direct) {
  log('bench: starting the gateway (its own process) and `hoop connect`');
  const nodeArgs = process.env.BENCH_NODE_ARGS ? process.env.BENCH_NODE_ARGS.split(' ') : []; // e.g. --cpu-prof, as for `hoop connect`
  const gw = await startChild(process.execPath, [...nodeArgs, join(root, 'bench', 'cpu-child.mjs'), 'gateway'], {
    env: { ...process.env, BENCH_GATEWAY: JSON.stringify({ cluster: { host: cluster.host, port: cluster.port }, direct, work, store: settings.store }) },
  });
  const { url, key } = await gw.nextLine();
  const tunnel = await hoopConnect(url, key, 'bench');
  cleanups.push(() => tunnel.close());
  return {
    conn: { host: tunnel.host, port: tunnel.port, user: tunnel.user, password: tunnel.password, database: tunnel.database },
    procs: [{ name: 'gateway', pid: gw.child.pid }, { name: 'hoop connect', pid: tunnel.pid }],
    /** Stops both (connect first) and resolves with the number of audit events the gateway recorded. */
    async auditEvents() {
      await tunnel.close();
      gw.child.kill('SIGTERM');
      const { auditEvents } = await gw.nextLine();
      await gw.exited;
      return auditEvents;
    },
  };
}

/** A gateway process of its own with `postgres_listen`; pgbench logs in as the API key's name with the key as its password. */
async function startOneHop(work, cluster, direct) {
  log('bench: starting a gateway with its own PostgreSQL listener (the one-hop path)');
  const dir = join(work, 'onehop');
  mkdirSync(dir);
  const nodeArgs = process.env.BENCH_NODE_ARGS ? process.env.BENCH_NODE_ARGS.split(' ') : [];
  const gw = await startChild(process.execPath, [...nodeArgs, join(root, 'bench', 'cpu-child.mjs'), 'gateway'], {
    env: { ...process.env, BENCH_GATEWAY: JSON.stringify({ cluster: { host: cluster.host, port: cluster.port }, direct, work: dir, store: settings.store, config: { postgres_listen: '127.0.0.1:0' } }) },
  });
  const { key, native } = await gw.nextLine();
  return {
    conn: { host: native.host, port: native.port, user: 'bench', password: key, database: 'bench' },
    procs: [{ name: 'gateway', pid: gw.child.pid }],
    async auditEvents() {
      gw.child.kill('SIGTERM');
      const { auditEvents } = await gw.nextLine();
      await gw.exited;
      return auditEvents;
    },
  };
}

/**
 * `hoop gateway` itself (the CLI, so that `workers: N` forks), one-hop, on a postgres:// store: a
 * database of the bench cluster of its own. Its processes are the primary and, with N > 1, the
 * workers it forked (its children).
 */
async function startCliGateway(work, cluster, direct, name, workers) {
  log(`bench: starting \`hoop gateway\` with workers: ${workers} and a postgres:// store (${name})`);
  const { apiKeyHash } = await dist('identity/api-keys.js');
  const pg = (await import('pg')).default;
  const database = `hoop_bench_store_${name.replace(/\W/g, '_')}`;
  const admin = new pg.Client({ host: cluster.socketDir, port: cluster.port, user: 'postgres', database: 'postgres' });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${database} OWNER ${direct.user}`);
  await admin.end();
  const dir = join(work, name);
  mkdirSync(dir);
  const key = `hoop_bench_${randomBytes(16).toString('hex')}`;
  const store = `postgres://${encodeURIComponent(direct.user)}:${encodeURIComponent(direct.password)}@${cluster.host}:${cluster.port}/${database}`;
  const config = join(dir, 'hoop.yaml');
  writeFileSync(config, JSON.stringify({
    listen: '127.0.0.1:0',
    postgres_listen: '127.0.0.1:0',
    store,
    workers,
    identity: { api_keys: [{ name: 'bench', sha256: apiKeyHash(key), groups: ['bench'] }] },
    connections: [{
      name: 'bench', type: 'postgres', access: ['bench'], max_sessions_per_user: 10_000,
      upstream: { host: cluster.host, port: cluster.port, database: 'bench', user: direct.user, password: direct.password, sslmode: 'disable' },
    }],
    audit: { signing_key: join(dir, 'signing.key') },
  }), { mode: 0o600 });
  const nodeArgs = process.env.BENCH_NODE_ARGS ? process.env.BENCH_NODE_ARGS.split(' ') : [];
  const child = spawn(process.execPath, [...nodeArgs, join(root, 'bin', 'hoop.js'), 'gateway', '--config', config], { stdio: ['ignore', 'ignore', 'pipe'] });
  const exited = new Promise((resolve) => child.once('close', resolve));
  cleanups.push(async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    const t = setTimeout(() => child.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(t);
  });
  // JSON log lines on stderr: `gateway listening` once every worker listens; the native port from a worker's line.
  let native = null;
  let listening = false;
  let tail = '';
  await new Promise((resolve, reject) => {
    let buf = '';
    child.stderr.on('data', (d) => {
      buf += d;
      tail = (tail + d).slice(-8000);
      for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        if (line.includes('"msg":"native PostgreSQL listener listening"')) native ??= JSON.parse(line);
        if (line.includes('"msg":"gateway listening"')) listening = true;
        if (listening && native) resolve(); // one process logs its native listener after `gateway listening`
      }
    });
    void exited.then((code) => reject(new Error(`hoop gateway (${name}) exited (${code}): ${tail}`)));
  });
  const primary = child.pid;
  const children = readFileSync(`/proc/${primary}/task/${primary}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  const procs = workers > 1
    ? [{ name: 'primary', pid: primary }, ...children.map((pid, i) => ({ name: `worker ${i + 1}`, pid }))]
    : [{ name: 'gateway', pid: primary }];
  return {
    conn: { host: native.host, port: native.port, user: 'bench', password: key, database: 'bench' },
    procs,
    /** Stops the gateway and reads how many events its store holds. */
    async auditEvents() {
      child.kill('SIGTERM');
      await exited;
      const c = new pg.Client({ host: direct.host, port: direct.port, user: direct.user, password: direct.password, database });
      await c.connect();
      const { rows } = await c.query('SELECT coalesce(max(seq), 0)::int AS n FROM events');
      await c.end();
      return rows[0].n;
    },
  };
}

function findPgbouncer() {
  for (const p of ['/usr/sbin/pgbouncer', '/usr/bin/pgbouncer']) if (existsSync(p)) return p;
  try {
    return execFileSync('sh', ['-c', 'command -v pgbouncer'], { encoding: 'utf8' }).trim() || null;
  } catch {
    return null;
  }
}

/**
 * pgbouncer in the foreground on a free loopback port, session pooling, clients trusted (it is a
 * throwaway on loopback), logging in to the bench cluster as `bench` with SCRAM. Installs Debian's
 * package when missing and running as root; otherwise returns { skipped }.
 */
async function startPgbouncer(work, cluster, direct) {
  let bin = findPgbouncer();
  if (!bin && userInfo().uid === 0 && existsSync('/usr/bin/apt-get')) {
    log('bench: pgbouncer missing; apt-get install -y pgbouncer (its service is not started: policy-rc.d)');
    const policy = '/usr/sbin/policy-rc.d';
    const ownPolicy = !existsSync(policy);
    if (ownPolicy) {
      writeFileSync(policy, '#!/bin/sh\nexit 101\n');
      chmodSync(policy, 0o755);
    }
    try {
      await execFileAsync('apt-get', ['install', '-y', '-q', 'pgbouncer'], { env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' }, maxBuffer: 16 * 1024 * 1024 });
    } catch (err) {
      return { skipped: `apt-get install pgbouncer failed: ${(err.stderr || err.message).trim().split('\n').slice(-2).join(' ')}` };
    } finally {
      if (ownPolicy) rmSync(policy, { force: true });
    }
    bin = findPgbouncer();
  }
  if (!bin) return { skipped: 'pgbouncer is not installed (install Debian\'s `pgbouncer` package, or run as root to let this script install it)' };
  log('bench: starting pgbouncer (session pooling)');
  const port = await freePort();
  const quote = (s) => `"${String(s).replace(/"/g, '""')}"`;
  writeFileSync(join(work, 'userlist.txt'), `${quote(direct.user)} ${quote(direct.password)}\n`, { mode: 0o600 });
  const ini = [
    '[databases]',
    `bench = host=${cluster.host} port=${cluster.port} dbname=bench user=${direct.user} password=${direct.password}`,
    '[pgbouncer]',
    'listen_addr = 127.0.0.1',
    `listen_port = ${port}`,
    'unix_socket_dir =',
    'auth_type = trust',
    `auth_file = ${join(work, 'userlist.txt')}`,
    'pool_mode = session',
    'max_client_conn = 200',
    'default_pool_size = 50',
    'ignore_startup_parameters = extra_float_digits',
    'log_connections = 0',
    'log_disconnections = 0',
    'log_stats = 0',
    'stats_period = 3600',
    ...(userInfo().uid === 0 ? ['user = postgres'] : []), // pgbouncer refuses to run as root
    '',
  ].join('\n');
  const iniFile = join(work, 'pgbouncer.ini');
  writeFileSync(iniFile, ini, { mode: 0o600 });
  const b = await startChild(bin, [iniFile], { stdio: ['ignore', 'pipe', 'pipe'] });
  const conn = { host: '127.0.0.1', port, user: direct.user, password: direct.password, database: 'bench' };
  for (let i = 0; ; i++) {
    if (b.child.exitCode !== null) return { skipped: `pgbouncer exited: ${b.stderr().trim().slice(-500)}` };
    try {
      await run(bindirOf() && existsSync(join(bindirOf(), 'pg_isready')) ? join(bindirOf(), 'pg_isready') : 'pg_isready', ['-q', '-h', conn.host, '-p', String(port), '-d', 'bench'], null);
      break;
    } catch {
      if (i >= 50) return { skipped: `pgbouncer did not accept connections: ${b.stderr().trim().slice(-500)}` };
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
  return { conn, procs: [{ name: 'pgbouncer', pid: b.child.pid }] };
}
let bindirCache = null;
const bindirOf = () => bindirCache;

function printReport(r) {
  const { environment: e, settings: s } = r;
  const fmt = (x, d = 0) => (Number.isFinite(x) ? x.toLocaleString('en-US', { minimumFractionDigits: d, maximumFractionDigits: d }) : '—');
  const names = { direct: 'direct', pgbouncer: 'pgbouncer', relay: 'bare relay', hoop: 'hoop', onehop: 'hoop one-hop', 'onehop-pg': 'one-hop pg 1w', workers: `one-hop pg ${s.workers}w` };
  const lines = [
    '',
    `hoop cpu bench — ${e.cpus} × ${e.cpu}, Node ${e.node}, PostgreSQL ${e.postgres}, CLK_TCK ${e.clkTck}`,
    `hoop: gateway process + \`hoop connect\` process, audit store: ${e.store}`,
    ...Object.entries(r.skipped).map(([k, v]) => `NOTICE: ${k} skipped: ${v}`),
  ];
  for (const mode of s.modes) {
    const m = r.pgbench[mode];
    const statements = m.direct.transactions;
    lines.push(
      '',
      `pgbench -n -S -M ${mode} -c ${s.clients} -j ${s.threads} -t ${s.transactions} (${fmt(statements)} statements per path, scale ${s.scale})`,
      `  path           CPU µs/stmt        tps   share of direct   failed   CPU µs/stmt by process`,
    );
    for (const [name, x] of Object.entries(m)) {
      const by = Object.entries(x.cpuUsByProcess).map(([k, v]) => `${k} ${fmt(v, 1)}`).join(' + ');
      lines.push(
        `  ${names[name].padEnd(14)} ${(x.cpuUsPerStatement === null ? '—' : fmt(x.cpuUsPerStatement, 1)).padStart(11)} ${fmt(x.tps).padStart(10)}   ${`${fmt((x.tps / m.direct.tps) * 100, 1)} %`.padStart(15)}   ${String(x.failed).padStart(6)}   ${by}`,
      );
    }
    const q = r.ratios[mode];
    lines.push(
      `  ratios: hoop / bare relay CPU ${fmt(q.hoopOverRelayCpu, 2)}×, hoop / pgbouncer CPU ${fmt(q.hoopOverPgbouncerCpu, 2)}×, bare relay / pgbouncer CPU ${fmt(q.relayOverPgbouncerCpu, 2)}×`,
      `          tps / direct: hoop ${fmt(q.hoopTpsShare, 2)}, bare relay ${fmt(q.relayTpsShare, 2)}, pgbouncer ${fmt(q.pgbouncerTpsShare, 2)}`,
      ...(m.onehop ? [`          hoop one-hop: tps / direct ${fmt(q.oneHopTpsShare, 2)} (goal ≥ 0.45), CPU / pgbouncer ${fmt(q.oneHopOverPgbouncerCpu, 2)}× (goal ≤ 2.5×), CPU / bare relay ${fmt(q.oneHopOverRelayCpu, 2)}×`] : []),
      ...(m.workers ? [`          workers: ${s.workers} workers / 1 worker (postgres:// store): tps ${fmt(q.workersOverOneWorkerTps, 2)}×, CPU per statement ${fmt(q.workersOverOneWorkerCpu, 2)}×; tps / direct ${fmt(q.workersTpsShare, 2)}`] : []),
    );
  }
  const d = r.select1.direct;
  lines.push('', `${s.queries} sequential SELECT 1 over one connection per path (pg driver, simple query protocol)`, '  path               p50 ms    p99 ms   added p50   added p99');
  for (const [name, l] of Object.entries(r.select1)) {
    lines.push(`  ${names[name].padEnd(14)} ${fmt(l.p50Ms, 3).padStart(9)} ${fmt(l.p99Ms, 3).padStart(9)} ${(name === 'direct' ? '' : fmt(l.p50Ms - d.p50Ms, 3)).padStart(11)} ${(name === 'direct' ? '' : fmt(l.p99Ms - d.p99Ms, 3)).padStart(11)}`);
  }
  if (r.auditEvents !== null) lines.push('', `audit events recorded by the gateway: ${fmt(r.auditEvents)}`);
  if (r.oneHopAuditEvents !== null) lines.push(`audit events recorded by the one-hop gateway: ${fmt(r.oneHopAuditEvents)}`);
  for (const [name, n] of Object.entries(r.cliAuditEvents)) lines.push(`audit events recorded by ${names[name]}: ${fmt(n)}`);
  lines.push('');
  process.stdout.write(lines.join('\n'));
}

runBenchmark(main);
