import { spawn } from 'node:child_process';
import { connect, type Socket } from 'node:net';
import pg from 'pg';
import { serialize } from 'pg-protocol';
import { Parser } from 'pg-protocol/dist/parser.js';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { AuditUnavailableError } from '../../../src/errors.js';
import { PostgresEngine } from '../../../src/protocols/postgres/engine.js';
import { runningPids, untilRunning } from '../../helpers/postgres.js';
import { makeCertificates } from '../../helpers/tls.js';
import { startHarness, until, upstreamConfig, type Harness } from './engine-harness.js';

const upstream = inject('upstream');
const direct = () => new pg.Client(upstreamConfig(upstream));

/** A raw protocol client: startup, then write bytes and collect parsed backend messages. */
class RawClient {
  messages: any[] = [];
  closed = false;
  private parser = new Parser();
  private waiters: (() => void)[] = [];
  constructor(readonly socket: Socket) {
    socket.on('data', (d) => {
      this.parser.parse(d, (m) => this.messages.push(m));
      this.waiters.splice(0).forEach((w) => w());
    });
    socket.on('close', () => {
      this.closed = true;
      this.waiters.splice(0).forEach((w) => w());
    });
    socket.on('error', () => {});
  }
  static async open(port: number, startup = true): Promise<RawClient> {
    const socket = connect(port, '127.0.0.1');
    await new Promise((r) => socket.once('connect', r));
    const c = new RawClient(socket);
    if (startup) {
      socket.write(serialize.startup({ user: 'raw', database: 'raw' }));
      await c.waitFor((ms) => ms.some((m) => m.name === 'readyForQuery'));
      c.messages = [];
    }
    return c;
  }
  async waitFor(pred: (ms: any[]) => boolean, timeoutMs = 10_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!pred(this.messages)) {
      if (this.closed) throw new Error('closed: ' + JSON.stringify(this.messages.map((m) => m.name)));
      if (Date.now() > deadline) throw new Error('timeout: ' + JSON.stringify(this.messages.map((m) => m.name)));
      await new Promise<void>((r) => {
        this.waiters.push(r);
        setTimeout(r, 50);
      });
    }
  }
  readyCount(): number {
    return this.messages.filter((m) => m.name === 'readyForQuery').length;
  }
}

function psql(port: number, args: string[], input?: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const p = spawn('psql', [`postgresql://someone@127.0.0.1:${port}/anything?sslmode=disable`, '-X', '-w', '-v', 'ON_ERROR_STOP=1', ...args], {
      env: { ...process.env, PGPASSWORD: '', PGCONNECT_TIMEOUT: '10' },
    });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => (stdout += d));
    p.stderr.on('data', (d) => (stderr += d));
    p.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
    p.stdin.end(input ?? '');
  });
}

let h: Harness;
let db: pg.Client;
beforeAll(async () => {
  h = await startHarness({ upstream: upstreamConfig(upstream) });
  db = direct();
  await db.connect();
  await db.query(`DROP TABLE IF EXISTS eng_t, eng_copy, eng_refused, eng_order; CREATE TABLE eng_t (id int primary key, name text);
    CREATE TABLE eng_copy (id int, v text); CREATE TABLE eng_refused (id int); CREATE TABLE eng_order (id int)`);
});
afterAll(async () => {
  await h?.close();
  await db?.end();
});

