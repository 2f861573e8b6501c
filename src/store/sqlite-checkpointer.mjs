// @ts-check
/**
 * The SQLite store's checkpoint thread (see sqlite.ts). In WAL mode the write that makes the WAL
 * pass `wal_autocheckpoint` pages copies them all into the database file and fsyncs it, inside
 * that commit: every session waiting on the audit append waits for the copy too, and so does every
 * statement whose `query.start` is in the next commit. Here a connection of its own runs a PASSIVE
 * checkpoint (it never waits for, nor blocks, the writer or readers) every `intervalMs`, so the
 * writer's commits only ever append to the WAL, and a page written many times in an interval is
 * copied once. The writer's own autocheckpoint stays on at a far higher mark (sqlite-worker.mjs),
 * in case this thread falls behind or is gone.
 *
 * Plain JavaScript importing only better-sqlite3 and Node, as sqlite-worker.mjs (and why).
 * Messages in: { op: 'stop' }. Out: 'checkpointed' after each checkpoint that moved pages.
 */
import { parentPort, workerData } from 'node:worker_threads';
import Database from 'better-sqlite3';

if (!parentPort) throw new Error('sqlite-checkpointer.mjs must run as a worker thread');
const port = parentPort;

/** @type {{ path: string, intervalMs: number }} */
const { path, intervalMs } = workerData;

const db = new Database(path, { fileMustExist: true });
db.pragma('busy_timeout = 0'); // PASSIVE waits for no lock: a busy moment is skipped until the next tick
/** Frames of the WAL already in the file at the last tick: nothing moved while it stays so. */
let done = -1;

function tick() {
  try {
    // Cheap when the file already has every frame: no copy, no fsync.
    const [result] = /** @type {{ checkpointed: number }[]} */ (db.pragma('wal_checkpoint(PASSIVE)'));
    const now = result?.checkpointed ?? -1;
    if (now > 0 && now !== done) port.postMessage('checkpointed');
    done = now;
  } catch {
    // A failed checkpoint loses nothing (the pages stay in the WAL): the next tick tries again.
  }
}

const timer = setInterval(tick, intervalMs);
port.on('message', (msg) => {
  if (msg?.op !== 'stop') return;
  clearInterval(timer);
  db.close();
  port.close();
});
