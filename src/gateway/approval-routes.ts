/**
 * The HTTP API of approvals (approvals.ts holds the rules; these routes only read requests and
 * shapes). Reviewers: `GET /api/v1/reviews[?all=true]`, `GET /api/v1/reviews/{id}`,
 * `POST /api/v1/reviews/{id}/approve|deny`. Requesters: `POST /api/v1/connections/{name}/requests`
 * (ahead of time), `GET /api/v1/requests/{id}`. Someone else's request that the caller may not
 * read is 404, so ids cannot be probed; the refusal is recorded as `access.denied`.
 */
import type { ServerResponse } from 'node:http';
import { APPROVAL_REQUEST_ID, type ApprovalRequest } from '../api/types.js';
import { HoopError, UsageError } from '../errors.js';
import type { Identity } from '../identity/identity.js';
import { fingerprintSql } from '../policy/masking/parse.js';
import { formatDuration, parseDuration } from '../units.js';
import { DeniedError, admitConnection, admitGrantRequest } from './access.js';
import { approvalConfigOf, cleanText, mayDecide, mayReadRequest } from './approvals.js';
import { isAdmin, mayReadAllSessions } from './authz.js';
import { sendJson } from './http.js';
import type { ApiContext } from './routes.js';

type Params = { url: URL; match: RegExpExecArray; body: Buffer };

/** Most requests one listing returns. */
const REVIEW_LIST_LIMIT = 100;

/**
 * GET /api/v1/reviews: the pending requests the caller may decide (approver groups, or every one
 * for admins; never their own). `?all=true`: every request the caller may see, in any status —
 * admins and auditors all of them, others their own and those their groups decide.
 */
export async function listReviews(ctx: ApiContext, id: Identity, res: ServerResponse, { url }: Params): Promise<void> {
  const q = url.searchParams;
  for (const key of q.keys()) if (key !== 'all') throw new UsageError(`unknown query parameter ${JSON.stringify(key.slice(0, 40))}; accepted: all`);
  const all = q.getAll('all');
  if (all.length > 1 || (all[0] !== undefined && !['true', 'false'].includes(all[0]))) throw new UsageError('all: expected true or false');
  const roles = ctx.config.roles;
  const store = ctx.store;
  let list: ApprovalRequest[];
  if (all[0] === 'true') {
    list = mayReadAllSessions(id, roles)
      ? await store.listApprovalRequests({ limit: REVIEW_LIST_LIMIT })
      : newestFirst([
          ...(await store.listApprovalRequests({ requester: id.subject, limit: REVIEW_LIST_LIMIT })),
          ...(await store.listApprovalRequests({ approverGroups: id.groups, limit: REVIEW_LIST_LIMIT })),
        ]);
  } else {
    const pending = await store.listApprovalRequests({ status: ['pending'], ...(isAdmin(id, roles) ? {} : { approverGroups: id.groups }), limit: REVIEW_LIST_LIMIT + 50 });
    list = pending.filter((r) => mayDecide(id, roles, r));
  }
  sendJson(res, 200, list.slice(0, REVIEW_LIST_LIMIT));
}

/** GET /api/v1/reviews/{id} and GET /api/v1/requests/{id}: for its requester, its approvers, admins and auditors. */
export async function getRequest(ctx: ApiContext, id: Identity, res: ServerResponse, { match }: Params): Promise<void> {
  sendJson(res, 200, await readable(ctx, id, requestId(match[1]!)));
}

/** POST /api/v1/reviews/{id}/approve|deny `{"comment": "..."}`: a comment is optional to approve, required to deny. */
export async function decideReview(ctx: ApiContext, id: Identity, res: ServerResponse, { match, body }: Params): Promise<void> {
  const requestIdText = requestId(match[1]!);
  const decision = match[2] === 'approve' ? 'approve' : 'deny';
  const fields = jsonObject(body, ['comment'], '{"comment": "..."}', true);
  const comment = optionalText(fields.comment, 'comment');
  if (decision === 'deny' && comment === null) throw new UsageError('a deny needs a comment saying why', { hint: 'hoop review deny <id> --comment "…"' });
  await readable(ctx, id, requestIdText); // someone who may not even read it learns nothing more
  sendJson(res, 200, await ctx.approvals.decide(requestIdText, id, decision, comment));
}

/**
 * POST /api/v1/connections/{name}/requests: ask ahead of time, for a statement (`{query,
 * reason}`: it then runs once without a hold, in any session of the caller's, with no
 * parameters) or for time-bound access (`{duration, reason}`, e.g. "2h", at most the
 * connection's `grant_max`). A statement: the caller must be allowed on the connection now (a
 * member of `access_by_grant` inside a grant). A grant: only members of `access_by_grant` (not of
 * `access`) ask for one. The connection must have an `approval` block. 201 with the pending request.
 */
