/**
 * `hoop gateway` as a process (`node bin/hoop.js`, the built CLI) in a temporary HOME:
 * `--check` validates without starting; the logs on a piped stderr are JSON lines with RFC 3339
 * times and one `stopped` line. The readable terminal format is checked in memory.
 */
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { formatLogLine } from '../../src/cli/log-pretty.js';
import { colorScheme } from '../../src/cli/iostreams.js';
import { apiKeyHash } from '../../src/identity/api-keys.js';
import { until } from '../helpers/poll.js';
import { BIN, childEnv, runBin, tempHome } from './helpers.js';

let home: ReturnType<typeof tempHome>;
beforeAll(() => {
  home = tempHome();
});
afterAll(() => home?.cleanup());

const env = (extra: Record<string, string> = {}) => childEnv({ ...home.env, ...extra });
const RFC3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/;

function writeConfig(name: string, lines: string[]): string {
  const path = join(home.dir, name);
  writeFileSync(path, `${lines.join('\n')}\n`);
  return path;
}

function validConfig(name: string, secret: string): string {
  const upstream = inject('upstream');
  return writeConfig(name, [
    'listen: 127.0.0.1:0',
    `store: sqlite:${join(home.dir, `${name}.db`)}`,
    'identity:',
    `  api_keys: [{name: ci, sha256: ${apiKeyHash('hoop_gateway_process_key')}, groups: [analysts]}]`,
    'connections:',
    '  - name: bank',
    '    type: postgres',
    `    upstream: {host: ${upstream.host}, port: ${upstream.port}, database: ${upstream.database}, user: ${upstream.users.scram}, password: "${secret}", sslmode: disable}`,
    '    access: [analysts]',
    `audit: {signing_key: ${join(home.dir, `${name}.key`)}}`,
  ]);
}

describe('hoop gateway --check', () => {
  it('a valid config: exit 0, nothing started (no store file, no signing key)', async () => {
    const config = validConfig('valid.yaml', 'not-a-real-password');
    const r = await runBin(['gateway', '--config', config, '--check'], env());
    expect(r).toEqual({ code: 0, stdout: '', stderr: '✓ valid.yaml is valid: 1 connection, 1 API key, 1 worker.\n' });
    const json = await runBin(['gateway', '--config', config, '--check', '--json'], env());
    expect(json.code).toBe(0);
    expect(JSON.parse(json.stdout)).toEqual({ valid: true, problems: [] });
    const { existsSync } = await import('node:fs');
    expect(existsSync(join(home.dir, 'valid.yaml.db'))).toBe(false);
    expect(existsSync(join(home.dir, 'valid.yaml.key'))).toBe(false);
  });

  it('an invalid config: exit 2, every problem on its own line naming file and key; --json lists them', async () => {
    const config = writeConfig('bad.yaml', ['listen: nowhere', 'store: "sqlite::memory:"', 'bogus_key: 1', 'identity: {api_keys: []}', 'roles: {admin: 3}']);
    const r = await runBin(['gateway', '--config', config, '--check'], env());
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    const lines = r.stderr.trimEnd().split('\n');
    expect(lines[0]).toBe('hoop: the config has 3 problems:');
    expect(lines.slice(1, 4).sort()).toEqual([
      '  bad.yaml: bogus_key: unknown key',
      '  bad.yaml: listen: expected host:port, e.g. 127.0.0.1:8009 or [::1]:8009 (port 0 picks a free port)',
      '  bad.yaml: roles.admin: expected a list, got a number',
    ]);
    expect(lines[4]).toBe('see docs/configuration.md for every key');
    expect(lines).toHaveLength(5);
    const json = await runBin(['gateway', '--config', config, '--check', '--json'], env());
    expect(json.code).toBe(2);
    expect(JSON.parse(json.stdout)).toEqual({ valid: false, problems: expect.arrayContaining(['bad.yaml: bogus_key: unknown key']) });
    expect(JSON.parse(json.stdout).problems).toHaveLength(3);
    // A YAML syntax error and a missing file are problems too.
    const syntax = await runBin(['gateway', '--config', writeConfig('syntax.yaml', ['listen: [']), '--check'], env());
    expect(syntax.code).toBe(2);
    expect(syntax.stderr.split('\n')[1]).toMatch(/^ {2}syntax\.yaml:\d+:\d+: /);
    const missing = await runBin(['gateway', '--config', join(home.dir, 'nope.yaml'), '--check'], env());
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain('nope.yaml: cannot read the config file');
  });
});

