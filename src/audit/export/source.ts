/**
 * Reading the log for an export with bounded memory: pages of events without their payloads,
 * bounded by bytes in the store, and the payloads fetched a few at a time just before
 * they are written, so neither a long range nor a session of large results is ever held at once.
 */
import type { AuditEvent, EventPayload } from '../event.js';
import type { Store } from '../../store/store.js';

/** What one page of events should weigh, roughly (their data as stored). */
const PAGE_BYTES = 8 * 1024 * 1024;
const MAX_PAGE = 1000;
/** Payloads fetched together: at most this many, and at most about PAYLOAD_BATCH_BYTES of them. */
const PAYLOAD_BATCH = 16;
const PAYLOAD_BATCH_BYTES = 16 * 1024 * 1024;

export interface PageFilter {
  afterSeq: number;
  /** Exclusive. */
  beforeSeq: number;
  since?: string;
  until?: string;
}

export type PageSource = Pick<Store, 'readEventPage'>;

/**
 * Events in seq order with `afterSeq < seq < beforeSeq` (and `since <= time < until` when
 * given), page by page, without payloads: pages the store bounds by bytes (readEventPage).
 */
export async function* readPages(store: PageSource, f: PageFilter, signal?: AbortSignal): AsyncGenerator<AuditEvent[]> {
  let after = f.afterSeq;
  while (after + 1 < f.beforeSeq) {
    signal?.throwIfAborted();
    const { events, next } = await store.readEventPage({
      afterSeq: after, beforeSeq: f.beforeSeq, limit: MAX_PAGE, maxBytes: PAGE_BYTES,
      ...(f.since !== undefined ? { since: f.since } : {}), ...(f.until !== undefined ? { until: f.until } : {}),
    });
    if (events.length > 0) yield events;
    if (next === null) return;
    after = next;
  }
}

/** What a payload may weigh, from the counts its event keeps (JSON escaping can make text larger). */
function payloadEstimate(e: AuditEvent): number {
  const d = e.data as { bytes?: unknown; upload?: { bytes?: unknown }; messages?: { bytes?: unknown } };
  const n = (v: unknown) => (typeof v === 'number' && Number.isFinite(v) ? v : 0);
  return 2 * (n(d.bytes) + n(d.upload?.bytes) + n(d.messages?.bytes)) + 1024;
}

/** `payload`: the stored payload, null once pruned, undefined when the event has none or was not asked for. */
export interface EventWithPayload {
  event: AuditEvent;
  payload: EventPayload | null | undefined;
}

/**
 * The page's events in order, each with its payload when `want(event)` and it has one. Payloads
 * are read in small batches just ahead of the consumer, so memory holds a batch, not a page.
 */
export async function* withPayloads(store: Pick<Store, 'readPayloads'>, page: AuditEvent[], want: (e: AuditEvent) => boolean): AsyncGenerator<EventWithPayload> {
  let fetched = new Map<number, EventPayload | null>();
  for (let i = 0; i < page.length; i++) {
    const e = page[i]!;
    if (e.payload_sha256 === undefined || !want(e)) {
      yield { event: e, payload: undefined };
      continue;
    }
    if (!fetched.has(e.seq)) {
      const seqs: number[] = [];
      let bytes = 0;
      for (let j = i; j < page.length && seqs.length < PAYLOAD_BATCH; j++) {
        const c = page[j]!;
        if (c.payload_sha256 === undefined || !want(c)) continue;
        const w = payloadEstimate(c);
        if (seqs.length > 0 && bytes + w > PAYLOAD_BATCH_BYTES) break;
        seqs.push(c.seq);
        bytes += w;
      }
      fetched = await store.readPayloads(seqs);
      // A seq absent from the answer has no payload row or hash any more: report it as pruned.
      for (const s of seqs) if (!fetched.has(s)) fetched.set(s, null);
    }
    const payload = fetched.get(e.seq) ?? null;
    fetched.delete(e.seq);
    yield { event: e, payload };
  }
}
