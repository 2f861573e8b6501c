/**
 * `workers: 2`: one real `hoop gateway` (the built CLI) that forks two worker processes sharing
 * its listeners, on a postgres:// store. Checked against what is not hoop: the rows the database
 * holds, the processes the kernel lists, what psql and the `pg` driver received.
 * - Connections are handed to both workers; statements through both append one chain that verifies,
 *   and every row the database holds has its query.start (and no more).
 * - What one worker cannot know alone: a psql cancel, natively and through a tunnel (its cancel
 *   connection reaches the other worker), max_sessions_per_user (counted across workers), /metrics (both workers' series), an
 *   API reload and SIGHUP (every worker applies and records it).
 * - A worker killed with SIGKILL is forked again; the other's session is untouched. So is a frozen
 *   one (SIGSTOP), once it has not answered the primary's pings for HOOP_WORKER_HANG_MS.
 * - SIGTERM stops the primary and every worker; each session's end is recorded.
 * Needs `npm run build`.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, test } from 'vitest';
import type { ConnectionInfo } from '../../src/api/types.js';
import { verifyStore } from '../../src/audit/verify.js';
import { openLocalTunnel } from '../../src/client/tunnel.js';
import { openStore } from '../../src/store/index.js';
import type { Store } from '../../src/store/store.js';
import { childEnv, runBin, tempHome } from '../cli/helpers.js';
import { freePort } from '../../src/demo/postgres-cluster.js';
import { newAgentKey, sha256Hex, startAgentProc, stopAll } from '../helpers/agent.js';
import { until } from '../helpers/poll.js';
import { createTestDatabase, passwordOf, type UpstreamInfo } from '../helpers/postgres.js';
import { bankConnectionLines, replicaConfig, startReplica, type Replica } from '../helpers/replica.js';

const shared = inject('upstream');
const AGENT_KEY = newAgentKey();
const KEYS = { alice: `hoop_${randomBytes(16).toString('hex')}`, root: `hoop_${randomBytes(16).toString('hex')}` };

let home: ReturnType<typeof tempHome>;
let bank: { info: UpstreamInfo; drop(): Promise<void> };
let storeDb: { info: UpstreamInfo; drop(): Promise<void> };
let storeUrl: string;
let configFile: string;
let gw: Replica;
let pgPort: number;
const clients: pg.Client[] = [];

/** Another `connections:` entry to the bank database, named `name`, with `more` lines in it. */
function connectionLines(name: string, more: string[] = []): string[] {
  return bankConnectionLines(bank.info, ['analysts'], more).slice(1).map((l) => l.replace('- name: bank', `- name: ${name}`));
}

function config(extraConnection: string[] = []): string {
  return replicaConfig({
    store: storeUrl,
    keys: [{ name: 'alice', key: KEYS.alice, groups: ['analysts'] }, { name: 'root', key: KEYS.root, groups: ['platform'] }],
    workers: 2,
    body: [
      'postgres_listen: 127.0.0.1:0',
      'roles: {admin: [platform]}',
      ...bankConnectionLines(bank.info, ['analysts']),
      ...connectionLines('limited', ['    max_sessions_per_user: 2']),
      ...connectionLines('agented', ['    agent: dc1']),
      ...extraConnection,
      `agents: [{name: dc1, sha256: ${sha256Hex(AGENT_KEY)}}]`,
    ],
    signingKey: join(home.dir, 'signing.key'),
  });
}

/** A `pg` client of alice's through the native listener (closed after the file). */
async function connect(application: string, database = 'bank'): Promise<pg.Client> {
  const c = new pg.Client({ host: '127.0.0.1', port: pgPort, user: 'alice', password: KEYS.alice, database, application_name: application });
  c.on('error', () => {});
  await c.connect();
  clients.push(c);
  return c;
}

/** The workers' pids: the primary's children. */
function workerPids(): number[] {
  const children = readFileSync(`/proc/${gw.child.pid}/task/${gw.child.pid}/children`, 'utf8').trim();
  return children === '' ? [] : children.split(/\s+/).map(Number);
}

/** The log lines (JSON) with message `msg`. */
function logged(msg: string): Record<string, unknown>[] {
  return gw.logs().split('\n').filter((l) => l.includes(`"msg":"${msg}"`)).map((l) => JSON.parse(l) as Record<string, unknown>);
}

