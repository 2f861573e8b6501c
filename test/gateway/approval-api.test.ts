/** The approvals HTTP API against a real gateway: reviews, decisions, ahead-of-time requests. */
import { request } from 'undici';
import { until } from '../helpers/poll.js';
import { afterAll, beforeAll, describe, expect, inject, test } from 'vitest';
import type { ApprovalRequest } from '../../src/api/types.js';
import type { ApprovalConfig } from '../../src/policy/risk/types.js';
import { bankConnection, startTestGateway, type TestGateway } from '../helpers/gateway.js';

const upstream = inject('upstream');
let gw: TestGateway;

const approval: ApprovalConfig = { approvers: ['dba'], minApprovals: 1, timeoutMs: 600_000, grantMaxMs: 8 * 3_600_000, notify: [], rules: [], rowCap: null };

beforeAll(async () => {
  gw = await startTestGateway({
    upstream,
    apiKeys: [
      { name: 'alice', groups: ['analysts'] }, { name: 'bob', groups: ['dba'] }, { name: 'dave', groups: ['dba'] },
      { name: 'carol', groups: ['audit'] }, { name: 'root', groups: ['platform'] }, { name: 'erin', groups: ['analysts'] },
      { name: 'gina', groups: ['contractors'] },
    ],
    connections: [bankConnection(upstream), bankConnection(upstream, { name: 'ledger', access: ['analysts'] })],
    // Until the config file takes an approval block: attach one to `bank` as parsed.
    adjustConfig: (c) => ({ ...c, connections: c.connections.map((x) => (x.name === 'bank' ? Object.assign({ ...x }, { approval, accessByGrant: ['contractors'] }) : x)) }),
  });
});
afterAll(async () => {
  await gw?.close();
});

