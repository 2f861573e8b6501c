/**
 * ApprovalService over real stores: SQLite (one gateway) and PostgreSQL, where two services on
 * one database are two replicas — a statement held on one is released by a decision through
 * the other, by NOTIFY, or by the poll when the notification is lost.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterAll, afterEach, describe, expect, inject, test } from 'vitest';
import type { AuditEvent } from '../../src/audit/event.js';
import { AuditRecorder } from '../../src/audit/recorder.js';
import { ApprovalService, type HoldInput } from '../../src/gateway/approvals.js';
import type { Identity } from '../../src/identity/identity.js';
import type { ApprovalConfig } from '../../src/policy/risk/types.js';
import { openStore } from '../../src/store/index.js';
import type { Store } from '../../src/store/store.js';
import { createTestDatabase } from '../helpers/postgres.js';

const logger = pino({ level: 'silent' });
const dir = mkdtempSync(join(tmpdir(), 'hoop-approvals-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const who = (subject: string, groups: string[]): Identity => ({ subject, email: `${subject}@bank.example`, name: null, groups, method: 'api_key', expiresAt: null });
const alice = who('apikey:alice', ['analysts']);
const bob = who('apikey:bob', ['dba']);
const dave = who('apikey:dave', ['dba']);
const carol = who('apikey:carol', ['audit']);
const root = who('apikey:root', ['platform']);

const config = (over: Partial<ApprovalConfig> = {}): ApprovalConfig => ({
  approvers: ['dba'], minApprovals: 1, timeoutMs: 600_000, grantMaxMs: 8 * 3_600_000, notify: [], rules: [], rowCap: null, ...over,
});

const holdInput = (over: Partial<HoldInput> = {}): HoldInput => ({
  identity: alice, connection: 'bank', statement: 'SELECT * FROM customers', fingerprint: 'fp-customers', parameters: [],
  rule: 'full-export', estimate: 50_000, reason: 'INC-42', sessionId: '0193a5c2-7c1e-4a10-9f1e-2b1c3d4e5f60', config: config(), ...over,
});

interface Replica {
  store: Store;
  recorder: AuditRecorder;
  service: ApprovalService;
}

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => {});
});

async function replica(store: Store, o: { pollMs?: number; closeStore?: boolean; now?: () => Date } = {}): Promise<Replica> {
  const recorder = new AuditRecorder(store, { logger });
  const service = new ApprovalService({
    store, recorder, logger, roles: () => ({ admin: ['platform'], auditor: ['audit'] }), pollMs: o.pollMs ?? 60_000, ...(o.now ? { now: o.now } : {}),
  });
  await service.start();
  cleanups.push(async () => {
    await service.close();
    await recorder.flush();
    if (o.closeStore !== false) await store.close();
  });
  return { store, recorder, service };
}

const events = async (store: Store, type: string): Promise<AuditEvent[]> => (await store.readEvents({})).filter((e) => e.type === type);

/** Whether a promise has settled, without waiting for it. */
async function settled(p: Promise<unknown>): Promise<boolean> {
  const marker = Symbol('pending');
  return (await Promise.race([p.then(() => true, () => true), Promise.resolve(marker).then((m) => new Promise((r) => setImmediate(() => r(m))))])) !== marker;
}

let files = 0;
const sqliteStore = () => openStore(`sqlite:${join(dir, `s${files++}.db`)}`);

