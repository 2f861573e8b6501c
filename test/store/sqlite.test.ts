import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, describe, expect, test } from 'vitest';
import { verifyChain } from '../../src/audit/chain.js';
import { StoreError } from '../../src/errors.js';
import { openStore } from '../../src/store/index.js';
import type { SqliteStore } from '../../src/store/sqlite.js';
import type { Store } from '../../src/store/store.js';
import { event, storeSuite } from './store-suite.js';

const dir = mkdtempSync(join(tmpdir(), 'hoop-sqlite-test-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const paths = new WeakMap<Store, string>();
let n = 0;

describe('SQLite store', () => {
  storeSuite({
    dialect: 'sqlite',
    async fresh() {
      const path = join(dir, `store-${++n}.db`);
      const store = await openStore(`sqlite:${path}`);
      paths.set(store, path);
      return store;
    },
    async another(store) {
      const path = paths.get(store)!;
      const other = await openStore(`sqlite:${path}`);
      paths.set(other, path);
      return other;
    },
    async sql(store, statement) {
      const db = new Database(paths.get(store)!);
      try {
        db.exec(statement);
      } finally {
        db.close();
      }
    },
    async jsonColumns(store) {
      const db = new Database(paths.get(store)!, { readonly: true });
      try {
        return db.prepare('SELECT actor, source, data FROM events ORDER BY seq').all() as { actor: string | null; source: string | null; data: string }[];
      } finally {
        db.close();
      }
    },
  });
});

describe('SQLite file', () => {
  test('sqlite:PATH creates parent directories, a 0600 file in WAL mode with synchronous=FULL', async () => {
    const path = join(dir, 'nested', 'deeper', 'hoop.db');
    const store = await openStore(`sqlite:${path}`);
    await store.appendEvents([event()]);
    expect(statSync(path).mode & 0o777).toBe(0o600);
    expect(statSync(`${path}-wal`).mode & 0o777).toBe(0o600);
    expect(statSync(join(dir, 'nested')).mode & 0o777).toBe(0o700);
    const db = new Database(path, { readonly: true });
    expect(db.pragma('journal_mode', { simple: true })).toBe('wal');
    db.close();
    // synchronous is per connection: ask the store's own (in its worker thread).
    const own = store as SqliteStore;
    expect(await own.pragma('synchronous')).toBe(2); // FULL
    expect(await own.pragma('journal_mode')).toBe('wal');
    expect(await own.pragma('busy_timeout')).toBeGreaterThan(0);
    await store.close();
  });

  test('reopening the file keeps the chain and continues it', async () => {
    const path = join(dir, 'reopen.db');
    const a = await openStore(`sqlite:${path}`);
    const first = await a.appendEvents([event(), event()]);
    await a.close();
    const b = await openStore(`sqlite://${path}`); // URL form: sqlite:///abs/path
    const [third] = await b.appendEvents([event()]);
    expect(third!.seq).toBe(3);
    expect(third!.prev_hash).toBe(first[1]!.hash);
    const all = await b.readEvents({});
    expect(all.slice(0, 2)).toEqual(first);
    expect(verifyChain(all)).toEqual({ ok: true });
    await b.close();
  });

  test('sqlite::memory: is a fresh empty store each time', async () => {
    const a = await openStore('sqlite::memory:');
    await a.appendEvents([event()]);
    const b = await openStore('sqlite::memory:');
    expect(await b.head()).toBeNull();
    expect((await a.head())!.seq).toBe(1);
    await Promise.all([a.close(), b.close()]);
  });

  test('a file that is not a database, an unwritable directory and an unknown scheme are StoreErrors', async () => {
    const junk = join(dir, 'junk.db');
    writeFileSync(junk, 'this is not a SQLite database, just some text that is long enough to matter..........');
    await expect(openStore(`sqlite:${junk}`)).rejects.toThrow(StoreError);
    await expect(openStore(`sqlite:${junk}`)).rejects.toThrow(/junk\.db/);
    // A directory that cannot be created (a file is in the way), whoever runs the test.
    await expect(openStore(`sqlite:${join(junk, 'sub', 'y.db')}`)).rejects.toThrow(/cannot create SQLite store/);
    await expect(openStore('mysql://u:hunter2@h/db')).rejects.toThrow(StoreError);
    await expect(openStore('mysql://u:hunter2@h/db')).rejects.not.toThrow(/hunter2/);
    await expect(openStore('sqlite:')).rejects.toThrow(/no path/);
  });

  test('a schema newer than this build is refused', async () => {
    const path = join(dir, 'future.db');
    (await openStore(`sqlite:${path}`)).close();
    const db = new Database(path);
    db.prepare('INSERT INTO schema_migrations VALUES (999, ?, ?)').run('from the future', new Date().toISOString());
    db.close();
    await expect(openStore(`sqlite:${path}`)).rejects.toThrow(/schema version 999.*upgrade hoop/);
  });
});
