/**
 * Typed client for the gateway's REST API (`/api/v1`, Bearer auth). Gateway errors
 * `{"error":{"code":"HOOP_...","message":"..."}}` become HoopErrors with the same code, so the
 * CLI's one exit-code mapping applies to server-side failures too.
 */
import type { Agent, Dispatcher } from 'undici';
import type { ApprovalRequest, AuditEventList, AuditKey, AuthConfig, ConnectionInfo, MeInfo, SessionDetail, SessionKillResult, SessionSummary } from '../api/types.js';
import { HoopError, type HoopErrorCode } from '../errors.js';

export interface SessionQuery {
  user?: string | undefined;
  connection?: string | undefined;
  since?: string | undefined;
  until?: string | undefined;
  id_prefix?: string | undefined;
  limit?: number | undefined;
}

export interface AuditEventQuery {
  /** Event types, or families such as `auth.*`; sent comma-separated. */
  type?: readonly string[] | undefined;
  since?: string | undefined;
  until?: string | undefined;
  limit?: number | undefined;
}

export interface AuditExportQuery {
  format: 'jsonl' | 'csv' | 'cef' | 'ocsf' | 'bundle';
  since: string;
  until: string;
  user?: string | undefined;
  connection?: string | undefined;
}

/** How long an export may go without a byte (a bundle is prepared before the first one). */
const EXPORT_IDLE_MS = 10 * 60_000;

/** X-Hoop-Reason travels as ASCII (a header); what is not ASCII becomes `?`. */
export function reasonHeaderValue(reason: string): string {
  return reason.replace(/[^\x20-\x7e]/g, '?');
}

export interface GatewayApiOptions {
  /** Base URL, e.g. `https://hoop.example.com`. */
  gateway: string;
  /** Called per request, so a refreshed token is always used; omit for unauthenticated calls. */
  token?: () => Promise<string>;
  /** Shown in the hint when the gateway rejects the token. */
  tokenSource?: 'HOOP_TOKEN' | 'stored';
  userAgent?: string;
  timeoutMs?: number;
}

const KNOWN_CODES = new Set<string>([
  'HOOP_USAGE', 'HOOP_CONFIG_INVALID', 'HOOP_NOT_LOGGED_IN', 'HOOP_AUTH_REJECTED', 'HOOP_FORBIDDEN',
  'HOOP_NOT_FOUND', 'HOOP_POLICY_DENIED', 'HOOP_APPROVAL_DENIED', 'HOOP_APPROVAL_PENDING',
  'HOOP_AUDIT_UNAVAILABLE', 'HOOP_AUDIT_VERIFY_FAILED', 'HOOP_PROTOCOL', 'HOOP_UPSTREAM',
  'HOOP_NETWORK', 'HOOP_STORE', 'HOOP_INTERNAL',
] satisfies HoopErrorCode[]);

const CODE_BY_STATUS: Record<number, HoopErrorCode> = {
  400: 'HOOP_USAGE',
  401: 'HOOP_AUTH_REJECTED',
  403: 'HOOP_FORBIDDEN',
  404: 'HOOP_NOT_FOUND',
  503: 'HOOP_AUDIT_UNAVAILABLE',
};

export class GatewayApi {
  readonly gateway: string;
  private readonly options: GatewayApiOptions;
  private dispatcher: Agent | undefined;
  /** Exports wait longer between bytes than the JSON calls do. */
  private exportDispatcher: Agent | undefined;

  constructor(options: GatewayApiOptions) {
    this.options = options;
    this.gateway = options.gateway.replace(/\/+$/, '');
  }

  me(): Promise<MeInfo> {
    return this.get<MeInfo>('/api/v1/me');
  }

  connections(): Promise<ConnectionInfo[]> {
    return this.get<ConnectionInfo[]>('/api/v1/connections');
  }

