/**
 * events.jsonl of an audit bundle, checked line by line as it streams (bundle-verify.ts drives
 * it): each line's seq and prev_hash against the line before (through stubs), each full line's
 * hash, its shape, its place in the manifest's range, each checkpoint's signature and the head it
 * names (kept for the last CHECKPOINT_WINDOW lines), and the payload_sha256 of each full event
 * that has one, for the payload files that follow. The first break in the chain stops the walk;
 * later lines are only counted.
 */
import { createHash } from 'node:crypto';
import { computeHash } from './chain.js';
import { verifyCheckpoint } from './checkpoint.js';
import type { AuditEvent } from './event.js';
import type { BundleCheckName, Manifest } from './bundle-verify.js';
import { CHECKPOINT_WINDOW } from './verify.js';

/** Longest line of events.jsonl taken (one event's canonical JSON; its payload is apart). */
export const MAX_EVENT_LINE_BYTES = 256 * 1024 * 1024;

const HEX64 = /^[0-9a-f]{64}$/;
const FULL_FIELDS = new Set(['seq', 'id', 'time', 'type', 'actor', 'source', 'connection', 'session_id', 'data', 'payload_sha256', 'prev_hash', 'hash']);
const STUB_FIELDS = ['hash', 'omitted', 'prev_hash', 'seq'];

/** Where the walk reports what it finds (the verifier's record of failures, first one first). */
export interface Findings {
  fail(check: BundleCheckName, f: { seq?: number | null; id?: string | null; file?: string | null; reason: string }): void;
  failed(check: BundleCheckName): boolean;
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

/** What became of an expected payload file. */
export const EXPECTED = 0;
export const PRESENT = 1;
export const MISMATCH = 2;
export const PRUNED = 3;

/** Full events with a payload_sha256, in seq order: their hash and what became of their file. */
export class PayloadTable {
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

export class EventsWalk {
  private linePieces: Buffer[] = [];
  private lineBytes = 0;
  private prevHash: string | null = null;
  private rangeIso: { since: string; until: string } | null = null;
  private readonly recent = new RecentHashes();
  chainBroken = false;
  lines = 0;
  full = 0;
  omitted = 0;
  firstSeq: number | null = null;
  lastSeq: number | null = null;
  firstPrevHash: string | null = null;
  lastType: string | null = null;
  lastWasFull = false;
  timeFirst: string | null = null;
  timeLast: string | null = null;
  /** Full events with a payload_sha256: what the payload files are checked against. */
  readonly payloads = new PayloadTable();
  checkpoints = 0;
  /** Checkpoints that name a head before the span (their signature is checked, their head cannot be). */
  checkpointsBefore = 0;
  /** The checkpoint that vouches for the span's first line, when one does. */
  startAnchor: number | null = null;
  /** The keys that signed checkpoints: the raw public key (base64) they carry, and how many each signed. */
  readonly cpKeys = new Map<string, { publicKey: string; checkpoints: number }>();

  constructor(
    private readonly manifest: Manifest | null,
    private readonly pruned: ReadonlySet<number>,
    private readonly findings: Findings,
  ) {}

  /** Bytes of events.jsonl, as they arrive. */
  push(chunk: Buffer): void {
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
    if (!m || this.findings.failed('manifest')) return;
    // Event times are RFC 3339 UTC with milliseconds: compared as text with the range in that form.
    const t = EVENT_TIME.test(e.time) ? e.time : new Date(Date.parse(e.time)).toISOString();
    this.rangeIso ??= { since: new Date(Date.parse(m.range.since)).toISOString(), until: new Date(Date.parse(m.range.until)).toISOString() };
    if (t < this.rangeIso.since || t >= this.rangeIso.until) {
      this.findings.fail('manifest', { seq: e.seq, id: e.id, file: 'events.jsonl', reason: `seq ${e.seq} (${e.time}) is a full event outside the manifest's range ${m.range.since} .. ${m.range.until}` });
    }
  }

  private checkpoint(e: AuditEvent): void {
    const verdict = verifyCheckpoint(e.data);
    if (!verdict.ok) return this.findings.fail('checkpoints', { seq: e.seq, id: e.id, file: 'events.jsonl', reason: verdict.reason });
    const { seq, hash, key_id, public_key } = verdict.data;
    if (seq >= e.seq) return this.findings.fail('checkpoints', { seq: e.seq, id: e.id, file: 'events.jsonl', reason: `checkpoint vouches for seq ${seq}, which is not before it` });
    const known = this.cpKeys.get(key_id);
    if (known) known.checkpoints++;
    else this.cpKeys.set(key_id, { publicKey: public_key, checkpoints: 1 });
    this.checkpoints++;
    if (this.firstSeq === null || seq < this.firstSeq) {
      this.checkpointsBefore++; // names a head before the span: its signature holds, its head is not here to compare
      return;
    }
    const actual = this.recent.get(seq);
    if (actual === undefined) return this.findings.fail('checkpoints', { seq: e.seq, id: e.id, file: 'events.jsonl', reason: `checkpoint vouches for seq ${seq}, more than ${CHECKPOINT_WINDOW} events earlier` });
    if (actual !== hash) return this.findings.fail('checkpoints', { seq: e.seq, id: e.id, file: 'events.jsonl', reason: `checkpoint vouches for a different hash at seq ${seq}: the log was rewritten after it was signed` });
    if (seq === this.firstSeq) this.startAnchor ??= e.seq;
  }

  /** The end of events.jsonl. */
  end(): void {
    if (this.lineBytes > 0 || this.linePieces.length > 0) {
      if (!this.chainBroken) this.chainFail(this.nextSeq(), null, 'the last line of events.jsonl has no line end (truncated)');
      this.linePieces = [];
    }
    if (this.lines === 0) this.chainFail(this.manifest?.span.first_seq ?? null, null, 'events.jsonl is empty');
  }

  private chainFail(seq: number | null, id: string | null, reason: string): void {
    this.chainBroken = true;
    this.findings.fail('chain', { seq, id, file: 'events.jsonl', reason });
  }
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
