import type { ApprovalRequest, RequestStatus, SessionDetail, SessionSummary } from '../api/types.js';
import type { AuditEvent, EventPayload, UnsealedEvent } from '../audit/event.js';

// The store answers session queries in the API's own shapes: the routes send them as they are.
export type { ApprovalRequest, RequestStatus, SessionDetail, SessionSummary };

/** Which approval requests to list: every filter given must hold. Newest first. */
export interface ApprovalFilter {
  status?: readonly RequestStatus[];
  connection?: string;
  /** The requester's subject. */
  requester?: string;
  /** Requests that a member of one of these groups may decide (their `approvers` overlap). */
  approverGroups?: readonly string[];
  limit?: number;
}

/** One approver's decision, as `recordApprovalDecision` takes it. */
export interface ApprovalDecisionInput {
  id: string;
  approver: string;
  decision: 'approve' | 'deny';
  comment: string | null;
  at: string; // RFC 3339
}

/**
 * What became of a decision: recorded (the request as it is now: still pending, approved or
 * denied), or refused — no such request, it is no longer pending (decided, expired, cancelled:
 * decisions are final), or this approver has decided already.
 */
export type ApprovalDecisionOutcome =
  | { ok: true; request: ApprovalRequest }
  | { ok: false; reason: 'not_found' }
  | { ok: false; reason: 'not_pending' | 'already_decided'; request: ApprovalRequest };

export interface SessionFilter {
  subject?: string;
  /** A subject, an email (case-insensitive) or an API key name (`alice` for `apikey:alice`). */
  user?: string;
  connection?: string;
  since?: string; // RFC 3339; sessions started at or after
  until?: string; // RFC 3339; sessions started before
  /** Sessions whose id starts with this (lowercase hex and dashes), as `hoop sessions show 1f3a9c2e` types it. */
  idPrefix?: string;
  limit?: number;
}

/**
 * An admin's request to end a live session (`hoop sessions kill`). It is kept in the store, not
 * sent to one process, because with a PostgreSQL store any replica may hold the session: each
 * gateway looks for requests naming the sessions it holds (`killsFor`), woken by `watchKills`.
 */
export interface SessionKill {
  session_id: string;
  /** Subject of the admin who asked, e.g. `apikey:root`. */
  requested_by: string;
  reason: string | null;
  requested_at: string; // RFC 3339, UTC
}

/**
 * One approver notification in the outbox (`src/gateway/notify.ts`): stored before it is sent, so
 * a gateway restart or a receiver that is down loses nothing. `target` is the webhook URL as
 * configured; no secret is stored (deliveries are signed at send time with the configured key,
 * and `signed` says one is required).
 */
export interface NotificationDraft {
  /** Also sent as X-Hoop-Delivery, so receivers can drop a repeated delivery. */
  id: string;
  target: string;
  format: 'json' | 'slack';
  /** The request body exactly as it is sent (rendered at enqueue). */
  body: string;
  signed: boolean;
  /** What it is about, for the record of a delivery given up (notify.failed). */
  event: string;
  connection: string | null;
  request_id: string | null;
  created_at: string; // RFC 3339, UTC; also the first next_attempt_at
}

export interface Notification extends NotificationDraft {
  /** Attempts that failed so far. */
  attempts: number;
  /** When it is due; while a gateway is sending it, the end of that gateway's claim. */
  next_attempt_at: string;
  delivered_at: string | null;
  /** Given up (too many attempts or too old): never sent again. */
  dead_at: string | null;
  last_error: string | null;
}

export interface NotificationClaim {
  /** Rows due at or before this are claimed. */
  now: string;
  /** Claimed rows are due again only after this (the claimer crashed): their next_attempt_at. */
  leaseUntil: string;
  limit: number;
}

export interface SessionPageRequest {
  /** Events with a greater seq; default 0 (from the start). */
  afterSeq?: number;
  /** At most this many events (1 to 1000). */
  limit: number;
  /** At most this many bytes of stored JSON (data, actor, source), unless one event alone is larger. */
  maxBytes: number;
}

/**
 * Where one page of a session ends: reads only seqs and stored sizes, in small chunks that grow
 * (16, 64, 256, then up to the limit), and stops as soon as the page is full, so neither the
 * store nor the gateway touches more than a page and a chunk of sizes. `fetchSizes(after, n)`
 * returns at most `n` of the session's events after `after`, in seq order. `next` is set when
 * events remain after the page.
 */
