/**
 * The embedded store: one SQLite file (better-sqlite3), for a single gateway.
 *
 * better-sqlite3 is synchronous, and a durable commit waits for an fsync (milliseconds): on the
 * gateway's main thread that would stop every session's bytes for its duration. So the connection
 * lives in a worker thread (`sqlite-worker.mjs`) and this class only sends it work. Reads go there
 * too: one connection serves `sqlite::memory:` as well as files, and a long read (a big session
 * listing, an export page) no longer stalls the event loop either; they queue behind at most the
 * append in flight.
 *
 * Durability: WAL with synchronous=FULL, so a commit returns only after the WAL is fsynced, and
 * appendEvents resolves only after the worker reports the commit.
 * Chain linearity: this thread seals events (`sealEvent`) on the head it last saw; the worker
 * inserts them in a BEGIN IMMEDIATE transaction only if, under the write lock, the head is still
 * that one. Otherwise nothing is written, the worker reports the real head, and the batch is
 * sealed again on it. Other connections (even other processes on the same file) therefore never
 * fork the chain; with one gateway on a file the guess is always right.
 * Checkpoints: a second thread (sqlite-checkpointer.mjs) copies the WAL into the file, so the
 * writer's commits only append to the WAL; the writer's own autocheckpoint is a far-off backstop.
 * Fail closed: if the worker dies, every pending call rejects with StoreError, and so does every
 * later one until a new worker has opened the file again (after 1 s, backing off to 30 s). What
 * the dead worker may have committed is read back: the next append seals on the real head.
 */
import { Worker } from 'node:worker_threads';
import { EncodedEvent, canonicalJson } from '../audit/chain.js';
import type { AuditEvent, EventPayload, UnsealedEvent } from '../audit/event.js';
import { StoreError, errorMessage } from '../errors.js';
import { normalizeEventFilter, normalizeSessionFilter, typePrefixPattern, normalizeInstant, normalizePrune, type NormalizedEventFilter } from './filters.js';
import { EVENT_COLUMNS, checkedAfterSeq, checkedSeqs, checkedSinkId, payloadOf, sealBatch, pageLimit, pageMaxBytes, pruneResult } from './rows.js';
import { ACTIVE_GRANT_CANDIDATES, APPROVAL_COLUMNS, approvalOf, pickActiveGrant, decisionRefusal, isoInstant, nextApprovalState, normalizeApprovalFilter, type ApprovalRowBase, type DecisionRow } from './approvals.js';
import { SQLITE_MIGRATIONS, pendingMigrations } from './migrations.js';
import { sessionSummaryOf, type SessionRow } from './sessions.js';
import { EVENT_ROW_OVERHEAD, findPageEnd, type ApprovalDecisionInput, type ApprovalDecisionOutcome, type ApprovalFilter, type ApprovalRequest, type CheckpointKeyUse, type EventFilter, type EventPageRequest, type Notification, type NotificationClaim, type NotificationDraft, type SessionDetail, type SessionFilter, type SessionKill, type SessionPageRequest, type SessionSummary, type SinkCursor, type SinkLeaseClaim, type Store, type PayloadPruneRequest, type PruneResult } from './store.js';

const BUSY_TIMEOUT_MS = 10_000;
/** How long an append keeps re-sealing while other writers move the head before it gives up. */
const CONTENDED_APPEND_MS = BUSY_TIMEOUT_MS;

const WORKER_URL = new URL('./sqlite-worker.mjs', import.meta.url);
const CHECKPOINTER_URL = new URL('./sqlite-checkpointer.mjs', import.meta.url);
/** How often the checkpoint thread moves the WAL's new pages into the file (sqlite-checkpointer.mjs). */
const CHECKPOINT_INTERVAL_MS = 200;
/** The writer's own checkpoint mark while that thread runs: only if it falls behind (80 MB of WAL at 4 KB pages). */
const WRITER_AUTOCHECKPOINT_PAGES = 20_000;
/** First wait before replacing a worker that died, doubled after each failed start up to the cap. */
const RESTART_DELAY_MS = 1_000;
const RESTART_DELAY_MAX_MS = 30_000;

interface EventRow {
  seq: number;
  id: string;
  time: string;
  type: string;
  actor: string | null;
  source: string | null;
  connection: string | null;
  session_id: string | null;
  data: string;
  prev_hash: string;
  hash: string;
  payload_sha256: string | null;
  /** From event_payloads, when the read joined it: null once pruned. */
  payload?: string | null;
}

type Head = { seq: number; hash: string };

const HEAD_SQL = 'SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1';
const INSERT_SQL = `INSERT INTO events (${EVENT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`;
const INSERT_PAYLOAD_SQL = 'INSERT INTO event_payloads (seq, payload) VALUES (?, ?)';
/** Events with their payloads (NULL where none or pruned), as `e`. */
const EVENTS_WITH_PAYLOAD = 'SELECT e.*, p.payload FROM events e LEFT JOIN event_payloads p ON p.seq = e.seq';
const APPLIED_SQL = 'SELECT version FROM schema_migrations ORDER BY version';
const FIRST_SEQ_SQL = 'SELECT min(seq) AS first FROM events';

const SESSION_SELECT = `
  SELECT s.session_id AS id, s.connection, s.actor, s.source, s.data, s.time AS started_at,
         e.time AS ended_at, e.data AS end_data,
         (SELECT count(*) FROM events q WHERE q.session_id = s.session_id AND q.type = 'query.start') AS statements
    FROM events s
    LEFT JOIN events e ON e.seq = (SELECT min(x.seq) FROM events x WHERE x.session_id = s.session_id AND x.type = 'session.end')
   WHERE s.type = 'session.start'`;

const KILL_SELECT = 'SELECT session_id, requested_by, reason, requested_at FROM session_kills';

const NOTIFICATION_COLUMNS = 'id, target, format, body, signed, event, connection, request_id, attempts, next_attempt_at, created_at, delivered_at, dead_at, last_error';
/** Neither delivered nor given up. */
const NOTIFICATION_PENDING = 'delivered_at IS NULL AND dead_at IS NULL';
/**
 * One statement, so SQLite's write lock makes choice and claim one step: each target's oldest
 * pending row, if due, moves its next_attempt_at to the lease end and is returned.
 */
