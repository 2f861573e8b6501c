/**
 * Audit bundles for verification tests, made per the bundle format (docs/audit-export.md) by
 * code that is not the exporter: a log of events sealed in a chain with signed checkpoints, the
 * files of a bundle over a range of it (stubs for what a filter leaves out), SHA256SUMS signed
 * with node:crypto, and the archive made by the system's real `tar czf` — an oracle apart from
 * hoop's own reader. Tests change the files between these steps to play the forger.
 */
import { execFileSync } from 'node:child_process';
import { createHash, createPublicKey, generateKeyPairSync, randomUUID, sign, type KeyObject } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { canonicalJson, GENESIS_HASH, payloadSha256, sealEvent } from '../../src/audit/chain.js';
import { checkpointMessage, keyIdOf } from '../../src/audit/checkpoint.js';
import type { Actor, AuditEvent, AuditEventType, EventPayload } from '../../src/audit/event.js';

export interface TestKey {
  privateKey: KeyObject;
  raw: Buffer;
  id: string;
  pem: string;
}

export function newKey(): TestKey {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const raw = (publicKey.export({ type: 'spki', format: 'der' }) as Buffer).subarray(12);
  return { privateKey, raw, id: keyIdOf(raw), pem: publicKey.export({ type: 'spki', format: 'pem' }) as string };
}

export const ALICE: Actor = { subject: 'apikey:alice', email: 'alice@bank.example', groups: ['analysts'], auth_method: 'api_key' };
export const BOB: Actor = { subject: 'apikey:bob', email: null, groups: ['dba'], auth_method: 'api_key' };

/** One event of the log before sealing; `payload` for a query.end's rows. */
export interface LogEntry {
  type: AuditEventType;
  actor: Actor | null;
  time: string;
  data: Record<string, unknown>;
  payload?: EventPayload;
  connection?: string | null;
  session_id?: string | null;
}

/**
 * A log: `sessions` sessions of `statements` statements each (session.start, then query.start
 * and query.end with one row returned, then session.end), alternating alice and bob, one second
 * apart from `start`, with a checkpoint signed by `key` after every `checkpointEvery` events and
 * one at the end.
 */
export function buildLog(o: { key: TestKey; sessions?: number; statements?: number; checkpointEvery?: number; start?: number }): AuditEvent[] {
  let clock = o.start ?? Date.UTC(2026, 2, 3, 9, 0, 0);
  const at = () => new Date((clock += 1000)).toISOString();
  const log: AuditEvent[] = [];
  const every = o.checkpointEvery ?? 4;
  const add = (entry: Omit<LogEntry, 'time'>) => {
    appendEntry(log, { ...entry, time: at() });
    if (log.length % (every + 1) === every) appendCheckpoint(log, o.key, at());
  };
  for (let s = 0; s < (o.sessions ?? 3); s++) {
    const actor = s % 2 === 0 ? ALICE : BOB;
    const base = { actor, connection: 'bank', session_id: randomUUID() };
    add({ ...base, type: 'session.start', data: { user: actor.subject } });
    for (let q = 0; q < (o.statements ?? 2); q++) {
      const query = randomUUID();
      add({ ...base, type: 'query.start', data: { query_id: query, statement: `select balance from accounts where id = ${q}` } });
      add({
        ...base, type: 'query.end',
        data: { query_id: query, outcome: 'ok', rows: 1, bytes: 12, result: { truncated: false, sha256: 'f'.repeat(64) } },
        payload: { 'result.sets': [{ columns: ['balance'], rows: [[`${100 + q}.00 €`]], tag: 'SELECT 1', statement: 0 }] },
      });
    }
    add({ ...base, type: 'session.end', data: { reason: 'client closed' } });
  }
  appendCheckpoint(log, o.key, at());
  return log;
}

