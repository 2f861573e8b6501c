/**
 * The JSON shapes of the gateway's HTTP API (`/api/v1`, described for others in
 * `/api/v1/openapi.json`): what the gateway's routes send and what the CLI and its client read.
 * Both sides take them from here, so neither the CLI nor the client imports the store or the
 * gateway to learn what a response looks like.
 */
import type { AuditEvent, AuditPrunedData } from '../audit/event.js';

export type { AuditEvent, AuditPrunedData };

/** `GET /api/v1/auth/config`: how to log in to this gateway. */
export type AuthConfig =
  | { issuer: string; client_id: string; audience: string | null; scopes: string[] }
  | { oidc: null };

/** `GET /api/v1/me`: the identity the gateway established from the bearer credential. */
export interface MeInfo {
  subject: string;
  email: string | null;
  name?: string | null;
  groups: string[];
  method?: string;
  [key: string]: unknown;
}

/** One element of `GET /api/v1/connections`. */
export interface ConnectionInfo {
  name: string;
  type: string;
  database: string;
  /** Groups that may connect. */
  access: string[];
  /** Whether the calling identity may connect now: one of its groups is in `access`, or it has an open grant (`grant`). */
  allowed: boolean;
  /** Some access rule may hold the caller's statements for approval (the same as `approval.holds`). */
  requires_approval: boolean;
  /** Sessions must say why (`hoop connect --reason`, X-Hoop-Reason): `require_reason` in the config. */
  requires_reason: boolean;
  /** The connection's `masking` block as it applies to the caller (absent from older gateways). */
  masking?: ConnectionMasking;
  /** The connection's access rules as they apply to the caller (absent from older gateways). */
  approval?: ConnectionApproval;
  /** Time-bound access as it applies to the caller (absent from older gateways). */
  grant?: ConnectionGrant;
  /** The gateway's own PostgreSQL listener for this connection (`postgres_listen`; `hoop connect
   *  --print-native`), or null when there is none (absent from older gateways). */
  postgres_listen?: NativeListenInfo | null;
  /** Reached through `hoop agent`s of this name (`agent:` in the config): whether one is connected
   *  to this gateway now, and how many links are up; null: reached directly (absent from older gateways). */
  agent?: ConnectionAgent | null;
}

export interface ConnectionAgent {
  name: string;
  /** At least one agent of this name holds a link to this gateway now (with `workers: N`: to every worker). */
  online: boolean;
  /** Live links of this name to this gateway (with `workers: N`: over all workers). */
  links: number;
  /** Only with `workers: N`: the workers, and how many of them hold a link. */
  workers?: { count: number; linked: number };
}

/** Where a client reaches the gateway's native PostgreSQL listener. */
export interface NativeListenInfo {
  /** The listen address, or for a wildcard one the host the API was reached at. */
  host: string;
  port: number;
  /** TLS is offered (the gateway's `tls` certificate); without it only loopback clients may log in. */
  tls: boolean;
}

export interface ConnectionGrant {
  /** The caller may connect only inside an approved grant (`access_by_grant`, not `access`): `hoop request <name> --duration …`. */
  required: boolean;
  /** The grant open now (`r-…`), or null; `allowed` is true while there is one. */
  request: string | null;
  /** When it ends (sessions under it are ended then), or null. */
  active_until: string | null;
  /** The longest grant a request may ask for (`approval.grant_max`). */
  max_duration_ms: number | null;
}

export interface ConnectionApproval {
  /** Some rule that applies to the caller says require_approval: statements may be held. */
  holds: boolean;
  /** The rules that apply to the caller, in order (the first matching one decides a statement). */
  rules: { name: string; action: 'allow' | 'deny' | 'require_approval' }[];
}

export interface ConnectionMasking {
  /** The connection has a `masking` block (protected columns, content detectors, or both). */
  enabled: boolean;
  /** The caller is in one of its `exempt` groups: they see clear values (and that is recorded). */
  exempt: boolean;
  /** How many `masking.columns` rules it has. */
  columns: number;
  /** The content detectors that run over what leaves. */
  detectors: string[];
}

/** What changed between two configs: names and rule summaries only, never a secret. */
export interface ConfigChanges {
  connections: { added: string[]; removed: string[]; changed: string[] };
  /** Per connection whose masking changed: rules as `schema.table.column: type method [keep N]`, settings as `key: old -> new`. */
  masking: Record<string, { added: string[]; removed: string[]; changed: string[] }>;
  /** Per connection whose approval block changed: access rules as `name: action [for groups] when conditions`, settings as `key: old -> new` (never a webhook URL or secret). */
  approval: Record<string, { added: string[]; removed: string[]; changed: string[] }>;
  api_keys: { added: string[]; removed: string[]; changed: string[] };
  /** Agent names whose keys changed: a key added, removed or replaced (names only, never a hash). */
  agents: string[];
  /** The role lists (`admin`, `auditor`) that changed. */
  roles: string[];
  trusted_proxies: boolean;
  /** Keys that changed in the file but take effect only at the next start (the running values stay). */
  needs_restart: string[];
}