const NOTIFICATION_CLAIM = `
  UPDATE notifications SET next_attempt_at = ?
   WHERE seq IN (
     SELECT n.seq FROM notifications n
      WHERE n.delivered_at IS NULL AND n.dead_at IS NULL AND n.next_attempt_at <= ?
        AND NOT EXISTS (SELECT 1 FROM notifications o WHERE o.target = n.target AND o.seq < n.seq AND o.delivered_at IS NULL AND o.dead_at IS NULL)
      ORDER BY n.seq LIMIT ?)
  RETURNING seq, ${NOTIFICATION_COLUMNS}`;

const SINK_COLUMNS = 'sink, delivered_seq, updated_at, lease_owner, lease_until';
/** Creates the cursor, or takes its lease if free, expired or already the caller's; returns nothing if another holds it. */
const SINK_CLAIM = `
  INSERT INTO sink_cursors (sink, delivered_seq, updated_at, lease_owner, lease_until) VALUES (?, ?, ?, ?, ?)
  ON CONFLICT (sink) DO UPDATE SET lease_owner = excluded.lease_owner, lease_until = excluded.lease_until
   WHERE sink_cursors.lease_owner IS NULL OR sink_cursors.lease_owner = excluded.lease_owner OR sink_cursors.lease_until <= ?
  RETURNING ${SINK_COLUMNS}`;

/** A transaction for the worker: under the write lock, `guard` must still return `expect`. */
interface WriteRequest {
  guard?: { sql: string; params?: unknown[]; expect: unknown[] };
  steps: { sql: string; rows: (unknown[] | object)[] }[];
}

type Reply = { id: number; ok: true; value: unknown } | { id: number; ok: false; conflict: unknown[] } | { id: number; ok: false; error: { message: string; code: string | null } };

interface Call {
  resolve(reply: Reply): void;
  reject(err: StoreError): void;
}

export class SqliteStore implements Store {
  private worker!: Worker;
  private readonly calls = new Map<number, Call>();
  private nextId = 1;
  /** Set while no worker can take work: why every call now fails. */
  private failure: StoreError | null = null;
  private closing: Promise<void> | null = null;
  private opened!: Promise<void>;
  /** A worker has opened the file once: a later death is an outage to recover from, not a bad path. */
  private everOpened = false;
  private restartTimer: NodeJS.Timeout | null = null;
  private restartDelayMs = RESTART_DELAY_MS;
  /** The head this store last saw; sealing starts from it (null: empty log, undefined: unknown). */
  private knownHead: Head | null | undefined = undefined;
  /** Appends run one at a time: each seals on the head the previous one left. */
  private appendTail: Promise<unknown> = Promise.resolve();
  private readonly inflight = new Set<Promise<Reply>>();
  private checkpointer: Worker | null = null;
  /** Checkpoints the checkpoint thread made that moved pages (for tests). */
  checkpoints = 0;
  /** watchApprovals callers: one gateway per file, so a change made here is all there is to hear. */
  private readonly approvalWatchers = new Set<(id: string) => void>();

  /** `path` is a file path or `:memory:`. Use `openStore()` for parent directories and file mode. */
  constructor(readonly path: string) {
    this.startWorker();
  }

  private startWorker(): void {
    let worker: Worker;
    try {
      worker = new Worker(WORKER_URL, {
        workerData: { path: this.path, busyTimeoutMs: BUSY_TIMEOUT_MS, autocheckpointPages: this.path === ':memory:' ? null : WRITER_AUTOCHECKPOINT_PAGES },
        name: 'hoop-sqlite',
      });
    } catch (err) {
      throw new StoreError(`cannot open SQLite store ${this.path}: its thread did not start: ${errorMessage(err)}`, { cause: err });
    }
    this.worker = worker;
    worker.unref(); // referenced only while calls are in flight (see send)
    worker.on('message', (reply: Reply) => this.settle(reply));
    worker.on('error', (err) => this.fail(worker, `its thread crashed: ${errorMessage(err)}`, err));
    worker.on('messageerror', (err) => this.fail(worker, `a reply could not be read: ${errorMessage(err)}`, err));
    worker.on('exit', (code) => this.fail(worker, `its thread exited (code ${code})`));
    this.opened = this.send({ op: 'open' }).then((reply) => {
      if (!('error' in reply)) {
        this.everOpened = true;
        this.restartDelayMs = RESTART_DELAY_MS;
        this.startCheckpointer();
        return;
      }
      this.failure ??= new StoreError(`cannot open SQLite store ${this.path}: ${reply.error.message}`, { hint: 'check that the directory exists and is writable' });
      void worker.terminate();
    });
    this.opened.catch(() => {}); // a thread that cannot start is this.failure: the first call reports it
  }

  /**
   * The checkpoint thread (sqlite-checkpointer.mjs), once the file is open in WAL mode: the
   * writer's commits then never copy the WAL into the file themselves. It only makes writing
   * cheaper, so when it fails it is started again a while later and nothing else changes (the
   * writer's own autocheckpoint bounds the WAL meanwhile).
   */
  private startCheckpointer(): void {
    if (this.path === ':memory:' || this.checkpointer || this.closing) return;
    let thread: Worker;
    try {
      thread = new Worker(CHECKPOINTER_URL, { workerData: { path: this.path, intervalMs: CHECKPOINT_INTERVAL_MS }, name: 'hoop-sqlite-checkpoint' });
    } catch {
      return;
    }
    thread.unref();
    this.checkpointer = thread;
    thread.on('message', (m: unknown) => {
      if (m === 'checkpointed') this.checkpoints++;
    });
    const gone = () => {
      if (this.checkpointer !== thread) return;
      this.checkpointer = null;
      if (!this.closing) setTimeout(() => this.startCheckpointer(), RESTART_DELAY_MS).unref();
    };
    thread.on('error', gone).on('exit', gone);
  }