export async function findPageEnd(
  fetchSizes: (after: number, n: number) => Promise<{ seq: number; bytes: number }[]>,
  after: number,
  limit: number,
  maxBytes: number,
): Promise<{ count: number; last: number | null; next: number | null }> {
  let total = 0;
  let count = 0;
  let last: number | null = null;
  let cursor = after;
  for (let chunk = 16; ; chunk = Math.min(chunk * 4, 1024)) {
    const n = Math.min(chunk, limit - count + 1); // one beyond the limit: is there more?
    const rows = await fetchSizes(cursor, n);
    for (const r of rows) {
      if (count >= limit || (count > 0 && total + r.bytes > maxBytes)) return { count, last, next: last };
      total += r.bytes;
      count++;
      last = r.seq;
    }
    if (rows.length < n) return { count, last, next: null };
    cursor = rows[rows.length - 1]!.seq;
  }
}

/**
 * What the log says about one key that signed checkpoints (`checkpointKeys`): the key id and raw
 * public key (base64) the checkpoint events carry, the times of the first and last of them, the
 * seq of the last, and how many there are.
 */
export interface CheckpointKeyUse {
  key_id: string;
  public_key: string;
  first_used: string; // RFC 3339, UTC
  last_used: string;
  last_seq: number;
  checkpoints: number;
}

/** Bytes an event row is counted as: its JSON columns plus a fixed allowance for the rest. */
export const EVENT_ROW_OVERHEAD = 512;

export interface EventFilter {
  afterSeq?: number;
  /** Events with a lower seq (paging newest first). */
  beforeSeq?: number;
  since?: string;
  until?: string;
  limit?: number;
  /** Only events of these types; `auth.*` names every type that starts with `auth.`. */
  types?: readonly string[];
  /** Newest first (with `limit`: the last N); default oldest first. */
  newestFirst?: boolean;
  /** Read each event's payload too (default true); false leaves `payload` out (listings, sinks). */
  payload?: boolean;
}

/**
 * A SIEM sink's durable position in the log (src/audit/sinks/deliverer.ts): every event up to
 * `delivered_seq` has been delivered to it. One row per sink id. While a gateway delivers, it
 * holds the row's lease (`lease_owner` until `lease_until`), so with replicas on one PostgreSQL
 * store only one of them sends to a given sink at a time.
 */
export interface SinkCursor {
  sink: string;
  delivered_seq: number;
  updated_at: string; // RFC 3339, UTC
  lease_owner: string | null;
  lease_until: string | null; // RFC 3339, UTC
}

export interface SinkLeaseClaim {
  sink: string;
  /** Who asks: one id per deliverer (gateway process), random at start. */
  owner: string;
  now: string;
  /** The lease lasts until then (renewed by claiming again before it ends). */
  leaseUntil: string;
  /** A sink without a row starts here: 0 for the whole log, or the head for `start: now`. */
  startSeq: number;
}

/**
 * A page of events bounded by count and bytes: the filter readEvents takes (none: the whole log)
 * plus `limit` (1 to 1000) and `maxBytes`. Without payloads unless `payload: true`.
 */
export interface EventPageRequest extends Omit<EventFilter, 'limit'> {
  limit: number;
  /** At most this many bytes of stored JSON (data, actor, source; payloads when read), unless one event alone is larger. */
  maxBytes: number;
}

/** What one prune batch deleted: how many rows, and the lowest and highest seq among them (null when none). */
export interface PruneResult {
  count: number;
  first_seq: number | null;
  last_seq: number | null;
}

/** Which payloads one `prunePayloads` batch deletes: the lowest seqs that match, within both bounds. */
export interface PayloadPruneRequest {
  /** Payloads of events recorded before this time (RFC 3339). */
  before?: string;
  /** Payloads of events with a lower seq. At least one of `before` and `beforeSeq`. */
  beforeSeq?: number;
  /** At most this many payloads (1 to 10000). */
  limit: number;
  /** At most this many stored bytes of payload, unless the first one alone is larger. */
  maxBytes: number;
}

/**
 * Persistence for everything the gateway keeps. SQLite (one gateway) and PostgreSQL (replicas)
 * implement it and pass one shared test suite (`test/store/store-suite.ts`).
 */
