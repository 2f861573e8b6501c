/**
 * Live config: the masking hash key file, and reloading the config file through
 * `POST /api/v1/admin/reload` (SIGHUP is tested on a real process in test/cli/gateway-process.test.ts).
 * A real gateway on a real YAML file; no session is opened, so no database is needed.
 */
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { request } from 'undici';
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'vitest';
import { stringify } from 'yaml';
import { loadConfig, parseConfig } from '../../src/gateway/config.js';
import { configChanges, keepRestartOnly } from '../../src/gateway/reload.js';
import { startGateway, type RunningGateway } from '../../src/gateway/gateway.js';
import { apiKeyHash } from '../../src/identity/api-keys.js';
import { newApiKey } from '../helpers/gateway.js';

const silent = pino({ level: process.env['HOOP_TEST_LOG'] ?? 'silent' });
let root: string;
beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), 'hoop-reload-'));
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

const running: RunningGateway[] = [];
afterEach(async () => {
  for (const g of running.splice(0)) await g.close();
});

const KEYS = { root: newApiKey(), alice: newApiKey(), bob: newApiKey(), dave: newApiKey() };
const UPSTREAM_PASSWORD = 'upstream-pw-never-recorded';
const HASH_KEY = 'hash-key-never-recorded-0123456789abcdef';

type Raw = Record<string, unknown>;

function connection(name: string, extra: Raw = {}): Raw {
  return { name, type: 'postgres', upstream: { host: '127.0.0.1', port: 1, database: 'bank', user: 'svc', password: UPSTREAM_PASSWORD, sslmode: 'disable' }, access: ['analysts', 'dba'], ...extra };
}

function baseConfig(dir: string, over: Raw = {}): Raw {
  return {
    listen: '127.0.0.1:0',
    store: `sqlite:${join(dir, 'hoop.db')}`,
    identity: {
      api_keys: [
        { name: 'root', sha256: apiKeyHash(KEYS.root), groups: ['platform'] },
        { name: 'alice', sha256: apiKeyHash(KEYS.alice), groups: ['analysts'] },
        { name: 'bob', sha256: apiKeyHash(KEYS.bob), groups: ['dba'] },
      ],
    },
    roles: { admin: ['platform'] },
    connections: [
      connection('bank', {
        masking: {
          columns: [
            { column: 'public.customers.ssn', type: 'ssn', method: 'partial', keep: 4 },
            { column: 'public.customers.email', type: 'email', method: 'redact' },
          ],
          exempt: ['dba'],
        },
      }),
      connection('ledger'),
    ],
    audit: { signing_key: join(dir, 'keys/signing.key') },
    ...over,
  };
}

function writeConfig(dir: string, raw: Raw): string {
  const path = join(dir, 'hoop.yaml');
  writeFileSync(path, stringify(raw));
  return path;
}

async function start(dir: string, raw: Raw): Promise<{ gw: RunningGateway; path: string }> {
  const path = writeConfig(dir, raw);
  const gw = await startGateway(loadConfig(path), { logger: silent });
  running.push(gw);
  return { gw, path };
}

function freshDir(name: string): string {
  const dir = join(root, name);
  mkdirSync(dir);
  return dir;
}

async function call(gw: RunningGateway, method: 'GET' | 'POST', path: string, key: string) {
  const res = await request(`${gw.url}${path}`, { method, headers: { authorization: `Bearer ${key}` } });
  return { status: res.statusCode, json: (await res.body.json()) as any };
}

const events = async (gw: RunningGateway, type: string) => (await gw.store.readEvents({})).filter((e) => e.type === type);

