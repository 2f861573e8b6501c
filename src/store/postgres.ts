/**
 * The shared store: PostgreSQL (`pg` Pool), for several gateway replicas on one database.
 *
 * Chain linearity across replicas: an append is one transaction that first takes a
 * transaction-scoped advisory lock (CHAIN_LOCK), then reads the head — in a new statement, so
 * under READ COMMITTED it sees every append committed before the lock was granted — then
 * inserts the sealed batch and commits. The lock is released only after the commit is visible.
 * The primary key on seq is the last line: a writer that bypassed the lock would fail, not fork.
 *
 * Durability: the commit waits for the WAL flush. If the server runs with
 * synchronous_commit=off, the append transaction turns it back on for itself.
 */
import pg from 'pg';
import type { AuditEvent, EventPayload, UnsealedEvent } from '../audit/event.js';
import { StoreError, errorMessage, isHoopError } from '../errors.js';
import { normalizeEventFilter, normalizeInstant, normalizePrune, normalizeSessionFilter, typePrefixPattern, type NormalizedEventFilter } from './filters.js';
import { POSTGRES_MIGRATIONS, pendingMigrations } from './migrations.js';
import { redactSecret, redactUrl } from './redact.js';
import { canonicalJson } from '../audit/chain.js';
import { ACTIVE_GRANT_CANDIDATES, APPROVAL_COLUMNS, approvalOf, pickActiveGrant, decisionRefusal, isoInstant, nextApprovalState, normalizeApprovalFilter, type ApprovalRowBase, type DecisionRow } from './approvals.js';
import { EVENT_COLUMNS, checkedAfterSeq, checkedSeqs, checkedSinkId, payloadOf, sealBatch, type EventRowValues, type PayloadRowValues, pageLimit, pageMaxBytes, pruneResult } from './rows.js';
import { sessionSummaryOf, type SessionRow } from './sessions.js';
import { EVENT_ROW_OVERHEAD, findPageEnd, type ApprovalDecisionInput, type ApprovalDecisionOutcome, type ApprovalFilter, type ApprovalRequest, type CheckpointKeyUse, type EventFilter, type EventPageRequest, type Notification, type NotificationClaim, type NotificationDraft, type SessionDetail, type SessionFilter, type SessionKill, type SessionPageRequest, type SessionSummary, type SinkCursor, type SinkLeaseClaim, type Store, type PayloadPruneRequest, type PruneResult } from './store.js';

/** Advisory lock keys: arbitrary constants that name hoop's audit chain head and its migrations. */
const CHAIN_LOCK = 0x686f6f70_0001n; // "hoop" 1
const MIGRATION_LOCK = 0x686f6f70_0002n; // "hoop" 2
/** Serialises notification claims across replicas (named after the outbox's migration, 5). */
const NOTIFICATION_CLAIM_LOCK = 0x686f6f70_0005n; // "hoop" 5
/** NOTIFY channel of kill requests; the payload is the session id. */
const KILL_CHANNEL = 'hoop_session_kill';
/** NOTIFY channel of approval requests that changed state; the payload is the request id. */
const APPROVAL_CHANNEL = 'hoop_approval';
/** A lost LISTEN connection is reopened after this (the gateways' poll covers the gap). */
const LISTEN_RETRY_MS = 5_000;
const KILL_SELECT = 'SELECT session_id, requested_by, reason, requested_at FROM session_kills';

const NOTIFICATION_COLUMNS = 'id, target, format, body, signed, event, connection, request_id, attempts, next_attempt_at, created_at, delivered_at, dead_at, last_error';
/**
 * Each target's oldest pending row, if due, leased to the caller. Run under
 * NOTIFICATION_CLAIM_LOCK, in a statement after the lock was granted: under READ COMMITTED it
 * sees every claim committed before, so two replicas never claim one row (nor a target's next
 * row while its head is leased to the other).
 */
const NOTIFICATION_CLAIM = `
  WITH heads AS (
    SELECT DISTINCT ON (target) seq, next_attempt_at FROM notifications
     WHERE delivered_at IS NULL AND dead_at IS NULL
     ORDER BY target, seq
  ), due AS (
    SELECT seq FROM heads WHERE next_attempt_at <= $1 ORDER BY seq LIMIT $3
  )
  UPDATE notifications n SET next_attempt_at = $2 FROM due WHERE n.seq = due.seq
  RETURNING n.seq, ${NOTIFICATION_COLUMNS.split(', ').map((c) => `n.${c}`).join(', ')}`;

const SESSION_SELECT = `
  SELECT s.session_id AS id, s.connection, s.actor, s.source, s.data, s.time AS started_at,
         e.time AS ended_at, e.data AS end_data,
         (SELECT count(*) FROM events q WHERE q.session_id = s.session_id AND q.type = 'query.start')::int AS statements
    FROM events s
    LEFT JOIN events e ON e.seq = (SELECT min(x.seq) FROM events x WHERE x.session_id = s.session_id AND x.type = 'session.end')
   WHERE s.type = 'session.start'`;

