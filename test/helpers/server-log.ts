/**
 * The oracle that is not hoop: PostgreSQL's own statement log.
 *
 * `startLoggedCluster()` starts a throwaway cluster of its own with `log_statement = all`,
 * `log_duration`, `log_disconnections` and the `jsonlog` destination, so that every entry is one
 * JSON object per line: multi-line statements, high bytes and text that looks like a log prefix
 * cannot be mistaken for another entry, and each entry carries its session's `application_name`,
 * `session_id` and `pid`. Tests give every session a unique application_name and read what the
 * server ran for it with `log.statements(app)`:
 *
 *   LOG statement: <text>                          simple Query (the whole message text)
 *   LOG execute <name>[/<portal>]: <text>          extended protocol Execute (`<unnamed>` → '')
 *       DETAIL parameters: $1 = '…', $2 = NULL
 *   LOG execute fetch from <name>/<portal>: <text> a further Execute of a suspended portal
 *   LOG fastpath function call: "<name>" (OID n)   FunctionCall
 *
 * The log is what the server read, converted to the server encoding (UTF-8), whatever the
 * client_encoding of the session was.
 */
import { until } from './poll.js';
import { randomUUID } from 'node:crypto';
import { closeSync, existsSync, fstatSync, openSync, readSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { PostgresCluster } from '../../src/demo/postgres-cluster.js';
import type { UpstreamInfo } from './postgres.js';

export interface LogEntry {
  timestamp: string;
  /** jsonlog's error_severity: LOG, ERROR, FATAL, WARNING, NOTICE, ... */
  severity: string;
  message: string;
  detail?: string;
  /** The statement an ERROR happened in (log_min_error_statement). */
  statement?: string;
  state_code?: string;
  application_name?: string;
  session_id?: string;
  pid?: number;
  dbname?: string;
  user?: string;
  backend_type?: string;
}

export interface LoggedStatement {
  kind: 'simple' | 'execute' | 'fetch' | 'fastpath';
  /** Prepared statement name for execute/fetch ('' for `<unnamed>`); function name for fastpath. */
  name: string | null;
  portal: string | null;
  /** The statement text as the server read it (fastpath: the function's name). */
  text: string;
  /** Bound parameters from the DETAIL line, in order; null when there was none. */
  parameters: (string | null)[] | null;
  /** fastpath only: the function's OID. */
  oid?: number;
  entry: LogEntry;
}

const STATEMENT = /^statement: ([\s\S]*)$/;
const EXECUTE = /^execute( fetch from)? (\S+?)(?:\/(\S+?))?: ([\s\S]*)$/;
const FASTPATH = /^fastpath function call: "(.*)" \(OID (\d+)\)$/;

/** `parameters: $1 = 'a''b', $2 = NULL` → ["a'b", null]. */
export function parseParameterDetail(detail: string | undefined): (string | null)[] | null {
  if (!detail) return null;
  const m = /^parameters: ([\s\S]*)$/.exec(detail);
  if (!m) return null;
  const out: (string | null)[] = [];
  const re = /\$(\d+) = (NULL|'((?:[^']|'')*)')(?:, |$)/gy;
  let p: RegExpExecArray | null;
  while ((p = re.exec(m[1]!)) !== null) out[Number(p[1]) - 1] = p[2] === 'NULL' ? null : p[3]!.replace(/''/g, "'");
  return out;
}

/** The statement an entry says the server ran, if it is one. */
export function loggedStatementOf(e: LogEntry): LoggedStatement | null {
  if (e.severity !== 'LOG') return null;
  let m = STATEMENT.exec(e.message);
  if (m) return { kind: 'simple', name: null, portal: null, text: m[1]!, parameters: null, entry: e };
  m = EXECUTE.exec(e.message);
  if (m) {
    const name = m[2] === '<unnamed>' ? '' : m[2]!;
    return { kind: m[1] ? 'fetch' : 'execute', name, portal: m[3] ?? '', text: m[4]!, parameters: parseParameterDetail(e.detail), entry: e };
  }
  m = FASTPATH.exec(e.message);
  if (m) return { kind: 'fastpath', name: m[1]!, portal: null, text: m[1]!, parameters: null, oid: Number(m[2]), entry: e };
  return null;
}

/** Reads a jsonlog file incrementally (only new bytes on each call). */
export class ServerLog {
  private offset = 0;
  /** Bytes after the last newline: an entry the server is still writing (maybe mid-character). */
  private partial: Buffer = Buffer.alloc(0);
  private readonly all: LogEntry[] = [];

  constructor(readonly path: string) {}

