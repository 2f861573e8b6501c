/**
 * Offline verification of an audit bundle (`hoop audit verify BUNDLE`; the format is
 * docs/audit-verify.md, "The bundle"), while it streams: memory does not grow with events.jsonl.
 *
 * The archive's order makes that possible: manifest.json (the span, the pruned payloads) comes
 * before events.jsonl, which is checked line by line as it is read — every link, every full
 * line's hash, every checkpoint's signature and the head it names (kept for the last
 * CHECKPOINT_WINDOW lines) — and the payload files come after it, each hashed as it streams and
 * compared with the payload_sha256 its event carries (kept per full event with a payload: 41
 * bytes each). SHA256SUMS and its signature come last; every file's SHA-256 is computed on the
 * way and compared then.
 *
 * Nothing here trusts the bundle: a check that fails is recorded with the first event (seq, id)
 * or file it concerns, and the others still run, so the report says which checks held. Whether
 * the keys that signed are the gateway's is the examiner's call: `trustedKeys` (hex key ids).
 */
import { createHash, createPublicKey, verify, type Hash, type KeyObject } from 'node:crypto';
import { z } from 'zod';
import { computeHash, GENESIS_HASH } from './chain.js';
import { keyIdOf, verifyCheckpoint } from './checkpoint.js';
import type { AuditEvent } from './event.js';
import { readTarGz, BundleFormatError, type TarEntry, type TarSink } from './bundle-reader.js';
import { CHECKPOINT_WINDOW } from './verify.js';

export const BUNDLE_FORMAT = 'hoop-audit-bundle-v1';

/** The checks a report lists, in the order they are printed. */
export const BUNDLE_CHECKS = ['archive', 'manifest', 'SHA256SUMS', 'signature', 'chain', 'payloads', 'checkpoints', 'anchors', 'keys', 'trust'] as const;
export type BundleCheckName = (typeof BUNDLE_CHECKS)[number];

export interface BundleCheck {
  name: BundleCheckName;
  /** not_checked: an earlier failure left nothing to check it on (or, for trust, no --key was given). */
  status: 'ok' | 'failed' | 'not_checked';
  detail: string;
}

export interface BundleFailure {
  check: BundleCheckName;
  /** The event the failure concerns, when it concerns one; `id` when its line was readable. */
  seq: number | null;
  id: string | null;
  file: string | null;
  reason: string;
}

export interface BundleKeyUse {
  key_id: string;
  /** What it signed: checkpoints in events.jsonl, and/or SHA256SUMS. */
  signed: ('checkpoints' | 'SHA256SUMS')[];
  checkpoints: number;
  /** Among the keys given with --key; null when none were given. */
  trusted: boolean | null;
}

export interface BundleReport {
  ok: boolean;
  format: string | null;
  created_at: string | null;
  created_by: { subject: string; email: string | null } | null;
  gateway_version: string | null;
  range: { since: string; until: string } | null;
  filters: { user: string | null; connection: string | null } | null;
  span: { first_seq: number; last_seq: number } | null;
  files: number;
  /** Lines of events.jsonl checked (full and omitted). */
  events: number;
  events_full: number;
  events_omitted: number;
  checkpoints: number;
  payloads_checked: number;
  payloads_pruned: number;
  /** Times of the first and last full event. */
  time_range: { first: string; last: string } | null;
  keys: BundleKeyUse[];
  checks: BundleCheck[];
  /** The first failure found, in archive order; null when ok. */
  failure: BundleFailure | null;
}

export interface BundleVerifyOptions {
  /** Hex key ids the examiner trusts; every key that signed must be one of them. Absent: not checked. */
  trustedKeys?: readonly string[];
}

/** Longest line of events.jsonl taken (one event's canonical JSON; its payload is apart). */
export const MAX_EVENT_LINE_BYTES = 256 * 1024 * 1024;
const MAX_MANIFEST_BYTES = 64 * 1024 * 1024;
const MAX_KEY_FILE_BYTES = 16 * 1024;
/** SHA256SUMS is held whole for its signature: about 100 bytes a file. */
const MAX_SUMS_BYTES = 512 * 1024 * 1024;
const MAX_KEYS = 1000;

const HEX64 = /^[0-9a-f]{64}$/;
const PAYLOAD_NAME = /^payloads\/([1-9][0-9]{0,15})\.json$/;
const KEY_NAME = /^keys\/([0-9a-f]{64})\.pem$/;
const PLAIN_FILES = new Set(['README.txt', 'summary.csv', 'report.html']);
const REQUIRED_FILES = ['README.txt', 'manifest.json', 'events.jsonl', 'summary.csv', 'report.html', 'SHA256SUMS', 'SHA256SUMS.sig'];
const FULL_FIELDS = new Set(['seq', 'id', 'time', 'type', 'actor', 'source', 'connection', 'session_id', 'data', 'payload_sha256', 'prev_hash', 'hash']);
const STUB_FIELDS = ['hash', 'omitted', 'prev_hash', 'seq'];