export interface PostgresStoreOptions {
  /** Pool size; appends serialise on the chain lock, so a few connections are enough. */
  max?: number;
  connectTimeoutMs?: number;
  /**
   * Longest wait for the chain lock (or any lock). An append holds it for a few round trips, so
   * a long wait means a replica is stuck: fail closed with an error rather than hang. Default 30 s.
   */
  lockTimeoutMs?: number;
  /** A replica that dies mid-append loses its transaction (and the lock) after this. Default 60 s. */
  idleInTransactionTimeoutMs?: number;
}

export class PostgresStore implements Store {
  private readonly pool: pg.Pool;
  private readonly label: string;
  private readonly password: string | null;
  private readonly url: string;
  private readonly connectTimeoutMs: number;
  private readonly listeners = new Set<() => Promise<void>>();
  private closed = false;

  constructor(url: string, options: PostgresStoreOptions = {}) {
    this.url = url;
    this.connectTimeoutMs = options.connectTimeoutMs ?? 10_000;
    this.label = redactUrl(url);
    this.password = passwordOf(url);
    this.pool = new pg.Pool({
      connectionString: url,
      max: options.max ?? 5,
      connectionTimeoutMillis: options.connectTimeoutMs ?? 10_000,
      lock_timeout: options.lockTimeoutMs ?? 30_000,
      idle_in_transaction_session_timeout: options.idleInTransactionTimeoutMs ?? 60_000,
      keepAlive: true,
      application_name: 'hoop-store',
    });
    // An idle client whose server went away emits here; without a listener the process dies.
    // The pool drops that client; the next query opens a new one or rejects with StoreError.
    this.pool.on('error', () => {});
  }

