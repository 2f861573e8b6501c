/**
 * Two real gateway processes (`node bin/hoop.js gateway`, the built CLI) on one PostgreSQL store,
 * as replicas behind a load balancer that is not sticky: a session through replica A is listed and
 * shown through replica B, statements through both at once append one linear chain (one signing
 * key, every checkpoint verifying), and `hoop sessions kill` through B ends a session A holds.
 * Approvals across replicas: approvals-replicas.test.ts. Needs `npm run build`.
 */
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, test } from 'vitest';
import type { SessionDetail, SessionSummary } from '../../src/api/types.js';
import { verifyStore } from '../../src/audit/verify.js';
import { openStore } from '../../src/store/index.js';
import { childEnv, runBin, tempHome } from '../cli/helpers.js';
import { tunnelClient } from '../gateway/ws-client.js';
import { until } from '../helpers/poll.js';
import { createTestDatabase, passwordOf, untilRunning, type UpstreamInfo } from '../helpers/postgres.js';
import { bankConnectionLines, replicaConfig, startReplicaPair, type Replica } from '../helpers/replica.js';

const shared = inject('upstream');
const KEYS = { alice: `hoop_${randomBytes(16).toString('hex')}`, root: `hoop_${randomBytes(16).toString('hex')}` };

let home: ReturnType<typeof tempHome>;
let bank: { info: UpstreamInfo; drop(): Promise<void> };
let storeDb: { info: UpstreamInfo; drop(): Promise<void> };
let storeUrl: string;
const replicas: Replica[] = [];
let a: Replica;
let b: Replica;

beforeAll(async () => {
  home = tempHome();
  bank = await createTestDatabase(shared, 'replicas_chain_bank');
  storeDb = await createTestDatabase(shared, 'replicas_chain_store');
  const s = storeDb.info;
  const u = bank.info;
  storeUrl = `postgres://${s.users.scram}:${passwordOf(s.users.scram)}@${s.host}:${s.port}/${s.database}`;
  const config = join(home.dir, 'hoop.yaml');
  writeFileSync(config, replicaConfig({
    store: storeUrl,
    keys: [{ name: 'alice', key: KEYS.alice, groups: ['analysts'] }, { name: 'root', key: KEYS.root, groups: ['platform'] }],
    body: ['roles: {admin: [platform]}', ...bankConnectionLines(u, ['analysts'])],
    // Both replicas read this one file, so they sign with one key (in a deployment: a shared Secret).
    signingKey: join(home.dir, 'signing.key'),
    audit: 'checkpoint_interval: 1s',
  }));
  [a, b] = await startReplicaPair(config, home.env, replicas);
}, 90_000);

afterAll(async () => {
  await Promise.all(replicas.map((r) => r.stop()));
  await bank?.drop();
  await storeDb?.drop();
  home?.cleanup();
}, 30_000);

/** `hoop …` as root (an admin) through replica B. */
const hoopViaB = (args: string[]) => runBin(args, childEnv({ ...home.env, HOOP_GATEWAY: b.url, HOOP_TOKEN: KEYS.root }));

async function jsonViaB<T>(args: string[]): Promise<T> {
  const r = await hoopViaB([...args, '--json']);
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as T;
}

/** The session of alice's that `application` opened, as B lists it. */
const listedViaB = async (application: string) =>
  (await jsonViaB<SessionSummary[]>(['sessions', '--user', 'alice'])).find((s) => s.client_application === application);