async function withStore<T>(use: (s: Store) => Promise<T>): Promise<T> {
  const store = await openStore(storeUrl);
  try {
    return await use(store);
  } finally {
    await store.close();
  }
}

beforeAll(async () => {
  home = tempHome();
  bank = await createTestDatabase(shared, 'workers_bank');
  storeDb = await createTestDatabase(shared, 'workers_store');
  const s = storeDb.info;
  storeUrl = `postgres://${s.users.scram}:${passwordOf(s.users.scram)}@${s.host}:${s.port}/${s.database}`;
  const admin = new pg.Client({ host: bank.info.host, port: bank.info.port, user: bank.info.users.scram, password: passwordOf(bank.info.users.scram), database: bank.info.database });
  await admin.connect();
  await admin.query('CREATE TABLE marks (worker_test text PRIMARY KEY)');
  await admin.end();
  configFile = join(home.dir, 'hoop.yaml');
  writeFileSync(configFile, config());
  // A frozen worker is killed after 3 s here (10 s by default).
  gw = await startReplica(configFile, 'workers', { ...home.env, HOOP_WORKER_HANG_MS: '3000' });
  pgPort = (logged('gateway listening')[0]!['postgres'] as { port: number }).port;
}, 90_000);

afterAll(async () => {
  await stopAll(); // the agent
  await Promise.all(clients.map((c) => c.end().catch(() => {})));
  await gw?.stop();
  await bank?.drop();
  await storeDb?.drop();
  home?.cleanup();
}, 30_000);

