#!/usr/bin/env node
/**
 * What masking costs, in one run against one throwaway PostgreSQL and one gateway (its own
 * process) with two connections to the same database:
 *
 *   bench         no `masking` block: nothing is analysed or masked
 *   bench_masked  a `masking` block: three protected columns of the wide table (ssn partial,
 *                 account_number hash, email redact), one of pgbench_accounts (filler redact),
 *                 all four content detectors on
 *
 * 1. Streaming: `SELECT * FROM bench_wide` (BENCH_ROWS rows, 15 columns, about 340 bytes a row
 *    on the wire) read directly, through `bench`, and through `bench_masked`. The client is the
 *    `pg` driver for the login (SCRAM) only: after it, the script takes the socket over, sends
 *    one simple-protocol Query and reads the answer by message headers to ReadyForQuery, keeping
 *    nothing (no row parsing, no buffering: the fastest reader, so the path is what is timed).
 *    MB/s is of the unmasked result's wire size, so the ratios are ratios of time; CPU seconds of
 *    the gateway and `hoop connect` processes are read from /proc per run. Then the same for
 *    `COPY bench_wide TO STDOUT` (text format, one CopyData per row: what pg_dump reads).
 * 2. Per-statement analysis: `pgbench -n -S -M prepared|extended -t N` through `bench` and
 *    through `bench_masked`: tps, and CPU µs per statement of the gateway process.
 *
 * Runs the built code (`npm run bench:masking` builds first). Everything it starts is removed at
 * the end, also on Ctrl-C. Settings and how to read the output: bench/README.md.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { isAbsolute, join } from 'node:path';
import pg from 'pg';
import {
  benchEnvironment, cleanup, cleanupOnSignals, cleanups, connArgs, cpuSeconds, dist, env, hoopConnect, log, machineBusySeconds, parsePgbench, root, round, run,
  runBenchmark, startBenchDatabase,
} from './lib.mjs';

cleanupOnSignals();
const settings = {
  rows: Number(env('BENCH_ROWS', '1000000')),
  repeat: Number(env('BENCH_REPEAT', '3')),
  transactions: Number(env('BENCH_TRANSACTIONS', '2000')),
  clients: Number(env('BENCH_CLIENTS', '8')),
  threads: Number(env('BENCH_THREADS', '2')),
  scale: Number(env('BENCH_SCALE', '10')),
  modes: env('BENCH_MODES', 'prepared,extended').split(',').map((m) => m.trim()).filter(Boolean),
  store: env('BENCH_STORE', 'sqlite:hoop.db'),
  gatewayNodeArgs: env('BENCH_GATEWAY_NODE_ARGS', ''),
  pgbench: env('BENCH_PGBENCH', '1') !== '0',
  json: env('BENCH_JSON', '') === '1',
};
for (const m of settings.modes) if (!['extended', 'prepared', 'simple'].includes(m)) throw new Error(`BENCH_MODES: unknown mode ${m}`);
if (!(settings.rows >= 1) || !(settings.repeat >= 1)) throw new Error('BENCH_ROWS and BENCH_REPEAT must be at least 1');

const MASKING = {
  columns: [
    { column: 'public.bench_wide.ssn', type: 'ssn', method: 'partial', keep: 4 },
    { column: 'public.bench_wide.account_number', type: 'account_number', method: 'hash' },
    { column: 'public.bench_wide.email', type: 'email', method: 'redact' },
    // pgbench -S reads abalance only: this rule makes every statement's columns really checked.
    { column: 'public.pgbench_accounts.filler', type: 'other', method: 'redact' },
  ],
  detectors: ['ssn', 'card_number', 'iban', 'email'],
};

/** 15 columns: ids, names, text with digits (so the detectors scan it), numerics, times, and
 *  three protected-looking ones. Names and cities are letters only (md5 hex with digits mapped). */