  /** A new worker after `restartDelayMs`; calls fail closed until it has opened the file. */
  private scheduleRestart(): void {
    if (this.restartTimer || this.closing || !this.everOpened) return;
    this.restartTimer = setTimeout(() => {
      this.restartTimer = null;
      if (this.closing) return;
      this.restartDelayMs = Math.min(this.restartDelayMs * 2, RESTART_DELAY_MAX_MS);
      this.failure = null;
      this.knownHead = undefined; // the dead worker may have committed its last batch
      try {
        this.startWorker();
      } catch (err) {
        this.failure = err as StoreError;
        this.scheduleRestart();
      }
    }, this.restartDelayMs);
    this.restartTimer.unref();
  }

  async migrate(): Promise<void> {
    this.refuseAfterClose('migrate');
    await this.write('migrate', { steps: [{ sql: 'CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)', rows: [[]] }] });
    for (;;) {
      const applied = (await this.all<{ version: number }>('migrate', APPLIED_SQL)).map((r) => r.version);
      let pending;
      try {
        pending = pendingMigrations(SQLITE_MIGRATIONS, applied, 'SQLite');
      } catch (err) {
        throw new StoreError(`cannot migrate in SQLite store ${this.path}: ${errorMessage(err)}`, { cause: err });
      }
      if (pending.length === 0) return;
      const now = new Date().toISOString();
      const steps = pending.flatMap((m) => [
        ...m.statements.map((sql) => ({ sql, rows: [[]] })),
        { sql: 'INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)', rows: [[m.version, m.name, now]] },
      ]);
      // Another process may migrate at the same moment: apply only if nobody did meanwhile.
      const done = await this.write('migrate', { guard: { sql: APPLIED_SQL, expect: applied.map((version) => ({ version })) }, steps });
      if (done.committed) return;
    }
  }

  appendEvents(events: UnsealedEvent[]): Promise<AuditEvent[]> {
    if (events.length === 0) return Promise.resolve([]);
    try {
      this.refuseAfterClose('append audit events');
    } catch (err) {
      return Promise.reject(err);
    }
    const run = this.appendTail.then(() => this.append(events));
    this.appendTail = run.catch(() => {});
    return run;
  }

  private async append(events: UnsealedEvent[]): Promise<AuditEvent[]> {
    const action = 'append audit events';
    const deadline = Date.now() + CONTENDED_APPEND_MS;
    let encoded: EncodedEvent[] | undefined; // once, however often the batch is sealed
    for (;;) {
      const head = this.knownHead === undefined ? await this.get<Head>('read the chain head', HEAD_SQL) : this.knownHead;
      let batch: ReturnType<typeof sealBatch>;
      try {
        encoded ??= events.map((e) => EncodedEvent.of(e));
        batch = sealBatch(encoded, head);
      } catch (err) {
        throw new StoreError(`cannot ${action} in SQLite store ${this.path}: ${errorMessage(err)}`, { cause: err });
      }
      const { sealed, rows, payloads } = batch;
      let reply;
      try {
        // Rows as arrays of strings and numbers: far cheaper to clone to the thread than objects.
        reply = await this.write(action, {
          guard: { sql: HEAD_SQL, expect: head ? [head] : [] },
          steps: payloads.length ? [{ sql: INSERT_SQL, rows }, { sql: INSERT_PAYLOAD_SQL, rows: payloads }] : [{ sql: INSERT_SQL, rows }],
        });
      } catch (err) {
        this.knownHead = undefined; // a failed commit leaves the head as it was, but ask again
        throw err;
      }
      if (reply.committed) {
        const last = sealed[sealed.length - 1]!;
        this.knownHead = { seq: last.seq, hash: last.hash };
        return sealed;
      }
      // Another writer moved the head: seal again on the real one.
      this.knownHead = (reply.conflict[0] as Head | undefined) ?? null;
      if (Date.now() > deadline) {
        throw new StoreError(`cannot ${action} in SQLite store ${this.path}: other writers kept moving the chain head for ${CONTENDED_APPEND_MS} ms`, {
          hint: 'one SQLite file should serve one gateway; use a PostgreSQL store for replicas',
        });
      }
    }
  }

  async head(): Promise<{ seq: number; hash: string } | null> {
    this.refuseAfterClose('read the chain head');
    return this.get<Head>('read the chain head', HEAD_SQL);
  }

  async readEvents(filter: EventFilter): Promise<AuditEvent[]> {
    this.refuseAfterClose('read audit events');
    const f = normalizeEventFilter(filter);
    const { where, params } = eventWhere(f);
    const rows = await this.all<EventRow>(
      'read audit events',
      `${f.payload ? EVENTS_WITH_PAYLOAD : 'SELECT e.* FROM events e'} WHERE ${where} ORDER BY e.seq ${f.newestFirst ? 'DESC' : ''} LIMIT ?`,
      [...params, f.limit ?? -1],
    );
    return rows.map(fromRow);
  }

  /** As readSessionEvents: seqs and sizes first, a chunk at a time, then the rows of the page alone. */
  async readEventPage(page: EventPageRequest): Promise<{ events: AuditEvent[]; next: number | null }> {
    const action = 'read audit events';
    this.refuseAfterClose(action);
    const f = normalizeEventFilter({ ...page, payload: page.payload === true });
    const limit = pageLimit(f.limit);
    const maxBytes = pageMaxBytes(page.maxBytes);
    const { where, params } = eventWhere(f);
    const desc = f.newestFirst;
    const bytes = `${EVENT_ROW_OVERHEAD} + octet_length(e.data) + coalesce(octet_length(e.actor), 0) + coalesce(octet_length(e.source), 0)${
      f.payload ? ' + coalesce((SELECT octet_length(p.payload) FROM event_payloads p WHERE p.seq = e.seq), 0)' : ''}`;
    const start = desc ? (f.beforeSeq ?? Number.MAX_SAFE_INTEGER) : f.afterSeq;
    const cut = await findPageEnd(
      (from, n) => this.all<{ seq: number; bytes: number }>(
        action,
        `SELECT e.seq, ${bytes} AS bytes FROM events e WHERE ${where} AND e.seq ${desc ? '<' : '>'} ? ORDER BY e.seq ${desc ? 'DESC' : ''} LIMIT ?`,
        // Sizes are cheap (octet_length reads no text) but a filtered, sorted scan is not: all of a page's at once.
        [...params, from, Math.max(n, limit + 1)],
      ),
      start, limit, maxBytes,
    );
    if (cut.last === null) return { events: [], next: null };
    const [lo, hi] = desc ? [cut.last, start - 1] : [start + 1, cut.last];
    const rows = await this.all<EventRow>(
      action,
      `${f.payload ? EVENTS_WITH_PAYLOAD : 'SELECT e.* FROM events e'} WHERE ${where} AND e.seq BETWEEN ? AND ? ORDER BY e.seq ${desc ? 'DESC' : ''}`,
      [...params, lo, hi],
    );
    return { events: rows.map(fromRow), next: cut.next };
  }

