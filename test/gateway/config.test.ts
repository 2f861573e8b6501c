import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { ConfigError } from '../../src/errors.js';
import { loadConfig, parseConfig, workerCount } from '../../src/gateway/config.js';
import { usableCores } from '../../src/gateway/cores.js';
import { parseDuration, parseSize } from '../../src/units.js';

const dir = mkdtempSync(join(tmpdir(), 'hoop-config-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const HASH = 'ab'.repeat(32);

function minimal(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    listen: '127.0.0.1:0',
    store: 'sqlite:data/hoop.db',
    identity: { api_keys: [{ name: 'etl', sha256: HASH, groups: ['etl'] }] },
    connections: [{
      name: 'bank',
      type: 'postgres',
      upstream: { host: 'db.internal', database: 'bank', user: 'hoop_svc', password: 'pw', sslmode: 'disable' },
      access: ['analysts'],
    }],
    ...overrides,
  };
}

/** Every line of the ConfigError thrown for `raw`. */
function problems(raw: unknown): string[] {
  try {
    parseConfig(raw, 'hoop.yaml', dir);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).code).toBe('HOOP_CONFIG_INVALID');
    return (err as Error).message.split('\n');
  }
  throw new Error('config was accepted');
}

describe('parseConfig: valid configs', () => {
  test('applies defaults and resolves relative paths against the config directory', () => {
    const c = parseConfig(minimal(), 'hoop.yaml', dir);
    expect(c.listen).toEqual({ host: '127.0.0.1', port: 0 });
    expect(c.store).toBe(`sqlite:${join(dir, 'data/hoop.db')}`);
    expect(c.identity.oidc).toBeUndefined();
    expect(c.roles).toEqual({ admin: [], auditor: [] });
    const bank = c.connections[0]!;
    expect(bank.upstream).toMatchObject({ host: 'db.internal', port: 5432, database: 'bank', user: 'hoop_svc', password: 'pw', sslmode: 'disable', connectTimeoutMs: 10_000 });
    expect(bank.maxSessionMs).toBeNull();
    expect(c.audit).toEqual({ payload_limit: 1024 * 1024, signing_key: join(dir, 'hoop-data/signing.key'), checkpoint_interval: 60_000, sinks: [], previous_keys: [] });
    expect(c.fingerprint).toMatch(/^[0-9a-f]{64}$/);
  });

  test('sslmode defaults to verify-full', () => {
    const raw = minimal();
    delete ((raw['connections'] as Record<string, Record<string, unknown>>[])[0]!['upstream']!)['sslmode'];
    expect(parseConfig(raw, 'hoop.yaml', dir).connections[0]!.upstream.sslmode).toBe('verify-full');
  });

  test('OIDC defaults, nested groups claim, durations, sizes, IPv6 listen, postgres store', () => {
    const raw = minimal({
      listen: '[::1]:8009',
      store: 'postgres://hoop:secret@db:5432/hoop',
      identity: { oidc: { issuer: 'https://idp.example/', client_id: 'hoop-cli', audience: 'hoop', groups_claim: 'realm_access.roles' }, api_keys: [] },
      audit: { payload_limit: '10MiB', signing_key: '/abs/signing.key', checkpoint_interval: '5m' },
    });
    (raw['connections'] as Record<string, unknown>[])[0]!['max_session'] = '1h30m';
    (raw['connections'] as Record<string, unknown>[])[0]!['max_sessions_per_user'] = 5;
    const c = parseConfig(raw, 'hoop.yaml', dir);
    expect(c.listen).toEqual({ host: '::1', port: 8009 });
    expect(c.store).toBe('postgres://hoop:secret@db:5432/hoop');
    expect(c.identity.oidc).toEqual({ issuer: 'https://idp.example/', client_id: 'hoop-cli', audience: 'hoop', groups_claim: 'realm_access.roles', scopes: ['openid', 'profile', 'email', 'offline_access'] });
    expect(c.connections[0]!.maxSessionMs).toBe(90 * 60_000);
    expect(c.connections[0]!.maxSessionsPerUser).toBe(5);
    expect(c.audit).toEqual({ payload_limit: 10 * 1024 * 1024, signing_key: '/abs/signing.key', checkpoint_interval: 5 * 60_000, sinks: [], previous_keys: [] });
  });

  test('audit.retention: optional periods of at least a day, in d, w or y; absent keeps everything', () => {
    const c = parseConfig(minimal({ audit: { retention: { payloads: '400d', events: '7y' } } }), 'hoop.yaml', dir);
    expect(c.audit.retention).toEqual({ payloads: 400 * 86_400_000, events: 7 * 365 * 86_400_000 });
    expect(parseConfig(minimal({ audit: { retention: { payloads: '2w' } } }), 'hoop.yaml', dir).audit.retention).toEqual({ payloads: 14 * 86_400_000 });
    expect(parseConfig(minimal(), 'hoop.yaml', dir).audit.retention).toBeUndefined();
    expect(problems(minimal({ audit: { retention: { payloads: '400m', events: 'forever', rows: '1d' } } }))).toEqual(expect.arrayContaining([
      'hoop.yaml: audit.retention.payloads: must be at least 1d, such as 400d or 7y',
      'hoop.yaml: audit.retention.events: expected a duration such as 8h, 30m, 1h30m or 90s',
      'hoop.yaml: audit.retention.rows: unknown key',
    ]));
  });

  test('loadConfig reads YAML and resolves paths next to the file', () => {
    const file = join(dir, 'good.yaml');
    writeFileSync(file, `
listen: 127.0.0.1:8009
store: sqlite:./hoop-data/hoop.db
identity:
  api_keys:
    - {name: nightly-etl, sha256: ${HASH}, groups: [etl]}
roles: {admin: [platform], auditor: [audit]}
connections:
  - name: bank
    type: postgres
    upstream: {host: 127.0.0.1, port: 5432, database: bank, user: hoop_svc, sslmode: disable}
    access: [analysts, dba]
audit: {payload_limit: 10MiB}
`);
    const c = loadConfig(file);
    expect(c.file).toBe('good.yaml');
    expect(c.store).toBe(`sqlite:${join(dir, 'hoop-data/hoop.db')}`);
    expect(c.roles).toEqual({ admin: ['platform'], auditor: ['audit'] });
    expect(c.connections.map((x) => x.access)).toEqual([['analysts', 'dba']]);
  });
});