  async migrate(): Promise<void> {
    await this.transaction('migrate', async (c) => {
      await c.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK.toString()]);
      await c.query('CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())');
      const { rows } = await c.query<{ version: number }>('SELECT version FROM schema_migrations');
      for (const m of pendingMigrations(POSTGRES_MIGRATIONS, rows.map((r) => r.version), 'PostgreSQL')) {
        for (const sql of m.statements) await c.query(sql);
        await c.query('INSERT INTO schema_migrations (version, name) VALUES ($1, $2)', [m.version, m.name]);
      }
    });
  }

  async appendEvents(events: UnsealedEvent[]): Promise<AuditEvent[]> {
    if (events.length === 0) return [];
    return this.transaction('append audit events', async (c) => {
      await c.query(
        `SELECT pg_advisory_xact_lock($1),
                CASE WHEN current_setting('synchronous_commit') = 'off' THEN set_config('synchronous_commit', 'on', true) END`,
        [CHAIN_LOCK.toString()],
      );
      const { rows } = await c.query<{ seq: string; hash: string }>('SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1');
      const { sealed, rows: eventRows, payloads } = sealBatch(events, rows[0] ? { seq: Number(rows[0].seq), hash: rows[0].hash } : null);
      await insertEvents(c, eventRows, payloads);
      return sealed;
    });
  }

  async head(): Promise<{ seq: number; hash: string } | null> {
    const rows = await this.query<{ seq: string; hash: string }>('read the chain head', 'SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1', []);
    return rows[0] ? { seq: Number(rows[0].seq), hash: rows[0].hash } : null;
  }

  async readEvents(filter: EventFilter): Promise<AuditEvent[]> {
    const f = normalizeEventFilter(filter);
    const { where, params, p } = eventWhere(f);
    const rows = await this.query<PgEventRow>(
      'read audit events',
      `${f.payload ? EVENTS_WITH_PAYLOAD : `SELECT ${EVENT_SELECT} FROM events e`} WHERE ${where} ORDER BY e.seq ${f.newestFirst ? 'DESC' : ''} LIMIT ${p(f.limit)}`,
      params,
    );
    return rows.map(fromRow);
  }

  /** As readSessionEvents: seqs and sizes first, a chunk at a time, then the rows of the page alone. */
  async readEventPage(page: EventPageRequest): Promise<{ events: AuditEvent[]; next: number | null }> {
    const action = 'read audit events';
    const f = normalizeEventFilter({ ...page, payload: page.payload === true });
    const limit = pageLimit(f.limit);
    const maxBytes = pageMaxBytes(page.maxBytes);
    const desc = f.newestFirst;
    const bytes = `${EVENT_ROW_OVERHEAD} + octet_length(e.data::text) + coalesce(octet_length(e.actor::text), 0) + coalesce(octet_length(e.source::text), 0)${
      f.payload ? ' + coalesce((SELECT octet_length(p.payload::text) FROM event_payloads p WHERE p.seq = e.seq), 0)' : ''}`;
    const start = desc ? (f.beforeSeq ?? Number.MAX_SAFE_INTEGER) : f.afterSeq;
    const cut = await findPageEnd(
      async (from, n) => {
        const { where, params, p } = eventWhere(f);
        const sql = `SELECT e.seq, ${bytes} AS bytes FROM events e WHERE ${where} AND e.seq ${desc ? '<' : '>'} ${p(from)} ORDER BY e.seq ${desc ? 'DESC' : ''} LIMIT ${p(Math.max(n, limit + 1))}`; // all of a page's sizes at once
        return (await this.query<{ seq: string; bytes: string }>(action, sql, params)).map((r) => ({ seq: Number(r.seq), bytes: Number(r.bytes) }));
      },
      start, limit, maxBytes,
    );
    if (cut.last === null) return { events: [], next: null };
    const [lo, hi] = desc ? [cut.last, start - 1] : [start + 1, cut.last];
    const { where, params, p } = eventWhere(f);
    const rows = await this.query<PgEventRow>(
      action,
      `${f.payload ? EVENTS_WITH_PAYLOAD : `SELECT ${EVENT_SELECT} FROM events e`} WHERE ${where} AND e.seq BETWEEN ${p(lo)} AND ${p(hi)} ORDER BY e.seq ${desc ? 'DESC' : ''}`,
      params,
    );
    return { events: rows.map(fromRow), next: cut.next };
  }

  /**
   * One statement (its own short transaction): the lowest matching payload rows, at most `limit`
   * and `maxBytes` (pg_column_size: the stored size, read without detoasting), locked with SKIP
   * LOCKED so replicas pruning at once take different rows. A time bound looks only at payloads up
   * to the seq of the newest event before it (the events_time index).
   */
  async prunePayloads(req: PayloadPruneRequest): Promise<PruneResult> {
    const r = normalizePrune(req);
    const params: unknown[] = [];
    const p = (v: unknown): string => (params.push(v), `$${params.length}`);
    const where: string[] = [];
    if (r.before !== null) {
      const before = p(r.before);
      where.push(`e.time < ${before}::timestamptz`, `p.seq <= coalesce((SELECT x.seq FROM events x WHERE x.time < ${before}::timestamptz ORDER BY x.time DESC LIMIT 1), 0)`);
    }
    if (r.beforeSeq !== null) where.push(`p.seq < ${p(r.beforeSeq)}`);
    const rows = await this.query<{ seq: string }>(
      'prune event payloads',
      `WITH picked AS (
         SELECT seq, bytes, sum(bytes) OVER (ORDER BY seq) AS running FROM (
           SELECT p.seq, pg_column_size(p.payload)::bigint AS bytes FROM event_payloads p JOIN events e ON e.seq = p.seq
            WHERE ${where.join(' AND ')} ORDER BY p.seq LIMIT ${p(r.limit)} FOR UPDATE OF p SKIP LOCKED) x)
       DELETE FROM event_payloads WHERE seq IN (SELECT seq FROM picked WHERE running <= ${p(r.maxBytes)} OR running = bytes)
       RETURNING seq`,
      params,
    );
    return pruneResult(rows.map((x) => Number(x.seq)));
  }

  /** One transaction that sets hoop.retention (SET LOCAL) so the append-only trigger lets its DELETE through. */
  async pruneEvents(req: { beforeSeq: number; limit: number }): Promise<PruneResult> {
    const r = normalizePrune(req);
    const rows = await this.transaction('prune audit events', async (c) => {
      await c.query(`SELECT set_config('hoop.retention', 'on', true)`);
      const first = (await c.query<{ first: string | null }>('SELECT min(seq) AS first FROM events')).rows[0]?.first ?? null;
      if (first === null || Number(first) >= r.beforeSeq!) return [];
      const bound = Math.min(r.beforeSeq!, Number(first) + r.limit);
      await c.query('DELETE FROM event_payloads WHERE seq < $1', [bound]);
      return (await c.query<{ seq: string }>('DELETE FROM events WHERE seq < $1 RETURNING seq', [bound])).rows;
    });
    return pruneResult(rows.map((x) => Number(x.seq)));
  }

  async newestCheckpointBefore(before: string): Promise<AuditEvent | null> {
    const at = normalizeInstant('before', before)!;
    const rows = await this.query<PgEventRow>(
      'read checkpoints',
      `SELECT ${EVENT_SELECT} FROM events e WHERE e.type = 'checkpoint' AND e.time < $1::timestamptz ORDER BY e.time DESC LIMIT 1`, // the (type, time) index, backwards
      [at],
    );
    return rows[0] ? fromRow(rows[0]) : null;
  }

  async listSessions(filter: SessionFilter): Promise<SessionSummary[]> {
    const f = normalizeSessionFilter(filter);
    const where: string[] = [];
    const params: unknown[] = [];
    const add = (clause: (n: string) => string, value: unknown): void => {
      params.push(value);
      where.push(clause(`$${params.length}`));
    };
    if (f.subject !== null) add((p) => `(s.actor ->> 'subject') = ${p}`, f.subject);
    if (f.user !== null) {
      add((p) => `((s.actor ->> 'subject') = ${p} OR (s.actor ->> 'subject') = 'apikey:' || ${p} OR lower(s.actor ->> 'email') = lower(${p}))`, f.user);
    }
    if (f.connection !== null) add((p) => `s.connection = ${p}`, f.connection);
    if (f.since !== null) add((p) => `s.time >= ${p}`, f.since);
    if (f.until !== null) add((p) => `s.time < ${p}`, f.until);
    if (f.idPrefix !== null) add((p) => `s.session_id LIKE ${p}`, `${f.idPrefix}%`);
    params.push(f.limit);
    const sql = `${SESSION_SELECT}${where.map((w) => ` AND ${w}`).join('')} ORDER BY s.time DESC, s.seq DESC LIMIT $${params.length}`;
    const rows = await this.query<PgSessionRow>('list sessions', sql, params);
    return rows.map((r) => sessionSummaryOf(toSessionRow(r)));
  }

  async getSession(id: string): Promise<SessionDetail | null> {
    const rows = await this.query<PgSessionRow>('read a session', `${SESSION_SELECT} AND s.session_id = $1 ORDER BY s.seq LIMIT 1`, [id]);
    if (!rows[0]) return null;
    const events = await this.query<PgEventRow>('read a session', `${EVENTS_WITH_PAYLOAD} WHERE e.session_id = $1 ORDER BY e.seq`, [id]);
    return { session: sessionSummaryOf(toSessionRow(rows[0])), events: events.map(fromRow) };
  }

  /**
   * First only seqs and sizes (octet_length of the JSON text), a small chunk at a time along the
   * (session_id, seq) index until the page is full; then that page's rows alone, so the pool
   * never receives more than one page.
   */
  async readSessionEvents(id: string, page: SessionPageRequest): Promise<{ events: AuditEvent[]; next: number | null }> {
    const action = 'read a session';
    const after = page.afterSeq ?? 0;
    const cut = await findPageEnd(
      async (from, n) => (await this.query<{ seq: string; bytes: string }>(
        action,
        `SELECT e.seq, ${EVENT_ROW_OVERHEAD} + octet_length(e.data::text) + coalesce(octet_length(e.actor::text), 0) + coalesce(octet_length(e.source::text), 0)
                + coalesce((SELECT octet_length(p.payload::text) FROM event_payloads p WHERE p.seq = e.seq), 0) AS bytes
           FROM events e WHERE e.session_id = $1 AND e.seq > $2 ORDER BY e.seq LIMIT $3`,
        [id, from, n],
      )).map((r) => ({ seq: Number(r.seq), bytes: Number(r.bytes) })),
      after, page.limit, page.maxBytes,
    );
    if (cut.last === null) return { events: [], next: null };
    const rows = await this.query<PgEventRow>(
      action,
      `${EVENTS_WITH_PAYLOAD} WHERE e.session_id = $1 AND e.seq > $2 AND e.seq <= $3 ORDER BY e.seq LIMIT $4`,
      [id, after, cut.last, cut.count],
    );
    return { events: rows.map(fromRow), next: cut.next };
  }

  async readPayloads(seqs: readonly number[]): Promise<Map<number, EventPayload | null>> {
    const wanted = checkedSeqs(seqs);
    if (wanted.length === 0) return new Map();
    const rows = await this.query<{ seq: string; payload: EventPayload | null }>(
      'read event payloads',
      `SELECT e.seq, p.payload FROM events e LEFT JOIN event_payloads p ON p.seq = e.seq
        WHERE e.seq = ANY($1::bigint[]) AND e.payload_sha256 IS NOT NULL`,
      [wanted],
    );
    return new Map(rows.map((r) => [Number(r.seq), r.payload]));
  }


  async readSinkCursor(sink: string): Promise<SinkCursor | null> {
    const rows = await this.query<PgSinkRow>('read a sink cursor', `SELECT ${SINK_COLUMNS} FROM sink_cursors WHERE sink = $1`, [checkedSinkId(sink)]);
    return rows[0] ? sinkCursorOf(rows[0]) : null;
  }

  /**
   * One INSERT … ON CONFLICT DO UPDATE … WHERE: PostgreSQL locks the conflicting row and tests
   * the WHERE on its latest committed version, so of two replicas claiming at once one gets it.
   */
  async claimSinkLease(c: SinkLeaseClaim): Promise<SinkCursor | null> {
    const action = 'claim a sink lease';
    if (!Number.isSafeInteger(c.startSeq) || c.startSeq < 0) throw new StoreError(`cannot ${action}: startSeq must be a non-negative integer`);
    const rows = await this.query<PgSinkRow>(
      action,
      `INSERT INTO sink_cursors (sink, delivered_seq, updated_at, lease_owner, lease_until) VALUES ($1, $2, $3, $4, $5)
       ON CONFLICT (sink) DO UPDATE SET lease_owner = excluded.lease_owner, lease_until = excluded.lease_until
        WHERE sink_cursors.lease_owner IS NULL OR sink_cursors.lease_owner = excluded.lease_owner OR sink_cursors.lease_until <= $3
       RETURNING ${SINK_COLUMNS}`,
      [checkedSinkId(c.sink), c.startSeq, isoInstant(c.now), c.owner, isoInstant(c.leaseUntil)],
    );
    return rows[0] ? sinkCursorOf(rows[0]) : null;
  }

  async advanceSinkCursor(a: { sink: string; owner: string; deliveredSeq: number; now: string }): Promise<boolean> {
    const action = 'advance a sink cursor';
    if (!Number.isSafeInteger(a.deliveredSeq) || a.deliveredSeq < 0) throw new StoreError(`cannot ${action}: deliveredSeq must be a non-negative integer`);
    const rows = await this.query<{ sink: string }>(
      action,
      'UPDATE sink_cursors SET delivered_seq = $1, updated_at = $2 WHERE sink = $3 AND lease_owner = $4 AND delivered_seq <= $1 RETURNING sink',
      [a.deliveredSeq, isoInstant(a.now), checkedSinkId(a.sink), a.owner],
    );
    return rows.length === 1;
  }

  async releaseSinkLease(sink: string, owner: string): Promise<void> {
    await this.query('release a sink lease', 'UPDATE sink_cursors SET lease_owner = NULL, lease_until = NULL WHERE sink = $1 AND lease_owner = $2', [checkedSinkId(sink), owner]);
  }

  async checkpointKeys(afterSeq: number): Promise<CheckpointKeyUse[]> {
    const rows = await this.query<{ key_id: string | null; public_key: string | null; first_used: Date; last_used: Date; last_seq: string; checkpoints: string }>(
      'read checkpoint keys',
      `SELECT data ->> 'key_id' AS key_id, data ->> 'public_key' AS public_key,
              MIN(time) AS first_used, MAX(time) AS last_used, MAX(seq) AS last_seq, COUNT(*) AS checkpoints
         FROM events WHERE type = 'checkpoint' AND seq > $1 GROUP BY 1, 2 ORDER BY MIN(seq)`,
      [checkedAfterSeq(afterSeq)],
    );
    return rows.map((r) => ({
      key_id: String(r.key_id), public_key: String(r.public_key), first_used: r.first_used.toISOString(), last_used: r.last_used.toISOString(),
      last_seq: Number(r.last_seq), checkpoints: Number(r.checkpoints),
    }));
  }

  async requestKill(kill: SessionKill): Promise<SessionKill> {
    const rows = await this.transaction('request a session kill', async (c) => {
      const inserted = await c.query(
        `INSERT INTO session_kills (session_id, requested_by, reason, requested_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT (session_id) DO NOTHING RETURNING session_id`,
        [kill.session_id, kill.requested_by, kill.reason, kill.requested_at],
      );
      // Delivered at COMMIT, so a woken replica always finds the row.
      if (inserted.rowCount) await c.query('SELECT pg_notify($1, $2)', [KILL_CHANNEL, kill.session_id]);
      return (await c.query<PgKillRow>(`${KILL_SELECT} WHERE session_id = $1`, [kill.session_id])).rows;
    });
    return killOf(rows[0]!);
  }

  async killsFor(sessionIds: readonly string[]): Promise<SessionKill[]> {
    if (sessionIds.length === 0) return [];
    const rows = await this.query<PgKillRow>('read session kills', `${KILL_SELECT} WHERE session_id = ANY($1::text[])`, [sessionIds]);
    return rows.map(killOf);
  }

  async enqueueNotification(n: NotificationDraft): Promise<void> {
    await this.query(
      'store a notification',
      `INSERT INTO notifications (id, target, format, body, signed, event, connection, request_id, next_attempt_at, created_at)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)`,
      [n.id, n.target, n.format, n.body, n.signed, n.event, n.connection, n.request_id, n.created_at],
    );
  }

  async claimNotifications(claim: NotificationClaim): Promise<Notification[]> {
    const rows = await this.transaction('claim notifications', async (c) => {
      await c.query('SELECT pg_advisory_xact_lock($1)', [NOTIFICATION_CLAIM_LOCK.toString()]);
      return (await c.query<PgNotificationRow & { seq: string }>(NOTIFICATION_CLAIM, [claim.now, claim.leaseUntil, claim.limit])).rows;
    });
    return rows.sort((a, b) => Number(a.seq) - Number(b.seq)).map(notificationOf);
  }

  async markNotificationDelivered(id: string, at: string): Promise<void> {
    await this.updateNotification('mark a notification delivered', 'delivered_at = $2', [id, at]);
  }

  async markNotificationFailed(id: string, failure: { error: string; nextAttemptAt: string }): Promise<void> {
    await this.updateNotification('record a failed notification', 'attempts = attempts + 1, last_error = $2, next_attempt_at = $3', [id, failure.error, failure.nextAttemptAt]);
  }

  async markNotificationDead(id: string, failure: { error: string; at: string }): Promise<void> {
    await this.updateNotification('give up a notification', 'attempts = attempts + 1, last_error = $2, dead_at = $3', [id, failure.error, failure.at]);
  }

  async getNotification(id: string): Promise<Notification | null> {
    const rows = await this.query<PgNotificationRow>('read a notification', `SELECT ${NOTIFICATION_COLUMNS} FROM notifications WHERE id = $1`, [id]);
    return rows[0] ? notificationOf(rows[0]) : null;
  }

  /** A pending notification's update ($1 is its id); one already delivered or given up stays as it is. */
  private async updateNotification(action: string, set: string, params: unknown[]): Promise<void> {
    await this.query(action, `UPDATE notifications SET ${set} WHERE id = $1 AND delivered_at IS NULL AND dead_at IS NULL`, params);
  }

  async watchKills(wake: (sessionId: string) => void): Promise<() => Promise<void>> {
    return this.listen(KILL_CHANNEL, 'watch session kills', wake);
  }

  async createApprovalRequest(r: ApprovalRequest): Promise<void> {
    const values = [
      r.id, r.kind, r.connection, r.requester.subject, r.requester.email, r.requester.groups, r.statement, r.fingerprint,
      canonicalJson(r.parameters), r.reason, r.rule, r.estimate, r.duration_ms, r.session_id, 'pending',
      isoInstant(r.created_at), isoInstant(r.expires_at), new Date().toISOString(), r.min_approvals, r.approvers,
    ];
    await this.query('store an approval request', `INSERT INTO approval_requests (${APPROVAL_COLUMNS}) VALUES (${values.map((_, i) => `$${i + 1}`).join(', ')})`, values);
  }

  async getApprovalRequest(id: string): Promise<ApprovalRequest | null> {
    const rows = await this.query<PgApprovalRow>('read an approval request', 'SELECT * FROM approval_requests WHERE id = $1', [id]);
    return (await this.withDecisions('read an approval request', rows))[0] ?? null;
  }

  async listApprovalRequests(filter: ApprovalFilter): Promise<ApprovalRequest[]> {
    const f = normalizeApprovalFilter(filter);
    const params: unknown[] = [];
    const p = (v: unknown): string => (params.push(v), `$${params.length}`);
    const where = ['true'];
    if (f.status !== null) where.push(`status = ANY(${p(f.status)}::text[])`);
    if (f.connection !== null) where.push(`connection = ${p(f.connection)}`);
    if (f.requester !== null) where.push(`requester_subject = ${p(f.requester)}`);
    if (f.approverGroups !== null) where.push(`approvers && ${p(f.approverGroups)}::text[]`);
    const rows = await this.query<PgApprovalRow>(
      'list approval requests',
      `SELECT * FROM approval_requests WHERE ${where.join(' AND ')} ORDER BY created_at DESC, id DESC LIMIT ${p(f.limit)}`,
      params,
    );
    return this.withDecisions('list approval requests', rows);
  }

  /**
   * One transaction: the request row locked (FOR UPDATE), so concurrent decisions on any replica
   * take turns; the decision and the status it leads to are written together, and the NOTIFY is
   * delivered at COMMIT, so a woken holder always finds the new state.
   */
  async recordApprovalDecision(d: ApprovalDecisionInput): Promise<ApprovalDecisionOutcome> {
    const at = isoInstant(d.at);
    return this.transaction('record an approval decision', async (c): Promise<ApprovalDecisionOutcome> => {
      const locked = await c.query<PgApprovalRow>('SELECT * FROM approval_requests WHERE id = $1 FOR UPDATE', [d.id]);
      const request = (await this.withDecisions('record an approval decision', locked.rows, c))[0];
      if (!request) return { ok: false, reason: 'not_found' };
      const refusal = decisionRefusal(request, { ...d, at });
      if (refusal === 'expired') {
        await c.query(`UPDATE approval_requests SET status = 'expired', updated_at = $2 WHERE id = $1`, [d.id, at]);
        await c.query('SELECT pg_notify($1, $2)', [APPROVAL_CHANNEL, d.id]);
        return { ok: false, reason: 'not_pending', request: { ...request, status: 'expired' } };
      }
      if (refusal) return { ok: false, reason: refusal, request };
      const next = nextApprovalState(request, { ...d, at });
      await c.query('INSERT INTO approval_decisions (request_id, approver, decision, comment, at) VALUES ($1, $2, $3, $4, $5)', [d.id, d.approver, d.decision, d.comment, at]);
      await c.query('UPDATE approval_requests SET status = $2, expires_at = $3, updated_at = $4 WHERE id = $1', [d.id, next.status, next.expires_at, at]);
      await c.query('SELECT pg_notify($1, $2)', [APPROVAL_CHANNEL, d.id]);
      return {
        ok: true,
        request: { ...request, status: next.status, expires_at: next.expires_at, approvals: [...request.approvals, { approver: d.approver, decision: d.decision, comment: d.comment, at }] },
      };
    });
  }

  async markApprovalUsed(id: string, at: string): Promise<ApprovalRequest | null> {
    const when = isoInstant(at);
    return (await this.transition('mark an approval used', `status = 'used', updated_at = $1`, `id = $2 AND status = 'approved' AND expires_at > $1`, [when, id]))[0] ?? null;
  }

  async expireApprovalRequests(now: string): Promise<ApprovalRequest[]> {
    return this.transition('expire approval requests', `status = 'expired', updated_at = $1`, `status IN ('pending', 'approved') AND expires_at <= $1`, [isoInstant(now)]);
  }

  async activeGrant(subject: string, connection: string, now: string): Promise<ApprovalRequest | null> {
    const at = isoInstant(now);
    const rows = await this.query<PgApprovalRow>(
      'read active grants',
      `SELECT * FROM approval_requests WHERE kind = 'grant' AND status = 'approved' AND requester_subject = $1 AND connection = $2 AND expires_at > $3
        ORDER BY expires_at DESC, id LIMIT ${ACTIVE_GRANT_CANDIDATES}`,
      [subject, connection, at],
    );
    return pickActiveGrant(await this.withDecisions('read active grants', rows), at);
  }

  async cancelApprovalRequest(id: string, at: string): Promise<ApprovalRequest | null> {
    return (await this.transition('cancel an approval request', `status = 'cancelled', updated_at = $1`, `id = $2 AND status = 'pending'`, [isoInstant(at), id]))[0] ?? null;
  }

  async watchApprovals(wake: (id: string) => void): Promise<() => Promise<void>> {
    return this.listen(APPROVAL_CHANNEL, 'watch approval requests', wake);
  }

  /** One UPDATE … RETURNING and a NOTIFY per changed request, in one transaction. */
  private async transition(action: string, set: string, where: string, params: unknown[]): Promise<ApprovalRequest[]> {
    return this.transaction(action, async (c) => {
      const { rows } = await c.query<PgApprovalRow>(`UPDATE approval_requests SET ${set} WHERE ${where} RETURNING *`, params);
      if (rows.length > 0) await c.query('SELECT pg_notify($1, id) FROM unnest($2::text[]) AS id', [APPROVAL_CHANNEL, rows.map((r) => r.id)]);
      return this.withDecisions(action, rows, c);
    });
  }

  private async withDecisions(action: string, rows: PgApprovalRow[], c?: pg.PoolClient): Promise<ApprovalRequest[]> {
    if (rows.length === 0) return [];
    const sql = 'SELECT request_id, approver, decision, comment, at FROM approval_decisions WHERE request_id = ANY($1::text[]) ORDER BY at, approver';
    const ids = [rows.map((r) => r.id)];
    const decisions = c ? (await c.query<DecisionRow>(sql, ids)).rows : await this.query<DecisionRow>(action, sql, ids);
    return rows.map((r) => approvalOf(r, decisions, (a) => a));
  }

  /**
   * LISTEN on its own connection (a pooled one would be handed to others). If that connection is
   * lost it is reopened after LISTEN_RETRY_MS; meanwhile the gateways' poll still finds changes.
   */
  private async listen(channel: string, action: string, wake: (payload: string) => void): Promise<() => Promise<void>> {
    this.assertOpen(action);
    let client: pg.Client | null = null;
    let retry: NodeJS.Timeout | null = null;
    let stopped = false;
    const listen = async (): Promise<void> => {
      const c = new pg.Client({ connectionString: this.url, connectionTimeoutMillis: this.connectTimeoutMs, application_name: 'hoop-store-listen', keepAlive: true });
      client = c;
      const lost = () => {
        c.removeAllListeners('notification');
        void c.end().catch(() => {});
        if (client === c) client = null;
        if (!stopped && !this.closed && !retry) {
          retry = setTimeout(() => {
            retry = null;
            if (!stopped && !this.closed) listen().catch(lost);
          }, LISTEN_RETRY_MS);
          retry.unref();
        }
      };
      c.on('error', lost);
      c.on('end', lost);
      c.on('notification', (n) => {
        if (n.channel === channel && n.payload) wake(n.payload);
      });
      await c.connect();
      await c.query(`LISTEN ${channel}`);
    };
    try {
      await listen();
    } catch (err) {
      const c = client as pg.Client | null;
      await c?.end().catch(() => {});
      throw this.storeError(action, err);
    }
    const stop = async (): Promise<void> => {
      stopped = true;
      this.listeners.delete(stop);
      if (retry) clearTimeout(retry);
      const c = client as pg.Client | null;
      client = null;
      c?.removeAllListeners('end');
      await c?.end().catch(() => {});
    };
    this.listeners.add(stop);
    return stop;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.all([...this.listeners].map((stop) => stop()));
    await this.pool.end();
  }

  private async query<R extends pg.QueryResultRow>(action: string, sql: string, params: unknown[]): Promise<R[]> {
    this.assertOpen(action);
    try {
      return (await this.pool.query<R>(sql, params)).rows;
    } catch (err) {
      throw this.storeError(action, err);
    }
  }

  /** BEGIN … COMMIT on one pooled connection; any failure rolls back and becomes a StoreError. */
  private async transaction<T>(action: string, work: (c: pg.PoolClient) => Promise<T>): Promise<T> {
    this.assertOpen(action);
    let client: pg.PoolClient;
    try {
      client = await this.pool.connect();
    } catch (err) {
      throw this.storeError(action, err);
    }
    let broken: Error | undefined;
    // A checked-out client has no pool listener: without this, the server going away mid-transaction
    // emits an unhandled 'error' and takes the gateway down. The failing query rejects anyway.
    const onError = (err: Error) => {
      broken = err;
    };
    client.on('error', onError);
    try {
      await client.query('BEGIN');
      const result = await work(client);
      await client.query('COMMIT');
      return result;
    } catch (err) {
      try {
        await client.query('ROLLBACK');
      } catch (rollbackErr) {
        broken = rollbackErr as Error; // the connection is unusable: do not return it to the pool
      }
      throw this.storeError(action, err);
    } finally {
      client.off('error', onError);
      client.release(broken);
    }
  }

  private assertOpen(action: string): void {
    if (this.closed) throw new StoreError(`cannot ${action}: the PostgreSQL store ${this.label} is closed`);
  }

  private storeError(action: string, err: unknown): StoreError {
    if (isHoopError(err) && err instanceof StoreError) return err;
    const code = (err as { code?: unknown }).code;
    const detail = redactSecret(errorMessage(err) || String(code ?? 'unknown error'), this.password);
    return new StoreError(`cannot ${action} in PostgreSQL store ${this.label}: ${detail}`, {
      cause: err,
      hint: typeof code === 'string' && /^E(CONNREFUSED|HOSTUNREACH|NOTFOUND|TIMEDOUT)$/.test(code) ? 'check that the database server is running and reachable' : undefined,
    });
  }
}