  /**
   * One DELETE … RETURNING (its own short transaction): the lowest matching payload rows, at most
   * `limit` and `maxBytes` (octet_length reads the stored size, not the text). A time bound looks
   * only at payloads up to the seq of the newest event before it (the events_time index), so rows
   * already pruned are never scanned again.
   */
  async prunePayloads(req: PayloadPruneRequest): Promise<PruneResult> {
    const action = 'prune event payloads';
    this.refuseAfterClose(action);
    const r = normalizePrune(req);
    const where: string[] = [];
    const params: unknown[] = [];
    if (r.before !== null) {
      where.push('e.time < ?', `p.seq <= coalesce((SELECT x.seq FROM events x WHERE x.time < ? ORDER BY x.time DESC LIMIT 1), 0)`);
      params.push(r.before, r.before);
    }
    if (r.beforeSeq !== null) (where.push('p.seq < ?'), params.push(r.beforeSeq));
    const rows = await this.all<{ seq: number }>(
      action,
      `DELETE FROM event_payloads WHERE seq IN (
         SELECT seq FROM (
           SELECT seq, bytes, sum(bytes) OVER (ORDER BY seq) AS running FROM (
             SELECT p.seq, octet_length(p.payload) AS bytes FROM event_payloads p JOIN events e ON e.seq = p.seq
              WHERE ${where.join(' AND ')} ORDER BY p.seq LIMIT ?))
          WHERE running <= ? OR running = bytes)
       RETURNING seq`,
      [...params, r.limit, r.maxBytes],
    );
    return pruneResult(rows.map((x) => x.seq));
  }

  /**
   * Under the write lock (the guard: the log still starts where it was read to start), with the
   * retention_guard flag set and cleared inside the one transaction, so the delete trigger lets
   * this DELETE alone through.
   */
  async pruneEvents(req: { beforeSeq: number; limit: number }): Promise<PruneResult> {
    const action = 'prune audit events';
    this.refuseAfterClose(action);
    const r = normalizePrune(req);
    const beforeSeq = r.beforeSeq!;
    for (;;) {
      const first = (await this.get<{ first: number | null }>(action, FIRST_SEQ_SQL))?.first ?? null;
      if (first === null || first >= beforeSeq) return { count: 0, first_seq: null, last_seq: null };
      const bound = Math.min(beforeSeq, first + r.limit);
      const done = await this.write(action, {
        guard: { sql: FIRST_SEQ_SQL, expect: [{ first }] },
        steps: [
          { sql: 'UPDATE retention_guard SET open = 1 WHERE id = 1', rows: [[]] },
          { sql: 'DELETE FROM event_payloads WHERE seq < ?', rows: [[bound]] },
          { sql: 'DELETE FROM events WHERE seq < ?', rows: [[bound]] },
          { sql: 'UPDATE retention_guard SET open = 0 WHERE id = 1', rows: [[]] },
        ],
      });
      if (!done.committed) continue; // another pruner moved the start: read it again
      const count = done.changes[2] ?? 0;
      return count === 0 ? { count: 0, first_seq: null, last_seq: null } : { count, first_seq: first, last_seq: first + count - 1 };
    }
  }

  async newestCheckpointBefore(before: string): Promise<AuditEvent | null> {
    const action = 'read checkpoints';
    this.refuseAfterClose(action);
    const at = normalizeInstant('before', before)!;
    const row = await this.get<EventRow>(action, `SELECT e.* FROM events e WHERE e.type = 'checkpoint' AND e.time < ? ORDER BY e.time DESC, e.seq DESC LIMIT 1`, [at]);
    return row ? fromRow(row) : null;
  }

  async listSessions(filter: SessionFilter): Promise<SessionSummary[]> {
    this.refuseAfterClose('list sessions');
    const f = normalizeSessionFilter(filter);
    const where: string[] = [];
    const params: unknown[] = [];
    if (f.subject !== null) (where.push(`json_extract(s.actor, '$.subject') = ?`), params.push(f.subject));
    if (f.user !== null) {
      where.push(`(json_extract(s.actor, '$.subject') IN (?, ?) OR lower(json_extract(s.actor, '$.email')) = ?)`);
      params.push(f.user, `apikey:${f.user}`, f.user.toLowerCase());
    }
    if (f.connection !== null) (where.push('s.connection = ?'), params.push(f.connection));
    if (f.since !== null) (where.push('s.time >= ?'), params.push(f.since));
    if (f.until !== null) (where.push('s.time < ?'), params.push(f.until));
    if (f.idPrefix !== null) (where.push('s.session_id LIKE ?'), params.push(`${f.idPrefix}%`));
    const sql = `${SESSION_SELECT}${where.map((w) => ` AND ${w}`).join('')} ORDER BY s.time DESC, s.seq DESC LIMIT ?`;
    const rows = await this.all<RawSessionRow>('list sessions', sql, [...params, f.limit ?? -1]);
    return rows.map((r) => sessionSummaryOf(parseSessionRow(r)));
  }

  async getSession(id: string): Promise<SessionDetail | null> {
    this.refuseAfterClose('read a session');
    const action = 'read a session';
    const row = await this.get<RawSessionRow>(action, `${SESSION_SELECT} AND s.session_id = ? ORDER BY s.seq LIMIT 1`, [id]);
    if (!row) return null;
    const events = (await this.all<EventRow>(action, `${EVENTS_WITH_PAYLOAD} WHERE e.session_id = ? ORDER BY e.seq`, [id])).map(fromRow);
    return { session: sessionSummaryOf(parseSessionRow(row)), events };
  }