const CREATE_WIDE = `
CREATE TABLE bench_wide (
  id bigint PRIMARY KEY, customer_id integer, first_name text, last_name text, city text, status varchar(16), note text,
  balance numeric(12,2), credit_limit numeric(12,2), score double precision, created_at timestamptz, updated_at timestamp,
  ssn char(11), email text, account_number varchar(24)
);
INSERT INTO bench_wide
SELECT g, g % 100000,
  (ARRAY['Alice','Bob','Carol','Dave','Erin','Frank','Grace','Heidi'])[g % 8 + 1],
  initcap(translate(substr(md5(g::text), 1, 10), '0123456789', 'ghijklmnop')),
  initcap(translate(substr(md5((g * 7)::text), 1, 8), '0123456789', 'ghijklmnop')),
  (ARRAY['active','closed','pending'])[g % 3 + 1],
  'order ' || g || ' shipped to warehouse ' || (g % 97) || ': ' || md5(g::text) || ' ' || md5((g + 1)::text),
  (g % 100000) * 1.37, (g % 50) * 1000, (g % 9973) / 9973.0,
  timestamptz '2020-01-01 00:00:00+00' + g * interval '1 minute', timestamp '2021-01-01' + g * interval '1 second',
  lpad((g % 1000)::text, 3, '0') || '-' || lpad((g % 100)::text, 2, '0') || '-' || lpad((g % 10000)::text, 4, '0'),
  'user' || g || '@example.com',
  'ACCT-' || lpad(g::text, 12, '0')
FROM generate_series(1, $ROWS) g;
`;
const STREAM_SQL = 'SELECT * FROM bench_wide';
const COPY_SQL = 'COPY bench_wide TO STDOUT';
const PATHS = ['direct', 'unmasked', 'masked'];
const LABELS = { direct: 'direct', unmasked: 'hoop, masking off', masked: 'hoop, masking on', rules: 'hoop, access rules' };
/** Issue 8's example rules that a read by primary key passes (every statement is still classified;
 *  an `estimated_rows` rule is left out: it adds an EXPLAIN of each statement, with its values, on the
 *  gateway's own connection, which measures the planner rather than the rules). */
const RULES = {
  approvers: ['reviewers'],
  rules: [
    { name: 'analysts-read-only', groups: ['analysts'], when: { kind: ['insert', 'update', 'delete', 'merge', 'ddl', 'dcl', 'copy_in'] }, action: 'deny' },
    { name: 'ddl', when: { kind: ['ddl'] }, action: 'deny' },
    { name: 'no-where', when: { kind: ['update', 'delete'], where: false }, action: 'require_approval' },
    { name: 'full-export', when: { kind: ['select', 'copy_out'], tables: ['pgbench_accounts', 'bench_wide'], where: false }, action: 'require_approval' },
    { name: 'protected-aggregate', when: { protected_columns: true, joins: true }, action: 'require_approval' },
  ],
};
/** The pgbench paths: the same database through each connection. */
const PGBENCH_PATHS = ['unmasked', 'masked', 'rules'];

