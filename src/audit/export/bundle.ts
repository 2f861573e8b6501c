/**
 * The examiner's bundle, format `hoop-audit-bundle-v1` (docs/audit-export.md, "The bundle"): a
 * gzip-compressed ustar archive of
 *
 *   README.txt, manifest.json, events.jsonl, payloads/<seq>.json, keys/<key_id>.pem,
 *   summary.csv, report.html, SHA256SUMS, SHA256SUMS.sig
 *
 * in that order. tar needs each entry's size before its bytes, so `spoolBundle` first writes the
 * entries to a private temporary directory (0700), reading the log page by page and the payloads
 * a few at a time, and checking the chain as it goes (the report says whether it held at export
 * time); `bundleTar` then streams the archive from the spool. Memory holds a page of events, a
 * batch of payloads, a window of recent hashes for the checkpoints, and per payload file a seq
 * and its SHA-256 (SHA256SUMS is signed whole: Ed25519 signs a message, not a stream).
 */
import { createHash, createPublicKey } from 'node:crypto';
import { mkdtemp, open, rm, type FileHandle } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GENESIS_HASH, canonicalJson } from '../chain.js';
import { keyIdOf, verifyCheckpoint } from '../checkpoint.js';
import type { AuditEvent } from '../event.js';
import { ReportBuilder, type ReportInput } from '../report.js';
import { StatementSummarizer, SUMMARY_CSV_HEADER, summaryCsvLine, type StatementRow } from '../summary.js';
import type { Store } from '../../store/store.js';
import { readmeText } from './readme.js';
import { readPages, withPayloads, type PageSource } from './source.js';
import { PayloadSpool, SpoolFile } from './spool.js';
import { inRange, matchesFilters, type ExportQuery, type Span } from './span.js';
import { BLOCK, tarEnd, tarPadding, ustarHeader } from './tar.js';
import { BUNDLE_FORMAT, type Manifest } from '../bundle-format.js';

export { BUNDLE_FORMAT, type Manifest };


/** The gateway's active key: it signs SHA256SUMS. */
export interface BundleSigner {
  readonly keyId: string;
  /** Raw 32-byte Ed25519 public key, base64. */
  readonly publicKey: string;
  signSha256Sums(sums: Buffer): Buffer;
}

export interface BundleRequest {
  query: ExportQuery;
  span: Span;
  /** RFC 3339: the manifest's created_at and every entry's mtime. */
  createdAt: string;
  createdBy: { subject: string; email: string | null };
  gatewayVersion: string;
}


/** What the exporter found checking the span as it read it (shown in report.html). */
export type ExportVerification = ReportInput['verification'] & { payloads_pruned: number };

interface Entry {
  name: string;
  size: number;
  sha256: string;
  /** A spooled file (a slice of it), or bytes in memory. */
  source: { file: string; offset: number } | Buffer;
}

export interface SpooledBundle {
  manifest: Manifest;
  verification: ExportVerification;
  /** Entries in archive order. */
  entries: Entry[];
  /** The uncompressed archive's size. */
  tarSize: number;
  /** Removes the spool; idempotent. */
  remove(): Promise<void>;
}

/** The hashed members of an event in canonical order (chain.ts hashedBody), `hash` placed where a line sorts it. */
const BEFORE_HASH = ['actor', 'connection', 'data'] as const;
const AFTER_HASH = ['id', 'payload_sha256', 'prev_hash', 'seq', 'session_id', 'source', 'time', 'type'] as const;

/**
 * An event's FULL line (canonical JSON of the stored event without `payload`) and the hash
 * recomputed from the same field texts (chain.ts computeHash), walking the event once.
 */