describe('workers: 2 on a postgres:// store', () => {
  test('both workers serve sessions; their statements append one chain that matches what the database holds', async () => {
    expect(workerPids()).toHaveLength(2);
    expect(logged('worker listening').map((l) => l['worker']).sort()).toEqual(['1/2', '2/2']);
    // Sessions at once, in turns: each insert is a row the database holds afterwards.
    const marks = Array.from({ length: 8 }, (_, i) => `m${i}-${randomBytes(4).toString('hex')}`);
    for (let round = 0; round < 2; round++) {
      await Promise.all(marks.slice(round * 4, round * 4 + 4).map(async (mark, i) => {
        const c = new pg.Client({ host: '127.0.0.1', port: pgPort, user: 'alice', password: KEYS.alice, database: 'bank', application_name: `workers-${round}-${i}` });
        await c.connect();
        try {
          await c.query('INSERT INTO marks VALUES ($1)', [mark]);
        } finally {
          await c.end();
        }
      }));
    }
    const started = await until(() => {
      const lines = logged('session started').filter((l) => String(l['subject']) === 'apikey:alice');
      return lines.length >= 8 && lines;
    }, { timeoutMs: 10_000, what: 'eight session started lines' });
    expect(new Set(started.map((l) => l['worker']))).toEqual(new Set(['1/2', '2/2']));

    const admin = new pg.Client({ host: bank.info.host, port: bank.info.port, user: bank.info.users.scram, password: passwordOf(bank.info.users.scram), database: bank.info.database });
    await admin.connect();
    const held = (await admin.query<{ worker_test: string }>('SELECT worker_test FROM marks')).rows.map((r) => r.worker_test);
    await admin.end();
    expect(held.sort()).toEqual([...marks].sort());

    await withStore(async (store) => {
      const starts = (await store.readEvents({ types: ['query.start'] })).filter((e) => e.data['statement'] === 'INSERT INTO marks VALUES ($1)');
      expect(starts.map((e) => (e.data['parameters'] as string[])[0]).sort()).toEqual([...marks].sort());
      const ids = new Set(starts.map((e) => e.data['query_id']));
      const ends = await until(async () => {
        const e = (await store.readEvents({ types: ['query.end'] })).filter((x) => ids.has(x.data['query_id']));
        return e.length === 8 && e;
      }, { timeoutMs: 10_000, what: 'eight query.end events' });
      expect(ends.every((e) => e.data['outcome'] === 'ok')).toBe(true);
      const all = await store.readEvents({});
      expect(all.map((e) => e.seq)).toEqual(all.map((_, i) => i + 1)); // one linear chain
      expect(await verifyStore(store)).toMatchObject({ ok: true, events: all.length });
    });
  });

  test('a psql cancel reaches its statement on whichever worker holds it, natively and through a tunnel', async () => {
    const tunnel = await openLocalTunnel({ gateway: gw.url, connection: 'bank', token: async () => KEYS.alice, port: 0, user: 'alice', database: 'bank' });
    try {
      const native = { PGHOST: '127.0.0.1', PGPORT: String(pgPort), PGUSER: 'alice', PGPASSWORD: KEYS.alice, PGDATABASE: 'bank' };
      const tunnelled = { PGHOST: tunnel.host, PGPORT: String(tunnel.port), PGUSER: tunnel.user, PGPASSWORD: tunnel.password, PGDATABASE: tunnel.database };
      // Connections are handed out in turn, so the cancel connection of a session goes to the
      // other worker unless another connection came between; four in a row cover both orders.
      for (const [i, env] of [native, native, native, native, tunnelled, tunnelled, tunnelled, tunnelled].entries()) {
        const application = `workers-cancel-${i}`;
        const psql = spawn('psql', ['-X', '-Atc', 'SELECT pg_sleep(30)'], { env: childEnv({ ...env, PGSSLMODE: 'disable', PGAPPNAME: application }), stdio: ['ignore', 'pipe', 'pipe'] });
        let err = '';
        psql.stderr.on('data', (d: Buffer) => (err += d.toString()));
        const exited = new Promise<number | null>((resolve) => psql.once('exit', resolve));
        await withStore((store) => until(async () => (await store.readEvents({ types: ['query.start'] }))
          .some((e) => e.data['statement'] === 'SELECT pg_sleep(30)' && (e.source as { application?: string }).application === application),
        { timeoutMs: 10_000, what: `pg_sleep ${i} under way` }));
        psql.kill('SIGINT'); // psql sends a CancelRequest on a new connection
        const code = await Promise.race([exited, new Promise<'late'>((r) => setTimeout(() => r('late'), 10_000).unref())]);
        if (code === 'late') psql.kill('SIGKILL');
        expect(code, `psql ${i}: ${err}`).toBe(1);
        expect(err).toContain('canceling statement due to user request');
      }
    } finally {
      await tunnel.close();
    }
  });

  test('max_sessions_per_user counts the sessions of both workers', async () => {
    const one = await connect('workers-limit-1', 'limited');
    const two = await connect('workers-limit-2', 'limited'); // the next worker: one session on each
    const third = new pg.Client({ host: '127.0.0.1', port: pgPort, user: 'alice', password: KEYS.alice, database: 'limited' });
    await expect(third.connect()).rejects.toThrow(/already has 2 open sessions on connection limited, the limit \(max_sessions_per_user 2\)/);
    await two.end();
    clients.splice(clients.indexOf(two), 1);
    const again = await until(async () => {
      const c = new pg.Client({ host: '127.0.0.1', port: pgPort, user: 'alice', password: KEYS.alice, database: 'limited' });
      c.on('error', () => {});
      try {
        await c.connect();
        return c;
      } catch {
        return null;
      }
    }, { timeoutMs: 10_000, what: 'a session once one was closed' });
    expect((await again.query('SELECT 1 AS one')).rows).toEqual([{ one: 1 }]);
    await again.end();
    await one.end();
    clients.splice(clients.indexOf(one), 1);
  });

  test('/metrics holds both workers\' series', async () => {
    const text = await (await fetch(`${gw.url}/metrics`)).text();
    expect(text).toMatch(/^hoop_sessions_total\{worker="1"\} [1-9]\d*$/m);
    expect(text).toMatch(/^hoop_sessions_total\{worker="2"\} [1-9]\d*$/m);
    expect(text).toMatch(/^hoop_gateway_workers 2$/m);
    expect(text).toMatch(/^hoop_gateway_workers_reporting 2$/m);
    expect(text.match(/^# TYPE hoop_sessions_total counter$/gm)).toHaveLength(1);
  });

  test('hoop sessions kill through either worker ends a session the other worker holds', async () => {
    for (let i = 0; i < 2; i++) {
      const c = await connect(`workers-kill-${i}`);
      const ended = new Promise<Error>((resolve) => c.once('error', resolve));
      const sessionId = await withStore((store) => until(async () => (await store.readEvents({ types: ['session.start'] }))
        .find((e) => (e.source as { application?: string }).application === `workers-kill-${i}`)?.session_id, { what: `session ${i} recorded` }));
      // Two requests in a row: handed out in turn, one of them reaches the worker that does not hold the session.
      const res = await fetch(`${gw.url}/api/v1/sessions/${sessionId}/kill`, { method: 'POST', headers: { authorization: `Bearer ${KEYS.root}`, 'content-type': 'application/json' }, body: JSON.stringify({ reason: `drill ${i}` }) });
      expect(res.status, await res.clone().text()).toBe(200);
      expect((await ended).message).toMatch(/ended by apikey:root.*drill/i);
      clients.splice(clients.indexOf(c), 1);
    }
  });

  test('an API reload on one worker and a SIGHUP to the primary reach every worker, each recorded', async () => {
    writeFileSync(configFile, config(connectionLines('ledger')));
    const res = await fetch(`${gw.url}/api/v1/admin/reload`, { method: 'POST', headers: { authorization: `Bearer ${KEYS.root}` } });
    expect(res.status).toBe(200);
    const loaded = (source: string) => withStore(async (store) => (await store.readEvents({ types: ['config.loaded'] })).filter((e) => e.data['source'] === source));
    const byApi = await until(async () => {
      const e = await loaded('api');
      return e.length === 2 && e;
    }, { timeoutMs: 10_000, what: () => `config.loaded from both workers (log: ${gw.logs().split('\n').filter((l) => /reload/.test(l)).join('\n')})` });
    expect(byApi.map((e) => e.data['worker']).sort()).toEqual(['1/2', '2/2']);
    expect(byApi.every((e) => (e.data['connections'] as string[]).includes('ledger') && e.data['by'] === 'apikey:root')).toBe(true);
    // Every worker serves the new connection: two sessions in a row reach both.
    for (let i = 0; i < 2; i++) {
      const c = new pg.Client({ host: '127.0.0.1', port: pgPort, user: 'alice', password: KEYS.alice, database: 'ledger' });
      await c.connect();
      expect((await c.query('SELECT 1 AS one')).rows).toEqual([{ one: 1 }]);
      await c.end();
    }

    gw.child.kill('SIGHUP');
    const bySighup = await until(async () => {
      const e = await loaded('sighup');
      return e.length === 2 && e;
    }, { timeoutMs: 10_000, what: 'config.loaded (sighup) from both workers' });
    expect(bySighup.map((e) => e.data['worker']).sort()).toEqual(['1/2', '2/2']);
    // Each worker applied each reload once: a relayed reload is not relayed back (no echo between workers).
    expect(await loaded('api')).toHaveLength(2);
    expect(logged('config reloaded')).toHaveLength(4);
  });

  test('an agent given the one URL links to both workers, so sessions on either reach the database through it', async () => {
    const agentOf = async () => ((await (await fetch(`${gw.url}/api/v1/connections`, { headers: { authorization: `Bearer ${KEYS.alice}` } })).json()) as ConnectionInfo[])
      .find((c) => c.name === 'agented')!.agent;
    // Whichever worker answers, it speaks for both.
    expect(await agentOf()).toEqual({ name: 'dc1', online: false, links: 0, workers: { count: 2, linked: 0 } });
    const agent = startAgentProc(['--gateway', gw.url, '--allow', `${bank.info.host}:${bank.info.port}`], AGENT_KEY);
    const links = await agent.waitForLog('agent connected', {}, 2);
    expect(links.map((l) => l['worker']).sort()).toEqual(['1/2', '2/2']);
    for (let i = 0; i < 2; i++) expect(await until(async () => { const a = await agentOf(); return a?.online && a; }, { what: 'dc1 online on both workers' })).toEqual({ name: 'dc1', online: true, links: 2, workers: { count: 2, linked: 2 } });
    for (let i = 0; i < 4; i++) {
      const c = await connect(`workers-agent-${i}`, 'agented');
      expect((await c.query('SELECT 40 + 2 AS answer')).rows).toEqual([{ answer: 42 }]);
      await c.end();
      clients.splice(clients.indexOf(c), 1);
    }
    const served = logged('session started').filter((l) => l['connection'] === 'agented');
    expect(new Set(served.map((l) => l['worker']))).toEqual(new Set(['1/2', '2/2']));
  });

  test('a worker killed with SIGKILL is forked again; the other worker\'s session goes on', async () => {
    const a = await connect('workers-crash-a');
    const b = await connect('workers-crash-b'); // the next worker: one session on each
    const [victim] = workerPids();
    process.kill(victim!, 'SIGKILL');
    const alive = await Promise.all([a, b].map((c) => c.query('SELECT 1 AS one').then(() => true, () => false)));
    expect(alive.filter(Boolean)).toHaveLength(1);
    await until(() => workerPids().length === 2 && !workerPids().includes(victim!), { timeoutMs: 15_000, what: 'the worker forked again' });
    await until(() => logged('worker listening').length >= 3, { timeoutMs: 15_000, what: 'the new worker listening' });
    const survivor = alive[0] ? a : b;
    expect((await survivor.query('SELECT 2 AS two')).rows).toEqual([{ two: 2 }]);
    // New sessions reach both workers again.
    for (let i = 0; i < 2; i++) {
      const c = new pg.Client({ host: '127.0.0.1', port: pgPort, user: 'alice', password: KEYS.alice, database: 'bank' });
      await c.connect();
      expect((await c.query('SELECT 3 AS three')).rows).toEqual([{ three: 3 }]);
      await c.end();
    }
    await survivor.end();
    clients.splice(clients.indexOf(survivor), 1);
  });

  test('a frozen worker (SIGSTOP) stops answering the primary, is killed and forked again; the other worker\'s session goes on', async () => {
    const a = await connect('workers-frozen-a');
    const b = await connect('workers-frozen-b'); // the next worker: one session on each
    const [frozen] = workerPids();
    process.kill(frozen!, 'SIGSTOP');
    try {
      await until(() => !workerPids().includes(frozen!) && workerPids().length === 2, { timeoutMs: 20_000, what: 'the frozen worker replaced' });
    } finally {
      try {
        process.kill(frozen!, 'SIGCONT'); // in case it was not killed
      } catch {
        // gone, as it should be
      }
    }
    expect(logged('gateway worker stopped answering; killing it')).toHaveLength(1);
    const alive = await Promise.all([a, b].map((c) => c.query('SELECT 1 AS one').then(() => true, () => false)));
    expect(alive.filter(Boolean)).toHaveLength(1);
    for (const c of [a, b]) clients.splice(clients.indexOf(c), 1);
    await (alive[0] ? a : b).end();
  });

  test('SIGTERM stops the primary and both workers, and each open session\'s end is recorded', async () => {
    const open = await connect('workers-stop');
    const pids = workerPids();
    expect(await gw.stop()).toBe(0);
    for (const pid of pids) expect(() => process.kill(pid, 0)).toThrow();
    await expect(open.query('SELECT 1')).rejects.toThrow();
    await withStore(async (store) => {
      const sessions = (await store.readEvents({ types: ['session.start'] })).filter((e) => (e.source as { application?: string }).application === 'workers-stop');
      expect(sessions).toHaveLength(1);
      const ends = (await store.readEvents({ types: ['session.end'] })).filter((e) => e.session_id === sessions[0]!.session_id);
      expect(ends).toHaveLength(1);
      expect(await verifyStore(store)).toMatchObject({ ok: true });
    });
  });
});

describe('workers: 2 that cannot start', () => {
  test('a worker that cannot reach the store stops the whole gateway with its error, and no process is left', async () => {
    const port = await freePort(); // nothing listens there
    const file = join(home.dir, 'unreachable.yaml');
    writeFileSync(file, replicaConfig({
      store: `postgres://hoop:pw@127.0.0.1:${port}/hoop`,
      keys: [{ name: 'alice', key: KEYS.alice, groups: ['analysts'] }],
      workers: 2,
      body: bankConnectionLines(bank.info, ['analysts']),
      signingKey: join(home.dir, 'unreachable-signing.key'),
    }));
    const r = await runBin(['gateway', '--config', file], childEnv(home.env), 60_000);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/gateway worker [12]\/2 could not start/);
    expect(r.stderr).toContain(`127.0.0.1:${port}`); // the worker's own account of why
    expect(r.stderr).not.toContain('"msg":"gateway listening"');
    const left = readdirSync('/proc').filter((d) => /^\d+$/.test(d)).filter((d) => {
      try {
        return readFileSync(`/proc/${d}/cmdline`, 'utf8').includes(file);
      } catch {
        return false;
      }
    });
    expect(left).toEqual([]);
  });
});
