/**
 * `hoop audit export` against a real gateway whose log was written by real psql sessions through
 * the tunnel: each format's content against the store, and the bundle checked with standard tools
 * only (tar, sha256sum, openssl, and the README's own Python), unfiltered and filtered (stubs that
 * still link), export.created with the SHA-256 of the file received, the role check, and a client
 * that goes away mid-bundle leaving no spool behind.
 */
import { execFile } from 'node:child_process';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import Database from 'better-sqlite3';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { canonicalJson } from '../../src/audit/chain.js';
import type { AuditEvent } from '../../src/audit/event.js';
import { openLocalTunnel, type LocalTunnel } from '../../src/client/tunnel.js';
import { psql } from '../helpers/clients.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { until } from '../helpers/poll.js';
import { createTestDatabase } from '../helpers/postgres.js';
import { runHoop } from '../cli/helpers.js';
import { parseCef } from '../helpers/cef.js';

const run = promisify(execFile);
const shared = inject('upstream');
let database: Awaited<ReturnType<typeof createTestDatabase>>;
let gw: TestGateway;
let work: string;
let spoolRoot: string;
let previousTmpdir: string | undefined;
let since: string;
let until_: string;
const tunnels: LocalTunnel[] = [];
const HOSTILE = "a|b=c\\d\r\ne \"q\" <script>x</script> =cmd";

const as = (who: string) => ({ env: { HOOP_GATEWAY: gw.url, HOOP_TOKEN: gw.keys[who]! } });

async function tunnelAs(who: string): Promise<LocalTunnel> {
  const t = await openLocalTunnel({ gateway: gw.url, connection: 'bank', token: async () => gw.keys[who]!, port: 0, user: who, database: database.info.database });
  tunnels.push(t);
  return t;
}

beforeAll(async () => {
  // The gateway runs in this process: its bundle spools go under a directory this file watches.
  work = mkdtempSync(join(tmpdir(), 'hoop-xtest-'));
  spoolRoot = mkdtempSync(join(tmpdir(), 'hoop-xspool-'));
  previousTmpdir = process.env['TMPDIR'];
  process.env['TMPDIR'] = spoolRoot;
  database = await createTestDatabase(shared, 'hoop_export');
  gw = await startTestGateway({ upstream: database.info });
  since = new Date(Date.now() - 60_000).toISOString();
  const alice = await tunnelAs('alice');
  const bob = await tunnelAs('bob');
  await psql(bob.uri, ['-c', 'CREATE TABLE notes (id int primary key, body text)']);
  await psql(bob.uri, ['-c', `INSERT INTO notes VALUES (1, $$${HOSTILE}$$), (2, 'plain')`]);
  await psql(alice.uri, ['-c', 'SELECT id, body FROM notes ORDER BY id']);
  await psql(alice.uri, ['-c', `SELECT '${HOSTILE.replace(/'/g, "''")}' AS hostile; SELECT 2`]);
  await psql(alice.uri, ['-c', 'SELECT * FROM missing_table'], { onErrorStop: false });
  await runHoop(['connections'], { env: { HOOP_GATEWAY: gw.url, HOOP_TOKEN: 'hoop_not-a-key' } }); // auth.failed
  for (const t of tunnels.splice(0)) await t.close();
  // session.end events are recorded lazily: wait for both.
  await until(async () => (await gw.store.readEvents({ types: ['session.end'] })).length >= 5, { timeoutMs: 10_000, what: 'session.end events' });
  until_ = new Date(Date.now() + 1).toISOString();
});

afterAll(async () => {
  for (const t of tunnels) await t.close();
  await gw?.close();
  await database?.drop();
  rmSync(work, { recursive: true, force: true });
  rmSync(spoolRoot, { recursive: true, force: true });
  if (previousTmpdir === undefined) delete process.env['TMPDIR'];
  else process.env['TMPDIR'] = previousTmpdir;
});

async function exportTo(name: string, args: string[], who = 'carol'): Promise<{ code: number; stderr: string; path: string }> {
  const path = join(work, name);
  const r = await runHoop(['audit', 'export', '--since', since, '--until', until_, ...args, '-o', path], as(who));
  return { code: r.code, stderr: r.stderr, path };
}

