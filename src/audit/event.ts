/**
 * The audit event model (ARCHITECTURE.md, "The audit log"). Field names are part of the product
 * contract: exports, `hoop audit verify` and SIEM mappings depend on them.
 */

/** `agent_key`: a `hoop agent` link (agent.* events; such a key authenticates nothing else). */
export type AuthMethod = 'api_key' | 'oidc' | 'system' | 'agent_key';

export interface Actor {
  subject: string;
  email?: string | null;
  groups: string[];
  auth_method: AuthMethod;
}

/** The gateway itself, for events no person caused (config.loaded, checkpoint). */
export const SYSTEM_ACTOR: Actor = { subject: 'system:gateway', email: null, groups: [], auth_method: 'system' };

export interface Source {
  /** The client: the socket's peer, or behind a trusted proxy the address it forwarded for. */
  address?: string | null;
  application?: string | null;
  /** The trusted proxy the request came through (the socket's peer), when `trusted_proxies` applied. */
  proxy?: string | null;
}

export type AuditEventType =
  | 'session.start'
  | 'session.end'
  | 'query.start'
  | 'query.end'
  /** A statement held for approval, or asked for ahead of time (`hoop request`): who, what, why, which rule. */
  | 'approval.requested'
  /** One approver's decision (approve, deny), or the gateway's end of a request (expired) or the requester's (cancelled). */
  | 'approval.decided'
  /** An approved request was used: its statement runs now, once. */
  | 'approval.used'
  /** A time-bound access grant was approved: its window opens (`request`, `from`, `until`). */
  | 'grant.started'
  /** A grant's window closed: once for the grant (no session), and once for each session it ended (that session's id). */
  | 'grant.ended'
  | 'auth.failed'
  | 'auth.succeeded'
  /** An authenticated identity refused: a connection outside its access groups, a missing reason,
   *  a session limit, another user's sessions, the audit log without a role. */
  | 'access.denied'
  /** Someone read audit events (`GET /api/v1/audit/events`: who, which filter, which page) or a session (`GET /api/v1/sessions/{id}`: who, which session, which page; one per page). */
  | 'audit.read'
  /** Audit retention deleted old payloads or old events (src/audit/retention.ts; see AuditPrunedData). */
  | 'audit.pruned'
  | 'config.loaded'
  | 'export.created'
  | 'checkpoint'
  /** The gateway started with a signing key other than the one that signed the newest checkpoint: {previous_key_id, key_id}. */
  | 'audit.key_rotated'
  | 'protocol.error'
  /** An admin asked to end a live session (`hoop sessions kill`); session.end follows, "killed by …". */
  | 'session.kill'
  /** A notice or notification the client received while no statement ran (LISTEN in an idle session). */
  | 'session.message'
  /** An approver notification (webhook) given up after its last retry: the target without
   *  credentials or query, the last error, the attempts. Never the signing secret. */
  | 'notify.failed'
  /** A `hoop agent` link came up (agent name, instance, link id) — gateway/agents.ts. */
  | 'agent.connected'
  /** An agent link went down (why, how long it was up); its streams ended with it. */
  | 'agent.disconnected'
  /** An agent refused to dial a target outside its allow-list, for this connection and session. */
  | 'agent.refused';

/** What a producer hands to the recorder: everything but the chain fields. */
export interface AuditEventDraft {
  type: AuditEventType;
  actor: Actor | null;
  source?: Source | null;
  connection?: string | null;
  session_id?: string | null;
  data: Record<string, unknown>;
  /** The bulky part, kept apart from `data` and hashed on its own (see EventPayload). */
  payload?: EventPayload;
}

/**
 * The bulky, prunable part of an event (today: query.end's returned rows, kept notices and
 * uploaded COPY data), stored apart from `data`. Keys are dotted paths into `data` where the values
 * belong (`result.sets`); `withPayload` (src/api/types.ts) puts them back. The chain hashes
 * `payload_sha256` = SHA-256 of the payload's canonical JSON, not the payload itself, so retention can
 * drop a payload (audit.retention.payloads) and the chain still verifies; a verifier checks a payload
 * that is present against its hash and reports one that is absent as pruned.
 */
export type EventPayload = Record<string, unknown>;

/** An event as stored: `hash` = SHA-256(prev_hash || canonical JSON of the other fields). */
export interface AuditEvent {
  seq: number;
  id: string;
  time: string; // RFC 3339 with milliseconds, UTC
  type: AuditEventType;
  actor: Actor | null;
  source: Source | null;
  connection: string | null;
  session_id: string | null;
  data: Record<string, unknown>;
  /** SHA-256 (hex) of the canonical JSON of the event's payload; absent when it has none. Hashed. */
  payload_sha256?: string;
  /** The payload itself: absent when the event has none (or the read left it out), null once pruned. Not hashed (its sha256 is). */
  payload?: EventPayload | null;
  prev_hash: string;
  hash: string;
}

/** An event before the store has placed it in the chain. */
export type UnsealedEvent = Omit<AuditEvent, 'seq' | 'prev_hash' | 'hash' | 'payload_sha256' | 'payload'> & { payload?: EventPayload };

