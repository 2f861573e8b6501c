/** The OpenAPI 3.1 description of the HTTP API, served at /api/v1/openapi.json. */

const error = { $ref: '#/components/responses/Error' };
const json = (schema: object) => ({ content: { 'application/json': { schema } } });
const ref = (name: string) => ({ $ref: `#/components/schemas/${name}` });
const authed = { 401: error, 500: error, 503: error };

export function openApiDocument(): object {
  return {
    openapi: '3.1.0',
    info: {
      title: 'hoop gateway API',
      version: '1',
      description: 'Layer 7 access gateway for databases. JSON over HTTP(S); authenticate with `Authorization: Bearer <API key or OIDC access token>`.',
    },
    servers: [{ url: '/' }],
    security: [{ bearer: [] }],
    paths: {
      '/healthz': {
        get: {
          operationId: 'health', summary: 'Liveness and store reachability', security: [],
          responses: { 200: { description: 'Healthy', ...json(ref('Health')) }, 503: { description: 'The audit store is unreachable', ...json(ref('Health')) } },
        },
      },
      '/metrics': {
        get: {
          operationId: 'metrics', summary: 'Prometheus metrics (text exposition format 0.0.4)', security: [],
          responses: { 200: { description: 'Metrics', content: { 'text/plain': { schema: { type: 'string' } } } } },
        },
      },
      '/api/v1/openapi.json': {
        get: { operationId: 'openapi', summary: 'This document', security: [], responses: { 200: { description: 'OpenAPI 3.1 document', ...json({ type: 'object' }) } } },
      },
      '/api/v1/auth/config': {
        get: {
          operationId: 'authConfig', summary: 'How to obtain a token: the OIDC settings for `hoop login`', security: [],
          responses: { 200: { description: 'OIDC settings, or `{"oidc": null}` when the gateway accepts API keys only', ...json(ref('AuthConfig')) } },
        },
      },
      '/api/v1/me': {
        get: { operationId: 'me', summary: 'The calling identity', responses: { 200: { description: 'Identity', ...json(ref('Me')) }, ...authed } },
      },
      '/api/v1/connections': {
        get: {
          operationId: 'listConnections', summary: 'Configured connections, and whether the caller may use each',
          responses: { 200: { description: 'Connections', ...json({ type: 'array', items: ref('Connection') }) }, ...authed },
        },
      },
      '/api/v1/connections/{name}': {
        get: {
          operationId: 'checkConnection',
          summary: 'One connection, answered only if the caller may open a session on it now',
          description: 'The check `hoop connect` makes before it opens a local port, with the same decision as the tunnel: 404 for an unknown connection, 403 `HOOP_FORBIDDEN` outside its `access` groups, 403 `HOOP_POLICY_DENIED` without `X-Hoop-Reason` on a connection with `require_reason`. Every refusal is recorded as `access.denied`.',
          parameters: [
            { name: 'name', in: 'path', required: true, schema: { type: 'string', pattern: '^[a-z0-9][a-z0-9_-]{0,62}$' } },
            { name: 'X-Hoop-Reason', in: 'header', required: false, schema: { type: 'string', maxLength: 1000 }, description: 'The reason the session will carry' },
          ],
          responses: { 200: { description: 'The connection', ...json(ref('Connection')) }, 403: error, 404: error, ...authed },
        },
      },
      '/api/v1/agents/link': {
        get: {
          operationId: 'openAgentLink',
          summary: 'WebSocket link of a `hoop agent` (agent keys only)',
          description: 'Upgrade to a WebSocket (RFC 6455) with `Authorization: Bearer <agent key>`: only a key whose SHA-256 is under `agents` authenticates here, and such a key authenticates nowhere else. Binary messages are the stream multiplexing frames of src/agent/mux.ts (docs/agent.md). Optional headers: `X-Hoop-Agent-Name` (the agent name the key must belong to) and `X-Hoop-Agent-Instance` (recorded). Failures are recorded as `auth.failed`; an address that keeps failing gets 429 for a minute.',
          security: [{ bearer: [] }],
          responses: {
            101: { description: 'Switching protocols: the link is up (`agent.connected` is recorded)' },
            400: error, 401: error, 429: error, 503: error,
          },
        },
      },
      '/api/v1/connections/{name}/tunnel': {
        get: {
          operationId: 'openTunnel',
          summary: 'WebSocket tunnel carrying one PostgreSQL client session',
          description: 'Upgrade to a WebSocket (RFC 6455). Binary messages carry the raw PostgreSQL frontend bytes, starting with a StartupMessage or a CancelRequest; the gateway answers with backend bytes. Authentication and authorization happen before the upgrade: a refusal is a plain HTTP response with the JSON error body. The optional `X-Hoop-Reason` header is recorded with the session.',
          parameters: [
            { name: 'name', in: 'path', required: true, schema: { type: 'string', pattern: '^[a-z0-9][a-z0-9_-]{0,62}$' } },
            { name: 'X-Hoop-Reason', in: 'header', required: false, schema: { type: 'string', maxLength: 1000 }, description: 'Why the session is opened; recorded in session.start' },
          ],
          responses: {
            101: {
              description: 'Switching protocols: the tunnel is open',
              headers: { 'X-Hoop-Session': { schema: { type: 'string', format: 'uuid' }, description: 'The id the session is recorded under (GET /api/v1/sessions/{id})' } },
            },
            401: error, 403: error, 404: error, 426: error, 503: error,
          },
          'x-refusals': 'A refusal of an authenticated caller (403, 404) is recorded as `access.denied`; a refused credential (401) as `auth.failed`.',
        },
      },
      '/api/v1/sessions': {
        get: {
          operationId: 'listSessions',
          summary: 'Recorded sessions, newest first. Admins and auditors see all; others see only their own.',
          parameters: [
            { name: 'user', in: 'query', schema: { type: 'string', maxLength: 256 }, description: 'A subject (`apikey:nightly-etl`), an email (any case) or an API key name (`nightly-etl`). Others than the caller: admins and auditors only (403, recorded as `access.denied`).' },
            { name: 'connection', in: 'query', schema: { type: 'string' } },
            { name: 'since', in: 'query', schema: { type: 'string', format: 'date-time' }, description: 'Started at or after (RFC 3339)' },
            { name: 'until', in: 'query', schema: { type: 'string', format: 'date-time' }, description: 'Started before (RFC 3339)' },
            { name: 'id_prefix', in: 'query', schema: { type: 'string', pattern: '^[0-9a-f][0-9a-f-]{0,35}$' }, description: 'Sessions whose id starts with this (a short id)' },
            { name: 'limit', in: 'query', schema: { type: 'integer', minimum: 1, maximum: 1000, default: 100 } },
          ],
          responses: { 200: { description: 'Sessions', ...json({ type: 'array', items: ref('SessionSummary') }) }, 400: error, 403: error, ...authed },
        },
      },
      '/api/v1/audit/keys': {
        get: {
          operationId: 'listAuditKeys',
          summary: 'The Ed25519 keys that sign (active) or signed (retired, unknown) audit checkpoints, with their first and last use. Any signed-in identity.',
          responses: { 200: { description: 'Keys, active first', ...json({ type: 'array', items: ref('AuditKey') }) }, 400: error, ...authed },
        },
      },
      '/api/v1/audit/events': {
        get: {
          operationId: 'listAuditEvents',
          summary: 'Audit events by type and time, newest first. Admins and auditors only; every read is recorded as `audit.read`.',
          description: 'A page holds at most `limit` events and at most 8 MiB of their stored JSON, payloads included (a single larger event comes alone), so a listing never loads more whatever the events hold. When more events match, the `X-Hoop-Next-Before` header carries the `before` of the next page. Every page is recorded as `audit.read` (who, the filter, the page) before it is sent.',
          parameters: [
            { name: 'type', in: 'query', schema: { type: 'string' }, description: 'Event types separated by commas, e.g. `access.denied,auth.failed`; `auth.*` names a family' },
            { name: 'since', in: 'query', schema: { type: 'string', format: 'date-time' }, description: 'At or after (RFC 3339)' },
            { name: 'until', in: 'query', schema: { type: 'string', format: 'date-time' }, description: 'Before (RFC 3339)' },
            { name: 'limit', in: 'query', schema: { type: 'integer', minimum: 1, maximum: 1000, default: 100 }, description: 'At most this many events (a page may hold fewer: it is also bounded by bytes)' },
            { name: 'before', in: 'query', schema: { type: 'integer', minimum: 1 }, description: 'Events with a lower seq: the `X-Hoop-Next-Before` of the previous page' },
          ],
          responses: {
            200: {
              description: 'Events, newest first',
              headers: { 'X-Hoop-Next-Before': { schema: { type: 'integer' }, description: 'Present when more events match: pass it as `before` for the next page' } },
              ...json({ type: 'array', items: ref('AuditEvent') }),
            },
            400: error, 403: error, ...authed,
          },
        },
      },
      '/api/v1/audit/export': {
        get: {
          operationId: 'exportAuditLog',
          summary: 'The audit log of a time range for a SIEM, or a signed bundle for an examiner (`hoop audit export`). Admins and auditors only.',
          description: 'Streams (chunked) as the log is read page by page, so an export of any size keeps the gateway\'s memory flat. It covers the log as it was when the export began: a bundle first asks for a checkpoint and ends its span at it. `jsonl`: the events as stored, with `prev_hash`, `hash` and the payload inline; `csv`: one row per statement; `cef`: ArcSight CEF lines; `ocsf`: OCSF 1.1 JSON lines; `bundle`: a tar.gz (format hoop-audit-bundle-v1, docs/audit-export.md) with events.jsonl, payloads, keys, summary.csv, report.html, SHA256SUMS and its Ed25519 signature. When the body ends (or is cut off) the export is recorded as `export.created` with the SHA-256 of the body as sent; a refusal is recorded as `access.denied`.',
          parameters: [
            { name: 'format', in: 'query', schema: { type: 'string', enum: ['jsonl', 'csv', 'cef', 'ocsf', 'bundle'], default: 'jsonl' } },
            { name: 'since', in: 'query', required: true, schema: { type: 'string', format: 'date-time' }, description: 'Events at or after (RFC 3339)' },
            { name: 'until', in: 'query', required: true, schema: { type: 'string', format: 'date-time' }, description: 'Events before (RFC 3339)' },
            { name: 'user', in: 'query', schema: { type: 'string', maxLength: 256 }, description: 'Only this user: a subject, an email (case-insensitive) or an API key name; approval and grant events about their requests too' },
            { name: 'connection', in: 'query', schema: { type: 'string', pattern: '^[a-z0-9][a-z0-9_-]{0,62}$' } },
          ],
          responses: {
            200: {
              description: 'The export',
              content: {
                'application/x-ndjson': { schema: { type: 'string' } },
                'text/csv': { schema: { type: 'string' } },
                'text/plain': { schema: { type: 'string' }, description: 'CEF' },
                'application/gzip': { schema: { type: 'string', format: 'binary' }, description: 'bundle' },
              },
            },
            400: error, 403: error, 429: { ...error, description: 'Two bundles are being spooled on this gateway already' }, ...authed,
          },
        },
      },
      '/api/v1/sessions/{id}': {
        get: {
          operationId: 'getSession', summary: 'One session and one page of its audit events in order',
          description: 'Events come in pages, so a session of any size is read with bounded memory: at most `limit` events and at most 8 MiB of their stored JSON per page (a single larger event, bounded by `audit.payload_limit`, comes alone). `next` is the `after` of the following page, null on the last. Every page is recorded as `audit.read` (who, which session, the first and last seq it held) before it is sent. Admins and auditors get the events as recorded. Anyone else (the session\'s own user) gets them without operator-only data: `session.end` `data.detail` (an upstream failure\'s address, service account and the server\'s words) is left out and named in the event\'s `redacted`. Someone else\'s session is 404.',
          parameters: [
            { name: 'id', in: 'path', required: true, schema: { type: 'string' } },
            { name: 'after', in: 'query', schema: { type: 'integer', minimum: 0 }, description: 'Events with a greater seq: the `next` of the previous page' },
            { name: 'limit', in: 'query', schema: { type: 'integer', minimum: 1, maximum: 1000, default: 1000 }, description: 'At most this many events (a page may hold fewer: it is also bounded by bytes)' },
          ],
          responses: {
            200: {
              description: 'The session and one page of its events',
              ...json({
                type: 'object', required: ['session', 'events', 'next'],
                properties: {
                  session: ref('SessionSummary'),
                  events: { type: 'array', items: ref('AuditEvent') },
                  next: { type: ['integer', 'null'], description: 'Pass as `after` for the next page; null: this page ends the session (as of this read)' },
                },
              }),
            },
            400: error, 404: error, ...authed,
          },
        },
      },
      '/api/v1/sessions/{id}/kill': {
        post: {
          operationId: 'killSession', summary: 'End a live session on whichever gateway holds it (admins only)',
          description: 'Records `session.kill` (who asked, why), then the gateway holding the session ends it at a message boundary: the client gets a FATAL (57P01) saying who ended it and why, what runs upstream is cancelled, and `session.end` records the reason `killed by <subject>: <reason>`. With a PostgreSQL store any replica may take the request. Idempotent while the session is live: a repeated request returns the first one. The answer waits a few seconds for the end: 200 once it is recorded, 202 if it is not yet.',
          parameters: [{ name: 'id', in: 'path', required: true, schema: { type: 'string', format: 'uuid' }, description: 'The whole session id' }],
          requestBody: { required: false, ...json({ type: 'object', additionalProperties: false, properties: { reason: { type: ['string', 'null'], maxLength: 500 } } }) },
          responses: {
            200: { description: 'The session has ended', ...json(ref('SessionKill')) },
            202: { description: 'Requested; the gateway holding the session has not recorded its end yet', ...json(ref('SessionKill')) },
            400: error, 403: error, 404: error, ...authed,
          },
        },
      },
      '/api/v1/admin/reload': {
        post: {
          operationId: 'reloadConfig', summary: 'Read the config file again and apply it (admins only)',
          description: 'The same as SIGHUP to `hoop gateway`. The file is validated in full first: any problem keeps the running config and answers 422 with every problem (`error.problems`, one `file: key.path: reason` each); nothing is recorded. Otherwise `config.loaded` (source `api`, who, what changed; never a secret) is recorded, durably, before the new config takes effect for new sessions and new statements: connections (masking, approval rules, access, require_reason, limits; added and removed), API keys, roles, trusted proxies. Keys a running gateway cannot take over (listen, tls, store, workers, audit.*, identity.oidc) keep their running values and are listed in `needs_restart`. With `workers: N` the answer is the worker\'s that took the request; once it applied the file, every other worker reloads it too (each records its own `config.loaded`, with `data.worker`). A caller without the admin role gets 403, recorded as `access.denied`.',
          requestBody: { required: false, ...json({ type: 'object', additionalProperties: false }) },
          responses: {
            200: { description: 'Applied', ...json(ref('ReloadResult')) },
            422: {
              description: 'The file has problems; the running config is kept',
              ...json({
                type: 'object', required: ['error'],
                properties: { error: { type: 'object', required: ['code', 'message', 'problems'], properties: { code: { const: 'HOOP_CONFIG_INVALID' }, message: { type: 'string' }, hint: { type: 'string' }, problems: { type: 'array', items: { type: 'string' } } } } },
              }),
            },
            400: error, 403: error, ...authed,
          },
        },
      },
      '/api/v1/reviews': {
        get: {
          operationId: 'listReviews',
          summary: 'Approval requests for reviewers, newest first',
          description: 'Without `all`: the pending requests the caller may decide (a member of one of their `approvers` groups, or an admin), never their own. With `all=true`: every request the caller may see, in any status (admins and auditors: all; others: their own and those their groups decide). At most 100.',
          parameters: [{ name: 'all', in: 'query', schema: { enum: ['true', 'false'] } }],
          responses: { 200: { description: 'Requests', ...json({ type: 'array', items: ref('ApprovalRequest') }) }, 400: error, ...authed },
        },
      },
      '/api/v1/reviews/{id}': {
        get: {
          operationId: 'getReview', summary: 'One approval request (its requester, its approvers, admins and auditors; 404 for others)',
          parameters: [{ name: 'id', in: 'path', required: true, schema: { type: 'string', pattern: '^r-[0-9a-f]{8}$' } }],
          responses: { 200: { description: 'The request', ...json(ref('ApprovalRequest')) }, 400: error, 404: error, ...authed },
        },
      },
      '/api/v1/reviews/{id}/approve': {
        post: {
          operationId: 'approveReview',
          summary: 'Approve a pending request (approvers and admins; never your own)',
          description: 'Records `approval.decided` (who, the comment) durably, then applies it: with `min_approvals` distinct approvers the request is approved and a held statement runs (on whichever replica holds it). 403 `HOOP_FORBIDDEN` for the requester and for non-approvers (recorded as `access.denied`); 409 when the request is no longer pending or you decided it already.',
          parameters: [{ name: 'id', in: 'path', required: true, schema: { type: 'string', pattern: '^r-[0-9a-f]{8}$' } }],
          requestBody: { required: false, ...json({ type: 'object', additionalProperties: false, properties: { comment: { type: ['string', 'null'], maxLength: 1000 } } }) },
          responses: { 200: { description: 'The request as it is now (pending while more approvals are needed)', ...json(ref('ApprovalRequest')) }, 400: error, 403: error, 404: error, 409: error, ...authed },
        },
      },
      '/api/v1/reviews/{id}/deny': {
        post: {
          operationId: 'denyReview',
          summary: 'Deny a pending request (approvers and admins); one deny denies. A comment is required.',
          parameters: [{ name: 'id', in: 'path', required: true, schema: { type: 'string', pattern: '^r-[0-9a-f]{8}$' } }],
          requestBody: { required: true, ...json({ type: 'object', additionalProperties: false, required: ['comment'], properties: { comment: { type: 'string', minLength: 1, maxLength: 1000 } } }) },
          responses: { 200: { description: 'The request, denied', ...json(ref('ApprovalRequest')) }, 400: error, 403: error, 404: error, 409: error, ...authed },
        },
      },
      '/api/v1/connections/{name}/requests': {
        post: {
          operationId: 'createRequest',
          summary: 'Ask ahead of time: a statement (`query`) or time-bound access (`duration`)',
          description: 'A `query`: the caller must be allowed on the connection now (as for a session). A `duration`: only a member of `access_by_grant` (not of `access`, else 400). The connection must have an `approval` block (else 400). `query`: once approved, exactly this statement (same fingerprint, no parameters) runs once without a hold, in a session of the caller\'s, within the approval\'s window. `duration` (e.g. `2h`, at most `grant_max`): a grant request. `reason` is required. Records `approval.requested`; approvers are notified.',
          parameters: [{ name: 'name', in: 'path', required: true, schema: { type: 'string', pattern: '^[a-z0-9][a-z0-9_-]{0,62}$' } }],
          requestBody: {
            required: true,
            ...json({ type: 'object', additionalProperties: false, required: ['reason'], properties: { query: { type: 'string' }, duration: { type: 'string', examples: ['2h'] }, reason: { type: 'string', minLength: 1, maxLength: 1000 } } }),
          },
          responses: { 201: { description: 'The pending request', ...json(ref('ApprovalRequest')) }, 400: error, 403: error, 404: error, ...authed },
        },
      },
      '/api/v1/requests/{id}': {
        get: {
          operationId: 'getRequest', summary: 'One approval request, for its requester (`hoop request` polls it), its approvers, admins and auditors',
          parameters: [{ name: 'id', in: 'path', required: true, schema: { type: 'string', pattern: '^r-[0-9a-f]{8}$' } }],
          responses: { 200: { description: 'The request', ...json(ref('ApprovalRequest')) }, 400: error, 404: error, ...authed },
        },
      },
    },
    components: {
      securitySchemes: { bearer: { type: 'http', scheme: 'bearer', description: 'An API key from the gateway config, or an OIDC access token' } },
      responses: { Error: { description: 'An error', ...json(ref('Error')) } },
      schemas: {
        Error: {
          type: 'object', required: ['error'],
          properties: { error: { type: 'object', required: ['code', 'message'], properties: { code: { type: 'string', pattern: '^HOOP_[A-Z_]+$' }, message: { type: 'string' }, hint: { type: 'string' } } } },
        },
        Health: { type: 'object', required: ['status', 'store'], properties: { status: { enum: ['ok', 'unavailable'] }, store: { enum: ['ok', 'unreachable'] }, error: ref('Error') } },
        AuthConfig: {
          oneOf: [
            { type: 'object', required: ['issuer', 'client_id', 'audience', 'scopes'], properties: { issuer: { type: 'string', format: 'uri' }, client_id: { type: 'string' }, audience: { type: 'string' }, scopes: { type: 'array', items: { type: 'string' } } } },
            { type: 'object', required: ['oidc'], properties: { oidc: { type: 'null' } } },
          ],
        },
        Me: {
          type: 'object', required: ['subject', 'groups', 'method', 'roles'],
          properties: {
            subject: { type: 'string' }, name: { type: ['string', 'null'] }, email: { type: ['string', 'null'] },
            groups: { type: 'array', items: { type: 'string' } }, method: { enum: ['api_key', 'oidc'] },
            expires_at: { type: ['string', 'null'], format: 'date-time' }, roles: { type: 'array', items: { enum: ['admin', 'auditor'] } },
          },
        },
        Connection: {
          type: 'object', required: ['name', 'type', 'database', 'access', 'allowed', 'requires_approval', 'requires_reason'],
          properties: {
            name: { type: 'string' }, type: { enum: ['postgres'] }, database: { type: 'string' },
            access: { type: 'array', items: { type: 'string' } }, allowed: { type: 'boolean' }, requires_approval: { type: 'boolean', description: 'The same as `approval.holds`' },
            requires_reason: { type: 'boolean', description: 'Sessions must carry X-Hoop-Reason (`require_reason`)' },
            grant: {
              type: 'object', required: ['required', 'request', 'active_until', 'max_duration_ms'],
              description: 'Time-bound access as it applies to the caller; `allowed` is true while a grant is open',
              properties: {
                required: { type: 'boolean', description: 'The caller may connect only inside an approved grant (`access_by_grant`): `POST /connections/{name}/requests {"duration"}`' },
                request: { type: ['string', 'null'], description: 'The grant open now' },
                active_until: { type: ['string', 'null'], format: 'date-time', description: 'When it ends; sessions under it are ended then' },
                max_duration_ms: { type: ['integer', 'null'], description: 'The longest grant a request may ask for (`approval.grant_max`)' },
              },
            },
            postgres_listen: {
              type: ['object', 'null'], required: ['host', 'port', 'tls'],
              description: 'The gateway\'s own PostgreSQL listener (`postgres_listen`), or null: database = the connection name, password = a bearer credential, user = a name of its identity (`hoop connect --print-native`)',
              properties: {
                host: { type: 'string', description: 'The listen address; for a wildcard one, the host this API was reached at' },
                port: { type: 'integer' },
                tls: { type: 'boolean', description: 'TLS is offered (the gateway\'s certificate); without it only loopback clients may log in' },
              },
            },
            agent: {
              type: ['object', 'null'], required: ['name', 'online', 'links'],
              description: 'Reached through `hoop agent`s of this name (`agent:`): whether one holds a link to this gateway now (with `workers: N`: to every worker, since a session uses the link of the worker it lands on); null: reached directly',
              properties: {
                name: { type: 'string' }, online: { type: 'boolean' }, links: { type: 'integer', minimum: 0, description: 'Live links (with `workers: N`: over all workers)' },
                workers: { type: 'object', required: ['count', 'linked'], description: 'Only with `workers: N`: the workers, and how many hold a link', properties: { count: { type: 'integer', minimum: 1 }, linked: { type: 'integer', minimum: 0 } } },
              },
            },
            masking: {
              type: 'object', required: ['enabled', 'exempt', 'columns', 'detectors'],
              description: 'The connection\'s `masking` block as it applies to the caller',
              properties: {
                enabled: { type: 'boolean', description: 'The connection masks protected columns and runs content detectors' },
                exempt: { type: 'boolean', description: 'The caller is in one of its `exempt` groups: clear values, and the waiver is recorded' },
                columns: { type: 'integer', minimum: 0, description: 'How many `masking.columns` rules' },
                detectors: { type: 'array', items: { enum: ['ssn', 'card_number', 'iban', 'email'] } },
              },
            },
            approval: {
              type: 'object', required: ['holds', 'rules'],
              description: 'The connection\'s access rules (`approval.rules`) as they apply to the caller',
              properties: {
                holds: { type: 'boolean', description: 'Some rule that applies to the caller says require_approval: statements may be held for a reviewer' },
                rules: {
                  type: 'array', description: 'The rules that apply to the caller, in order (the first matching rule decides a statement)',
                  items: { type: 'object', required: ['name', 'action'], properties: { name: { type: 'string' }, action: { enum: ['allow', 'deny', 'require_approval'] } } },
                },
              },
            },
          },
        },
        ReloadResult: {
          type: 'object', required: ['reloaded', 'sha256', 'changes', 'needs_restart'],
          properties: {
            reloaded: { const: true },
            sha256: { type: 'string', pattern: '^[0-9a-f]{64}$', description: 'The fingerprint of the config now in effect (as in `config.loaded`)' },
            changes: ref('ConfigChanges'),
            needs_restart: { type: 'array', items: { type: 'string' }, description: 'Changed keys that apply only after a restart' },
          },
        },
        ConfigChanges: {
          type: 'object', required: ['connections', 'masking', 'approval', 'api_keys', 'agents', 'roles', 'trusted_proxies', 'needs_restart'],
          description: 'What changed: names and rule summaries, never a secret',
          properties: {
            connections: ref('NameChanges'),
            masking: {
              type: 'object',
              description: 'Per connection whose masking changed: rules as `schema.table.column: type method [keep N]`, settings as `key: old -> new`',
              additionalProperties: { type: 'object', required: ['added', 'removed', 'changed'], properties: { added: { type: 'array', items: { type: 'string' } }, removed: { type: 'array', items: { type: 'string' } }, changed: { type: 'array', items: { type: 'string' } } } },
            },
            approval: {
              type: 'object',
              description: 'Per connection whose approval block changed: access rules as `name: action [for groups] when conditions`, settings as `key: old -> new` (never a webhook URL or secret)',
              additionalProperties: ref('NameChanges'),
            },
            api_keys: ref('NameChanges'),
            agents: { type: 'array', items: { type: 'string' }, description: 'Agent names whose keys changed (added, removed or replaced); never a hash' },
            roles: { type: 'array', items: { enum: ['admin', 'auditor'] } },
            trusted_proxies: { type: 'boolean' },
            needs_restart: { type: 'array', items: { type: 'string' } },
          },
        },
        NameChanges: {
          type: 'object', required: ['added', 'removed', 'changed'],
          properties: { added: { type: 'array', items: { type: 'string' } }, removed: { type: 'array', items: { type: 'string' } }, changed: { type: 'array', items: { type: 'string' } } },
        },
        SessionSummary: {
          type: 'object',
          required: ['id', 'connection', 'subject', 'email', 'groups', 'source_address', 'client_application', 'started_at', 'ended_at', 'statements', 'end_reason', 'reason'],
          properties: {
            id: { type: 'string' }, connection: { type: 'string' }, subject: { type: 'string' }, email: { type: ['string', 'null'] },
            groups: { type: 'array', items: { type: 'string' } }, source_address: { type: ['string', 'null'] }, client_application: { type: ['string', 'null'] },
            started_at: { type: 'string', format: 'date-time' }, ended_at: { type: ['string', 'null'], format: 'date-time' },
            statements: { type: 'integer' }, end_reason: { type: ['string', 'null'] },
            reason: { type: ['string', 'null'], description: 'Why the session was opened (X-Hoop-Reason)' },
          },
        },
        SessionKill: {
          type: 'object', required: ['session_id', 'requested_by', 'reason', 'requested_at', 'ended_at'],
          properties: {
            session_id: { type: 'string' }, requested_by: { type: 'string', description: 'Subject of the admin whose request stands (the first)' },
            reason: { type: ['string', 'null'] }, requested_at: { type: 'string', format: 'date-time' }, ended_at: { type: ['string', 'null'], format: 'date-time' },
          },
        },
        ApprovalRequest: {
          type: 'object',
          required: ['id', 'kind', 'connection', 'requester', 'statement', 'fingerprint', 'parameters', 'reason', 'rule', 'estimate', 'duration_ms', 'session_id', 'status', 'created_at', 'expires_at', 'approvals', 'min_approvals', 'approvers'],
          properties: {
            id: { type: 'string', pattern: '^r-[0-9a-f]{8}$' },
            kind: { enum: ['statement', 'grant'] },
            connection: { type: 'string' },
            requester: { type: 'object', required: ['subject', 'email', 'groups'], properties: { subject: { type: 'string' }, email: { type: ['string', 'null'] }, groups: { type: 'array', items: { type: 'string' } } } },
            statement: { type: ['string', 'null'] },
            fingerprint: { type: ['string', 'null'], description: 'What an approval is bound to, with `parameters`' },
            parameters: { type: 'array' },
            reason: { type: ['string', 'null'] }, rule: { type: ['string', 'null'], description: 'The rule that held the statement' },
            estimate: { type: ['number', 'null'], description: 'The planner\'s row estimate' },
            duration_ms: { type: ['integer', 'null'], description: 'A grant\'s length' },
            session_id: { type: ['string', 'null'], description: 'The session holding the statement; null for ahead-of-time requests' },
            status: { enum: ['pending', 'approved', 'denied', 'expired', 'cancelled', 'used'] },
            created_at: { type: 'string', format: 'date-time' },
            expires_at: { type: 'string', format: 'date-time', description: 'Pending: the decision deadline. Approved: the end of the window to use it (or of the grant)' },
            approvals: {
              type: 'array',
              items: { type: 'object', required: ['approver', 'decision', 'comment', 'at'], properties: { approver: { type: 'string' }, decision: { enum: ['approve', 'deny'] }, comment: { type: ['string', 'null'] }, at: { type: 'string', format: 'date-time' } } },
            },
            min_approvals: { type: 'integer', minimum: 1 },
            approvers: { type: 'array', items: { type: 'string' }, description: 'Groups whose members may decide (admins may too)' },
          },
        },
        AuditKey: {
          type: 'object',
          required: ['key_id', 'algorithm', 'pem', 'status', 'first_used', 'last_used'],
          properties: {
            key_id: { type: 'string', pattern: '^[0-9a-f]{64}$', description: 'Hex SHA-256 of the raw 32-byte public key: what `hoop audit verify --key` takes' },
            algorithm: { const: 'Ed25519' },
            pem: { type: 'string', description: 'SPKI PEM (-----BEGIN PUBLIC KEY-----)' },
            status: { enum: ['active', 'retired', 'unknown'], description: 'active: audit.signing_key; retired: in audit.previous_keys; unknown: only found in checkpoints (another replica, or no longer listed)' },
            first_used: { type: ['string', 'null'], format: 'date-time' },
            last_used: { type: ['string', 'null'], format: 'date-time' },
          },
        },
        AuditEvent: {
          type: 'object',
          required: ['seq', 'id', 'time', 'type', 'actor', 'source', 'connection', 'session_id', 'data', 'prev_hash', 'hash'],
          properties: {
            seq: { type: 'integer' }, id: { type: 'string' }, time: { type: 'string', format: 'date-time' }, type: { type: 'string' },
            actor: {
              type: ['object', 'null'],
              properties: { subject: { type: 'string' }, email: { type: ['string', 'null'] }, groups: { type: 'array', items: { type: 'string' } }, auth_method: { enum: ['api_key', 'oidc', 'system', 'agent_key'] } },
            },
            source: {
              type: ['object', 'null'],
              properties: {
                address: { type: ['string', 'null'], description: 'The client: the socket peer, or behind a trusted proxy (`trusted_proxies`) the right-most untrusted X-Forwarded-For hop' },
                application: { type: ['string', 'null'] },
                proxy: { type: 'string', description: 'The trusted proxy the request came through (the socket peer); present only then' },
              },
            },
            connection: { type: ['string', 'null'] }, session_id: { type: ['string', 'null'] },
            data: {
              type: 'object',
              description: 'Type-specific: query.start carries statement and parameters; query.end outcome, rows, bytes, duration and the result; session.end `reason`, `error` (what the client was told, e.g. which step of reaching the database failed) and, when the gateway could not reach or log in to the database, `detail` (the operator\'s account: address, service account, the server\'s words; admins and auditors only)',
            },
            prev_hash: { type: 'string', pattern: '^[0-9a-f]{64}$' }, hash: { type: 'string', pattern: '^[0-9a-f]{64}$' },
            redacted: {
              type: 'array', items: { type: 'string' },
              description: 'Present only when fields were withheld from this caller, e.g. `["data.detail"]`; `hash` covers the event as recorded, so a redacted event does not verify on its own',
            },
          },
        },
      },
    },
  };
}