  /**
   * One connection, if this identity may open a session on it now (with `reason` where the
   * connection requires one); otherwise the gateway's refusal (404, 403), which it records.
   */
  connection(name: string, reason?: string): Promise<ConnectionInfo> {
    const headers = reason ? { 'x-hoop-reason': reasonHeaderValue(reason) } : undefined;
    return this.get<ConnectionInfo>(`/api/v1/connections/${encodeURIComponent(name)}`, headers ? { headers } : {});
  }

  sessions(query: SessionQuery = {}): Promise<SessionSummary[]> {
    return this.get<SessionSummary[]>(`/api/v1/sessions${queryString(query)}`);
  }

  /**
   * One page of audit events, newest first (auditors and admins), and the `before` of the next
   * page: the gateway bounds a page by bytes too, so it may hold fewer than `limit` events.
   * (`next` is null on the last page, and from gateways that send one page only.)
   */
  async auditEvents(query: AuditEventQuery & { before?: number } = {}): Promise<{ events: AuditEventList; next: number | null }> {
    const { type, ...rest } = query;
    let next: number | null = null;
    const events = await this.get<AuditEventList>(`/api/v1/audit/events${queryString({ ...rest, type: type?.join(',') })}`, {
      onHeaders: (h) => {
        const v = h['x-hoop-next-before'];
        if (typeof v === 'string' && /^\d{1,15}$/.test(v)) next = Number(v);
      },
    });
    return { events, next };
  }

  /** Up to `limit` audit events, newest first, page by page, each fetched only once the caller has taken the one before. */
  async *auditEventPages(query: AuditEventQuery): AsyncGenerator<AuditEventList> {
    let left = query.limit ?? 100;
    let before: number | undefined;
    while (left > 0) {
      const page = await this.auditEvents({ ...query, limit: left, ...(before !== undefined ? { before } : {}) });
      const events = page.events.slice(0, left);
      left -= events.length;
      yield events;
      if (page.next === null || events.length === 0) return;
      if (before !== undefined && page.next >= before) throw new HoopError('HOOP_INTERNAL', `gateway at ${this.gateway} sent an audit events page that does not move on`);
      before = page.next;
    }
  }

  /**
   * An export's body as it streams (auditors and admins): `GET /api/v1/audit/export`. Resolves
   * once the gateway has answered; a refusal becomes the HoopError its status says. The body may
   * be large: read it as a stream. Aborting `signal` ends the request.
   */
  async auditExport(query: AuditExportQuery, o: { signal?: AbortSignal } = {}): Promise<AsyncIterable<Buffer> & { destroy(err?: Error): void }> {
    const path = `/api/v1/audit/export${queryString(query)}`;
    const headers: Record<string, string> = { accept: '*/*', 'user-agent': this.options.userAgent ?? 'hoop-cli' };
    if (this.options.token) headers.authorization = `Bearer ${await this.options.token()}`;
    const { Agent, request } = await import('undici');
    this.exportDispatcher ??= new Agent({ connectTimeout: 10_000, headersTimeout: EXPORT_IDLE_MS, bodyTimeout: EXPORT_IDLE_MS });
    let res: Dispatcher.ResponseData;
    try {
      res = await request(`${this.gateway}${path}`, { method: 'GET', headers, dispatcher: this.exportDispatcher, ...(o.signal ? { signal: o.signal } : {}) });
    } catch (err) {
      throw networkError(this.gateway, err);
    }
    if (res.statusCode >= 200 && res.statusCode < 300) return res.body;
    const text = await res.body.text().catch(() => '');
    throw this.apiError(res.statusCode, `GET ${path.split('?')[0]}`, text);
  }

  /**
   * One page of a session: the first without `after`, the next with the previous page's `next`.
   * (`next` is null on the last page, and absent from gateways that send whole sessions.)
   */
  session(id: string, page: { after?: number; limit?: number } = {}): Promise<SessionDetail> {
    return this.get<SessionDetail>(`/api/v1/sessions/${encodeURIComponent(id)}${queryString(page)}`);
  }