export async function createRequest(ctx: ApiContext, id: Identity, res: ServerResponse, { match, body }: Params): Promise<void> {
  const fields = jsonObject(body, ['query', 'reason', 'duration'], '{"query": "...", "reason": "..."}', false);
  const reason = optionalText(fields.reason, 'reason');
  // A grant is asked for by whoever may connect only with one; a statement, by whoever may connect now.
  const name = decodePath(match[1]!);
  const connection = fields.duration !== undefined && fields.query === undefined
    ? admitGrantRequest(ctx.config, id, name, reason)
    : (await admitConnection(ctx.config, id, name, reason, (s, c) => ctx.approvals.activeGrant(s, c))).connection;
  const config = approvalConfigOf(connection);
  if (!config) throw new UsageError(`connection ${connection.name} takes no approval requests (it has no approval block)`);
  if (reason === null) throw new UsageError('reason: say why (reviewers see it)', { hint: 'hoop request <connection> --query "…" --reason "INC-42"' });
  if ((fields.query === undefined) === (fields.duration === undefined)) throw new UsageError('give either query (a statement) or duration (time-bound access)');
  let created: ApprovalRequest;
  if (fields.query !== undefined) {
    if (typeof fields.query !== 'string' || fields.query.trim() === '') throw new UsageError('query: expected the statement text');
    const text = fields.query;
    created = await ctx.approvals.request({ identity: id, connection: connection.name, reason, config, statement: { text, fingerprint: fingerprintSql(text), parameters: [] } });
  } else {
    const ms = typeof fields.duration === 'string' ? parseDuration(fields.duration) : null;
    if (ms === null || ms <= 0) throw new UsageError('duration: expected a span such as 30m or 2h');
    if (ms > config.grantMaxMs) throw new UsageError(`duration: at most ${formatDuration(config.grantMaxMs)} on connection ${connection.name} (grant_max)`);
    created = await ctx.approvals.request({ identity: id, connection: connection.name, reason, config, durationMs: ms });
  }
  sendJson(res, 201, created);
}

// ---------------------------------------------------------------------------------------------

/** The request, if this identity may read it; otherwise 404 as for an unknown id, and the refusal recorded. */
async function readable(ctx: ApiContext, id: Identity, requestIdText: string): Promise<ApprovalRequest> {
  const r = await ctx.approvals.get(requestIdText);
  if (!r) throw new HoopError('HOOP_NOT_FOUND', `no request ${requestIdText}`);
  if (!mayReadRequest(id, ctx.config.roles, r)) {
    throw new DeniedError('HOOP_NOT_FOUND', `no request ${requestIdText}`, {
      stage: 'role', connection: r.connection, recorded: `request ${requestIdText} is another user's`, data: { request: requestIdText },
    });
  }
  return r;
}

function requestId(raw: string): string {
  const id = decodePath(raw);
  if (!APPROVAL_REQUEST_ID.test(id)) throw new UsageError(`not a request id: ${JSON.stringify(id.slice(0, 20))} (expected r- and 8 hex digits)`);
  return id;
}

function newestFirst(list: ApprovalRequest[]): ApprovalRequest[] {
  const byId = new Map(list.map((r) => [r.id, r]));
  return [...byId.values()].sort((a, b) => b.created_at.localeCompare(a.created_at) || b.id.localeCompare(a.id));
}

/** A JSON object body with only `allowed` keys; an empty body is `{}` when `emptyOk`. */
function jsonObject(body: Buffer, allowed: string[], example: string, emptyOk: boolean): Record<string, unknown> {
  if (body.length === 0 && emptyOk) return {};
  let parsed: unknown;
  try {
    parsed = JSON.parse(body.toString('utf8'));
  } catch {
    throw new UsageError(`the body must be JSON: ${example}`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new UsageError(`the body must be a JSON object: ${example}`);
  const extra = Object.keys(parsed).filter((k) => !allowed.includes(k));
  if (extra.length) throw new UsageError(`unknown field ${JSON.stringify(extra[0]!.slice(0, 40))}; accepted: ${allowed.join(', ')}`);
  return parsed as Record<string, unknown>;
}

function optionalText(raw: unknown, name: string): string | null {
  if (raw === undefined || raw === null) return null;
  if (typeof raw !== 'string') throw new UsageError(`${name}: expected a string`);
  try {
    return cleanText(raw);
  } catch (err) {
    throw new UsageError(`${name}: ${(err as Error).message}`);
  }
}

function decodePath(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    throw new UsageError('malformed percent-encoding in the path');
  }
}
