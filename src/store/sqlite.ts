/**
 * The embedded store: one SQLite file (better-sqlite3), for a single gateway.
 *
 * Durability: WAL with synchronous=FULL, so a commit returns only after the WAL is fsynced.
 * Chain linearity: each append is one BEGIN IMMEDIATE transaction, which takes the database's
 * write lock before reading the head, so other connections (even other processes on the same
 * file) wait (busy_timeout) instead of forking the chain.
 */
import Database from 'better-sqlite3';
import { GENESIS_HASH, sealEvent } from '../audit/chain.js';
import type { AuditEvent, UnsealedEvent } from '../audit/event.js';
import { StoreError, errorMessage, isHoopError } from '../errors.js';
import { normalizeEventFilter, normalizeSessionFilter } from './filters.js';
import { SQLITE_MIGRATIONS, pendingMigrations } from './migrations.js';
import { sessionSummaryOf, type SessionRow } from './sessions.js';
import type { EventFilter, SessionFilter, SessionSummary, Store } from './store.js';

const BUSY_TIMEOUT_MS = 10_000;

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
}

const SESSION_SELECT = `
  SELECT s.session_id AS id, s.connection, s.actor, s.source, s.data, s.time AS started_at,
         e.time AS ended_at, e.data AS end_data,
         (SELECT count(*) FROM events q WHERE q.session_id = s.session_id AND q.type = 'query.start') AS statements
    FROM events s
    LEFT JOIN events e ON e.seq = (SELECT min(x.seq) FROM events x WHERE x.session_id = s.session_id AND x.type = 'session.end')
   WHERE s.type = 'session.start'`;

export class SqliteStore implements Store {
  private db: Database.Database | null;

  /** `path` is a file path or `:memory:`. Use `openStore()` for parent directories and file mode. */
  constructor(readonly path: string) {
    try {
      this.db = new Database(path);
      this.db.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`);
      if (path !== ':memory:') {
        const mode = this.db.pragma('journal_mode = WAL', { simple: true });
        if (String(mode).toLowerCase() !== 'wal') throw new Error(`could not enable WAL (journal_mode is ${String(mode)})`);
      }
      this.db.pragma('synchronous = FULL');
    } catch (err) {
      this.db = null;
      throw new StoreError(`cannot open SQLite store ${path}: ${errorMessage(err)}`, { cause: err, hint: 'check that the directory exists and is writable' });
    }
  }

  async migrate(): Promise<void> {
    this.run('migrate', (db) => {
      db.transaction(() => {
        db.exec('CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)');
        const applied = db.prepare('SELECT version FROM schema_migrations').pluck().all() as number[];
        for (const m of pendingMigrations(SQLITE_MIGRATIONS, applied, 'SQLite')) {
          for (const sql of m.statements) db.exec(sql);
          db.prepare('INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)').run(m.version, m.name, new Date().toISOString());
        }
      }).immediate();
    });
  }

  async appendEvents(events: UnsealedEvent[]): Promise<AuditEvent[]> {
    if (events.length === 0) return [];
    return this.run('append audit events', (db) => {
      const insert = db.prepare(
        `INSERT INTO events (seq, id, time, type, actor, source, connection, session_id, data, prev_hash, hash)
         VALUES (@seq, @id, @time, @type, @actor, @source, @connection, @session_id, @data, @prev_hash, @hash)`,
      );
      const head = db.prepare('SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1');
      return db
        .transaction((batch: UnsealedEvent[]) => {
          const top = head.get() as { seq: number; hash: string } | undefined;
          let seq = top?.seq ?? 0;
          let prev = top?.hash ?? GENESIS_HASH;
          const sealed: AuditEvent[] = [];
          for (const e of batch) {
            const s = sealEvent(e, ++seq, prev);
            insert.run(toRow(s));
            sealed.push(s);
            prev = s.hash;
          }
          return sealed;
        })
        .immediate(events);
    });
  }

  async head(): Promise<{ seq: number; hash: string } | null> {
    return this.run('read the chain head', (db) => {
      const row = db.prepare('SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1').get() as { seq: number; hash: string } | undefined;
      return row ?? null;
    });
  }

  async readEvents(filter: EventFilter): Promise<AuditEvent[]> {
    const f = normalizeEventFilter(filter);
    return this.run('read audit events', (db) => {
      const rows = db
        .prepare(
          `SELECT * FROM events
            WHERE seq > ? AND (? IS NULL OR time >= ?) AND (? IS NULL OR time < ?)
            ORDER BY seq LIMIT ?`,
        )
        .all(f.afterSeq, f.since, f.since, f.until, f.until, f.limit ?? -1) as EventRow[];
      return rows.map(fromRow);
    });
  }

  async listSessions(filter: SessionFilter): Promise<SessionSummary[]> {
    const f = normalizeSessionFilter(filter);
    return this.run('list sessions', (db) => {
      const where: string[] = [];
      const params: unknown[] = [];
      if (f.subject !== null) (where.push(`json_extract(s.actor, '$.subject') = ?`), params.push(f.subject));
      if (f.connection !== null) (where.push('s.connection = ?'), params.push(f.connection));
      if (f.since !== null) (where.push('s.time >= ?'), params.push(f.since));
      if (f.until !== null) (where.push('s.time < ?'), params.push(f.until));
      const sql = `${SESSION_SELECT}${where.map((w) => ` AND ${w}`).join('')} ORDER BY s.time DESC, s.seq DESC LIMIT ?`;
      const rows = db.prepare(sql).all(...params, f.limit ?? -1) as RawSessionRow[];
      return rows.map((r) => sessionSummaryOf(parseSessionRow(r)));
    });
  }

  async getSession(id: string): Promise<{ session: SessionSummary; events: AuditEvent[] } | null> {
    return this.run('read a session', (db) => {
      const row = db.prepare(`${SESSION_SELECT} AND s.session_id = ? ORDER BY s.seq LIMIT 1`).get(id) as RawSessionRow | undefined;
      if (!row) return null;
      const events = (db.prepare('SELECT * FROM events WHERE session_id = ? ORDER BY seq').all(id) as EventRow[]).map(fromRow);
      return { session: sessionSummaryOf(parseSessionRow(row)), events };
    });
  }

  async close(): Promise<void> {
    const db = this.db;
    this.db = null;
    db?.close();
  }

  /** Runs one synchronous unit of work, turning every failure into a StoreError. */
  private run<T>(action: string, work: (db: Database.Database) => T): T {
    if (!this.db) throw new StoreError(`cannot ${action}: the SQLite store is closed`);
    try {
      return work(this.db);
    } catch (err) {
      if (isHoopError(err)) throw err;
      throw new StoreError(`cannot ${action} in SQLite store ${this.path}: ${errorMessage(err)}`, { cause: err });
    }
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

function toRow(e: AuditEvent): EventRow {
  return {
    ...e,
    // JSON.stringify is enough here: sealEvent already refused what JSON cannot represent, and
    // verification recomputes the canonical form from the parsed values.
    actor: e.actor === null ? null : JSON.stringify(e.actor),
    source: e.source === null ? null : JSON.stringify(e.source),
    data: JSON.stringify(e.data),
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
    prev_hash: r.prev_hash,
    hash: r.hash,
  };
}

function parseJson<T>(text: string | null): T | null {
  return text === null ? null : (JSON.parse(text) as T);
}
