/**
 * `hoop connect <name> --print-native`: the URI for the gateway's own PostgreSQL listener, used
 * by the real psql with the token as the password, and what the command never prints.
 */
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, test } from 'vitest';
import { nativeTarget } from '../../src/cli/native-uri.js';
import { runClient } from '../helpers/clients.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { makeCertificates } from '../helpers/tls.js';
import { childEnv, runBin, runHoop } from './helpers.js';

let gw: TestGateway;
let plain: TestGateway;
let secure: TestGateway;
let caFile: string;
let home: string;

beforeAll(async () => {
  const upstream = inject('upstream');
  // No tls here (the in-memory CLI would have to trust a test CA): the listener is loopback-only.
  gw = await startTestGateway({ upstream, config: { postgres_listen: '127.0.0.1:0' } });
  plain = await startTestGateway({ upstream });
  const certs = makeCertificates();
  secure = await startTestGateway({ upstream, config: { tls: { cert: certs.cert, key: certs.key }, postgres_listen: '127.0.0.1:0' } });
  home = mkdtempSync(join(tmpdir(), 'hoop-native-cli-'));
  caFile = join(home, 'gateway-ca.pem');
  writeFileSync(caFile, certs.ca);
}, 60_000);

afterAll(async () => {
  await gw?.close();
  await plain?.close();
  await secure?.close();
  if (home) rmSync(home, { recursive: true, force: true });
});

const psqlWith = (uri: string, env: Record<string, string>) => runClient('psql', ['-X', '-w', '-At', '-d', uri, '-c', 'select current_user is not null, 6 * 7'], { env });

describe('hoop connect --print-native', () => {
  test('--json names the listener; psql logs in with the token in PGPASSWORD; the token is printed nowhere', async () => {
    const key = gw.keys['alice']!;
    const r = await runHoop(['--json', 'connect', 'bank', '--print-native'], { env: { HOOP_GATEWAY: gw.url, HOOP_TOKEN: key, HOME: home } });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const info = JSON.parse(r.stdout) as Record<string, unknown>;
    expect(info).toEqual({
      uri: `postgresql://alice@127.0.0.1:${gw.postgresListen!.port}/bank?sslmode=disable`,
      host: '127.0.0.1', port: gw.postgresListen!.port, user: 'alice', database: 'bank', sslmode: 'disable',
    });
    expect(r.stdout + r.stderr).not.toContain(key);
    const ok = await psqlWith(info['uri'] as string, { PGPASSWORD: key });
    expect(ok.stderr).toBe('');
    expect(ok.stdout.trim()).toBe('t|42');
  });

  test('--pgpass writes the token to a 0600 password file that psql then uses; --show-token puts it in the URI', async () => {
    const key = gw.keys['bob']!;
    const passfile = join(home, 'pgpass');
    const env = { HOOP_GATEWAY: gw.url, HOOP_TOKEN: key, HOME: home, PGPASSFILE: passfile };
    const r = await runHoop(['connect', 'bank', '--print-native', '--pgpass'], { env });
    expect(r.code).toBe(0);
    expect(r.stdout).not.toContain(key);
    expect(r.stderr).toContain(passfile);
    expect(statSync(passfile).mode & 0o777).toBe(0o600);
    expect(readFileSync(passfile, 'utf8')).toBe(`127.0.0.1:${gw.postgresListen!.port}:bank:bob:${key}\n`);
    const ok = await psqlWith(r.stdout.trim(), { PGPASSFILE: passfile });
    expect(ok.stderr).toBe('');
    expect(ok.stdout.trim()).toBe('t|42');

    const shown = await runHoop(['connect', 'bank', '--print-native', '--show-token'], { env });
    expect(shown.stdout.trim()).toBe(`postgresql://bob:${encodeURIComponent(key)}@127.0.0.1:${gw.postgresListen!.port}/bank?sslmode=disable`);
  });

  test('bin/hoop.js against an https gateway: verify-full with the CA the CLI trusts it with, and psql verifies it', async () => {
    const key = secure.keys['alice']!;
    const r = await runBin(['connect', 'bank', '--print-native'], childEnv({ HOOP_GATEWAY: secure.url, HOOP_TOKEN: key, HOME: home, NODE_EXTRA_CA_CERTS: caFile }));
    expect(r.code).toBe(0);
    const uri = r.stdout.trim();
    expect(uri).toBe(`postgresql://alice@127.0.0.1:${secure.postgresListen!.port}/bank?sslmode=verify-full&sslrootcert=${encodeURIComponent(caFile)}`);
    expect(r.stderr).toContain('PGPASSWORD');
    expect(r.stdout + r.stderr).not.toContain(key);
    const ok = await psqlWith(uri, { PGPASSWORD: key });
    expect(ok.stderr).toBe('');
    expect(ok.stdout.trim()).toBe('t|42');
  });

  test('a gateway without postgres_listen says so and how to connect instead (exit 1)', async () => {
    const r = await runHoop(['connect', 'bank', '--print-native'], { env: { HOOP_GATEWAY: plain.url, HOOP_TOKEN: plain.keys['alice']!, HOME: home } });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('has no PostgreSQL listener of its own (postgres_listen)');
    expect(r.stdout).toBe('');
  });

  test('usage: --print-native opens no tunnel; --show-token needs it', async () => {
    const env = { HOOP_GATEWAY: gw.url, HOOP_TOKEN: gw.keys['alice']!, HOME: home };
    expect((await runHoop(['connect', 'bank', '--print-native', '--port', '6000'], { env })).code).toBe(2);
    expect((await runHoop(['connect', 'bank', '--show-token'], { env })).code).toBe(2);
  });
});

describe('nativeTarget', () => {
  const me = { subject: 'oidc|0042', email: 'Dana@Bank.Example', method: 'oidc' };
  test('TLS: verify-full with the CA the CLI trusts; a wildcard listener is reached at the gateway host; a reason goes into options', () => {
    const t = nativeTarget({
      listen: { host: '0.0.0.0', port: 15432, tls: true }, gateway: 'https://hoop.bank.example', me, database: 'bank',
      reason: 'INC-9: check transfers', rootCert: '/etc/hoop/ca.pem',
    });
    expect(t.uri).toBe('postgresql://Dana%40Bank.Example@hoop.bank.example:15432/bank?sslmode=verify-full&sslrootcert=%2Fetc%2Fhoop%2Fca.pem&options=-c%20hoop.reason%3DINC-9%3A%5C%20check%5C%20transfers');
    expect(t).toMatchObject({ host: 'hoop.bank.example', user: 'Dana@Bank.Example', sslmode: 'verify-full', sslrootcert: '/etc/hoop/ca.pem' });
  });

  test('an API key is named by its key name; an IPv6 host is bracketed', () => {
    const t = nativeTarget({ listen: { host: '::1', port: 5, tls: true }, gateway: 'https://gw', me: { subject: 'apikey:nightly-etl', email: null, method: 'api_key' }, database: 'ledger' });
    expect(t.uri).toBe('postgresql://nightly-etl@[::1]:5/ledger?sslmode=verify-full');
  });
});