  /**
   * In the worker: first only seqs and sizes (octet_length counts a TEXT's bytes without
   * decoding it), a small chunk at a time along the (session_id, seq) index until the page is
   * full; then the rows of that page alone. Nothing beyond the page is loaded or parsed.
   */
  async readSessionEvents(id: string, page: SessionPageRequest): Promise<{ events: AuditEvent[]; next: number | null }> {
    this.refuseAfterClose('read a session');
    const action = 'read a session';
    const after = page.afterSeq ?? 0;
    const cut = await findPageEnd(
      (from, n) => this.all<{ seq: number; bytes: number }>(
        action,
        `SELECT e.seq, ${EVENT_ROW_OVERHEAD} + octet_length(e.data) + coalesce(octet_length(e.actor), 0) + coalesce(octet_length(e.source), 0)
                + coalesce((SELECT octet_length(p.payload) FROM event_payloads p WHERE p.seq = e.seq), 0) AS bytes
           FROM events e WHERE e.session_id = ? AND e.seq > ? ORDER BY e.seq LIMIT ?`,
        [id, from, n],
      ),
      after, page.limit, page.maxBytes,
    );
    if (cut.last === null) return { events: [], next: null };
    const rows = await this.all<EventRow>(action, `${EVENTS_WITH_PAYLOAD} WHERE e.session_id = ? AND e.seq > ? AND e.seq <= ? ORDER BY e.seq`, [id, after, cut.last]);
    return { events: rows.map(fromRow), next: cut.next };
  }

  async readPayloads(seqs: readonly number[]): Promise<Map<number, EventPayload | null>> {
    this.refuseAfterClose('read event payloads');
    const wanted = checkedSeqs(seqs);
    if (wanted.length === 0) return new Map();
    const rows = await this.all<{ seq: number; payload: string | null }>(
      'read event payloads',
      `SELECT e.seq, p.payload FROM events e LEFT JOIN event_payloads p ON p.seq = e.seq
        WHERE e.seq IN (${wanted.map(() => '?').join(', ')}) AND e.payload_sha256 IS NOT NULL`,
      wanted,
    );
    return new Map(rows.map((r) => [r.seq, r.payload === null ? null : (JSON.parse(r.payload) as EventPayload)]));
  }


  async readSinkCursor(sink: string): Promise<SinkCursor | null> {
    const action = 'read a sink cursor';
    this.refuseAfterClose(action);
    return this.get<SinkCursor>(action, `SELECT ${SINK_COLUMNS} FROM sink_cursors WHERE sink = ?`, [checkedSinkId(sink)]);
  }

  /** One INSERT … ON CONFLICT DO UPDATE … WHERE: SQLite's write lock makes the test and the take one step. */
  async claimSinkLease(c: SinkLeaseClaim): Promise<SinkCursor | null> {
    const action = 'claim a sink lease';
    this.refuseAfterClose(action);
    if (!Number.isSafeInteger(c.startSeq) || c.startSeq < 0) throw new StoreError(`cannot ${action}: startSeq must be a non-negative integer`);
    const now = utc(c.now);
    const rows = await this.all<SinkCursor>(action, SINK_CLAIM, [checkedSinkId(c.sink), c.startSeq, now, c.owner, utc(c.leaseUntil), now]);
    return rows[0] ?? null;
  }

  async advanceSinkCursor(a: { sink: string; owner: string; deliveredSeq: number; now: string }): Promise<boolean> {
    const action = 'advance a sink cursor';
    this.refuseAfterClose(action);
    if (!Number.isSafeInteger(a.deliveredSeq) || a.deliveredSeq < 0) throw new StoreError(`cannot ${action}: deliveredSeq must be a non-negative integer`);
    const rows = await this.all<{ sink: string }>(
      action,
      'UPDATE sink_cursors SET delivered_seq = ?, updated_at = ? WHERE sink = ? AND lease_owner = ? AND delivered_seq <= ? RETURNING sink',
      [a.deliveredSeq, utc(a.now), checkedSinkId(a.sink), a.owner, a.deliveredSeq],
    );
    return rows.length === 1;
  }

  async releaseSinkLease(sink: string, owner: string): Promise<void> {
    const action = 'release a sink lease';
    this.refuseAfterClose(action);
    await this.write(action, { steps: [{ sql: 'UPDATE sink_cursors SET lease_owner = NULL, lease_until = NULL WHERE sink = ? AND lease_owner = ?', rows: [[checkedSinkId(sink), owner]] }] });
  }

  async checkpointKeys(afterSeq: number): Promise<CheckpointKeyUse[]> {
    this.refuseAfterClose('read checkpoint keys');
    const rows = await this.all<CheckpointKeyUse>(
      'read checkpoint keys',
      `SELECT json_extract(data, '$.key_id') AS key_id, json_extract(data, '$.public_key') AS public_key,
              MIN(time) AS first_used, MAX(time) AS last_used, MAX(seq) AS last_seq, COUNT(*) AS checkpoints
         FROM events WHERE type = 'checkpoint' AND seq > ? GROUP BY 1, 2 ORDER BY MIN(seq)`,
      [checkedAfterSeq(afterSeq)],
    );
    return rows.map((r) => ({ ...r, key_id: String(r.key_id), public_key: String(r.public_key) }));
  }

  async requestKill(kill: SessionKill): Promise<SessionKill> {
    this.refuseAfterClose('request a session kill');
    const action = 'request a session kill';
    await this.write(action, {
      steps: [{
        sql: 'INSERT INTO session_kills (session_id, requested_by, reason, requested_at) VALUES (?, ?, ?, ?) ON CONFLICT (session_id) DO NOTHING',
        rows: [[kill.session_id, kill.requested_by, kill.reason, new Date(kill.requested_at).toISOString()]],
      }],
    });
    const stored = await this.get<SessionKill>(action, `${KILL_SELECT} WHERE session_id = ?`, [kill.session_id]);
    if (!stored) throw new StoreError(`cannot ${action} in SQLite store ${this.path}: the request was not kept`);
    return stored;
  }

