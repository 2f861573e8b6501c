/**
 * Write-ahead under a crash: kill -9 the gateway process while statements stream through it.
 * Every statement that reached PostgreSQL must have its durable `query.start`.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, expect, inject, test } from 'vitest';
import { openLocalTunnel } from '../../src/client/tunnel.js';
import { freePort } from '../../src/demo/postgres-cluster.js';
import { openStore } from '../../src/store/index.js';
import { until } from '../helpers/poll.js';
import { passwordOf } from '../helpers/postgres.js';

const upstream = inject('upstream');
const dir = mkdtempSync(join(tmpdir(), 'hoop-crash-'));
let gatewayProcess: ChildProcess | undefined;

afterAll(() => {
  gatewayProcess?.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
});

async function startGatewayProcess(port: number, config: string): Promise<ChildProcess> {
  const child = spawn(process.execPath, ['bin/hoop.js', 'gateway', '--config', config], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  for (let i = 0; i < 100; i++) {
    try {
      const res = await fetch(`http://127.0.0.1:${port}/healthz`);
      if (res.ok) return child;
    } catch {
      // not listening yet
    }
    if (child.exitCode !== null) throw new Error(`gateway exited: ${stderr}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`gateway did not start: ${stderr}`);
}

test('kill -9 of the gateway never leaves an upstream statement without its query.start', async () => {
  const key = randomBytes(24).toString('base64url');
  const port = await freePort();
  const table = `crash_markers_${process.pid}`;
  const config = join(dir, 'hoop.yaml');
  writeFileSync(
    config,
    [
      `listen: 127.0.0.1:${port}`,
      `store: sqlite:${join(dir, 'hoop.db')}`,
      'identity:',
      '  api_keys:',
      `    - {name: crash-test, sha256: ${createHash('sha256').update(key).digest('hex')}, groups: [dba]}`,
      'connections:',
      '  - name: bank',
      '    type: postgres',
      `    upstream: {host: ${upstream.host}, port: ${upstream.port}, database: ${upstream.database}, user: ${upstream.users.scram}, password: "\${env:CRASH_DB_PASSWORD}", sslmode: disable}`,
      '    access: [dba]',
      '',
    ].join('\n'),
  );
  process.env['CRASH_DB_PASSWORD'] = passwordOf(upstream.users.scram);
  const direct = new pg.Client({ host: upstream.host, port: upstream.port, user: upstream.users.trust, database: upstream.database });
  await direct.connect();
  await direct.query(`DROP TABLE IF EXISTS ${table}; CREATE TABLE ${table} (marker text primary key)`);

  gatewayProcess = await startGatewayProcess(port, config);
  const tunnel = await openLocalTunnel({ gateway: `http://127.0.0.1:${port}`, connection: 'bank', token: async () => key, port: 0, user: 'crash', database: upstream.database });

  // Several writers insert distinct markers as fast as they can until the gateway dies.
  const writers = Array.from({ length: 4 }, async (_, w) => {
    const client = new pg.Client({ host: tunnel.host, port: tunnel.port, user: tunnel.user, password: tunnel.password, database: tunnel.database });
    client.on('error', () => undefined);
    try {
      await client.connect();
      for (let i = 0; ; i++) await client.query(`INSERT INTO ${table} VALUES ('w${w}-${i}')`);
    } catch {
      // the gateway died under us: expected
    }
  });
  // Kill it mid-stream: once every writer has rows in, so that all four have statements in flight.
  await until(async () => {
    const { rows } = await direct.query(`SELECT count(*)::int AS n, count(DISTINCT split_part(marker, '-', 1))::int AS writers FROM ${table}`);
    return rows[0].n >= 100 && rows[0].writers === 4;
  }, { timeoutMs: 30_000, intervalMs: 20, what: 'all four writers inserting' });
  gatewayProcess.kill('SIGKILL');
  await Promise.all(writers);
  await tunnel.close();

  const { rows } = await direct.query(`SELECT marker FROM ${table}`);
  await direct.query(`DROP TABLE ${table}`);
  await direct.end();
  expect(rows.length).toBeGreaterThan(10);

  const store = await openStore(`sqlite:${join(dir, 'hoop.db')}`);
  const recorded = new Set(
    (await store.readEvents({}))
      .filter((e) => e.type === 'query.start')
      .map((e) => /VALUES \('([^']+)'\)/.exec(String(e.data['statement']))?.[1]),
  );
  await store.close();
  const unrecorded = rows.map((r) => r.marker as string).filter((m) => !recorded.has(m));
  expect(unrecorded).toEqual([]);
}, 60_000);