describe('simple and extended protocol through the engine', () => {
  it('answers startup itself and relays ParameterStatus and a gateway-issued BackendKeyData', async () => {
    const c = await h.client({ application_name: 'engine-test' });
    const r = await c.query('select current_user as u, current_database() as d, current_setting($1) as app', ['application_name']);
    expect(r.rows[0]).toEqual({ u: upstream.users.scram, d: upstream.database, app: 'engine-test' });
    const backendPid = (await c.query('select pg_backend_pid() as p')).rows[0].p;
    expect((c as any).processID).not.toBe(backendPid);
    const start = h.events.find((e) => e.type === 'sessionStart')!.data as any;
    expect(start).toMatchObject({ user: 'someone', database: 'anything', application: 'engine-test' });
    await c.end();
  });

  it('runs several statements in one simple Query and records one statement with every command tag and result set', async () => {
    const c = await h.client();
    const results = (await c.query('select 1 as a; select 2 as b union all select 3; insert into eng_t values (100, $$x$$)')) as unknown as pg.QueryResult[];
    expect(results.map((r) => r.rowCount)).toEqual([1, 2, 1]);
    const end = await until(() => h.ends().find((e) => e.commandTags.length === 3));
    const start = h.starts().find((s) => s.queryId === end.queryId)!;
    expect(start).toMatchObject({ protocol: 'simple', statementName: null, portal: null, parameters: [] });
    expect(start.statement).toBe('select 1 as a; select 2 as b union all select 3; insert into eng_t values (100, $$x$$)');
    expect(start.statements).toEqual(['select 1 as a', 'select 2 as b union all select 3', 'insert into eng_t values (100, $$x$$)']);
    expect(end).toMatchObject({ outcome: 'ok', commandTags: ['SELECT 1', 'SELECT 2', 'INSERT 0 1'], rows: 4, error: null });
    expect(end.result.sets).toEqual([
      { columns: ['a'], rows: [['1']], tag: 'SELECT 1', statement: 0 },
      { columns: ['b'], rows: [['2'], ['3']], tag: 'SELECT 2', statement: 1 },
    ]);
    expect(end.result.sha256).toMatch(/^[0-9a-f]{64}$/);
    await c.end();
  });

  it('splits a Query into statements as the server does: each split matches one completed command', async () => {
    await db.query('DROP FUNCTION IF EXISTS eng_atomic(int)');
    const tricky = [
      `select ';' as a; select 'it''s; fine', E'back\\'slash;' ; select "we;ird" from (select 1 as "we;ird") t`,
      `select $$;$$; select $tag$ $$; $tag$; select 1 /* ; /* nested ; */ still comment ; */ ; -- trailing ; comment
select 2`,
      `create function eng_atomic(x int) returns int language sql begin atomic select case when x > 0 then 1 else 0 end; select x; end; select eng_atomic(3)`,
      `select (select 1); ; ;select 3`,
      `select a$b from (select 1 as a$b) s; prepare eng_split(int) as select $1 + 1; execute eng_split(1); deallocate eng_split`,
    ];
    for (const sql of tricky) {
      const c = await h.client();
      await c.query(sql);
      await c.end();
      const start = await until(() => h.starts().find((s) => s.statement === sql));
      const end = await until(() => h.ends().find((e) => e.queryId === start.queryId));
      expect({ sql, count: start.statements?.length }).toEqual({ sql, count: end.commandTags.length });
    }
    const atomic = h.starts().find((s) => s.statement === tricky[2])!;
    expect(atomic.statements![0]).toMatch(/^create function .* end$/);
  });

  it('records each Execute once with its statement, text and binary parameters decoded', async () => {
    const c = await h.client();
    const q = { name: 'named-stmt', text: 'select $1::int + 1 as n, $2::bytea as b, $3::text as t' };
    for (const v of [41, 1]) {
      const r = await c.query({ ...q, values: [v, Buffer.from([1, 2, 255]), null] });
      expect(r.rows[0].n).toBe(v + 1);
    }
    // The named Parse is recorded once (portal null), each Execute once.
    expect(h.starts().filter((s) => s.statement === q.text && s.portal === null)).toHaveLength(1);
    const starts = h.starts().filter((s) => s.statement === q.text && s.portal !== null);
    expect(starts).toHaveLength(2);
    expect(starts[0]).toMatchObject({ protocol: 'extended', statementName: 'named-stmt', portal: '', parameters: ['41', '\\x0102ff', null] });
    expect(starts[1]!.parameters[0]).toBe('1');
    const end = await until(() => h.ends().find((e) => e.queryId === starts[1]!.queryId));
    expect(end).toMatchObject({ outcome: 'ok', commandTags: ['SELECT 1'], rows: 1 });
    expect(end.result).toMatchObject({ sets: [{ columns: ['n', 'b', 't'], rows: [['2', '\\x0102ff', null]], tag: 'SELECT 1' }], truncated: false });
    await c.end();
  });

  it('keeps binary result columns as hex in the record', async () => {
    const c = await h.client();
    const raw = { getTypeParser: () => (v: unknown) => v };
    await c.query({ text: 'select 42::int4 as n, $1::text as s', values: ['é'], binary: true, types: raw } as pg.QueryConfig);
    const end = await until(() => h.ends().find((e) => e.result.sets[0]?.columns.join() === 'n,s'));
    expect(end.result.sets[0]!.rows).toEqual([['\\x0000002a', '\\x' + Buffer.from('é').toString('hex')]]);
    await c.end();
  });

  it('an error leaves the session usable and is recorded with its SQLSTATE', async () => {
    const c = await h.client();
    await expect(c.query('select 1/0')).rejects.toMatchObject({ code: '22012' });
    await expect(c.query('select $1::int', ['nope'])).rejects.toMatchObject({ code: '22P02' });
    expect((await c.query('select 7 as x')).rows).toEqual([{ x: 7 }]);
    const err = await until(() => h.ends().find((e) => e.error?.code === '22012'));
    expect(err).toMatchObject({ outcome: 'error', error: { code: '22012', message: 'division by zero' } });
    await c.end();
  });

  it('keeps result data up to payloadLimit but hashes and counts all of it', async () => {
    const small = await startHarness({ upstream: upstreamConfig(upstream), payloadLimit: 100 });
    try {
      const c = await small.client();
      const r = await c.query({ text: 'select repeat($$x$$, 30) as v from generate_series(1, 10)', rowMode: 'array' });
      expect(r.rowCount).toBe(10);
      const end = await until(() => small.ends()[0]);
      expect(end.rows).toBe(10);
      expect(end.result.sets[0]!.rows).toHaveLength(3);
      expect(end.result.truncated).toBe(true);
      // Each DataRow: 1 type + 4 length + 2 count + 4 field length + 30 bytes.
      expect(end.bytes).toBe(10 * 41);
      const { createHash } = await import('node:crypto');
      const row = Buffer.concat([Buffer.from([0x44, 0, 0, 0, 40, 0, 1, 0, 0, 0, 30]), Buffer.alloc(30, 'x')]);
      const hash = createHash('sha256');
      for (let i = 0; i < 10; i++) hash.update(row);
      expect(end.result.sha256).toBe(hash.digest('hex'));
      await c.end();
    } finally {
      await small.close();
    }
  });

  it('pipelines Parse/Bind/Execute with named and unnamed statements and portals; skips after an error until Sync', async () => {
    const raw = await RawClient.open(h.port);
    raw.socket.write(Buffer.concat([
      serialize.parse({ name: 'ps1', text: 'select $1::int * 2 as v' }),
      serialize.bind({ statement: 'ps1', portal: 'p1', values: ['5'] }),
      serialize.describe({ type: 'P', name: 'p1' }),
      serialize.execute({ portal: 'p1' }),
      serialize.bind({ statement: 'ps1', values: ['6'] }),
      serialize.execute({}),
      serialize.sync(),
      serialize.parse({ text: 'select 1/g from generate_series($1::int, $1::int) g' }),
      serialize.bind({ values: ['0'] }),
      serialize.execute({}),
      serialize.bind({ statement: 'ps1', values: ['7'] }),
      serialize.execute({}),
      serialize.sync(),
      serialize.parse({ text: 'select generate_series(1, 5) as g' }),
      serialize.bind({}),
      serialize.execute({ rows: 2 }),
      serialize.execute({ rows: 10 }),
      serialize.sync(),
    ]));
    await raw.waitFor(() => raw.readyCount() === 3);
    const names = raw.messages.map((m) => m.name);
    expect(names.filter((n) => n === 'dataRow')).toHaveLength(2 + 5);
    expect(names).toContain('portalSuspended');
    const ends = await until(() => (h.ends().length >= 6 ? h.ends().slice(-6) : null));
    const by = (sql: string) => ends.filter((e) => h.starts().find((s) => s.queryId === e.queryId)!.statement === sql);
    expect(by('select $1::int * 2 as v').map((e) => [e.outcome, e.result.sets.map((s) => s.rows)])).toEqual([
      ['ok', [[['10']]]],
      ['ok', [[['12']]]],
      ['error', []],
    ]);
    expect(by('select $1::int * 2 as v')[2]!.error).toEqual({
      code: '22012',
      message: 'not executed: an earlier message in the same pipeline failed: division by zero',
    });
    expect(by('select 1/g from generate_series($1::int, $1::int) g')[0]).toMatchObject({ outcome: 'error', error: { code: '22012', message: 'division by zero' } });
    const series = by('select generate_series(1, 5) as g');
    expect(series.map((e) => e.rows)).toEqual([2, 3]);
    // No Describe: the rows are kept under unnamed columns; a suspended portal has no tag yet.
    expect(series.map((e) => e.result.sets)).toEqual([[{ columns: [], rows: [['1'], ['2']], tag: null, statement: 0 }], [{ columns: [], rows: [['3'], ['4'], ['5']], tag: 'SELECT 3', statement: 0 }]]);
    raw.socket.end(serialize.end());
  });

  it('records an Execute its implicit transaction undid (a later error, a failed commit at Sync) as rolled_back', async () => {
    await db.query('DROP TABLE IF EXISTS eng_tx; CREATE TABLE eng_tx (id int UNIQUE DEFERRABLE INITIALLY DEFERRED)');
    const statement = (sql: string) => [serialize.parse({ text: sql }), serialize.bind({}), serialize.execute({})];
    const raw = await RawClient.open(h.port);
    raw.socket.write(Buffer.concat([
      // A later error in the same implicit transaction undoes the INSERT before it.
      ...statement('insert into eng_tx values (1)'), ...statement('select 1/g as undo from generate_series(0, 0) g'), serialize.sync(),
      // The deferred unique check fails at commit, when the Sync arrives: both INSERTs are undone.
      ...statement('insert into eng_tx values (2)'), ...statement('insert into eng_tx values (2) /* again */'), serialize.sync(),
      // Committed; and inside an explicit transaction block nothing waits for the Sync.
      ...statement('insert into eng_tx values (3)'), serialize.sync(),
      serialize.query('begin'),
      ...statement('insert into eng_tx values (4)'), serialize.sync(),
    ]));
    await raw.waitFor(() => raw.readyCount() === 5);
    const endOf = async (sql: string) => {
      const start = await until(() => h.starts().find((s) => s.statement === sql && s.portal !== null));
      return until(() => h.ends().find((e) => e.queryId === start.queryId));
    };
    expect(await endOf('insert into eng_tx values (1)')).toMatchObject({
      outcome: 'rolled_back', commandTags: ['INSERT 0 1'], rows: 1,
      error: { code: '22012', message: 'rolled back with its implicit transaction: division by zero' },
    });
    expect(await endOf('select 1/g as undo from generate_series(0, 0) g')).toMatchObject({ outcome: 'error', error: { code: '22012', message: 'division by zero' } });
    for (const sql of ['insert into eng_tx values (2)', 'insert into eng_tx values (2) /* again */']) {
      expect(await endOf(sql)).toMatchObject({ outcome: 'rolled_back', error: { code: '23505', message: expect.stringMatching(/^rolled back with its implicit transaction: duplicate key/) } });
    }
    expect(await endOf('insert into eng_tx values (3)')).toMatchObject({ outcome: 'ok', error: null });
    // Recorded before its transaction ends: the transaction's own COMMIT or ROLLBACK is in the log.
    expect(await endOf('insert into eng_tx values (4)')).toMatchObject({ outcome: 'ok', error: null });
    raw.socket.write(serialize.query('rollback'));
    await raw.waitFor(() => raw.readyCount() === 6);

    // A later statement hoop refuses aborts the transaction too, and the record names the refusal.
    h.queryStart = async (s) => {
      if (s.statement.includes('refuse me')) throw new AuditUnavailableError('store down');
    };
    try {
      raw.socket.write(Buffer.concat([...statement('insert into eng_tx values (6)'), ...statement('select 1 /* refuse me */'), serialize.sync()]));
      await raw.waitFor(() => raw.readyCount() === 7);
    } finally {
      h.queryStart = async () => {};
    }
    expect(await endOf('insert into eng_tx values (6)')).toMatchObject({
      outcome: 'rolled_back', error: { code: '58000', message: 'rolled back with its implicit transaction: hoop: statement refused: audit log unavailable' },
    });
    expect((await db.query('select array_agg(id order by id) as ids from eng_tx')).rows[0].ids).toEqual([3]);

    // A session that ends without the Sync: the server never commits, and the record says so.
    const quitter = await RawClient.open(h.port);
    quitter.socket.write(Buffer.concat([...statement('insert into eng_tx values (5)'), serialize.flush()]));
    await quitter.waitFor((ms) => ms.some((m) => m.name === 'commandComplete'));
    quitter.socket.end(serialize.end());
    expect(await endOf('insert into eng_tx values (5)')).toMatchObject({ outcome: 'rolled_back', error: { message: 'rolled back with its implicit transaction: the session ended before a Sync committed it' } });
    expect((await db.query('select count(*)::int as n from eng_tx where id = 5')).rows[0].n).toBe(0);
    raw.socket.end(serialize.end());
  });

  it('relays LISTEN/NOTIFY notifications', async () => {
    const listener = await h.client();
    const notifier = await h.client();
    await listener.query('LISTEN eng_channel');
    const got = new Promise<pg.Notification>((r) => listener.once('notification', r));
    await notifier.query(`NOTIFY eng_channel, 'hello'`);
    expect(await got).toMatchObject({ channel: 'eng_channel', payload: 'hello' });
    await listener.end();
    await notifier.end();
  });

  it('carries COPY FROM STDIN and COPY TO STDOUT (psql), hashing COPY OUT data', async () => {
    const rows = Array.from({ length: 500 }, (_, i) => `${i}\tvalue ${i}`).join('\n') + '\n';
    const load = await psql(h.port, ['-c', 'COPY eng_copy FROM STDIN'], rows);
    expect(load.stderr).toBe('');
    expect(load.stdout.trim()).toBe('COPY 500');
    const dump = await psql(h.port, ['-c', 'COPY (select * from eng_copy order by id) TO STDOUT']);
    expect(dump.stdout).toBe(rows);
    const end = await until(() => h.ends().find((e) => e.commandTags[0] === 'COPY 500' && e.bytes > 0));
    expect(end.rows).toBe(500);
    expect(end.result.sets[0]).toMatchObject({ columns: ['copy'], tag: 'COPY 500' });
    expect(end.result.sets[0]!.rows[0]).toEqual(['0\tvalue 0\n']);
    expect((await db.query('select count(*)::int as n from eng_copy')).rows[0].n).toBe(500);
  });

  it('records fastpath FunctionCalls (psql \\lo_import) and carries them', async () => {
    const { mkdtempSync, writeFileSync, rmSync } = await import('node:fs');
    const { join } = await import('node:path');
    const { tmpdir } = await import('node:os');
    const dir = mkdtempSync(join(tmpdir(), 'hoop-lo-'));
    try {
      writeFileSync(join(dir, 'blob'), 'large object payload');
      const r = await psql(h.port, ['-c', `\\lo_import ${join(dir, 'blob')}`]);
      expect(r.stderr).toBe('');
      const oid = Number(/lo_import (\d+)/.exec(r.stdout)?.[1]);
      expect(oid).toBeGreaterThan(0);
      const content = await db.query('select convert_from(lo_get($1), $$UTF8$$) as c', [oid]);
      expect(content.rows[0].c).toBe('large object payload');
      expect(h.starts().some((s) => s.protocol === 'fastpath' && /^SELECT pg_catalog\.lo(_open|write)\(/.test(s.statement))).toBe(true);
      await db.query('select lo_unlink($1)', [oid]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('works with psql -c, including a failing statement with ON_ERROR_STOP', async () => {
    const ok = await psql(h.port, ['-At', '-c', 'select 40 + 2']);
    expect(ok).toMatchObject({ code: 0, stdout: '42\n' });
    const bad = await psql(h.port, ['-c', 'select nonexistent_column']);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toMatch(/column "nonexistent_column" does not exist/);
  });
});

describe('backpressure', () => {
  it('stops reading upstream while the client does not read (the backend waits in ClientWrite)', async () => {
    const raw = await RawClient.open(h.port);
    raw.socket.pause();
    const before = process.memoryUsage().rss;
    const copy = `COPY (select repeat('x', 1000) as engine_backpressure from generate_series(1, 200000)) TO STDOUT`;
    raw.socket.write(serialize.query(copy));
    // The witness that nothing drains the upstream: its backend is blocked writing to the gateway,
    // and its COPY's row count stands still from one look to the next, far from the end.
    let previous: number | undefined;
    const stalled = await until(async () => {
      const r = await db.query(
        `select a.wait_event, p.tuples_processed::int as rows from pg_stat_progress_copy p join pg_stat_activity a using (pid) where a.query = $1`,
        [copy],
      );
      const now: { wait_event: string | null; rows: number } | undefined = r.rows[0];
      const still = now?.wait_event === 'ClientWrite' && now.rows === previous;
      previous = now?.rows;
      return still && now;
    }, { timeoutMs: 10_000, intervalMs: 50, what: 'the COPY stalled in ClientWrite' });
    // What left the backend (1 kB a row) is what the socket buffers between hold, not 200 MB.
    expect(stalled.rows).toBeLessThan(50_000);
    expect(process.memoryUsage().rss - before).toBeLessThan(50 * 1024 * 1024);
    raw.socket.destroy();
  });
});

describe('write-ahead barrier', () => {
  it('refuses a statement whose query.start cannot be recorded, runs nothing upstream, keeps the session', async () => {
    const c = await h.client();
    h.queryStart = async (s) => {
      if (s.statement.includes('eng_refused')) throw new AuditUnavailableError('store down: disk full at /secret/path');
    };
    try {
      const simple = await c.query('insert into eng_refused values (1)').catch((e) => e);
      expect(simple).toMatchObject({ code: '58000', message: 'hoop: statement refused: audit log unavailable' });
      const extended = await c.query('insert into eng_refused values ($1)', [2]).catch((e) => e);
      expect(extended).toMatchObject({ code: '58000', message: 'hoop: statement refused: audit log unavailable' });
      expect((await c.query('select $1::int as ok', [1])).rows).toEqual([{ ok: 1 }]);
      expect((await c.query('select 2 as ok')).rows).toEqual([{ ok: 2 }]);
      // Inside a transaction: the refusal aborts it, as any error would, and ROLLBACK recovers.
      await c.query('begin');
      await expect(c.query('insert into eng_refused values (3)')).rejects.toMatchObject({ code: '58000' });
      await expect(c.query('select 1')).rejects.toMatchObject({ code: '25P02' });
      await c.query('rollback');
    } finally {
      h.queryStart = async () => {};
    }
    expect((await db.query('select count(*)::int as n from eng_refused')).rows[0].n).toBe(0);
    const refused = h.ends().filter((e) => e.outcome === 'refused');
    expect(refused.length).toBeGreaterThanOrEqual(3);
    expect(refused[0]!.error!.message).not.toContain('secret');
    await c.end();
  });

  it('calls queryStart before the upstream sees the statement', async () => {
    const c = await h.client();
    let seenDuringHook = -1;
    h.queryStart = async (s) => {
      if (!s.statement.includes('into eng_order')) return;
      // A slow audit append: the window in which an engine that did not wait would let it land.
      await new Promise((r) => setTimeout(r, 150));
      seenDuringHook = (await db.query('select count(*)::int as n from eng_order')).rows[0].n;
    };
    try {
      await c.query('insert into eng_order values ($1)', [1]);
    } finally {
      h.queryStart = async () => {};
    }
    expect(seenDuringHook).toBe(0);
    expect((await db.query('select count(*)::int as n from eng_order')).rows[0].n).toBe(1);
    await c.end();
  });
});

describe('cancel', () => {
  async function sendCancel(port: number, pid: number, key: number) {
    const s = connect(port, '127.0.0.1');
    s.on('error', () => {});
    await new Promise((r) => s.once('connect', r));
    s.end(serialize.cancel(pid, key));
    await new Promise((r) => s.once('close', r));
  }

  it('cancels pg_sleep upstream with the gateway-issued key, only for the same owner', async () => {
    const other = await startHarness({ upstream: upstreamConfig(upstream), owner: 'mallory', engine: h.engine });
    try {
      const c = await h.client();
      const fence = await h.client();
      const started = Date.now();
      const SLEEP = 'select pg_sleep(30) as engine_cancel';
      const FENCE = 'select pg_sleep(30) as engine_cancel_fence';
      const sleeping = c.query(SLEEP).catch((e) => e);
      const fenced = fence.query(FENCE).catch((e) => e);
      // Cancel only what PostgreSQL shows running: a cancel that arrives first is lost.
      await untilRunning(db, SLEEP);
      await untilRunning(db, FENCE);
      await sendCancel(other.port, (c as any).processID, (c as any).secretKey); // wrong owner
      // A cancel the engine does relay, sent after the refused one: once it has ended its own
      // statement, the wrong-owner one, had it been relayed, would have ended c's before.
      await sendCancel(h.port, (fence as any).processID, (fence as any).secretKey);
      expect(await fenced).toMatchObject({ code: '57014' });
      expect(await runningPids(db, SLEEP)).toHaveLength(1);
      await sendCancel(h.port, (c as any).processID, (c as any).secretKey);
      const err = await sleeping;
      expect(err).toMatchObject({ code: '57014' });
      expect(Date.now() - started).toBeLessThan(10_000);
      const start = h.starts().find((s) => s.statement === SLEEP)!;
      const end = await until(() => h.ends().find((e) => e.queryId === start.queryId));
      expect(end).toMatchObject({ outcome: 'cancelled', error: { code: '57014' } });
      expect((await c.query('select 1 as one')).rows).toEqual([{ one: 1 }]);
      await Promise.all([c.end(), fence.end()]);
    } finally {
      await other.close();
    }
  });

  it('a cancel while the statement waits for its record stops it there: it never runs, and both protocols say so', async () => {
    await db.query('create table if not exists eng_cancel_unsent (n int)');
    await db.query('truncate eng_cancel_unsent');
    const c = await h.client();
    let release = () => {};
    const recorded: string[] = [];
    h.queryStart = async (s) => {
      if (!s.statement.includes('eng_cancel_unsent')) return;
      recorded.push(s.statement);
      await new Promise<void>((r) => (release = r)); // query.start not yet durable
    };
    try {
      for (const [protocol, run] of [
        ['simple', () => c.query('insert into eng_cancel_unsent values (1)')],
        ['extended', () => c.query({ text: 'insert into eng_cancel_unsent values ($1)', values: [2] })],
      ] as const) {
        const n = recorded.length;
        const pending = run().catch((e) => e);
        await until(() => recorded.length > n);
        await sendCancel(h.port, (c as any).processID, (c as any).secretKey);
        release();
        const err = await pending;
        expect(err, protocol).toMatchObject({ code: '57014', message: expect.stringMatching(/^canceling statement due to user request \(hoop: before it was sent/) });
        const start = h.starts().filter((s) => s.statement.includes('eng_cancel_unsent')).at(-1)!;
        expect(await until(() => h.ends().find((e) => e.queryId === start.queryId)), protocol).toMatchObject({ outcome: 'cancelled', error: { code: '57014' } });
      }
      // What the database holds: neither statement ran. The session goes on, and a cancel with
      // nothing waiting changes nothing that comes after it.
      expect((await db.query('select count(*)::int as n from eng_cancel_unsent')).rows[0].n).toBe(0);
      h.queryStart = async () => {};
      await sendCancel(h.port, (c as any).processID, (c as any).secretKey);
      await c.query('insert into eng_cancel_unsent values (3)');
      expect((await db.query('select array_agg(n)::text as ns from eng_cancel_unsent')).rows[0].ns).toBe('{3}');
    } finally {
      h.queryStart = async () => {};
      release();
      await c.end();
    }
  });

  it('pipelined behind a running statement: the cancel is for the running one, as PostgreSQL takes it; the next still runs', async () => {
    await db.query('create table if not exists eng_cancel_behind (n int)');
    await db.query('truncate eng_cancel_behind');
    const raw = await RawClient.open(h.port, false);
    raw.socket.write(serialize.startup({ user: 'raw', database: 'raw' }));
    await raw.waitFor((ms) => ms.some((m) => m.name === 'readyForQuery'));
    const key = raw.messages.find((m) => m.name === 'backendKeyData');
    raw.messages = [];
    try {
      const SLEEP = 'select pg_sleep(30) as eng_cancel_sleeping_ahead';
      const INSERT = 'insert into eng_cancel_behind values (1)';
      raw.socket.write(Buffer.concat([
        serialize.parse({ text: SLEEP }), serialize.bind({}), serialize.execute({}), serialize.sync(),
        serialize.parse({ text: INSERT }), serialize.bind({}), serialize.execute({}), serialize.sync(),
      ]));
      await untilRunning(db, SLEEP);
      await sendCancel(h.port, key.processID, key.secretKey);
      await raw.waitFor((ms) => ms.filter((m) => m.name === 'readyForQuery').length === 2);
      expect(raw.messages.filter((m) => m.name === 'error').map((e) => e.code)).toEqual(['57014']);
      expect((await db.query('select count(*)::int as n from eng_cancel_behind')).rows[0].n).toBe(1);
      const ids = h.starts().filter((s) => s.statement === SLEEP || s.statement === INSERT).map((s) => s.queryId);
      const ends = await until(() => { const e = h.ends().filter((x) => ids.includes(x.queryId)); return e.length === 2 && e; });
      expect(ends.map((e) => e.outcome)).toEqual(['cancelled', 'ok']);
    } finally {
      raw.socket.end(serialize.end());
    }
  });

  it('a burst of CancelRequests for one statement sends one cancel upstream, not one each', async () => {
    const c = await h.client();
    const SLEEP = 'select pg_sleep(30) as eng_cancel_burst';
    const sleeping = c.query(SLEEP).catch((e) => e);
    await untilRunning(db, SLEEP);
    const sockets = await Promise.all(Array.from({ length: 100 }, () => new Promise<Socket>((resolve) => {
      const s = connect(h.port, '127.0.0.1', () => resolve(s));
      s.on('error', () => {});
    })));
    const closed = sockets.map((s) => new Promise((r) => s.once('close', r)));
    const dialsBefore = h.dials;
    const request = serialize.cancel((c as any).processID, (c as any).secretKey);
    for (const s of sockets) s.end(request);
    await Promise.all(closed);
    expect(await sleeping).toMatchObject({ code: '57014' });
    // The first is in flight until PostgreSQL has taken it; a few may come after that.
    expect(h.dials - dialsBefore).toBeGreaterThanOrEqual(1);
    expect(h.dials - dialsBefore).toBeLessThan(20);
    expect((await c.query('select 1 as one')).rows).toEqual([{ one: 1 }]);
    await c.end();
  });

  it('between keyCancel streams (the native listener): by key alone, whoever the owner; never a tunnel session', async () => {
    const native = await startHarness({ upstream: upstreamConfig(upstream), owner: 'bob', engine: h.engine, keyCancel: true });
    const stranger = await startHarness({ upstream: upstreamConfig(upstream), owner: '', engine: h.engine, keyCancel: true });
    try {
      const tunnelled = await h.client(); // owner alice, no keyCancel: a tunnel's session
      const direct = await native.client();
      const SLEEP = 'select pg_sleep(30) as keycancel_tunnel';
      const FENCE = 'select pg_sleep(30) as keycancel_native';
      const sleeping = tunnelled.query(SLEEP).catch((e) => e);
      const fenced = direct.query(FENCE).catch((e) => e);
      await untilRunning(db, SLEEP);
      await untilRunning(db, FENCE);
      await sendCancel(stranger.port, (tunnelled as any).processID, (tunnelled as any).secretKey); // must do nothing
      await sendCancel(stranger.port, (direct as any).processID, (direct as any).secretKey); // by key alone
      expect(await fenced).toMatchObject({ code: '57014' });
      expect(await runningPids(db, SLEEP)).toHaveLength(1);
      await sendCancel(h.port, (tunnelled as any).processID, (tunnelled as any).secretKey);
      expect(await sleeping).toMatchObject({ code: '57014' });
      await Promise.all([tunnelled.end(), direct.end()]);
    } finally {
      await native.close();
      await stranger.close();
    }
  });
});

describe('upstream authentication and TLS', () => {
  const cases: [string, () => ReturnType<typeof upstreamConfig>][] = [
    ['SCRAM-SHA-256', () => upstreamConfig(upstream, upstream.users.scram)],
    ['MD5', () => upstreamConfig(upstream, upstream.users.md5)],
    ['cleartext password', () => upstreamConfig(upstream, upstream.users.plain)],
    ['trust', () => upstreamConfig(upstream, upstream.users.trust, { password: undefined })],
    ['TLS-only user, sslmode=require', () => upstreamConfig(upstream, upstream.users.tlsOnly, { sslmode: 'require' })],
    ['TLS-only user, sslmode=verify-full with the CA', () => upstreamConfig(upstream, upstream.users.tlsOnly, { sslmode: 'verify-full', ca: upstream.ca, host: '127.0.0.1' })],
    ['sslmode=prefer', () => upstreamConfig(upstream, upstream.users.tlsOnly, { sslmode: 'prefer' })],
  ];
  it.each(cases)('%s', async (_name, cfg) => {
    const config = cfg();
    const g = await startHarness({ upstream: config });
    try {
      const c = await g.client();
      const r = await c.query('select current_user as u, coalesce((select ssl from pg_stat_ssl where pid = pg_backend_pid()), false) as ssl');
      expect(r.rows[0].u).toBe(config.user);
      expect(r.rows[0].ssl).toBe(config.sslmode !== 'disable');
      await c.end();
    } finally {
      await g.close();
    }
  });

  it('a wrong upstream password: the client learns the phase and SQLSTATE, the record the details, nobody the password', async () => {
    const g = await startHarness({ upstream: upstreamConfig(upstream, upstream.users.scram, { password: 'wrong-pw-XYZ' }) });
    try {
      const err = await g.client().catch((e) => e);
      expect(err.message).toBe("hoop: the database refused the gateway's login (SQLSTATE 28P01); an administrator can find the cause in the gateway's log");
      expect(err.code).toBe('08006');
      const end = await until(() => g.sessionEnds()[0]);
      expect(end.reason).toBe('upstream-failed');
      expect(end.error).toBe(err.message.replace(/^hoop: /, ''));
      expect(end.detail).toMatch(/^upstream 127\.0\.0\.1:\d+: password authentication failed for user "hoop_scram" \(SQLSTATE 28P01\)$/);
      expect(JSON.stringify(end)).not.toContain('wrong-pw-XYZ');
    } finally {
      await g.close();
    }
  });

  it('an unreachable upstream: the client is told so, without the address; the record has it', async () => {
    const { freePort } = await import('../../../src/demo/postgres-cluster.js');
    const port = await freePort();
    const g = await startHarness({ upstream: upstreamConfig(upstream, upstream.users.scram, { port }) });
    try {
      const err = await g.client().catch((e) => e);
      expect(err.message).toBe("hoop: the database behind this connection is unreachable from the gateway; an administrator can find the cause in the gateway's log");
      expect(err.message).not.toContain(String(port));
      expect((await until(() => g.sessionEnds()[0])).detail).toMatch(new RegExp(`^upstream 127\\.0\\.0\\.1:${port}: could not connect: .*ECONNREFUSED`));
    } finally {
      await g.close();
    }
  });

  it('verify-ca refuses a server certificate from another CA; require refuses a server without TLS', async () => {
    const otherCa = makeCertificates().ca;
    const g = await startHarness({ upstream: upstreamConfig(upstream, upstream.users.tlsOnly, { sslmode: 'verify-ca', ca: otherCa }) });
    try {
      const err = await g.client().catch((e) => e);
      expect(err.message).toBe("hoop: the gateway could not set up TLS with the database as this connection requires; an administrator can find the cause in the gateway's log");
      expect((await until(() => g.sessionEnds()[0])).detail).toMatch(/TLS handshake failed \(sslmode=verify-ca\)/);
    } finally {
      await g.close();
    }
    // A server that declines SSLRequest with 'N'.
    const { createServer } = await import('node:net');
    const plain = createServer((s) => s.once('data', () => s.write('N')));
    await new Promise<void>((r) => plain.listen(0, '127.0.0.1', () => r()));
    const port = (plain.address() as import('node:net').AddressInfo).port;
    const g2 = await startHarness({ upstream: upstreamConfig(upstream, upstream.users.scram, { port, sslmode: 'require' }) });
    try {
      const err = await g2.client().catch((e) => e);
      expect(err.message).toMatch(/^hoop: the gateway could not set up TLS with the database/);
      expect((await until(() => g2.sessionEnds()[0])).detail).toBe(`upstream 127.0.0.1:${port}: server does not support SSL, but sslmode is require`);
    } finally {
      await g2.close();
      plain.close();
    }
  });
});

describe('hostile or broken clients', () => {
  it('answers an oversized frame with FATAL 08P01, records it, and keeps serving other sessions', async () => {
    const small = await startHarness({ upstream: upstreamConfig(upstream), engine: new PostgresEngine({ maxFrameBytes: 1024 }) });
    try {
      const good = await small.client();
      const raw = await RawClient.open(small.port);
      raw.socket.write(Buffer.from([0x51, 0x7f, 0xff, 0xff, 0xff]));
      await raw.waitFor((ms) => ms.some((m) => m.name === 'error'));
      const err = raw.messages.find((m) => m.name === 'error');
      expect(err).toMatchObject({ severity: 'FATAL', code: '08P01' });
      expect(err.message).toMatch(/exceeds the limit of 1024 bytes/);
      await until(() => raw.closed);
      expect(small.events.find((e) => e.type === 'protocolError')).toBeTruthy();
      expect(await until(() => small.sessionEnds().find((e) => e.reason === 'protocol-error'))).toBeTruthy();
      expect((await good.query('select 1 as still')).rows).toEqual([{ still: 1 }]);
      const under = await RawClient.open(small.port);
      under.socket.write(Buffer.from([0x51, 0, 0, 0, 2]));
      await under.waitFor((ms) => ms.some((m) => m.name === 'error'));
      expect(under.messages[0].message).toMatch(/below the minimum of 4/);
      await good.end();
      await until(() => small.engine.activeSessions === 0);
    } finally {
      await small.close();
    }
  });

  it('rejects a malformed Bind and garbage startup without crashing', async () => {
    const raw = await RawClient.open(h.port);
    raw.socket.write(Buffer.from([0x42, 0, 0, 0, 8, 0, 0, 0xff, 0xff])); // Bind: no terminators
    await raw.waitFor((ms) => ms.some((m) => m.name === 'error'));
    expect(raw.messages[0]).toMatchObject({ severity: 'FATAL', code: '08P01' });
    const junk = await RawClient.open(h.port, false);
    junk.socket.write(Buffer.from([0, 0, 0, 9, 1, 2, 3, 4, 0]));
    await junk.waitFor((ms) => ms.some((m) => m.name === 'error'));
    expect(junk.messages[0].message).toMatch(/unsupported frontend protocol/);
  });

  it('survives random well-framed garbage after startup: every session ends, nothing crashes', async () => {
    let seed = 7;
    const rand = (n: number) => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) % n);
    const types = 'QPBEDCSHXdcfFp'.split('').map((c) => c.charCodeAt(0));
    const before = h.sessionEnds().length;
    const clients: RawClient[] = [];
    for (let n = 0; n < 12; n++) {
      const raw = await RawClient.open(h.port);
      const frames: Buffer[] = [];
      for (let k = 0; k < 6; k++) {
        const body = Buffer.from(Array.from({ length: rand(40) }, () => rand(256)));
        const head = Buffer.alloc(5);
        head[0] = types[rand(types.length)]!;
        head.writeInt32BE(body.length + 4, 1);
        frames.push(head, body);
      }
      raw.socket.write(Buffer.concat(frames));
      clients.push(raw);
    }
    await until(() => clients.every((c) => c.closed || c.messages.some((m) => m.name === 'error')), 10_000);
    for (const c of clients) c.socket.destroy();
    await until(() => h.sessionEnds().length >= before + clients.length, 10_000);
    const c = await h.client();
    expect((await c.query('select 1 as alive')).rows).toEqual([{ alive: 1 }]);
    await c.end();
  });

  it('ends the session once when the upstream backend is terminated', async () => {
    const c = await h.client({ application_name: 'to-be-killed' });
    const port = (c as any).connection.stream.localPort as number;
    const before = h.sessionEnds().length;
    const pid = (await c.query('select pg_backend_pid() as p')).rows[0].p;
    const gone = new Promise((r) => c.once('end', r));
    await db.query('select pg_terminate_backend($1)', [pid]);
    await gone;
    // Once serve() has returned for this connection, the session has done all it will do.
    await until(() => h.served(port));
    const ends = h.sessionEnds().slice(before);
    expect(ends).toHaveLength(1);
    expect(ends[0]!.reason).toBe('upstream-closed');
    expect(ends[0]!.error).toMatch(/terminating connection/);
  });

  it('ends with client-terminated on Terminate', async () => {
    const c = await h.client();
    const before = h.sessionEnds().length;
    await c.end();
    const end = await until(() => h.sessionEnds()[before]);
    expect(end.reason).toBe('client-terminated');
  });
});