  async killsFor(sessionIds: readonly string[]): Promise<SessionKill[]> {
    this.refuseAfterClose('read session kills');
    if (sessionIds.length === 0) return [];
    // One parameter however many ids: json_each spreads them.
    return this.all<SessionKill>('read session kills', `${KILL_SELECT} WHERE session_id IN (SELECT value FROM json_each(?))`, [JSON.stringify(sessionIds)]);
  }

  async enqueueNotification(n: NotificationDraft): Promise<void> {
    const action = 'store a notification';
    this.refuseAfterClose(action);
    const created = utc(n.created_at);
    await this.write(action, {
      steps: [{
        sql: 'INSERT INTO notifications (id, target, format, body, signed, event, connection, request_id, next_attempt_at, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)',
        rows: [[n.id, n.target, n.format, n.body, n.signed ? 1 : 0, n.event, n.connection, n.request_id, created, created]],
      }],
    });
  }

  async claimNotifications(claim: NotificationClaim): Promise<Notification[]> {
    const action = 'claim notifications';
    this.refuseAfterClose(action);
    const rows = await this.all<SqliteNotificationRow & { seq: number }>(action, NOTIFICATION_CLAIM, [utc(claim.leaseUntil), utc(claim.now), claim.limit]);
    return rows.sort((a, b) => a.seq - b.seq).map(notificationOf);
  }

  async markNotificationDelivered(id: string, at: string): Promise<void> {
    await this.updateNotification('mark a notification delivered', 'delivered_at = ?', [utc(at)], id);
  }

  async markNotificationFailed(id: string, failure: { error: string; nextAttemptAt: string }): Promise<void> {
    await this.updateNotification('record a failed notification', 'attempts = attempts + 1, last_error = ?, next_attempt_at = ?', [failure.error, utc(failure.nextAttemptAt)], id);
  }

  async markNotificationDead(id: string, failure: { error: string; at: string }): Promise<void> {
    await this.updateNotification('give up a notification', 'attempts = attempts + 1, last_error = ?, dead_at = ?', [failure.error, utc(failure.at)], id);
  }

  async getNotification(id: string): Promise<Notification | null> {
    const action = 'read a notification';
    this.refuseAfterClose(action);
    const row = await this.get<SqliteNotificationRow>(action, `SELECT ${NOTIFICATION_COLUMNS} FROM notifications WHERE id = ?`, [id]);
    return row ? notificationOf(row) : null;
  }

  /** A pending notification's update; one already delivered or given up stays as it is. */
  private async updateNotification(action: string, set: string, params: unknown[], id: string): Promise<void> {
    this.refuseAfterClose(action);
    await this.write(action, { steps: [{ sql: `UPDATE notifications SET ${set} WHERE id = ? AND ${NOTIFICATION_PENDING}`, rows: [[...params, id]] }] });
  }

  /** One gateway per SQLite file: the kill route ends its own sessions at once, nothing to hear. */
  async watchKills(): Promise<() => Promise<void>> {
    return async () => {};
  }

  async createApprovalRequest(r: ApprovalRequest): Promise<void> {
    this.refuseAfterClose('store an approval request');
    const now = new Date().toISOString();
    await this.write('store an approval request', {
      steps: [{
        sql: `INSERT INTO approval_requests (${APPROVAL_COLUMNS}) VALUES (${APPROVAL_COLUMNS.split(',').map(() => '?').join(', ')})`,
        rows: [[
          r.id, r.kind, r.connection, r.requester.subject, r.requester.email, JSON.stringify(r.requester.groups), r.statement, r.fingerprint,
          canonicalJson(r.parameters), r.reason, r.rule, r.estimate, r.duration_ms, r.session_id, 'pending',
          isoInstant(r.created_at), isoInstant(r.expires_at), now, r.min_approvals, JSON.stringify(r.approvers),
        ]],
      }],
    });
  }

  async getApprovalRequest(id: string): Promise<ApprovalRequest | null> {
    this.refuseAfterClose('read an approval request');
    return (await this.approvalsWhere('read an approval request', 'id = ?', [id]))[0] ?? null;
  }

  async listApprovalRequests(filter: ApprovalFilter): Promise<ApprovalRequest[]> {
    this.refuseAfterClose('list approval requests');
    const f = normalizeApprovalFilter(filter);
    const where: string[] = ['1 = 1'];
    const params: unknown[] = [];
    if (f.status !== null) (where.push('status IN (SELECT value FROM json_each(?))'), params.push(JSON.stringify(f.status)));
    if (f.connection !== null) (where.push('connection = ?'), params.push(f.connection));
    if (f.requester !== null) (where.push('requester_subject = ?'), params.push(f.requester));
    if (f.approverGroups !== null) {
      where.push('EXISTS (SELECT 1 FROM json_each(approvers) g WHERE g.value IN (SELECT value FROM json_each(?)))');
      params.push(JSON.stringify(f.approverGroups));
    }
    return this.approvalsWhere('list approval requests', `${where.join(' AND ')} ORDER BY created_at DESC, rowid DESC LIMIT ?`, [...params, f.limit ?? -1]);
  }