  /** A session page by page, each fetched only once the caller has taken the one before. */
  async *sessionPages(id: string, page: { limit?: number } = {}): AsyncGenerator<SessionDetail> {
    let after: number | undefined;
    for (;;) {
      const got = await this.session(id, { ...page, ...(after !== undefined ? { after } : {}) });
      yield got;
      if (got.next === undefined || got.next === null || got.events.length === 0) return;
      if (after !== undefined && got.next <= after) throw new HoopError('HOOP_INTERNAL', `gateway at ${this.gateway} sent a session page that does not move forward`);
      after = got.next;
    }
  }

  /** Admins: end a live session on whichever gateway holds it. */
  killSession(id: string, reason?: string): Promise<SessionKillResult> {
    return this.get<SessionKillResult>(`/api/v1/sessions/${encodeURIComponent(id)}/kill`, { method: 'POST', body: { reason: reason ?? null } });
  }

  /** Pending requests this identity may decide; with `all`, every request it may see. */
  reviews(o: { all?: boolean } = {}): Promise<ApprovalRequest[]> {
    return this.get<ApprovalRequest[]>(`/api/v1/reviews${o.all ? '?all=true' : ''}`);
  }

  /** Approve or deny a pending request (a deny needs a comment). */
  decide(id: string, decision: 'approve' | 'deny', comment?: string): Promise<ApprovalRequest> {
    return this.get<ApprovalRequest>(`/api/v1/reviews/${encodeURIComponent(id)}/${decision}`, { method: 'POST', body: { comment: comment ?? null } });
  }

  /** Ask ahead of time: a statement (`query`) or time-bound access (`duration`, e.g. `2h`). */
  createRequest(connection: string, body: { query?: string; duration?: string; reason: string }): Promise<ApprovalRequest> {
    return this.get<ApprovalRequest>(`/api/v1/connections/${encodeURIComponent(connection)}/requests`, { method: 'POST', body });
  }

  /** One request (its requester, approvers, admins and auditors). */
  request(id: string): Promise<ApprovalRequest> {
    return this.get<ApprovalRequest>(`/api/v1/requests/${encodeURIComponent(id)}`);
  }

  /** The audit signing keys, active first (any signed-in identity). */
  auditKeys(): Promise<AuditKey[]> {
    return this.get<AuditKey[]>('/api/v1/audit/keys');
  }

  /**
   * `GET /api/v1/audit/export?format=bundle` (auditors and admins): the bundle's gzip bytes as
   * they arrive, for `hoop audit verify --gateway` to check while it reads (nothing is buffered
   * whole). A refusal or error status becomes the gateway's HoopError before any byte is returned.
   */
  async auditBundle(query: { since: string; until: string }): Promise<AsyncIterable<Buffer>> {
    const body = await this.auditExport({ format: 'bundle', since: query.since, until: query.until });
    const gateway = this.gateway;
    return (async function* () {
      try {
        for await (const chunk of body) yield chunk as Buffer;
      } catch (err) {
        throw networkError(gateway, err);
      }
    })();
  }

  /** Unauthenticated: how to log in to this gateway. */
  authConfig(): Promise<AuthConfig> {
    return this.get<AuthConfig>('/api/v1/auth/config', { anonymous: true });
  }

  async close(): Promise<void> {
    await this.dispatcher?.close();
    this.dispatcher = undefined;
    await this.exportDispatcher?.destroy();
    this.exportDispatcher = undefined;
  }