/** The WHERE clause (over `events e`) for an event filter; `p` adds a parameter and names it. */
function eventWhere(f: NormalizedEventFilter): { where: string; params: unknown[]; p: (v: unknown) => string } {
  const params: unknown[] = [];
  const p = (v: unknown): string => (params.push(v), `$${params.length}`);
  const where = [`e.seq > ${p(f.afterSeq)}`];
  if (f.beforeSeq !== null) where.push(`e.seq < ${p(f.beforeSeq)}`);
  if (f.since !== null) where.push(`e.time >= ${p(f.since)}::timestamptz`);
  if (f.until !== null) where.push(`e.time < ${p(f.until)}::timestamptz`);
  if (f.types !== null && f.typePrefixes !== null) {
    const any = [
      ...(f.types.length ? [`e.type = ANY(${p(f.types)}::text[])`] : []),
      ...f.typePrefixes.map((prefix) => `e.type LIKE ${p(typePrefixPattern(prefix))} ESCAPE '\\'`),
    ];
    where.push(`(${any.join(' OR ')})`);
  }
  return { where: where.join(' AND '), params, p };
}

async function insertEvents(c: pg.PoolClient, rows: EventRowValues[], payloads: PayloadRowValues[]): Promise<void> {
  // One statement per batch whatever its size: each column travels as one array and unnest pairs them up.
  const columns = rows[0]!.map((_, i) => rows.map((r) => r[i]));
  await c.query(
    `INSERT INTO events (${EVENT_COLUMNS})
     SELECT * FROM unnest($1::bigint[], $2::uuid[], $3::timestamptz[], $4::text[], $5::json[], $6::json[],
                          $7::text[], $8::text[], $9::json[], $10::text[], $11::text[], $12::text[])`,
    columns,
  );
  if (payloads.length === 0) return;
  await c.query(
    'INSERT INTO event_payloads (seq, payload) SELECT * FROM unnest($1::bigint[], $2::json[])',
    [payloads.map((p) => p[0]), payloads.map((p) => p[1])],
  );
}