describe('parseConfig: every problem is one line, file: key.path: reason, all listed together', () => {
  test('port out of range', () => {
    const raw = minimal();
    ((raw['connections'] as Record<string, Record<string, unknown>>[])[0]!['upstream']!)['port'] = 70000;
    expect(problems(raw)).toEqual(['hoop.yaml: connections[0].upstream.port: expected a number between 1 and 65535']);
  });

  test('unknown keys at every level', () => {
    const raw = minimal({ lisen: 'x' });
    ((raw['connections'] as Record<string, Record<string, unknown>>[])[0]!['upstream']!)['passwd'] = 'x';
    ((raw['identity'] as Record<string, unknown>)['api_keys'] as Record<string, unknown>[])[0]!['group'] = 'x';
    expect(problems(raw).sort()).toEqual([
      'hoop.yaml: connections[0].upstream.passwd: unknown key',
      'hoop.yaml: identity.api_keys[0].group: unknown key',
      'hoop.yaml: lisen: unknown key',
    ]);
  });

  test('several classes of error at once', () => {
    const lines = problems({
      listen: 'nowhere',
      store: 'mysql://x',
      identity: { api_keys: [{ name: 'Bad Name', sha256: 'xyz', groups: 'etl' }] },
      roles: { admin: 'platform' },
      connections: [{ name: 'bank', type: 'mysql', upstream: { host: 'h', database: '', user: 'u', sslmode: 'sometimes' }, access: ['a'], max_session: 'forever', max_sessions_per_user: 0 }],
      audit: { payload_limit: 'lots', checkpoint_interval: '500ms' },
    });
    expect(lines).toEqual(expect.arrayContaining([
      'hoop.yaml: listen: expected host:port, e.g. 127.0.0.1:8009 or [::1]:8009 (port 0 picks a free port)',
      'hoop.yaml: store: expected sqlite:PATH, sqlite::memory: or postgres://user:password@host:5432/database',
      expect.stringMatching(/^hoop\.yaml: identity\.api_keys\[0\]\.name: must be a lowercase slug/),
      expect.stringMatching(/^hoop\.yaml: identity\.api_keys\[0\]\.sha256: expected the 64 hex digits/),
      'hoop.yaml: identity.api_keys[0].groups: expected a list, got a string',
      'hoop.yaml: roles.admin: expected a list, got a string',
      'hoop.yaml: connections[0].type: expected one of: postgres',
      'hoop.yaml: connections[0].upstream.database: must not be empty',
      'hoop.yaml: connections[0].upstream.sslmode: expected one of disable, prefer, require, verify-ca, verify-full',
      'hoop.yaml: connections[0].max_session: expected a duration such as 8h, 30m, 1h30m or 90s',
      'hoop.yaml: connections[0].max_sessions_per_user: expected a whole number from 1 to 10000',
      'hoop.yaml: audit.payload_limit: expected a size such as 1MiB, 512KiB, 10MB or a number of bytes',
      'hoop.yaml: audit.checkpoint_interval: must be at least 1s',
    ]));
    expect(lines.length).toBe(13);
  });

  test('missing required keys', () => {
    expect(problems({ identity: { api_keys: [{ name: 'a', sha256: HASH }] }, connections: [{ name: 'bank', type: 'postgres', upstream: { host: 'h' } }] })).toEqual([
      'hoop.yaml: connections[0].upstream.database: required',
      'hoop.yaml: connections[0].upstream.user: required',
      'hoop.yaml: connections[0].access: required',
    ]);
  });

  test('duplicate connection names and API key names and hashes', () => {
    const raw = minimal();
    const conns = raw['connections'] as unknown[];
    conns.push(structuredClone(conns[0]));
    const keys = (raw['identity'] as { api_keys: unknown[] }).api_keys;
    keys.push({ name: 'etl', sha256: HASH.toUpperCase(), groups: [] });
    expect(problems(raw)).toEqual([
      'hoop.yaml: identity.api_keys[1].name: duplicate API key name (the same as identity.api_keys[0].name)',
      'hoop.yaml: identity.api_keys[1].sha256: duplicate API key hash (the same as identity.api_keys[0].sha256)',
      'hoop.yaml: connections[1].name: duplicate connection name (the same as connections[0].name)',
    ]);
  });

  test('no way to sign in is refused', () => {
    expect(problems(minimal({ identity: { api_keys: [] } }))).toEqual([
      'hoop.yaml: identity: configure identity.oidc or at least one identity.api_keys entry; otherwise nobody can sign in',
    ]);
  });

  test('an OIDC issuer over plain http is refused except on loopback', () => {
    const oidc = (issuer: string) => minimal({ identity: { oidc: { issuer, client_id: 'c', audience: 'a' } } });
    expect(problems(oidc('http://idp.example/'))).toEqual(['hoop.yaml: identity.oidc.issuer: expected an https:// URL (http:// only on loopback: localhost, 127.0.0.0/8, ::1)']);
    expect(parseConfig(oidc('http://[::1]:9000/'), 'hoop.yaml', dir).identity.oidc?.issuer).toBe('http://[::1]:9000/');
    expect(parseConfig(oidc('http://127.0.0.1:9000/'), 'hoop.yaml', dir).identity.oidc?.issuer).toBe('http://127.0.0.1:9000/');
  });

  test('CA and TLS files: missing, not PEM, or inline PEM', () => {
    writeFileSync(join(dir, 'not-a-cert.pem'), 'hello');
    const raw = minimal({ tls: { cert: 'missing.crt', key: 'not-a-cert.pem' } });
    ((raw['connections'] as Record<string, Record<string, unknown>>[])[0]!['upstream']!)['ca'] = 'not-a-cert.pem';
    expect(problems(raw)).toEqual([
      'hoop.yaml: tls.cert: cannot read missing.crt (no such file)',
      'hoop.yaml: tls.key: expected a PEM private key',
      'hoop.yaml: connections[0].upstream.ca: expected a PEM certificate',
    ]);
    const pem = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n';
    writeFileSync(join(dir, 'ca.pem'), pem);
    ((raw['connections'] as Record<string, Record<string, unknown>>[])[0]!['upstream']!)['ca'] = 'ca.pem';
    delete raw['tls'];
    expect(parseConfig(raw, 'hoop.yaml', dir).connections[0]!.upstream.ca).toBe(pem);
  });

  test('YAML syntax errors and duplicate YAML keys name the line', () => {
    const file = join(dir, 'bad.yaml');
    writeFileSync(file, 'listen: 127.0.0.1:8009\nlisten: 127.0.0.1:8010\n');
    expect(() => loadConfig(file)).toThrow(/^bad\.yaml:2:1: /);
    expect(() => loadConfig(join(dir, 'absent.yaml'))).toThrow(/absent\.yaml: cannot read the config file \(no such file\)/);
  });
});

