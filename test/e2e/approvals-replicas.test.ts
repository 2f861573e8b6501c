/**
 * Two real gateway processes (`node bin/hoop.js gateway`, the built CLI) on one PostgreSQL store,
 * as replicas behind a load balancer: a statement held on replica A is released by
 * `hoop review approve` run against replica B, and ended by `hoop review deny` through B. The
 * decision reaches A through the store (LISTEN/NOTIFY; A's poll is the fallback), so the rows
 * arrive sooner than A's poll interval would bring them. Needs `npm run build`.
 */
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, test } from 'vitest';
import { APPROVAL_POLL_MS } from '../../src/gateway/approvals.js';
import { childEnv, runBin, tempHome } from '../cli/helpers.js';
import { tunnelClient } from '../gateway/ws-client.js';
import { until } from '../helpers/poll.js';
import { createTestDatabase, passwordOf, type UpstreamInfo } from '../helpers/postgres.js';
import { bankConnectionLines, replicaConfig, startReplicaPair, type Replica } from '../helpers/replica.js';

const shared = inject('upstream');
const KEYS = { alice: `hoop_${randomBytes(16).toString('hex')}`, bob: `hoop_${randomBytes(16).toString('hex')}` };

let home: ReturnType<typeof tempHome>;
let bank: { info: UpstreamInfo; drop(): Promise<void> };
let storeDb: { info: UpstreamInfo; drop(): Promise<void> };
const replicas: Replica[] = [];
let a: Replica;
let b: Replica;

beforeAll(async () => {
  home = tempHome();
  bank = await createTestDatabase(shared, 'replicas_bank');
  storeDb = await createTestDatabase(shared, 'replicas_store');
  const admin = new pg.Client({ host: bank.info.host, port: bank.info.port, user: bank.info.users.scram, password: passwordOf(bank.info.users.scram), database: bank.info.database });
  await admin.connect();
  await admin.query("CREATE TABLE customers (id int PRIMARY KEY, name text); INSERT INTO customers SELECT i, 'c' || i FROM generate_series(1, 20) i");
  await admin.end();
  const s = storeDb.info;
  const u = bank.info;
  const config = join(home.dir, 'hoop.yaml');
  // One config for both, as replicas of one deployment share it (and so the signing key).
  writeFileSync(config, replicaConfig({
    store: `postgres://${s.users.scram}:${passwordOf(s.users.scram)}@${s.host}:${s.port}/${s.database}`,
    keys: [{ name: 'alice', key: KEYS.alice, groups: ['analysts'] }, { name: 'bob', key: KEYS.bob, groups: ['dba'] }],
    body: bankConnectionLines(u, ['analysts', 'dba'], [
      '    approval:',
      '      approvers: [dba]',
      '      rules:',
      '        - {name: full-export, when: {kind: [select], tables: [customers], where: false}, action: require_approval}',
    ]),
    signingKey: join(home.dir, 'signing.key'),
  }));
  [a, b] = await startReplicaPair(config, home.env, replicas);
}, 90_000);

afterAll(async () => {
  await Promise.all(replicas.map((r) => r.stop()));
  await bank?.drop();
  await storeDb?.drop();
  home?.cleanup();
}, 30_000);

/** `hoop review approve|deny` as bob, against replica B. */
const reviewThroughB = (args: string[]) => runBin(['review', ...args], childEnv({ ...home.env, HOOP_GATEWAY: b.url, HOOP_TOKEN: KEYS.bob }));

/** A `pg` client of alice's through replica A's tunnel, its NOTICEs collected. */
async function aliceOnA(application: string): Promise<{ c: pg.Client; notices: string[] }> {
  const c = await tunnelClient(a.url, 'bank', KEYS.alice, { application });
  const notices: string[] = [];
  c.on('notice', (n) => notices.push(n.message ?? ''));
  return { c, notices };
}

const requestIn = async (notices: string[]) => (await until(() => notices.map((n) => /request (r-[0-9a-f]{8})/.exec(n)?.[1]).find(Boolean), { what: 'the hold notice' }))!;

describe('two gateway processes on one PostgreSQL store', () => {
  test('held on A, approved with `hoop review approve` through B: A runs it, sooner than its poll', async () => {
    const { c, notices } = await aliceOnA('replicas-approve');
    try {
      let arrived = 0;
      const result = c.query('SELECT id FROM customers ORDER BY id').then((r) => ((arrived = Date.now()), r));
      const id = await requestIn(notices);
      // B sees the request A stored.
      const listed = await runBin(['reviews', '--json'], childEnv({ ...home.env, HOOP_GATEWAY: b.url, HOOP_TOKEN: KEYS.bob }));
      expect(listed.code, listed.stderr).toBe(0);
      expect((JSON.parse(listed.stdout) as { id: string; status: string }[]).find((r) => r.id === id)).toMatchObject({ status: 'pending', statement: 'SELECT id FROM customers ORDER BY id' });
      const approved = await reviewThroughB(['approve', id, '--comment', 'INC-9']);
      const decidedAt = Date.now();
      expect(approved.code, approved.stderr).toBe(0);
      expect(approved.stderr).toContain(`Approved ${id}`);
      expect((await result).rows.map((r) => r.id)).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
      // NOTIFY wakes A at B's commit, before the CLI has even printed; A's poll would take up to its interval.
      expect(arrived - decidedAt).toBeLessThan(APPROVAL_POLL_MS);
    } finally {
      await c.end();
    }
    // The decision went through B; the hold and its use were A's.
    expect(b.logs()).toMatch(/"msg":"approval decided"/);
    expect(a.logs()).not.toMatch(/"msg":"approval decided"/);
  });

  test('held on A, denied through B: A ends it with 42501 naming the reviewer, and the session goes on', async () => {
    const { c, notices } = await aliceOnA('replicas-deny');
    try {
      const result = c.query('SELECT name FROM customers').catch((e: unknown) => e);
      const id = await requestIn(notices);
      const denied = await reviewThroughB(['deny', id, '--comment', 'not today']);
      expect(denied.code, denied.stderr).toBe(0);
      expect(await result).toMatchObject({ code: '42501', message: expect.stringContaining(`approval request ${id}`) });
      expect(((await result) as Error).message).toContain('denied by apikey:bob: not today');
      expect((await c.query('SELECT 1 AS ok')).rows).toEqual([{ ok: 1 }]);
    } finally {
      await c.end();
    }
  });

  test('the requester cannot approve their own request through the other replica (exit 5)', async () => {
    const { c, notices } = await aliceOnA('replicas-self');
    try {
      const result = c.query('SELECT id FROM customers -- self').catch((e: unknown) => e);
      const id = await requestIn(notices);
      const self = await runBin(['review', 'approve', id], childEnv({ ...home.env, HOOP_GATEWAY: b.url, HOOP_TOKEN: KEYS.alice }));
      expect(self.code).toBe(5);
      expect(self.stderr).toContain('your own request');
      expect((await reviewThroughB(['deny', id, '--comment', 'self-approval test'])).code).toBe(0);
      expect(await result).toMatchObject({ code: '42501' });
    } finally {
      await c.end();
    }
  });
});