/** Events with their payloads (NULL where none or pruned); EVENT_COLUMNS qualified as `e`. */
const EVENT_SELECT = EVENT_COLUMNS.split(', ').map((c) => `e.${c}`).join(', ');
const EVENTS_WITH_PAYLOAD = `SELECT ${EVENT_SELECT}, p.payload FROM events e LEFT JOIN event_payloads p ON p.seq = e.seq`;

interface PgEventRow {
  seq: string;
  id: string;
  time: Date;
  type: string;
  actor: AuditEvent['actor'];
  source: AuditEvent['source'];
  connection: string | null;
  session_id: string | null;
  data: Record<string, unknown>;
  prev_hash: string;
  hash: string;
  payload_sha256: string | null;
  /** Present when the read joined event_payloads: null once pruned. */
  payload?: EventPayload | null;
}

function fromRow(r: PgEventRow): AuditEvent {
  return {
    seq: Number(r.seq),
    id: r.id,
    time: r.time.toISOString(),
    type: r.type as AuditEvent['type'],
    actor: r.actor,
    source: r.source,
    connection: r.connection,
    session_id: r.session_id,
    data: r.data,
    ...payloadOf(r.payload_sha256, r.payload, (text) => JSON.parse(text) as EventPayload),
    prev_hash: r.prev_hash,
    hash: r.hash,
  };
}

