/**
 * The decision hook on a real PostgreSQL: refuse, hold (and cancel a hold), per-column
 * transforms in every result path, a row cap, and a gateway-initiated end mid-result. The
 * database's own state and pg_stat_activity are the oracle for what reached it.
 */
import { connect } from 'node:net';
import pg from 'pg';
import { serialize } from 'pg-protocol';
import { to as copyTo } from 'pg-copy-streams';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { RUN, valueTransform, type ColumnTransform, type RunPlan, type StatementPlan, type StatementStart } from '../../../src/protocols/engine.js';
import { createTestDatabase } from '../../helpers/postgres.js';
import { startHarness, until, upstreamConfig, type Harness } from './engine-harness.js';

const shared = inject('upstream');
let db: Awaited<ReturnType<typeof createTestDatabase>>;
let h: Harness;
let direct: pg.Client;

beforeAll(async () => {
  db = await createTestDatabase(shared, 'plan');
  h = await startHarness({ upstream: upstreamConfig(db.info) });
  direct = new pg.Client({ host: db.info.host, port: db.info.port, user: db.info.users.trust, database: db.info.database });
  await direct.connect();
  await direct.query(`CREATE TABLE people (id int PRIMARY KEY, name text, ssn text);
    INSERT INTO people VALUES (1, 'Ann', '123-45-6789'), (2, 'Bo', '987-65-4321');
    CREATE TABLE probe (n int)`);
});
afterAll(async () => {
  await direct?.end();
  await h?.close();
  await db?.drop();
});

const mask: ColumnTransform = valueTransform((value) => Buffer.from('X'.repeat(value.length)));
/** Masks every column named ssn; in COPY output (columns the engine cannot name) the third. */
const maskSsn: RunPlan = { action: 'run', columns: (cols) => cols.map((c) => (c.name === 'ssn' || (c.tableOid === 0 && c.name === '?column3?') ? mask : null)) };

function planWith(decide: (s: StatementStart) => StatementPlan | undefined): (s: StatementStart) => Promise<StatementPlan> {
  return async (s) => decide(s) ?? RUN;
}

async function probeCount(): Promise<number> {
  return Number((await direct.query('SELECT count(*) AS n FROM probe')).rows[0].n);
}

/** Backends of the harness's sessions running `text` right now. */
async function running(text: string): Promise<number> {
  const r = await direct.query(`SELECT count(*) AS n FROM pg_stat_activity WHERE state = 'active' AND query LIKE $1 AND pid <> pg_backend_pid()`, [`%${text}%`]);
  return Number(r.rows[0].n);
}

describe('refuse', () => {
  it('the client gets the SQLSTATE and message, nothing reaches PostgreSQL, the session goes on', async () => {
    h.plan = planWith((s) => (s.statement.includes('INSERT INTO probe') ? { action: 'refuse', code: '42501', message: 'hoop: writes to probe are not allowed' } : undefined));
    const c = await h.client();
    await expect(c.query('INSERT INTO probe VALUES (1)')).rejects.toMatchObject({ code: '42501', message: 'hoop: writes to probe are not allowed' });
    await expect(c.query('INSERT INTO probe VALUES ($1)', [2])).rejects.toMatchObject({ code: '42501' });
    expect((await c.query('SELECT 1 AS one')).rows).toEqual([{ one: 1 }]);
    expect(await probeCount()).toBe(0);
    const refused = h.events.filter((e) => e.type === 'queryStart' && e.decision.action === 'refuse');
    expect(refused).toHaveLength(2);
    await c.end();
    h.plan = async () => RUN;
  });
});

