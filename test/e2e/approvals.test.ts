/**
 * Access rules and the live hold, as the requester and the reviewers meet them: a risky statement
 * waits on the live connection until approved through the API, runs once, and everything behind
 * it waits in order; a deny, an expiry, a cancel end it with an error and the session goes on.
 */
import { spawn } from 'node:child_process';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { createHmac } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, test } from 'vitest';
import { openLocalTunnel, type LocalTunnel } from '../../src/client/tunnel.js';
import { collect, clientEnv, psql } from '../helpers/clients.js';
import { apiCall, bankConnection, startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { until } from '../helpers/poll.js';
import { createTestDatabase, passwordOf, type UpstreamInfo } from '../helpers/postgres.js';
import { errorsIn, fe, noticesIn, rawTunnel, rowsIn } from '../helpers/raw-client.js';
import { tunnelClient } from '../gateway/ws-client.js';

const shared = inject('upstream');
let db: { info: UpstreamInfo; drop(): Promise<void> };
let gw: TestGateway;
let hooks: Server;
const delivered: { headers: IncomingMessage['headers']; body: string }[] = [];
const SECRET = 'webhook-secret-0123456789';
const tunnels: LocalTunnel[] = [];

const RULES = [
  { name: 'analysts-read-only', groups: ['analysts'], when: { kind: ['insert', 'update', 'delete', 'merge', 'ddl', 'dcl', 'copy_in'] }, action: 'deny' },
  { name: 'full-export', when: { kind: ['select', 'copy_out'], tables: ['customers'], where: false }, action: 'require_approval' },
];

const PREDICATE_MASKING = { columns: [{ column: 'public.customers.name', type: 'name', method: 'redact' }], predicates: 'require_approval' };

function approval(extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { approvers: ['dba'], rules: RULES, row_cap: 50, ...extra };
}

beforeAll(async () => {
  db = await createTestDatabase(shared, 'approvals');
  const admin = new pg.Client({ host: db.info.host, port: db.info.port, user: db.info.users.scram, password: passwordOf(db.info.users.scram), database: db.info.database });
  await admin.connect();
  await admin.query('CREATE TABLE customers (id int PRIMARY KEY, name text); INSERT INTO customers SELECT i, \'c\' || i FROM generate_series(1, 100) i; ANALYZE customers');
  // Views are another way to read a table: a rule on customers must hold them too.
  await admin.query(`CREATE SCHEMA reports; CREATE VIEW reports.customer_list AS SELECT id, name FROM public.customers;
    CREATE VIEW reports.customer_list2 AS SELECT * FROM reports.customer_list; CREATE MATERIALIZED VIEW reports.snapshot AS SELECT * FROM public.customers;
    CREATE VIEW reports.numbers AS SELECT g FROM generate_series(1, 3) g`);
  await admin.end();
  hooks = createServer((req, res) => {
    let body = '';
    req.on('data', (d: Buffer) => (body += d.toString()));
    req.on('end', () => {
      delivered.push({ headers: req.headers, body });
      res.end('ok');
    });
  });
  await new Promise<void>((r) => hooks.listen(0, '127.0.0.1', r));
  const hookUrl = `http://127.0.0.1:${(hooks.address() as AddressInfo).port}/approvals`;
  gw = await startTestGateway({
    upstream: db.info,
    apiKeys: [{ name: 'alice', groups: ['analysts'] }, { name: 'bob', groups: ['dba'] }, { name: 'dave', groups: ['dba'] }, { name: 'root', groups: ['platform'] }],
    connections: [
      bankConnection(db.info, { approval: approval({ notify: [{ webhook: hookUrl, secret: SECRET }] }) }),
      bankConnection(db.info, { name: 'two', approval: approval({ min_approvals: 2 }) }),
      bankConnection(db.info, { name: 'fast', approval: approval({ timeout: '2s' }) }),
      bankConnection(db.info, { name: 'masked', masking: PREDICATE_MASKING, approval: { approvers: ['dba'], rules: [] } }),
      bankConnection(db.info, { name: 'masked-alone', masking: PREDICATE_MASKING }),
      bankConnection(db.info, { name: 'writes', approval: { approvers: ['dba'], rules: [{ name: 'unfiltered-write', when: { kind: ['update', 'delete'], where: false }, action: 'require_approval' }, RULES[1]] } }),
      bankConnection(db.info, { name: 'estimated', approval: { approvers: ['dba'], rules: [{ name: 'bulk-read', groups: ['analysts'], when: { kind: ['select', 'copy_out'], tables: ['customers'], estimated_rows: '>20' }, action: 'require_approval' }] } }),
    ],
  });
}, 60_000);

afterAll(async () => {
  for (const t of tunnels) await t.close();
  await gw?.close();
  await new Promise((r) => hooks?.close(r));
  await db?.drop();
});

const api = (method: 'GET' | 'POST', path: string, who: string, body?: unknown) => apiCall(gw, method, path, who, body);

/** A client whose NOTICEs (the hold's) are collected. */
async function client(who: string, connection = 'bank'): Promise<{ c: pg.Client; notices: string[] }> {
  const c = await tunnelClient(gw.url, connection, gw.keys[who]!, { application: `approvals-${who}` });
  const notices: string[] = [];
  c.on('notice', (n) => notices.push(n.message ?? ''));
  return { c, notices };
}

const requestIn = async (notices: string[]) => (await until(() => notices.map((n) => /request (r-[0-9a-f]{8})/.exec(n)?.[1]).find(Boolean)))!;

describe('the live hold', () => {
  test('a full export waits for a reviewer, then returns its rows; the approval is recorded and used once', async () => {
    const { c, notices } = await client('alice');
    try {
      const result = c.query('SELECT * FROM customers');
      const id = await requestIn(notices);
      expect(notices[0]).toBe(`hoop: approval required (rule full-export) — request ${id}; waiting up to 10m; approve with: hoop review approve ${id}`);
      const pending = await api('GET', '/reviews', 'bob');
      expect(pending.json.map((r: { id: string }) => r.id)).toContain(id);
      expect((await api('POST', `/reviews/${id}/approve`, 'bob', { comment: 'INC-42' })).status).toBe(200);
      // Approved: the row cap (50) does not cut what was approved.
      expect((await result).rows).toHaveLength(100);
    } finally {
      await c.end();
    }
    const events = await gw.store.readEvents({});
    const start = events.find((e) => e.type === 'query.start' && e.data['statement'] === 'SELECT * FROM customers');
    expect(start?.data['decision']).toMatchObject({ action: 'run', approval: { rule: 'full-export', outcome: 'approved', approvers: ['apikey:bob'] } });
    expect(events.some((e) => e.type === 'approval.decided' && e.data['decision'] === 'approve')).toBe(true);
  });

  test('a deny ends the statement with 42501 and the session goes on; the requester cannot approve their own', async () => {
    const { c, notices } = await client('alice');
    try {
      const result = c.query('SELECT name FROM customers').catch((e: unknown) => e);
      const id = await requestIn(notices);
      const self = await api('POST', `/reviews/${id}/approve`, 'alice', {});
      expect(self.status).toBe(403);
      await api('POST', `/reviews/${id}/deny`, 'bob', { comment: 'use the report instead' });
      expect(await result).toMatchObject({ code: '42501', message: expect.stringContaining('denied by apikey:bob: use the report instead') });
      expect((await c.query('SELECT 1 AS ok')).rows).toEqual([{ ok: 1 }]);
    } finally {
      await c.end();
    }
  });

  test('a view over the table (or a view of it, a materialized view) is held by the rule on the table; other views are not', async () => {
    for (const view of ['reports.customer_list', 'reports.customer_list2', 'reports.snapshot']) {
      const { c, notices } = await client('alice');
      try {
        const result = c.query(`SELECT * FROM ${view}`).catch((e: unknown) => e);
        const id = await requestIn(notices);
        expect(notices[0], view).toContain('(rule full-export)');
        expect((await api('POST', `/reviews/${id}/deny`, 'bob', { comment: 'not a view around the rule' })).status).toBe(200);
        expect(await result, view).toMatchObject({ code: '42501' });
      } finally {
        await c.end();
      }
    }
    const { c, notices } = await client('alice');
    try {
      expect((await c.query('SELECT * FROM reports.numbers')).rows).toHaveLength(3);
      expect(notices).toEqual([]);
    } finally {
      await c.end();
    }
  });

  test('undecided within the timeout: expired', async () => {
    const { c } = await client('alice', 'fast');
    try {
      await expect(c.query('SELECT id FROM customers')).rejects.toMatchObject({ code: '42501', message: expect.stringContaining('expired') });
    } finally {
      await c.end();
    }
  });

  test('two-person rule: one approval keeps it waiting, a second approver releases it', async () => {
    const { c, notices } = await client('alice', 'two');
    try {
      let done = false;
      const result = c.query('SELECT id FROM customers LIMIT 3').then((r) => ((done = true), r));
      const id = await requestIn(notices);
      await api('POST', `/reviews/${id}/approve`, 'bob', {});
      expect((await api('POST', `/reviews/${id}/approve`, 'bob', {})).status).not.toBe(200);
      expect((await api('GET', `/reviews/${id}`, 'bob')).json.status).toBe('pending');
      expect(done).toBe(false);
      await api('POST', `/reviews/${id}/approve`, 'dave', {});
      expect((await result).rows).toHaveLength(3);
    } finally {
      await c.end();
    }
  });

  test('pipelined extended-protocol statements behind a held one wait, then run in order', async () => {
    const raw = await rawTunnel(gw.url, gw.keys['alice']!, { application: 'approvals-pipeline' });
    try {
      raw.send(fe.parse('', 'SELECT id FROM customers ORDER BY id LIMIT 2'), fe.bind('', ''), fe.execute(), fe.parse('', "SELECT 'after' AS x"), fe.bind('', ''), fe.execute(), fe.sync());
      const notice = await raw.waitFor(0, (ms) => noticesIn(ms).length > 0, 'the hold notice');
      expect(rowsIn(raw.messages)).toEqual([]);
      const id = /request (r-[0-9a-f]{8})/.exec(noticesIn(notice.messages)[0]!.M!)![1]!;
      const decided = await api('POST', `/reviews/${id}/approve`, 'bob', {});
      expect(decided.status, JSON.stringify(decided.json)).toBe(200);
      const ex = await raw.waitFor(0, (ms) => ms.some((m) => m.type === 'Z'), 'ReadyForQuery');
      expect(errorsIn(ex.messages)).toEqual([]);
      expect(rowsIn(ex.messages)).toEqual([['1'], ['2'], ['after']]);
    } finally {
      await raw.end();
    }
  });

  test('Ctrl-C in psql while held cancels the request', async () => {
    const t = await openLocalTunnel({ gateway: gw.url, connection: 'bank', token: async () => gw.keys['alice']!, port: 0, user: 'alice', database: db.info.database });
    tunnels.push(t);
    const child = spawn('psql', ['-X', '-w', '-At', '-d', t.uri, '-c', 'SELECT name FROM customers -- ctrl-c'], { env: clientEnv() });
    const out = collect(child, 30_000);
    const held = await until(async () => (await api('GET', '/reviews', 'bob')).json.find((r: { statement: string }) => r.statement.includes('-- ctrl-c')));
    child.kill('SIGINT');
    const r = await out;
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('cancelled');
    await until(async () => (await api('GET', `/reviews/${held.id}`, 'bob')).json.status === 'cancelled');
  });
});

describe('masking.predicates: require_approval', () => {
  test('a predicate on a protected column is held, and runs masked once approved; without approvers it is refused', async () => {
    const { c, notices } = await client('alice', 'masked');
    try {
      const result = c.query("SELECT id, name FROM customers WHERE name = 'c7'");
      const id = await requestIn(notices);
      expect(notices[0]).toContain('(rule masking.predicates)');
      await api('POST', `/reviews/${id}/approve`, 'bob', {});
      expect((await result).rows).toEqual([{ id: 7, name: '****' }]);
    } finally {
      await c.end();
    }
    const alone = await client('alice', 'masked-alone');
    await expect(alone.c.query("SELECT id FROM customers WHERE name = 'c7'")).rejects.toMatchObject({ code: '42501', message: expect.stringContaining('no approval block') });
    await alone.c.end();
  });
});

describe('a rule is not walked around by wrapping its statement in code, or by copying the table', () => {
  test('a DELETE inside a DO block or a function body, or a CALL of a procedure hoop cannot read, is held like the DELETE itself; so is a copy of the table', async () => {
    const asAdmin = async <T>(run: (admin: pg.Client) => Promise<T>): Promise<T> => {
      const admin = new pg.Client({ host: db.info.host, port: db.info.port, user: db.info.users.scram, password: passwordOf(db.info.users.scram), database: db.info.database });
      await admin.connect();
      try {
        return await run(admin);
      } finally {
        await admin.end();
      }
    };
    const count = () => asAdmin(async (a) => (await a.query("SELECT (SELECT count(*) FROM customers)::int AS customers, (SELECT count(*) FROM pg_proc WHERE proname = 'wipe')::int AS functions")).rows[0]);
    // A procedure made outside hoop: its body is out of hoop's sight, so its CALL could be anything.
    await asAdmin((a) => a.query("CREATE PROCEDURE public.purge() LANGUAGE sql AS 'DELETE FROM customers'"));
    const { c, notices } = await client('bob', 'writes');
    try {
      for (const text of [
        'DO $$ BEGIN DELETE FROM customers; END $$',
        "CREATE FUNCTION public.wipe() RETURNS void LANGUAGE sql AS 'DELETE FROM customers'",
        'CALL public.purge()',
      ]) {
        notices.length = 0;
        const ran = c.query(text).then(() => null, (e: { code?: string }) => e);
        const id = await requestIn(notices);
        expect(notices[0], text).toContain('(rule unfiltered-write)');
        expect((await api('POST', `/reviews/${id}/deny`, 'dave', { comment: 'no' })).status).toBe(200);
        expect(await ran, text).toMatchObject({ code: '42501', message: expect.stringContaining(text.startsWith('CALL') ? 'CALL runs a procedure whose body hoop does not see, so the strictest rule that could apply to what it runs decides' : 'rule unfiltered-write: delete without WHERE') });
      }
      // The oracle: nothing of it reached the database.
      expect(await count()).toEqual({ customers: 100, functions: 0 });
      // Copying the table out from under the rule's name is reading it.
      notices.length = 0;
      const copied = c.query('CREATE TABLE public.customers_copy AS SELECT * FROM customers').then(() => null, (e: { code?: string }) => e);
      const copy = await requestIn(notices);
      expect(notices[0]).toContain('(rule full-export)');
      expect((await api('POST', `/reviews/${copy}/deny`, 'dave', { comment: 'no' })).status).toBe(200);
      expect(await copied).toMatchObject({ code: '42501' });
      expect(await asAdmin(async (a) => (await a.query("SELECT to_regclass('public.customers_copy') AS t")).rows[0])).toEqual({ t: null });
      // So is a function that runs a query given as text.
      for (const text of ["SELECT query_to_xml('SELECT * FROM customers', true, false, '')", "SELECT table_to_xml('customers', true, false, '')"]) {
        notices.length = 0;
        const xml = c.query(text).then(() => null, (e: { code?: string }) => e);
        const held = await requestIn(notices);
        expect(notices[0], text).toContain('(rule full-export)');
        expect((await api('POST', `/reviews/${held}/deny`, 'dave', { comment: 'no' })).status).toBe(200);
        expect(await xml, text).toMatchObject({ code: '42501' });
      }
      // Code that runs nothing a rule names is not held.
      notices.length = 0;
      await c.query("DO $$ BEGIN DELETE FROM customers WHERE id = -1; RAISE NOTICE 'done'; END $$");
      expect(notices).toEqual(['done']);
    } finally {
      await c.end();
      await asAdmin((a) => a.query('DROP PROCEDURE public.purge()'));
    }
  });
});

describe('rules without a hold', () => {
  test('a group-scoped deny refuses analysts, not others', async () => {
    const { c } = await client('alice');
    await expect(c.query('DELETE FROM customers WHERE id = -1')).rejects.toMatchObject({ code: '42501', message: expect.stringContaining('analysts-read-only') });
    await c.end();
    const bob = await client('bob');
    expect((await bob.c.query('DELETE FROM customers WHERE id = -1')).rowCount).toBe(0);
    await bob.c.end();
  });

  test('approved ahead of time: runs at once, once, and only with the same parameters', async () => {
    const text = 'SELECT id FROM customers WHERE $1::int > 0 LIMIT 1';
    // A WHERE that names no column does not count: this is still a full export.
    const asked = await api('POST', '/connections/bank/requests', 'alice', { query: text, reason: 'INC-7' });
    expect(asked.status).toBe(201);
    await api('POST', `/reviews/${asked.json.id}/approve`, 'bob', {});
    const { c, notices } = await client('alice');
    try {
      // pg sends no parameters for a text without them; this one is approved for [] only.
      // A named prepared statement: its later Executes must not reuse the approval.
      const ran = await c.query({ name: 'ahead', text, values: [] as unknown[] }).catch((e: unknown) => e);
      expect(notices).toEqual([]);
      expect(ran).toBeDefined();
      const again = c.query({ name: 'ahead', text, values: [] as unknown[] }).catch((e: unknown) => e);
      await requestIn(notices); // used once: the second run is held
      const id = /request (r-[0-9a-f]{8})/.exec(notices[0]!)![1]!;
      await api('POST', `/reviews/${id}/deny`, 'bob', { comment: 'once is enough' });
      expect(await again).toMatchObject({ code: '42501' });
    } finally {
      await c.end();
    }
  });

  test('the row cap stops a result past it with 54000', async () => {
    const { c } = await client('bob');
    try {
      await expect(c.query('SELECT * FROM customers WHERE id > 0')).rejects.toMatchObject({ code: '54000', message: expect.stringContaining('row cap of 50') });
      expect((await c.query('SELECT count(*)::int AS n FROM customers WHERE id > 0')).rows).toEqual([{ n: 100 }]);
    } finally {
      await c.end();
    }
  });

  test('a whole table packed into one row (string_agg) is held by the bulk-read rule, whatever the planner estimates; a count is not', async () => {
    const { c, notices } = await client('alice', 'estimated');
    try {
      const packed = c.query("SELECT string_agg(name, ',') AS names FROM customers WHERE id % 1 = 0").then(() => null, (e: { code?: string; message: string }) => e);
      const id = await requestIn(notices);
      expect(notices[0]).toContain('(rule bulk-read)');
      expect((await api('POST', `/reviews/${id}/deny`, 'bob', { comment: 'no' })).status).toBe(200);
      expect(await packed).toMatchObject({ code: '42501', message: expect.stringContaining('collecting rows into values') });
      expect((await c.query('SELECT count(*)::int AS n FROM customers WHERE id % 1 = 0')).rows).toEqual([{ n: 100 }]);
    } finally {
      await c.end();
    }
  });

  test('the row cap counts a result whole: over a portal\'s Executes (with a row limit), a cursor\'s FETCHes, and notices', async () => {
    const raw = await rawTunnel(gw.url, gw.keys['bob']!, { application: 'approvals-portal' });
    try {
      const ex = await raw.exchange([fe.parse('', 'SELECT id FROM customers WHERE id > 0 ORDER BY id'), fe.bind('p', ''), ...Array.from({ length: 5 }, () => fe.execute('p', 20)), fe.sync()]);
      // 20 + 20 rows suspended, then the third Execute passes the cap of 50 at its 11th row.
      expect(ex.messages.filter((m) => m.type === 's')).toHaveLength(2);
      expect(rowsIn(ex.messages)).toHaveLength(50);
      expect(errorsIn(ex.messages).map((e) => e.C)).toEqual(['54000']);
      // The same one Execute at a time, each waiting for the last (postgres.js's cursors).
      await raw.query('BEGIN');
      const one = [await raw.exchange([fe.parse('', 'SELECT id FROM customers WHERE id > 0 ORDER BY id'), fe.bind('q', ''), fe.execute('q', 30), fe.sync()])];
      for (let i = 0; i < 2; i++) one.push(await raw.exchange([fe.execute('q', 30), fe.sync()]));
      expect(one.slice(0, 2).map((f) => [rowsIn(f.messages).length, errorsIn(f.messages).map((e) => e.C)])).toEqual([[30, []], [20, ['54000']]]);
      // Past the cap nothing more of it comes: cut again (or, if the cancel reached the server
      // while it still ran, the transaction is aborted).
      expect(rowsIn(one[2]!.messages)).toEqual([]);
      expect(['54000', '25P02']).toContain(errorsIn(one[2]!.messages)[0]?.C);
      await raw.query('ROLLBACK');
      // A SQL cursor: FETCH after FETCH, each a statement of its own, reads one result too.
      await raw.query('BEGIN; DECLARE c CURSOR FOR SELECT id FROM customers WHERE id > 0');
      const fetches = [];
      for (let i = 0; i < 3; i++) fetches.push(await raw.query('FETCH 30 FROM c'));
      expect(fetches.slice(0, 2).map((f) => [rowsIn(f.messages).length, errorsIn(f.messages).map((e) => e.C)])).toEqual([[30, []], [20, ['54000']]]);
      expect(rowsIn(fetches[2]!.messages)).toEqual([]);
      expect(['54000', '25P02']).toContain(errorsIn(fetches[2]!.messages)[0]?.C);
      // A new cursor (once the old one is gone) starts a new count; a MOVE returns no rows.
      await raw.query('ROLLBACK');
      const again = await raw.query("BEGIN; DECLARE c CURSOR FOR SELECT id FROM customers WHERE id > 0; MOVE 60 IN c");
      expect(errorsIn(again.messages)).toEqual([]);
      expect(rowsIn((await raw.query('FETCH 45 FROM c')).messages)).toHaveLength(40);
      await raw.query('COMMIT');
      // Notices carry data too: a DO block that RAISEs a row at a time is cut at the cap as well.
      const told = await raw.query(`DO $$ DECLARE r record; BEGIN FOR r IN SELECT id FROM customers WHERE id > 0 LOOP RAISE NOTICE 'row %', r.id; END LOOP; END $$`);
      expect(noticesIn(told.messages)).toHaveLength(50);
      expect(errorsIn(told.messages).map((e) => e.C)).toEqual(['54000']);
      // And notifications to one's own session, which arrive as the statement commits.
      const notified = await raw.query(`LISTEN ch; DO $$ DECLARE r record; BEGIN FOR r IN SELECT id FROM customers WHERE id > 0 LOOP PERFORM pg_notify('ch', r.id::text); END LOOP; END $$`);
      expect(notified.messages.filter((m) => m.type === 'A')).toHaveLength(50);
      expect(errorsIn(notified.messages).map((e) => e.C)).toEqual(['54000']);
      // The counts are kept, never forgotten: past 1,000 cursors a FETCH from a new one is refused.
      await raw.query('BEGIN');
      const many = await raw.exchange(Array.from({ length: 1000 }, (_, i) => fe.query(`DECLARE k${i} CURSOR FOR SELECT 1; FETCH 1 FROM k${i}`)), 1000, 60_000);
      expect(errorsIn(many.messages)).toEqual([]);
      const more = await raw.query('DECLARE k_new CURSOR FOR SELECT 1; FETCH 1 FROM k_new');
      expect(errorsIn(more.messages).map((e) => e.M)).toEqual([expect.stringContaining('has fetched from 1000 cursors')]);
      expect(rowsIn((await raw.query('ROLLBACK; BEGIN; DECLARE k7 CURSOR FOR SELECT 7; FETCH 1 FROM k7')).messages)).toEqual([['7']]);
      await raw.query('COMMIT');
    } finally {
      await raw.end();
    }
  });

  test('a parameterized read (the pg driver) is estimated with its values: a small one runs, a large one is held', async () => {
    const { c, notices } = await client('alice', 'estimated');
    try {
      expect((await c.query('SELECT id FROM customers WHERE id <= $1 ORDER BY id', [5])).rows).toEqual([1, 2, 3, 4, 5].map((id) => ({ id })));
      expect(notices).toEqual([]);
      const large = c.query('SELECT id FROM customers WHERE id <= $1', [90]).then(() => null, (e: { code?: string }) => e);
      const held = await requestIn(notices);
      expect(notices[0]).toContain('rule bulk-read');
      expect((await api('POST', `/reviews/${held}/deny`, 'bob', { comment: 'too many' })).status).toBe(200);
      expect(await large).toMatchObject({ code: '42501' });
    } finally {
      await c.end();
    }
  });

  test("a read the planner underestimates is stopped at the rule's bound, with a request for the whole result", async () => {
    const { c, notices } = await client('alice', 'estimated');
    // The oracle: PostgreSQL estimates `id % 1 = 0` at a fraction of the rows it returns.
    const underestimated = 'SELECT id FROM customers WHERE id % 1 = 0';
    const admin = new pg.Client({ host: db.info.host, port: db.info.port, user: db.info.users.scram, password: passwordOf(db.info.users.scram), database: db.info.database });
    await admin.connect();
    const plan = (await admin.query(`EXPLAIN (FORMAT JSON) ${underestimated}`)).rows[0]['QUERY PLAN'][0].Plan;
    await admin.end();
    expect(plan['Plan Rows']).toBeLessThanOrEqual(20);
    try {
      const cut = await c.query(underestimated).then(() => null, (e: { code?: string; message: string; hint?: string }) => e);
      expect(cut).toMatchObject({ code: '54000', message: expect.stringContaining('row cap of 20 rows') });
      expect(notices).toEqual([]); // stopped, not held
      const id = /approval request (r-[0-9a-f]{8})/.exec(cut!.hint ?? '')?.[1];
      expect(id, cut!.hint).toBeDefined();
      const request = await until(async () => (await api('GET', '/reviews', 'bob')).json.find((r: { id: string }) => r.id === id));
      expect(request).toMatchObject({ rule: null, reason: expect.stringContaining('more than 20 rows, which rule bulk-read holds for approval') });
      // Within the bound it runs; what the rule does not apply to (bob is not an analyst) is not capped.
      expect((await c.query(`${underestimated} AND id <= 20`)).rows).toHaveLength(20);
      const { c: bob } = await client('bob', 'estimated');
      expect((await bob.query(underestimated)).rows).toHaveLength(100);
      await bob.end();
      // Approved, the same statement runs whole, once.
      expect((await api('POST', `/reviews/${id}/approve`, 'bob', {})).status).toBe(200);
      expect((await c.query(underestimated)).rows).toHaveLength(100);
      await expect(c.query(underestimated)).rejects.toMatchObject({ code: '54000' });
      // A cursor (psql's FETCH_COUNT reads every result so) runs, and its FETCHes together stop
      // at the bound, asking for approval of its query; once approved, declared again, it is read whole.
      await c.query('BEGIN');
      await c.query(`DECLARE big CURSOR FOR ${underestimated}`);
      expect(notices).toEqual([]);
      expect((await c.query('FETCH 15 FROM big')).rows).toHaveLength(15);
      const cursorCut = await c.query('FETCH 15 FROM big').then(() => null, (e: { code?: string; message: string; hint?: string }) => e);
      expect(cursorCut).toMatchObject({ code: '54000', message: expect.stringContaining('row cap of 20 rows') });
      const forQuery = /approval request (r-[0-9a-f]{8})/.exec(cursorCut!.hint ?? '')?.[1];
      expect(cursorCut!.hint).toContain("the cursor's query");
      await c.query('ROLLBACK');
      const asked = await until(async () => (await api('GET', '/reviews', 'bob')).json.find((r: { id: string }) => r.id === forQuery));
      expect(asked).toMatchObject({ statement: `DECLARE big CURSOR FOR ${underestimated}`, reason: expect.stringContaining('which rule bulk-read holds for approval') });
      expect((await api('POST', `/reviews/${forQuery}/approve`, 'bob', {})).status).toBe(200);
      await c.query('BEGIN');
      await c.query(`DECLARE big CURSOR FOR ${underestimated}`);
      expect((await c.query('FETCH 60 FROM big')).rows).toHaveLength(60);
      expect((await c.query('FETCH ALL FROM big')).rows).toHaveLength(40);
      await c.query('CLOSE big');
      // The approval was used once: the same cursor declared again is capped again.
      await c.query(`DECLARE big CURSOR FOR ${underestimated}`);
      await expect(c.query('FETCH ALL FROM big')).rejects.toMatchObject({ code: '54000' });
      await c.query('ROLLBACK');
      // psql with FETCH_COUNT (a cursor per query, FETCH FORWARD n): read as without it.
      const t = await openLocalTunnel({ gateway: gw.url, connection: 'estimated', token: async () => gw.keys['alice']!, port: 0, user: 'alice', database: db.info.database });
      tunnels.push(t);
      const small = await psql(t.uri, ['-v', 'FETCH_COUNT=4', '-c', 'SELECT id FROM customers WHERE id <= 10 ORDER BY id', '-c', 'SELECT count(*) FROM customers']);
      expect(small).toMatchObject({ code: 0, stdout: `${Array.from({ length: 10 }, (_, i) => i + 1).join('\n')}\n100\n` });
      const big = await psql(t.uri, ['-v', 'FETCH_COUNT=8', '-c', underestimated]);
      expect(big.code).not.toBe(0);
      expect(big.stderr).toContain('row cap of 20 rows');
      expect(big.stdout.trim().split('\n')).toHaveLength(16); // two whole FETCHes of 8 printed before the cut
      await c.query('BEGIN');
      await c.query('ROLLBACK');
    } finally {
      await c.end();
    }
  });

  test('the shared-credential guard runs before everything', async () => {
    const { c } = await client('bob');
    await expect(c.query('ALTER ROLE CURRENT_USER PASSWORD \'x\'')).rejects.toMatchObject({ code: '42501' });
    await expect(c.query('SELECT pg_terminate_backend(1)')).rejects.toMatchObject({ code: '42501' });
    await c.end();
  });

  test('approvers are notified by a signed webhook', async () => {
    const hit = await until(() => delivered.find((d) => d.body.includes('"approval.requested"')));
    const signature = String(hit.headers['x-hoop-signature']);
    const [t, v1] = signature.split(',').map((p) => p.split('=')[1]);
    expect(v1).toBe(createHmac('sha256', SECRET).update(`${t}.${hit.body}`).digest('hex'));
    expect(JSON.parse(hit.body)).toMatchObject({ event: 'approval.requested', connection: 'bank', rule: 'full-export' });
  });
});
