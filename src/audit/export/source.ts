/**
 * Reading the log for an export with bounded memory: pages of events without their payloads,
 * sized by what the previous page weighed, and the payloads fetched a few at a time just before
 * they are written, so neither a long range nor a session of large results is ever held at once.
 */
import type { AuditEvent, EventPayload } from '../event.js';
import type { Store } from '../../store/store.js';

/** What one page of events should weigh, roughly (their data as stored). */
const PAGE_BYTES = 8 * 1024 * 1024;
const MAX_PAGE = 1000;
const FIRST_PAGE = 64;
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

/** A cheap upper-ish estimate of an event's stored size: its string data plus a fixed allowance. */
export function estimateBytes(e: AuditEvent): number {
  let n = 600;
  for (const v of Object.values(e.data)) {
    if (typeof v === 'string') n += v.length;
    else if (Array.isArray(v)) n += 16 * v.length + (typeof v[0] === 'string' ? v.reduce((s: number, x: unknown) => s + (typeof x === 'string' ? x.length : 8), 0) : 0);
  }
  return n;
}

/**
 * A store's byte-bounded page of the log in seq order, without payloads (`Store.readEventPage`
 * on main, from the sinks branch). Optional here only until the branches meet: once every Store
 * has it, the count-based fallback in readPages goes.
 */
type EventPageReader = (page: { afterSeq: number; limit: number; maxBytes: number }) => Promise<{ events: AuditEvent[]; next: number | null }>;

export type PageSource = Pick<Store, 'readEvents'> & { readEventPage?: EventPageReader };

/**
 * Events in seq order with `afterSeq < seq < beforeSeq` (and `since <= time < until` when
 * given), page by page, without payloads: pages the store bounds by bytes where it can, else
 * pages sized by what the previous one weighed.
 */
export async function* readPages(store: PageSource, f: PageFilter, signal?: AbortSignal): AsyncGenerator<AuditEvent[]> {
  if (store.readEventPage) {
    yield* readByteBoundedPages(store.readEventPage.bind(store), f, signal);
    return;
  }
  let after = f.afterSeq;
  let limit = FIRST_PAGE;
  while (after + 1 < f.beforeSeq) {
    signal?.throwIfAborted();
    const page = await store.readEvents({
      afterSeq: after, beforeSeq: f.beforeSeq, limit, payload: false,
      ...(f.since !== undefined ? { since: f.since } : {}), ...(f.until !== undefined ? { until: f.until } : {}),
    });
    if (page.length === 0) return;
    yield page;
    if (page.length < limit) return;
    after = page[page.length - 1]!.seq;
    const weight = page.reduce((s, e) => s + estimateBytes(e), 0);
    limit = Math.max(1, Math.min(MAX_PAGE, limit * 2, Math.floor((limit * PAGE_BYTES) / Math.max(weight, 1))));
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

async function* readByteBoundedPages(readEventPage: EventPageReader, f: PageFilter, signal?: AbortSignal): AsyncGenerator<AuditEvent[]> {
  let after = f.afterSeq;
  while (after + 1 < f.beforeSeq) {
    signal?.throwIfAborted();
    const { events, next } = await readEventPage({ afterSeq: after, limit: MAX_PAGE, maxBytes: PAGE_BYTES });
    const page = events.filter((e) => e.seq < f.beforeSeq && (f.since === undefined || e.time >= f.since) && (f.until === undefined || e.time < f.until));
    if (page.length > 0) yield page;
    const last = events[events.length - 1];
    if (!last || next === null) return;
    after = last.seq;
  }
}