describe('two gateway processes on one PostgreSQL store', () => {
  test('a session through A is listed and shown through B, while it is open', async () => {
    const c = await tunnelClient(a.url, 'bank', KEYS.alice, { application: 'replicas-list' });
    try {
      expect((await c.query('SELECT 41 + 1 AS answer')).rows).toEqual([{ answer: 42 }]);
      const listed = await until(() => listedViaB('replicas-list'), { timeoutMs: 10_000, what: 'the session in B\'s list' });
      expect(listed).toMatchObject({ connection: 'bank', subject: 'apikey:alice', ended_at: null, statements: 1 });
      // query.end rides with A's next batch (or its lazy flush): poll B until it shows the result.
      const shown = await until(async () => {
        const d = await jsonViaB<SessionDetail>(['sessions', 'show', listed.id]);
        return d.events.some((e) => e.type === 'query.end') && d;
      }, { timeoutMs: 10_000, what: 'query.end through B' });
      expect(shown.session.id).toBe(listed.id);
      expect(shown.events.find((e) => e.type === 'query.start')?.data).toMatchObject({ statement: 'SELECT 41 + 1 AS answer' });
      expect(shown.events.find((e) => e.type === 'query.end')?.data).toMatchObject({ outcome: 'ok', rows: 1 });
    } finally {
      await c.end();
    }
  });

  test('statements through both at once append one linear chain that verifies, signed with one key', async () => {
    const clients: pg.Client[] = [];
    try {
      for (const [i, r] of [a, a, b, b].entries()) clients.push(await tunnelClient(r.url, 'bank', KEYS.alice, { application: `replicas-chain-${i}` }));
      const ran = await Promise.all(clients.map(async (c, i) => {
        for (let n = 0; n < 25; n++) await c.query('SELECT $1::int AS client, $2::int AS n', [i, n]);
        return i;
      }));
      expect(ran).toEqual([0, 1, 2, 3]);
    } finally {
      await Promise.all(clients.map((c) => c.end()));
    }
    const store = await openStore(storeUrl);
    try {
      const starts = (await store.readEvents({ types: ['query.start'] })).filter((e) => e.data['statement'] === 'SELECT $1::int AS client, $2::int AS n');
      expect(starts).toHaveLength(100);
      const sessions = new Set(starts.map((e) => e.session_id));
      expect(sessions.size).toBe(4);
      // Each session's end is recorded after the fact, by the replica that held it; then a checkpoint covers them.
      const ends = await until(async () => {
        const found = (await store.readEvents({ types: ['session.end'] })).filter((e) => sessions.has(e.session_id));
        return found.length === 4 && found;
      }, { timeoutMs: 10_000, what: 'the four session.end events' });
      const lastEnd = Math.max(...ends.map((e) => e.seq));
      await until(async () => (await store.readEvents({ types: ['checkpoint'], afterSeq: lastEnd })).length > 0, { timeoutMs: 10_000, what: 'a checkpoint after the sessions' });
      const events = await store.readEvents({});
      expect(events.map((e) => e.seq)).toEqual(events.map((_, i) => i + 1));
      const report = await verifyStore(store);
      expect(report).toMatchObject({ ok: true, events: events.length });
      expect(report.key_ids).toHaveLength(1);
      expect(report.checkpoints).toBeGreaterThanOrEqual(1);
    } finally {
      await store.close();
    }
  });

  test('`hoop sessions kill` through B ends a session held by A', async () => {
    const statement = 'SELECT pg_sleep(60) AS replicas_kill';
    const c = await tunnelClient(a.url, 'bank', KEYS.alice, { application: 'replicas-kill' });
    const running = c.query(statement).then(() => null, (err: Error) => err);
    try {
      await untilRunning(bank.info, statement);
      const listed = await until(() => listedViaB('replicas-kill'), { timeoutMs: 10_000, what: 'the session in B\'s list' });
      const killed = await hoopViaB(['sessions', 'kill', listed.id, '--reason', 'INC-12', '--json']);
      expect(killed.code, killed.stderr).toBe(0);
      expect(JSON.parse(killed.stdout)).toMatchObject({ session_id: listed.id, requested_by: 'apikey:root', reason: 'INC-12' });
      expect((await running)?.message).toBe('hoop: this session was ended by apikey:root: INC-12');
      const ended = await until(async () => {
        const s = await listedViaB('replicas-kill');
        return s?.ended_at && s;
      }, { timeoutMs: 10_000, what: 'the session ended, through B' });
      expect(ended.end_reason).toBe('killed by apikey:root: INC-12');
      // Held on A, so A ended it; B only took the request.
      expect(b.logs()).toMatch(new RegExp(`"session":"${listed.id}".*"msg":"session kill requested"`));
      expect(a.logs()).toMatch(new RegExp(`"session":"${listed.id}".*"msg":"session killed"`));
      expect(b.logs()).not.toMatch(new RegExp(`"session":"${listed.id}".*"msg":"session killed"`));
    } finally {
      await c.end().catch(() => undefined);
    }
  });

  test('after both replicas stop, the log is one chain whose every checkpoint verifies', async () => {
    expect(await Promise.all(replicas.map((r) => r.stop()))).toEqual([0, 0]);
    const store = await openStore(storeUrl);
    try {
      const events = await store.readEvents({});
      expect(events.map((e) => e.seq)).toEqual(events.map((_, i) => i + 1));
      expect(events.at(-1)?.type).toBe('checkpoint');
      const report = await verifyStore(store);
      expect(report).toMatchObject({ ok: true });
      expect(report.key_ids).toHaveLength(1);
    } finally {
      await store.close();
    }
  });
});
