/**
 * Opens the store a gateway is configured with, migrated and ready:
 *   sqlite:PATH            a file (parent directories created 0700, the file created 0600)
 *   sqlite:///ABS/PATH     the same, URL-style
 *   sqlite::memory:        in memory, gone on close (tests, `hoop demo` previews)
 *   postgres://… | postgresql://…   a shared PostgreSQL database (several gateway replicas)
 */
import { closeSync, mkdirSync, openSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { StoreError, errorMessage } from '../errors.js';
import { PostgresStore } from './postgres.js';
import { redactUrl } from './redact.js';
import { SqliteStore } from './sqlite.js';
import type { Store } from './store.js';

export type { Store } from './store.js';

export async function openStore(url: string): Promise<Store> {
  const store = createStore(url);
  try {
    await store.migrate();
  } catch (err) {
    await store.close().catch(() => {});
    throw err;
  }
  return store;
}

function createStore(url: string): Store {
  if (url === 'sqlite::memory:') return new SqliteStore(':memory:');
  if (url.startsWith('sqlite:')) return new SqliteStore(prepareSqliteFile(sqlitePath(url)));
  if (/^postgres(ql)?:\/\//i.test(url)) return new PostgresStore(url);
  throw new StoreError(`unsupported store URL ${redactUrl(url)}`, {
    hint: 'use sqlite:PATH, sqlite::memory: or postgres://user:password@host:5432/database',
  });
}

function sqlitePath(url: string): string {
  let path = url.slice('sqlite:'.length);
  if (path.startsWith('//')) path = path.slice(2); // sqlite:///abs/path
  if (path === '') throw new StoreError('the sqlite: store URL has no path', { hint: 'e.g. sqlite:./hoop-data/hoop.db' });
  return resolve(path);
}

/** Creates the directory and an empty 0600 file before SQLite does (it would use the umask). */
function prepareSqliteFile(path: string): string {
  try {
    mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
    closeSync(openSync(path, 'a', 0o600));
  } catch (err) {
    throw new StoreError(`cannot create SQLite store ${path}: ${errorMessage(err)}`, { cause: err, hint: 'check that the directory is writable' });
  }
  return path;
}