describe('secrets: ${env:NAME} and ${file:PATH}', () => {
  test('resolve anywhere a string is, relative files, trailing newline trimmed, $${ literal', () => {
    process.env['HOOP_TEST_DB_PASSWORD'] = 's3cr3t-env';
    process.env['HOOP_TEST_STORE_PW'] = 'storepw';
    writeFileSync(join(dir, 'pw.txt'), 's3cr3t-file\n');
    const raw = minimal({ store: 'postgres://hoop:${env:HOOP_TEST_STORE_PW}@db/hoop' });
    const conns = raw['connections'] as Record<string, Record<string, unknown>>[];
    conns[0]!['upstream']!['password'] = '${env:HOOP_TEST_DB_PASSWORD}';
    (conns as unknown[]).push({ ...structuredClone(conns[0]!), name: 'bank2', upstream: { ...conns[0]!['upstream'], password: '${file:pw.txt}', user: 'u$${x}' } });
    const c = parseConfig(raw, 'hoop.yaml', dir);
    expect(c.store).toBe('postgres://hoop:storepw@db/hoop');
    expect(c.connections[0]!.upstream.password).toBe('s3cr3t-env');
    expect(c.connections[1]!.upstream.password).toBe('s3cr3t-file');
    expect(c.connections[1]!.upstream.user).toBe('u${x}');
  });

  test('a missing variable or unreadable file names the key path and the reference, never a value', () => {
    delete process.env['HOOP_TEST_NOT_SET'];
    const raw = minimal();
    const up = (raw['connections'] as Record<string, Record<string, unknown>>[])[0]!['upstream']!;
    up['password'] = '${env:HOOP_TEST_NOT_SET}';
    up['user'] = '${file:nope/secret.txt}';
    up['host'] = '${vault:x}';
    expect(problems(raw)).toEqual([
      'hoop.yaml: connections[0].upstream.host: unsupported reference ${vault:x}; use ${env:NAME} or ${file:PATH} (write $${ for a literal ${)',
      'hoop.yaml: connections[0].upstream.user: cannot read nope/secret.txt (no such file) (referenced as ${file:nope/secret.txt})',
      'hoop.yaml: connections[0].upstream.password: environment variable HOOP_TEST_NOT_SET is not set (referenced as ${env:HOOP_TEST_NOT_SET})',
    ]);
  });

  test('an invalid value that came from a secret is reported without the value', () => {
    process.env['HOOP_TEST_PORT_SECRET'] = 'hunter2-port';
    const raw = minimal();
    ((raw['connections'] as Record<string, Record<string, unknown>>[])[0]!['upstream']!)['port'] = '${env:HOOP_TEST_PORT_SECRET}';
    const lines = problems(raw);
    expect(lines).toEqual(['hoop.yaml: connections[0].upstream.port: expected a number between 1 and 65535']);
    expect(lines.join('\n')).not.toContain('hunter2');
  });

  test('the fingerprint ignores secret values but follows everything else', () => {
    process.env['HOOP_TEST_ROTATING'] = 'one';
    const raw = () => {
      const r = minimal();
      ((r['connections'] as Record<string, Record<string, unknown>>[])[0]!['upstream']!)['password'] = '${env:HOOP_TEST_ROTATING}';
      return r;
    };
    const a = parseConfig(raw(), 'hoop.yaml', dir).fingerprint;
    process.env['HOOP_TEST_ROTATING'] = 'two';
    expect(parseConfig(raw(), 'hoop.yaml', dir).fingerprint).toBe(a);
    const changed = raw();
    (changed['connections'] as Record<string, unknown>[])[0]!['access'] = ['analysts', 'dba'];
    expect(parseConfig(changed, 'hoop.yaml', dir).fingerprint).not.toBe(a);
    const inline = (pw: string) => { const r = minimal(); ((r['connections'] as Record<string, Record<string, unknown>>[])[0]!['upstream']!)['password'] = pw; return r; };
    expect(parseConfig(inline('x'), 'hoop.yaml', dir).fingerprint).toBe(parseConfig(inline('y'), 'hoop.yaml', dir).fingerprint);
  });
});

