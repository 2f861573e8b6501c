/**
 * Offline verification of an audit bundle (`hoop audit verify BUNDLE`; the format is
 * docs/audit-export.md; the checks: docs/audit-verify.md), while it streams: memory does not grow with events.jsonl.
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
import { GENESIS_HASH } from './chain.js';
import { keyIdOf } from './checkpoint.js';
import { EventsWalk, MISMATCH, PRESENT, PRUNED, EXPECTED, type Findings } from './bundle-events.js';
import { readTarGz, BundleFormatError, type TarEntry, type TarSink } from './bundle-reader.js';
import { BUNDLE_FORMAT, manifestSchema, type Manifest } from './bundle-format.js';

export { BUNDLE_FORMAT, type Manifest };


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

const MAX_MANIFEST_BYTES = 64 * 1024 * 1024;
const MAX_KEY_FILE_BYTES = 16 * 1024;
/** SHA256SUMS is held whole for its signature: about 100 bytes a file. */
const MAX_SUMS_BYTES = 512 * 1024 * 1024;
const MAX_KEYS = 1000;

const PAYLOAD_NAME = /^payloads\/([1-9][0-9]{0,15})\.json$/;
const KEY_NAME = /^keys\/([0-9a-f]{64})\.pem$/;
const PLAIN_FILES = new Set(['README.txt', 'summary.csv', 'report.html']);
const REQUIRED_FILES = ['README.txt', 'manifest.json', 'events.jsonl', 'summary.csv', 'report.html', 'SHA256SUMS', 'SHA256SUMS.sig'];


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

/** What the entry being read is, and what its bytes go to. */
type Current =
  | { kind: 'buffer'; name: string; hash: Hash; body: Buffer; bytes: number; overflow: boolean }
  | { kind: 'events'; name: string; hash: Hash }
  | { kind: 'payload'; name: string; hash: Hash; index: number }
  | { kind: 'plain'; name: string; hash: Hash };

export class BundleVerifier implements TarSink, Findings {
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

  private eventsState: 'before' | 'reading' | 'done' = 'before';
  /** events.jsonl's walk; an empty one until the file begins (a bundle without it reports from that). */
  private walk: EventsWalk;
  private payloadFiles = 0;
  private payloadsChecked = 0;

  private readonly trusted: Set<string> | null;

