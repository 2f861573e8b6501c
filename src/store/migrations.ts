/**
 * Versioned schema migrations, one list per dialect, applied in order and recorded in
 * `schema_migrations`. Never edit a released migration: append a new version.
 *
 * The events table is append-only: triggers refuse UPDATE and DELETE (and TRUNCATE on
 * PostgreSQL); since migration 8 a DELETE passes inside audit retention's own transaction only.
 * That is defence in depth for mistakes, not the tamper evidence itself — an administrator can
 * drop a trigger (or do what retention does), and the hash chain and the signed checkpoints are
 * what show that history was changed.
 */

export interface Migration {
  version: number;
  name: string;
  statements: string[];
}

export const SQLITE_MIGRATIONS: Migration[] = [
  {
    version: 1,
    name: 'audit events',
    statements: [
      `CREATE TABLE events (
        seq INTEGER PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        time TEXT NOT NULL,
        type TEXT NOT NULL,
        actor TEXT,
        source TEXT,
        connection TEXT,
        session_id TEXT,
        data TEXT NOT NULL,
        prev_hash TEXT NOT NULL,
        hash TEXT NOT NULL
      ) STRICT`,
      'CREATE INDEX events_session ON events (session_id, type)',
      'CREATE INDEX events_type_time ON events (type, time)',
      'CREATE INDEX events_time ON events (time)',
      `CREATE INDEX events_session_start_subject ON events (json_extract(actor, '$.subject'), time) WHERE type = 'session.start'`,
      `CREATE INDEX events_session_start_connection ON events (connection, time) WHERE type = 'session.start'`,
      `CREATE TRIGGER events_no_update BEFORE UPDATE ON events BEGIN SELECT RAISE(ABORT, 'audit events are append-only'); END`,
      `CREATE TRIGGER events_no_delete BEFORE DELETE ON events BEGIN SELECT RAISE(ABORT, 'audit events are append-only'); END`,
    ],
  },
  {
    version: 2,
    name: 'session kills',
    statements: [
      // Requests to end a live session; the audit record of each is the session.kill event.
      `CREATE TABLE session_kills (
        session_id TEXT PRIMARY KEY,
        requested_by TEXT NOT NULL,
        reason TEXT,
        requested_at TEXT NOT NULL
      ) STRICT`,
    ],
  },
  {
    version: 3,
    name: 'session events in order',
    // A session's events are read a page at a time in seq order (GET /api/v1/sessions/{id}).
    statements: ['CREATE INDEX events_session_seq ON events (session_id, seq)'],
  },
  {
    version: 4,
    name: 'approval requests',
    statements: [
      // One row per request; `parameters` is canonical JSON text, so equal parameters are equal
      // strings (an approval is bound to them). `requester_groups` and `approvers` are JSON arrays.
      `CREATE TABLE approval_requests (
        id TEXT PRIMARY KEY,
        kind TEXT NOT NULL CHECK (kind IN ('statement', 'grant')),
        connection TEXT NOT NULL,
        requester_subject TEXT NOT NULL,
        requester_email TEXT,
        requester_groups TEXT NOT NULL,
        statement TEXT,
        fingerprint TEXT,
        parameters TEXT NOT NULL,
        reason TEXT,
        rule TEXT,
        estimate REAL,
        duration_ms INTEGER,
        session_id TEXT,
        status TEXT NOT NULL CHECK (status IN ('pending', 'approved', 'denied', 'expired', 'cancelled', 'used')),
        created_at TEXT NOT NULL,
        expires_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        min_approvals INTEGER NOT NULL,
        approvers TEXT NOT NULL
      ) STRICT`,
      `CREATE INDEX approval_requests_open ON approval_requests (connection, created_at) WHERE status IN ('pending', 'approved')`,
      'CREATE INDEX approval_requests_requester ON approval_requests (requester_subject, created_at)',
      'CREATE INDEX approval_requests_created ON approval_requests (created_at)',
      `CREATE INDEX approval_requests_deadline ON approval_requests (expires_at) WHERE status IN ('pending', 'approved')`,
      // One decision per approver and request: the primary key refuses a second.
      `CREATE TABLE approval_decisions (
        request_id TEXT NOT NULL REFERENCES approval_requests (id),
        approver TEXT NOT NULL,
        decision TEXT NOT NULL CHECK (decision IN ('approve', 'deny')),
        comment TEXT,
        at TEXT NOT NULL,
        PRIMARY KEY (request_id, approver)
      ) STRICT`,
    ],
  },
  {
    version: 5,
    name: 'notification outbox',
    statements: [
      // Approver notifications waiting for, or done with, delivery (src/gateway/notify.ts). seq
      // orders them per target; times are RFC 3339 UTC text, which compares in time order.
      `CREATE TABLE notifications (
        seq INTEGER PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        target TEXT NOT NULL,
        format TEXT NOT NULL,
        body TEXT NOT NULL,
        signed INTEGER NOT NULL,
        event TEXT NOT NULL,
        connection TEXT,
        request_id TEXT,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at TEXT NOT NULL,
        created_at TEXT NOT NULL,
        delivered_at TEXT,
        dead_at TEXT,
        last_error TEXT
      ) STRICT`,
      // The pending ones: each target's oldest, and whether it is due.
      'CREATE INDEX notifications_pending ON notifications (target, seq, next_attempt_at) WHERE delivered_at IS NULL AND dead_at IS NULL',
    ],
  },
  {
    version: 6,
    name: 'event payloads',
    statements: [
      // The bulky part of an event (src/audit/event.ts EventPayload) lives apart from the
      // append-only events table, so retention can delete it; the event keeps its hash.
      'ALTER TABLE events ADD COLUMN payload_sha256 TEXT',
      `CREATE TABLE event_payloads (
        seq INTEGER PRIMARY KEY,
        payload TEXT NOT NULL
      ) STRICT`,
    ],
  },
  {
    version: 7,
    name: 'sink cursors',
    statements: [
      // Each SIEM sink's durable position in the log (src/audit/sinks/deliverer.ts) and the lease
      // of the gateway delivering to it. Times are RFC 3339 UTC text, which compares in time order.
      `CREATE TABLE sink_cursors (
        sink TEXT PRIMARY KEY,
        delivered_seq INTEGER NOT NULL,
        updated_at TEXT NOT NULL,
        lease_owner TEXT,
        lease_until TEXT
      ) STRICT`,
    ],
  },
  {
    version: 8,
    name: 'audit retention',
    statements: [
      // Audit retention deletes whole prefixes of the log (src/audit/retention.ts). The delete
      // trigger lets a DELETE through only while this one-row flag is set, which the prune
      // transaction does, and clears, within itself: no other connection ever sees it set.
      `CREATE TABLE retention_guard (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        open INTEGER NOT NULL CHECK (open IN (0, 1))
      ) STRICT`,
      'INSERT INTO retention_guard (id, open) VALUES (1, 0)',
      'DROP TRIGGER events_no_delete',
      `CREATE TRIGGER events_no_delete BEFORE DELETE ON events WHEN (SELECT open FROM retention_guard WHERE id = 1) IS NOT 1
        BEGIN SELECT RAISE(ABORT, 'audit events are append-only'); END`,
    ],
  },
];

