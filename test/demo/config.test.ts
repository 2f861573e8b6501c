import { afterEach, expect, test } from 'vitest';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from '../../src/gateway/config.js';
import { apiKeyHash } from '../../src/identity/api-keys.js';
import { writeDemoConfig } from '../../src/demo/config.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

test('the demo writes a hoop.yaml that the real config loader accepts, with the database password only by reference', () => {
  const dir = mkdtempSync(join(tmpdir(), 'hoop-demo-config-'));
  dirs.push(dir);
  const keys = { alice: 'key-alice-1', bob: 'key-bob-2', carol: 'key-carol-3' };
  const file = writeDemoConfig(dir, { port: 0, upstreamPort: 54321, dbPassword: 's3cret"pw', keys });

  const yaml = readFileSync(file, 'utf8');
  expect(yaml).not.toContain('s3cret');
  for (const key of Object.values(keys)) expect(yaml).not.toContain(key);
  expect(statSync(join(dir, 'bank-db.password')).mode & 0o077).toBe(0);

  const config = loadConfig(file);
  expect(config.listen).toEqual({ host: '127.0.0.1', port: 0 });
  expect(config.store).toBe(`sqlite:${join(dir, 'hoop.db')}`);
  expect(config.identity.api_keys).toEqual([
    { name: 'alice', sha256: apiKeyHash('key-alice-1'), groups: ['analysts'] },
    { name: 'bob', sha256: apiKeyHash('key-bob-2'), groups: ['dba'] },
    { name: 'carol', sha256: apiKeyHash('key-carol-3'), groups: ['audit'] },
  ]);
  expect(config.roles).toEqual({ admin: ['dba'], auditor: ['audit'] });
  expect(config.connections).toHaveLength(1);
  const bank = config.connections[0]!;
  expect(bank.name).toBe('bank');
  expect(bank.access).toEqual(['analysts', 'dba']);
  expect(bank.upstream).toMatchObject({ host: '127.0.0.1', port: 54321, database: 'bank', user: 'hoop_svc', password: 's3cret"pw', sslmode: 'disable' });
  expect(config.audit.signing_key).toBe(join(dir, 'signing.key'));
});