async function extract(path: string): Promise<string> {
  const dir = mkdtempSync(join(work, 'x-'));
  await run('tar', ['xzf', path, '-C', dir]);
  return dir;
}

function jsonLines(text: string): any[] {
  return text.trimEnd().split('\n').map((l) => JSON.parse(l));
}

/** The store's events as a bundle's FULL line has them: without payload. */
function stored(e: AuditEvent): string {
  const { payload: _p, ...rest } = e;
  return canonicalJson(rest);
}

/** Runs the Python from README.txt (the examiner's chain check) in the extracted bundle. */
async function readmePython(dir: string): Promise<void> {
  const readme = readFileSync(join(dir, 'README.txt'), 'utf8');
  const all = readme.split('\n');
  const start = all.findIndex((l) => l.trim() === 'import hashlib, json');
  const end = all.findIndex((l, i) => i > start && !l.startsWith('       '));
  const code = all.slice(start, end).map((l) => l.slice(7)).join('\n');
  expect(code).toContain('hashlib.sha256');
  writeFileSync(join(dir, '..', 'check.py'), code);
  await run('python3', [join(dir, '..', 'check.py')], { cwd: dir });
}

async function standardChecks(dir: string): Promise<any> {
  const manifest = JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8'));
  const sums = await run('sha256sum', ['-c', 'SHA256SUMS'], { cwd: dir });
  expect(sums.stdout).toMatch(/events\.jsonl: OK/);
  const verify = await run('openssl', ['pkeyutl', '-verify', '-pubin', '-inkey', `keys/${manifest.signing_key_id}.pem`, '-rawin', '-in', 'SHA256SUMS', '-sigfile', 'SHA256SUMS.sig'], { cwd: dir });
  expect(verify.stdout).toMatch(/Signature Verified Successfully/);
  await readmePython(dir);
  // Every file but the two is listed, and nothing else is.
  const listed = readFileSync(join(dir, 'SHA256SUMS'), 'utf8').trimEnd().split('\n').map((l) => l.slice(66));
  const files = readdirSync(dir, { recursive: true, withFileTypes: true }).filter((d) => d.isFile()).map((d) => join(d.parentPath.slice(dir.length + 1), d.name).replace(/^\//, ''));
  expect(listed).toEqual([...files].filter((f) => !f.startsWith('SHA256SUMS')).sort((a, b) => (a < b ? -1 : 1)));
  return manifest;
}

describe('hoop audit export --bundle', () => {
  it('verifies with standard tools alone, and holds the events, results and keys exactly as stored', async () => {
    const r = await exportTo('all.tar.gz', ['--bundle']);
    expect(r.stderr).toMatch(/^Exported .* \(bundle\) to .*all\.tar\.gz; sha256 [0-9a-f]{64}\n$/);
    expect(r.code).toBe(0);
    const dir = await extract(r.path);
    const manifest = await standardChecks(dir);
    const names = (await run('tar', ['tzf', r.path])).stdout.trimEnd().split('\n');
    expect(names.slice(0, 3)).toEqual(['README.txt', 'manifest.json', 'events.jsonl']);
    expect(names.slice(-4)).toEqual(['summary.csv', 'report.html', 'SHA256SUMS', 'SHA256SUMS.sig']);

    const lines = readFileSync(join(dir, 'events.jsonl'), 'utf8').trimEnd().split('\n');
    const events = await gw.store.readEvents({ afterSeq: manifest.span.first_seq - 1, beforeSeq: manifest.span.last_seq + 1 });
    expect(lines).toHaveLength(events.length);
    expect(manifest.span.first_seq).toBe(1); // no checkpoint before the range: from genesis
    expect(events.at(-1)!.type).toBe('checkpoint');
    for (const [i, e] of events.entries()) {
      const inRange = e.time >= since && e.time < until_;
      expect(lines[i]).toBe(inRange || e.type === 'checkpoint' ? stored(e) : `{"hash":"${e.hash}","omitted":true,"prev_hash":"${e.prev_hash}","seq":${e.seq}}`);
      if (e.payload_sha256 && (inRange || e.type === 'checkpoint')) {
        const file = readFileSync(join(dir, 'payloads', `${e.seq}.json`));
        expect(file.toString('utf8')).toBe(canonicalJson(e.payload));
        expect(createHash('sha256').update(file).digest('hex')).toBe(e.payload_sha256);
      }
    }
    expect(manifest).toMatchObject({
      format: 'hoop-audit-bundle-v1', created_by: { subject: 'apikey:carol' }, range: { since, until: until_ }, filters: { user: null, connection: null },
      signing_key_id: manifest.key_ids[0], pruned_payloads: [],
    });
    expect(manifest.counts.payloads).toBeGreaterThanOrEqual(2);
    expect(readFileSync(join(dir, 'payloads', `${events.find((e) => e.type === 'query.end' && JSON.stringify(e.payload ?? '').includes('hostile'))!.seq}.json`), 'utf8')).toContain('<script>');
    expect(readFileSync(join(dir, `keys/${manifest.signing_key_id}.pem`), 'utf8')).toMatch(/^-----BEGIN PUBLIC KEY-----\n/);
    const csv = readFileSync(join(dir, 'summary.csv'), 'utf8');
    expect(csv.split('\r\n')[0]).toMatch(/^time,user,/);
    const report = readFileSync(join(dir, 'report.html'), 'utf8');
    expect(report).not.toContain('<script>x');
    expect(report).toContain(`href="payloads/${events.find((e) => e.type === 'query.end' && e.payload_sha256)!.seq}.json"`);

    // The export is recorded, with the hash of exactly the file that arrived.
    const created = (await gw.store.readEvents({ types: ['export.created'] })).at(-1)!;
    expect(created).toMatchObject({
      actor: { subject: 'apikey:carol' },
      data: { format: 'bundle', since, until: until_, user: null, connection: null, complete: true, bytes: readFileSync(r.path).length, sha256: createHash('sha256').update(readFileSync(r.path)).digest('hex'), verified: true },
    });

    // hoop's own verifier agrees, trusting the gateway's key; and so does the live check through the same export.
    const checked = await runHoop(['audit', 'verify', r.path, '--key', manifest.signing_key_id], as('carol'));
    expect(checked.code).toBe(0);
    expect(checked.stdout.trimEnd().split('\n').at(-1)).toBe('VERIFIED');
    const live = await runHoop(['audit', 'verify', '--gateway', gw.url, '--key', manifest.signing_key_id], as('carol'));
    expect(live.code).toBe(0);
    expect(live.stdout.trimEnd().split('\n').at(-1)).toBe('VERIFIED');
  });

  it('filtered by user: other users\' events become stubs, the chain still links, checkpoints stay whole', async () => {
    const r = await exportTo('alice.tar.gz', ['--bundle', '--user', 'alice']);
    expect(r.code).toBe(0);
    const dir = await extract(r.path);
    const manifest = await standardChecks(dir);
    const lines = jsonLines(readFileSync(join(dir, 'events.jsonl'), 'utf8'));
    const fullLines = lines.filter((l) => !l.omitted);
    expect(lines.filter((l) => l.omitted).length).toBe(manifest.counts.events_omitted);
    expect(manifest.counts.events_omitted).toBeGreaterThan(5);
    expect(fullLines.filter((l) => l.type !== 'checkpoint').every((l) => l.actor?.subject === 'apikey:alice')).toBe(true);
    expect(fullLines.some((l) => l.type === 'query.start' && l.data.statement.includes('missing_table'))).toBe(true);
    expect(fullLines.some((l) => l.type === 'checkpoint')).toBe(true);
    const rows = readFileSync(join(dir, 'summary.csv'), 'utf8').split('\r\n').filter((l) => l.startsWith('20'));
    expect(rows.every((l) => l.includes(',apikey:alice,'))).toBe(true);
    expect(manifest.filters).toEqual({ user: 'alice', connection: null });
    const checked = await runHoop(['audit', 'verify', r.path, '--key', manifest.signing_key_id], as('carol'));
    expect(checked.code).toBe(0);
  });

  it('a payload pruned by retention is listed as pruned, and the bundle still checks', async () => {
    const end = (await gw.store.readEvents({ since, until: until_, types: ['query.end'] })).find((e) => e.payload_sha256)!;
    const db = new Database(join(gw.dir, 'hoop.db'));
    db.prepare('DELETE FROM event_payloads WHERE seq = ?').run(end.seq); // what audit.retention.payloads does
    db.close();
    const r = await exportTo('pruned.tar.gz', ['--bundle']);
    expect(r.code).toBe(0);
    const dir = await extract(r.path);
    const manifest = await standardChecks(dir);
    expect(manifest.pruned_payloads).toEqual([end.seq]);
    expect(manifest.counts.payloads_pruned).toBe(1);
    expect(readdirSync(join(dir, 'payloads'))).not.toContain(`${end.seq}.json`);
    expect(readFileSync(join(dir, 'events.jsonl'), 'utf8')).toContain(`"payload_sha256":"${end.payload_sha256}"`);
    expect((await gw.store.readEvents({ types: ['export.created'] })).at(-1)!.data).toMatchObject({ verified: true, counts: { payloads_pruned: 1 } });
  });

  it('a client that goes away mid-bundle leaves no spool behind, and the export is recorded as incomplete', async () => {
    // Enough incompressible recorded results that the archive outgrows the socket buffers.
    const actor = { subject: 'apikey:bob', email: null, groups: ['dba'], auth_method: 'api_key' as const };
    const session = randomUUID();
    await gw.store.appendEvents(Array.from({ length: 40 }, (_, i) => ({
      id: randomUUID(), time: new Date().toISOString(), type: 'query.end' as const, actor, source: null, connection: 'bank', session_id: session,
      data: { query_id: `q${i}`, outcome: 'ok', rows: 1, bytes: 200_000 }, payload: { 'result.sets': [{ columns: ['x'], rows: [[randomBytes(150_000).toString('base64')]] }] },
    })));
    const before = (await gw.store.readEvents({ types: ['export.created'] })).length;
    const url = `${gw.url}/api/v1/audit/export?format=bundle&since=${encodeURIComponent(since)}&until=${encodeURIComponent(new Date(Date.now() + 1000).toISOString())}`;
    const open = () => request(url, { headers: { authorization: `Bearer ${gw.keys['carol']}` } });
    const [res, other] = await Promise.all([open(), open()]);
    expect([res.statusCode, other.statusCode]).toEqual([200, 200]);
    // Two bundles are being sent (neither client reads): a third waits its turn.
    const third = await open();
    expect(third.statusCode).toBe(429);
    expect(await third.body.json()).toMatchObject({ error: { code: 'HOOP_AUDIT_UNAVAILABLE' } });
    for await (const _chunk of res.body) break; // first chunk, then hang up
    res.body.destroy();
    other.body.destroy();
    const cut = await until(async () => {
      const got = (await gw.store.readEvents({ types: ['export.created'] })).slice(before);
      return got.length === 2 && got;
    }, { timeoutMs: 10_000, what: 'export.created of both cut exports' });
    for (const e of cut) expect(e.data).toMatchObject({ format: 'bundle', complete: false, reason: 'the client went away before the end' });
    await until(() => !readdirSync(spoolRoot).some((d) => d.startsWith('hoop-export-')), { what: 'the spool directory removed' });
  });
});

describe('hoop audit export --format', () => {
  it('jsonl: the range\'s events as stored, payloads inline, filtered by connection', async () => {
    const r = await exportTo('all.jsonl', ['--connection', 'bank']);
    expect(r.code).toBe(0);
    const lines = readFileSync(r.path, 'utf8').trimEnd().split('\n');
    const events = (await gw.store.readEvents({ since, until: until_ })).filter((e) => e.connection === 'bank');
    // The export reads up to the head as it began: events after that (its own export.created) are not in it.
    expect(lines).toEqual(events.slice(0, lines.length).map((e) => canonicalJson(e.payload_sha256 ? { ...e, payload: e.payload ?? null } : e)));
    expect(lines.length).toBeGreaterThan(10);
    // -o - writes the same bytes to stdout; on a terminal a progress line goes to stderr, never to stdout.
    const out = await runHoop(['audit', 'export', '--since', since, '--until', until_, '--connection', 'bank', '-o', '-'], { ...as('carol'), tty: true });
    expect(out.code).toBe(0);
    expect(out.stdout).toBe(readFileSync(r.path, 'utf8'));
    expect(out.stderr).toMatch(/exporting: .*\r\u001b\[2KExported .* \(jsonl\) to stdout; sha256 [0-9a-f]{64}\n$/s);
  });

  it('csv: one row per statement, read back by Python\'s csv module', async () => {
    const r = await exportTo('all.csv', ['--format', 'csv']);
    expect(r.code).toBe(0);
    const py = await run('python3', ['-c', 'import csv,json,sys; print(json.dumps(list(csv.DictReader(open(sys.argv[1], newline="", encoding="utf-8")))))', r.path]);
    const rows = JSON.parse(py.stdout) as Record<string, string>[];
    const starts = (await gw.store.readEvents({ since, until: until_, types: ['query.start'] }));
    expect(rows).toHaveLength(starts.length);
    const hostile = rows.find((x) => x['statement']!.includes('AS hostile'))!;
    expect(hostile['statement']).toBe(`SELECT '${HOSTILE.replace(/'/g, "''")}' AS hostile; SELECT 2`);
    expect(rows.find((x) => x['statement']!.includes('missing_table'))!['outcome']).toBe('error');
  });

  it('cef: every line parses back by the CEF rules to the values recorded, hostile ones included', async () => {
    const r = await exportTo('all.cef', ['--format', 'cef', '--user', 'alice']);
    expect(r.code).toBe(0);
    const text = readFileSync(r.path, 'utf8');
    const parsed = text.trimEnd().split('\n').map(parseCef);
    const events = (await gw.store.readEvents({ since, until: until_ })).filter((e) => e.actor?.subject === 'apikey:alice');
    expect(parsed.map((p) => p.ext['externalId'])).toEqual(events.slice(0, parsed.length).map((e) => e.id));
    for (const p of parsed) expect(p.header.slice(0, 3)).toEqual(['hoop', 'hoop', expect.stringMatching(/^\d+\.\d+\.\d+/)]);
    const start = parsed.find((p) => p.header[3] === 'query.start' && p.ext['msg']?.includes('AS hostile'))!;
    expect(start.ext['msg']).toBe(`SELECT '${HOSTILE.replace(/'/g, "''")}' AS hostile; SELECT 2`);
    expect(start.ext).toMatchObject({ suser: 'apikey:alice', act: 'query.start', cs2Label: 'connection', cs2: 'bank', src: '127.0.0.1' });
    expect(Number(start.ext['rt'])).toBe(Date.parse(events.find((e) => e.id === start.ext['externalId'])!.time));
  });

  it('ocsf: each event in its class, with the fields the class requires', async () => {
    const r = await exportTo('all.ocsf', ['--format', 'ocsf']);
    expect(r.code).toBe(0);
    const lines = jsonLines(readFileSync(r.path, 'utf8'));
    for (const l of lines) {
      expect(l.type_uid).toBe(l.class_uid * 100 + l.activity_id);
      expect(l).toMatchObject({ metadata: { version: '1.1.0', product: { name: 'hoop', vendor_name: 'hoop' } }, severity_id: expect.any(Number), time: expect.any(Number) });
    }
    const query = lines.find((l) => l.unmapped.hoop.type === 'query.end' && l.status_id === 2)!;
    expect(query).toMatchObject({ class_uid: 6005, category_uid: 6, activity_id: 4, database: { name: 'bank' }, actor: { user: { uid: 'apikey:alice' } }, src_endpoint: { ip: '127.0.0.1' } });
    const logon = lines.find((l) => l.unmapped.hoop.type === 'session.start')!;
    expect(logon).toMatchObject({ class_uid: 3002, activity_id: 1, type_uid: 300201, user: { uid: expect.any(String) }, service: { name: 'hoop/bank' } });
    expect(lines.find((l) => l.unmapped.hoop.type === 'auth.failed')).toMatchObject({ class_uid: 3002, status_id: 2 });
  });

  it('is for auditors and admins: anyone else exits 5, and the refusal is recorded; no file is left', async () => {
    const r = await exportTo('denied.jsonl', [], 'alice');
    expect(r.code).toBe(5);
    expect(r.stderr).toBe('hoop: only admins and auditors may export the audit log\n');
    expect(readdirSync(work).filter((f) => f.includes('denied'))).toEqual([]);
    await until(async () => (await gw.store.readEvents({ types: ['access.denied'] })).some((e) => e.actor?.subject === 'apikey:alice' && (e.data['export'] as any)?.format === 'jsonl'));
    const bad = await runHoop(['audit', 'export', '--since', 'yesterday', '--until', '1h', '-o', '-'], as('carol'));
    expect(bad.code).toBe(2);
    expect((await runHoop(['audit', 'export', '--since', '2h', '--until', '1h', '--bundle', '--format', 'csv', '-o', '-'], as('carol'))).code).toBe(2);
    const nowhere = await runHoop(['audit', 'export', '--since', '2h', '--until', '1h', '-o', join(work, 'no-such-dir', 'x.jsonl')], as('carol'));
    expect(nowhere).toMatchObject({ code: 2, stderr: `hoop: cannot write ${join(work, 'no-such-dir', 'x.jsonl')}: its directory does not exist\n` });
    const rejected = await runHoop(['audit', 'export', '--since', '2h', '--until', '1h', '-o', '-'], { env: { HOOP_GATEWAY: gw.url, HOOP_TOKEN: 'hoop_not-a-key' } });
    expect(rejected.code).toBe(4);
    // The API refuses what it cannot read exactly.
    const api = (q: string) => request(`${gw.url}/api/v1/audit/export?${q}`, { headers: { authorization: `Bearer ${gw.keys['carol']}` } }).then(async (r) => ({ status: r.statusCode, body: (await r.body.json()) as any }));
    expect(await api('format=jsonl&since=2026-01-01T00:00:00Z')).toMatchObject({ status: 400, body: { error: { message: 'since and until are required (RFC 3339)' } } });
    expect((await api('format=xml&since=2026-01-01T00:00:00Z&until=2026-01-02T00:00:00Z')).status).toBe(400);
    expect((await api('since=2026-01-02T00:00:00Z&until=2026-01-01T00:00:00Z')).status).toBe(400);
    expect((await api('since=2026-01-01T00:00:00Z&until=2026-01-02T00:00:00Z&limit=5')).body.error.message).toMatch(/^unknown query parameter "limit"/);
    expect((await api('since=2026-01-01T00:00:00Z&until=2026-01-02T00:00:00Z&connection=Bad%20Name')).status).toBe(400);
  });
});

describe('a log that was tampered with', () => {
  it('is still exported, as evidence, and the export says where the chain breaks', async () => {
    const victim = (await gw.store.readEvents({ since, until: until_, types: ['query.start'] })).at(-1)!;
    const db = new Database(join(gw.dir, 'hoop.db'));
    db.exec('DROP TRIGGER events_no_update');
    db.prepare(`UPDATE events SET data = json_set(data, '$.statement', 'SELECT 1') WHERE seq = ?`).run(victim.seq);
    db.close();
    const r = await exportTo('tampered.tar.gz', ['--bundle']);
    expect(r.code).toBe(0);
    const dir = await extract(r.path);
    await run('sha256sum', ['-c', 'SHA256SUMS'], { cwd: dir }); // what was exported is intact; what it says is not
    await expect(readmePython(dir)).rejects.toThrow();
    const created = (await gw.store.readEvents({ types: ['export.created'] })).at(-1)!;
    expect(created.data).toMatchObject({ complete: true, verified: false });
    const report = readFileSync(join(dir, 'report.html'), 'utf8');
    expect(report).toMatch(/FAILED/);
    expect(report).toContain('hash mismatch: the event content does not match its hash');
    expect(created.data['verified']).toBe(false);
    // hoop audit verify names the edited event, offline and against the live log.
    for (const args of [[r.path], ['--gateway', gw.url]]) {
      const checked = await runHoop(['audit', 'verify', ...args], as('carol'));
      expect(checked.code).toBe(10);
      expect(checked.stdout).toContain(`FAILED at seq ${victim.seq}`);
    }
  });
});