  constructor(options: BundleVerifyOptions = {}) {
    this.walk = new EventsWalk(null, new Set(), this);
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
      this.walk = new EventsWalk(this.manifest, this.pruned, this);
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
    } else if (c.kind === 'events') this.walk.push(chunk);
  }

  endEntry(): void {
    const c = this.current!;
    this.current = null;
    const digest = c.hash.digest('hex');
    if (c.kind === 'payload') return this.payloadEnd(c, digest);
    this.fileHashes.set(c.name, digest);
    if (c.kind === 'events') {
      this.eventsState = 'done';
      return this.walk.end();
    }
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

  // ---- payloads ---------------------------------------------------------------------------

  private payloadEntry(name: string): number {
    const seq = Number(PAYLOAD_NAME.exec(name)![1]);
    if (this.eventsState !== 'done') {
      this.fail('archive', { seq, file: name, reason: `${name} comes before the end of events.jsonl; a bundle puts payloads after it` });
      return -1;
    }
    this.payloadFiles++;
    const i = this.walk.payloads.find(seq);
    if (i === -1) {
      // An extra file: unless the chain broke first (and stopped collecting), it belongs to no event.
      if (!this.walk.chainBroken || (this.walk.lastSeq !== null && seq <= this.walk.lastSeq)) {
        this.fail('payloads', { seq, file: name, reason: `${name} belongs to no full event with a payload_sha256 (an extra file)` });
      }
      return -1;
    }
    if (this.walk.payloads.state(i) === PRUNED) {
      this.fail('payloads', { seq, file: name, reason: `${name} is present, but manifest.pruned_payloads lists seq ${seq} as pruned` });
      return -1;
    }
    return i;
  }

  private payloadEnd(c: Extract<Current, { kind: 'payload' }>, digest: string): void {
    if (c.index === -1) return;
    const seq = this.walk.payloads.seq(c.index);
    if (digest === this.walk.payloads.sha256(c.index)) {
      this.walk.payloads.setState(c.index, PRESENT);
      this.payloadsChecked++;
    } else {
      this.walk.payloads.setState(c.index, MISMATCH);
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
      span: this.walk.firstSeq !== null && this.walk.lastSeq !== null ? { first_seq: this.walk.firstSeq, last_seq: this.walk.lastSeq } : null,
      files: this.files,
      events: this.walk.full + this.walk.omitted,
      events_full: this.walk.full,
      events_omitted: this.walk.omitted,
      checkpoints: this.walk.checkpoints,
      payloads_checked: this.payloadsChecked,
      payloads_pruned: this.countState(PRUNED),
      time_range: this.walk.timeFirst !== null ? { first: this.walk.timeFirst, last: this.walk.timeLast! } : null,
      keys: keyUses,
      checks: BUNDLE_CHECKS.map((name) => this.checkOf(name, keyUses)),
      failure: this.first,
    };
  }

  private finishChain(): void {
    if (this.walk.chainBroken || this.walk.lastSeq === null) return;
    const m = this.manifest;
    if (m && this.walk.lastSeq !== m.span.last_seq) {
      this.fail('anchors', { seq: this.walk.lastSeq + 1, reason: `events.jsonl ends at seq ${this.walk.lastSeq}, the manifest's span at seq ${m.span.last_seq} (events missing)` });
    }
    if (!(this.walk.lastWasFull && this.walk.lastType === 'checkpoint')) {
      this.fail('anchors', { seq: this.walk.lastSeq, reason: `the last line (seq ${this.walk.lastSeq}) is not a checkpoint: the chain's tail is not signed (truncated?)` });
    }
    if (this.walk.firstSeq === 1) {
      if (this.walk.firstPrevHash !== GENESIS_HASH) this.fail('anchors', { seq: 1, reason: 'the span starts at seq 1, but its prev_hash is not 64 zeros (genesis)' });
    } else if (this.walk.startAnchor === null) {
      this.fail('anchors', { seq: this.walk.firstSeq, reason: `the span starts at seq ${this.walk.firstSeq}, but no checkpoint in the bundle vouches for that event's hash` });
    }
  }

  private finishPayloads(): void {
    if (this.walk.chainBroken) return; // payloads after the break were never collected
    for (let i = 0; i < this.walk.payloads.length; i++) {
      if (this.walk.payloads.state(i) !== EXPECTED) continue;
      const seq = this.walk.payloads.seq(i);
      this.fail('payloads', { seq, file: `payloads/${seq}.json`, reason: `payload missing: payloads/${seq}.json is not in the bundle and manifest.pruned_payloads does not list seq ${seq}` });
      break;
    }
    for (const seq of this.pruned) {
      const i = this.walk.payloads.find(seq);
      if (i === -1 || this.walk.payloads.state(i) !== PRUNED) {
        this.fail('manifest', { seq, file: 'manifest.json', reason: `manifest.pruned_payloads lists seq ${seq}, which is not a full event with a payload_sha256` });
        break;
      }
    }
  }

  private finishManifestCounts(): void {
    const m = this.manifest;
    if (!m || this.walk.chainBroken) return;
    const actual = { events_full: this.walk.full, events_omitted: this.walk.omitted, payloads: this.payloadFiles, payloads_pruned: this.pruned.size };
    for (const [key, value] of Object.entries(actual)) {
      const said = m.counts[key as keyof typeof actual];
      if (said !== value) return this.fail('manifest', { file: 'manifest.json', reason: `manifest.json counts.${key} says ${said}, the bundle has ${value}` });
    }
  }

  private countState(state: number): number {
    let n = 0;
    for (let i = 0; i < this.walk.payloads.length; i++) if (this.walk.payloads.state(i) === state) n++;
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
        const idx = this.walk.payloads.find(Number(payload[1]));
        const state = idx === -1 ? -1 : this.walk.payloads.state(idx);
        if (state !== PRESENT && state !== MISMATCH) return this.fail('SHA256SUMS', { file: path, reason: `SHA256SUMS lists ${path}, which is not in the bundle` });
        if (state === MISMATCH || this.walk.payloads.sha256(idx) !== sum) return this.fail('SHA256SUMS', { file: path, reason: `${path} does not match its line in SHA256SUMS` });
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
    for (const [id, use] of this.walk.cpKeys) {
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
        if (!this.walk.cpKeys.has(id) && id !== m.signing_key_id) this.fail('keys', { file: `keys/${id}.pem`, reason: `keys/${id}.pem signed neither a checkpoint in the bundle nor SHA256SUMS (an extra key)` });
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
    for (const [id, k] of this.walk.cpKeys) {
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
        if (this.walk.chainBroken || this.walk.firstSeq === null) return na('not reached');
        return ok(`seq ${this.walk.firstSeq}..${this.walk.lastSeq}: ${this.walk.full + this.walk.omitted} events (${this.walk.full} full, ${this.walk.omitted} omitted), every link and every full event's hash holds`);
      case 'payloads':
        if (this.walk.chainBroken || !reached) return na('not reached');
        return ok(`${this.payloadsChecked} checked against their payload_sha256, ${this.countState(PRUNED)} pruned (retention: listed in the manifest, not a failure)`);
      case 'checkpoints':
        if (this.walk.chainBroken || this.walk.firstSeq === null) return na('not reached');
        return ok(`${this.walk.checkpoints} checkpoints: every signature verifies and each head checked is the chain's${this.walk.checkpointsBefore > 0 ? ` (${this.walk.checkpointsBefore} name heads before the span)` : ''}`);
      case 'anchors':
        if (this.walk.chainBroken || this.walk.firstSeq === null || !reached) return na('not reached');
        return ok(`${this.walk.firstSeq === 1 ? 'starts at genesis (seq 1)' : `starts at seq ${this.walk.firstSeq}, vouched for by the checkpoint at seq ${this.walk.startAnchor}`}; ends at the checkpoint at seq ${this.walk.lastSeq}`);
      case 'keys':
        return reached ? ok(`${keyUses.length} key(s) used, each in keys/ as the key that signed`) : na('not reached');
      case 'trust':
        if (!this.trusted) return na('no --key given: compare the key ids above with the gateway\'s own (hoop audit keys, or its log at start)');
        return reached ? ok('every key that signed is among the keys given with --key') : na('not reached');
    }
  }

  failed(check: BundleCheckName): boolean {
    return this.failures.has(check);
  }

  fail(check: BundleCheckName, f: { seq?: number | null; id?: string | null; file?: string | null; reason: string }): void {
    const failure: BundleFailure = { check, seq: f.seq ?? null, id: f.id ?? null, file: f.file ?? null, reason: f.reason };
    if (!this.failures.has(check)) this.failures.set(check, failure);
    this.first ??= failure;
  }
}

function filterText(f: { user: string | null; connection: string | null }): string {
  const parts = [f.user !== null ? `user=${f.user}` : null, f.connection !== null ? `connection=${f.connection}` : null].filter(Boolean);
  return parts.length ? parts.join(', ') : 'none';
}

function rawOf(key: KeyObject): Buffer {
  return (key.export({ type: 'spki', format: 'der' }) as Buffer).subarray(12);
}