  /** Every entry so far, in the order the server wrote them. */
  entries(): LogEntry[] {
    if (!existsSync(this.path)) return this.all;
    const fd = openSync(this.path, 'r');
    try {
      const size = fstatSync(fd).size;
      if (size > this.offset) {
        const chunks: Buffer[] = [];
        let at = this.offset;
        while (at < size) {
          const buf = Buffer.allocUnsafe(Math.min(size - at, 16 * 1024 * 1024));
          const n = readSync(fd, buf, 0, buf.length, at);
          if (n <= 0) break;
          chunks.push(n === buf.length ? buf : buf.subarray(0, n));
          at += n;
        }
        this.offset = at;
        // Decode only whole lines: the bytes after the last '\n' may end inside a UTF-8 sequence.
        const bytes = Buffer.concat([this.partial, ...chunks]);
        const cut = bytes.lastIndexOf(0x0a) + 1;
        this.partial = Buffer.from(bytes.subarray(cut));
        const lines = bytes.toString('utf8', 0, cut).split('\n');
        for (const line of lines) {
          if (line.trim() === '') continue;
          const raw = JSON.parse(line) as LogEntry & { error_severity?: string };
          this.all.push({ ...raw, severity: raw.error_severity ?? '' });
        }
      }
    } finally {
      closeSync(fd);
    }
    return this.all;
  }

  forApp(app: string): LogEntry[] {
    return this.entries().filter((e) => e.application_name === app);
  }

  /** What the server ran for the sessions named `app`, in order. */
  statements(app: string): LoggedStatement[] {
    return this.forApp(app).map(loggedStatementOf).filter((s): s is LoggedStatement => s !== null);
  }

  /** ERROR and FATAL entries of the sessions named `app` (state_code, message, statement). */
  errors(app: string): LogEntry[] {
    return this.forApp(app).filter((e) => e.severity === 'ERROR' || e.severity === 'FATAL');
  }

  /** Polls the log until `pick` returns something (not undefined/null/false). */
  async waitFor<T>(pick: (log: ServerLog) => T | undefined | null | false, what: string, timeoutMs = 10_000): Promise<T> {
    return (await until(() => pick(this), { timeoutMs, what: `server log (${this.path}): ${what}` })) as T;
  }

  /** Waits for the server to log the end of the (last) session named `app`. */
  waitDisconnected(app: string, timeoutMs = 10_000): Promise<LogEntry> {
    return this.waitFor((l) => l.forApp(app).find((e) => e.message.startsWith('disconnection:')), `the disconnection of ${app}`, timeoutMs);
  }
}

export interface LoggedCluster {
  cluster: PostgresCluster;
  /** For startTestGateway/bankConnection: the gateway logs in as `hoop_svc` (trust) to `bank`. */
  info: UpstreamInfo;
  log: ServerLog;
  /** A direct (not through hoop) `pg` client to `bank`, as hoop_svc unless told otherwise. */
  direct(opts?: { application?: string; user?: string }): Promise<pg.Client>;
  /** One statement on a short-lived direct connection (application `oracle-direct`). */
  sql<R extends pg.QueryResultRow = any>(text: string, values?: unknown[]): Promise<R[]>;
  /**
   * Waits until everything any session logged before this call is in the log file: a marker
   * statement from a direct connection is logged after them, and the log keeps order.
   */
  flushLog(): Promise<void>;
  stop(): Promise<void>;
}

export const LOGGED_USER = 'hoop_svc';
export const LOGGED_DATABASE = 'bank';

export async function startLoggedCluster(name = 'hoop-truth-pg', settings: Record<string, string | number | boolean> = {}): Promise<LoggedCluster> {
  const cluster = await PostgresCluster.start({
    name,
    settings: {
      logging_collector: 'on',
      log_destination: "'jsonlog'",
      log_directory: "'log'",
      log_filename: "'pg.log'", // jsonlog writes pg.json
      log_rotation_age: 0,
      log_rotation_size: 0,
      log_statement: "'all'",
      log_duration: 'on',
      log_disconnections: 'on',
      log_min_error_statement: "'error'",
      log_parameter_max_length: -1,
      log_parameter_max_length_on_error: -1,
      lc_messages: "'C'",
      ...settings,
    },
  });
  try {
    await cluster.psql(`CREATE ROLE ${LOGGED_USER} LOGIN PASSWORD '${LOGGED_USER}-secret'`);
    await cluster.psql(`CREATE DATABASE ${LOGGED_DATABASE} OWNER ${LOGGED_USER}`);
  } catch (err) {
    await cluster.stop();
    throw err;
  }
  const u = LOGGED_USER;
  const info: UpstreamInfo = {
    host: cluster.host,
    port: cluster.port,
    socketDir: cluster.socketDir,
    ca: '',
    users: { scram: u, md5: u, plain: u, trust: u, tlsOnly: u },
    database: LOGGED_DATABASE,
  };
  const log = new ServerLog(join(cluster.dir, 'data', 'log', 'pg.json'));
  const direct = async (opts: { application?: string; user?: string } = {}) => {
    const c = new pg.Client({ host: cluster.host, port: cluster.port, user: opts.user ?? u, database: LOGGED_DATABASE, application_name: opts.application ?? 'oracle-direct' });
    c.on('error', () => {});
    await c.connect();
    return c;
  };
  const sql = async (text: string, values?: unknown[]) => {
    const c = await direct();
    try {
      return (await c.query(text, values as never)).rows;
    } finally {
      await c.end();
    }
  };
  return {
    cluster,
    info,
    log,
    direct,
    sql,
    async flushLog() {
      const marker = `oracle-barrier-${randomUUID()}`;
      await sql(`SELECT '${marker}'`);
      await log.waitFor((l) => l.forApp('oracle-direct').some((e) => e.message.includes(marker)), `log barrier ${marker}`);
    },
    stop: () => cluster.stop(),
  };
}
