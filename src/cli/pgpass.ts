/**
 * libpq password files (PostgreSQL docs, "The Password File"): one
 * `hostname:port:database:username:password` per line, `:` and `\` escaped with `\`. libpq ignores
 * a file that group or others can read, so every file written here is 0600.
 *
 * Two uses by `hoop connect`: `--pgpass` puts the run's password into the user's file (the one
 * libpq reads: PGPASSFILE, else ~/.pgpass) so the URI it prints carries none, and removes it again
 * when the tunnel closes; `-- <client>` gives the client a file of its own in a private
 * directory, removed when the client exits.
 */
import { chmodSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import type { Env } from './iostreams.js';

export interface PgpassEntry {
  host: string;
  port: number;
  database: string;
  user: string;
  password: string;
}

const escape = (field: string): string => field.replace(/[\\:]/g, (c) => `\\${c}`);

/** One line for the entry, with a trailing newline. */
export function pgpassLine(e: PgpassEntry): string {
  return `${[e.host, String(e.port), e.database, e.user, e.password].map(escape).join(':')}\n`;
}

/** The four key fields of a line as libpq reads them (unescaped), or null for comments and junk. */
function keyOf(line: string): string | null {
  if (line.startsWith('#') || line.trim() === '') return null;
  const fields: string[] = [];
  let current = '';
  for (let i = 0; i < line.length; i++) {
    const c = line[i]!;
    if (c === '\\' && i + 1 < line.length) current += line[++i];
    else if (c === ':' && fields.length < 4) {
      fields.push(current);
      current = '';
    } else current += c;
  }
  return fields.length === 4 ? JSON.stringify(fields) : null;
}

const keyOfEntry = (e: PgpassEntry): string => JSON.stringify([e.host, String(e.port), e.database, e.user]);

/** The file libpq reads: PGPASSFILE, else ~/.pgpass. */
export function userPgpassPath(env: Env, home: string): string {
  return env.PGPASSFILE || join(env.HOME || home, '.pgpass');
}

function readLines(path: string): string[] {
  try {
    const text = readFileSync(path, 'utf8');
    return text === '' ? [] : text.replace(/\n$/, '').split('\n');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
}

/** Writes the whole file at once, 0600, through a rename so no reader sees half of it. */
function writeLines(path: string, lines: string[]): void {
  const tmp = join(dirname(path), `.${process.pid}.${Date.now()}.pgpass.tmp`);
  writeFileSync(tmp, lines.length ? `${lines.join('\n')}\n` : '', { mode: 0o600 });
  chmodSync(tmp, 0o600);
  renameSync(tmp, path);
}

/**
 * Creates the file or updates the line for the same host, port, database and user (never a
 * second one); other lines stay as they were. Returns `remove()`, which takes the line out again
 * if it still carries this password.
 */
export function upsertPgpass(path: string, entry: PgpassEntry): () => void {
  const key = keyOfEntry(entry);
  const line = pgpassLine(entry).slice(0, -1);
  const lines = readLines(path);
  const at = lines.findIndex((l) => keyOf(l) === key);
  if (at >= 0) lines[at] = line;
  else lines.push(line);
  writeLines(path, lines);
  return () => {
    const now = readLines(path);
    const kept = now.filter((l) => l !== line);
    if (kept.length !== now.length) writeLines(path, kept);
  };
}

/** A password file for one client run, in a fresh 0700 directory; `remove()` deletes both. */
export function privatePgpass(entry: PgpassEntry): { path: string; remove(): void } {
  const dir = mkdtempSync(join(tmpdir(), 'hoop-pgpass-'));
  const path = join(dir, 'pgpass');
  writeFileSync(path, pgpassLine(entry), { mode: 0o600 });
  return { path, remove: () => rmSync(dir, { recursive: true, force: true }) };
}
