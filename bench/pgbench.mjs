#!/usr/bin/env node
/**
 * Throughput and latency of the hoop data path, against the same PostgreSQL in the same run:
 *
 *   1. pgbench select-only (-S, extended protocol, 8 clients, 2 threads) directly, then through
 *      `hoop connect`'s local tunnel -> gateway (write-ahead audit, SQLite store) -> PostgreSQL;
 *      prints both TPS and the ratio.
 *   2. 2,000 sequential `SELECT 1` over one `pg` connection, directly and through the tunnel;
 *      prints p50 / p99 / mean latency.
 *
 * Runs the built code (dist/): `npm run bench` builds first. Everything it starts (a throwaway
 * cluster, the gateway, the tunnel, temp dirs) is removed at the end, also on Ctrl-C.
 *
 * Environment: BENCH_DURATION (seconds per pgbench run, default 15), BENCH_CLIENTS (8),
 * BENCH_THREADS (2), BENCH_SCALE (pgbench -s, 10), BENCH_MODE (-M: extended), BENCH_QUERIES
 * (sequential SELECT 1 count, 2000), BENCH_STORE (the gateway's audit store: default a SQLite file
 * in the temp dir; `sqlite::memory:` shows the path without fsync cost; or a postgres:// URL),
 * BENCH_TUNNEL (`process`: `hoop connect --json` as its own process, as users run it — default;
 * `inprocess`: `openLocalTunnel` inside this process, beside the gateway),
 * BENCH_JSON=1 (also print one JSON line on stdout at the end).
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cleanupOnSignals, cleanups, connArgs, dist, env, hoopConnect, log, parsePgbench, run, runBenchmark, sequentialLatency, startBenchDatabase, startBenchGateway, benchEnvironment } from './lib.mjs';

cleanupOnSignals();
const settings = {
  duration: Number(env('BENCH_DURATION', '15')),
  clients: Number(env('BENCH_CLIENTS', '8')),
  threads: Number(env('BENCH_THREADS', '2')),
  scale: Number(env('BENCH_SCALE', '10')),
  mode: env('BENCH_MODE', 'extended'),
  queries: Number(env('BENCH_QUERIES', '2000')),
  store: env('BENCH_STORE', 'sqlite:hoop.db'),
  tunnel: env('BENCH_TUNNEL', 'process'),
  json: env('BENCH_JSON', '') === '1',
};


async function main() {
  const { findPostgresBindir } = await dist('demo/postgres-cluster.js');
  const { openLocalTunnel } = await dist('client/tunnel.js');

  const bindir = findPostgresBindir();
  const pgbench = bindir && existsSync(join(bindir, 'pgbench')) ? join(bindir, 'pgbench') : 'pgbench';

  const work = mkdtempSync(join(tmpdir(), 'hoop-bench-'));
  cleanups.push(() => rmSync(work, { recursive: true, force: true }));

  const { cluster, direct, serverVersion } = await startBenchDatabase('hoop-bench-pg');

  log(`bench: pgbench -i -s ${settings.scale}`);
  await run(pgbench, ['-i', '-q', '-s', String(settings.scale), ...connArgs(direct)], direct.password);

  log('bench: starting the gateway and the local tunnel');
  const { gateway, key } = await startBenchGateway({ cluster, direct, work, store: settings.store });
  let gatewayOpen = true;
  cleanups.push(() => (gatewayOpen ? gateway.close() : undefined));
  const tunnel = settings.tunnel === 'inprocess'
    ? await openLocalTunnel({ gateway: gateway.url, connection: 'bench', token: async () => key, port: 0, user: direct.user, database: 'bench' })
    : await hoopConnect(gateway.url, key, 'bench');
  cleanups.push(() => tunnel.close());
  const tunneled = { host: tunnel.host, port: tunnel.port, user: tunnel.user, password: tunnel.password, database: tunnel.database };

  const pgbenchArgs = (c, seconds = settings.duration) => [
    '-n', '-S', '-M', settings.mode,
    '-c', String(settings.clients), '-j', String(settings.threads),
    '-T', String(seconds), ...connArgs(c),
  ];
  log('bench: warming up (3 s direct)');
  await run(pgbench, pgbenchArgs(direct, 3), direct.password);

  log(`bench: pgbench -S -M ${settings.mode} -c ${settings.clients} -j ${settings.threads} -T ${settings.duration}, direct`);
  const directRun = parsePgbench(await run(pgbench, pgbenchArgs(direct), direct.password));
  log(`bench: the same through hoop (tunnel -> gateway -> PostgreSQL)`);
  const hoopRun = parsePgbench(await run(pgbench, pgbenchArgs(tunneled), tunneled.password));

  log(`bench: ${settings.queries} sequential SELECT 1, direct and through hoop`);
  const directLatency = await sequentialLatency(direct, settings.queries);
  const hoopLatency = await sequentialLatency(tunneled, settings.queries);

  await tunnel.close();
  const head = await gateway.store.head();
  await gateway.close();
  gatewayOpen = false;

  const result = {
    environment: {
      ...benchEnvironment(serverVersion),
      tunnel: settings.tunnel === 'inprocess' ? 'openLocalTunnel in the gateway process' : 'hoop connect, its own process',
      store: settings.store.startsWith('sqlite::memory:') ? 'sqlite in memory (no fsync)' : settings.store.startsWith('sqlite:') ? 'sqlite file' : 'postgres',
    },
    settings,
    pgbench: {
      direct: directRun,
      hoop: hoopRun,
      ratio: hoopRun.tps / directRun.tps,
    },
    select1: { direct: directLatency, hoop: hoopLatency },
    auditEvents: head?.seq ?? 0,
  };
  printReport(result);
  if (settings.json) process.stdout.write(`${JSON.stringify(result)}\n`);
}

function printReport(r) {
  const { pgbench: b, select1: l, environment: e, settings: s } = r;
  const fmt = (x, d = 0) => x.toLocaleString('en-US', { minimumFractionDigits: d, maximumFractionDigits: d });
  const lines = [
    '',
    `hoop bench — ${e.cpus} × ${e.cpu}, Node ${e.node}, PostgreSQL ${e.postgres}`,
    `audit store: ${e.store}; tunnel: ${e.tunnel}`,
    '',
    `pgbench -S -M ${s.mode} -c ${s.clients} -j ${s.threads} -T ${s.duration} (scale ${s.scale})`,
    `  direct         ${fmt(b.direct.tps).padStart(9)} tps   avg ${fmt(b.direct.latencyAvgMs ?? NaN, 3)} ms`,
    `  through hoop   ${fmt(b.hoop.tps).padStart(9)} tps   avg ${fmt(b.hoop.latencyAvgMs ?? NaN, 3)} ms   failed ${b.hoop.failed}`,
    `  ratio          ${fmt(b.ratio * 100, 1).padStart(9)} %   (hoop / direct)`,
    '',
    `${l.direct.n} sequential SELECT 1 over one connection (pg driver, simple query protocol)`,
    `  direct         p50 ${fmt(l.direct.p50Ms, 3)} ms   p99 ${fmt(l.direct.p99Ms, 3)} ms   mean ${fmt(l.direct.meanMs, 3)} ms`,
    `  through hoop   p50 ${fmt(l.hoop.p50Ms, 3)} ms   p99 ${fmt(l.hoop.p99Ms, 3)} ms   mean ${fmt(l.hoop.meanMs, 3)} ms`,
    '',
    `audit events recorded by the gateway during the run: ${fmt(r.auditEvents)}`,
    '',
  ];
  process.stdout.write(lines.join('\n'));
}

runBenchmark(main);