  /**
   * Read, decide here, then write only if under the write lock the request is still pending with
   * the same number of decisions (the worker's guard); otherwise read again. The primary key on
   * (request, approver) refuses a second decision by one approver whatever happens.
   */
  async recordApprovalDecision(d: ApprovalDecisionInput): Promise<ApprovalDecisionOutcome> {
    const action = 'record an approval decision';
    this.refuseAfterClose(action);
    const at = isoInstant(d.at);
    for (;;) {
      const request = await this.getApprovalRequest(d.id);
      if (!request) return { ok: false, reason: 'not_found' };
      const refusal = decisionRefusal(request, { ...d, at });
      if (refusal === 'expired') {
        await this.expireApprovalRequests(at);
        return { ok: false, reason: 'not_pending', request: (await this.getApprovalRequest(d.id)) ?? request };
      }
      if (refusal) return { ok: false, reason: refusal, request };
      const next = nextApprovalState(request, { ...d, at });
      const done = await this.write(action, {
        guard: {
          sql: 'SELECT status, (SELECT count(*) FROM approval_decisions WHERE request_id = ?) AS n FROM approval_requests WHERE id = ?',
          params: [d.id, d.id],
          expect: [{ status: 'pending', n: request.approvals.length }],
        },
        steps: [
          { sql: 'INSERT INTO approval_decisions (request_id, approver, decision, comment, at) VALUES (?, ?, ?, ?, ?)', rows: [[d.id, d.approver, d.decision, d.comment, at]] },
          { sql: 'UPDATE approval_requests SET status = ?, expires_at = ?, updated_at = ? WHERE id = ?', rows: [[next.status, next.expires_at, at, d.id]] },
        ],
      });
      if (!done.committed) continue; // another decision came first: decide again on what it left
      this.wakeApprovals([d.id]);
      return { ok: true, request: (await this.getApprovalRequest(d.id))! };
    }
  }

  async markApprovalUsed(id: string, at: string): Promise<ApprovalRequest | null> {
    const when = isoInstant(at);
    return (await this.transition('mark an approval used', `status = 'used', updated_at = ?`, [when], `id = ? AND status = 'approved' AND expires_at > ?`, [id, when]))[0] ?? null;
  }

  async expireApprovalRequests(now: string): Promise<ApprovalRequest[]> {
    const when = isoInstant(now);
    return this.transition('expire approval requests', `status = 'expired', updated_at = ?`, [when], `status IN ('pending', 'approved') AND expires_at <= ?`, [when]);
  }

  async activeGrant(subject: string, connection: string, now: string): Promise<ApprovalRequest | null> {
    this.refuseAfterClose('read active grants');
    const at = isoInstant(now);
    const candidates = await this.approvalsWhere(
      'read active grants',
      `kind = 'grant' AND status = 'approved' AND requester_subject = ? AND connection = ? AND expires_at > ? ORDER BY expires_at DESC, id LIMIT ?`,
      [subject, connection, at, ACTIVE_GRANT_CANDIDATES],
    );
    return pickActiveGrant(candidates, at);
  }

  async cancelApprovalRequest(id: string, at: string): Promise<ApprovalRequest | null> {
    return (await this.transition('cancel an approval request', `status = 'cancelled', updated_at = ?`, [isoInstant(at)], `id = ? AND status = 'pending'`, [id]))[0] ?? null;
  }

  async watchApprovals(wake: (id: string) => void): Promise<() => Promise<void>> {
    this.refuseAfterClose('watch approval requests');
    const w = (id: string) => wake(id);
    this.approvalWatchers.add(w);
    return async () => {
      this.approvalWatchers.delete(w);
    };
  }

  /** One UPDATE … RETURNING: atomic on its own (SQLite runs it in one implicit transaction). */
  private async transition(action: string, set: string, setParams: unknown[], where: string, whereParams: unknown[]): Promise<ApprovalRequest[]> {
    this.refuseAfterClose(action);
    const rows = await this.all<ApprovalRowBase<string>>(action, `UPDATE approval_requests SET ${set} WHERE ${where} RETURNING *`, [...setParams, ...whereParams]);
    if (rows.length === 0) return [];
    this.wakeApprovals(rows.map((r) => r.id));
    return this.withDecisions(action, rows);
  }

  private async approvalsWhere(action: string, where: string, params: unknown[]): Promise<ApprovalRequest[]> {
    return this.withDecisions(action, await this.all<ApprovalRowBase<string>>(action, `SELECT * FROM approval_requests WHERE ${where}`, params));
  }

  private async withDecisions(action: string, rows: ApprovalRowBase<string>[]): Promise<ApprovalRequest[]> {
    if (rows.length === 0) return [];
    const decisions = await this.all<DecisionRow>(
      action,
      'SELECT request_id, approver, decision, comment, at FROM approval_decisions WHERE request_id IN (SELECT value FROM json_each(?)) ORDER BY at, rowid',
      [JSON.stringify(rows.map((r) => r.id))],
    );
    return rows.map((r) => approvalOf(r, decisions, (a) => JSON.parse(a) as string[]));
  }

  private wakeApprovals(ids: string[]): void {
    for (const id of ids) for (const w of this.approvalWatchers) w(id);
  }

  /** The worker connection's settings (journal_mode, synchronous, busy_timeout, wal_autocheckpoint): for checks and tests. */
  async pragma(name: 'journal_mode' | 'synchronous' | 'busy_timeout' | 'wal_autocheckpoint'): Promise<unknown> {
    return this.request('read a setting', { op: 'pragma', name });
  }

  /** Lets the work already accepted finish, then closes the connection and ends the thread. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      if (this.restartTimer) clearTimeout(this.restartTimer);
      this.restartTimer = null;
      await this.opened.catch(() => {}); // calls waiting for the thread to open are sent first
      await this.appendTail;
      await Promise.allSettled(this.inflight);
      const checkpointer = this.checkpointer;
      this.checkpointer = null;
      if (checkpointer) {
        checkpointer.ref(); // waited for: the process must not end in between
        checkpointer.postMessage({ op: 'stop' }); // it closes its connection and ends
        await new Promise((r) => checkpointer.once('exit', r));
      }
      if (!this.failure) await this.send({ op: 'close' }).catch(() => {}); // a dead worker has nothing to close
      this.failure ??= new StoreError(`the SQLite store ${this.path} is closed`);
      await this.worker.terminate();
    })();
    return this.closing;
  }

  /** Work asked for after close() is refused at once; work accepted before it still runs. */
  private refuseAfterClose(action: string): void {
    if (this.closing) throw new StoreError(`cannot ${action}: the SQLite store ${this.path} is closed`);
  }