export interface Store {
  /** Creates or upgrades the schema; idempotent. */
  migrate(): Promise<void>;

  /**
   * Appends events atomically at the chain head: assigns `seq`, `prev_hash` and `hash`
   * (see `src/audit/chain.ts`) under a lock, so concurrent appenders — in this process or in
   * other gateway replicas — always produce one linear chain. Resolves only once the events are
   * durable (fsynced). Rejects with `StoreError` and writes nothing on failure.
   */
  appendEvents(events: UnsealedEvent[]): Promise<AuditEvent[]>;

  /** The chain head, or null for an empty log. */
  head(): Promise<{ seq: number; hash: string } | null>;

  /** Events in `seq` order. */
  readEvents(filter: EventFilter): Promise<AuditEvent[]>;

  listSessions(filter: SessionFilter): Promise<SessionSummary[]>;

  /**
   * The session and all of its events in `seq` order, or null. Loads the whole session: for
   * tests and small sessions only; the API reads sessions with `readSessionEvents`.
   */
  getSession(id: string): Promise<SessionDetail | null>;

  /**
   * One page of a session's events in `seq` order, after `afterSeq`: at most `limit` events whose
   * stored JSON adds up to at most `maxBytes` (one larger event is still returned, alone), so
   * memory stays bounded whatever the session's size. `next` is the seq to continue after, or
   * null when the page ends the session (as of this read).
   */
  readSessionEvents(id: string, page: SessionPageRequest): Promise<{ events: AuditEvent[]; next: number | null }>;

  /**
   * The payloads of these events (read with `payload: false`), by seq: the payload, or null when
   * the event has a payload_sha256 but the payload is gone (pruned). Seqs of events without a
   * payload are absent from the map. At most 1000 seqs; a reader bounds memory by asking for few.
   */
  readPayloads(seqs: readonly number[]): Promise<Map<number, EventPayload | null>>;

  /**
   * One page of `readEvents` bounded by bytes as readSessionEvents pages a session, so a reader of
   * the whole log or of a listing (the SIEM sinks, GET /api/v1/audit/events) keeps memory bounded:
   * at most `limit` events whose stored JSON adds up to at most `maxBytes`, one larger event alone.
   * `next` continues the listing: the `afterSeq` of the next page (the seq to continue after), or
   * with `newestFirst` its `beforeSeq`; null when the page reached the end (as of this read).
   */
  readEventPage(page: EventPageRequest): Promise<{ events: AuditEvent[]; next: number | null }>;

  /**
   * Audit retention (src/audit/retention.ts): deletes one batch of payloads (event_payloads rows)
   * of old events, lowest seq first; the events keep their payload_sha256, so the chain still
   * verifies and they read back with `payload: null`. Idempotent: replicas pruning at once each
   * delete what the other has not (a row is deleted once), so repeating a batch until it deletes
   * nothing is always safe. Each batch is its own short transaction: appends go on in between.
   */
  prunePayloads(req: PayloadPruneRequest): Promise<PruneResult>;

  /**
   * Audit retention: deletes the oldest events of the log — at most `limit` (1 to 10000), all with
   * seq < `beforeSeq` — with their payloads, in one transaction that alone may pass the
   * append-only trigger (migration 8). Only ever a prefix: the log then starts at the next event.
   * The caller records why first (audit.pruned) and picks `beforeSeq` at a checkpointed head.
   */
  pruneEvents(req: { beforeSeq: number; limit: number }): Promise<PruneResult>;

  /** The newest `checkpoint` event recorded before `before` (by its time), without reading older ones; null if none. */
  newestCheckpointBefore(before: string): Promise<AuditEvent | null>;

  /**
   * The keys that signed `checkpoint` events with a seq above `afterSeq`, one entry per key (as
   * the events name it), in order of first use. One grouped query over the checkpoint events (by
   * the type index), so a caller keeps the result and asks again only after the last seq it saw.
   */
  checkpointKeys(afterSeq: number): Promise<CheckpointKeyUse[]>;

  /** Stores a kill request. Idempotent: if the session already has one, that one stands and is returned. */
  requestKill(kill: SessionKill): Promise<SessionKill>;

  /** The kill requests for any of these sessions (the ones a gateway holds). */
  killsFor(sessionIds: readonly string[]): Promise<SessionKill[]>;