const hash64 = z.string().regex(HEX64, 'must be 64 lowercase hex digits');
const seqSchema = z.number().int().min(1).max(Number.MAX_SAFE_INTEGER);
const count = z.number().int().min(0);
const time = z.string().refine((s) => /^\d{4}-\d{2}-\d{2}T/.test(s) && !Number.isNaN(Date.parse(s)), 'must be an RFC 3339 time');
const manifestSchema = z.object({
  format: z.literal(BUNDLE_FORMAT),
  created_at: time,
  created_by: z.object({ subject: z.string(), email: z.string().nullable() }),
  gateway_version: z.string(),
  range: z.object({ since: time, until: time }),
  filters: z.object({ user: z.string().nullable(), connection: z.string().nullable() }),
  span: z.object({ first_seq: seqSchema, last_seq: seqSchema, first_prev_hash: hash64 }),
  counts: z.object({ events_full: count, events_omitted: count, statements: count, payloads: count, payloads_pruned: count }),
  pruned_payloads: z.array(seqSchema),
  signing_key_id: hash64,
  key_ids: z.array(hash64),
});
type Manifest = z.infer<typeof manifestSchema>;

/** Verifies the gzip-compressed bundle read from `source` (a file stream, an HTTP body). */
export async function verifyBundle(source: AsyncIterable<Buffer | Uint8Array | string> | NodeJS.ReadableStream, options: BundleVerifyOptions = {}): Promise<BundleReport> {
  const v = new BundleVerifier(options);
  try {
    await readTarGz(source, v);
  } catch (err) {
    if (!(err instanceof BundleFormatError)) throw err;
    v.archiveFailed(err.message);
  }
  return v.finish();
}

/** Hashes of the last CHECKPOINT_WINDOW lines, by seq, for the heads checkpoints name. */
class RecentHashes {
  private readonly seqs = new Float64Array(CHECKPOINT_WINDOW);
  private readonly hashes: string[] = new Array<string>(CHECKPOINT_WINDOW);

  set(seq: number, hash: string): void {
    const i = seq % CHECKPOINT_WINDOW;
    this.seqs[i] = seq;
    this.hashes[i] = hash;
  }

  get(seq: number): string | undefined {
    const i = seq % CHECKPOINT_WINDOW;
    return this.seqs[i] === seq ? this.hashes[i] : undefined;
  }
}

const EXPECTED = 0;
const PRESENT = 1;
const MISMATCH = 2;
const PRUNED = 3;

/** Full events with a payload_sha256, in seq order: their hash and what became of their file. */
class PayloadTable {
  private seqs = new Float64Array(1024);
  private hashes = new Uint8Array(1024 * 32);
  private states = new Uint8Array(1024);
  length = 0;

  add(seq: number, sha256: string, state: number): void {
    if (this.length === this.seqs.length) {
      const n = this.length * 2;
      const seqs = new Float64Array(n);
      seqs.set(this.seqs);
      this.seqs = seqs;
      this.hashes = grown(this.hashes, n * 32);
      this.states = grown(this.states, n);
    }
    this.seqs[this.length] = seq;
    this.hashes.set(Buffer.from(sha256, 'hex'), this.length * 32);
    this.states[this.length] = state;
    this.length++;
  }

  find(seq: number): number {
    let lo = 0;
    let hi = this.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      const s = this.seqs[mid]!;
      if (s === seq) return mid;
      if (s < seq) lo = mid + 1;
      else hi = mid - 1;
    }
    return -1;
  }

  seq(i: number): number {
    return this.seqs[i]!;
  }

  sha256(i: number): string {
    return Buffer.from(this.hashes.buffer, this.hashes.byteOffset + i * 32, 32).toString('hex');
  }

  state(i: number): number {
    return this.states[i]!;
  }

  setState(i: number, state: number): void {
    this.states[i] = state;
  }
}

function grown(a: Uint8Array, n: number): Uint8Array<ArrayBuffer> {
  const b = new Uint8Array(n);
  b.set(a);
  return b;
}

/** What the entry being read is, and what its bytes go to. */
type Current =
  | { kind: 'buffer'; name: string; hash: Hash; body: Buffer; bytes: number; overflow: boolean }
  | { kind: 'events'; name: string; hash: Hash }
  | { kind: 'payload'; name: string; hash: Hash; index: number }
  | { kind: 'plain'; name: string; hash: Hash };

export class BundleVerifier implements TarSink {
  private readonly failures = new Map<BundleCheckName, BundleFailure>();
  private first: BundleFailure | null = null;
  private archiveBroken = false;
  private current: Current | null = null;
  private files = 0;
  /** SHA-256 of every file but the payloads (their hashes are in the payload table). */
  private readonly fileHashes = new Map<string, string>();
  private readonly buffered = new Map<string, Buffer>();

  private manifest: Manifest | null = null;
  private manifestBad = false;
  private pruned = new Set<number>();

  // events.jsonl
  private eventsState: 'before' | 'reading' | 'done' = 'before';
  private linePieces: Buffer[] = [];
  private lineBytes = 0;
  private chainBroken = false;
  private lines = 0;
  private full = 0;
  private omitted = 0;
  private firstSeq: number | null = null;
  private lastSeq: number | null = null;
  private prevHash: string | null = null;
  private firstPrevHash: string | null = null;
  private lastType: string | null = null;
  private lastWasFull = false;
  private timeFirst: string | null = null;
  private timeLast: string | null = null;
  private readonly recent = new RecentHashes();
  private readonly payloads = new PayloadTable();
  private payloadFiles = 0;
  private payloadsChecked = 0;

  // checkpoints
  private checkpoints = 0;
  private checkpointsBefore = 0;
  private startAnchor: number | null = null;
  private readonly cpKeys = new Map<string, { publicKey: string; checkpoints: number }>();

  private readonly trusted: Set<string> | null;
  private rangeIso: { since: string; until: string } | null = null;

  constructor(options: BundleVerifyOptions = {}) {
    this.trusted = options.trustedKeys ? new Set(options.trustedKeys.map((k) => k.toLowerCase())) : null;
  }

