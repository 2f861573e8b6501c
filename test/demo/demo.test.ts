import { expect, inject, test, vi } from 'vitest';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer, type Server } from 'node:net';
import { PassThrough } from 'node:stream';
import pg from 'pg';
import { openLocalTunnel } from '../../src/client/tunnel.js';
import { BANK_ROW_COUNTS } from '../../src/demo/bank.js';
import { runDemo } from '../../src/demo/demo.js';
import { MASKED_QUERY } from '../../src/demo/banner.js';
import { PostgresCluster } from '../../src/demo/postgres-cluster.js';
import { listening, runClient } from '../helpers/clients.js';
import { until } from '../helpers/poll.js';
import { createTestDatabase } from '../helpers/postgres.js';

function capture(): { out: PassThrough; text: () => string; waitFor: (s: string) => Promise<void> } {
  const out = new PassThrough();
  let text = '';
  const waiters: { s: string; resolve: () => void }[] = [];
  out.on('data', (d: Buffer) => {
    text += d.toString('utf8');
    for (const w of waiters.filter((w) => text.includes(w.s))) w.resolve();
  });
  return {
    out,
    text: () => text,
    waitFor: (s) => new Promise((resolve) => (text.includes(s) ? resolve() : waiters.push({ s, resolve }))),
  };
}


/** pg_dump through the tunnel, restore into a fresh database of the shared test server, compare. */
async function expectDumpRestores(uri: string): Promise<void> {
  const upstream = inject('upstream');
  const dir = mkdtempSync(join(tmpdir(), 'hoop-demo-dump-'));
  const { info, drop } = await createTestDatabase(upstream, 'hoop_demo_restore');
  try {
    const dump = join(dir, 'bank.sql');
    const dumped = await runClient('pg_dump', ['--no-owner', '--no-privileges', '-f', dump, uri], { timeoutMs: 120_000 });
    expect(dumped.code, dumped.stderr).toBe(0);
    const target = `postgresql://${info.users.trust}@${info.host}:${info.port}/${info.database}`;
    const restored = await runClient('psql', ['-X', '-w', '-q', '-v', 'ON_ERROR_STOP=1', '-d', target, '-f', dump], { timeoutMs: 120_000 });
    expect(restored.code, restored.stderr).toBe(0);
    const counts = await runClient('psql', ['-X', '-w', '-At', '-d', target, '-c',
      'SELECT count(*) FROM bank.customers UNION ALL SELECT count(*) FROM bank.accounts UNION ALL SELECT count(*) FROM bank.cards UNION ALL SELECT count(*) FROM bank.transactions UNION ALL SELECT count(*) FROM bank.customer_overview']);
    const c = BANK_ROW_COUNTS;
    expect(counts.stdout.trim().split('\n').map(Number)).toEqual([c.customers, c.accounts, c.cards, c.transactions, c.customers]);
  } finally {
    await drop();
    rmSync(dir, { recursive: true, force: true });
  }
}

function processesMentioning(text: string): string[] {
  return execFileSync('ps', ['-eo', 'args'], { encoding: 'utf8' }).split('\n').filter((l) => l.includes(text));
}

