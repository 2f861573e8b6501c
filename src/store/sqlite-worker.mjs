// @ts-check
/**
 * The SQLite store's connection thread (see sqlite.ts). better-sqlite3 is synchronous: run on the
 * gateway's main thread, every commit's fsync would stop every session's bytes for its duration.
 * Here it stops only this thread.
 *
 * Plain JavaScript on purpose, importing only better-sqlite3: the same file runs from the
 * TypeScript sources under vitest (a Worker does not go through Vite) and from dist/ (tsc copies
 * it with allowJs). It knows nothing of the audit chain: the main thread seals events; this thread
 * runs "guarded" IMMEDIATE transactions — take the write lock, check that a guard query still
 * returns what the main thread planned against (the chain head, the applied migrations), then
 * write and commit. A guard mismatch rolls back and reports what the guard found, so the main
 * thread re-plans; two stores (or processes) on one file therefore still write one linear chain.
 *
 * Messages in:  { id, op: 'open' | 'all' | 'get' | 'write' | 'pragma' | 'close', ... }
 * Replies:      { id, ok: true, value } | { id, ok: false, conflict } | { id, ok: false, error }
 */
import { parentPort, workerData } from 'node:worker_threads';
import Database from 'better-sqlite3';

if (!parentPort) throw new Error('sqlite-worker.mjs must run as a worker thread');
const port = parentPort;

/** @type {{ path: string, busyTimeoutMs: number, autocheckpointPages: number | null }} */
const { path, busyTimeoutMs, autocheckpointPages } = workerData;

/** @type {Database.Database | null} */
let db = null;
/** @type {Map<string, Database.Statement>} */
const statements = new Map();
/** `write` as one transaction function, made once per connection (better-sqlite3 builds wrappers for each). */
/** @type {((guard: any, steps: any[]) => number[]) & { immediate(guard: any, steps: any[]): number[] } | null} */
let writeTransaction = null;

class Conflict {
  /** @param {unknown[]} found */
  constructor(found) {
    this.found = found;
  }
}

function open() {
  db = new Database(path);
  db.pragma(`busy_timeout = ${busyTimeoutMs}`);
  if (path !== ':memory:') {
    const mode = db.pragma('journal_mode = WAL', { simple: true });
    if (String(mode).toLowerCase() !== 'wal') throw new Error(`could not enable WAL (journal_mode is ${String(mode)})`);
  }
  db.pragma('synchronous = FULL');
  // The checkpoint thread copies the WAL into the file (sqlite-checkpointer.mjs); this mark is for when it cannot.
  if (autocheckpointPages) db.pragma(`wal_autocheckpoint = ${Number(autocheckpointPages)}`);
}

/** @param {string} sql */
function prepare(sql) {
  if (!db) throw new Error('the database is not open');
  let s = statements.get(sql);
  if (!s) {
    s = db.prepare(sql);
    // Reads build a handful of shapes; DDL runs once. Bound it anyway.
    if (statements.size >= 256) statements.clear();
    statements.set(sql, s);
  }
  return s;
}

/**
 * One IMMEDIATE transaction: the guard is read under the write lock, so what it returns cannot
 * change before COMMIT. synchronous=FULL: COMMIT returns once the WAL is fsynced.
 * @param {{ sql: string, params?: unknown[], expect: unknown[] } | undefined} guard
 * @param {{ sql: string, rows: (unknown[] | Record<string, unknown>)[] }[]} steps
 */
function write(guard, steps) {
  if (!db) throw new Error('the database is not open');
  writeTransaction ??= db.transaction((guard, steps) => {
    if (guard) {
      const found = prepare(guard.sql).all(...(guard.params ?? []));
      if (JSON.stringify(found) !== JSON.stringify(guard.expect)) throw new Conflict(found);
    }
    // Rows changed by each step, in order.
    const changes = [];
    for (const step of steps) {
      const s = prepare(step.sql);
      let n = 0;
      for (const row of step.rows) n += s.run(row).changes;
      changes.push(n);
    }
    return changes;
  });
  return writeTransaction.immediate(guard, steps);
}

/** @param {any} msg */
function handle(msg) {
  switch (msg.op) {
    case 'open':
      if (!db) open();
      return null;
    case 'all':
      return prepare(msg.sql).all(...msg.params);
    case 'get':
      return prepare(msg.sql).get(...msg.params) ?? null;
    case 'write':
      return write(msg.guard, msg.steps);
    case 'pragma':
      if (!db) throw new Error('the database is not open');
      return db.pragma(String(msg.name), { simple: true });
    case 'close':
      statements.clear();
      writeTransaction = null;
      db?.close();
      db = null;
      return null;
    default:
      throw new Error(`unknown operation ${String(msg.op)}`);
  }
}

port.on('message', (msg) => {
  try {
    const value = handle(msg);
    port.postMessage({ id: msg.id, ok: true, value });
  } catch (err) {
    if (err instanceof Conflict) {
      port.postMessage({ id: msg.id, ok: false, conflict: err.found });
      return;
    }
    const e = /** @type {{ message?: unknown, code?: unknown }} */ (err ?? {});
    port.postMessage({ id: msg.id, ok: false, error: { message: String(e.message ?? err), code: typeof e.code === 'string' ? e.code : null } });
  }
  if (msg.op === 'close') port.close(); // nothing else keeps this thread alive: it exits
});
