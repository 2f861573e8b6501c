/**
 * COPY streams and backpressure through the whole path: a slow reader must not make the gateway
 * or the local tunnel buffer the result.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { pipeline } from 'node:stream/promises';
import { Readable, Writable } from 'node:stream';
import pg from 'pg';
import { from as copyFrom, to as copyTo } from 'pg-copy-streams';
import { afterAll, beforeAll, expect, inject, test } from 'vitest';
import { openLocalTunnel, type LocalTunnel } from '../../src/client/tunnel.js';
import { clientEnv } from '../helpers/clients.js';
import { startTestGateway } from '../helpers/gateway.js';
import { until } from '../helpers/poll.js';
import { createTestDatabase, type UpstreamInfo } from '../helpers/postgres.js';

const shared = inject('upstream');
let upstream: UpstreamInfo;
let database: Awaited<ReturnType<typeof createTestDatabase>>;

let gateway: Awaited<ReturnType<typeof startTestGateway>>;
let tunnel: LocalTunnel;

beforeAll(async () => {
  database = await createTestDatabase(shared, 'hoop_e2e');
  upstream = database.info;
  gateway = await startTestGateway({ upstream });
  const key = Object.values(gateway.keys)[0]!;
  tunnel = await openLocalTunnel({ gateway: gateway.url, connection: 'bank', token: async () => key, port: 0, user: 'tester', database: upstream.database });
});

afterAll(async () => {
  await tunnel?.close();
  await gateway?.close();
  await database?.drop();
});

function connectClient(): Promise<pg.Client> {
  const client = new pg.Client({ host: tunnel.host, port: tunnel.port, user: tunnel.user, password: tunnel.password, database: tunnel.database });
  return client.connect().then(() => client);
}

test('COPY FROM STDIN and COPY TO STDOUT streams with the pg driver', async () => {
  const client = await connectClient();
  try {
    await client.query('DROP TABLE IF EXISTS e2e_ledger; CREATE TABLE e2e_ledger (id int, memo text)');
    const lines = Array.from({ length: 20_000 }, (_, i) => `${i}\tmemo ${i}\n`);
    await pipeline(Readable.from(lines), client.query(copyFrom('COPY e2e_ledger FROM STDIN')));
    const { rows } = await client.query('SELECT count(*)::int AS n FROM e2e_ledger');
    expect(rows[0].n).toBe(20_000);

    let received = '';
    await pipeline(
      client.query(copyTo('COPY (SELECT * FROM e2e_ledger ORDER BY id) TO STDOUT')),
      new Writable({
        write(chunk: Buffer, _enc, cb) {
          received += chunk.toString('utf8');
          cb();
        },
      }),
    );
    expect(received).toBe(lines.join(''));
  } finally {
    await client.end();
  }
});

test('a stalled COPY TO STDOUT reader keeps gateway and tunnel memory flat', async () => {
  const totalRows = 300_000; // ~300 MB of row data
  const copy = `COPY (SELECT repeat('x', 1000) FROM generate_series(1, ${totalRows})) TO STDOUT`;
  const child = spawn('psql', ['-X', '-w', '-d', tunnel.uri, '-c', copy], {
    env: clientEnv(),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const stdout = child.stdout!;
  let bytes = 0;
  await new Promise<void>((resolve) =>
    stdout.once('data', (chunk: Buffer) => {
      bytes += chunk.length;
      stdout.pause(); // stall: psql blocks on its stdout and stops reading the tunnel
      resolve();
    }),
  );
  global.gc?.();
  const before = process.memoryUsage().rss;
  // The witness that nothing on the way buffers the result: PostgreSQL's backend is blocked
  // writing, its COPY's row count standing still from one look to the next, far from the end.
  const admin = new pg.Client({ host: upstream.host, port: upstream.port, user: upstream.users.trust, database: upstream.database });
  await admin.connect();
  let previous: number | undefined;
  const stalled = await until(async () => {
    const { rows } = await admin.query(
      `SELECT a.wait_event, p.tuples_processed::int AS rows FROM pg_stat_progress_copy p JOIN pg_stat_activity a USING (pid) WHERE a.query = $1`,
      [copy],
    );
    const now: { wait_event: string | null; rows: number } | undefined = rows[0];
    const still = now?.wait_event === 'ClientWrite' && now.rows === previous;
    previous = now?.rows;
    return still && now;
  }, { timeoutMs: 30_000, intervalMs: 100, what: 'the COPY stalled in ClientWrite' }).finally(() => admin.end());
  const during = process.memoryUsage().rss;
  expect(stalled.rows * 1001).toBeLessThan(64 * 1024 * 1024); // what left PostgreSQL: socket buffers' worth, not 300 MB
  expect(during - before).toBeLessThan(64 * 1024 * 1024);

  stdout.on('data', (chunk: Buffer) => (bytes += chunk.length));
  stdout.resume();
  const [code] = await once(child, 'close');
  expect(code).toBe(0);
  expect(bytes).toBe(totalRows * 1001);
}, 120_000);

test('a stalled COPY FROM STDIN upstream pushes back on the client: gateway and tunnel memory stay flat', async () => {
  // A row trigger that waits on an advisory lock the test holds: the backend stops reading its
  // socket at the first row while the client has hundreds of MB to send.
  const admin = new pg.Client({ host: upstream.host, port: upstream.port, user: upstream.users.trust, database: upstream.database });
  await admin.connect();
  const client = await connectClient();
  try {
    await admin.query(`DROP TABLE IF EXISTS e2e_inbox;
      CREATE TABLE e2e_inbox (id int, memo text);
      CREATE FUNCTION e2e_gate() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN PERFORM pg_advisory_lock_shared(4242); PERFORM pg_advisory_unlock_shared(4242); RETURN NEW; END $$;
      CREATE TRIGGER e2e_gate BEFORE INSERT ON e2e_inbox FOR EACH ROW EXECUTE FUNCTION e2e_gate();
      GRANT ALL ON e2e_inbox TO PUBLIC`);
    await admin.query('SELECT pg_advisory_lock(4242)');
    const copy = client.query(copyFrom('COPY e2e_inbox FROM STDIN'));
    const row = (i: number) => `${i}\t${'y'.repeat(1000)}\n`;
    const totalRows = 300_000; // ~300 MB
    let sent = 0;
    // Write until the stream pushes back, and again at every drain, until it stays pushed back.
    global.gc?.();
    const before = process.memoryUsage().rss;
    const fill = () => {
      while (sent < totalRows && copy.write(row(sent))) sent++;
      if (sent < totalRows) sent++; // the write that returned false was still taken
    };
    copy.on('drain', fill);
    fill();
    // Stalled: the backend waits on the lock with the COPY open, the stream wants a drain, and
    // nothing was taken since the look before.
    let previous = -1;
    await until(async () => {
      const { rows } = await admin.query(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE query = 'COPY e2e_inbox FROM STDIN' AND wait_event = 'advisory'`);
      const still = rows[0].n === 1 && copy.writableNeedDrain && sent === previous;
      previous = sent;
      return still;
    }, { timeoutMs: 60_000, intervalMs: 250, what: 'the COPY FROM stalled on the lock' });
    copy.off('drain', fill);
    const during = process.memoryUsage().rss;
    // Socket buffers on three hops hold some MB (about 20 here), nowhere near the 300 MB on offer;
    // the process (gateway and tunnel both) grows by that and the client's own garbage, no more.
    expect(sent).toBeLessThan(64 * 1024);
    expect(during - before).toBeLessThan(160 * 1024 * 1024);

    await admin.query('SELECT pg_advisory_unlock(4242)');
    const finished = once(copy, 'finish');
    await pipeline(
      Readable.from((function* () {
        for (let i = sent; i < totalRows; i++) yield row(i);
      })()),
      copy,
    );
    await finished.catch(() => {});
    const { rows } = await client.query('SELECT count(*)::int AS n FROM e2e_inbox');
    expect(rows[0].n).toBe(totalRows);
  } finally {
    await client.end();
    await admin.query('SELECT pg_advisory_unlock_all()').catch(() => {});
    await admin.end();
  }
}, 120_000);
