/**
 * Approver notifications by webhook, from a durable outbox (the store's `notifications` table).
 *
 *   enqueue(target, event)  renders the body (notify-render.ts) and stores the delivery: from
 *                           then on a gateway restart or a receiver that is down loses nothing
 *   worker                  claims due rows, at most one per target (its oldest pending one), and
 *                           POSTs each; woken at once by enqueue here, and by a poll every
 *                           POLL_MS for rows other replicas queued or retries fall due
 *   2xx                     delivered
 *   anything else           a failed attempt, tried again after an exponential backoff with
 *                           jitter (about 1 s, doubling, capped at 5 min); a target's later
 *                           notifications wait behind it, so each receiver sees them in order
 *   too many, or too old    given up: `notify.failed` recorded (the target without credentials,
 *                           path secrets or query; the last error; the attempts) and logged
 *
 * Delivery is at least once: a gateway that dies mid-request leaves its claim to expire, and the
 * row is sent again. Receivers drop repeats by X-Hoop-Delivery (the notification id).
 *
 * Signing (docs/approvals-webhooks.md): with a secret, `X-Hoop-Signature: t=<unix seconds>,
 * v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`, computed at each attempt so the timestamp is fresh
 * and a receiver may refuse old ones (replay). The secret is never stored: it is the configured
 * target's. A row queued with a secret is never sent unsigned: if no configured target has a
 * secret for it any more, the attempt fails (and in the end is given up).
 */
import { createHmac, randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import { Agent } from 'undici';
import { SYSTEM_ACTOR } from '../audit/event.js';
import { postFor2xx } from '../audit/sinks/http.js';
import type { AuditRecorder } from '../audit/recorder.js';
import { ConfigError, errorMessage } from '../errors.js';
import type { NotifyTarget } from '../policy/risk/types.js';
import { redactSecret } from '../store/redact.js';
import type { Notification, NotificationDraft, Store } from '../store/store.js';
import type { GatewayMetrics } from './metrics.js';
import { renderJsonBody, renderSlackBody, type NotifyEvent } from './notify-render.js';

export type { NotifyEvent } from './notify-render.js';

/** How often the worker looks for due rows it was not woken for (other replicas', retries). */
export const POLL_MS = 2_000;
/** Longest wait for a receiver's answer. */
export const DELIVERY_TIMEOUT_MS = 10_000;
/** Rows claimed at once (each a different target). */
const CLAIM_LIMIT = 16;
/** A claim outlives its request by this much before another gateway may take the row over. */
const LEASE_MARGIN_MS = 60_000;
/** Secrets of rows this gateway queued, kept until they are done; bounded, the config is the fallback. */
const MAX_REMEMBERED_SECRETS = 10_000;

export interface RetryPolicy {
  /** The first retry's delay (before jitter). */
  baseMs: number;
  /** The longest delay between attempts. */
  maxMs: number;
  /** Give up after this many failed attempts... */
  maxAttempts: number;
  /** ...or once the notification is this old, whichever comes first. */
  maxAgeMs: number;
}

/**
 * With these, 20 attempts are spent within about an hour (1 s, 2 s, … 256 s, then 5 min apart):
 * an approval request times out long before.
 */
export const DEFAULT_RETRY: RetryPolicy = { baseMs: 1_000, maxMs: 5 * 60_000, maxAttempts: 20, maxAgeMs: 24 * 60 * 60_000 };

/**
 * The wait after the `failures`-th failed attempt: base·2^(failures-1), capped, with "equal
 * jitter" (half fixed, half random) so receivers that come back are not hit by every gateway's
 * retries in the same instant, while the backoff still grows.
 */
export function retryDelayMs(failures: number, policy: Pick<RetryPolicy, 'baseMs' | 'maxMs'>, random: () => number = Math.random): number {
  const ceiling = Math.min(policy.maxMs, policy.baseMs * 2 ** Math.max(0, failures - 1));
  return Math.round(ceiling / 2 + (random() * ceiling) / 2);
}

/** The `X-Hoop-Signature` value for `body` sent at unix time `t` (seconds). */
export function signatureHeader(secret: string, body: string, t: number): string {
  return `t=${t},v1=${createHmac('sha256', secret).update(`${t}.${body}`).digest('hex')}`;
}

/**
 * A target as it may be shown (log, audit): no user info, no query or fragment, and for Slack no
 * path beyond its first segment, since a Slack webhook URL's path is its credential.
 */
export function targetForDisplay(url: string, format: NotifyTarget['format']): string {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return '(not a URL)';
  }
  let path = u.pathname;
  if (format === 'slack') {
    const first = path.split('/').filter(Boolean)[0];
    path = first ? `/${first}/***` : path;
  }
  return `${u.origin}${path}`;
}

