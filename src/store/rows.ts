/**
 * Sealing a batch for a store, and the events-table row of each sealed event. Both stores write
 * the JSON columns (actor, source, data) as the canonical JSON that the hash covers, taken from
 * the event's one encoding (EncodedEvent) rather than serialised again; it reads back as the same
 * values.
 */
import { EncodedEvent, GENESIS_HASH, sealEvent } from '../audit/chain.js';
import type { AuditEvent, UnsealedEvent } from '../audit/event.js';
import { UsageError } from '../errors.js';

/** Column values in the order of EVENT_COLUMNS; JSON columns as text, SQL NULL for a null actor or source. */
export type EventRowValues = [
  seq: number,
  id: string,
  time: string,
  type: string,
  actor: string | null,
  source: string | null,
  connection: string | null,
  session_id: string | null,
  data: string | undefined,
  prev_hash: string,
  hash: string,
  payload_sha256: string | null,
];

export const EVENT_COLUMNS = 'seq, id, time, type, actor, source, connection, session_id, data, prev_hash, hash, payload_sha256';

/** An event_payloads row: the event's seq and its payload's canonical JSON (what payload_sha256 hashes). */
export type PayloadRowValues = [seq: number, payload: string];

/**
 * Places `events` after `head` (null: the log is empty). Throws TypeError on an event that cannot
 * be sealed. Pass EncodedEvents (`EncodedEvent.of`) when sealing the same batch more than once.
 */
export function sealBatch(
  events: readonly UnsealedEvent[],
  head: { seq: number; hash: string } | null,
): { sealed: AuditEvent[]; rows: EventRowValues[]; payloads: PayloadRowValues[] } {
  let seq = head?.seq ?? 0;
  let prev = head?.hash ?? GENESIS_HASH;
  const sealed: AuditEvent[] = [];
  const rows: EventRowValues[] = [];
  const payloads: PayloadRowValues[] = [];
  for (const unsealed of events) {
    const encoded = EncodedEvent.of(unsealed);
    const e = sealEvent(encoded, ++seq, prev);
    prev = e.hash;
    sealed.push(e);
    const { json } = encoded;
    rows.push([
      e.seq,
      e.id,
      e.time,
      e.type,
      e.actor === null ? null : json.actor!,
      e.source === null ? null : json.source!,
      e.connection,
      e.session_id,
      json.data,
      e.prev_hash,
      e.hash,
      encoded.payload_sha256 ?? null,
    ]);
    if (encoded.payloadJson !== undefined) payloads.push([e.seq, encoded.payloadJson]);
  }
  return { sealed, rows, payloads };
}

/**
 * The payload fields of an event read from a row: none when the event has no payload_sha256;
 * else its payload, null when the row is gone (pruned) — or nothing at all when the read did not
 * join payloads (`joined` false).
 */
export function payloadOf<T>(sha256: string | null, payload: T | string | null | undefined, parse: (text: string) => T): { payload_sha256?: string; payload?: T | null } {
  if (sha256 === null) return {};
  if (payload === undefined) return { payload_sha256: sha256 };
  return { payload_sha256: sha256, payload: payload === null ? null : typeof payload === 'string' ? parse(payload) : payload };
}

/** The seqs a payload read asks for: positive integers, at most 1000, without repeats. */
export function checkedSeqs(seqs: readonly number[]): number[] {
  const unique = [...new Set(seqs)];
  if (unique.length > 1000) throw new UsageError(`readPayloads: at most 1000 seqs at a time, got ${unique.length}`);
  const bad = unique.find((s) => !Number.isSafeInteger(s) || s < 1);
  if (bad !== undefined) throw new UsageError(`readPayloads: not a seq: ${String(bad)}`);
  return unique;
}

/** A sink id as the stores keep it: what config.ts derives or the operator names (bounded, printable). */
export function checkedSinkId(sink: string): string {
  if (typeof sink !== 'string' || sink.length === 0 || sink.length > 512 || /[\x00-\x1f\x7f]/.test(sink)) {
    throw new UsageError('a sink id must be 1 to 512 printable characters');
  }
  return sink;
}

/** What a prune deleted, from the seqs of the rows it deleted (in any order). */
export function pruneResult(seqs: number[]): { count: number; first_seq: number | null; last_seq: number | null } {
  if (seqs.length === 0) return { count: 0, first_seq: null, last_seq: null };
  let first = seqs[0]!;
  let last = first;
  for (const s of seqs) (first = Math.min(first, s)), (last = Math.max(last, s));
  return { count: seqs.length, first_seq: first, last_seq: last };
}

/** An event page's `maxBytes`: a positive integer. */
export function pageMaxBytes(maxBytes: number): number {
  if (!Number.isSafeInteger(maxBytes) || maxBytes < 1) throw new UsageError(`an event page takes a positive maxBytes, got ${String(maxBytes)}`);
  return maxBytes;
}

/** An event page's `limit`: 1 to 1000, required. */
export function pageLimit(limit: number | null): number {
  if (limit === null || limit < 1 || limit > 1000) throw new UsageError(`an event page takes a limit from 1 to 1000, got ${String(limit)}`);
  return limit;
}

/** A seq to read after (0: from the start); refuses what is not a non-negative integer. */
export function checkedAfterSeq(afterSeq: number): number {
  if (!Number.isSafeInteger(afterSeq) || afterSeq < 0) throw new UsageError(`${String(afterSeq)} is not a seq to read after`);
  return afterSeq;
}