test('hoop demo serves the seeded bank through the gateway, prints the next steps, and leaves nothing behind', async () => {
  const { out, text } = capture();
  const demo = await runDemo({ port: 0, out });
  const gatewayPort = Number(new URL(demo.url).port);
  const dbPassword = readFileSync(`${demo.dataDir}/bank-db.password`, 'utf8').trim();
  try {
    // The banner: one line per identity with its key, and the commands to type.
    const banner = text();
    for (const name of ['alice', 'bob', 'carol'] as const) {
      expect(demo.keys[name]).toMatch(new RegExp(`^hoop_demo_${name}_[0-9a-f]{32}$`));
      expect(banner.split('\n').filter((l) => l.includes(`HOOP_TOKEN=${demo.keys[name]}`)).length).toBeGreaterThanOrEqual(1);
    }
    expect(banner).toContain(`export HOOP_GATEWAY=${demo.url} HOOP_TOKEN=${demo.keys.alice}`);
    expect(banner).toMatch(/^ {2}hoop connect bank /m);
    expect(banner).toMatch(/^ {2}psql "/m);
    expect(banner).toMatch(/^ {2}hoop sessions /m);
    expect(banner).toContain(`PGPASSWORD=${demo.keys.alice} psql "postgresql://alice@127.0.0.1:${demo.postgresListen!.port}/bank?sslmode=disable"`);
    expect(banner).not.toContain(dbPassword);

    // The gateway knows who may use the bank.
    const connections = async (key: string) => {
      const res = await fetch(`${demo.url}/api/v1/connections`, { headers: { authorization: `Bearer ${key}` } });
      expect(res.status).toBe(200);
      return (await res.json()) as { name: string; allowed: boolean }[];
    };
    expect((await connections(demo.keys.alice)).find((c) => c.name === 'bank')?.allowed).toBe(true);
    expect((await connections(demo.keys.bob)).find((c) => c.name === 'bank')?.allowed).toBe(true);
    expect((await connections(demo.keys.carol)).find((c) => c.name === 'bank')?.allowed ?? false).toBe(false);

    // What alice would do: hoop connect (the local tunnel) and a SQL client, counting the bank.
    const tunnel = await openLocalTunnel({ gateway: demo.url, connection: 'bank', token: async () => demo.keys.alice, port: 0, user: 'alice', database: 'bank' });
    try {
      const client = new pg.Client({ connectionString: tunnel.uri });
      await client.connect();
      const { rows } = await client.query(
        'SELECT (SELECT count(*) FROM customers)::int AS customers, (SELECT count(*) FROM accounts)::int AS accounts,' +
          ' (SELECT count(*) FROM cards)::int AS cards, (SELECT count(*) FROM transactions)::int AS transactions',
      );
      expect(rows[0]).toEqual(BANK_ROW_COUNTS);
      const who = await client.query('SELECT current_user AS u');
      expect(who.rows[0].u).toBe('hoop_svc');
      // The walkthrough's query: masked for alice.
      const masked = await client.query(MASKED_QUERY);
      expect(masked.rows).toHaveLength(5);
      for (const r of masked.rows) {
        expect(r.ssn).toMatch(/^\*\*\*-\*\*-\d{4}$/);
        expect(r.email).toBe('****');
        expect(r.credit_score).toBeNull();
        expect(r.account_number).toMatch(/^\d{8,12}$/);
      }
      // A full export waits for bob's approval, then streams, masked.
      const notices: string[] = [];
      client.on('notice', (n) => notices.push(n.message ?? ''));
      const exported = client.query('select * from customers');
      const id = await until(() => notices.map((m) => /request (r-[0-9a-f]{8})/.exec(m)?.[1]).find(Boolean));
      const approve = await fetch(`${demo.url}/api/v1/reviews/${id}/approve`, { method: 'POST', headers: { authorization: `Bearer ${demo.keys.bob}`, 'content-type': 'application/json' }, body: '{}' });
      expect(approve.status).toBe(200);
      const all = await exported;
      expect(all.rows).toHaveLength(BANK_ROW_COUNTS.customers);
      expect(all.rows.every((r) => /^\*\*\*-\*\*-\d{4}$/.test(r.ssn))).toBe(true);
      // A WHERE that keeps every row is still a bulk read: held too (the planner's estimate), here denied.
      const bulk = client.query('select * from customers where id > 0').catch((e: unknown) => e);
      const bulkId = await until(() => notices.map((m) => /rule bulk-read\) — request (r-[0-9a-f]{8})/.exec(m)?.[1]).find(Boolean));
      const deny = await fetch(`${demo.url}/api/v1/reviews/${bulkId}/deny`, { method: 'POST', headers: { authorization: `Bearer ${demo.keys.bob}`, 'content-type': 'application/json' }, body: '{"comment":"too broad"}' });
      expect(deny.status).toBe(200);
      expect(await bulk).toMatchObject({ code: '42501' });
      await client.end();
    } finally {
      await tunnel.close();
    }

    // The same query as bob, exempt from masking: clear values; and pg_dump of the whole bank
    // through his tunnel restores into another server.
    const bobs = await openLocalTunnel({ gateway: demo.url, connection: 'bank', token: async () => demo.keys.bob, port: 0, user: 'bob', database: 'bank' });
    try {
      const client = new pg.Client({ connectionString: bobs.uri });
      await client.connect();
      const clear = await client.query(MASKED_QUERY);
      await client.end();
      for (const r of clear.rows) {
        expect(r.ssn).toMatch(/^\d{3}-\d{2}-\d{4}$/);
        expect(r.email).toContain('@');
        expect(r.credit_score).toBeGreaterThanOrEqual(300);
      }
      await expectDumpRestores(bobs.uri);
    } finally {
      await bobs.close();
    }

    // One hop: alice straight to the gateway's own listener, her key as the password: masked too.
    const native = new pg.Client({ host: '127.0.0.1', port: demo.postgresListen!.port, user: 'alice', password: demo.keys.alice, database: 'bank' });
    await native.connect();
    try {
      const rows = (await native.query(MASKED_QUERY)).rows;
      expect(rows).toHaveLength(5);
      expect(rows.every((r) => /^\*\*\*-\*\*-\d{4}$/.test(r.ssn))).toBe(true);
    } finally {
      await native.end();
    }

    // The database itself is not open to anyone without the service password.
    const direct = new pg.Client({ host: demo.upstream.host, port: demo.upstream.port, user: 'postgres', password: 'postgres', database: 'bank' });
    await expect(direct.connect()).rejects.toThrow(/password authentication failed/);
  } finally {
    await demo.stop();
  }
  expect(existsSync(demo.upstream.dir)).toBe(false);
  expect(existsSync(demo.dataDir)).toBe(false);
  expect(await listening(gatewayPort)).toBe(false);
  expect(await listening(demo.upstream.port)).toBe(false);
  expect(processesMentioning(demo.upstream.dir)).toEqual([]);
  await demo.stop(); // idempotent
});

