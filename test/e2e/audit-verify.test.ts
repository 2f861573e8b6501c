/**
 * `hoop audit verify` as a user runs it: `bin/hoop.js` on bundles made by test/helpers/bundle.ts
 * (archived by the real tar), intact and tampered, with and without trusted keys; and
 * `--gateway`, which fetches GET /api/v1/audit/export?format=bundle and verifies it as it streams.
 *
 * Here `--gateway` runs against a small HTTP server that answers the export route per its
 * contract and sends the body in 300-byte pieces (verification runs as they arrive); the real
 * gateway's route is verified end to end in test/e2e/audit-export.test.ts.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { spawn } from 'node:child_process';
import { createReadStream, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { AuditEvent } from '../../src/audit/event.js';
import { archiveBundle, buildLog, bundleFiles, editLines, newKey, sealBundle, type TestKey } from '../helpers/bundle.js';
import { BIN, childEnv, runBin, runHoop } from '../cli/helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'hoop-audit-verify-e2e-'));
const ALL = { since: '2026-01-01T00:00:00Z', until: '2027-01-01T00:00:00Z' };
let key: TestKey;
let log: AuditEvent[];
let good: string;
let bad: string;
let edited: AuditEvent;
const env = childEnv({ HOME: dir });

beforeAll(() => {
  key = newKey();
  log = buildLog({ key, sessions: 2 });
  good = archiveBundle(sealBundle(bundleFiles({ log, ...ALL }, key), key), dir, 'good.tar.gz');
  const files = sealBundle(bundleFiles({ log, ...ALL }, key), key);
  edited = log.find((e) => e.type === 'query.end')!;
  editLines(files, (lines) => lines.map((l) => (l.includes(`"id":"${edited.id}"`) ? l.replace('"rows":1', '"rows":0') : l)));
  bad = archiveBundle(files, dir, 'bad.tar.gz');
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('hoop audit verify BUNDLE (bin/hoop.js)', () => {
  test('an intact bundle: one line per check, VERIFIED, exit 0; --json prints the report', async () => {
    const r = await runBin(['audit', 'verify', good, '--key', key.id], env);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const lines = r.stdout.trimEnd().split('\n');
    expect(lines[0]).toBe(`Verifying ${good}`);
    expect(lines.slice(1, 11).map((l) => l.split(/\s+/).slice(0, 2).join(' '))).toEqual([
      'ok archive', 'ok manifest', 'ok SHA256SUMS', 'ok signature', 'ok chain', 'ok payloads', 'ok checkpoints', 'ok anchors', 'ok keys', 'ok trust',
    ]);
    expect(r.stdout).toContain(`Key ${key.id}: signed checkpoints and SHA256SUMS`);
    expect(lines.at(-1)).toBe('VERIFIED');
    const json = await runBin(['audit', 'verify', good, '--json'], env);
    expect(json.code).toBe(0);
    expect(JSON.parse(json.stdout)).toMatchObject({ source: good, ok: true, events: log.length, failure: null, keys: [{ key_id: key.id, trusted: null }] });
  });

  test('a tampered bundle: FAILED at the edited seq with its id and the reason, exit 10', async () => {
    const r = await runBin(['audit', 'verify', bad], env);
    expect(r.code).toBe(10);
    expect(r.stdout.trimEnd().split('\n').at(-1)).toBe(`FAILED at seq ${edited.seq} (id ${edited.id}): hash mismatch: the event content does not match its hash`);
    expect(r.stdout).toMatch(/^FAIL {2}chain/m);
    const json = JSON.parse((await runBin(['audit', 'verify', bad, '--json'], env)).stdout);
    expect(json.failure).toEqual({ check: 'chain', seq: edited.seq, id: edited.id, file: 'events.jsonl', reason: 'hash mismatch: the event content does not match its hash' });
  });

  test('--key: a key that did not sign is not trusted (exit 10); a PEM file or SHA256:<base64> names the same key; a bad --key is a usage error', async () => {
    const other = newKey();
    const r = await runBin(['audit', 'verify', good, '--key', other.id], env);
    expect(r.code).toBe(10);
    expect(r.stdout).toContain(`FAILED: key ${key.id} signed checkpoints and SHA256SUMS but is not among the keys given with --key`);
    const pem = join(dir, 'gateway.pub.pem');
    writeFileSync(pem, key.pem);
    const sha = `SHA256:${Buffer.from(key.id, 'hex').toString('base64').replace(/=+$/, '')}`;
    expect((await runHoop(['audit', 'verify', good, '--key', other.id, '--key', pem])).code).toBe(0);
    expect((await runHoop(['audit', 'verify', good, '--key', sha])).code).toBe(0);
    const usage = await runHoop(['audit', 'verify', good, '--key', 'abc']);
    expect(usage.code).toBe(2);
    expect(usage.stderr).toMatch(/invalid --key 'abc'/);
    expect((await runHoop(['audit', 'verify', join(dir, 'missing.tar.gz')])).code).toBe(1);
  });

  test('BUNDLE - reads the bundle from stdin, as it streams through a pipe', async () => {
    const child = spawn(process.execPath, [BIN, 'audit', 'verify', '-', '--key', key.id], { env, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    createReadStream(bad).pipe(child.stdin);
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    expect(code).toBe(10);
    expect(stdout).toMatch(/^Verifying stdin\n/);
    expect(stdout).toContain(`FAILED at seq ${edited.seq}`);
  });
});

describe('hoop audit verify --gateway URL', () => {
  let server: Server;
  let url: string;
  const seen: string[] = [];
  const token = 'hoop_test-auditor-key';
  let body = Buffer.alloc(0);
  beforeAll(async () => {
    server = createServer((req, res) => {
      seen.push(req.url ?? '');
      if (req.headers.authorization !== `Bearer ${token}`) {
        res.writeHead(403, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ error: { code: 'HOOP_FORBIDDEN', message: 'only auditors and admins may export the audit log' } }));
        return;
      }
      res.writeHead(200, { 'content-type': 'application/gzip' });
      let at = 0;
      const next = (): void => {
        if (at >= body.length) res.end();
        else res.write(body.subarray(at, (at += 300)), next); // small pieces: verification runs as they arrive
      };
      next();
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

  test('fetches the whole range as a bundle and verifies it while it streams; a tampered one exits 10; a refusal exits 5', async () => {
    body = readFileSync(good);
    const now = new Date('2026-12-01T12:00:00.000Z');
    const r = await runHoop(['audit', 'verify', '--gateway', url, '--key', key.id], { env: { HOOP_TOKEN: token }, now });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout.trimEnd().split('\n').at(-1)).toBe('VERIFIED');
    expect(seen.at(-1)).toBe(`/api/v1/audit/export?format=bundle&since=${encodeURIComponent('1970-01-01T00:00:00.000Z')}&until=${encodeURIComponent(now.toISOString())}`);
    const ranged = await runHoop(['audit', 'verify', '--gateway', url, '--since', '2026-03-01', '--until', '2026-04-01T00:00:00Z'], { env: { HOOP_TOKEN: token }, now });
    expect(ranged.code).toBe(0);
    expect(seen.at(-1)).toContain(`since=${encodeURIComponent('2026-03-01T00:00:00.000Z')}&until=${encodeURIComponent('2026-04-01T00:00:00.000Z')}`);
    body = readFileSync(bad);
    expect((await runHoop(['audit', 'verify', '--gateway', url], { env: { HOOP_TOKEN: token } })).code).toBe(10);
    const refused = await runHoop(['audit', 'verify', '--gateway', url], { env: { HOOP_TOKEN: 'hoop_someone-else' } });
    expect(refused.code).toBe(5);
    expect(refused.stderr).toMatch(/only auditors and admins may export/);
  });
});
