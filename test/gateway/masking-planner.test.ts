/**
 * The masking planner on a live gateway: a reload applies new rules to the next statement of a
 * session already open; what the planner cannot know (a catalog it cannot read, a text it cannot
 * parse, a statement the engine cannot name, a connection removed by a reload) is refused.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { pino } from 'pino';
import { request } from 'undici';
import { afterAll, beforeAll, expect, inject, test } from 'vitest';
import { stringify } from 'yaml';
import { loadConfig, parseConfig } from '../../src/gateway/config.js';
import { startGateway, type RunningGateway } from '../../src/gateway/gateway.js';
import { MaskingService } from '../../src/gateway/masking.js';
import { apiKeyHash } from '../../src/identity/api-keys.js';
import type { Identity } from '../../src/identity/identity.js';
import { loadParser } from '../../src/policy/masking/parse.js';
import { newApiKey } from '../helpers/gateway.js';
import { createTestDatabase, passwordOf, type UpstreamInfo } from '../helpers/postgres.js';
import { tunnelClient } from './ws-client.js';

const shared = inject('upstream');
const KEYS = { root: newApiKey(), alice: newApiKey() };
let dir: string;
let db: { info: UpstreamInfo; drop(): Promise<void> };
let gw: RunningGateway;
let file: string;

function config(masking: Record<string, unknown> | null, withConnection = true): Record<string, unknown> {
  const user = db.info.users.scram;
  return {
    listen: '127.0.0.1:0',
    store: `sqlite:${join(dir, 'hoop.db')}`,
    identity: { api_keys: [{ name: 'root', sha256: apiKeyHash(KEYS.root), groups: ['platform'] }, { name: 'alice', sha256: apiKeyHash(KEYS.alice), groups: ['analysts'] }] },
    roles: { admin: ['platform'] },
    connections: withConnection ? [{
      name: 'bank', type: 'postgres', access: ['analysts'],
      upstream: { host: db.info.host, port: db.info.port, database: db.info.database, user, password: passwordOf(user), sslmode: 'disable' },
      ...(masking ? { masking } : {}),
    }] : [],
    audit: { signing_key: join(dir, 'signing.key') },
  };
}

const rules = (method: string) => ({ columns: [{ column: 'public.people.ssn', type: 'ssn', method, ...(method === 'partial' ? { keep: 4 } : {}) }] });

async function reload(raw: Record<string, unknown>): Promise<number> {
  writeFileSync(file, stringify(raw));
  const res = await request(`${gw.url}/api/v1/admin/reload`, { method: 'POST', headers: { authorization: `Bearer ${KEYS.root}` } });
  await res.body.text();
  return res.statusCode;
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'hoop-masking-planner-'));
  db = await createTestDatabase(shared, 'masking_planner');
  const admin = new pg.Client({ host: db.info.host, port: db.info.port, user: db.info.users.scram, password: passwordOf(db.info.users.scram), database: db.info.database });
  await admin.connect();
  await admin.query("CREATE TABLE people (id int, ssn text); INSERT INTO people VALUES (1, '123-45-6789')");
  await admin.end();
  file = join(dir, 'hoop.yaml');
  writeFileSync(file, stringify(config(rules('partial'))));
  gw = await startGateway(loadConfig(file), { logger: pino({ level: 'silent' }) });
});
afterAll(async () => {
  await gw?.close();
  await db?.drop();
  rmSync(dir, { recursive: true, force: true });
});

test('a reload applies to the next statement of an open session; removing the connection refuses it', async () => {
  const c = await tunnelClient(gw.url, 'bank', KEYS.alice);
  try {
    const ssn = async () => (await c.query('SELECT ssn FROM people')).rows[0].ssn;
    // A named prepared statement: its plan is kept for later Executes, but not across a reload.
    const prepared = async () => (await c.query({ name: 'by-name', text: 'SELECT ssn FROM people WHERE id = $1', values: [1] })).rows[0].ssn;
    expect(await ssn()).toBe('***-**-6789');
    expect(await prepared()).toBe('***-**-6789');
    expect(await reload(config(rules('redact')))).toBe(200);
    expect(await ssn()).toBe('****');
    expect(await prepared()).toBe('****');
    expect(await reload(config(null))).toBe(200);
    expect(await ssn()).toBe('123-45-6789');
    expect(await prepared()).toBe('123-45-6789');
    expect(await reload(config(null, false))).toBe(200);
    await expect(c.query('SELECT ssn FROM people')).rejects.toMatchObject({ code: '42501', message: expect.stringContaining('no longer configured') });
  } finally {
    await c.end();
  }
  expect(await reload(config(rules('partial')))).toBe(200);
});

test('a statement hoop cannot parse is refused on a masking connection, not passed', async () => {
  const c = await tunnelClient(gw.url, 'bank', KEYS.alice);
  try {
    await expect(c.query('SELEC ssn FROM people')).rejects.toMatchObject({ code: '42601', message: expect.stringMatching(/^hoop: statement refused: .*cannot parse/) });
    expect((await c.query('SELECT 1 AS one')).rows).toEqual([{ one: 1 }]);
  } finally {
    await c.end();
  }
});

test('a catalog hoop cannot read, or a statement the engine cannot name, is refused', async () => {
  await loadParser();
  const parsed = parseConfig(config(rules('partial')), 'masking.yaml', dir);
  const connection = { ...parsed.connections[0]!, maskingKey: Buffer.alloc(32, 7) };
  const unreachable = new MaskingService({ current: () => connection, dial: () => Promise.reject(new Error('connect ECONNREFUSED')) });
  const alice: Identity = { subject: 'apikey:alice', email: null, name: null, groups: ['analysts'], method: 'api_key', expiresAt: null };
  const session = unreachable.session('bank', alice);
  const start = { queryId: 'q1', protocol: 'simple' as const, statement: 'SELECT ssn FROM people', statementName: null, portal: null, parameters: [] };
  await expect(Promise.resolve(session.plan(start))).resolves.toMatchObject({ action: 'refuse', code: '42501', message: expect.stringContaining('could not read its catalog') });
  await expect(Promise.resolve(session.plan({ ...start, unknown: true, statement: '-- prepared statement "p": unknown' }))).resolves.toMatchObject({ action: 'refuse', message: expect.stringContaining('cannot name what this statement runs') });
});
