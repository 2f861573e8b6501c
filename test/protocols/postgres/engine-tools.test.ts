/** Real client tools through the engine: pgbench in every query mode, pg_dump and a restore. */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { startHarness, upstreamConfig, type Harness } from './engine-harness.js';

const run = promisify(execFile);
const upstream = inject('upstream');
const DB = 'hoop_engine_tools';
const RESTORED = 'hoop_engine_tools_restored';

let h: Harness;
let admin: pg.Client;
let dir: string;
const env = { ...process.env, PGPASSWORD: '', PGCONNECT_TIMEOUT: '10' };
const uri = () => `postgresql://someone@127.0.0.1:${h.port}/ignored?sslmode=disable`;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'hoop-engine-tools-'));
  admin = new pg.Client(upstreamConfig(upstream));
  await admin.connect();
  await admin.query(`DROP DATABASE IF EXISTS ${DB}`);
  await admin.query(`DROP DATABASE IF EXISTS ${RESTORED}`);
  await admin.query(`CREATE DATABASE ${DB}`);
  await admin.query(`CREATE DATABASE ${RESTORED}`);
  h = await startHarness({ upstream: upstreamConfig(upstream, upstream.users.scram, { database: DB }), payloadLimit: 4096 });
});
afterAll(async () => {
  await h?.close();
  await admin?.query(`DROP DATABASE IF EXISTS ${DB} WITH (FORCE)`);
  await admin?.query(`DROP DATABASE IF EXISTS ${RESTORED} WITH (FORCE)`);
  await admin?.end();
  rmSync(dir, { recursive: true, force: true });
});

describe('client tools through the engine', () => {
  it('pgbench initializes (COPY) and runs in simple, extended and prepared modes', async () => {
    await run('pgbench', ['-i', '-s', '1', '-q', uri()], { env });
    for (const mode of ['simple', 'extended', 'prepared']) {
      const { stdout } = await run('pgbench', ['-M', mode, '-c', '2', '-t', '30', '-n', uri()], { env });
      expect(stdout).toMatch(/number of transactions actually processed: 60\/60/);
      expect(stdout).toMatch(/number of failed transactions: 0/);
    }
    const starts = h.starts();
    expect(starts.some((s) => s.protocol === 'extended' && s.statementName !== '' && s.parameters.length > 0)).toBe(true);
    expect(h.ends().filter((e) => e.outcome !== 'ok')).toEqual([]);
  });

  it('pg_dump through the engine produces a dump that restores', async () => {
    const file = join(dir, 'dump.sql');
    await run('pg_dump', ['--no-owner', '-f', file, uri()], { env });
    const dump = readFileSync(file, 'utf8');
    expect(dump).toMatch(/COPY public\.pgbench_accounts/);
    const target = `postgresql://${upstream.users.scram}@${upstream.host}:${upstream.port}/${RESTORED}?sslmode=disable`;
    await run('psql', [target, '-X', '-w', '-q', '-v', 'ON_ERROR_STOP=1', '-f', file], { env: { ...env, PGPASSWORD: `${upstream.users.scram}-secret` } });
    const c = new pg.Client({ ...upstreamConfig(upstream), database: RESTORED });
    await c.connect();
    expect((await c.query('select count(*)::int as n from pgbench_accounts')).rows[0].n).toBe(100000);
    await c.end();
  });
});