export interface NotifierOptions {
  store: Store;
  recorder: Pick<AuditRecorder, 'record'>;
  logger: Logger;
  metrics?: GatewayMetrics;
  /**
   * The notify targets configured now (every connection's `approval.notify`), read at each
   * attempt: where the signing secret of a row queued by another replica, or before a restart,
   * is found. Rows this gateway queued use the secret they were queued with until then.
   */
  targets?: () => readonly NotifyTarget[];
  retry?: Partial<RetryPolicy>;
  timeoutMs?: number;
  pollMs?: number;
  /** Milliseconds since the epoch; tests move it. */
  now?: () => number;
  /** In [0, 1): the backoff's jitter. */
  random?: () => number;
}

export class Notifier {
  private readonly retry: RetryPolicy;
  private readonly timeoutMs: number;
  private readonly now: () => number;
  private readonly random: () => number;
  private readonly agent = new Agent({ keepAliveTimeout: 10_000 });
  /** Notification id -> the secret it was queued with (this gateway's own rows). */
  private readonly secrets = new Map<string, string>();
  private readonly inflight = new Set<AbortController>();
  private started = false;
  private closed = false;
  private draining: Promise<void> | null = null;
  /** Woken while draining: claim again afterwards. */
  private again = false;
  private pollTimer: NodeJS.Timeout | null = null;
  private retryTimer: NodeJS.Timeout | null = null;
  private retryAt = Infinity;
  /** The store failed the last claim: log once until it answers again. */
  private claimFailing = false;

  constructor(private readonly o: NotifierOptions) {
    this.retry = { ...DEFAULT_RETRY, ...o.retry };
    this.timeoutMs = o.timeoutMs ?? DELIVERY_TIMEOUT_MS;
    this.now = o.now ?? Date.now;
    this.random = o.random ?? Math.random;
  }

  /**
   * Queues one delivery of `event` to `target`; resolves once it is stored (durable), before it
   * is sent. Rejects if the store refuses it (the caller logs: a notification lost is not a
   * reason to refuse the request it is about) or the target is not an http(s) URL.
   */
  async enqueue(target: NotifyTarget, event: NotifyEvent): Promise<void> {
    const draft: NotificationDraft = {
      id: randomUUID(),
      target: checkTarget(target.webhook),
      format: target.format,
      body: target.format === 'slack' ? renderSlackBody(event) : renderJsonBody(event),
      signed: target.secret !== null,
      event: event.event,
      connection: event.connection,
      request_id: event.id,
      created_at: new Date(this.now()).toISOString(),
    };
    if (target.secret !== null) this.remember(draft.id, target.secret); // before a poll can claim it
    try {
      await this.o.store.enqueueNotification(draft);
    } catch (err) {
      this.secrets.delete(draft.id);
      this.o.logger.error({ target: targetForDisplay(target.webhook, target.format), request: event.id, err: errorMessage(err) }, 'cannot queue an approver notification');
      throw err;
    }
    this.wake();
  }

  /** Starts delivering: what is due now (left by an earlier run too), then as woken and polled. */
  start(): void {
    if (this.started || this.closed) return;
    this.started = true;
    this.pollTimer = setInterval(() => this.wake(), this.o.pollMs ?? POLL_MS);
    this.pollTimer.unref();
    this.wake();
  }