describe('units', () => {
  test('durations and sizes', () => {
    expect(parseDuration('8h')).toBe(8 * 3_600_000);
    expect(parseDuration('1h30m')).toBe(90 * 60_000);
    expect(parseDuration('500ms')).toBe(500);
    expect(parseDuration('8 hours')).toBeNull();
    expect(parseDuration('')).toBeNull();
    expect(parseSize('10MiB')).toBe(10 * 1024 * 1024);
    expect(parseSize('1MB')).toBe(1_000_000);
    expect(parseSize(4096)).toBe(4096);
    expect(parseSize('1.5MiB')).toBeNull();
    expect(parseSize('10XB')).toBeNull();
  });
});

describe('deploy/hoop.example.yaml', () => {
  test('the full example loads (with its secrets and files provided)', async () => {
    const { copyFileSync, mkdirSync } = await import('node:fs');
    const { makeCertificates } = await import('../helpers/tls.js');
    const ex = join(dir, 'example');
    mkdirSync(join(ex, 'tls'), { recursive: true });
    mkdirSync(join(ex, 'secrets'), { recursive: true });
    copyFileSync(new URL('../../deploy/hoop.example.yaml', import.meta.url), join(ex, 'hoop.yaml'));
    const certs = makeCertificates();
    writeFileSync(join(ex, 'tls/gateway.crt'), certs.cert);
    writeFileSync(join(ex, 'tls/gateway.key'), certs.key);
    writeFileSync(join(ex, 'db-ca.pem'), certs.ca);
    writeFileSync(join(ex, 'secrets/ledger.password'), 'ledger-pw\n');
    writeFileSync(join(ex, 'secrets/siem-ca.pem'), certs.ca);
    process.env['HOOP_STORE_PASSWORD'] = 'store-pw';
    process.env['HOOP_HEC_TOKEN'] = 'hec-token';
    process.env['BANK_DB_PASSWORD'] = 'bank-pw';
    try {
      const c = loadConfig(join(ex, 'hoop.yaml'));
      expect(c.listen).toEqual({ host: '0.0.0.0', port: 8009 });
      expect(c.postgres_listen).toEqual({ host: '0.0.0.0', port: 15432 });
      expect(c.tls?.key).toBe(certs.key);
      expect(c.store).toBe('postgres://hoop:store-pw@store.internal:5432/hoop');
      expect(c.identity.oidc?.groups_claim).toBe('realm_access.roles');
      expect(c.connections.map((x) => [x.name, x.upstream.password, x.upstream.sslmode, x.maxSessionMs])).toEqual([
        ['bank', 'bank-pw', 'verify-full', 8 * 3_600_000],
        ['ledger', 'ledger-pw', 'require', null],
      ]);
      expect(c.connections[0]!.upstream.ca).toBe(certs.ca);
      const { sinks, ...audit } = c.audit;
      expect(audit).toEqual({ payload_limit: 10 * 1024 * 1024, signing_key: join(ex, 'hoop-data/signing.key'), checkpoint_interval: 60_000, previous_keys: [] });
      expect(sinks.map((x) => [x.kind, x.id])).toEqual([
        ['syslog', 'syslog:tcp://siem.internal:6514'],
        ['http', expect.stringMatching(/^http:https:\/\/hec\.internal:8088#[0-9a-f]{12}$/)],
        ['file', 'file:/var/log/hoop/audit.jsonl'],
      ]);
      expect(sinks[1]).toMatchObject({ token: 'hec-token', format: 'hec' });
    } finally {
      delete process.env['HOOP_STORE_PASSWORD'];
      delete process.env['BANK_DB_PASSWORD'];
      delete process.env['HOOP_HEC_TOKEN'];
    }
  });
});

describe('postgres_listen', () => {
  test('host:port like listen; absent by default; a bad value is named by key', () => {
    expect(parseConfig(minimal({ postgres_listen: '[::1]:15432' }), 'hoop.yaml', dir).postgres_listen).toEqual({ host: '::1', port: 15432 });
    expect(parseConfig(minimal({}), 'hoop.yaml', dir).postgres_listen).toBeUndefined();
    expect(problems(minimal({ postgres_listen: '15432' }))).toEqual([
      'hoop.yaml: postgres_listen: expected host:port, e.g. 127.0.0.1:8009 or [::1]:8009 (port 0 picks a free port)',
    ]);
  });
});

describe('workers', () => {
  const pgStore = 'postgres://hoop:pw@db.internal:5432/hoop';
  test("'auto' by default: one per core on a postgres:// store, 1 on a SQLite file (one writer)", () => {
    const sqlite = parseConfig(minimal(), 'hoop.yaml', dir);
    expect(sqlite.workers).toBe('auto');
    expect(workerCount(sqlite, 8)).toBe(1);
    expect(workerCount(parseConfig(minimal({ store: pgStore }), 'hoop.yaml', dir), 8)).toBe(8);
    expect(workerCount(parseConfig(minimal({ store: pgStore, workers: 3 }), 'hoop.yaml', dir), 8)).toBe(3);
    expect(workerCount(parseConfig(minimal({ workers: 1 }), 'hoop.yaml', dir), 8)).toBe(1);
  });

  test('more than one worker on a SQLite store, or not a count, is refused by key', () => {
    expect(problems(minimal({ workers: 2 }))).toEqual([
      'hoop.yaml: workers: a SQLite store has one writer process, so it serves one worker; workers: 2 needs a postgres:// store (or workers: 1)',
    ]);
    expect(problems(minimal({ store: pgStore, workers: 0 }))).toEqual([
      "hoop.yaml: workers: expected 'auto' or a whole number from 1 to 256",
    ]);
    expect(problems(minimal({ store: pgStore, workers: 'many' }))).toEqual([
      "hoop.yaml: workers: expected 'auto' or a whole number from 1 to 256",
    ]);
  });
});

describe('trusted_proxies and require_reason', () => {
  test('parse into CIDRs and a boolean; bad values are named by key path', () => {
    const c = parseConfig(minimal({ trusted_proxies: ['10.0.0.0/8', 'fd00::/8', '192.0.2.7'] }), 'hoop.yaml', dir);
    expect(c.trusted_proxies).toEqual([
      { address: '10.0.0.0', prefix: 8, family: 'ipv4' }, { address: 'fd00::', prefix: 8, family: 'ipv6' }, { address: '192.0.2.7', prefix: 32, family: 'ipv4' },
    ]);
    expect(c.connections[0]!.requireReason).toBe(false);
    expect(problems(minimal({ trusted_proxies: ['10.0.0.0/40', 'lb.internal'] }))).toEqual([
      'hoop.yaml: trusted_proxies[0]: expected an IPv4 or IPv6 address or CIDR block, e.g. 10.0.0.0/8 or fd00::/8',
      'hoop.yaml: trusted_proxies[1]: expected an IPv4 or IPv6 address or CIDR block, e.g. 10.0.0.0/8 or fd00::/8',
    ]);
    const raw = minimal();
    (raw['connections'] as Record<string, unknown>[])[0]!['require_reason'] = 'yes';
    expect(problems(raw)).toEqual(['hoop.yaml: connections[0].require_reason: expected true or false']);
  });
});

describe('connections[].masking', () => {
  const withMasking = (masking: unknown) => {
    const raw = minimal();
    (raw['connections'] as Record<string, unknown>[])[0]!['masking'] = masking;
    return raw;
  };
  const KEY = 'k'.repeat(40);

  test('a full block: rules as written, keep only where given, trusted functions, the hash key as bytes', () => {
    const c = parseConfig(withMasking({
      columns: [
        { column: 'public.customers.ssn', type: 'ssn', method: 'partial', keep: 4 },
        { column: '*.*.account_number', type: 'account_number', method: 'hash' },
        { column: 'public.customers.credit_score', type: 'credit_score', method: 'null' },
        { column: 'public.cust?mers.email', type: 'email', method: 'redact' },
      ],
      detectors: ['ssn', 'email', 'ssn'],
      exempt: ['fraud'],
      predicates: 'require_approval',
      trusted_functions: ['util.mask_*', 'public.format_name'],
      hash_key: KEY,
    }), 'hoop.yaml', dir).connections[0]!;
    expect(c.masking).toEqual({
      columns: [
        { column: 'public.customers.ssn', type: 'ssn', method: 'partial', keep: 4 },
        { column: '*.*.account_number', type: 'account_number', method: 'hash' },
        { column: 'public.customers.credit_score', type: 'credit_score', method: 'null' },
        { column: 'public.cust?mers.email', type: 'email', method: 'redact' },
      ],
      detectors: ['ssn', 'email'],
      exempt: ['fraud'],
      predicates: 'require_approval',
      trustedFunctions: ['util.mask_*', 'public.format_name'],
    });
    expect(c.maskingKey).toEqual(Buffer.from(KEY));
  });

  test('defaults: all four detectors, deny, nothing exempt or trusted; [] turns the detectors off; no block is null', () => {
    const c = parseConfig(withMasking({ columns: [{ column: 'a.b.c', type: 'other', method: 'redact' }] }), 'hoop.yaml', dir).connections[0]!;
    expect(c.masking).toEqual({ columns: [{ column: 'a.b.c', type: 'other', method: 'redact' }], detectors: ['ssn', 'card_number', 'iban', 'email'], exempt: [], predicates: 'deny', trustedFunctions: [] });
    expect(c.maskingKey).toBeNull();
    expect(parseConfig(withMasking({ detectors: [] }), 'hoop.yaml', dir).connections[0]!.masking).toMatchObject({ columns: [], detectors: [] });
    expect(parseConfig(minimal(), 'hoop.yaml', dir).connections[0]!.masking).toBeNull();
  });

  test('each bad value is one line naming the key path', () => {
    const lines = problems(withMasking({
      columns: [
        { column: 'customers.ssn', type: 'ssn', method: 'redact' },
        { column: 'public..ssn', type: 'ssn', method: 'redact' },
        { column: 'public.customers.ssn.x', type: 'ssn', method: 'redact' },
        { column: 'public.[cs]ustomers.ssn', type: 'ssn', method: 'redact' },
        { column: 'public.customers.ssn', type: 'passport', method: 'scramble' },
        { column: 'public.customers.card', type: 'card_number', method: 'redact', keep: 4 },
        { column: 'public.customers.iban', type: 'iban', method: 'partial', keep: 65 },
        { column: 'public.customers.dob', type: 'date_of_birth', method: null },
        { column: 'public.customers.x', type: 'other' },
      ],
      detectors: ['ssn', 'passport'],
      exempt: ['has space'],
      predicates: 'warn',
      trusted_functions: ['mask_ssn'],
      hash_key: 'too-short',
    }));
    expect(lines).toEqual([
      'hoop.yaml: connections[0].masking.columns[0].column: expected schema.table.column: three non-empty parts separated by dots, each a name or a glob (* any run of characters, ? one character)',
      'hoop.yaml: connections[0].masking.columns[1].column: expected schema.table.column: three non-empty parts separated by dots, each a name or a glob (* any run of characters, ? one character)',
      'hoop.yaml: connections[0].masking.columns[2].column: expected schema.table.column: three non-empty parts separated by dots, each a name or a glob (* any run of characters, ? one character)',
      'hoop.yaml: connections[0].masking.columns[3].column: expected schema.table.column: three non-empty parts separated by dots, each a name or a glob (* any run of characters, ? one character)',
      'hoop.yaml: connections[0].masking.columns[4].type: expected one of: ssn, card_number, account_number, iban, email, phone, date_of_birth, credit_score, address, name, other',
      'hoop.yaml: connections[0].masking.columns[4].method: expected one of: redact, partial, hash, null',
      'hoop.yaml: connections[0].masking.columns[5].keep: only with method: partial (how many trailing characters stay readable)',
      'hoop.yaml: connections[0].masking.columns[6].keep: expected a whole number from 0 to 64',
      'hoop.yaml: connections[0].masking.columns[7].method: expected one of: redact, partial, hash, null (quote "null": unquoted, YAML reads it as no value)',
      'hoop.yaml: connections[0].masking.columns[8].method: expected one of: redact, partial, hash, null',
      'hoop.yaml: connections[0].masking.detectors[1]: expected one of: ssn, card_number, iban, email',
      'hoop.yaml: connections[0].masking.exempt[0]: must be a group name without spaces or commas',
      'hoop.yaml: connections[0].masking.predicates: expected one of: allow, deny, require_approval',
      'hoop.yaml: connections[0].masking.trusted_functions[0]: expected schema.function: two non-empty parts separated by a dot, each a name or a glob (* any run of characters, ? one character)',
      'hoop.yaml: connections[0].masking.hash_key: must be at least 32 characters (e.g. ${env:HOOP_MASKING_KEY} holding the output of openssl rand -base64 32)',
    ]);
    expect(lines.join('\n')).not.toContain('too-short');
  });

  test('unknown keys, a duplicate column pattern, a block that is not a mapping', () => {
    expect(problems(withMasking({ rules: [], columns: [{ column: 'a.b.c', type: 'ssn', method: 'redact', mask: 'x' }, { column: 'a.b.c', type: 'ssn', method: 'hash' }] }))).toEqual([
      'hoop.yaml: connections[0].masking.columns[1].column: duplicate column pattern (the same as connections[0].masking.columns[0].column)',
      'hoop.yaml: connections[0].masking.columns[0].mask: unknown key',
      'hoop.yaml: connections[0].masking.rules: unknown key',
    ]);
    expect(problems(withMasking(true))).toEqual(['hoop.yaml: connections[0].masking: expected a mapping, got a boolean']);
  });

  test('the hash key: a short secret from the environment is refused without its value; the fingerprint never sees it', () => {
    process.env['HOOP_TEST_MASK_KEY'] = 'short-secret-value';
    try {
      const lines = problems(withMasking({ hash_key: '${env:HOOP_TEST_MASK_KEY}' }));
      expect(lines).toEqual([expect.stringMatching(/^hoop\.yaml: connections\[0\]\.masking\.hash_key: must be at least 32 characters/)]);
      expect(lines.join('\n')).not.toContain('short-secret');
    } finally {
      delete process.env['HOOP_TEST_MASK_KEY'];
    }
    const a = parseConfig(withMasking({ hash_key: 'a'.repeat(32) }), 'hoop.yaml', dir);
    const b = parseConfig(withMasking({ hash_key: 'b'.repeat(32) }), 'hoop.yaml', dir);
    expect(a.fingerprint).toBe(b.fingerprint);
    expect(a.connections[0]!.maskingKey).not.toEqual(b.connections[0]!.maskingKey);
  });
});

describe('usableCores: workers: auto follows a container\'s CPU limit', () => {
  const files = (f: Record<string, string>) => (path: string) => f[path] ?? null;
  test('cgroup v2 cpu.max and v1 cfs quota cap the count; no limit leaves the affinity', () => {
    const all = availableParallelism();
    expect(usableCores(files({}))).toBe(all);
    expect(usableCores(files({ '/sys/fs/cgroup/cpu.max': 'max 100000\n' }))).toBe(all);
    expect(usableCores(files({ '/sys/fs/cgroup/cpu.max': '100000 100000\n' }))).toBe(1);
    expect(usableCores(files({ '/sys/fs/cgroup/cpu.max': '50000 100000\n' }))).toBe(1); // half a CPU: still one worker
    expect(usableCores(files({ '/sys/fs/cgroup/cpu.max': '1000000 100000\n' }))).toBe(Math.min(all, 10));
    expect(usableCores(files({ '/sys/fs/cgroup/cpu/cpu.cfs_quota_us': '-1\n', '/sys/fs/cgroup/cpu/cpu.cfs_period_us': '100000\n' }))).toBe(all);
    expect(usableCores(files({ '/sys/fs/cgroup/cpu/cpu.cfs_quota_us': '100000\n', '/sys/fs/cgroup/cpu/cpu.cfs_period_us': '100000\n' }))).toBe(1);
  });
});