async function call(method: 'GET' | 'POST', path: string, key: string, body?: unknown) {
  const res = await request(`${gw.url}${path}`, {
    method,
    headers: { authorization: `Bearer ${gw.keys[key]}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  const text = await res.body.text();
  return { status: res.statusCode, json: JSON.parse(text) as any };
}

const ask = async (key = 'alice', query = 'DELETE FROM accounts WHERE id = 1') => {
  const r = await call('POST', '/api/v1/connections/bank/requests', key, { query, reason: 'INC-42' });
  expect(r.status).toBe(201);
  return r.json as ApprovalRequest;
};

describe('ahead-of-time requests', () => {
  test('created pending with the fingerprint, recorded, and readable by its requester and approvers only', async () => {
    const r = await ask();
    expect(r).toMatchObject({
      kind: 'statement', connection: 'bank', status: 'pending', statement: 'DELETE FROM accounts WHERE id = 1', parameters: [], reason: 'INC-42',
      requester: { subject: 'apikey:alice', groups: ['analysts'] }, approvers: ['dba'], min_approvals: 1, session_id: null, approvals: [],
    });
    expect(r.fingerprint).toMatch(/^[0-9a-f]{16}\.[0-9a-f]{32}$/);
    expect((await ask('alice', 'DELETE FROM accounts WHERE id = 2')).fingerprint).not.toBe(r.fingerprint);
    expect((await call('GET', `/api/v1/requests/${r.id}`, 'alice')).json).toEqual(r);
    expect((await call('GET', `/api/v1/reviews/${r.id}`, 'bob')).status).toBe(200);
    expect((await call('GET', `/api/v1/requests/${r.id}`, 'carol')).status).toBe(200); // auditor
    const other = await call('GET', `/api/v1/requests/${r.id}`, 'erin');
    expect(other).toEqual({ status: 404, json: { error: { code: 'HOOP_NOT_FOUND', message: `no request ${r.id}` } } });
    expect((await call('GET', '/api/v1/requests/r-00000000', 'alice')).status).toBe(404);
    expect((await call('GET', '/api/v1/requests/nope', 'alice')).status).toBe(400);
    // access.denied is recorded beside the answer, not before it: poll for it.
    const events = await until(async () => {
      const all = await gw.store.readEvents({ types: ['approval.requested', 'access.denied'] });
      return all.some((e) => e.type === 'access.denied' && e.data.request === r.id) ? all : null;
    });
    expect(events.find((e) => e.type === 'approval.requested' && e.data.request === r.id)).toMatchObject({ actor: { subject: 'apikey:alice' }, data: { statement: r.statement, reason: 'INC-42' } });
    expect(events.find((e) => e.type === 'access.denied' && e.data.request === r.id)).toMatchObject({ actor: { subject: 'apikey:erin' } });
  });

  test('refused: a connection without an approval block, one outside your groups, no reason, a bad body', async () => {
    const noBlock = await call('POST', '/api/v1/connections/ledger/requests', 'alice', { query: 'SELECT 1', reason: 'x' });
    expect(noBlock).toMatchObject({ status: 400, json: { error: { code: 'HOOP_USAGE', message: expect.stringContaining('no approval block') } } });
    expect((await call('POST', '/api/v1/connections/bank/requests', 'carol', { query: 'SELECT 1', reason: 'x' })).json.error.code).toBe('HOOP_FORBIDDEN');
    expect((await call('POST', '/api/v1/connections/nope/requests', 'alice', { query: 'SELECT 1', reason: 'x' })).status).toBe(404);
    expect((await call('POST', '/api/v1/connections/bank/requests', 'alice', { query: 'SELECT 1' })).json.error.message).toContain('reason');
    expect((await call('POST', '/api/v1/connections/bank/requests', 'alice', { query: 'SELECT 1', duration: '1h', reason: 'x' })).status).toBe(400);
    expect((await call('POST', '/api/v1/connections/bank/requests', 'alice', { query: 'SELECT 1', reason: 'x', extra: 1 })).status).toBe(400);
    expect((await call('POST', '/api/v1/connections/bank/requests', 'gina', { duration: '9h', reason: 'x' })).json.error.message).toContain('grant_max');
    expect((await call('POST', '/api/v1/connections/bank/requests', 'gina', { duration: '0s', reason: 'x' })).status).toBe(400);
  });

  test('a grant request stores its duration; only a member of access_by_grant asks for one; without a grant, no statement requests', async () => {
    const r = await call('POST', '/api/v1/connections/bank/requests', 'gina', { duration: '2h', reason: 'on call' });
    expect(r).toMatchObject({ status: 201, json: { kind: 'grant', statement: null, fingerprint: null, duration_ms: 7_200_000, status: 'pending' } });
    const needless = await call('POST', '/api/v1/connections/bank/requests', 'alice', { duration: '2h', reason: 'on call' });
    expect(needless).toMatchObject({ status: 400, json: { error: { message: 'you may use connection bank without a grant (one of your groups is in its access list)' } } });
    expect((await call('POST', '/api/v1/connections/ledger/requests', 'gina', { duration: '2h', reason: 'x' })).status).toBe(403);
    const statement = await call('POST', '/api/v1/connections/bank/requests', 'gina', { query: 'SELECT 1', reason: 'x' });
    expect(statement).toMatchObject({ status: 403, json: { error: { code: 'HOOP_FORBIDDEN', message: expect.stringContaining('only inside an approved access grant') } } });
  });
});

describe('reviews and decisions', () => {
  test('reviewers see the pending requests they may decide, never their own; all=true shows what each may see', async () => {
    const mine = await ask('bob', 'SELECT * FROM customers'); // bob asks: dba decides, but not bob
    const theirs = await ask('alice', 'SELECT * FROM accounts');
    const ids = async (key: string, all = false) => ((await call('GET', `/api/v1/reviews${all ? '?all=true' : ''}`, key)).json as ApprovalRequest[]).map((r) => r.id);
    expect(await ids('bob')).toContain(theirs.id);
    expect(await ids('bob')).not.toContain(mine.id);
    expect(await ids('dave')).toEqual(expect.arrayContaining([mine.id, theirs.id]));
    expect(await ids('alice')).toEqual([]);
    expect(await ids('root')).toEqual(expect.arrayContaining([mine.id, theirs.id])); // admin
    expect(await ids('alice', true)).toContain(theirs.id);
    expect(await ids('alice', true)).not.toContain(mine.id);
    expect(await ids('erin', true)).toEqual([]);
    expect(await ids('carol', true)).toEqual(expect.arrayContaining([mine.id, theirs.id])); // auditor: all
    const listed = (await call('GET', '/api/v1/reviews', 'dave')).json as ApprovalRequest[];
    expect(Object.keys(listed[0]!)).toEqual(expect.arrayContaining(['id', 'connection', 'requester', 'statement', 'parameters', 'rule', 'status', 'created_at', 'expires_at', 'approvals']));
    expect((await call('GET', '/api/v1/reviews?mine=1', 'bob')).status).toBe(400);
  });

  test('approve (comment optional) and deny (comment required); self-approval and non-approvers get 403; decisions are final', async () => {
    const r = await ask();
    const self = await call('POST', `/api/v1/reviews/${r.id}/approve`, 'alice', {});
    // The requester: refused before anything else is checked.
    expect(self.status).toBe(403);
    expect(self.json.error.code).toBe('HOOP_FORBIDDEN');
    const own = await ask('bob', 'SELECT * FROM customers WHERE true');
    expect((await call('POST', `/api/v1/reviews/${own.id}/approve`, 'bob', {})).json.error).toEqual({ code: 'HOOP_FORBIDDEN', message: `you may not decide your own request ${own.id}`, hint: 'another approver must decide it' });
    expect((await call('POST', `/api/v1/reviews/${r.id}/approve`, 'erin', {})).status).toBe(404); // may not even read it
    expect((await call('POST', `/api/v1/reviews/${r.id}/deny`, 'bob', {})).json.error.message).toContain('needs a comment');
    const approved = await call('POST', `/api/v1/reviews/${r.id}/approve`, 'bob');
    expect(approved).toMatchObject({ status: 200, json: { status: 'approved', approvals: [{ approver: 'apikey:bob', decision: 'approve', comment: null }] } });
    expect((await call('POST', `/api/v1/reviews/${r.id}/deny`, 'dave', { comment: 'late' })).status).toBe(409);
    const d = await ask();
    expect(await call('POST', `/api/v1/reviews/${d.id}/deny`, 'dave', { comment: 'use a WHERE' })).toMatchObject({ status: 200, json: { status: 'denied' } });
    expect((await call('GET', `/api/v1/requests/${d.id}`, 'alice')).json.approvals).toEqual([expect.objectContaining({ approver: 'apikey:dave', decision: 'deny', comment: 'use a WHERE' })]);
    const decided = (await gw.store.readEvents({ types: ['approval.decided'] })).filter((e) => e.data.request === d.id);
    expect(decided).toMatchObject([{ actor: { subject: 'apikey:dave', groups: ['dba'] }, data: { decision: 'deny', comment: 'use a WHERE' } }]);
    const denials = (await gw.store.readEvents({ types: ['access.denied'] })).filter((e) => e.data.request === own.id);
    expect(denials).toMatchObject([{ actor: { subject: 'apikey:bob' }, data: { stage: 'role', code: 'HOOP_FORBIDDEN' } }]);
  });
});