  /** One operation; a worker error becomes a StoreError naming the action. */
  private async request(action: string, msg: Record<string, unknown>): Promise<unknown> {
    await this.opened.catch(() => {}); // an open failure is this.failure: send() reports it
    const reply = await this.send(msg, action);
    if ('error' in reply) throw new StoreError(`cannot ${action} in SQLite store ${this.path}: ${reply.error.message}`);
    if (!reply.ok) throw new StoreError(`cannot ${action} in SQLite store ${this.path}: unexpected reply from its thread`);
    return reply.value;
  }

  /** A guarded transaction: committed (with the rows each step changed), or not written because the guard found `conflict`. */
  private async write(action: string, req: WriteRequest): Promise<{ committed: true; changes: number[] } | { committed: false; conflict: unknown[] }> {
    await this.opened.catch(() => {});
    const reply = await this.send({ op: 'write', ...req }, action);
    if ('error' in reply) throw new StoreError(`cannot ${action} in SQLite store ${this.path}: ${reply.error.message}`);
    return reply.ok ? { committed: true, changes: reply.value as number[] } : { committed: false, conflict: reply.conflict };
  }

  private async all<T>(action: string, sql: string, params: unknown[] = []): Promise<T[]> {
    return (await this.request(action, { op: 'all', sql, params })) as T[];
  }

  private async get<T>(action: string, sql: string, params: unknown[] = []): Promise<T | null> {
    return (await this.request(action, { op: 'get', sql, params })) as T | null;
  }

  private send(msg: Record<string, unknown>, action = 'open the store'): Promise<Reply> {
    if (this.failure) return Promise.reject(this.withAction(action, this.failure));
    const id = this.nextId++;
    const sent = new Promise<Reply>((resolve, reject) => {
      this.calls.set(id, { resolve, reject: (err) => reject(this.withAction(action, err)) });
      if (this.calls.size === 1) this.worker.ref(); // work in flight keeps the process alive; an idle store does not
      this.worker.postMessage({ ...msg, id });
    });
    this.inflight.add(sent);
    const forget = () => this.inflight.delete(sent);
    sent.then(forget, forget);
    return sent;
  }

  private settle(reply: Reply): void {
    const call = this.calls.get(reply.id);
    if (!call) return;
    this.calls.delete(reply.id);
    if (this.calls.size === 0) this.worker.unref();
    call.resolve(reply);
  }

  /** `worker` is gone (or closed): fail every pending call, and every later one until a restart. */
  private fail(worker: Worker, reason: string, cause?: unknown): void {
    if (worker !== this.worker) return; // a worker already replaced
    this.failure ??= new StoreError(`the SQLite store ${this.path} is unavailable: ${reason}`, {
      cause,
      hint: 'nothing can be written to the audit log until its thread is back (hoop retries); check the gateway log and the disk',
    });
    const pending = [...this.calls.values()];
    this.calls.clear();
    for (const c of pending) c.reject(this.failure);
    // A thread we cannot talk to must not write either, nor keep the process alive.
    worker.unref();
    void worker.terminate();
    this.scheduleRestart();
  }

  private withAction(action: string, err: StoreError): StoreError {
    return new StoreError(`cannot ${action}: ${err.message}`, { cause: err, hint: err.hint });
  }
}

interface RawSessionRow {
  id: string;
  connection: string | null;
  actor: string | null;
  source: string | null;
  data: string;
  started_at: string;
  ended_at: string | null;
  end_data: string | null;
  statements: number;
}

function parseSessionRow(r: RawSessionRow): SessionRow {
  return {
    ...r,
    actor: parseJson(r.actor),
    source: parseJson(r.source),
    data: JSON.parse(r.data) as Record<string, unknown>,
    end_data: parseJson(r.end_data),
  };
}

function fromRow(r: EventRow): AuditEvent {
  return {
    seq: r.seq,
    id: r.id,
    time: r.time,
    type: r.type as AuditEvent['type'],
    actor: parseJson(r.actor),
    source: parseJson(r.source),
    connection: r.connection,
    session_id: r.session_id,
    data: JSON.parse(r.data) as Record<string, unknown>,
    ...payloadOf(r.payload_sha256, r.payload, (text) => JSON.parse(text) as EventPayload),
    prev_hash: r.prev_hash,
    hash: r.hash,
  };
}

/** The WHERE clause (over `events e`) and its parameters for an event filter. */
function eventWhere(f: NormalizedEventFilter): { where: string; params: unknown[] } {
  const where = ['e.seq > ?'];
  const params: unknown[] = [f.afterSeq];
  if (f.beforeSeq !== null) (where.push('e.seq < ?'), params.push(f.beforeSeq));
  if (f.since !== null) (where.push('e.time >= ?'), params.push(f.since));
  if (f.until !== null) (where.push('e.time < ?'), params.push(f.until));
  if (f.types !== null && f.typePrefixes !== null) {
    const any = [
      ...(f.types.length ? [`e.type IN (${f.types.map(() => '?').join(', ')})`] : []),
      ...f.typePrefixes.map(() => `e.type LIKE ? ESCAPE '\\'`),
    ];
    where.push(`(${any.join(' OR ')})`);
    params.push(...f.types, ...f.typePrefixes.map(typePrefixPattern));
  }
  return { where: where.join(' AND '), params };
}

function parseJson<T>(text: string | null): T | null {
  return text === null ? null : (JSON.parse(text) as T);
}

interface SqliteNotificationRow extends Omit<Notification, 'signed' | 'format'> {
  format: string;
  signed: number;
}

function notificationOf(r: SqliteNotificationRow): Notification {
  return {
    id: r.id,
    target: r.target,
    format: r.format as Notification['format'],
    body: r.body,
    signed: r.signed === 1,
    event: r.event,
    connection: r.connection,
    request_id: r.request_id,
    attempts: r.attempts,
    next_attempt_at: r.next_attempt_at,
    created_at: r.created_at,
    delivered_at: r.delivered_at,
    dead_at: r.dead_at,
    last_error: r.last_error,
  };
}

/** Times are stored as `toISOString()` text, so that comparing the text compares the times. */
function utc(time: string): string {
  const ms = Date.parse(time);
  if (Number.isNaN(ms)) throw new StoreError(`not a time: ${JSON.stringify(time)}`);
  return new Date(ms).toISOString();
}