const SINK_COLUMNS = 'sink, delivered_seq, updated_at, lease_owner, lease_until';

interface PgSinkRow {
  sink: string;
  delivered_seq: string;
  updated_at: Date;
  lease_owner: string | null;
  lease_until: Date | null;
}

function sinkCursorOf(r: PgSinkRow): SinkCursor {
  return { sink: r.sink, delivered_seq: Number(r.delivered_seq), updated_at: r.updated_at.toISOString(), lease_owner: r.lease_owner, lease_until: r.lease_until?.toISOString() ?? null };
}

interface PgKillRow {
  session_id: string;
  requested_by: string;
  reason: string | null;
  requested_at: Date;
}

function killOf(r: PgKillRow): SessionKill {
  return { session_id: r.session_id, requested_by: r.requested_by, reason: r.reason, requested_at: r.requested_at.toISOString() };
}

interface PgSessionRow extends Omit<SessionRow, 'started_at' | 'ended_at'> {
  started_at: Date;
  ended_at: Date | null;
}

function toSessionRow(r: PgSessionRow): SessionRow {
  return { ...r, started_at: r.started_at.toISOString(), ended_at: r.ended_at?.toISOString() ?? null };
}

interface PgNotificationRow extends Omit<Notification, 'format' | 'next_attempt_at' | 'created_at' | 'delivered_at' | 'dead_at'> {
  format: string;
  next_attempt_at: Date;
  created_at: Date;
  delivered_at: Date | null;
  dead_at: Date | null;
}

function notificationOf(r: PgNotificationRow): Notification {
  return {
    id: r.id,
    target: r.target,
    format: r.format as Notification['format'],
    body: r.body,
    signed: r.signed,
    event: r.event,
    connection: r.connection,
    request_id: r.request_id,
    attempts: r.attempts,
    next_attempt_at: r.next_attempt_at.toISOString(),
    created_at: r.created_at.toISOString(),
    delivered_at: r.delivered_at?.toISOString() ?? null,
    dead_at: r.dead_at?.toISOString() ?? null,
    last_error: r.last_error,
  };
}

function passwordOf(url: string): string | null {
  try {
    const p = new URL(url).password;
    return p ? decodeURIComponent(p) : null;
  } catch {
    return null;
  }
}

type PgApprovalRow = ApprovalRowBase<string[]>;