describe('the gateway masking key (masking.key beside the signing key)', () => {
  test('created 0600 with 32 random bytes on first start, reused after a restart; a connection hash_key takes its place', async () => {
    const dir = freshDir('key-created');
    const raw = baseConfig(dir);
    (raw['connections'] as Raw[])[1]!['masking'] = { hash_key: HASH_KEY };
    const first = await start(dir, raw);
    const file = join(dir, 'keys/masking.key');
    expect(statSync(file).mode & 0o777).toBe(0o600);
    const bytes = readFileSync(file);
    expect(bytes).toHaveLength(32);
    expect(first.gw.configs.connection('bank')!.maskingKey).toEqual(bytes);
    expect(first.gw.configs.connection('ledger')!.maskingKey).toEqual(Buffer.from(HASH_KEY));
    await first.gw.close();
    running.splice(0);
    const second = await start(dir, raw);
    expect(readFileSync(file)).toEqual(bytes);
    expect(second.gw.configs.connection('bank')!.maskingKey).toEqual(bytes);
  });

  test('a key file others may read, one too short, or one that is not a file: the gateway refuses to start', async () => {
    const dir = freshDir('key-refused');
    const file = join(dir, 'keys/masking.key');
    mkdirSync(join(dir, 'keys'), { mode: 0o700 });
    writeFileSync(file, Buffer.alloc(32, 7), { mode: 0o600 });
    chmodSync(file, 0o640);
    await expect(start(dir, baseConfig(dir))).rejects.toThrow(/masking key: cannot use .*masking\.key: its mode 0640 lets others read it; it must be 0600/);
    chmodSync(file, 0o600);
    writeFileSync(file, Buffer.alloc(16, 7));
    await expect(start(dir, baseConfig(dir))).rejects.toThrow(/it holds 16 bytes, fewer than 32/);
    rmSync(file);
    mkdirSync(file);
    await expect(start(dir, baseConfig(dir))).rejects.toThrow(/masking key: cannot use .*not a regular file/);
  });
});