describe('hoop gateway logs', () => {
  it('on a piped stderr: JSON lines with RFC 3339 times, no secret, and one `stopped` line at SIGTERM', async () => {
    const secret = 'S3cret-do-not-log';
    const config = validConfig('logs.yaml', '${env:DB_PASSWORD}');
    const run = spawn(process.execPath, [BIN, 'gateway', '--config', config], { env: env({ DB_PASSWORD: secret }), stdio: ['ignore', 'pipe', 'pipe'] });
    let logs = '';
    run.stderr.on('data', (d: Buffer) => (logs += d.toString()));
    const exited = new Promise<number | null>((resolve) => run.once('exit', resolve));
    try {
      await until(() => logs.includes('"msg":"gateway listening"'), { timeoutMs: 20_000, what: () => `gateway listening (logs: ${logs})` });
    } finally {
      run.kill('SIGTERM');
    }
    expect(await exited).toBe(0);
    const lines = logs.trimEnd().split('\n').map((l) => JSON.parse(l) as { time: unknown; msg: string; level: number; service: string });
    expect(lines.length).toBeGreaterThan(3);
    for (const l of lines) {
      expect(l.time).toMatch(RFC3339);
      expect(l.service).toBe('hoop-gateway');
    }
    expect(lines.filter((l) => l.msg === 'stopped')).toHaveLength(1);
    expect(lines[lines.length - 1]!.msg).toBe('stopped');
    expect(logs).not.toContain(secret);
  });

  it('SIGHUP reads the config again: a valid one is applied and recorded as config.loaded, a bad one is logged and the running one kept', async () => {
    const secret = 'S3cret-hup-password';
    const hashKey = 'hup-hash-key-never-logged-0123456789';
    const key = 'hoop_gateway_process_key';
    const config = validConfig('hup.yaml', '${env:DB_PASSWORD}');
    const original = readFileSync(config, 'utf8');
    writeFileSync(config, `${original}roles: {auditor: [analysts]}\n`);
    const run = spawn(process.execPath, [BIN, 'gateway', '--config', config], { env: env({ DB_PASSWORD: secret, HUP_HASH_KEY: hashKey }), stdio: ['ignore', 'pipe', 'pipe'] });
    let logs = '';
    run.stderr.on('data', (d: Buffer) => (logs += d.toString()));
    const exited = new Promise<number | null>((resolve) => run.once('exit', resolve));
    // Whole lines only: the last one may still be on its way.
    const records = () => logs.split('\n').slice(0, -1).filter(Boolean).map((l) => JSON.parse(l) as Record<string, any>);
    const api = async (url: string, path: string) => {
      const res = await fetch(`${url}${path}`, { headers: { authorization: `Bearer ${key}` } });
      return (await res.json()) as any;
    };
    try {
      await until(() => logs.includes('"msg":"gateway listening"'), { timeoutMs: 20_000, what: () => `gateway listening (logs: ${logs})` });
      const url = records().find((l) => l.msg === 'gateway listening')!['url'] as string;
      expect((await api(url, '/api/v1/connections'))[0].masking.enabled).toBe(false);

      // A masking block added to bank, then SIGHUP.
      const masked = original.replace('    access: [analysts]', '    access: [analysts]\n    masking: {columns: [{column: public.customers.ssn, type: ssn, method: partial}], hash_key: "${env:HUP_HASH_KEY}"}');
      writeFileSync(config, `${masked}roles: {auditor: [analysts]}\n`);
      run.kill('SIGHUP');
      await until(() => logs.includes('"msg":"config reloaded"'), { timeoutMs: 10_000, what: () => `config reloaded (logs: ${logs})` });
      expect((await api(url, '/api/v1/connections'))[0].masking).toEqual({ enabled: true, exempt: false, columns: 1, detectors: ['ssn', 'card_number', 'iban', 'email'] });
      const loaded = (await api(url, '/api/v1/audit/events?type=config.loaded')) as { data: Record<string, any> }[];
      expect(loaded.map((e) => e.data['source'])).toEqual(['sighup', 'start']);
      expect(loaded[0]!.data['changes']).toMatchObject({ connections: { changed: ['bank'] }, masking: { bank: { added: ['public.customers.ssn: ssn partial'], changed: ['masking: off -> on'] } } });

      // A bad file: logged with every problem, the running config kept, nothing recorded.
      writeFileSync(config, `${masked.replace('method: partial', 'method: scramble')}roles: {auditor: [analysts]}\nbogus: 1\n`);
      run.kill('SIGHUP');
      await until(() => logs.includes('"msg":"config reload refused; the running config is kept"'), { timeoutMs: 10_000, what: () => `reload refused (logs: ${logs})` });
      const refused = records().find((l) => l.msg === 'config reload refused; the running config is kept')!;
      expect([...refused['problems']].sort()).toEqual(['hup.yaml: bogus: unknown key', 'hup.yaml: connections[0].masking.columns[0].method: expected one of: redact, partial, hash, null']);
      expect(refused['source']).toBe('sighup');
      expect((await api(url, '/api/v1/connections'))[0].masking.columns).toBe(1);
      expect((await api(url, '/api/v1/audit/events?type=config.loaded')).length).toBe(2);
    } finally {
      run.kill('SIGTERM');
    }
    expect(await exited).toBe(0);
    expect(logs).not.toContain(secret);
    expect(logs).not.toContain(hashKey);
  });

  it('on a terminal: one readable line per record, with the level, message and fields', () => {
    const plain = colorScheme(false);
    const line = JSON.stringify({ level: 30, time: '2026-01-31T09:12:03.123Z', service: 'hoop-gateway', pid: 1, hostname: 'h', url: 'http://127.0.0.1:8009', connections: 2, msg: 'gateway listening' });
    const out = formatLogLine(line, plain);
    expect(out).toMatch(/^\d\d:\d\d:\d\d INFO  gateway listening {2}url=http:\/\/127\.0\.0\.1:8009 connections=2\n$/);
    expect(formatLogLine(JSON.stringify({ level: 40, time: 0, msg: 'slow', err: 'a b\u001b[31m' }), plain)).toMatch(/^\d\d:\d\d:\d\d WARN  slow {2}err="a b\\u001b\[31m"\n$/);
    expect(formatLogLine('not json', plain)).toBe('not json\n');
  });
});