  // ---- TarSink ----------------------------------------------------------------------------

  entry(e: TarEntry): void {
    this.files++;
    const hash = createHash('sha256');
    const name = e.name;
    if (name === 'manifest.json') {
      if (this.eventsState !== 'before') this.fail('archive', { file: name, reason: 'manifest.json comes after events.jsonl; a bundle puts it first' });
      this.current = this.bufferOf(name, e.size, hash, MAX_MANIFEST_BYTES);
    } else if (name === 'events.jsonl') {
      if (!this.manifest && !this.manifestBad) this.fail('archive', { file: name, reason: 'events.jsonl comes before manifest.json; a bundle puts the manifest first' });
      this.eventsState = 'reading';
      this.current = { kind: 'events', name, hash };
    } else if (PAYLOAD_NAME.test(name)) {
      this.current = { kind: 'payload', name, hash, index: this.payloadEntry(name) };
    } else if (KEY_NAME.test(name)) {
      if ([...this.buffered.keys()].filter((n) => n.startsWith('keys/')).length >= MAX_KEYS) this.fail('archive', { file: name, reason: `more than ${MAX_KEYS} key files` });
      this.current = this.bufferOf(name, e.size, hash, MAX_KEY_FILE_BYTES);
    } else if (name === 'SHA256SUMS') {
      this.current = this.bufferOf(name, e.size, hash, MAX_SUMS_BYTES);
    } else if (name === 'SHA256SUMS.sig') {
      this.current = this.bufferOf(name, e.size, hash, 1024);
    } else {
      if (!PLAIN_FILES.has(name)) this.fail('archive', { file: name, reason: `unexpected file ${name} (not part of the bundle format)` });
      this.current = { kind: 'plain', name, hash };
    }
  }

  data(chunk: Buffer): void {
    const c = this.current!;
    c.hash.update(chunk);
    if (c.kind === 'buffer') {
      if (c.overflow) return;
      chunk.copy(c.body, c.bytes); // the tar header gave the size: never more than that arrives
      c.bytes += chunk.length;
    } else if (c.kind === 'events') this.eventBytes(chunk);
  }

  endEntry(): void {
    const c = this.current!;
    this.current = null;
    const digest = c.hash.digest('hex');
    if (c.kind === 'payload') return this.payloadEnd(c, digest);
    this.fileHashes.set(c.name, digest);
    if (c.kind === 'events') return this.eventsEnd();
    if (c.kind === 'buffer' && !c.overflow) {
      const body = c.body;
      if (c.name === 'manifest.json') this.takeManifest(body);
      else this.buffered.set(c.name, body);
    }
  }

  archiveFailed(reason: string): void {
    this.archiveBroken = true;
    this.fail('archive', { file: this.current?.name ?? null, reason });
  }

  // ---- manifest ---------------------------------------------------------------------------

  /** A file read whole (small ones, and SHA256SUMS for its signature), refused past `max` before any byte is kept. */
  private bufferOf(name: string, size: number, hash: Hash, max: number): Current {
    if (size > max) {
      this.fail(name === 'SHA256SUMS' || name === 'SHA256SUMS.sig' ? 'SHA256SUMS' : name === 'manifest.json' ? 'manifest' : 'keys', { file: name, reason: `${name} is larger than ${max} bytes` });
      return { kind: 'buffer', name, hash, body: Buffer.alloc(0), bytes: 0, overflow: true };
    }
    return { kind: 'buffer', name, hash, body: Buffer.allocUnsafe(size), bytes: 0, overflow: false };
  }

  private takeManifest(body: Buffer): void {
    let raw: unknown;
    try {
      raw = JSON.parse(body.toString('utf8'));
    } catch {
      this.manifestBad = true;
      return this.fail('manifest', { file: 'manifest.json', reason: 'manifest.json is not JSON' });
    }
    const parsed = manifestSchema.safeParse(raw);
    if (!parsed.success) {
      this.manifestBad = true;
      const issue = parsed.error.issues[0]!;
      return this.fail('manifest', { file: 'manifest.json', reason: `manifest.json: ${issue.path.join('.') || '(root)'}: ${issue.message}` });
    }
    const m = parsed.data;
    if (m.span.last_seq < m.span.first_seq) {
      this.manifestBad = true;
      return this.fail('manifest', { file: 'manifest.json', reason: 'manifest.json: span.last_seq is before span.first_seq' });
    }
    if (Date.parse(m.range.until) < Date.parse(m.range.since)) {
      this.manifestBad = true;
      return this.fail('manifest', { file: 'manifest.json', reason: 'manifest.json: range.until is before range.since' });
    }
    this.manifest = m;
    this.pruned = new Set(m.pruned_payloads);
  }

  // ---- events.jsonl -----------------------------------------------------------------------

  private eventBytes(chunk: Buffer): void {
    let start = 0;
    for (;;) {
      const nl = chunk.indexOf(10, start);
      if (nl === -1) break;
      const piece = chunk.subarray(start, nl);
      if (this.linePieces.length === 0) this.line(piece);
      else {
        this.linePieces.push(piece);
        this.line(Buffer.concat(this.linePieces));
        this.linePieces = [];
        this.lineBytes = 0;
      }
      start = nl + 1;
    }
    if (start < chunk.length) {
      this.lineBytes += chunk.length - start;
      if (this.lineBytes > MAX_EVENT_LINE_BYTES) {
        if (!this.chainBroken) this.chainFail(this.nextSeq(), null, `line ${this.lines + 1} of events.jsonl is longer than ${MAX_EVENT_LINE_BYTES} bytes`);
        this.linePieces = [];
        this.lineBytes = 0;
      } else if (!this.chainBroken) this.linePieces.push(Buffer.from(chunk.subarray(start)));
    }
  }