/** `query.start` data: recorded, and durable, before the statement goes upstream. */
export interface QueryStartData {
  query_id: string;
  protocol: 'simple' | 'extended' | 'fastpath';
  /** Up to the statement text limit (audit.payload_limit); statement_bytes and statement_sha256
   *  cover all of it, and statement_truncated says it was cut. */
  statement: string;
  statement_bytes?: number;
  statement_sha256?: string;
  statement_truncated?: boolean;
  /** A Parse or Bind recorded on its own (not executed in the same breath). */
  phase?: 'parse' | 'bind';
  /** The gateway cannot name what the server runs (`statement` says why). */
  unknown?: boolean;
  statement_name?: string | null;
  portal?: string | null;
  parameters?: unknown[];
  /** A simple Query of several statements: each one's text, in order; statement i is the one
   *  that completed i-th (command_tags[i]), and result sets name theirs by index. */
  statements?: string[];
  /** Decisions taken on this statement (masking plan, risk class, approval) once policy exists. */
  decision?: Record<string, unknown>;
}

/** `query.end` data: what came back, as the client received it. */
export interface QueryEndData {
  query_id: string;
  /** rolled_back: completed, but the implicit transaction it ran in failed later and undid it.
   *  unknown: the gateway cannot know whether it ran or committed (error says why). */
  outcome: 'ok' | 'error' | 'cancelled' | 'refused' | 'rolled_back' | 'unknown';
  error?: { code: string; message: string } | null;
  command_tags: string[];
  rows: number;
  bytes: number;
  duration_ms: number;
  result: {
    /**
     * One entry per result set (RowDescription or COPY OUT), in order: several when a simple
     * Query holds several statements. Rows as the client received them, text values as strings,
     * binary ones as `\\x` hex; `tag` is the set's CommandComplete (null when it ended otherwise).
     */
    sets: { columns: string[]; rows: (string | null)[][]; tag: string | null; statement: number }[];
    /** Rows (across all sets) stopped being kept at audit.payload_limit. */
    truncated: boolean;
    /** SHA-256 over every DataRow, COPY OUT CopyData and FunctionCallResponse message (type,
     *  length, body) sent to the client, including what was not kept. A fastpath function's
     *  result is one set with one column named after the function. */
    sha256: string;
  };
  /**
   * NoticeResponse (RAISE NOTICE, WARNING, ...) and NotificationResponse (NOTIFY) messages the
   * client received while the statement ran; absent when there were none. Kept in order while
   * audit.payload_limit lasts (shared with the rows); `statement` is the index of the statement
   * they came under and `after` the number of result messages (rows, COPY data, function results)
   * received before each. `sha256` covers every such message as sent, kept or not, apart from
   * `result.sha256`, which thus still proves the returned data alone.
   */
  messages?: {
    notices: number;
    notifications: number;
    bytes: number;
    kept: (
      | { kind: 'notice'; statement: number; after: number; severity: string; code: string; message: string; detail?: string; hint?: string }
      | { kind: 'notification'; statement: number; after: number; pid: number; channel: string; payload: string }
    )[];
    truncated: boolean;
    sha256: string;
  };
  /**
   * What the client uploaded with COPY FROM STDIN, apart from what came back; absent when it
   * uploaded nothing. `bytes` and `sha256` are over the data itself (the CopyData bodies, in
   * order): for one COPY, `sha256sum` of the file the client sent matches. `rows` counts text
   * lines (the `\.` end marker not counted) or binary COPY tuples; the server's own count is in
   * the `COPY n` command tag. One entry in `copies` per COPY (a Query may run several), its data
   * kept as text, or `\x` hex for binary COPY, while audit.payload_limit lasts.
   */
  upload?: {
    messages: number;
    bytes: number;
    rows: number;
    sha256: string;
    truncated: boolean;
    copies: {
      statement: number;
      format: 'text' | 'binary';
      rows: number;
      bytes: number;
      data: string;
      truncated: boolean;
      /** done: CopyDone; failed: the client sent CopyFail (`failure`: its message, first 1000 characters); null: neither seen. */
      end: 'done' | 'failed' | null;
      failure?: string;
    }[];
  };
  /** Values masked by the plan's transforms and the content detectors, by label (e.g. the column
   *  and rule, `detector:ssn`, `message values`); absent when nothing was masked. */
  masked?: Record<string, number>;
}

/**
 * `audit.pruned` data: what one run of audit retention deleted (src/audit/retention.ts).
 * - `payloads`: the payloads (event_payloads rows) of `count` events recorded before `before`, the
 *   lowest seq `first_seq` and the highest `last_seq`; the events stay, with their payload_sha256,
 *   so the chain still verifies and readers see `payload: null`. Recorded after the delete.
 * - `events`: the whole prefix `first_seq`..`last_seq` of the log (`count` events, with their
 *   payloads), so that it starts at `new_first_seq`, the head that the signed checkpoint at
 *   `anchor_checkpoint_seq` vouches for. Recorded BEFORE the delete (write-ahead): a verifier
 *   accepts a log whose first event lies in first_seq..new_first_seq of such a record.
 */
export type AuditPrunedData =
  | { kind: 'payloads'; before: string; count: number; first_seq: number; last_seq: number }
  | { kind: 'events'; before: string; count: number; first_seq: number; last_seq: number; new_first_seq: number; anchor_checkpoint_seq: number };