async function main() {
  const { findPostgresBindir } = await dist('demo/postgres-cluster.js');
  const bindir = findPostgresBindir();
  const pgbench = bindir && existsSync(join(bindir, 'pgbench')) ? join(bindir, 'pgbench') : 'pgbench';

  const work = mkdtempSync(join(tmpdir(), 'hoop-bench-masking-'));
  cleanups.push(() => rmSync(work, { recursive: true, force: true }));
  const { cluster, direct, serverVersion } = await startBenchDatabase('hoop-bench-masking-pg');
  const loadAtStart = loadavg()[0];

  log(`bench: creating bench_wide (${settings.rows.toLocaleString('en-US')} rows)`);
  await withClient(direct, async (c) => {
    await c.query(CREATE_WIDE.replace('$ROWS', String(Math.floor(settings.rows))));
    await c.query('VACUUM ANALYZE bench_wide');
  });
  const tableMb = await withClient(direct, async (c) => Number((await c.query("SELECT pg_table_size('bench_wide') AS b")).rows[0].b) / 1e6);
  log(`bench: pgbench -i -s ${settings.scale}`);
  await run(pgbench, ['-i', '-q', '-s', String(settings.scale), ...connArgs(direct)], direct.password);

  const store = settings.store.startsWith('sqlite:') && !settings.store.startsWith('sqlite::memory:') && !isAbsolute(settings.store.slice(7)) ? `sqlite:${join(work, settings.store.slice(7))}` : settings.store;
  const gw = await startGateway({ cluster: { host: cluster.host, port: cluster.port }, direct, work, store, connections: [{ name: 'bench_masked', masking: MASKING }, { name: 'bench_rules', approval: RULES }] });
  const plain = await hoopConnect(gw.url, gw.key, 'bench');
  cleanups.push(() => plain.close());
  const masked = await hoopConnect(gw.url, gw.key, 'bench_masked');
  cleanups.push(() => masked.close());
  const ruled = await hoopConnect(gw.url, gw.key, 'bench_rules');
  cleanups.push(() => ruled.close());
  const conns = { direct, unmasked: connOf(plain), masked: connOf(masked), rules: connOf(ruled) };
  const procs = {
    direct: [],
    unmasked: [{ name: 'gateway', pid: gw.pid }, { name: 'hoop connect', pid: plain.pid }],
    masked: [{ name: 'gateway', pid: gw.pid }, { name: 'hoop connect', pid: masked.pid }],
    rules: [{ name: 'gateway', pid: gw.pid }, { name: 'hoop connect', pid: ruled.pid }],
  };

  // What the masking connection returns, so a reader sees the rules at work (and a wrong setup fails here).
  const sample = await withClient(conns.masked, async (c) => (await c.query('SELECT id, first_name, ssn, email, account_number, note FROM bench_wide WHERE id = 1')).rows[0]);
  const clear = await withClient(direct, async (c) => (await c.query('SELECT id, first_name, ssn, email, account_number, note FROM bench_wide WHERE id = 1')).rows[0]);
  if (!sample || sample.ssn === clear.ssn || sample.email === clear.email || sample.account_number === clear.account_number) {
    throw new Error(`the masking connection did not mask: ${JSON.stringify(sample)}`);
  }

  // 1. Streaming: SELECT * (DataRows), then COPY of the table (CopyData rows, the pg_dump path).
  log('bench: streaming warm-up (10,000 rows per path, unmeasured)');
  for (const p of PATHS) await streamQuery(conns[p], `${STREAM_SQL} LIMIT 10000`);
  const measure = async (sql) => {
    const runs = Object.fromEntries(PATHS.map((p) => [p, []]));
    for (let i = 0; i < settings.repeat; i++) {
      const order = i % 2 === 0 ? PATHS : [...PATHS].reverse(); // slow drift of the machine's load spreads over all paths
      for (const p of order) {
        log(`bench: ${sql}, ${LABELS[p]} (run ${i + 1} of ${settings.repeat})`);
        const before = cpuOf(procs[p]);
        const machineBefore = machineBusySeconds();
        const r = await streamQuery(conns[p], sql);
        const machineSeconds = round(machineBusySeconds() - machineBefore);
        await sleep(200); // the deferred query.end lands in the window
        const after = cpuOf(procs[p]);
        runs[p].push({ ...r, machineSeconds, cpuSeconds: Object.fromEntries(Object.keys(before).map((k) => [k, round(after[k] - before[k])])) });
      }
    }
    for (const p of PATHS) if (runs[p].some((r) => r.rows !== settings.rows)) throw new Error(`${sql}, ${LABELS[p]}: expected ${settings.rows} rows, got ${runs[p].map((r) => r.rows).join(', ')}`);
    const unmaskedBytes = runs.unmasked[0].bytes;
    const best = Object.fromEntries(PATHS.map((p) => {
      const top = runs[p].reduce((a, b) => (b.seconds < a.seconds ? b : a));
      return [p, {
        seconds: top.seconds, mbPerSec: round(unmaskedBytes / 1e6 / top.seconds), receivedMb: round(top.bytes / 1e6), rowsPerSec: Math.round(top.rows / top.seconds), cpuSeconds: top.cpuSeconds,
        runs: runs[p].map((r) => r.seconds), medianSeconds: median(runs[p].map((r) => r.seconds)), medianMachineSeconds: median(runs[p].map((r) => r.machineSeconds)),
      }];
    }));
    const ratios = {
      maskedOverUnmasked: round(best.unmasked.seconds / best.masked.seconds), unmaskedOverDirect: round(best.direct.seconds / best.unmasked.seconds), maskedOverDirect: round(best.direct.seconds / best.masked.seconds),
      medianMaskedOverUnmasked: round(best.unmasked.medianSeconds / best.masked.medianSeconds),
    };
    return { best, ratios, wireMb: round(unmaskedBytes / 1e6) };
  };
  const stream = await measure(STREAM_SQL);
  const copy = await measure(COPY_SQL);

  // 2. pgbench through each connection (BENCH_PGBENCH=0: the streams only, for a quicker A/B).
  const pgbenchArgs = (c, mode, t) => ['-n', '-S', '-M', mode, '-c', String(settings.clients), '-j', String(settings.threads), '-t', String(t), ...connArgs(c)];
  const modes = settings.pgbench ? settings.modes : [];
  if (modes.length > 0) {
    log('bench: pgbench warm-up through each connection (-t 200 per client, unmeasured)');
    for (const p of PGBENCH_PATHS) await run(pgbench, pgbenchArgs(conns[p], modes[0], 200), conns[p].password);
  }
  const bench = {};
  for (const [m, mode] of modes.entries()) {
    bench[mode] = {};
    for (const p of m % 2 === 0 ? PGBENCH_PATHS : [...PGBENCH_PATHS].reverse()) {
      log(`bench: pgbench -S -M ${mode} -c ${settings.clients} -j ${settings.threads} -t ${settings.transactions}, ${LABELS[p]}`);
      const before = cpuOf(procs[p]);
      const r = parsePgbench(await run(pgbench, pgbenchArgs(conns[p], mode, settings.transactions), conns[p].password));
      await sleep(300);
      const after = cpuOf(procs[p]);
      bench[mode][p] = { ...r, cpuUsPerStatement: Object.fromEntries(Object.keys(before).map((k) => [k, round(((after[k] - before[k]) * 1e6) / r.transactions)])) };
    }
  }

  await plain.close();
  await masked.close();
  await ruled.close();
  const auditEvents = await gw.stop();
  const result = {
    environment: { ...benchEnvironment(serverVersion), loadavgAtStart: round(loadAtStart), loadavgAtEnd: round(loadavg()[0]), store: settings.store },
    settings,
    table: { rows: settings.rows, columns: 15, heapMb: round(tableMb), wireMb: stream.wireMb, copyWireMb: copy.wireMb },
    sample: { clear, masked: sample },
    stream: stream.best,
    streamRatios: stream.ratios,
    copy: copy.best,
    copyRatios: copy.ratios,
    pgbench: bench,
    pgbenchRatios: Object.fromEntries(modes.map((m) => [m, round(bench[m].masked.tps / bench[m].unmasked.tps)])),
    rulesRatios: Object.fromEntries(modes.map((m) => [m, round(bench[m].rules.tps / bench[m].unmasked.tps)])),
    auditEvents,
  };
  await cleanup();
  printReport(result);
  if (settings.json) process.stdout.write(`${JSON.stringify(result)}\n`);
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const median = (xs) => round([...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]);
const connOf = (t) => ({ host: t.host, port: t.port, user: t.user, password: t.password, database: t.database });
const cpuOf = (procs) => Object.fromEntries(procs.map(({ name, pid }) => [name, cpuSeconds(pid)]));

async function withClient(c, fn) {
  const client = new pg.Client({ ...c, ssl: false });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

/**
 * One simple-protocol Query read to ReadyForQuery by message headers, nothing kept: the `pg`
 * driver logs in (SCRAM, through the tunnel too), then its parser is taken off the socket.
 * Resolves with the seconds from sending the Query to ReadyForQuery, bytes received and DataRows.
 */
async function streamQuery(c, sql) {
  const client = new pg.Client({ ...c, ssl: false });
  client.on('error', () => {});
  await client.connect();
  const socket = client.connection.stream;
  socket.removeAllListeners('data');
  const body = Buffer.from(`${sql}\0`, 'utf8');
  const query = Buffer.alloc(5 + body.length);
  query[0] = 0x51; // 'Q'
  query.writeInt32BE(4 + body.length, 1);
  body.copy(query, 5);
  try {
    return await new Promise((resolve, reject) => {
      const header = Buffer.alloc(5);
      let have = 0; // header bytes of the current message held in `header`
      let skip = 0; // body bytes of the current message still to come
      let bytes = 0;
      let rows = 0;
      let error = null;
      let t0 = 0n;
      const done = (err, value) => {
        socket.removeListener('data', onData);
        socket.removeListener('close', onClose);
        if (err) reject(err);
        else resolve(value);
      };
      const onClose = () => done(new Error(`connection closed during ${sql}`));
      const onData = (chunk) => {
        bytes += chunk.length;
        let at = 0;
        while (at < chunk.length) {
          if (skip > 0) {
            const n = Math.min(skip, chunk.length - at);
            skip -= n;
            at += n;
            continue;
          }
          if (have === 0 && chunk.length - at >= 5) {
            chunk.copy(header, 0, at, at + 5);
            at += 5;
          } else {
            const n = Math.min(5 - have, chunk.length - at);
            chunk.copy(header, have, at, at + n);
            have += n;
            at += n;
            if (have < 5) break;
          }
          have = 0;
          const type = header[0];
          skip = header.readInt32BE(1) - 4;
          if (type === 0x44 || type === 0x64) rows++; // 'D' DataRow, 'd' CopyData (one row each)
          else if (type === 0x45) error = chunk.toString('utf8', at, Math.min(chunk.length, at + skip)); // 'E'
          else if (type === 0x5a) { // 'Z' ReadyForQuery
            const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
            if (error !== null) done(new Error(`${sql}: ${error.replace(/\0/g, ' ').trim()}`));
            else done(null, { seconds: round(seconds), bytes, rows });
            return;
          }
        }
      };
      socket.on('data', onData);
      socket.once('close', onClose);
      t0 = process.hrtime.bigint();
      socket.write(query);
    });
  } finally {
    socket.end(Buffer.from([0x58, 0, 0, 0, 4])); // Terminate
    await new Promise((resolve) => (socket.destroyed ? resolve() : socket.once('close', resolve)));
  }
}

/**
 * The gateway in its own process (bench/cpu-child.mjs `gateway`, startBenchGateway from lib.mjs),
 * with BENCH_GATEWAY_NODE_ARGS (e.g. --cpu-prof); stop() resolves with the audit events it recorded.
 */
async function startGateway(options) {
  log('bench: starting the gateway (its own process) with connections bench and bench_masked');
  const nodeArgs = settings.gatewayNodeArgs ? settings.gatewayNodeArgs.split(' ').filter(Boolean) : [];
  const child = spawn(process.execPath, [...nodeArgs, join(root, 'bench', 'cpu-child.mjs'), 'gateway'], {
    env: { ...process.env, BENCH_GATEWAY: JSON.stringify(options) },
    stdio: ['pipe', 'pipe', 'inherit'], // stdin: the child stops when this process goes away
  });
  const exited = new Promise((resolve) => child.once('close', (code, sig) => resolve(code ?? sig)));
  const lines = [];
  let buf = '';
  let wake = () => {};
  child.stdout.on('data', (d) => {
    buf += d;
    for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
      lines.push(JSON.parse(buf.slice(0, nl)));
      buf = buf.slice(nl + 1);
    }
    wake();
  });
  const nextLine = () => new Promise((resolve, reject) => {
    const check = () => lines.length > 0 && resolve(lines.shift());
    wake = check;
    check();
    void exited.then((code) => reject(new Error(`gateway process exited (${code})`)));
  });
  let stopped = null;
  const stop = () => {
    stopped ??= (async () => {
      if (child.exitCode !== null || child.signalCode !== null) return null;
      child.kill('SIGTERM');
      const last = await Promise.race([nextLine().catch(() => null), sleep(10_000).then(() => null)]);
      const t = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(t);
      return last?.auditEvents ?? null;
    })();
    return stopped;
  };
  cleanups.push(stop);
  const { url, key } = await nextLine();
  return { url, key, pid: child.pid, stop };
}

function printReport(r) {
  const fmt = (x, d = 0) => (Number.isFinite(x) ? x.toLocaleString('en-US', { minimumFractionDigits: d, maximumFractionDigits: d }) : '—');
  const e = r.environment;
  const s = r.settings;
  const lines = [
    '',
    `hoop masking bench — ${e.cpus} × ${e.cpu}, Node ${e.node}, PostgreSQL ${e.postgres}; load average ${fmt(e.loadavgAtStart, 2)} at start, ${fmt(e.loadavgAtEnd, 2)} at end`,
    `gateway in its own process + one \`hoop connect\` process per connection, audit store: ${s.store}`,
    `masking on: ssn partial (keep 4), account_number hash, email redact; detectors ${MASKING.detectors.join(', ')}`,
    `  row 1 direct:       ${JSON.stringify(r.sample.clear)}`,
    `  row 1 masking on:   ${JSON.stringify(r.sample.masked)}`,
  ];
  const streamLines = (title, best, ratios, wireMb) => {
    lines.push(
      '',
      title,
      '  reader: pg driver for the login, then the raw socket read by message headers to ReadyForQuery (nothing kept)',
      '  path                    MB/s      rows/s   seconds   received MB   CPU s: gateway + hoop connect   runs (s)',
    );
    for (const p of PATHS) {
      const x = best[p];
      const cpu = p === 'direct' ? '' : `${fmt(x.cpuSeconds.gateway, 2)} + ${fmt(x.cpuSeconds['hoop connect'], 2)}`;
      lines.push(`  ${LABELS[p].padEnd(19)} ${fmt(x.mbPerSec, 1).padStart(9)} ${fmt(x.rowsPerSec).padStart(11)} ${fmt(x.seconds, 2).padStart(9)} ${fmt(x.receivedMb, 1).padStart(13)}   ${cpu.padEnd(29)}   ${x.runs.map((v) => fmt(v, 2)).join(' ')}`);
    }
    lines.push(
      `  masked / unmasked ${fmt(ratios.maskedOverUnmasked, 2)}× (goal ≥ 0.80×); through hoop / direct: masking off ${fmt(ratios.unmaskedOverDirect, 2)}×, masking on ${fmt(ratios.maskedOverDirect, 2)}×`,
      `  gateway CPU per MB: masking off ${fmt((best.unmasked.cpuSeconds.gateway * 1e3) / wireMb, 2)} ms, masking on ${fmt((best.masked.cpuSeconds.gateway * 1e3) / wireMb, 2)} ms`,
      `  medians of ${s.repeat} runs: masked / unmasked ${fmt(ratios.medianMaskedOverUnmasked, 2)}×; CPU s of the whole machine per run (PostgreSQL, reader and all): direct ${fmt(best.direct.medianMachineSeconds, 2)}, masking off ${fmt(best.unmasked.medianMachineSeconds, 2)}, masking on ${fmt(best.masked.medianMachineSeconds, 2)}`,
    );
  };
  streamLines(`${STREAM_SQL}: ${fmt(r.table.rows)} rows × ${r.table.columns} columns, ${fmt(r.table.wireMb, 1)} MB of result on the wire (heap ${fmt(r.table.heapMb, 1)} MB); best of ${s.repeat}`, r.stream, r.streamRatios, r.table.wireMb);
  streamLines(`${COPY_SQL} (text format, one CopyData per row: the pg_dump path): ${fmt(r.table.copyWireMb, 1)} MB on the wire; best of ${s.repeat}`, r.copy, r.copyRatios, r.table.copyWireMb);
  for (const mode of Object.keys(r.pgbench)) {
    const m = r.pgbench[mode];
    lines.push(
      '',
      `pgbench -n -S -M ${mode} -c ${s.clients} -j ${s.threads} -t ${s.transactions} (${fmt(m.unmasked.transactions)} statements per connection, scale ${s.scale})`,
      '  connection                 tps   avg ms   failed   CPU µs/stmt: gateway + hoop connect',
    );
    for (const p of PGBENCH_PATHS) {
      const x = m[p];
      lines.push(`  ${LABELS[p].padEnd(19)} ${fmt(x.tps).padStart(10)} ${fmt(x.latencyAvgMs, 3).padStart(8)} ${String(x.failed).padStart(8)}   ${fmt(x.cpuUsPerStatement.gateway, 1)} + ${fmt(x.cpuUsPerStatement['hoop connect'], 1)}`);
    }
    lines.push(`  masked / unmasked tps ${fmt(r.pgbenchRatios[mode], 2)}× (goal ≥ 0.90×); gateway CPU µs/stmt masked − unmasked ${fmt(m.masked.cpuUsPerStatement.gateway - m.unmasked.cpuUsPerStatement.gateway, 1)}`);
    lines.push(`  access rules / none tps ${fmt(r.rulesRatios[mode], 2)}× (goal ≥ 0.90×); gateway CPU µs/stmt rules − none ${fmt(m.rules.cpuUsPerStatement.gateway - m.unmasked.cpuUsPerStatement.gateway, 1)}`);
  }
  if (r.auditEvents !== null) lines.push('', `audit events recorded by the gateway: ${fmt(r.auditEvents)}`);
  lines.push('');
  process.stdout.write(lines.join('\n'));
}

runBenchmark(main);