  private nextSeq(): number | null {
    return this.lastSeq !== null ? this.lastSeq + 1 : (this.manifest?.span.first_seq ?? null);
  }

  private line(bytes: Buffer): void {
    this.lines++;
    if (this.chainBroken) return;
    let v: unknown;
    const text = bytes.toString('utf8');
    try {
      v = JSON.parse(text);
    } catch {
      return this.chainFail(this.nextSeq(), null, `line ${this.lines} of events.jsonl is not JSON`);
    }
    if (v === null || typeof v !== 'object' || Array.isArray(v)) return this.chainFail(this.nextSeq(), null, `line ${this.lines} of events.jsonl is not a JSON object`);
    const o = v as Record<string, unknown>;
    if (o['omitted'] !== undefined) return this.stubLine(o);
    this.fullLine(o, text);
  }

  /** Checks a line's seq and prev_hash against the line before; false (and recorded) when they do not hold. */
  private link(seq: unknown, prevHash: unknown, id: string | null): seq is number {
    if (typeof seq !== 'number' || !Number.isSafeInteger(seq) || seq < 1) {
      this.chainFail(this.nextSeq(), id, `line ${this.lines} of events.jsonl: seq is not a positive integer`);
      return false;
    }
    if (typeof prevHash !== 'string' || !HEX64.test(prevHash)) {
      this.chainFail(seq, id, 'prev_hash is not 64 lowercase hex digits');
      return false;
    }
    if (this.lastSeq === null) {
      const m = this.manifest;
      if (m && seq !== m.span.first_seq) {
        this.chainFail(seq, id, `events.jsonl starts at seq ${seq}, the manifest's span at seq ${m.span.first_seq}`);
        return false;
      }
      if (m && prevHash !== m.span.first_prev_hash) {
        this.chainFail(seq, id, "prev link broken: the first line's prev_hash is not the manifest's span.first_prev_hash");
        return false;
      }
      this.firstSeq = seq;
      this.firstPrevHash = prevHash;
      return true;
    }
    if (seq !== this.lastSeq + 1) {
      this.chainFail(seq, id, seq <= this.lastSeq ? `seq out of order: ${seq} follows ${this.lastSeq}` : `seq gap: expected ${this.lastSeq + 1}, found ${seq} (events missing)`);
      return false;
    }
    if (prevHash !== this.prevHash) {
      this.chainFail(seq, id, `prev link broken: prev_hash does not equal the hash of seq ${this.lastSeq}${this.lastWasFull ? '' : ' (an omitted event)'}`);
      return false;
    }
    return true;
  }

  private stubLine(o: Record<string, unknown>): void {
    const keys = Object.keys(o).sort();
    const seq = o['seq'];
    if (o['omitted'] !== true || keys.length !== STUB_FIELDS.length || keys.some((k, i) => k !== STUB_FIELDS[i])) {
      return this.chainFail(typeof seq === 'number' ? seq : this.nextSeq(), null, `line ${this.lines} of events.jsonl is neither an event nor a stub {"hash","omitted":true,"prev_hash","seq"}`);
    }
    if (!this.link(seq, o['prev_hash'], null)) return;
    const hash = o['hash'];
    if (typeof hash !== 'string' || !HEX64.test(hash)) return this.chainFail(seq, null, "the stub's hash is not 64 lowercase hex digits");
    this.omitted++;
    this.accept(seq, hash, null, false);
  }

  private fullLine(o: Record<string, unknown>, text: string): void {
    const id = typeof o['id'] === 'string' ? o['id'].slice(0, 64) : null;
    for (const k in o) {
      if (!FULL_FIELDS.has(k)) {
        return this.chainFail(typeof o['seq'] === 'number' ? o['seq'] : this.nextSeq(), id, k === 'payload' ? 'a full line carries its payload inline; a bundle keeps it in payloads/<seq>.json' : `unexpected field ${JSON.stringify(k.slice(0, 40))} on an event line`);
      }
    }
    const seq = o['seq'];
    if (!this.link(seq, o['prev_hash'], id)) return;
    const shape = eventShape(o);
    if (shape) return this.chainFail(seq, id, shape);
    const e = o as unknown as AuditEvent;
    if (!lineHashes(text, e)) {
      let recomputed: string;
      try {
        recomputed = computeHash(e);
      } catch (err) {
        return this.chainFail(seq, id, `event cannot be hashed: ${(err as Error).message}`);
      }
      if (recomputed !== e.hash) return this.chainFail(seq, id, 'hash mismatch: the event content does not match its hash');
    }
    this.full++;
    this.timeFirst ??= e.time;
    this.timeLast = e.time;
    if (e.type !== 'checkpoint') this.checkInRange(e);
    if (e.payload_sha256 !== undefined) this.payloads.add(seq, e.payload_sha256, this.pruned.has(seq) ? PRUNED : EXPECTED);
    if (e.type === 'checkpoint') this.checkpoint(e);
    this.accept(seq, e.hash, e.type, true);
  }

  private accept(seq: number, hash: string, type: string | null, full: boolean): void {
    this.recent.set(seq, hash);
    this.lastSeq = seq;
    this.prevHash = hash;
    this.lastType = type;
    this.lastWasFull = full;
  }

