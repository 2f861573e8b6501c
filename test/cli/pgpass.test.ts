import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { pgpassLine, privatePgpass, upsertPgpass, userPgpassPath } from '../../src/cli/pgpass.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});
const tempFile = () => {
  const d = mkdtempSync(join(tmpdir(), 'hoop-pgpass-test-'));
  dirs.push(d);
  return join(d, '.pgpass');
};

describe('pgpass', () => {
  it('escapes : and \\ as libpq reads them', () => {
    expect(pgpassLine({ host: '::1', port: 5433, database: 'a:b\\c', user: 'alice', password: 'p:w' })).toBe('\\:\\:1:5433:a\\:b\\\\c:alice:p\\:w\n');
  });

  it('updates the line with the same key (escaped fields too), never adds a second; remove() takes only its own line', () => {
    const file = tempFile();
    const entry = { host: '::1', port: 6543, database: 'bank', user: 'alice', password: 'first' };
    writeFileSync(file, '*:*:*:bob:bobs\n');
    upsertPgpass(file, entry);
    const remove = upsertPgpass(file, { ...entry, password: 'second' });
    expect(readFileSync(file, 'utf8')).toBe('*:*:*:bob:bobs\n\\:\\:1:6543:bank:alice:second\n');
    expect(statSync(file).mode & 0o777).toBe(0o600);
    remove();
    expect(readFileSync(file, 'utf8')).toBe('*:*:*:bob:bobs\n');
  });

  it('remove() leaves a line another run has since replaced', () => {
    const file = tempFile();
    const entry = { host: '127.0.0.1', port: 6543, database: 'bank', user: 'alice', password: 'mine' };
    const remove = upsertPgpass(file, entry);
    upsertPgpass(file, { ...entry, password: 'theirs' });
    remove();
    expect(readFileSync(file, 'utf8')).toBe('127.0.0.1:6543:bank:alice:theirs\n');
  });

  it('a private file: 0600 in a 0700 directory, gone after remove()', () => {
    const p = privatePgpass({ host: '127.0.0.1', port: 1, database: 'd', user: 'u', password: 'x' });
    expect(statSync(p.path).mode & 0o777).toBe(0o600);
    expect(statSync(join(p.path, '..')).mode & 0o777).toBe(0o700);
    p.remove();
    expect(() => statSync(p.path)).toThrow();
  });

  it('the user\'s file is PGPASSFILE, else ~/.pgpass', () => {
    expect(userPgpassPath({ PGPASSFILE: '/x/pw' }, '/home/a')).toBe('/x/pw');
    expect(userPgpassPath({ HOME: '/home/b' }, '/home/a')).toBe('/home/b/.pgpass');
  });
});
