/**
 * Approval requests: a risky statement held until reviewers decide (issue 8), asked for ahead
 * of time (`hoop request --query`), or time-bound access (`kind: grant`: `activeGrant` is what
 * admission asks, access.ts and tunnel.ts enforce it; `grant.started` is recorded on approval,
 * `grant.ended` when the sweep finds an approved grant past its window).
 *
 *   hold() on the replica holding the statement
 *     -> approval.requested recorded (durable) -> the row in the store -> onRequested (webhooks)
 *     -> `outcome` waits: a decision through ANY replica reaches it at once here (decide()), on
 *        a PostgreSQL NOTIFY (watchApprovals), or at its next poll (POLL_MS, the fallback when a
 *        notification was lost); its deadline is a timer here
 *   decide() on any replica
 *     -> may this identity decide (approver group or admin; never the requester)?
 *     -> approval.decided recorded (durable) BEFORE the decision is stored: the record says who
 *        released a statement before it can run
 *     -> the store applies it atomically (one deny denies; min_approvals distinct approvers)
 *
 * Fail closed: if a request cannot be recorded or stored, `outcome` rejects and the statement
 * must be refused. An approved hold is marked used (compare-and-set) before `outcome` says
 * approved, so one approval runs one statement once.
 */
import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import { APPROVAL_REQUEST_ID, type ApprovalRequest, type RequestStatus } from '../api/types.js';
import { canonicalJson } from '../audit/chain.js';
import { SYSTEM_ACTOR, type Actor } from '../audit/event.js';
import type { AuditRecorder } from '../audit/recorder.js';
import { HoopError, UsageError, errorMessage } from '../errors.js';
import { actorOf, type Identity } from '../identity/identity.js';
import type { ApprovalConfig } from '../policy/risk/types.js';
import { grantStartMs } from '../store/approvals.js';
import type { Store } from '../store/store.js';
import { DeniedError } from './access.js';
import { isAdmin, mayReadAllSessions, sharesGroup, type Roles } from './authz.js';
import type { ConnectionConfig } from './config.js';
import { HttpError } from './http.js';

export type { ApprovalRequest, RequestStatus } from '../api/types.js';

/** How often a replica holding statements asks the store about them (decisions it may not have heard of). */
export const APPROVAL_POLL_MS = 2_000;
/** Longest comment or reason kept. */
export const MAX_APPROVAL_TEXT = 1_000;

export type HoldOutcome = 'approved' | 'denied' | 'expired' | 'cancelled';

export interface HoldInput {
  identity: Identity;
  connection: string;
  statement: string;
  fingerprint: string;
  parameters: unknown[];
  rule: string;
  estimate: number | null;
  reason: string | null;
  sessionId: string;
  config: ApprovalConfig;
}

/** An ahead-of-time request (`POST /api/v1/connections/{name}/requests`): a statement, or a grant of `durationMs`. */
export interface AheadInput {
  identity: Identity;
  connection: string;
  reason: string | null;
  config: ApprovalConfig;
  statement?: { text: string; fingerprint: string; parameters: unknown[] };
  durationMs?: number;
  /** The id to give the request (one newRequestId() made), when it must be named before it is stored. */
  id?: string;
}

/** A fresh request id: `r-` and 8 hex digits. */
export function newRequestId(): string {
  return `r-${randomBytes(4).toString('hex')}`;
}

/**
 * The connection's approval block. The one place that reads it, so the config's shape is one
 * line to change: the `approval` key is added to ConnectionConfig by the rules' config.
 */
export function approvalConfigOf(connection: ConnectionConfig | undefined): ApprovalConfig | null {
  return connection?.approval ?? null;
}

/** Whether `identity` may decide `request`: a member of its approver groups, or an admin; never its requester. */
export function mayDecide(identity: Identity, roles: Roles, request: ApprovalRequest): boolean {
  return identity.subject !== request.requester.subject && (sharesGroup(identity, request.approvers) || isAdmin(identity, roles));
}

/** Whether `identity` may read `request`: its requester, whoever may decide it, admins and auditors. */
export function mayReadRequest(identity: Identity, roles: Roles, request: ApprovalRequest): boolean {
  return identity.subject === request.requester.subject || sharesGroup(identity, request.approvers) || mayReadAllSessions(identity, roles);
}