  private checkInRange(e: AuditEvent): void {
    const m = this.manifest;
    if (!m || this.failures.has('manifest')) return;
    // Event times are RFC 3339 UTC with milliseconds: compared as text with the range in that form.
    const t = EVENT_TIME.test(e.time) ? e.time : new Date(Date.parse(e.time)).toISOString();
    this.rangeIso ??= { since: new Date(Date.parse(m.range.since)).toISOString(), until: new Date(Date.parse(m.range.until)).toISOString() };
    if (t < this.rangeIso.since || t >= this.rangeIso.until) {
      this.fail('manifest', { seq: e.seq, id: e.id, file: 'events.jsonl', reason: `seq ${e.seq} (${e.time}) is a full event outside the manifest's range ${m.range.since} .. ${m.range.until}` });
    }
  }

  private checkpoint(e: AuditEvent): void {
    const verdict = verifyCheckpoint(e.data);
    if (!verdict.ok) return this.fail('checkpoints', { seq: e.seq, id: e.id, file: 'events.jsonl', reason: verdict.reason });
    const { seq, hash, key_id, public_key } = verdict.data;
    if (seq >= e.seq) return this.fail('checkpoints', { seq: e.seq, id: e.id, file: 'events.jsonl', reason: `checkpoint vouches for seq ${seq}, which is not before it` });
    const known = this.cpKeys.get(key_id);
    if (known) known.checkpoints++;
    else this.cpKeys.set(key_id, { publicKey: public_key, checkpoints: 1 });
    this.checkpoints++;
    if (this.firstSeq === null || seq < this.firstSeq) {
      this.checkpointsBefore++; // names a head before the span: its signature holds, its head is not here to compare
      return;
    }
    const actual = this.recent.get(seq);
    if (actual === undefined) return this.fail('checkpoints', { seq: e.seq, id: e.id, file: 'events.jsonl', reason: `checkpoint vouches for seq ${seq}, more than ${CHECKPOINT_WINDOW} events earlier` });
    if (actual !== hash) return this.fail('checkpoints', { seq: e.seq, id: e.id, file: 'events.jsonl', reason: `checkpoint vouches for a different hash at seq ${seq}: the log was rewritten after it was signed` });
    if (seq === this.firstSeq) this.startAnchor ??= e.seq;
  }

  private eventsEnd(): void {
    this.eventsState = 'done';
    if (this.lineBytes > 0 || this.linePieces.length > 0) {
      if (!this.chainBroken) this.chainFail(this.nextSeq(), null, 'the last line of events.jsonl has no line end (truncated)');
      this.linePieces = [];
    }
    if (this.lines === 0) this.chainFail(this.manifest?.span.first_seq ?? null, null, 'events.jsonl is empty');
  }

  // ---- payloads ---------------------------------------------------------------------------

  private payloadEntry(name: string): number {
    const seq = Number(PAYLOAD_NAME.exec(name)![1]);
    if (this.eventsState !== 'done') {
      this.fail('archive', { seq, file: name, reason: `${name} comes before the end of events.jsonl; a bundle puts payloads after it` });
      return -1;
    }
    this.payloadFiles++;
    const i = this.payloads.find(seq);
    if (i === -1) {
      // An extra file: unless the chain broke first (and stopped collecting), it belongs to no event.
      if (!this.chainBroken || (this.lastSeq !== null && seq <= this.lastSeq)) {
        this.fail('payloads', { seq, file: name, reason: `${name} belongs to no full event with a payload_sha256 (an extra file)` });
      }
      return -1;
    }
    if (this.payloads.state(i) === PRUNED) {
      this.fail('payloads', { seq, file: name, reason: `${name} is present, but manifest.pruned_payloads lists seq ${seq} as pruned` });
      return -1;
    }
    return i;
  }

  private payloadEnd(c: Extract<Current, { kind: 'payload' }>, digest: string): void {
    if (c.index === -1) return;
    const seq = this.payloads.seq(c.index);
    if (digest === this.payloads.sha256(c.index)) {
      this.payloads.setState(c.index, PRESENT);
      this.payloadsChecked++;
    } else {
      this.payloads.setState(c.index, MISMATCH);
      this.fail('payloads', { seq, file: c.name, reason: `payload mismatch: ${c.name} does not match the payload_sha256 of seq ${seq}` });
    }
  }

  // ---- the end ----------------------------------------------------------------------------

  finish(): BundleReport {
    const m = this.manifest;
    if (!this.archiveBroken) {
      for (const name of REQUIRED_FILES) {
        if (!this.fileHashes.has(name) && !(name === 'manifest.json' && this.manifestBad)) {
          this.fail(name === 'SHA256SUMS' || name === 'SHA256SUMS.sig' ? 'SHA256SUMS' : name === 'manifest.json' ? 'manifest' : 'archive', { file: name, reason: `${name} is missing from the bundle` });
        }
      }
      this.finishChain();
      this.finishPayloads();
      this.finishManifestCounts();
      this.checkSums();
    }
    const keys = this.archiveBroken ? new Map<string, KeyObject>() : this.checkKeys();
    if (!this.archiveBroken) this.checkSignature(keys);
    const keyUses = this.keyUses();
    if (this.trusted && !this.archiveBroken) {
      for (const k of keyUses) {
        if (!k.trusted) this.fail('trust', { reason: `key ${k.key_id} signed ${k.signed.join(' and ')} but is not among the keys given with --key` });
      }
    }
    return {
      ok: this.first === null,
      format: m?.format ?? null,
      created_at: m?.created_at ?? null,
      created_by: m?.created_by ?? null,
      gateway_version: m?.gateway_version ?? null,
      range: m?.range ?? null,
      filters: m?.filters ?? null,
      span: this.firstSeq !== null && this.lastSeq !== null ? { first_seq: this.firstSeq, last_seq: this.lastSeq } : null,
      files: this.files,
      events: this.full + this.omitted,
      events_full: this.full,
      events_omitted: this.omitted,
      checkpoints: this.checkpoints,
      payloads_checked: this.payloadsChecked,
      payloads_pruned: this.countState(PRUNED),
      time_range: this.timeFirst !== null ? { first: this.timeFirst, last: this.timeLast! } : null,
      keys: keyUses,
      checks: BUNDLE_CHECKS.map((name) => this.checkOf(name, keyUses)),
      failure: this.first,
    };
  }

