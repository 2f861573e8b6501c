/**
 * What the requester's terminal and client see of approvals, through the real tunnel:
 *   - `hoop connect`'s local tunnel is told of a hold out of band (a text message, asked for with
 *     X-Hoop-Events) and surfaces it as a TunnelEvent, while psql's bytes flow untouched; a client
 *     that did not ask gets no text message at all (an older CLI would hand one to psql);
 *   - a result cut at the row cap names an approval request created for the full result; once
 *     approved, the same statement (same parameters) run again runs whole, once.
 */
import pg from 'pg';
import WebSocket from 'ws';
import { afterAll, beforeAll, describe, expect, inject, test } from 'vitest';
import { holdEventOf, openLocalTunnel, type LocalTunnel, type TunnelEvent } from '../../src/client/tunnel.js';
import { startupMessage } from '../../src/protocols/postgres/messages.js';
import { apiCall, bankConnection, startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { until } from '../helpers/poll.js';
import { createTestDatabase, passwordOf, type UpstreamInfo } from '../helpers/postgres.js';
import { fe } from '../helpers/raw-client.js';
import { tunnelClient } from '../gateway/ws-client.js';

const shared = inject('upstream');
let db: { info: UpstreamInfo; drop(): Promise<void> };
let gw: TestGateway;
const tunnels: LocalTunnel[] = [];

const RULES = [{ name: 'full-export', when: { kind: ['select'], tables: ['customers'], where: false }, action: 'require_approval' }];

beforeAll(async () => {
  db = await createTestDatabase(shared, 'approvals_tunnel');
  const admin = new pg.Client({ host: db.info.host, port: db.info.port, user: db.info.users.scram, password: passwordOf(db.info.users.scram), database: db.info.database });
  await admin.connect();
  await admin.query("CREATE TABLE customers (id int PRIMARY KEY, name text); INSERT INTO customers SELECT i, 'c' || i FROM generate_series(1, 100) i");
  await admin.end();
  gw = await startTestGateway({
    upstream: db.info,
    apiKeys: [{ name: 'alice', groups: ['analysts'] }, { name: 'bob', groups: ['dba'] }, { name: 'dave', groups: ['dba'] }],
    connections: [
      bankConnection(db.info, { approval: { approvers: ['dba'], rules: RULES, row_cap: 50 } }),
      // No rules at all: only the cap.
      bankConnection(db.info, { name: 'capped', approval: { approvers: ['dba'], rules: [], row_cap: 50 } }),
    ],
  });
}, 60_000);

afterAll(async () => {
  for (const t of tunnels) await t.close();
  await gw?.close();
  await db?.drop();
});

const api = (method: 'GET' | 'POST', path: string, who: string, body?: unknown) => apiCall(gw, method, path, who, body);

describe('hoop connect is told of a hold', () => {
  test('the local tunnel surfaces the hold as a TunnelEvent; the session bytes are untouched and the rows arrive once approved', async () => {
    const events: TunnelEvent[] = [];
    const t = await openLocalTunnel({ gateway: gw.url, connection: 'bank', token: async () => gw.keys['alice']!, port: 0, user: 'alice', database: db.info.database, onEvent: (e) => events.push(e) });
    tunnels.push(t);
    const c = new pg.Client({ connectionString: t.uri });
    const notices: string[] = [];
    c.on('notice', (n) => notices.push(n.message ?? ''));
    await c.connect();
    try {
      const result = c.query('SELECT id FROM customers ORDER BY id');
      const hold = await until(() => events.find((e) => e.kind === 'hold'), { what: 'the hold event' });
      const id = hold.request!;
      expect(id).toMatch(/^r-[0-9a-f]{8}$/);
      expect(hold.message).toBe(`hoop: approval required (rule full-export) — request ${id}; waiting up to 10m; approve with: hoop review approve ${id}`);
      expect(hold.sessionId).toBe(events.find((e) => e.kind === 'client-connected')!.sessionId);
      // psql's NOTICE says the same; the event never reached the PostgreSQL stream.
      await until(() => notices.length > 0);
      expect(notices).toEqual([hold.message]);
      expect((await api('POST', `/reviews/${id}/approve`, 'bob', {})).status).toBe(200);
      expect((await result).rows).toHaveLength(100);
      expect((await c.query('SELECT 2 AS two')).rows).toEqual([{ two: 2 }]);
      expect(events.filter((e) => e.kind === 'hold')).toHaveLength(1);
    } finally {
      await c.end();
    }
  });

  test('a client that did not ask (an older hoop connect, any WebSocket client) gets only binary messages', async () => {
    const seen = async (headers: Record<string, string>, tag: string) => {
      const ws = new WebSocket(`${gw.url.replace(/^http/, 'ws')}/api/v1/connections/bank/tunnel`, { headers: { authorization: `Bearer ${gw.keys['alice']!}`, ...headers } });
      const texts: string[] = [];
      let bytes = Buffer.alloc(0);
      ws.on('message', (data: Buffer, isBinary) => {
        if (isBinary) bytes = Buffer.concat([bytes, data]);
        else texts.push(data.toString());
      });
      await new Promise((r, j) => (ws.once('open', r), ws.once('error', j)));
      ws.send(startupMessage({ user: 'alice', database: 'bank', application_name: `events-${tag}` }));
      ws.send(fe.query(`SELECT name FROM customers -- ${tag}`));
      // The event, when sent, goes before the NOTICE on the same socket.
      await until(() => bytes.includes('approval required'), { what: `the NOTICE (${tag})` });
      ws.terminate();
      return texts;
    };
    expect(await seen({}, 'no-header')).toEqual([]);
    const asked = await seen({ 'x-hoop-events': '1' }, 'asked');
    expect(asked).toHaveLength(1);
    expect(JSON.parse(asked[0]!)).toMatchObject({ event: 'hold', rule: 'full-export', request: expect.stringMatching(/^r-[0-9a-f]{8}$/) });
    expect(holdEventOf(asked[0]!)?.notice).toContain('approval required (rule full-export)');
  });

  test('events the client does not know, or that are not JSON, are ignored', () => {
    expect(holdEventOf('not json')).toBeNull();
    expect(holdEventOf('{"event":"later-kind","request":"r-00000000"}')).toBeNull();
    expect(holdEventOf('{"event":"hold","request":"r-zz","notice":"x"}')).toBeNull();
    expect(holdEventOf('{"event":"hold","request":"r-0123abcd","notice":"hoop: held"}')).toEqual({ request: 'r-0123abcd', notice: 'hoop: held' });
  });
});

describe('the row cap names an approval request for the full result', () => {
  const text = 'SELECT id FROM customers WHERE id > $1 ORDER BY id';

  test('cut at the cap: the error names a request; approved, the same statement runs whole once, other parameters stay capped', async () => {
    const c = await tunnelClient(gw.url, 'bank', gw.keys['alice']!, { application: 'row-cap' });
    try {
      const cut = await c.query({ text, values: [0] }).catch((e: unknown) => e as pg.DatabaseError);
      expect(cut).toMatchObject({ code: '54000', message: expect.stringContaining('row cap of 50') });
      const id = /approval request (r-[0-9a-f]{8}) was created for the full result; run the statement again once it is approved/.exec(String((cut as pg.DatabaseError).hint))?.[1];
      expect(id, String((cut as pg.DatabaseError).hint)).toBeDefined();
      const asked = await until(async () => {
        const r = await api('GET', `/requests/${id}`, 'alice');
        return r.status === 200 ? r.json : null;
      }, { what: 'the request stored' });
      expect(asked).toMatchObject({ id, kind: 'statement', connection: 'bank', status: 'pending', statement: text, parameters: ['0'], reason: 'row cap of 50 exceeded', session_id: null, requester: { subject: 'apikey:alice' } });
      // Not approved yet: still capped (and a second request for it).
      await expect(c.query({ text, values: [0] })).rejects.toMatchObject({ code: '54000' });
      expect((await api('POST', `/reviews/${id}/approve`, 'bob', { comment: 'quarterly report' })).status).toBe(200);
      // Other parameters are another statement: capped.
      await expect(c.query({ text, values: [1] })).rejects.toMatchObject({ code: '54000' });
      const whole = await c.query({ text, values: [0] });
      expect(whole.rows).toHaveLength(100);
      expect((await api('GET', `/requests/${id}`, 'alice')).json.status).toBe('used');
      // Used once: the next run is capped again.
      await expect(c.query({ text, values: [0] })).rejects.toMatchObject({ code: '54000' });
    } finally {
      await c.end();
    }
    const events = await gw.store.readEvents({});
    const ran = events.find((e) => e.type === 'query.start' && (e.data['decision'] as any)?.approval?.request !== undefined && e.data['statement'] === text);
    expect(ran?.data['decision']).toMatchObject({ action: 'run', approval: { approved_ahead: true, approvers: ['apikey:bob'] } });
    expect(ran?.data['decision']).not.toHaveProperty('row_cap');
    expect(events.some((e) => e.type === 'approval.requested' && e.data['reason'] === 'row cap of 50 exceeded')).toBe(true);
  });

  test('a connection with a cap and no rules: the same, for a simple query', async () => {
    const sql = 'SELECT id FROM customers -- capped only';
    const c = await tunnelClient(gw.url, 'capped', gw.keys['alice']!, { application: 'row-cap-only' });
    try {
      const cut = await c.query(sql).catch((e: unknown) => e as pg.DatabaseError);
      const id = /approval request (r-[0-9a-f]{8})/.exec(String((cut as pg.DatabaseError).hint))![1]!;
      await until(async () => (await api('GET', `/requests/${id}`, 'alice')).status === 200);
      expect((await api('POST', `/reviews/${id}/approve`, 'dave', {})).status).toBe(200);
      expect((await c.query(sql)).rows).toHaveLength(100);
    } finally {
      await c.end();
    }
  });
});