export const POSTGRES_MIGRATIONS: Migration[] = [
  {
    version: 1,
    name: 'audit events',
    statements: [
      // json, not jsonb: json keeps the text as written (jsonb refuses \u0000, which a recorded
      // result may contain); verification recomputes canonical JSON from the parsed values anyway.
      `CREATE TABLE events (
        seq bigint PRIMARY KEY,
        id uuid NOT NULL UNIQUE,
        time timestamptz NOT NULL,
        type text NOT NULL,
        actor json,
        source json,
        connection text,
        session_id text,
        data json NOT NULL,
        prev_hash char(64) NOT NULL,
        hash char(64) NOT NULL
      )`,
      'CREATE INDEX events_session ON events (session_id, type)',
      'CREATE INDEX events_type_time ON events (type, time)',
      'CREATE INDEX events_time ON events (time)',
      `CREATE INDEX events_session_start_subject ON events ((actor ->> 'subject'), time) WHERE type = 'session.start'`,
      `CREATE INDEX events_session_start_connection ON events (connection, time) WHERE type = 'session.start'`,
      `CREATE FUNCTION hoop_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION 'audit events are append-only'; END $$`,
      `CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON events
        FOR EACH ROW EXECUTE FUNCTION hoop_events_append_only()`,
      `CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON events
        FOR EACH STATEMENT EXECUTE FUNCTION hoop_events_append_only()`,
    ],
  },
  {
    version: 2,
    name: 'session kills',
    statements: [
      // Requests to end a live session, for whichever replica holds it (NOTIFY hoop_session_kill
      // wakes them); the audit record of each is the session.kill event.
      `CREATE TABLE session_kills (
        session_id text PRIMARY KEY,
        requested_by text NOT NULL,
        reason text,
        requested_at timestamptz NOT NULL
      )`,
    ],
  },
  {
    version: 3,
    name: 'session events in order',
    // A session's events are read a page at a time in seq order (GET /api/v1/sessions/{id}).
    statements: ['CREATE INDEX events_session_seq ON events (session_id, seq)'],
  },
  {
    version: 4,
    name: 'approval requests',
    statements: [
      // One row per request, for whichever replica holds the statement (NOTIFY hoop_approval
      // wakes them); `parameters` is canonical JSON text, so equal parameters are equal strings.
      `CREATE TABLE approval_requests (
        id text PRIMARY KEY,
        kind text NOT NULL CHECK (kind IN ('statement', 'grant')),
        connection text NOT NULL,
        requester_subject text NOT NULL,
        requester_email text,
        requester_groups text[] NOT NULL,
        statement text,
        fingerprint text,
        parameters text NOT NULL,
        reason text,
        rule text,
        estimate double precision,
        duration_ms bigint,
        session_id text,
        status text NOT NULL CHECK (status IN ('pending', 'approved', 'denied', 'expired', 'cancelled', 'used')),
        created_at timestamptz NOT NULL,
        expires_at timestamptz NOT NULL,
        updated_at timestamptz NOT NULL,
        min_approvals integer NOT NULL,
        approvers text[] NOT NULL
      )`,
      `CREATE INDEX approval_requests_open ON approval_requests (connection, created_at) WHERE status IN ('pending', 'approved')`,
      'CREATE INDEX approval_requests_requester ON approval_requests (requester_subject, created_at)',
      'CREATE INDEX approval_requests_created ON approval_requests (created_at)',
      `CREATE INDEX approval_requests_deadline ON approval_requests (expires_at) WHERE status IN ('pending', 'approved')`,
      `CREATE TABLE approval_decisions (
        request_id text NOT NULL REFERENCES approval_requests (id),
        approver text NOT NULL,
        decision text NOT NULL CHECK (decision IN ('approve', 'deny')),
        comment text,
        at timestamptz NOT NULL,
        PRIMARY KEY (request_id, approver)
      )`,
    ],
  },
  {
    version: 5,
    name: 'notification outbox',
    statements: [
      // Approver notifications waiting for, or done with, delivery (src/gateway/notify.ts);
      // seq orders them per target.
      `CREATE TABLE notifications (
        seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        id text NOT NULL UNIQUE,
        target text NOT NULL,
        format text NOT NULL,
        body text NOT NULL,
        signed boolean NOT NULL,
        event text NOT NULL,
        connection text,
        request_id text,
        attempts integer NOT NULL DEFAULT 0,
        next_attempt_at timestamptz NOT NULL,
        created_at timestamptz NOT NULL,
        delivered_at timestamptz,
        dead_at timestamptz,
        last_error text
      )`,
      // The pending ones: each target's oldest, and whether it is due.
      'CREATE INDEX notifications_pending ON notifications (target, seq, next_attempt_at) WHERE delivered_at IS NULL AND dead_at IS NULL',
    ],
  },
  {
    version: 6,
    name: 'event payloads',
    statements: [
      // The bulky part of an event (src/audit/event.ts EventPayload) lives apart from the
      // append-only events table, so retention can delete it; the event keeps its hash. json, as
      // events.data: the text as written.
      'ALTER TABLE events ADD COLUMN payload_sha256 char(64)',
      `CREATE TABLE event_payloads (
        seq bigint PRIMARY KEY,
        payload json NOT NULL
      )`,
    ],
  },
  {
    version: 7,
    name: 'sink cursors',
    statements: [
      // Each SIEM sink's durable position in the log (src/audit/sinks/deliverer.ts) and the lease
      // of the replica delivering to it: one replica per sink at a time.
      `CREATE TABLE sink_cursors (
        sink text PRIMARY KEY,
        delivered_seq bigint NOT NULL,
        updated_at timestamptz NOT NULL,
        lease_owner text,
        lease_until timestamptz
      )`,
    ],
  },
  {
    version: 8,
    name: 'audit retention',
    statements: [
      // Audit retention deletes whole prefixes of the log (src/audit/retention.ts): a DELETE passes
      // only in a transaction that ran SET LOCAL hoop.retention = 'on' (the prune transaction).
      // UPDATE and TRUNCATE are refused as before.
      `CREATE OR REPLACE FUNCTION hoop_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          IF TG_OP = 'DELETE' AND current_setting('hoop.retention', true) = 'on' THEN RETURN OLD; END IF;
          RAISE EXCEPTION 'audit events are append-only';
        END $$`,
    ],
  },
];

/** The versions a store has not applied yet; refuses a schema newer than this build knows. */
export function pendingMigrations(all: Migration[], applied: number[], backend: string): Migration[] {
  const latest = all[all.length - 1]?.version ?? 0;
  const newest = Math.max(0, ...applied);
  if (newest > latest) {
    throw new Error(`the ${backend} store has schema version ${newest}, newer than this hoop knows (${latest}); upgrade hoop`);
  }
  const done = new Set(applied);
  return all.filter((m) => !done.has(m.version));
}