  private finishChain(): void {
    if (this.chainBroken || this.lastSeq === null) return;
    const m = this.manifest;
    if (m && this.lastSeq !== m.span.last_seq) {
      this.fail('anchors', { seq: this.lastSeq + 1, reason: `events.jsonl ends at seq ${this.lastSeq}, the manifest's span at seq ${m.span.last_seq} (events missing)` });
    }
    if (!(this.lastWasFull && this.lastType === 'checkpoint')) {
      this.fail('anchors', { seq: this.lastSeq, reason: `the last line (seq ${this.lastSeq}) is not a checkpoint: the chain's tail is not signed (truncated?)` });
    }
    if (this.firstSeq === 1) {
      if (this.firstPrevHash !== GENESIS_HASH) this.fail('anchors', { seq: 1, reason: 'the span starts at seq 1, but its prev_hash is not 64 zeros (genesis)' });
    } else if (this.startAnchor === null) {
      this.fail('anchors', { seq: this.firstSeq, reason: `the span starts at seq ${this.firstSeq}, but no checkpoint in the bundle vouches for that event's hash` });
    }
  }

  private finishPayloads(): void {
    if (this.chainBroken) return; // payloads after the break were never collected
    for (let i = 0; i < this.payloads.length; i++) {
      if (this.payloads.state(i) !== EXPECTED) continue;
      const seq = this.payloads.seq(i);
      this.fail('payloads', { seq, file: `payloads/${seq}.json`, reason: `payload missing: payloads/${seq}.json is not in the bundle and manifest.pruned_payloads does not list seq ${seq}` });
      break;
    }
    for (const seq of this.pruned) {
      const i = this.payloads.find(seq);
      if (i === -1 || this.payloads.state(i) !== PRUNED) {
        this.fail('manifest', { seq, file: 'manifest.json', reason: `manifest.pruned_payloads lists seq ${seq}, which is not a full event with a payload_sha256` });
        break;
      }
    }
  }

  private finishManifestCounts(): void {
    const m = this.manifest;
    if (!m || this.chainBroken) return;
    const actual = { events_full: this.full, events_omitted: this.omitted, payloads: this.payloadFiles, payloads_pruned: this.pruned.size };
    for (const [key, value] of Object.entries(actual)) {
      const said = m.counts[key as keyof typeof actual];
      if (said !== value) return this.fail('manifest', { file: 'manifest.json', reason: `manifest.json counts.${key} says ${said}, the bundle has ${value}` });
    }
  }

  private countState(state: number): number {
    let n = 0;
    for (let i = 0; i < this.payloads.length; i++) if (this.payloads.state(i) === state) n++;
    return n;
  }

  private checkSums(): void {
    const sums = this.buffered.get('SHA256SUMS');
    if (!sums) return;
    if (sums.length === 0 || sums[sums.length - 1] !== 10) return this.fail('SHA256SUMS', { file: 'SHA256SUMS', reason: 'SHA256SUMS is empty or does not end with a line end' });
    const listed = new Set<string>();
    let payloadLines = 0;
    let previous: Buffer | null = null;
    // Line by line over the bytes: one line in memory at a time besides the file itself.
    for (let start = 0, i = 0; start < sums.length; i++) {
      const end = sums.indexOf(10, start);
      const line = sums.toString('utf8', start, end);
      const key = sums.subarray(start + 66, end);
      start = end + 1;
      const match = /^([0-9a-f]{64}) {2}(.+)$/.exec(line);
      if (!match) return this.fail('SHA256SUMS', { file: 'SHA256SUMS', reason: `SHA256SUMS line ${i + 1} is not "<64 hex>  <path>"` });
      const [, sum, path] = match as unknown as [string, string, string];
      if (previous && Buffer.compare(previous, key) >= 0) return this.fail('SHA256SUMS', { file: 'SHA256SUMS', reason: `SHA256SUMS is not sorted by path, or lists ${path} twice` });
      previous = key;
      const payload = PAYLOAD_NAME.exec(path);
      if (payload) {
        payloadLines++;
        const idx = this.payloads.find(Number(payload[1]));
        const state = idx === -1 ? -1 : this.payloads.state(idx);
        if (state !== PRESENT && state !== MISMATCH) return this.fail('SHA256SUMS', { file: path, reason: `SHA256SUMS lists ${path}, which is not in the bundle` });
        if (state === MISMATCH || this.payloads.sha256(idx) !== sum) return this.fail('SHA256SUMS', { file: path, reason: `${path} does not match its line in SHA256SUMS` });
        continue;
      }
      if (path === 'SHA256SUMS' || path === 'SHA256SUMS.sig') return this.fail('SHA256SUMS', { file: 'SHA256SUMS', reason: `SHA256SUMS lists ${path}, which it cannot cover` });
      const actual = this.fileHashes.get(path);
      if (actual === undefined) return this.fail('SHA256SUMS', { file: path, reason: `SHA256SUMS lists ${path}, which is not in the bundle` });
      if (actual !== sum) return this.fail('SHA256SUMS', { file: path, reason: `${path} does not match its line in SHA256SUMS (changed after the bundle was made)` });
      listed.add(path);
    }
    for (const name of this.fileHashes.keys()) {
      if (name !== 'SHA256SUMS' && name !== 'SHA256SUMS.sig' && !listed.has(name)) return this.fail('SHA256SUMS', { file: name, reason: `${name} is not listed in SHA256SUMS (an extra file)` });
    }
    if (payloadLines !== this.countState(PRESENT) + this.countState(MISMATCH)) {
      this.fail('SHA256SUMS', { file: 'SHA256SUMS', reason: 'a payload file is not listed in SHA256SUMS (an extra file)' });
    }
  }