  /** A GET, or with `method` another request with a JSON `body`. */
  private async get<T>(path: string, o: { anonymous?: boolean; method?: 'GET' | 'POST'; body?: unknown; headers?: Record<string, string>; onHeaders?: (headers: Dispatcher.ResponseData['headers']) => void } = {}): Promise<T> {
    const url = `${this.gateway}${path}`;
    const method = o.method ?? 'GET';
    const headers: Record<string, string> = {
      accept: 'application/json',
      'user-agent': this.options.userAgent ?? 'hoop-cli',
      ...(o.body !== undefined ? { 'content-type': 'application/json' } : {}),
      ...o.headers,
    };
    if (!o.anonymous && this.options.token) headers.authorization = `Bearer ${await this.options.token()}`;
    // undici loads on the first request, so commands that never call the API start faster.
    const { Agent, request } = await import('undici');
    const timeout = this.options.timeoutMs ?? 30_000;
    // Own agent: closing it leaves no keep-alive sockets behind (tests, short-lived commands).
    this.dispatcher ??= new Agent({ connectTimeout: Math.min(timeout, 10_000), headersTimeout: timeout, bodyTimeout: timeout });
    let res: Dispatcher.ResponseData;
    try {
      res = await request(url, { method, headers, dispatcher: this.dispatcher, ...(o.body !== undefined ? { body: JSON.stringify(o.body) } : {}) });
    } catch (err) {
      throw networkError(this.gateway, err);
    }
    const text = await res.body.text().catch((err: unknown) => {
      throw networkError(this.gateway, err);
    });
    if (res.statusCode >= 200 && res.statusCode < 300) {
      o.onHeaders?.(res.headers);
      try {
        return JSON.parse(text) as T;
      } catch {
        throw new HoopError('HOOP_INTERNAL', `gateway at ${this.gateway} answered ${method} ${path} with something other than JSON`, {
          hint: 'Check that --gateway points at a hoop gateway.',
        });
      }
    }
    throw this.apiError(res.statusCode, `${method} ${path}`, text);
  }

  private apiError(status: number, request: string, body: string): HoopError {
    let code: HoopErrorCode = CODE_BY_STATUS[status] ?? 'HOOP_INTERNAL';
    let message = `gateway answered ${status} to ${request}`;
    let hint: string | undefined;
    try {
      const e = (JSON.parse(body) as { error?: { code?: unknown; message?: unknown; hint?: unknown } }).error;
      if (e && typeof e.code === 'string' && KNOWN_CODES.has(e.code)) code = e.code as HoopErrorCode;
      if (e && typeof e.message === 'string' && e.message) message = e.message;
      if (e && typeof e.hint === 'string' && e.hint) hint = e.hint.slice(0, 500);
    } catch {
      // Not our JSON (a proxy page, say): keep the status-derived code and message.
    }
    if (status === 401 || code === 'HOOP_AUTH_REJECTED') {
      const hint =
        this.options.tokenSource === 'HOOP_TOKEN'
          ? 'Check the key or token in HOOP_TOKEN.'
          : `Run \`hoop login --gateway ${this.gateway}\` to log in again.`;
      return new HoopError('HOOP_AUTH_REJECTED', `the gateway rejected the credential: ${message}`, { hint });
    }
    return new HoopError(code, message, hint ? { hint } : undefined);
  }
}

function queryString(query: object): string {
  const params = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) if (v !== undefined && v !== '') params.set(k, String(v));
  const qs = params.toString();
  return qs ? `?${qs}` : '';
}

const NETWORK_REASONS: Record<string, string> = {
  ECONNREFUSED: 'connection refused',
  ENOTFOUND: 'host not found',
  EAI_AGAIN: 'DNS lookup failed',
  ECONNRESET: 'connection reset',
  ETIMEDOUT: 'timed out',
  EHOSTUNREACH: 'host unreachable',
  UND_ERR_CONNECT_TIMEOUT: 'connect timed out',
  UND_ERR_HEADERS_TIMEOUT: 'no answer in time',
  UND_ERR_BODY_TIMEOUT: 'answer stalled',
  UND_ERR_SOCKET: 'connection closed',
};

export function networkError(gateway: string, err: unknown): HoopError {
  if (err instanceof HoopError) return err;
  const e = err as { code?: string; message?: string; cause?: { code?: string; message?: string } } | undefined;
  const code = e?.cause?.code ?? e?.code;
  const reason = (code && NETWORK_REASONS[code]) ?? e?.cause?.message ?? e?.message ?? String(err);
  return new HoopError('HOOP_NETWORK', `cannot reach the gateway at ${gateway}: ${reason}`, {
    cause: err,
    hint: 'Check --gateway or HOOP_GATEWAY, and that the gateway is running.',
  });
}