export function appendEntry(log: AuditEvent[], entry: LogEntry): AuditEvent {
  const prev = log.at(-1);
  const e = sealEvent(
    { id: randomUUID(), time: entry.time, type: entry.type, actor: entry.actor, source: entry.actor ? { address: '10.0.0.7', application: 'psql' } : null, connection: entry.connection ?? null, session_id: entry.session_id ?? null, data: entry.data, ...(entry.payload ? { payload: entry.payload } : {}) },
    (prev?.seq ?? 0) + 1,
    prev?.hash ?? GENESIS_HASH,
  );
  log.push(e);
  return e;
}

export function checkpointData(key: TestKey, head: { seq: number; hash: string }): Record<string, unknown> {
  return {
    seq: head.seq, hash: head.hash, algorithm: 'Ed25519', key_id: key.id, public_key: key.raw.toString('base64'),
    signature: sign(null, checkpointMessage(head.seq, head.hash), key.privateKey).toString('base64'),
  };
}

export function appendCheckpoint(log: AuditEvent[], key: TestKey, time: string): AuditEvent {
  const head = log.at(-1)!;
  return appendEntry(log, { type: 'checkpoint', actor: { subject: 'system:gateway', email: null, groups: [], auth_method: 'system' }, time, data: checkpointData(key, head) });
}

/** The files of a bundle, in archive order (Map keeps insertion order). */
export type BundleFiles = Map<string, Buffer>;

export interface BundleOptions {
  log: AuditEvent[];
  since: string;
  until: string;
  /** Events of the range to include in full (all when absent); checkpoints always are. */
  filter?: (e: AuditEvent) => boolean;
  filters?: { user: string | null; connection: string | null };
  /** Seqs whose payload the store no longer has (retention). */
  pruned?: number[];
  createdAt?: string;
}

/** Full lines: the event as stored without its payload, in canonical JSON. */
export function fullLine(e: AuditEvent): string {
  const { payload: _payload, ...rest } = e;
  return canonicalJson(rest);
}

export function stubLine(e: Pick<AuditEvent, 'seq' | 'hash' | 'prev_hash'>): string {
  return canonicalJson({ hash: e.hash, omitted: true, prev_hash: e.prev_hash, seq: e.seq });
}

/** The bundle's files before SHA256SUMS: README.txt, manifest.json, events.jsonl, payloads/, keys/, summary.csv, report.html. */
export function bundleFiles(o: BundleOptions, signingKey: TestKey): BundleFiles {
  const since = Date.parse(o.since);
  const until = Date.parse(o.until);
  const inRange = (e: AuditEvent) => Date.parse(e.time) >= since && Date.parse(e.time) < until;
  const range = o.log.filter(inRange);
  const firstRange = range[0]?.seq ?? o.log.find((e) => Date.parse(e.time) >= since)?.seq ?? o.log.length + 1;
  const lastRange = range.at(-1)?.seq ?? firstRange - 1;
  const anchor = o.log.filter((e) => e.type === 'checkpoint' && e.seq < firstRange).at(-1);
  const firstSeq = anchor ? Number(anchor.data['seq']) : 1;
  const end = o.log.find((e) => e.type === 'checkpoint' && e.seq >= lastRange);
  if (!end) throw new Error('the log has no checkpoint after the range');
  const span = o.log.filter((e) => e.seq >= firstSeq && e.seq <= end.seq);
  const pruned = new Set(o.pruned ?? []);
  const full = (e: AuditEvent) => e.type === 'checkpoint' || (inRange(e) && (o.filter ? o.filter(e) : true));
  const lines: string[] = [];
  const payloads: [string, Buffer][] = [];
  const keyIds = new Set<string>([signingKey.id]);
  const keyPems = new Map<string, string>([[signingKey.id, signingKey.pem]]);
  let fullCount = 0;
  for (const e of span) {
    if (!full(e)) {
      lines.push(stubLine(e));
      continue;
    }
    fullCount++;
    lines.push(fullLine(e));
    if (e.payload_sha256 && !pruned.has(e.seq)) payloads.push([`payloads/${e.seq}.json`, Buffer.from(canonicalJson(e.payload))]);
    if (e.type === 'checkpoint') {
      const id = String(e.data['key_id']);
      keyIds.add(id);
      const pem = createPublicKey({ key: Buffer.concat([Buffer.from('302a300506032b6570032100', 'hex'), Buffer.from(String(e.data['public_key']), 'base64')]), format: 'der', type: 'spki' }).export({ type: 'spki', format: 'pem' }) as string;
      keyPems.set(id, pem);
    }
  }
  const createdAt = o.createdAt ?? '2026-03-04T10:00:00.000Z';
  const manifest = {
    format: 'hoop-audit-bundle-v1',
    created_at: createdAt,
    created_by: { subject: 'apikey:carol', email: 'carol@bank.example' },
    gateway_version: '0.0.0-test',
    range: { since: o.since, until: o.until },
    filters: o.filters ?? { user: null, connection: null },
    span: { first_seq: firstSeq, last_seq: end.seq, first_prev_hash: span[0]!.prev_hash },
    counts: { events_full: fullCount, events_omitted: span.length - fullCount, statements: span.filter((e) => full(e) && e.type === 'query.start').length, payloads: payloads.length, payloads_pruned: pruned.size },
    pruned_payloads: [...pruned].sort((a, b) => a - b),
    signing_key_id: signingKey.id,
    key_ids: [...keyIds].sort(),
  };
  const files: BundleFiles = new Map();
  files.set('README.txt', Buffer.from('How to verify this bundle: hoop audit verify bundle.tar.gz --key <key id>\n'));
  files.set('manifest.json', Buffer.from(canonicalJson(manifest)));
  files.set('events.jsonl', Buffer.from(lines.map((l) => `${l}\n`).join('')));
  for (const [name, body] of payloads) files.set(name, body);
  for (const id of [...keyIds].sort()) files.set(`keys/${id}.pem`, Buffer.from(keyPems.get(id)!));
  files.set('summary.csv', Buffer.from('time,user,connection,statement\n'));
  files.set('report.html', Buffer.from('<!doctype html><title>report</title>\n'));
  return files;
}