describe('hold', () => {
  it('the client gets the NOTICE; a pipelined statement waits behind it; both run in order once released', async () => {
    let release!: (p: RunPlan) => void;
    h.plan = planWith((s) => (s.statement.includes('held one') ? { action: 'hold', notice: 'hoop: waiting for approval (request 42)', decision: new Promise((r) => (release = r)) } : undefined));
    const c = await h.client();
    const notices: string[] = [];
    c.on('notice', (n) => notices.push(n.message ?? ''));
    const first = c.query(`INSERT INTO probe SELECT 1 WHERE 'held one' <> ''`);
    const second = c.query('INSERT INTO probe VALUES (2)'); // pg pipelines it behind the first
    await until(() => notices.length > 0);
    expect(notices).toEqual(['hoop: waiting for approval (request 42)']);
    // Held: neither reached the server (the second is queued behind the first, in order).
    expect(h.starts().filter((s) => s.statement.includes('probe VALUES (2)'))).toHaveLength(0);
    expect(await probeCount()).toBe(0);
    release(RUN);
    await Promise.all([first, second]);
    expect((await direct.query('SELECT n FROM probe ORDER BY ctid')).rows).toEqual([{ n: 1 }, { n: 2 }]);
    await c.end();
    await direct.query('TRUNCATE probe');
    h.plan = async () => RUN;
  });

  it('a CancelRequest during the hold ends it with a refusal; nothing reaches upstream', async () => {
    let withdrawn = false;
    h.plan = planWith((s) => (s.statement.includes('held two') ? { action: 'hold', notice: 'hoop: held', decision: new Promise(() => {}), cancelled: () => (withdrawn = true) } : undefined));
    const c = await h.client();
    const notices: string[] = [];
    c.on('notice', (n) => notices.push(n.message ?? ''));
    const held = c.query(`INSERT INTO probe SELECT 3 WHERE 'held two' <> ''`);
    await until(() => notices.length > 0);
    const { processID, secretKey } = c as unknown as { processID: number; secretKey: number };
    const cancel = connect(h.port, '127.0.0.1');
    await new Promise((r) => cancel.once('connect', r));
    cancel.end(serialize.cancel(processID, secretKey));
    await expect(held).rejects.toMatchObject({ code: '42501', message: expect.stringMatching(/held statement was cancelled/) });
    expect(withdrawn).toBe(true);
    expect(await probeCount()).toBe(0);
    expect((await c.query('SELECT 2 AS two')).rows).toEqual([{ two: 2 }]);
    await c.end();
    h.plan = async () => RUN;
  });

  it('a CancelRequest while the plan is still being made (a row estimate) withdraws the hold it turns into, at once', async () => {
    let withdrawn = false;
    let planned: (() => void) | null = null;
    h.plan = (s) => {
      if (!s.statement.includes('held three')) return Promise.resolve(RUN);
      return new Promise((resolve) => (planned = () => resolve({ action: 'hold', notice: 'hoop: held', decision: new Promise(() => {}), cancelled: () => (withdrawn = true) })));
    };
    const c = await h.client();
    const notices: string[] = [];
    c.on('notice', (n) => notices.push(n.message ?? ''));
    const held = c.query(`INSERT INTO probe SELECT 4 WHERE 'held three' <> ''`).catch((e) => e);
    await until(() => planned !== null);
    const { processID, secretKey } = c as unknown as { processID: number; secretKey: number };
    const cancel = connect(h.port, '127.0.0.1');
    await new Promise((r) => cancel.once('connect', r));
    cancel.end(serialize.cancel(processID, secretKey));
    await new Promise((r) => cancel.once('close', r));
    planned!();
    expect(await held).toMatchObject({ code: '42501', message: expect.stringMatching(/held statement was cancelled/) });
    expect(withdrawn).toBe(true);
    expect(notices).toEqual([]); // never told it waits: it never did
    expect(await probeCount()).toBe(0);
    expect((await c.query('SELECT 2 AS two')).rows).toEqual([{ two: 2 }]);
    await c.end();
    h.plan = async () => RUN;
  });
});

describe('column transforms', () => {
  it('apply in text and binary formats, simple and extended protocol, and COPY TO STDOUT; the record keeps what the client got', async () => {
    h.plan = async () => maskSsn;
    const c = await h.client();
    const simple = await c.query('SELECT id, ssn FROM people ORDER BY id');
    expect(simple.rows).toEqual([{ id: 1, ssn: 'XXXXXXXXXXX' }, { id: 2, ssn: 'XXXXXXXXXXX' }]);
    const extended = await c.query('SELECT id, ssn FROM people WHERE id = $1', [1]);
    expect(extended.rows).toEqual([{ id: 1, ssn: 'XXXXXXXXXXX' }]);
    const binary = await c.query({ text: 'SELECT ssn FROM people WHERE id = $1', values: [2], binary: true } as pg.QueryConfig);
    expect(Buffer.from(binary.rows[0].ssn as string).toString()).toMatch(/^X{11}$/);
    for (const sql of ['COPY (SELECT id, name, ssn FROM people ORDER BY id) TO STDOUT', 'COPY (SELECT id, name, ssn FROM people ORDER BY id) TO STDOUT WITH (FORMAT binary)']) {
      const chunks: Buffer[] = [];
      const stream = c.query(copyTo(sql));
      for await (const chunk of stream) chunks.push(chunk as Buffer);
      const out = Buffer.concat(chunks);
      expect(out.includes('123-45-6789')).toBe(false);
      expect(out.includes('XXXXXXXXXXX')).toBe(true);
      expect(out.includes('Ann')).toBe(true);
    }
    const end = await until(() => h.ends().find((e) => e.result.sets.some((s) => s.rows.some((r) => r.includes('XXXXXXXXXXX')))));
    expect(JSON.stringify(end.result)).not.toContain('123-45-6789');
    await c.end();
    h.plan = async () => RUN;
  });

  it('a COPY in CSV cannot be masked and is stopped with an error, not passed through', async () => {
    h.plan = async () => maskSsn;
    const c = await h.client();
    const stream = c.query(copyTo('COPY (SELECT id, name, ssn FROM people) TO STDOUT WITH (FORMAT csv)'));
    const chunks: Buffer[] = [];
    await expect((async () => {
      for await (const chunk of stream) chunks.push(chunk as Buffer);
    })()).rejects.toThrow(/cannot be masked/);
    expect(Buffer.concat(chunks).includes('123-45-6789')).toBe(false);
    expect((await c.query('SELECT 3 AS three')).rows).toEqual([{ three: 3 }]);
    await c.end();
    h.plan = async () => RUN;
  });
});