export function fullLineOf(e: AuditEvent): { line: string; hash: string } {
  const member = (k: string) => {
    const v = (e as unknown as Record<string, unknown>)[k];
    return v === undefined ? null : `${JSON.stringify(k)}:${canonicalJson(v)}`;
  };
  const before = BEFORE_HASH.map(member).filter((m): m is string => m !== null);
  const after = AFTER_HASH.map(member).filter((m): m is string => m !== null);
  const hash = createHash('sha256').update(`${e.prev_hash}{${[...before, ...after].join(',')}}`, 'utf8').digest('hex');
  return { line: `{${[...before, `"hash":${JSON.stringify(e.hash)}`, ...after].join(',')}}\n`, hash };
}

/** A STUB line: what verification needs of an event the bundle leaves out. */
export function stubLineOf(e: Pick<AuditEvent, 'hash' | 'prev_hash' | 'seq'>): string {
  return `{"hash":${JSON.stringify(e.hash)},"omitted":true,"prev_hash":${JSON.stringify(e.prev_hash)},"seq":${e.seq}}\n`;
}

/** SPKI PEM of a raw Ed25519 public key (base64). */
export function publicKeyPem(rawBase64: string): string {
  const x = Buffer.from(rawBase64, 'base64').toString('base64url');
  return createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x }, format: 'jwk' }).export({ type: 'spki', format: 'pem' }) as string;
}

/** How far back a checkpoint's head may lie and still be checked at export (verify.ts's window). */
const HASH_WINDOW = 100_000;

/** Checks the span as it is read: links, recomputed hashes, checkpoint signatures and heads, payloads. */
class SpanCheck {
  private prev: { seq: number; hash: string } | null = null;
  private readonly recent = new Map<number, string>();
  events = 0;
  checkpoints = 0;
  payloadsPruned = 0;
  readonly keyIds: string[] = [];
  failure: { seq: number; reason: string } | null = null;

  constructor(private readonly span: Span) {}

  private fail(seq: number, reason: string): void {
    this.failure ??= { seq, reason };
  }

  event(e: AuditEvent, recomputed: string): void {
    this.events++;
    if (this.prev === null) {
      if (e.seq !== this.span.first_seq) this.fail(e.seq, `the span starts at seq ${e.seq}, not ${this.span.first_seq} (events missing)`);
      if (e.seq === 1 && e.prev_hash !== GENESIS_HASH) this.fail(e.seq, 'prev link broken: the first event does not link to genesis');
    } else {
      if (e.seq !== this.prev.seq + 1) this.fail(e.seq, `seq gap: expected ${this.prev.seq + 1}, found ${e.seq} (events missing)`);
      if (e.prev_hash !== this.prev.hash) this.fail(e.seq, `prev link broken: prev_hash does not equal the hash of seq ${this.prev.seq}`);
    }
    if (recomputed !== e.hash) this.fail(e.seq, 'hash mismatch: the event content does not match its hash');
    if (e.type === 'checkpoint') this.checkpoint(e);
    this.prev = { seq: e.seq, hash: e.hash };
    this.recent.set(e.seq, e.hash);
    this.recent.delete(e.seq - HASH_WINDOW);
  }

  private checkpoint(e: AuditEvent): void {
    const v = verifyCheckpoint(e.data);
    if (!v.ok) return this.fail(e.seq, v.reason);
    const vouched = this.recent.get(v.data.seq);
    if (vouched === undefined) {
      if (v.data.seq >= this.span.first_seq) this.fail(e.seq, `checkpoint vouches for seq ${v.data.seq}, more than ${HASH_WINDOW} events earlier`);
      return; // a head before the span: nothing in it to compare with
    }
    if (vouched !== v.data.hash) return this.fail(e.seq, `checkpoint vouches for a different hash at seq ${v.data.seq}: the log was rewritten after it was signed`);
    this.checkpoints++;
    if (!this.keyIds.includes(v.data.key_id)) this.keyIds.push(v.data.key_id);
  }

  /** `sha256`: of the payload's canonical JSON; null when it was pruned. */
  payload(e: AuditEvent, sha256: string | null): void {
    if (sha256 === null) {
      this.payloadsPruned++;
      return;
    }
    if (sha256 !== e.payload_sha256) this.fail(e.seq, 'payload mismatch: the stored payload does not match its payload_sha256');
  }