  /**
   * Stops: no new claims; requests in flight are cut off and count as failed attempts due again
   * at once, for the next gateway (or this one restarted) to send. The store stays open.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.pollTimer) clearInterval(this.pollTimer);
    if (this.retryTimer) clearTimeout(this.retryTimer);
    for (const ac of this.inflight) ac.abort(new Error('the gateway is stopping'));
    await this.draining;
    await this.agent.close().catch(() => {});
  }

  /** Looks for due rows now (or right after the look in progress). */
  wake(): void {
    if (!this.started || this.closed) return;
    if (this.draining) {
      this.again = true;
      return;
    }
    this.draining = this.drain().finally(() => (this.draining = null));
  }

  private async drain(): Promise<void> {
    do {
      this.again = false;
      const now = this.now();
      let claimed: Notification[];
      try {
        claimed = await this.o.store.claimNotifications({
          now: new Date(now).toISOString(),
          leaseUntil: new Date(now + this.timeoutMs + LEASE_MARGIN_MS).toISOString(),
          limit: CLAIM_LIMIT,
        });
        this.claimFailing = false;
      } catch (err) {
        if (!this.claimFailing) this.o.logger.warn({ err: errorMessage(err) }, 'cannot read the notification outbox; retrying');
        this.claimFailing = true;
        return; // the poll tries again
      }
      // A delivered head lets its target's next row through: claim again at once.
      if (claimed.length > 0) this.again = true;
      await Promise.all(claimed.map((n) => this.deliver(n)));
    } while (this.again && !this.closed);
  }

  private async deliver(n: Notification): Promise<void> {
    const secret = this.secretOf(n);
    let error: string;
    if (n.signed && secret === null) {
      error = 'no signing secret: no configured notify target with this URL has one any more';
    } else {
      try {
        await this.post(n, secret);
        await this.settle(n, 'delivered', () => this.o.store.markNotificationDelivered(n.id, new Date(this.now()).toISOString()));
        this.o.logger.debug({ notification: n.id, target: targetForDisplay(n.target, n.format), attempts: n.attempts + 1 }, 'approver notification delivered');
        return;
      } catch (err) {
        error = redactSecret(errorMessage(err), secret);
      }
    }
    await this.failed(n, error);
  }

  private async failed(n: Notification, error: string): Promise<void> {
    const attempts = n.attempts + 1;
    const now = this.now();
    const target = targetForDisplay(n.target, n.format);
    const exhausted = attempts >= this.retry.maxAttempts || now - Date.parse(n.created_at) >= this.retry.maxAgeMs;
    if (this.closed) {
      // Cut off by close(): due again at once, for whoever runs next; never given up on the way out.
      await this.settle(n, null, () => this.o.store.markNotificationFailed(n.id, { error, nextAttemptAt: new Date(now).toISOString() }));
      return;
    }
    if (exhausted && (await this.recordGiveUp(n, target, error, attempts))) {
      await this.settle(n, 'gave_up', () => this.o.store.markNotificationDead(n.id, { error, at: new Date(now).toISOString() }));
      this.o.logger.error({ notification: n.id, request: n.request_id, target, attempts, err: error }, 'approver notification given up');
      return;
    }
    const next = now + retryDelayMs(attempts, this.retry, this.random);
    await this.settle(n, 'failed', () => this.o.store.markNotificationFailed(n.id, { error, nextAttemptAt: new Date(next).toISOString() }));
    this.scheduleRetry(next);
    this.o.logger.warn({ notification: n.id, target, attempts, retry_in_ms: next - now, err: error }, 'approver notification not delivered; retrying');
  }