describe('plans of prepared statements', () => {
  it('are made once per Parse and reused by its Executes, then made again after DDL', async () => {
    const planned: string[] = [];
    h.plan = async (s) => {
      planned.push(s.statement);
      return RUN;
    };
    const c = await h.client();
    const run = (v: number) => c.query({ name: 'cached', text: 'SELECT $1::int AS v FROM people LIMIT 1', values: [v] });
    for (const v of [1, 2, 3]) expect((await run(v)).rows).toEqual([{ v }]);
    expect(planned.filter((t) => t.includes('$1::int AS v'))).toHaveLength(1);
    await c.query('CREATE TABLE plan_cache_probe (n int)');
    expect((await run(4)).rows).toEqual([{ v: 4 }]);
    expect(planned.filter((t) => t.includes('$1::int AS v'))).toHaveLength(2);
    // every Execute still has its own write-ahead record
    expect(h.starts().filter((s) => s.statement.includes('$1::int AS v') && s.phase === undefined)).toHaveLength(4);
    await c.end();
    h.plan = async () => RUN;
  });
});

describe('row cap', () => {
  it('stops a result part-way with an error and cancels the statement upstream; the session goes on', async () => {
    h.plan = planWith((s) => (s.statement.includes('generate_series') ? { action: 'run', rowCap: 10 } : undefined));
    const c = await h.client();
    const rows: unknown[] = [];
    const q = c.query(new pg.Query('SELECT g, pg_sleep(0) FROM generate_series(1, 5000000) g'));
    q.on('row', (r: unknown) => rows.push(r));
    await expect(new Promise((resolve, reject) => { q.on('end', resolve); q.on('error', reject); })).rejects.toMatchObject({ code: '54000', message: expect.stringMatching(/row cap of 10/) });
    expect(rows.length).toBeLessThanOrEqual(10);
    await until(async () => (await running('generate_series(1, 5000000)')) === 0, 10_000);
    expect((await c.query('SELECT 4 AS four')).rows).toEqual([{ four: 4 }]);
    const end = await until(() => h.ends().find((e) => e.error?.code === '54000'));
    expect(end.outcome).toBe('error');
    expect(end.rows).toBeLessThanOrEqual(10);
    await c.end();
    h.plan = async () => RUN;
  });
});

describe('termination by the gateway', () => {
  it('mid-result, the client sees a FATAL at a message boundary, and the statement is cancelled upstream', async () => {
    const before = h.controllers.length;
    const c = await h.client();
    const controller = h.controllers[before]!;
    const rows: unknown[] = [];
    const q = c.query(new pg.Query(`SELECT g, repeat('x', 1000) AS pad FROM generate_series(1, 2000000) g`));
    q.on('row', (r: unknown) => {
      rows.push(r);
      if (rows.length === 1000) controller.abort('hoop: this session was ended by an administrator');
    });
    const err = await new Promise<Error & { code?: string; severity?: string }>((resolve) => {
      q.on('error', resolve);
      q.on('end', () => resolve(new Error('ended without an error')));
    });
    // A clean FATAL, not a protocol parse error: it arrived between whole messages.
    expect(err).toMatchObject({ code: '57P01', severity: 'FATAL', message: 'hoop: this session was ended by an administrator' });
    await until(async () => (await running('generate_series(1, 2000000)')) === 0, 10_000);
    await until(() => h.sessionEnds().find((e) => e.reason === 'terminated'));
  });
});