  finish(): ExportVerification {
    if (this.prev && this.prev.seq !== this.span.last_seq) this.fail(this.prev.seq + 1, `events missing: the span ends at seq ${this.prev.seq}, not ${this.span.last_seq}`);
    return {
      ok: this.failure === null, events: this.events, first_seq: this.events ? this.span.first_seq : null, last_seq: this.prev?.seq ?? null,
      checkpoints: this.checkpoints, key_ids: this.keyIds, failure: this.failure, payloads_pruned: this.payloadsPruned,
    };
  }
}

/** `payloads/<seq>.json` names in byte order, as SHA256SUMS lists them ("payloads/10.json" < "payloads/9.json"). */
function byteOrder(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * Writes the bundle's entries to a new private (0700) spool directory in the OS temp dir. The
 * directory is removed on failure (and by `remove()` once the archive is sent). `signal` aborts it.
 */
export async function spoolBundle(
  store: PageSource & Pick<Store, 'readPayloads'>,
  signer: BundleSigner,
  req: BundleRequest,
  o: { signal?: AbortSignal } = {},
): Promise<SpooledBundle> {
  const dir = await mkdtemp(join(tmpdir(), 'hoop-export-'));
  const remove = () => rm(dir, { recursive: true, force: true });
  try {
    return await spoolInto(dir, store, signer, req, o.signal, remove);
  } catch (err) {
    await remove();
    throw err;
  }
}

async function spoolInto(dir: string, store: PageSource & Pick<Store, 'readPayloads'>, signer: BundleSigner, req: BundleRequest, signal: AbortSignal | undefined, remove: () => Promise<void>): Promise<SpooledBundle> {
  const { query: q, span } = req;
  const events = await SpoolFile.create(join(dir, 'events.jsonl'));
  const payloads = await PayloadSpool.create(join(dir, 'payloads.data'));
  const summary = await SpoolFile.create(join(dir, 'summary.csv'));
  const keys = new Map<string, string>([[signer.keyId, signer.publicKey]]);
  const check = new SpanCheck(span);
  const summarizer = new StatementSummarizer();
  const report = new ReportBuilder();
  let full = 0;
  let omitted = 0;
  let statements = 0;
  let firstPrevHash: string | null = null;
  const addRows = async (rows: StatementRow[]) => {
    for (const row of rows) {
      statements++;
      report.addStatement(row);
      await summary.write(summaryCsvLine(row));
    }
  };
  const isFull = (e: AuditEvent) => e.type === 'checkpoint' || (inRange(e, q) && matchesFilters(e, q));

  await summary.write(SUMMARY_CSV_HEADER);
  for await (const page of readPages(store, { afterSeq: span.first_seq - 1, beforeSeq: span.last_seq + 1 }, signal)) {
    for await (const { event: e, payload } of withPayloads(store, page, isFull)) {
      firstPrevHash ??= e.prev_hash;
      const { line, hash } = fullLineOf(e);
      check.event(e, hash);
      if (!isFull(e)) {
        omitted++;
        await events.write(stubLineOf(e));
        continue;
      }
      full++;
      await events.write(line);
      if (e.type === 'checkpoint') {
        const d = e.data as { key_id?: unknown; public_key?: unknown };
        if (typeof d.public_key === 'string' && Buffer.from(d.public_key, 'base64').length === 32) {
          keys.set(keyIdOf(Buffer.from(d.public_key, 'base64')), d.public_key);
        }
      } else {
        report.addEvent(e);
        await addRows(summarizer.add(e));
      }
      if (e.payload_sha256 !== undefined) check.payload(e, await payloads.add(e.seq, payload ?? null));
    }
  }
  await addRows(summarizer.finish());

  const eventsSha = await events.close();
  await payloads.close();
  const summarySha = await summary.close();
  const verification = check.finish();

  const keyIds = [...keys.keys()].sort();
  const manifest: Manifest = {
    format: BUNDLE_FORMAT,
    created_at: req.createdAt,
    created_by: req.createdBy,
    gateway_version: req.gatewayVersion,
    range: { since: q.since, until: q.until },
    filters: { user: q.user, connection: q.connection },
    span: { first_seq: span.first_seq, last_seq: span.last_seq, first_prev_hash: firstPrevHash ?? GENESIS_HASH },
    counts: { events_full: full, events_omitted: omitted, statements, payloads: payloads.seqs.length, payloads_pruned: payloads.pruned.length },
    pruned_payloads: payloads.pruned.toArray(),
    signing_key_id: signer.keyId,
    key_ids: keyIds,
  };

  const html = report.render(
    {
      range: { since: q.since, until: q.until },
      filters: { ...(q.user !== null ? { user: q.user } : {}), ...(q.connection !== null ? { connection: q.connection } : {}) },
      generated_at: req.createdAt,
      generated_by: req.createdBy.email ?? req.createdBy.subject,
      gateway_version: req.gatewayVersion,
      verification,
    },
    { result: (row) => (row.end_seq !== null && payloads.seqs.has(row.end_seq) ? `payloads/${row.end_seq}.json` : null) },
  );

  const memory = (name: string, data: Buffer | string): Entry => {
    const b = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
    return { name, size: b.length, sha256: createHash('sha256').update(b).digest('hex'), source: b };
  };
  const entries: Entry[] = [
    memory('README.txt', readmeText(manifest)),
    memory('manifest.json', `${canonicalJson(manifest)}\n`),
    { name: 'events.jsonl', size: events.size, sha256: eventsSha, source: { file: events.path, offset: 0 } },
  ];
  entries.push(...payloads.entries());
  for (const id of keyIds) entries.push(memory(`keys/${id}.pem`, publicKeyPem(keys.get(id)!)));
  entries.push({ name: 'summary.csv', size: summary.size, sha256: summarySha, source: { file: summary.path, offset: 0 } });
  entries.push(memory('report.html', html));
  const sums = Buffer.from(
    [...entries].sort((a, b) => byteOrder(a.name, b.name)).map((e) => `${e.sha256}  ${e.name}\n`).join(''),
    'utf8',
  );
  entries.push(memory('SHA256SUMS', sums));
  entries.push(memory('SHA256SUMS.sig', signer.signSha256Sums(sums)));
  const tarSize = entries.reduce((n, e) => n + BLOCK + e.size + tarPadding(e.size).length, 2 * BLOCK);
  return { manifest, verification, entries, tarSize, remove };
}

/** The archive's bytes, entry by entry, read from the spool in 1 MiB chunks. */
export async function* bundleTar(bundle: SpooledBundle, signal?: AbortSignal): AsyncGenerator<Buffer> {
  const mtime = Math.floor(Date.parse(bundle.manifest.created_at) / 1000);
  const files = new Map<string, FileHandle>();
  try {
    for (const entry of bundle.entries) {
      signal?.throwIfAborted();
      yield ustarHeader(entry.name, entry.size, mtime);
      if (Buffer.isBuffer(entry.source)) {
        yield entry.source;
      } else {
        let fh = files.get(entry.source.file);
        if (!fh) files.set(entry.source.file, (fh = await open(entry.source.file, 'r')));
        for (let done = 0; done < entry.size; ) {
          const n = Math.min(1 << 20, entry.size - done);
          const buf = Buffer.allocUnsafe(n);
          const { bytesRead } = await fh.read(buf, 0, n, entry.source.offset + done);
          if (bytesRead !== n) throw new Error(`export spool: ${entry.name} is shorter than it was written`);
          done += n;
          yield buf;
        }
      }
      const pad = tarPadding(entry.size);
      if (pad.length) yield pad;
    }
    yield tarEnd();
  } finally {
    for (const fh of files.values()) await fh.close().catch(() => {});
  }
}