  /** notify.failed, durable before the row is given up; if the audit log cannot take it, the row is retried instead. */
  private async recordGiveUp(n: Notification, target: string, error: string, attempts: number): Promise<boolean> {
    try {
      await this.o.recorder.record({
        type: 'notify.failed',
        actor: SYSTEM_ACTOR,
        connection: n.connection,
        data: { notification: n.id, request: n.request_id, event: n.event, target, format: n.format, error, attempts, created_at: n.created_at },
      });
      return true;
    } catch (err) {
      this.o.logger.error({ notification: n.id, target, err: errorMessage(err) }, 'cannot record notify.failed; the notification stays queued');
      return false;
    }
  }

  /** Writes the outcome; if the store cannot, the claim expires and the row is tried again. */
  private async settle(n: Notification, outcome: 'delivered' | 'failed' | 'gave_up' | null, write: () => Promise<void>): Promise<void> {
    if (outcome) this.o.metrics?.notifications.inc(outcome);
    if (outcome === 'delivered' || outcome === 'gave_up') this.secrets.delete(n.id);
    try {
      await write();
    } catch (err) {
      this.o.logger.warn({ notification: n.id, err: errorMessage(err) }, 'cannot update the notification outbox; the row is tried again when its claim expires');
    }
  }

  /** One POST; resolves on a 2xx answer, throws with the reason otherwise. */
  private async post(n: Notification, secret: string | null): Promise<void> {
    const { url, authorization } = splitCredentials(n.target);
    const headers: Record<string, string> = {
      'content-type': 'application/json',
      'user-agent': 'hoop-gateway',
      'x-hoop-delivery': n.id,
    };
    if (secret !== null) headers['x-hoop-signature'] = signatureHeader(secret, n.body, Math.floor(this.now() / 1000));
    if (authorization) headers['authorization'] = authorization;
    const ac = new AbortController();
    const timer = setTimeout(() => ac.abort(new Error(`no answer within ${this.timeoutMs} ms`)), this.timeoutMs);
    this.inflight.add(ac);
    try {
      await postFor2xx(url, { headers, body: n.body, signal: ac.signal, dispatcher: this.agent });
    } catch (err) {
      if (ac.signal.aborted) throw ac.signal.reason as Error;
      throw err;
    } finally {
      clearTimeout(timer);
      this.inflight.delete(ac);
    }
  }

  private secretOf(n: Notification): string | null {
    const configured = this.o.targets?.().find((t) => t.webhook === n.target && t.format === n.format && t.secret !== null);
    return configured?.secret ?? this.secrets.get(n.id) ?? null;
  }

  private remember(id: string, secret: string): void {
    if (this.secrets.size >= MAX_REMEMBERED_SECRETS) this.secrets.delete(this.secrets.keys().next().value!);
    this.secrets.set(id, secret);
  }

  /** A timer for the earliest retry this gateway scheduled (the poll would find it too, later). */
  private scheduleRetry(at: number): void {
    if (this.closed || at >= this.retryAt) return;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryAt = at;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      this.retryAt = Infinity;
      // A timer may fire a little before the clock the row was stamped with reaches `at`: a claim
      // then would find nothing due, and nothing would look again until the poll.
      if (this.now() < at) return this.scheduleRetry(at);
      this.wake();
    }, Math.max(0, at - this.now()) + 1);
    this.retryTimer.unref();
  }
}

function checkTarget(webhook: string): string {
  let u: URL | null = null;
  try {
    u = new URL(webhook);
  } catch {
    // below
  }
  if (!u || (u.protocol !== 'https:' && u.protocol !== 'http:')) {
    throw new ConfigError(`approval.notify: ${JSON.stringify(targetForDisplay(webhook, 'slack'))} is not an http(s) URL`);
  }
  return webhook;
}

/** `https://user:pass@host/…` -> the URL without them, and them as Basic credentials. */
function splitCredentials(target: string): { url: string; authorization: string | null } {
  const u = new URL(target);
  if (!u.username && !u.password) return { url: target, authorization: null };
  const pair = `${decodeURIComponent(u.username)}:${decodeURIComponent(u.password)}`;
  u.username = '';
  u.password = '';
  return { url: u.toString(), authorization: `Basic ${Buffer.from(pair).toString('base64')}` };
}