  /** The keys in keys/, each checked to be an Ed25519 public key named by its id; by id. */
  private checkKeys(): Map<string, KeyObject> {
    const keys = new Map<string, KeyObject>();
    for (const [name, body] of this.buffered) {
      const match = KEY_NAME.exec(name);
      if (!match) continue;
      const id = match[1]!;
      const text = body.toString('utf8');
      if (!text.includes('-----BEGIN PUBLIC KEY-----')) {
        this.fail('keys', { file: name, reason: `${name} is not a public key in SPKI PEM (-----BEGIN PUBLIC KEY-----)` });
        continue;
      }
      let key: KeyObject;
      try {
        key = createPublicKey(text);
      } catch {
        this.fail('keys', { file: name, reason: `${name} cannot be read as a public key` });
        continue;
      }
      if (key.asymmetricKeyType !== 'ed25519') {
        this.fail('keys', { file: name, reason: `${name} holds a ${key.asymmetricKeyType ?? 'unknown'} key, not Ed25519` });
        continue;
      }
      const raw = rawOf(key);
      if (keyIdOf(raw) !== id) {
        this.fail('keys', { file: name, reason: `${name} holds the key ${keyIdOf(raw)}, not the one its name says` });
        continue;
      }
      keys.set(id, key);
    }
    for (const [id, use] of this.cpKeys) {
      const key = keys.get(id);
      if (!key) this.fail('keys', { file: `keys/${id}.pem`, reason: `keys/${id}.pem is missing: that key signed ${use.checkpoints} checkpoint(s)` });
      else if (rawOf(key).toString('base64') !== use.publicKey) this.fail('keys', { file: `keys/${id}.pem`, reason: `keys/${id}.pem differs from the key its checkpoints carry` });
    }
    const m = this.manifest;
    if (m) {
      const files = [...this.buffered.keys()].filter((n) => KEY_NAME.test(n)).map((n) => KEY_NAME.exec(n)![1]!).sort();
      const listed = [...new Set(m.key_ids)].sort();
      if (files.join() !== listed.join() || listed.length !== m.key_ids.length) this.fail('manifest', { file: 'manifest.json', reason: 'manifest.json key_ids does not list exactly the files in keys/' });
      for (const id of files) {
        if (!this.cpKeys.has(id) && id !== m.signing_key_id) this.fail('keys', { file: `keys/${id}.pem`, reason: `keys/${id}.pem signed neither a checkpoint in the bundle nor SHA256SUMS (an extra key)` });
      }
    }
    return keys;
  }

  private checkSignature(keys: Map<string, KeyObject>): void {
    const sums = this.buffered.get('SHA256SUMS');
    const sig = this.buffered.get('SHA256SUMS.sig');
    const m = this.manifest;
    if (!sums || !sig || !m) return;
    if (sig.length !== 64) return this.fail('signature', { file: 'SHA256SUMS.sig', reason: `SHA256SUMS.sig is ${sig.length} bytes, not a 64-byte Ed25519 signature` });
    const key = keys.get(m.signing_key_id);
    if (!key) return this.fail('signature', { file: `keys/${m.signing_key_id}.pem`, reason: `the manifest's signing key keys/${m.signing_key_id}.pem is missing or unusable` });
    if (!verify(null, sums, key, sig)) this.fail('signature', { file: 'SHA256SUMS.sig', reason: `SHA256SUMS.sig does not verify with key ${m.signing_key_id}: SHA256SUMS was changed, or signed by another key` });
  }

  private keyUses(): BundleKeyUse[] {
    const uses = new Map<string, BundleKeyUse>();
    const use = (id: string): BundleKeyUse => {
      let u = uses.get(id);
      if (!u) uses.set(id, (u = { key_id: id, signed: [], checkpoints: 0, trusted: this.trusted ? this.trusted.has(id) : null }));
      return u;
    };
    for (const [id, k] of this.cpKeys) {
      const u = use(id);
      u.signed.push('checkpoints');
      u.checkpoints = k.checkpoints;
    }
    if (this.manifest && this.buffered.has('SHA256SUMS.sig')) use(this.manifest.signing_key_id).signed.push('SHA256SUMS');
    return [...uses.values()];
  }

