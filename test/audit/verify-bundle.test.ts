/**
 * Verifying audit bundles: bundles made per the format by test/helpers/bundle.ts (files written
 * by code apart from the exporter, archived by the real `tar czf`, SHA256SUMS signed with
 * node:crypto), then tampered with as a forger would. Every change is caught, with the event
 * (seq) or file it concerns and the reason.
 */
import { execFileSync } from 'node:child_process';
import { createReadStream, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { canonicalJson, computeHash, sealEvent } from '../../src/audit/chain.js';
import type { AuditEvent } from '../../src/audit/event.js';
import { verifyBundle, type BundleReport } from '../../src/audit/bundle-verify.js';
import {
  ALICE, archiveBundle, buildLog, bundleFiles, checkpointData, editLines, editManifest, newKey, sealBundle,
  type BundleFiles, type BundleOptions, type TestKey,
} from '../helpers/bundle.js';

const dir = mkdtempSync(join(tmpdir(), 'hoop-verify-bundle-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const ALL = { since: '2026-01-01T00:00:00Z', until: '2027-01-01T00:00:00Z' };
let gateway: TestKey;
let forger: TestKey;
let log: AuditEvent[];
let n = 0;

beforeAll(() => {
  gateway = newKey();
  forger = newKey();
  // 4 sessions × (start, 2 × (query.start, query.end), end) = 24 events, a checkpoint after every 4, one at the end.
  log = buildLog({ key: gateway, sessions: 4, statements: 2, checkpointEvery: 4 });
});

function files(o: Partial<BundleOptions> = {}): BundleFiles {
  return bundleFiles({ log, ...ALL, ...o }, gateway);
}

async function verify(f: BundleFiles, o: { seal?: TestKey | false; trusted?: string[] } = {}): Promise<BundleReport> {
  if (o.seal !== false) sealBundle(f, o.seal ?? gateway);
  const path = archiveBundle(f, dir, `b${++n}.tar.gz`);
  return verifyBundle(createReadStream(path), o.trusted ? { trustedKeys: o.trusted } : {});
}

const queryEnd = () => log.find((e) => e.type === 'query.end' && e.seq > 10)!;

describe('an intact bundle verifies', () => {
  test('a whole log from genesis: every check holds, with counts, the time range and the trusted key', async () => {
    const r = await verify(files(), { trusted: [gateway.id] });
    expect(r.failure).toBeNull();
    expect(r).toMatchObject({
      ok: true, span: { first_seq: 1, last_seq: log.length }, events: log.length, events_full: log.length, events_omitted: 0,
      checkpoints: log.filter((e) => e.type === 'checkpoint').length, payloads_checked: 8, payloads_pruned: 0,
      time_range: { first: log[0]!.time, last: log.at(-1)!.time },
      keys: [{ key_id: gateway.id, signed: ['checkpoints', 'SHA256SUMS'], trusted: true }],
    });
    expect(r.checks.map((c) => [c.name, c.status])).toEqual([
      ['archive', 'ok'], ['manifest', 'ok'], ['SHA256SUMS', 'ok'], ['signature', 'ok'], ['chain', 'ok'], ['payloads', 'ok'],
      ['checkpoints', 'ok'], ['anchors', 'ok'], ['keys', 'ok'], ['trust', 'ok'],
    ]);
    // Without --key nothing is said about trust, but the bundle holds together.
    const untrusted = await verify(files());
    expect(untrusted).toMatchObject({ ok: true, keys: [{ trusted: null }] });
    expect(untrusted.checks.at(-1)).toMatchObject({ name: 'trust', status: 'not_checked' });
  });

  test("a filtered bundle over part of the log: stubs for others' events, anchored at a checkpoint, pruned payloads reported as pruned", async () => {
    const since = log[9]!.time;
    const until = log[20]!.time;
    const alices = (e: AuditEvent) => e.actor?.subject === ALICE.subject;
    const prunedSeq = log.find((e) => e.type === 'query.end' && alices(e) && e.seq >= 10 && e.seq < 21)!.seq;
    const f = files({ since, until, filter: alices, filters: { user: 'alice', connection: null }, pruned: [prunedSeq] });
    const r = await verify(f, { trusted: [gateway.id] });
    expect(r.failure).toBeNull();
    expect(r.span!.first_seq).toBeGreaterThan(1);
    expect(r.events_omitted).toBeGreaterThan(0);
    expect(r).toMatchObject({ ok: true, payloads_pruned: 1, filters: { user: 'alice', connection: null } });
    expect(r.checks.find((c) => c.name === 'anchors')!.detail).toMatch(/^starts at seq \d+, vouched for by the checkpoint at seq \d+; ends at the checkpoint at seq \d+$/);
  });

  test('an empty range still has a span from anchor to anchor, and verifies', async () => {
    const gap = log.find((e) => e.type === 'checkpoint' && e.seq > 5)!;
    const r = await verify(files({ since: gap.time, until: gap.time }));
    expect(r).toMatchObject({ ok: true, payloads_checked: 0 });
  });

  test('python3 recomputes every full line\'s hash with json.dumps(sort_keys=True, separators=(",", ":"), ensure_ascii=False), as README.txt tells examiners', () => {
    const jsonl = join(dir, 'events-py.jsonl');
    writeFileSync(jsonl, files().get('events.jsonl')!);
    const script = [
      'import hashlib, json, sys',
      'bad = 0',
      'for line in open(sys.argv[1], encoding="utf-8"):',
      '    e = json.loads(line)',
      '    h = e.pop("hash")',
      '    body = json.dumps(e, sort_keys=True, separators=(",", ":"), ensure_ascii=False)',
      '    bad += hashlib.sha256((e["prev_hash"] + body).encode("utf-8")).hexdigest() != h',
      'print(bad)',
    ].join('\n');
    expect(execFileSync('python3', ['-c', script, jsonl], { encoding: 'utf8' }).trim()).toBe('0');
  });
});

describe('tampering with a bundle is caught', () => {
  test('an edited event: hash mismatch at its seq (and events.jsonl no longer matches SHA256SUMS)', async () => {
    const f = sealBundle(files(), gateway);
    const target = queryEnd();
    editLines(f, (lines) => lines.map((l) => (l.includes(`"id":"${target.id}"`) ? l.replace('"rows":1', '"rows":0') : l)));
    const r = await verify(f, { seal: false });
    expect(r).toMatchObject({ ok: false, failure: { check: 'chain', seq: target.seq, id: target.id, reason: expect.stringMatching(/hash mismatch/) } });
    expect(r.checks.find((c) => c.name === 'SHA256SUMS')).toMatchObject({ status: 'failed', detail: expect.stringMatching(/events\.jsonl does not match/) });
  });

  test('a deleted event: a seq gap at the next one', async () => {
    const f = files();
    editLines(f, (lines) => lines.filter((_, i) => i !== 6));
    expect((await verify(f)).failure).toMatchObject({ check: 'chain', seq: 8, reason: 'seq gap: expected 7, found 8 (events missing)' });
  });

  test('two events reordered: seq out of order', async () => {
    const f = files();
    editLines(f, (lines) => lines.map((l, i) => (i === 6 ? lines[7]! : i === 7 ? lines[6]! : l)));
    expect((await verify(f)).failure).toMatchObject({ check: 'chain', seq: 8, reason: expect.stringMatching(/seq gap: expected 7, found 8/) });
    const g = files();
    editLines(g, (lines) => [...lines.slice(0, 7), lines[8]!, lines[7]!, ...lines.slice(9)]);
    expect((await verify(g)).failure).toMatchObject({ check: 'chain', seq: 9, reason: 'seq gap: expected 8, found 9 (events missing)' });
  });

  test('an inserted event, sealed onto the chain: the event after it no longer follows', async () => {
    const f = files();
    const after = log[9]!;
    const forged = sealEvent({ id: '00000000-0000-4000-8000-000000000000', time: after.time, type: 'query.start', actor: ALICE, source: null, connection: 'bank', session_id: null, data: { statement: 'select 1' } }, after.seq + 1, after.hash);
    editLines(f, (lines) => [...lines.slice(0, 10), canonicalJson(forged), ...lines.slice(10)]);
    expect((await verify(f)).failure).toMatchObject({ check: 'chain', seq: after.seq + 1, reason: `seq out of order: ${after.seq + 1} follows ${after.seq + 1}` });
  });

  test('an event rewritten with every later hash recomputed: the next checkpoint no longer vouches for the chain', async () => {
    const f = files();
    const target = queryEnd();
    const cp = log.find((e) => e.type === 'checkpoint' && Number(e.data['seq']) >= target.seq)!;
    editLines(f, (lines) => {
      let prev = '';
      return lines.map((l) => {
        const e = JSON.parse(l) as AuditEvent;
        if (e.seq < target.seq) return l;
        if (e.seq === target.seq) e.data = { ...e.data, rows: 0 };
        if (e.seq > target.seq) e.prev_hash = prev;
        const { hash: _h, ...body } = e;
        e.hash = computeHash(body);
        prev = e.hash;
        return canonicalJson(e);
      });
    });
    expect((await verify(f)).failure).toMatchObject({ check: 'checkpoints', seq: cp.seq, reason: expect.stringMatching(/different hash at seq \d+: the log was rewritten after it was signed/) });
  });

  test('an edited payload, a deleted payload file, and a payload file that belongs to no event', async () => {
    const target = queryEnd();
    const name = `payloads/${target.seq}.json`;
    const edited = files();
    edited.set(name, Buffer.from(edited.get(name)!.toString().replace('€', '$')));
    expect((await verify(edited)).failure).toMatchObject({ check: 'payloads', seq: target.seq, file: name, reason: expect.stringMatching(/payload mismatch/) });
    const deleted = files();
    deleted.delete(name);
    editManifest(deleted, (m) => (m.counts.payloads -= 1)); // even with the manifest made to agree
    expect((await verify(deleted)).failure).toMatchObject({ check: 'payloads', seq: target.seq, reason: expect.stringMatching(/payload missing: .* manifest\.pruned_payloads does not list/) });
    const extra = files();
    const keysAt = [...extra.keys()].findIndex((k) => k.startsWith('keys/'));
    const entries = [...extra.entries()];
    entries.splice(keysAt, 0, ['payloads/2.json', Buffer.from('{}')]); // seq 2 is a query.start: no payload
    expect((await verify(new Map(entries))).failure).toMatchObject({ check: 'payloads', seq: 2, reason: expect.stringMatching(/belongs to no full event .*extra file/) });
  });

  test('a file added, or one left out of SHA256SUMS', async () => {
    const added = files();
    added.set('notes.txt', Buffer.from('trust me'));
    expect((await verify(added)).failure).toMatchObject({ check: 'archive', file: 'notes.txt', reason: expect.stringMatching(/unexpected file notes\.txt/) });
    const unlisted = sealBundle(files(), gateway);
    const sums = unlisted.get('SHA256SUMS')!.toString().split('\n').filter((l) => !l.endsWith('  summary.csv')).join('\n');
    unlisted.set('SHA256SUMS', Buffer.from(sums));
    const r = await verify(unlisted, { seal: false });
    expect(r.checks.find((c) => c.name === 'SHA256SUMS')).toMatchObject({ status: 'failed', detail: 'summary.csv is not listed in SHA256SUMS (an extra file)' });
    expect(r.checks.find((c) => c.name === 'signature')).toMatchObject({ status: 'failed' });
  });

  test("a stub's hash changed: the link from it breaks", async () => {
    const since = log[9]!.time;
    const f = files({ since, until: log[20]!.time, filter: (e) => e.actor?.subject === ALICE.subject });
    const lines = f.get('events.jsonl')!.toString().split('\n');
    const stubAt = lines.findIndex((l, i) => l.includes('"omitted":true') && i > 0 && !lines[i + 1]!.includes('"omitted":true'));
    const stub = JSON.parse(lines[stubAt]!);
    editLines(f, (ls) => ls.map((l, i) => (i === stubAt ? l.replace(stub.hash, 'a'.repeat(64)) : l)));
    expect((await verify(f)).failure).toMatchObject({ check: 'chain', seq: stub.seq + 1, reason: `prev link broken: prev_hash does not equal the hash of seq ${stub.seq} (an omitted event)` });
  });

  test("the chain's tail cut past a checkpoint, with the manifest left or made to agree", async () => {
    const cut = (f: BundleFiles) => editLines(f, (lines) => lines.slice(0, -3));
    const left = files();
    cut(left);
    const lastSeq = log.length - 3;
    expect((await verify(left)).failure).toMatchObject({ check: 'anchors', seq: lastSeq + 1, reason: `events.jsonl ends at seq ${lastSeq}, the manifest's span at seq ${log.length} (events missing)` });
    const agreed = files();
    cut(agreed);
    editManifest(agreed, (m) => (m.span.last_seq = lastSeq));
    expect((await verify(agreed)).failure).toMatchObject({ check: 'anchors', seq: lastSeq, reason: expect.stringMatching(/is not a checkpoint: the chain's tail is not signed/) });
  });

  test('a forged manifest: SHA256SUMS no longer matches it; made to agree, the counts or range give it away', async () => {
    const forged = sealBundle(files(), gateway);
    editManifest(forged, (m) => (m.created_by = { subject: 'apikey:mallory', email: null }));
    expect((await verify(forged, { seal: false })).failure).toMatchObject({ check: 'SHA256SUMS', file: 'manifest.json', reason: expect.stringMatching(/manifest\.json does not match its line in SHA256SUMS/) });
    const counts = files();
    editManifest(counts, (m) => (m.counts.events_omitted = 3));
    expect((await verify(counts)).failure).toMatchObject({ check: 'manifest', reason: 'manifest.json counts.events_omitted says 3, the bundle has 0' });
    const range = files();
    editManifest(range, (m) => (m.range.since = log[5]!.time));
    expect((await verify(range)).failure).toMatchObject({ check: 'manifest', seq: 1, reason: expect.stringMatching(/full event outside the manifest's range/) });
    const junk = files();
    junk.set('manifest.json', Buffer.from('{"format":"hoop-audit-bundle-v2"}'));
    expect((await verify(junk)).failure).toMatchObject({ check: 'manifest', reason: expect.stringMatching(/^manifest\.json: format:/) });
  });

  test("SHA256SUMS signed by another key: the signature fails; with the key swapped in too, only --key's trusted set catches it", async () => {
    const resigned = sealBundle(files(), forger);
    expect((await verify(resigned, { seal: false })).failure).toMatchObject({ check: 'signature', reason: expect.stringMatching(/does not verify with key/) });
    const swapped = files();
    editManifest(swapped, (m) => {
      m.signing_key_id = forger.id;
      m.key_ids = [gateway.id, forger.id].sort();
    });
    const entries = [...swapped.entries()];
    entries.splice(entries.findIndex(([k]) => k === 'summary.csv'), 0, [`keys/${forger.id}.pem`, Buffer.from(forger.pem)]);
    const bundle = new Map(entries);
    expect(await verify(new Map(bundle), { seal: forger })).toMatchObject({ ok: true });
    const r = await verify(new Map(bundle), { seal: forger, trusted: [gateway.id] });
    expect(r.failure).toMatchObject({ check: 'trust', reason: `key ${forger.id} signed SHA256SUMS but is not among the keys given with --key` });
    expect(r.keys).toEqual([
      { key_id: gateway.id, signed: ['checkpoints'], checkpoints: expect.any(Number), trusted: true },
      { key_id: forger.id, signed: ['SHA256SUMS'], checkpoints: 0, trusted: false },
    ]);
  });

  test('a whole log re-made by a forger (new chain, own checkpoints, own signature): only the trusted key catches it', async () => {
    const forgedLog = buildLog({ key: forger, sessions: 2 });
    const f = bundleFiles({ log: forgedLog, ...ALL }, forger);
    expect(await verify(f, { seal: forger })).toMatchObject({ ok: true });
    const r = await verify(bundleFiles({ log: forgedLog, ...ALL }, forger), { seal: forger, trusted: [gateway.id] });
    expect(r.failure).toMatchObject({ check: 'trust', reason: `key ${forger.id} signed checkpoints and SHA256SUMS but is not among the keys given with --key` });
  });

  test('a checkpoint with a forged signature, and a key file that is not the key its name says', async () => {
    const f = files();
    const cp = log.find((e) => e.type === 'checkpoint')!;
    editLines(f, (lines) => lines.map((l) => {
      const e = JSON.parse(l) as AuditEvent;
      if (e.seq !== cp.seq) return l;
      e.data = { ...checkpointData(forger, { seq: Number(cp.data['seq']), hash: String(cp.data['hash']) }), key_id: gateway.id };
      return canonicalJson(e);
    }));
    expect((await verify(f)).failure).toMatchObject({ check: 'chain', seq: cp.seq, reason: expect.stringMatching(/hash mismatch/) });
    const keys = files();
    keys.set(`keys/${gateway.id}.pem`, Buffer.from(forger.pem));
    expect((await verify(keys)).failure).toMatchObject({ check: 'keys', file: `keys/${gateway.id}.pem`, reason: expect.stringMatching(/holds the key [0-9a-f]{64}, not the one its name says/) });
  });

  test('a file declared larger than its limit is refused from its tar header, before any of it is kept', async () => {
    const header = Buffer.alloc(512);
    header.write('manifest.json', 0);
    header.write('0000644\u0000', 100);
    header.write('0000000\u0000', 108);
    header.write('0000000\u0000', 116);
    header.write(`${(1024 ** 3).toString(8).padStart(11, '0')}\u0000`, 124); // 1 GiB claimed
    header.write('00000000000\u0000', 136);
    header.write('        ', 148);
    header.write('0', 156);
    header.write('ustar\u000000', 257, 'latin1');
    let sum = 0;
    for (const b of header) sum += b;
    header.write(`${sum.toString(8).padStart(6, '0')}\u0000 `, 148, 'latin1');
    const path = join(dir, 'huge-manifest.tar.gz');
    writeFileSync(path, gzipSync(Buffer.concat([header, Buffer.alloc(4096, 0x7b)])));
    const r = await verifyBundle(createReadStream(path));
    expect(r.failure).toMatchObject({ check: 'manifest', file: 'manifest.json', reason: 'manifest.json is larger than 67108864 bytes' });
    expect(r.checks.find((c) => c.name === 'archive')).toMatchObject({ status: 'failed', detail: expect.stringMatching(/ends in the middle of a file/) });
  });

  test('a broken archive stops verification with the archive check failed', async () => {
    const path = join(dir, 'not-a-bundle.tar.gz');
    writeFileSync(path, 'hello');
    const r = await verifyBundle(createReadStream(path));
    expect(r).toMatchObject({ ok: false, failure: { check: 'archive', reason: expect.stringMatching(/not a gzip-compressed archive/) } });
    expect(r.checks.filter((c) => c.status === 'ok')).toEqual([]);
  });
});