describe('ApprovalService (SQLite)', () => {
  test('hold: approval.requested is durable before anything; an approver releases it, and it is used once', async () => {
    const { store, service } = await replica(await sqliteStore());
    const seen: string[] = [];
    service.onRequested = (r) => seen.push(r.id);
    const held = service.hold(holdInput());
    expect(held.request).toMatchObject({ kind: 'statement', status: 'pending', connection: 'bank', approvers: ['dba'], min_approvals: 1, rule: 'full-export', estimate: 50_000 });
    expect(held.request.id).toMatch(/^r-[0-9a-f]{8}$/);
    expect(Date.parse(held.request.expires_at) - Date.parse(held.request.created_at)).toBe(600_000);
    await expect.poll(() => seen).toEqual([held.request.id]);
    const [requested] = await events(store, 'approval.requested');
    expect(requested).toMatchObject({
      actor: { subject: 'apikey:alice' }, connection: 'bank', session_id: held.request.session_id,
      data: { request: held.request.id, statement: 'SELECT * FROM customers', parameters: [], rule: 'full-export', estimate: 50_000, reason: 'INC-42' },
    });
    expect(await settled(held.outcome)).toBe(false);

    const decided = await service.decide(held.request.id, bob, 'approve', 'looks fine');
    expect(decided).toMatchObject({ status: 'approved', approvals: [{ approver: 'apikey:bob', decision: 'approve', comment: 'looks fine' }] });
    expect(await held.outcome).toBe('approved');
    expect(await store.getApprovalRequest(held.request.id)).toMatchObject({ status: 'used' });
    expect(await events(store, 'approval.decided')).toMatchObject([{ actor: { subject: 'apikey:bob', groups: ['dba'] }, data: { request: held.request.id, decision: 'approve', comment: 'looks fine' } }]);
    expect(await events(store, 'approval.used')).toMatchObject([{ actor: { subject: 'apikey:alice' }, data: { request: held.request.id, approvers: ['apikey:bob'] } }]);
    // Decisions are final.
    await expect(service.decide(held.request.id, dave, 'deny', 'late')).rejects.toMatchObject({ status: 409 });
  });

  test('no self-approval, no decision by a non-approver; an admin may decide', async () => {
    const { store, service } = await replica(await sqliteStore());
    const mine = service.hold(holdInput({ identity: bob }));
    await expect.poll(() => store.getApprovalRequest(mine.request.id)).toBeTruthy();
    await expect(service.decide(mine.request.id, bob, 'approve', null)).rejects.toMatchObject({ code: 'HOOP_FORBIDDEN', message: `you may not decide your own request ${mine.request.id}` });
    await expect(service.decide(mine.request.id, carol, 'approve', null)).rejects.toMatchObject({ code: 'HOOP_FORBIDDEN', message: expect.stringContaining('not an approver') });
    await expect(service.decide('r-00000000', bob, 'approve', null)).rejects.toMatchObject({ code: 'HOOP_NOT_FOUND' });
    expect(await store.getApprovalRequest(mine.request.id)).toMatchObject({ status: 'pending', approvals: [] });
    expect(await events(store, 'approval.decided')).toEqual([]);
    await service.decide(mine.request.id, root, 'approve', 'admin');
    expect(await mine.outcome).toBe('approved');
  });

  test('two-person rule: one approval keeps it held, the same approver again is refused, a second releases it', async () => {
    const { service } = await replica(await sqliteStore());
    const held = service.hold(holdInput({ config: config({ minApprovals: 2 }) }));
    await expect.poll(() => service.holding).toBe(1);
    expect(await service.decide(held.request.id, bob, 'approve', null)).toMatchObject({ status: 'pending' });
    await expect(service.decide(held.request.id, bob, 'approve', null)).rejects.toMatchObject({ status: 409, message: expect.stringContaining('already') });
    expect(await settled(held.outcome)).toBe(false);
    await service.decide(held.request.id, dave, 'approve', null);
    expect(await held.outcome).toBe('approved');
  });

  test('a deny denies (and is recorded with its comment)', async () => {
    const { store, service } = await replica(await sqliteStore());
    const held = service.hold(holdInput({ config: config({ minApprovals: 2 }) }));
    await expect.poll(() => service.holding).toBe(1);
    await service.decide(held.request.id, bob, 'approve', null);
    await service.decide(held.request.id, dave, 'deny', 'not without a WHERE');
    expect(await held.outcome).toBe('denied');
    expect(await store.getApprovalRequest(held.request.id)).toMatchObject({ status: 'denied' });
    expect((await events(store, 'approval.decided')).map((e) => [e.actor?.subject, e.data.decision, e.data.comment])).toEqual([
      ['apikey:bob', 'approve', null], ['apikey:dave', 'deny', 'not without a WHERE'],
    ]);
    expect(await events(store, 'approval.used')).toEqual([]);
  });

  test('a request nobody decides expires at its timeout, recorded by the gateway', async () => {
    const { store, service } = await replica(await sqliteStore());
    const held = service.hold(holdInput({ config: config({ timeoutMs: 300 }) }));
    expect(await held.outcome).toBe('expired');
    expect(await store.getApprovalRequest(held.request.id)).toMatchObject({ status: 'expired' });
    await expect.poll(async () => (await events(store, 'approval.decided')).map((e) => [e.actor?.subject, e.data.decision])).toEqual([['system:gateway', 'expired']]);
    await expect(service.decide(held.request.id, bob, 'approve', null)).rejects.toMatchObject({ status: 409, message: expect.stringContaining('expired') });
  });

  test('a deadline timer that fires before the clock reaches the deadline waits out the rest, not the next poll', async () => {
    // A clock at half the timers' speed: each timer fires before the deadline by this clock, as a
    // timer firing early looks to the service.
    const start = Date.now();
    const r = await replica(await sqliteStore(), { now: () => new Date(start + (Date.now() - start) / 2) });
    const held = r.service.hold(holdInput({ config: config({ timeoutMs: 300 }) }));
    expect(await held.outcome).toBe('expired'); // the poll is a minute away: without the re-arm this times out
    await expect.poll(async () => (await events(r.store, 'approval.decided')).map((e) => e.data.decision)).toEqual(['expired']);
  });

  test('cancel (the requester\'s Ctrl-C) ends the hold and the request, recorded', async () => {
    const { store, service } = await replica(await sqliteStore());
    const held = service.hold(holdInput());
    await expect.poll(() => service.holding).toBe(1);
    held.cancel();
    expect(await held.outcome).toBe('cancelled');
    await expect.poll(() => store.getApprovalRequest(held.request.id)).toMatchObject({ status: 'cancelled' });
    await expect.poll(async () => (await events(store, 'approval.decided')).map((e) => [e.actor?.subject, e.data.decision])).toEqual([['apikey:alice', 'cancelled']]);
    expect(service.holding).toBe(0);
  });

  test('a hold whose request cannot be recorded fails closed: the outcome rejects and nothing is stored', async () => {
    const store = await sqliteStore();
    const { service, recorder } = await replica(store, { closeStore: false });
    await recorder.flush();
    await store.close();
    const held = service.hold(holdInput());
    await expect(held.outcome).rejects.toMatchObject({ code: 'HOOP_AUDIT_UNAVAILABLE' });
  });

  test('consumePreApproved: only this user, connection, fingerprint and parameters, approved and unused; once', async () => {
    const { store, service } = await replica(await sqliteStore());
    const ahead = await service.request({ identity: alice, connection: 'bank', reason: 'INC-42', config: config(), statement: { text: 'DELETE FROM t WHERE id = $1', fingerprint: 'fp-delete', parameters: ['7', null] } });
    expect(ahead).toMatchObject({ kind: 'statement', status: 'pending', session_id: null, parameters: ['7', null] });
    const use = (over: Partial<Parameters<ApprovalService['consumePreApproved']>[0]> = {}) =>
      service.consumePreApproved({ subject: 'apikey:alice', connection: 'bank', fingerprint: 'fp-delete', parameters: ['7', null], ...over });
    expect(await use()).toBeNull(); // not approved yet
    await service.decide(ahead.id, bob, 'approve', null);
    expect(await use({ parameters: ['8', null] })).toBeNull();
    expect(await use({ parameters: ['7'] })).toBeNull();
    expect(await use({ subject: 'apikey:bob' })).toBeNull();
    expect(await use({ connection: 'crm' })).toBeNull();
    expect(await use({ fingerprint: 'fp-other' })).toBeNull();
    const raced = await Promise.all([use(), use()]);
    expect(raced.filter(Boolean)).toHaveLength(1);
    expect(raced.find(Boolean)).toMatchObject({ id: ahead.id, status: 'used' });
    expect(await use()).toBeNull();
    expect(await events(store, 'approval.used')).toMatchObject([{ data: { request: ahead.id } }]);
    // A held statement's approval is not an ahead-of-time one: another session cannot use it.
    const held = service.hold(holdInput({ fingerprint: 'fp-delete', parameters: ['7', null] }));
    await expect.poll(() => service.holding).toBe(1);
    expect(await use()).toBeNull();
    held.cancel();
  });
});