  /**
   * Calls `wake(sessionId)` soon after any replica requests a kill (PostgreSQL LISTEN/NOTIFY),
   * so the holder need not wait for its next poll. A store without such a signal (SQLite: one
   * gateway, which ends its own sessions at once) never calls it. Resolves with `stop`.
   */
  watchKills(wake: (sessionId: string) => void): Promise<() => Promise<void>>;

  /** Stores a notification, due at once (at its created_at). */
  enqueueNotification(n: NotificationDraft): Promise<void>;

  /**
   * Claims the notifications due now, at most one per target: the oldest one neither delivered
   * nor given up, and only if it is due, so each target receives its notifications in order and
   * a failing one holds back those behind it. A claimed row's next_attempt_at moves to
   * `leaseUntil`, atomically with the choice, so two replicas claiming at once never get the
   * same row (nor the next row of a target whose head the other holds). Oldest first.
   */
  claimNotifications(claim: NotificationClaim): Promise<Notification[]>;

  markNotificationDelivered(id: string, at: string): Promise<void>;

  /** A failed attempt: attempts + 1, the error, and when to try again. */
  markNotificationFailed(id: string, failure: { error: string; nextAttemptAt: string }): Promise<void>;

  /** The last failed attempt: attempts + 1, the error, and dead_at (never sent again). */
  markNotificationDead(id: string, failure: { error: string; at: string }): Promise<void>;

  getNotification(id: string): Promise<Notification | null>;
  /** Stores a new request (status `pending`, no decisions). Rejects a duplicate id. */
  createApprovalRequest(request: ApprovalRequest): Promise<void>;

  getApprovalRequest(id: string): Promise<ApprovalRequest | null>;

  listApprovalRequests(filter: ApprovalFilter): Promise<ApprovalRequest[]>;

  /**
   * Records one decision atomically with the status it leads to (`nextApprovalState`): any deny
   * denies; `min_approvals` distinct approvers approve. A request past its deadline is expired
   * instead, and the decision refused.
   */
  recordApprovalDecision(decision: ApprovalDecisionInput): Promise<ApprovalDecisionOutcome>;

  /** Compare-and-set approved -> used, if not past `expires_at`: the request as used, or null if it was not approved (or used already). */
  markApprovalUsed(id: string, at: string): Promise<ApprovalRequest | null>;

  /** Pending and approved-but-unused requests past `expires_at` become `expired`; returns them. */
  expireApprovalRequests(now: string): Promise<ApprovalRequest[]>;

  /**
   * The approved grant (`kind: grant`) of `subject` on `connection` whose window holds `now`:
   * approved at or before it (`expires_at` minus `duration_ms`), `expires_at` after it. Of
   * several, the one that lasts longest; null if none.
   */
  activeGrant(subject: string, connection: string, now: string): Promise<ApprovalRequest | null>;

  /** Pending -> cancelled; null if it was not pending. */
  cancelApprovalRequest(id: string, at: string): Promise<ApprovalRequest | null>;

  /**
   * Calls `wake(id)` soon after a request changes state through any store instance on this
   * database (PostgreSQL LISTEN/NOTIFY), or through this instance (SQLite: one gateway).
   * Resolves with `stop`.
   */
  watchApprovals(wake: (id: string) => void): Promise<() => Promise<void>>;

  /** The sink's cursor, or null if it has never been claimed. */
  readSinkCursor(sink: string): Promise<SinkCursor | null>;

  /**
   * Takes or renews the sink's lease, atomically: creates the row (at `startSeq`) if there is
   * none, and gives the lease to `owner` if it is free, expired (`lease_until` <= `now`) or
   * already `owner`'s. Returns the cursor as it now is, or null when another owner holds a
   * lease that has not expired (that owner delivers; this one must not).
   */
  claimSinkLease(claim: SinkLeaseClaim): Promise<SinkCursor | null>;

  /**
   * Compare-and-set: moves `delivered_seq` forward to `deliveredSeq` only while `owner` holds
   * the lease (and never backwards). False when it does not (the lease was taken over): the
   * caller stops delivering.
   */
  advanceSinkCursor(advance: { sink: string; owner: string; deliveredSeq: number; now: string }): Promise<boolean>;

  /** Gives the lease up (if `owner` holds it), so another replica can deliver at once. */
  releaseSinkLease(sink: string, owner: string): Promise<void>;

  close(): Promise<void>;
}