/** One line, bounded: control characters become spaces. */
export function cleanText(raw: string, max = MAX_APPROVAL_TEXT): string | null {
  // eslint-disable-next-line no-control-regex
  const text = raw.replace(/[\x00-\x1f\x7f]+/g, ' ').trim();
  if (text.length > max) throw new UsageError(`at most ${max} characters`);
  return text === '' ? null : text;
}

/** Who approved a request, in the order they did. */
function approversOf(r: ApprovalRequest): string[] {
  return r.approvals.filter((a) => a.decision === 'approve').map((a) => a.approver);
}

/** Whether enough approvals were recorded to approve it (an expired request may or may not have been). */
function wasApproved(r: ApprovalRequest): boolean {
  return new Set(approversOf(r)).size >= Math.max(1, r.min_approvals) && !r.approvals.some((a) => a.decision === 'deny');
}

interface Held {
  request: ApprovalRequest;
  identity: Identity;
  settle(outcome: HoldOutcome): void;
  timer: NodeJS.Timeout | null;
  settled: boolean;
}

export interface ApprovalServiceOptions {
  store: Store;
  recorder: AuditRecorder;
  logger: Logger;
  /** The roles in effect now (admins may decide any request). */
  roles: () => Roles;
  pollMs?: number;
  now?: () => Date;
}

function aheadKey(subject: string, connection: string): string {
  return `${connection}\u0000${subject}`;
}

export class ApprovalService {
  /** Called once a request is recorded and stored (the notifier hooks in here). */
  onRequested?: (r: ApprovalRequest) => void;
  /** Called after each decision stored through this replica, with the request as it is now. */
  onDecided?: (r: ApprovalRequest) => void;

  private readonly held = new Map<string, Held>();
  /**
   * Ahead-of-time statement requests this replica knows of (created here, or heard approved
   * through the store), by requester and connection, then fingerprint: id -> expiry (ms). A
   * statement the rules let run under the row cap asks the store whether it was approved whole
   * only when one may be (mayBePreApproved), so the hot path never waits on the store.
   */
  private readonly ahead = new Map<string, Map<string, Map<string, number>>>();
  private timer: NodeJS.Timeout | null = null;
  private stopWatching: (() => Promise<void>) | null = null;
  private checking = false;
  private readonly again = new Set<string>();
  private closed = false;

  constructor(private readonly o: ApprovalServiceOptions) {}

  private now(): Date {
    return this.o.now?.() ?? new Date();
  }

  /** Listens for decisions from other replicas and polls for missed ones (and for requests past their deadline). */
  async start(): Promise<void> {
    try {
      this.stopWatching = await this.o.store.watchApprovals((id) => {
        if (this.held.has(id)) void this.check([id]);
        else void this.learn(id);
      });
    } catch (err) {
      this.o.logger.warn({ err: errorMessage(err) }, 'cannot listen for approval decisions; polling only');
    }
    this.timer = setInterval(() => void this.tick(), this.o.pollMs ?? APPROVAL_POLL_MS);
    this.timer.unref();
  }