describe('ApprovalService (PostgreSQL replicas)', () => {
  const upstream = inject('upstream');
  const url = (db: { host: string; port: number; users: { trust: string }; database: string }) => `postgres://${db.users.trust}@${db.host}:${db.port}/${db.database}`;

  async function database(): Promise<string> {
    const db = await createTestDatabase(upstream, 'hoop_approvals');
    cleanups.unshift(db.drop); // dropped last
    return url(db.info);
  }

  test('a hold on one replica is released by a decision through the other, via NOTIFY', async () => {
    const u = await database();
    const a = await replica(await openStore(u));
    const b = await replica(await openStore(u));
    const held = a.service.hold(holdInput());
    await expect.poll(() => b.store.getApprovalRequest(held.request.id)).toMatchObject({ status: 'pending' });
    const t = Date.now();
    await b.service.decide(held.request.id, bob, 'approve', 'from replica b');
    expect(await held.outcome).toBe('approved');
    expect(Date.now() - t).toBeLessThan(5_000); // the poll is a minute away: NOTIFY woke it
    expect(await a.store.getApprovalRequest(held.request.id)).toMatchObject({ status: 'used' });
  });

  test('when the notification is lost, the poll releases it; a deny through the other replica too', async () => {
    const u = await database();
    const real = await openStore(u);
    // A replica that never hears NOTIFY: only its poll can learn of decisions.
    const deaf = Object.assign(Object.create(real) as Store, { watchApprovals: async () => async () => {} });
    const a = await replica(deaf, { pollMs: 100 });
    cleanups.push(() => real.close());
    const b = await replica(await openStore(u));
    const approved = a.service.hold(holdInput());
    const denied = a.service.hold(holdInput({ statement: 'DELETE FROM accounts', fingerprint: 'fp-delete' }));
    await expect.poll(() => a.service.holding).toBe(2);
    await b.service.decide(approved.request.id, dave, 'approve', null);
    await b.service.decide(denied.request.id, dave, 'deny', 'no');
    expect(await approved.outcome).toBe('approved');
    expect(await denied.outcome).toBe('denied');
  });

  test('two-person rule across replicas; an expiry is recorded once', async () => {
    const u = await database();
    const a = await replica(await openStore(u));
    const b = await replica(await openStore(u));
    const held = a.service.hold(holdInput({ config: config({ minApprovals: 2 }) }));
    await expect.poll(() => a.service.holding).toBe(1);
    await b.service.decide(held.request.id, bob, 'approve', null);
    await expect(a.service.decide(held.request.id, bob, 'approve', null)).rejects.toMatchObject({ status: 409 });
    expect(await settled(held.outcome)).toBe(false);
    await a.service.decide(held.request.id, dave, 'approve', null);
    expect(await held.outcome).toBe('approved');
    const late = a.service.hold(holdInput({ config: config({ timeoutMs: 300 }) }));
    expect(await late.outcome).toBe('expired');
    await expect.poll(async () => (await events(a.store, 'approval.decided')).filter((e) => e.data.decision === 'expired')).toHaveLength(1);
  });
});