/** Adds (or replaces) SHA256SUMS over every other file, sorted by path, and its Ed25519 signature. */
export function sealBundle(files: BundleFiles, key: TestKey): BundleFiles {
  files.delete('SHA256SUMS');
  files.delete('SHA256SUMS.sig');
  const names = [...files.keys()].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
  const sums = Buffer.from(names.map((n) => `${createHash('sha256').update(files.get(n)!).digest('hex')}  ${n}\n`).join(''));
  files.set('SHA256SUMS', sums);
  files.set('SHA256SUMS.sig', sign(null, sums, key.privateKey));
  return files;
}

/** Writes the files to a temp dir and archives them, in order, with the system's `tar czf`; returns the archive's path. */
export function archiveBundle(files: BundleFiles, into: string, name = 'bundle.tar.gz'): string {
  const staging = mkdtempSync(join(tmpdir(), 'hoop-bundle-files-'));
  try {
    for (const [path, body] of files) {
      mkdirSync(dirname(join(staging, path)), { recursive: true });
      writeFileSync(join(staging, path), body);
    }
    writeFileSync(join(staging, '.list'), [...files.keys()].join('\n') + '\n');
    const out = join(into, name);
    execFileSync('tar', ['-czf', out, '--format=ustar', '--owner=0', '--group=0', '--numeric-owner', '--mode=0644', '--mtime=@1772618400', '-C', staging, '--verbatim-files-from', '-T', join(staging, '.list')]);
    return out;
  } finally {
    rmSync(staging, { recursive: true, force: true });
  }
}

/** Rewrites the lines of events.jsonl. */
export function editLines(files: BundleFiles, edit: (lines: string[]) => string[]): void {
  const lines = files.get('events.jsonl')!.toString('utf8').split('\n').slice(0, -1);
  files.set('events.jsonl', Buffer.from(edit(lines).map((l) => `${l}\n`).join('')));
}

export function editManifest(files: BundleFiles, edit: (m: Record<string, any>) => void): void {
  const m = JSON.parse(files.get('manifest.json')!.toString('utf8'));
  edit(m);
  files.set('manifest.json', Buffer.from(canonicalJson(m)));
}

export { payloadSha256 };