test('aborting the signal stops a running demo; aborting during startup undoes what had started', async () => {
  const ac = new AbortController();
  const running = await runDemo({ port: 0, out: new PassThrough(), signal: ac.signal });
  ac.abort();
  await running.stop(); // the same stop the abort began
  expect(existsSync(running.upstream.dir)).toBe(false);
  expect(await listening(Number(new URL(running.url).port))).toBe(false);

  // Abort while the bank is being created: PostgreSQL is up by then, and must be stopped again.
  const clusters: PostgresCluster[] = [];
  const start = PostgresCluster.start.bind(PostgresCluster);
  const spy = vi.spyOn(PostgresCluster, 'start').mockImplementation(async (o) => {
    const c = await start(o);
    clusters.push(c);
    return c;
  });
  try {
    const early = new AbortController();
    const { out, waitFor } = capture();
    const starting = runDemo({ port: 0, out, signal: early.signal });
    await waitFor('Creating the bank database');
    early.abort();
    await expect(starting).rejects.toThrow(/abort/i);
  } finally {
    spy.mockRestore();
  }
  expect(clusters).toHaveLength(1);
  expect(existsSync(clusters[0]!.dir)).toBe(false);
  expect(await listening(clusters[0]!.port)).toBe(false);
  expect(processesMentioning(clusters[0]!.dir)).toEqual([]);
});

test('a busy port is reported before anything is started', async () => {
  const blocker: Server = createServer();
  await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
  const port = (blocker.address() as { port: number }).port;
  const { out, text } = capture();
  try {
    await expect(runDemo({ port, out })).rejects.toThrow(`port ${port} on 127.0.0.1 is already in use`);
    expect(text()).not.toContain('Starting a throwaway PostgreSQL');
  } finally {
    await new Promise((resolve) => blocker.close(resolve));
  }
});