  private checkOf(name: BundleCheckName, keyUses: BundleKeyUse[]): BundleCheck {
    const failed = this.failures.get(name);
    if (failed) return { name, status: 'failed', detail: failed.reason };
    const m = this.manifest;
    const reached = !this.archiveBroken;
    const na = (detail: string): BundleCheck => ({ name, status: 'not_checked', detail });
    const ok = (detail: string): BundleCheck => ({ name, status: 'ok', detail });
    switch (name) {
      case 'archive':
        return reached ? ok(`${this.files} files, regular files only, safe names, each once`) : na('');
      case 'manifest':
        if (!m) return na('no readable manifest');
        return ok(`${m.format}, created ${m.created_at} by ${m.created_by.email ?? m.created_by.subject}, range ${m.range.since} .. ${m.range.until}, filters ${filterText(m.filters)}`);
      case 'SHA256SUMS':
        return reached && this.buffered.has('SHA256SUMS') ? ok(`${this.files - 2} files listed, every one matches, none missing or extra`) : na('not reached');
      case 'signature':
        return reached && m && this.buffered.has('SHA256SUMS.sig') ? ok(`SHA256SUMS.sig verifies with key ${m.signing_key_id}`) : na('not reached');
      case 'chain':
        if (this.chainBroken || this.firstSeq === null) return na('not reached');
        return ok(`seq ${this.firstSeq}..${this.lastSeq}: ${this.full + this.omitted} events (${this.full} full, ${this.omitted} omitted), every link and every full event's hash holds`);
      case 'payloads':
        if (this.chainBroken || !reached) return na('not reached');
        return ok(`${this.payloadsChecked} checked against their payload_sha256, ${this.countState(PRUNED)} pruned (retention: listed in the manifest, not a failure)`);
      case 'checkpoints':
        if (this.chainBroken || this.firstSeq === null) return na('not reached');
        return ok(`${this.checkpoints} checkpoints: every signature verifies and each head checked is the chain's${this.checkpointsBefore > 0 ? ` (${this.checkpointsBefore} name heads before the span)` : ''}`);
      case 'anchors':
        if (this.chainBroken || this.firstSeq === null || !reached) return na('not reached');
        return ok(`${this.firstSeq === 1 ? 'starts at genesis (seq 1)' : `starts at seq ${this.firstSeq}, vouched for by the checkpoint at seq ${this.startAnchor}`}; ends at the checkpoint at seq ${this.lastSeq}`);
      case 'keys':
        return reached ? ok(`${keyUses.length} key(s) used, each in keys/ as the key that signed`) : na('not reached');
      case 'trust':
        if (!this.trusted) return na('no --key given: compare the key ids above with the gateway\'s own (hoop audit keys, or its log at start)');
        return reached ? ok('every key that signed is among the keys given with --key') : na('not reached');
    }
  }

  private chainFail(seq: number | null, id: string | null, reason: string): void {
    this.chainBroken = true;
    this.fail('chain', { seq, id, file: 'events.jsonl', reason });
  }

  private fail(check: BundleCheckName, f: { seq?: number | null; id?: string | null; file?: string | null; reason: string }): void {
    const failure: BundleFailure = { check, seq: f.seq ?? null, id: f.id ?? null, file: f.file ?? null, reason: f.reason };
    if (!this.failures.has(check)) this.failures.set(check, failure);
    this.first ??= failure;
  }
}

function filterText(f: { user: string | null; connection: string | null }): string {
  const parts = [f.user !== null ? `user=${f.user}` : null, f.connection !== null ? `connection=${f.connection}` : null].filter(Boolean);
  return parts.length ? parts.join(', ') : 'none';
}

/** Why a full line is not an event's shape, or null. The hash check covers the values; this covers the types. */
function eventShape(o: Record<string, unknown>): string | null {
  const str = (k: string) => typeof o[k] === 'string';
  const strOrNull = (k: string) => o[k] === null || typeof o[k] === 'string';
  const objOrNull = (k: string) => o[k] === null || (typeof o[k] === 'object' && !Array.isArray(o[k]));
  if (!str('id') || !str('time') || !str('type')) return 'an event line needs id, time and type strings';
  if (!objOrNull('actor') || !objOrNull('source')) return 'actor and source must be objects or null';
  if (!strOrNull('connection') || !strOrNull('session_id')) return 'connection and session_id must be strings or null';
  if (o['data'] === null || typeof o['data'] !== 'object' || Array.isArray(o['data'])) return 'data must be an object';
  if (o['payload_sha256'] !== undefined && (typeof o['payload_sha256'] !== 'string' || !HEX64.test(o['payload_sha256']))) return 'payload_sha256 is not 64 lowercase hex digits';
  if (typeof o['hash'] !== 'string' || !HEX64.test(o['hash'])) return 'hash is not 64 lowercase hex digits';
  return null;
}

const EVENT_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;
const HASH_MEMBER_LENGTH = ',"hash":"'.length + 64 + 1;

/**
 * The fast path for a line as the format writes it (canonical JSON of the event with its hash):
 * the hashed text is the line without its top-level `,"hash":"…"` member, so the hash can be
 * checked without encoding the event again. True only when the digest matches, which proves the
 * text is exactly what the gateway hashed (and the parsed line is that plus its hash); any other
 * line (not canonical, reordered, or simply wrong) goes the slow way, canonicalJson and computeHash.
 */
function lineHashes(text: string, e: AuditEvent): boolean {
  if (typeof e.hash !== 'string' || typeof e.prev_hash !== 'string') return false;
  const at = text.lastIndexOf(`,"hash":"${e.hash}"`);
  if (at === -1) return false;
  const body = text.slice(0, at) + text.slice(at + HASH_MEMBER_LENGTH);
  return createHash('sha256').update(e.prev_hash).update(body).digest('hex') === e.hash;
}

function rawOf(key: KeyObject): Buffer {
  return (key.export({ type: 'spki', format: 'der' }) as Buffer).subarray(12);
}