  /** Stops listening; statements still held are cancelled (their sessions are ending). */
  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.stopWatching?.().catch(() => {});
    this.stopWatching = null;
    await Promise.allSettled([...this.held.values()].map((h) => this.cancelHeld(h, null)));
  }

  /** A held statement: see the module comment. `stored` resolves once the request is recorded and
   *  stored (a reviewer can find it: only then tell the requester its id); it and `outcome` reject
   *  if it could not be. */
  hold(input: HoldInput): { request: ApprovalRequest; stored: Promise<void>; outcome: Promise<HoldOutcome>; cancel(): void } {
    const request = this.newRequest({
      kind: 'statement', identity: input.identity, connection: input.connection, config: input.config, reason: input.reason,
      statement: input.statement, fingerprint: input.fingerprint, parameters: input.parameters, rule: input.rule,
      estimate: input.estimate, session_id: input.sessionId, duration_ms: null,
    });
    let settle!: (o: HoldOutcome) => void;
    const settled = new Promise<HoldOutcome>((resolve) => (settle = resolve));
    const h: Held = { request, identity: input.identity, timer: null, settled: false, settle: (o) => {
      if (h.settled) return;
      h.settled = true;
      if (h.timer) clearTimeout(h.timer);
      this.held.delete(request.id);
      settle(o);
    } };
    const created = this.create(request, input.identity).then(() => {
      if (h.settled) return; // cancelled while it was being created
      this.held.set(request.id, h);
      this.armExpiry(h);
      void this.check([request.id]); // decided already (a fast reviewer on another replica)?
    });
    created.catch(() => h.settle('cancelled')); // nothing waits for it; the outcome rejects below
    const outcome = created.then(() => settled);
    return {
      request,
      stored: created,
      outcome,
      cancel: () => {
        void created.then(() => this.cancelHeld(h, input.identity), () => {});
        h.settle('cancelled');
      },
    };
  }

  /** An ahead-of-time request (statement or grant), recorded and stored, pending. */
  async request(input: AheadInput): Promise<ApprovalRequest> {
    const s = input.statement;
    if (input.id !== undefined && !APPROVAL_REQUEST_ID.test(input.id)) throw new HoopError('HOOP_INTERNAL', `not a request id: ${input.id}`);
    const request = this.newRequest({
      ...(input.id !== undefined ? { id: input.id } : {}),
      kind: s ? 'statement' : 'grant', identity: input.identity, connection: input.connection, config: input.config, reason: input.reason,
      statement: s?.text ?? null, fingerprint: s?.fingerprint ?? null, parameters: s?.parameters ?? [], rule: null, estimate: null,
      session_id: null, duration_ms: s ? null : (input.durationMs ?? null),
    });
    await this.create(request, input.identity);
    this.know(request);
    return request;
  }

  /**
   * An ahead-of-time request whose id is needed at once (the hint of a result cut at the row
   * cap, which cannot wait): returns the id, then records and stores the request. If that fails
   * the id names nothing; it is logged, and asking again (`hoop request --query`) still works.
   */
  requestInBackground(input: Omit<AheadInput, 'id'>): string {
    const id = newRequestId();
    this.request({ ...input, id }).catch((err: unknown) => {
      this.o.logger.warn({ err: errorMessage(err), request: id, connection: input.connection }, 'cannot create an approval request');
    });
    return id;
  }

  /** Whether an ahead-of-time request of this user for this connection (and fingerprint, if given) may be approved: see `ahead`. */
  mayBePreApproved(input: { subject: string; connection: string; fingerprint?: string }): boolean {
    const byFingerprint = this.ahead.get(aheadKey(input.subject, input.connection));
    if (!byFingerprint) return false;
    if (input.fingerprint === undefined) return byFingerprint.size > 0;
    return (byFingerprint.get(input.fingerprint)?.size ?? 0) > 0;
  }

  /**
   * An approved, unused, unexpired ahead-of-time request of this user for exactly this
   * connection, fingerprint and parameters (compared as canonical JSON): marked used atomically
   * (of two sessions racing, one gets it) and recorded as approval.used; else null.
   */
  async consumePreApproved(input: { subject: string; connection: string; fingerprint: string; parameters: unknown[] }): Promise<ApprovalRequest | null> {
    const now = this.now();
    const parameters = canonicalJson(input.parameters);
    const candidates = (await this.o.store.listApprovalRequests({ status: ['approved'], connection: input.connection, requester: input.subject, limit: 100 }))
      .filter((r) => r.kind === 'statement' && r.session_id === null && r.fingerprint === input.fingerprint && canonicalJson(r.parameters) === parameters && Date.parse(r.expires_at) > now.getTime())
      .reverse(); // the oldest first: it expires first
    for (const c of candidates) {
      const used = await this.o.store.markApprovalUsed(c.id, now.toISOString());
      if (!used) continue; // another session took it
      this.forget(used);
      await this.recordUsed(used, null);
      return used;
    }
    return null;
  }

  /**
   * One reviewer's decision (any replica): refused with HOOP_FORBIDDEN for the requester and for
   * whoever is neither an approver nor an admin (recorded as access.denied by the route), 409
   * when the request is no longer pending or this approver decided already.
   */
  async decide(id: string, approver: Identity, decision: 'approve' | 'deny', comment: string | null): Promise<ApprovalRequest> {
    const request = await this.get(id);
    if (!request) throw new HoopError('HOOP_NOT_FOUND', `no request ${id}`, { hint: 'hoop reviews lists the ones you may decide' });
    const denial = { stage: 'role' as const, connection: request.connection, data: { request: id, decision } };
    if (approver.subject === request.requester.subject) {
      throw new DeniedError('HOOP_FORBIDDEN', `you may not decide your own request ${id}`, denial, { hint: 'another approver must decide it' });
    }
    if (!mayDecide(approver, this.o.roles(), request)) {
      throw new DeniedError('HOOP_FORBIDDEN', `you are not an approver of request ${id} (approvers: ${request.approvers.join(', ') || 'admins only'})`, { ...denial });
    }
    if (request.status !== 'pending') throw new HttpError(409, 'HOOP_USAGE', `request ${id} is ${request.status}; decisions are final`);
    if (request.approvals.some((a) => a.approver === approver.subject)) throw new HttpError(409, 'HOOP_USAGE', `you have decided request ${id} already`);
    const at = this.now().toISOString();
    // Durable before it takes effect: the record names who released (or stopped) the statement.
    await this.o.recorder.record({
      type: 'approval.decided',
      actor: actorOf(approver),
      connection: request.connection,
      session_id: request.session_id,
      data: { request: id, decision, comment, requester: request.requester.subject, approvals_before: request.approvals.length, min_approvals: request.min_approvals },
    });
    const result = await this.o.store.recordApprovalDecision({ id, approver: approver.subject, decision, comment, at });
    if (!result.ok) {
      // Another replica's decision (or the deadline) came between the check and the write: say
      // so in the record too, since the decision recorded above did not take effect.
      const now = result.reason === 'not_found' ? null : result.request;
      await this.o.recorder.record({
        type: 'approval.decided',
        actor: actorOf(approver),
        connection: request.connection,
        session_id: request.session_id,
        data: { request: id, decision, comment, refused: result.reason, status: now?.status ?? null },
      });
      if (now?.status === 'expired' && request.status === 'pending') await this.recordExpired(now);
      if (result.reason === 'not_found') throw new HoopError('HOOP_NOT_FOUND', `no request ${id}`);
      throw new HttpError(409, 'HOOP_USAGE', result.reason === 'already_decided' ? `you have decided request ${id} already` : `request ${id} is ${now?.status}; decisions are final`);
    }
    this.o.logger.info({ request: id, approver: approver.subject, decision, status: result.request.status }, 'approval decided');
    if (result.request.kind === 'grant' && result.request.status === 'approved') await this.recordGrantStarted(result.request, approver);
    if (this.held.has(id)) void this.check([id]);
    else this.know(result.request);
    this.notify(this.onDecided, result.request);
    return result.request;
  }

  /** The approved grant of `subject` on `connection` whose window is open now, the longest-lasting of several; null if none. */
  activeGrant(subject: string, connection: string): Promise<ApprovalRequest | null> {
    return this.o.store.activeGrant(subject, connection, this.now().toISOString());
  }

  get(id: string): Promise<ApprovalRequest | null> {
    if (!APPROVAL_REQUEST_ID.test(id)) return Promise.resolve(null);
    return this.o.store.getApprovalRequest(id);
  }

  /** Requests held on this replica now (for tests and `hoop sessions show`). */
  get holding(): number {
    return this.held.size;
  }

  // -------------------------------------------------------------------------------------------

  /** An ahead-of-time statement request, pending or approved: remembered until it expires or is used. */
  private know(r: ApprovalRequest): void {
    if (r.kind !== 'statement' || r.session_id !== null || r.fingerprint === null) return;
    if (r.status !== 'pending' && r.status !== 'approved') return this.forget(r);
    const key = aheadKey(r.requester.subject, r.connection);
    let byFingerprint = this.ahead.get(key);
    if (!byFingerprint) this.ahead.set(key, (byFingerprint = new Map()));
    let ids = byFingerprint.get(r.fingerprint);
    if (!ids) byFingerprint.set(r.fingerprint, (ids = new Map()));
    ids.set(r.id, Date.parse(r.expires_at));
  }

  private forget(r: ApprovalRequest): void {
    if (r.fingerprint === null) return;
    const key = aheadKey(r.requester.subject, r.connection);
    const byFingerprint = this.ahead.get(key);
    const ids = byFingerprint?.get(r.fingerprint);
    if (!byFingerprint || !ids) return;
    ids.delete(r.id);
    if (ids.size === 0) byFingerprint.delete(r.fingerprint);
    if (byFingerprint.size === 0) this.ahead.delete(key);
  }

  /** A request another replica changed: an ahead-of-time one approved there may be run here. */
  private async learn(id: string): Promise<void> {
    try {
      const r = await this.o.store.getApprovalRequest(id);
      if (r) this.know(r);
    } catch (err) {
      this.o.logger.debug({ err: errorMessage(err), request: id }, 'cannot read an approval request');
    }
  }

  /** Drops what expired from `ahead`. */
  private pruneAhead(now: number): void {
    for (const [key, byFingerprint] of this.ahead) {
      for (const [fingerprint, ids] of byFingerprint) {
        for (const [id, expires] of ids) if (expires <= now) ids.delete(id);
        if (ids.size === 0) byFingerprint.delete(fingerprint);
      }
      if (byFingerprint.size === 0) this.ahead.delete(key);
    }
  }

  private newRequest(p: {
    id?: string;
    kind: ApprovalRequest['kind']; identity: Identity; connection: string; config: ApprovalConfig; reason: string | null;
    statement: string | null; fingerprint: string | null; parameters: unknown[]; rule: string | null; estimate: number | null;
    session_id: string | null; duration_ms: number | null;
  }): ApprovalRequest {
    const now = this.now();
    return {
      id: p.id ?? newRequestId(),
      kind: p.kind,
      connection: p.connection,
      requester: { subject: p.identity.subject, email: p.identity.email, groups: [...p.identity.groups] },
      statement: p.statement,
      fingerprint: p.fingerprint,
      parameters: p.parameters,
      reason: p.reason,
      rule: p.rule,
      estimate: p.estimate,
      duration_ms: p.duration_ms,
      session_id: p.session_id,
      status: 'pending',
      created_at: now.toISOString(),
      expires_at: new Date(now.getTime() + p.config.timeoutMs).toISOString(),
      approvals: [],
      min_approvals: Math.max(1, p.config.minApprovals),
      approvers: [...p.config.approvers],
    };
  }

  /** Recorded (durable) first, then stored: no request exists that the audit log does not name. */
  private async create(request: ApprovalRequest, identity: Identity): Promise<void> {
    if (this.closed) throw new HoopError('HOOP_INTERNAL', 'the gateway is shutting down');
    await this.o.recorder.record({
      type: 'approval.requested',
      actor: actorOf(identity),
      connection: request.connection,
      session_id: request.session_id,
      data: {
        request: request.id, kind: request.kind, statement: request.statement, fingerprint: request.fingerprint, parameters: request.parameters,
        rule: request.rule, estimate: request.estimate, reason: request.reason, duration_ms: request.duration_ms,
        approvers: request.approvers, min_approvals: request.min_approvals, expires_at: request.expires_at,
      },
    });
    await this.o.store.createApprovalRequest(request);
    this.o.logger.info({ request: request.id, connection: request.connection, requester: request.requester.subject, rule: request.rule }, 'approval requested');
    this.notify(this.onRequested, request);
  }

  private notify(hook: ((r: ApprovalRequest) => void) | undefined, r: ApprovalRequest): void {
    try {
      hook?.(r);
    } catch (err) {
      this.o.logger.warn({ err: errorMessage(err), request: r.id }, 'approval hook failed');
    }
  }

  /** One poll: requests past their deadline expire (on every replica's behalf), then the held ones are read. */
  private async tick(): Promise<void> {
    this.pruneAhead(this.now().getTime());
    await this.sweep();
    if (this.held.size > 0) await this.check([...this.held.keys()]);
  }

  /** Wakes the hold at its deadline (expire). */
  private armExpiry(h: Held): void {
    const wait = Date.parse(h.request.expires_at) - this.now().getTime();
    h.timer = setTimeout(() => void this.expire(h.request.id), Math.max(0, wait));
    h.timer.unref();
  }

  private async expire(id: string): Promise<void> {
    // A timer may fire a little before the deadline by this clock; the store would expire
    // nothing yet and the hold would wait for the next poll (a minute): wait out the rest.
    const h = this.held.get(id);
    if (h && !h.settled && Date.parse(h.request.expires_at) > this.now().getTime()) return this.armExpiry(h);
    await this.sweep();
    await this.check([id]);
  }

  /** Whoever's sweep moves a request to expired records it (the store's compare-and-set makes that one replica). */
  private async sweep(): Promise<void> {
    try {
      for (const r of await this.o.store.expireApprovalRequests(this.now().toISOString())) await this.recordExpired(r);
    } catch (err) {
      this.o.logger.warn({ err: errorMessage(err) }, 'cannot expire approval requests');
    }
  }

  /** The decision that approved a grant opened its window (recorded once the decision is stored). */
  private async recordGrantStarted(r: ApprovalRequest, approver: Identity): Promise<void> {
    await this.o.recorder.record({
      type: 'grant.started', actor: actorOf(approver), connection: r.connection, session_id: null,
      data: {
        request: r.id, requester: r.requester.subject, duration_ms: r.duration_ms, from: new Date(grantStartMs(r)).toISOString(), until: r.expires_at,
        approvers: approversOf(r), reason: r.reason,
      },
    }).catch((err: unknown) => this.o.logger.error({ err: errorMessage(err), request: r.id }, 'cannot record grant.started'));
  }

  private async recordExpired(r: ApprovalRequest): Promise<void> {
    if (r.kind === 'grant' && wasApproved(r)) {
      // An approved grant past its window has run its course: it ended, it did not go undecided.
      await this.o.recorder.record({
        type: 'grant.ended', actor: SYSTEM_ACTOR, connection: r.connection, session_id: null,
        data: { request: r.id, requester: r.requester.subject, from: new Date(grantStartMs(r)).toISOString(), until: r.expires_at },
      }).catch((err: unknown) => this.o.logger.error({ err: errorMessage(err), request: r.id }, 'cannot record grant.ended'));
      this.notify(this.onDecided, r);
      return;
    }
    await this.o.recorder.record({
      type: 'approval.decided', actor: SYSTEM_ACTOR, connection: r.connection, session_id: r.session_id,
      data: { request: r.id, decision: 'expired', comment: null, requester: r.requester.subject },
    }).catch((err: unknown) => this.o.logger.error({ err: errorMessage(err), request: r.id }, 'cannot record an approval expiry'));
    this.notify(this.onDecided, r);
  }

  private async recordUsed(r: ApprovalRequest, actor: Actor | null): Promise<void> {
    await this.o.recorder.record({
      type: 'approval.used', actor: actor ?? SYSTEM_ACTOR, connection: r.connection, session_id: r.session_id,
      data: { request: r.id, requester: r.requester.subject, fingerprint: r.fingerprint, approvers: approversOf(r) },
    });
  }

  /** One store read at a time; a wake-up during it is checked right after. */
  private async check(ids: string[]): Promise<void> {
    if (this.checking) {
      for (const id of ids) this.again.add(id);
      return;
    }
    this.checking = true;
    try {
      for (let next = ids; next.length > 0; next = [...this.again].filter((id) => this.held.has(id))) {
        this.again.clear();
        for (const id of next) {
          const h = this.held.get(id);
          if (!h) continue;
          const now = await this.o.store.getApprovalRequest(id);
          if (now) await this.settleFrom(h, now);
        }
      }
    } catch (err) {
      this.o.logger.warn({ err: errorMessage(err) }, 'cannot read approval requests');
    } finally {
      this.again.clear();
      this.checking = false;
    }
  }

  private async settleFrom(h: Held, r: ApprovalRequest): Promise<void> {
    if (h.settled) return;
    const final: Partial<Record<RequestStatus, HoldOutcome>> = { denied: 'denied', expired: 'expired', cancelled: 'cancelled' };
    if (r.status === 'approved') {
      const used = await this.o.store.markApprovalUsed(r.id, this.now().toISOString());
      if (!used) {
        // Past its window between the read and the write: expire it, and settle on what is stored.
        await this.sweep();
        const again = await this.o.store.getApprovalRequest(r.id);
        if (again && again.status !== 'approved' && again.status !== 'used') await this.settleFrom(h, again);
        return;
      }
      try {
        await this.recordUsed(used, actorOf(h.identity));
      } catch (err) {
        // Not recorded, not run: the session is told it was not approved in time.
        this.o.logger.error({ err: errorMessage(err), request: r.id }, 'cannot record approval.used; the statement is refused');
        return h.settle('cancelled');
      }
      return h.settle('approved');
    }
    if (r.status === 'used') return h.settle('approved'); // marked by this replica already
    const outcome = final[r.status];
    if (outcome) h.settle(outcome);
  }

  private async cancelHeld(h: Held, by: Identity | null): Promise<void> {
    h.settle('cancelled');
    try {
      const r = await this.o.store.cancelApprovalRequest(h.request.id, this.now().toISOString());
      if (!r) return;
      await this.o.recorder.record({
        type: 'approval.decided', actor: by ? actorOf(by) : SYSTEM_ACTOR, connection: r.connection, session_id: r.session_id,
        data: { request: r.id, decision: 'cancelled', comment: by ? null : 'the gateway is shutting down', requester: r.requester.subject },
      });
      this.notify(this.onDecided, r);
    } catch (err) {
      this.o.logger.warn({ err: errorMessage(err), request: h.request.id }, 'cannot cancel an approval request');
    }
  }
}