describe('POST /api/v1/admin/reload', () => {
  test('an admin reloads: rules, connections and API keys change for what comes next; config.loaded has the diff and no secret', async () => {
    const dir = freshDir('reload-ok');
    const { gw, path } = await start(dir, baseConfig(dir));
    const before = await call(gw, 'GET', '/api/v1/connections', KEYS.alice);
    expect(before.json.map((c: any) => [c.name, c.masking])).toEqual([
      ['bank', { enabled: true, exempt: false, columns: 2, detectors: ['ssn', 'card_number', 'iban', 'email'] }],
      ['ledger', { enabled: false, exempt: false, columns: 0, detectors: [] }],
    ]);
    const started = await events(gw, 'config.loaded');
    expect(started).toHaveLength(1);
    expect(started[0]!.data).toMatchObject({
      source: 'start',
      changes: { connections: { added: ['bank', 'ledger'], removed: [], changed: [] }, masking: { bank: { added: ['public.customers.ssn: ssn partial keep 4', 'public.customers.email: email redact'] } }, needs_restart: [] },
    });

    const next = baseConfig(dir, { listen: '127.0.0.1:1' });
    (next['identity'] as { api_keys: Raw[] }).api_keys.splice(2, 1, { name: 'dave', sha256: apiKeyHash(KEYS.dave), groups: ['analysts'] });
    next['connections'] = [
      connection('bank', {
        masking: {
          columns: [
            { column: 'public.customers.ssn', type: 'ssn', method: 'hash' },
            { column: '*.*.account_number', type: 'account_number', method: 'null' },
          ],
          detectors: ['ssn'],
          exempt: [],
          hash_key: HASH_KEY,
        },
        approval: {
          approvers: ['dba'],
          notify: [{ webhook: 'https://hooks.slack.example/T/B/token-in-path', format: 'slack', secret: 'webhook-secret-0123456789' }],
          rules: [
            { name: 'analysts-read-only', groups: ['analysts'], when: { kind: ['insert', 'update'] }, action: 'deny' },
            { name: 'bulk', when: { kind: ['select'], estimated_rows: '>10000', where: false }, action: 'require_approval' },
          ],
        },
      }),
      connection('vault', { masking: { columns: [{ column: 'a.b.c', type: 'other', method: 'redact' }] } }),
    ];
    writeConfig(dir, next);
    const r = await call(gw, 'POST', '/api/v1/admin/reload', KEYS.root);
    expect(r.status).toBe(200);
    expect(r.json).toEqual({
      reloaded: true,
      sha256: loadConfig(path).fingerprint,
      needs_restart: ['listen'],
      changes: {
        connections: { added: ['vault'], removed: ['ledger'], changed: ['bank'] },
        masking: {
          bank: {
            added: ['*.*.account_number: account_number null'],
            removed: ['public.customers.email: email redact'],
            changed: [
              'public.customers.ssn: ssn partial keep 4 -> ssn hash',
              'detectors: ssn, card_number, iban, email -> ssn',
              'exempt: dba -> (none)',
              'hash_key: replaced (hash tokens change)',
            ],
          },
          vault: { added: ['a.b.c: other redact'], removed: [], changed: ['masking: off -> on'] },
        },
        approval: {
          bank: {
            added: ['analysts-read-only: deny for analysts when kind=insert,update', 'bulk: require_approval when kind=select where=false estimated_rows>10000'],
            removed: [],
            changed: ['approval: off -> on'],
          },
        },
        api_keys: { added: ['dave'], removed: ['bob'], changed: [] },
        agents: [],
        roles: [],
        trusted_proxies: false,
        needs_restart: ['listen'],
      },
    });

    // New requests see the new config; the listener stays where it was (listen needs a restart).
    const after = await call(gw, 'GET', '/api/v1/connections', KEYS.dave);
    expect(after.status).toBe(200);
    expect(after.json.map((c: any) => [c.name, c.masking])).toEqual([
      ['bank', { enabled: true, exempt: false, columns: 2, detectors: ['ssn'] }],
      ['vault', { enabled: true, exempt: false, columns: 1, detectors: ['ssn', 'card_number', 'iban', 'email'] }],
    ]);
    expect((await call(gw, 'GET', '/api/v1/me', KEYS.bob)).status).toBe(401);
    expect(gw.configs.connection('ledger')).toBeUndefined();
    expect(gw.configs.connection('bank')!.masking!.columns[0]).toEqual({ column: 'public.customers.ssn', type: 'ssn', method: 'hash' });
    expect(gw.configs.connection('bank')!.maskingKey).toEqual(Buffer.from(HASH_KEY));
    expect(gw.configs.current().config.listen).toEqual({ host: '127.0.0.1', port: 0 });

    const loaded = await events(gw, 'config.loaded');
    expect(loaded).toHaveLength(2);
    expect(loaded[1]).toMatchObject({
      actor: { subject: 'apikey:root', auth_method: 'api_key' },
      data: {
        source: 'api', by: 'apikey:root', sha256: r.json.sha256, connections: ['bank', 'vault'], changes: r.json.changes,
        approval: { bank: { rules: ['analysts-read-only: deny for analysts when kind=insert,update', 'bulk: require_approval when kind=select where=false estimated_rows>10000'], approvers: ['dba'], min_approvals: 1 } },
      },
    });
    const recorded = JSON.stringify(loaded);
    for (const secret of [UPSTREAM_PASSWORD, HASH_KEY, apiKeyHash(KEYS.dave), KEYS.dave, readFileSync(join(dir, 'keys/masking.key')).toString('hex'), 'token-in-path', 'webhook-secret-0123456789']) {
      expect(recorded).not.toContain(secret);
    }
  });

  test('a file with problems changes nothing: 422 with every problem, never a secret, nothing recorded', async () => {
    const dir = freshDir('reload-bad');
    const { gw } = await start(dir, baseConfig(dir));
    process.env['HOOP_TEST_SHORT_KEY'] = 'short-secret-key';
    try {
      const bad = baseConfig(dir, { bogus: 1 });
      (bad['connections'] as Raw[])[0]!['masking'] = { columns: [{ column: 'customers.ssn', type: 'ssn', method: 'redact' }], hash_key: '${env:HOOP_TEST_SHORT_KEY}' };
      writeConfig(dir, bad);
      const r = await call(gw, 'POST', '/api/v1/admin/reload', KEYS.root);
      expect(r.status).toBe(422);
      expect(r.json.error).toMatchObject({ code: 'HOOP_CONFIG_INVALID', message: 'the config has 3 problems; the running config is kept' });
      expect([...r.json.error.problems].sort()).toEqual([
        'hoop.yaml: bogus: unknown key',
        expect.stringMatching(/^hoop\.yaml: connections\[0\]\.masking\.columns\[0\]\.column: expected schema\.table\.column/),
        expect.stringMatching(/^hoop\.yaml: connections\[0\]\.masking\.hash_key: must be at least 32 characters/),
      ]);
      expect(JSON.stringify(r.json)).not.toContain('short-secret-key');
    } finally {
      delete process.env['HOOP_TEST_SHORT_KEY'];
    }
    writeFileSync(join(dir, 'hoop.yaml'), 'listen: [');
    const syntax = await call(gw, 'POST', '/api/v1/admin/reload', KEYS.root);
    expect(syntax.status).toBe(422);
    expect(syntax.json.error.problems).toEqual([expect.stringMatching(/^hoop\.yaml:\d+:\d+: /)]);
    // The running config stays, and no config.loaded says otherwise.
    expect(gw.configs.connection('bank')!.masking!.columns).toHaveLength(2);
    expect((await call(gw, 'GET', '/api/v1/connections', KEYS.bob)).json[0].masking).toEqual({ enabled: true, exempt: true, columns: 2, detectors: ['ssn', 'card_number', 'iban', 'email'] });
    expect(await events(gw, 'config.loaded')).toHaveLength(1);
  });

  test('only admins: anyone else gets 403, recorded as access.denied, and nothing is reloaded', async () => {
    const dir = freshDir('reload-denied');
    const { gw } = await start(dir, baseConfig(dir));
    writeConfig(dir, baseConfig(dir, { connections: [] }));
    const r = await call(gw, 'POST', '/api/v1/admin/reload', KEYS.alice);
    expect(r.status).toBe(403);
    expect(r.json.error).toEqual({ code: 'HOOP_FORBIDDEN', message: 'only admins may reload the gateway config' });
    await expect.poll(async () => (await events(gw, 'access.denied')).length).toBe(1);
    expect((await events(gw, 'access.denied'))[0]).toMatchObject({
      actor: { subject: 'apikey:alice' },
      data: { via: 'api', stage: 'role', code: 'HOOP_FORBIDDEN', path: '/api/v1/admin/reload' },
    });
    expect(gw.configs.connection('bank')).toBeDefined();
    expect(await events(gw, 'config.loaded')).toHaveLength(1);
    const get = await request(`${gw.url}/api/v1/admin/reload`, { headers: { authorization: `Bearer ${KEYS.root}` } });
    expect(get.statusCode).toBe(405);
    await get.body.dump();
  });

  test('roles change with a reload: a new admin may reload, the old one may not', async () => {
    const dir = freshDir('reload-roles');
    const { gw } = await start(dir, baseConfig(dir));
    writeConfig(dir, baseConfig(dir, { roles: { admin: ['analysts'] } }));
    const r = await call(gw, 'POST', '/api/v1/admin/reload', KEYS.root);
    expect(r.status).toBe(200);
    expect(r.json.changes.roles).toEqual(['admin']);
    expect((await call(gw, 'POST', '/api/v1/admin/reload', KEYS.root)).status).toBe(403);
    expect((await call(gw, 'POST', '/api/v1/admin/reload', KEYS.alice)).status).toBe(200);
  });
});