/** `POST /api/v1/admin/reload` (admins): the config file was read again and applied. */
export interface ReloadResult {
  reloaded: true;
  /** The `config.loaded` fingerprint of the file now in effect. */
  sha256: string;
  changes: ConfigChanges;
  needs_restart: string[];
}

/** An event type (`access.denied`) or a family of them (`auth.*`), as `?type=` and `--type` take them. */
export const EVENT_TYPE_PATTERN = /^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*(\.\*)?$/;

/** `GET /api/v1/audit/events`: events newest first, as recorded (auditors and admins only). */
export type AuditEventList = AuditEvent[];

/**
 * `GET /api/v1/audit/keys`: a key that signs or signed the log's checkpoints (any signed-in
 * identity: the keys are public). `active`: this gateway's audit.signing_key; `retired`: listed
 * in audit.previous_keys; `unknown`: found in checkpoints but neither (another replica's key, or
 * a retired key no longer listed). First and last use are the times of the checkpoint events it
 * signed (null: none yet).
 */
export interface AuditKey {
  key_id: string;
  algorithm: 'Ed25519';
  /** SPKI PEM (-----BEGIN PUBLIC KEY-----). */
  pem: string;
  status: 'active' | 'retired' | 'unknown';
  first_used: string | null;
  last_used: string | null;
}

/** One recorded session, summarised from its events: an element of `GET /api/v1/sessions`. */
export interface SessionSummary {
  id: string;
  connection: string;
  subject: string;
  email: string | null;
  groups: string[];
  source_address: string | null;
  client_application: string | null;
  started_at: string;
  ended_at: string | null;
  /** Number of `query.start` events in the session. */
  statements: number;
  /** From `session.end`: why it ended (client closed, upstream closed, error, limit). */
  end_reason: string | null;
  /** From `session.start`: why the session was opened (`hoop connect --reason`, X-Hoop-Reason). */
  reason: string | null;
}

/** A whole session id (the gateway makes them with randomUUID); a shorter start of one is a prefix to look up. */
export const FULL_SESSION_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** The answer to POST /api/v1/sessions/{id}/kill: the request as stored, and whether the session has ended yet. */
export interface SessionKillResult {
  session_id: string;
  requested_by: string;
  reason: string | null;
  requested_at: string;
  /** null (HTTP 202): requested, the gateway holding the session has not recorded its end yet. */
  ended_at: string | null;
}

/**
 * `GET /api/v1/sessions/{id}[?after=<seq>&limit=<n>]`: the session and one page of its events in
 * order (bounded by count and bytes); `next` is the `after` of the following page, or null.
 */
export interface SessionDetail {
  session: SessionSummary;
  /** `redacted`: the `data` fields the gateway withheld from this caller (operator-only detail). */
  events: (AuditEvent & { redacted?: string[] })[];
  /** Absent from gateways that send whole sessions. */
  next?: number | null;
}

/** Where an approval request stands. `used`: an approved request whose statement ran (once). */
export type RequestStatus = 'pending' | 'approved' | 'denied' | 'expired' | 'cancelled' | 'used';
export const REQUEST_STATUSES: readonly RequestStatus[] = ['pending', 'approved', 'denied', 'expired', 'cancelled', 'used'];

/** One approver's decision on a request. */
export interface ApprovalDecision {
  /** The approver's subject. */
  approver: string;
  decision: 'approve' | 'deny';
  comment: string | null;
  at: string;
}

/**
 * An approval request (`hoop reviews`, `GET /api/v1/reviews/{id}`, `GET /api/v1/requests/{id}`):
 * a held statement (`kind: statement` with a `session_id`), a statement asked for ahead of time
 * (`hoop request --query`: no session), or time-bound access (`kind: grant`, `duration_ms`).
 */
export interface ApprovalRequest {
  /** `r-` and 8 hex digits. */
  id: string;
  kind: 'statement' | 'grant';
  connection: string;
  requester: { subject: string; email: string | null; groups: string[] };
  statement: string | null;
  /** libpg-query's fingerprint of the statement: what an approval is bound to, with `parameters`. */
  fingerprint: string | null;
  parameters: unknown[];
  reason: string | null;
  rule: string | null;
  estimate: number | null;
  duration_ms: number | null;
  session_id: string | null;
  status: RequestStatus;
  created_at: string;
  /** Pending: the decision deadline. Approved: until when it may be used (or a grant lasts). */
  expires_at: string;
  approvals: ApprovalDecision[];
  min_approvals: number;
  /** Groups whose members may decide (admins may too). */
  approvers: string[];
}

/** A well-formed request id. */
export const APPROVAL_REQUEST_ID = /^r-[0-9a-f]{8}$/;
export { dataWithPayload } from '../audit/payload.js';
