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
  const child = spawn('psql', ['-X', '-d', tunnel.uri, '-c', `COPY (SELECT repeat('x', 1000) FROM generate_series(1, ${totalRows})) TO STDOUT`], {
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
  await new Promise((r) => setTimeout(r, 3000)); // upstream would push hundreds of MB in this time
  const during = process.memoryUsage().rss;
  expect(during - before).toBeLessThan(64 * 1024 * 1024);

  stdout.on('data', (chunk: Buffer) => (bytes += chunk.length));
  stdout.resume();
  const [code] = await once(child, 'close');
  expect(code).toBe(0);
  expect(bytes).toBe(totalRows * 1001);
}, 120_000);