describe('configChanges and keepRestartOnly (pure)', () => {
  const parse = (raw: Raw) => parseConfig(raw, 'hoop.yaml', root);

  test('reordered rules are a change (the first match wins); identical configs change nothing', () => {
    const a = parse(baseConfig(root));
    const b = parse(baseConfig(root));
    const cols = ((b.connections[0]!.masking!.columns) as unknown[]);
    cols.reverse();
    expect(configChanges(a, a).masking).toEqual({});
    expect(configChanges(a, a).connections).toEqual({ added: [], removed: [], changed: [] });
    expect(configChanges(a, b).masking).toEqual({ bank: { added: [], removed: [], changed: ['column rule order (the first matching rule wins)'] } });
  });

  test('restart-only keys keep their running values and are named; the rest is taken', () => {
    const running = parse(baseConfig(root));
    const next = parse(baseConfig(root, {
      listen: '127.0.0.1:9',
      postgres_listen: '127.0.0.1:15432',
      store: 'sqlite::memory:',
      audit: { signing_key: '/elsewhere/signing.key', checkpoint_interval: '5m', payload_limit: '2MiB' },
      identity: { oidc: { issuer: 'https://idp.example/', client_id: 'c', audience: 'a' }, api_keys: [] },
      roles: { auditor: ['audit'] },
    }));
    const { applied, needsRestart } = keepRestartOnly(running, next);
    expect(needsRestart).toEqual(['listen', 'postgres_listen', 'store', 'audit.payload_limit', 'audit.signing_key', 'audit.checkpoint_interval', 'identity.oidc']);
    expect(applied.listen).toEqual(running.listen);
    expect(applied.postgres_listen).toBeUndefined(); // not running one: a reload does not open it
    expect(applied.store).toBe(running.store);
    expect(applied.audit).toEqual(running.audit);
    expect(applied.identity).toEqual({ api_keys: [] });
    expect(applied.roles).toEqual({ admin: [], auditor: ['audit'] });
  });
});
