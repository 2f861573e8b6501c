/**
 * The gateway's one YAML file (ARCHITECTURE.md, "The gateway"; every key is documented in
 * docs/configuration.md). Loading is strict: unknown keys and bad values are refused, all of them
 * at once, each on one line as `file: key.path: reason`.
 *
 * Secrets are referenced, not written: any string may contain `${env:NAME}` or `${file:PATH}`
 * (`$${` is a literal `${`). References are resolved before validation; errors name the key path
 * and the reference, never the resolved value, and no message ever echoes a configured value.
 */
import { engineTypes, type UpstreamConfig } from '../protocols/engine.js';
import '../protocols/postgres/engine.js'; // registers type: postgres
import { createHash, createPublicKey, type KeyObject } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { basename, dirname, isAbsolute, resolve } from 'node:path';
import { LineCounter, parseDocument } from 'yaml';
import { z } from 'zod';
import { ConfigError, errorMessage } from '../errors.js';
import { isSafeIssuerUrl } from '../identity/oidc-verifier.js';
import { SSL_MODES } from '../protocols/postgres/sslmode.js';
import { DETECTORS, SEMANTIC_TYPES, type MaskingConfig, type MaskMethod } from '../policy/masking/types.js';
import { STATEMENT_KINDS, type ApprovalConfig, type RiskAction, type RuleCondition } from '../policy/risk/types.js';
import { parseCidr, type Cidr } from './proxies.js';
import { usableCores } from './cores.js';
import { parseDuration, parseSize } from '../units.js';
import { sinkIdOf, type SinkConfig } from '../audit/sinks/sink.js';

const SLUG = /^[a-z0-9][a-z0-9_-]{0,62}$/;
/** A database role name `upstream.roles` may map to: a PostgreSQL identifier that needs no quotes. */
export const DATABASE_ROLE_NAME = /^[a-z_][a-z0-9_$]{0,62}$/;
const ROLE_TEMPLATE_GROUP = '{group}';
/** Sessions one identity may have open on a connection when `max_sessions_per_user` is not given. */
export const DEFAULT_MAX_SESSIONS_PER_USER = 10;
const GROUP = /^[^\s,]{1,256}$/;
const MAX_SECRET_FILE_BYTES = 1024 * 1024;
const MASK_METHODS = ['redact', 'partial', 'hash', 'null'] as const satisfies readonly MaskMethod[];
const PREDICATE_ACTIONS = ['allow', 'deny', 'require_approval'] as const;
const RISK_ACTIONS = ['allow', 'deny', 'require_approval'] as const satisfies readonly RiskAction[];
const NOTIFY_FORMATS = ['json', 'slack'] as const;
/** A webhook's HMAC key shorter than this is refused. */
export const MIN_WEBHOOK_SECRET_LENGTH = 16;
/** A held statement keeps its session and its upstream connection open while it waits. */
const MAX_APPROVAL_TIMEOUT_MS = 24 * 3_600_000;
const SINK_KINDS = ['syslog', 'http', 'file'] as const;
const SINK_STARTS = ['beginning', 'now'] as const;
const HTTP_SINK_FORMATS = ['hec', 'json'] as const;
/** Headers an HTTP sink sets itself (beside X-Hoop-*). */
const RESERVED_SINK_HEADERS = ['content-type', 'content-length', 'transfer-encoding', 'host', 'connection', 'user-agent'];
/** A masking hash key shorter than this is refused: the keys derived from it (AES-256, token-mac.ts) should have 256 bits to come from. */
export const MIN_HASH_KEY_LENGTH = 32;

// ---------------------------------------------------------------------------------------------
// Schema. Built per file because relative paths resolve against the config file's directory.
// ---------------------------------------------------------------------------------------------

function schemaFor(baseDir: string) {
  const str = z.string().min(1, 'must not be empty');
  const slug = z.string().regex(SLUG, 'must be a lowercase slug: a-z, 0-9, "-" and "_", starting with a letter or digit, at most 63 characters');
  const groups = z.array(z.string().regex(GROUP, 'must be a group name without spaces or commas'));

  const port = (min: number) =>
    z.preprocess(
      (v) => (typeof v === 'string' && /^\d+$/.test(v) ? Number(v) : v),
      z.number({ error: `expected a number between ${min} and 65535` }).int(`expected a number between ${min} and 65535`)
        .min(min, `expected a number between ${min} and 65535`).max(65535, `expected a number between ${min} and 65535`),
    );

  const listen = z.string().transform((s, ctx) => {
    const m = /^\[([^\]]+)\]:(\d{1,5})$/.exec(s) ?? /^([^:[\]\s]+):(\d{1,5})$/.exec(s);
    const p = m ? Number(m[2]) : NaN;
    if (!m || p > 65535) {
      ctx.addIssue({ code: 'custom', message: 'expected host:port, e.g. 127.0.0.1:8009 or [::1]:8009 (port 0 picks a free port)' });
      return z.NEVER;
    }
    return { host: m[1]!, port: p };
  });

  const duration = z.string().transform((s, ctx) => {
    const ms = parseDuration(s);
    if (ms === null || ms <= 0) {
      ctx.addIssue({ code: 'custom', message: 'expected a duration such as 8h, 30m, 1h30m or 90s' });
      return z.NEVER;
    }
    return ms;
  });

  // At least a day: a typo such as `400m` for 400 days must not delete the recent log.
  const retentionPeriod = duration.refine((ms) => ms >= 86_400_000, 'must be at least 1d, such as 400d or 7y');

  const size = z.union([z.string(), z.number()]).transform((s, ctx) => {
    const bytes = parseSize(s);
    if (bytes === null) {
      ctx.addIssue({ code: 'custom', message: 'expected a size such as 1MiB, 512KiB, 10MB or a number of bytes' });
      return z.NEVER;
    }
    return bytes;
  });

  /** A PEM given inline (e.g. through `${file:...}`) or a path relative to the config file. */
  const pem = (kind: 'CERTIFICATE' | 'PRIVATE KEY') =>
    z.string().min(1, 'must not be empty').transform((v, ctx) => {
      let text = v;
      if (!v.includes('-----BEGIN')) {
        const path = resolveFrom(baseDir, v);
        try {
          text = readSmallFile(path);
        } catch (err) {
          ctx.addIssue({ code: 'custom', message: `cannot read ${basename(path)} (${fsReason(err)})` });
          return z.NEVER;
        }
      }
      const ok = kind === 'CERTIFICATE' ? /-----BEGIN CERTIFICATE-----/.test(text) : /-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(text);
      if (!ok) {
        ctx.addIssue({ code: 'custom', message: `expected a PEM ${kind.toLowerCase()}` });
        return z.NEVER;
      }
      return text;
    });

  // A retired audit signing key: its public half only (SPKI PEM), so checkpoints it signed still verify.
  const publicKeyFile = z.string().min(1, 'must not be empty').transform((v, ctx) => {
    const path = resolveFrom(baseDir, v);
    let text: string;
    try {
      text = readSmallFile(path);
    } catch (err) {
      ctx.addIssue({ code: 'custom', message: `cannot read ${basename(path)} (${fsReason(err)})` });
      return z.NEVER;
    }
    if (/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(text)) {
      ctx.addIssue({ code: 'custom', message: `${basename(path)} holds a private key; previous_keys takes public keys only (openssl pkey -in OLD.key -pubout -out OLD.pub.pem), and the private key should be destroyed` });
      return z.NEVER;
    }
    if (!text.includes('-----BEGIN PUBLIC KEY-----')) {
      ctx.addIssue({ code: 'custom', message: `${basename(path)} is not a public key in PEM (-----BEGIN PUBLIC KEY-----)` });
      return z.NEVER;
    }
    let key: KeyObject;
    try {
      key = createPublicKey(text);
    } catch {
      ctx.addIssue({ code: 'custom', message: `${basename(path)} cannot be read as a public key` });
      return z.NEVER;
    }
    if (key.asymmetricKeyType !== 'ed25519') {
      ctx.addIssue({ code: 'custom', message: `${basename(path)} holds a ${key.asymmetricKeyType ?? 'non-asymmetric'} key, not an Ed25519 audit signing key` });
      return z.NEVER;
    }
    const raw = (key.export({ type: 'spki', format: 'der' }) as Buffer).subarray(12);
    return { path, key_id: createHash('sha256').update(raw).digest('hex'), pem: key.export({ type: 'spki', format: 'pem' }) as string };
  });

  const store = z.string().transform((s, ctx) => {
    if (s === 'sqlite::memory:') return s;
    if (s.startsWith('sqlite:')) {
      const path = s.slice('sqlite:'.length);
      if (path === '') {
        ctx.addIssue({ code: 'custom', message: 'expected sqlite:PATH with a file path' });
        return z.NEVER;
      }
      return `sqlite:${resolveFrom(baseDir, path)}`;
    }
    if (/^postgres(ql)?:\/\//.test(s)) {
      try {
        new URL(s);
      } catch {
        ctx.addIssue({ code: 'custom', message: 'is not a valid postgres:// URL (percent-encode special characters in the password)' });
        return z.NEVER;
      }
      return s;
    }
    ctx.addIssue({ code: 'custom', message: 'expected sqlite:PATH, sqlite::memory: or postgres://user:password@host:5432/database' });
    return z.NEVER;
  });

  const oidc = z.strictObject({
    issuer: z.string().refine(isSafeIssuerUrl, 'expected an https:// URL (http:// only on loopback: localhost, 127.0.0.0/8, ::1)'),
    client_id: str,
    audience: str,
    groups_claim: z.string().regex(/^[A-Za-z0-9_:/-]+(\.[A-Za-z0-9_:/-]+)*$/, 'expected a claim name or a dotted path such as realm_access.roles').default('groups'),
    scopes: z.array(z.string().regex(/^[\x21\x23-\x5b\x5d-\x7e]+$/, 'must be a scope token without spaces'))
      .default(['openid', 'profile', 'email', 'offline_access']),
  });

  const apiKey = z.strictObject({
    name: slug,
    sha256: z.string().regex(/^[0-9a-fA-F]{64}$/, 'expected the 64 hex digits of the key\'s SHA-256 (printf %s "$KEY" | sha256sum)')
      .transform((h) => h.toLowerCase()),
    groups: groups.default([]),
  });

  /**
   * `upstream.roles`: a mapping group -> role (the first entry whose group the caller has), or a
   * template such as `hoop_{group}`. Read by hand rather than as a union, so a mistake gets a
   * message about what was written instead of about both shapes at once.
   */
  const roleMapping = z.unknown().transform((v, ctx): RoleMapping => {
    const problem = (message: string, path: string[] = []) => {
      ctx.addIssue({ code: 'custom', path, message });
      return z.NEVER;
    };
    if (typeof v === 'string') {
      if (!v.includes(ROLE_TEMPLATE_GROUP) || !DATABASE_ROLE_NAME.test(v.replaceAll(ROLE_TEMPLATE_GROUP, 'g'))) {
        return problem(`expected a template such as hoop_{group}: a database role name containing ${ROLE_TEMPLATE_GROUP}`);
      }
      return { template: v };
    }
    if (v === null || typeof v !== 'object' || Array.isArray(v)) {
      return problem('expected a mapping of group to database role (analysts: hoop_analyst) or a template such as hoop_{group}');
    }
    const entries = Object.entries(v as Record<string, unknown>);
    if (entries.length === 0) return problem('map at least one group to a database role, or leave out upstream.roles');
    let ok = true;
    for (const [group, role] of entries) {
      const fail = (message: string) => {
        ok = false;
        ctx.addIssue({ code: 'custom', path: [group], message });
      };
      if (!GROUP.test(group)) fail('must be a group name without spaces or commas');
      // Whole-number keys would lose their place: JavaScript objects list them first.
      else if (/^(0|[1-9]\d*)$/.test(group)) fail('a group name that is a whole number cannot keep its place in the map; use the template form');
      if (typeof role !== 'string' || !DATABASE_ROLE_NAME.test(role)) fail('expected a database role name: lowercase letters, digits, "_" and "$", starting with a letter or "_", at most 63 characters');
    }
    return ok ? { map: Object.fromEntries(entries) as Record<string, string> } : z.NEVER;
  });

  const upstream = z.strictObject({
    host: z.string().regex(/^[^\s/]+$/, 'expected a host name or address'),
    port: port(1).default(5432),
    database: str,
    user: str,
    password: z.string().optional(),
    sslmode: z.enum(SSL_MODES, { error: `expected one of ${SSL_MODES.join(', ')}` }).default('verify-full'),
    ca: pem('CERTIFICATE').optional(),
    connect_timeout: duration.default(10_000),
    roles: roleMapping.optional(),
  }).superRefine((u, ctx) => {
    const mapped = u.roles && 'map' in u.roles ? Object.entries(u.roles.map) : [];
    for (const [group, role] of mapped) {
      if (role === u.user) ctx.addIssue({ code: 'custom', path: ['roles', group], message: `must not be the service role itself (upstream.user): the mapped roles are what the service role switches to` });
    }
  });

  const oneOf = (values: readonly string[]) => `expected one of: ${values.join(', ')}`;
  const masking = z.strictObject({
    columns: z.array(z.strictObject({
      column: z.string().refine((p) => isNamePattern(p, 3), 'expected schema.table.column: three non-empty parts separated by dots, each a name or a glob (* any run of characters, ? one character)'),
      type: z.enum(SEMANTIC_TYPES, { error: oneOf(SEMANTIC_TYPES) }),
      method: z.enum(MASK_METHODS, {
        // YAML reads a bare `null` as no value at all.
        error: (iss) => (iss.input === null ? `${oneOf(MASK_METHODS)} (quote "null": unquoted, YAML reads it as no value)` : oneOf(MASK_METHODS)),
      }),
      keep: z.number({ error: 'expected a whole number from 0 to 64' }).int('expected a whole number from 0 to 64').min(0, 'expected a whole number from 0 to 64').max(64, 'expected a whole number from 0 to 64').optional(),
    }).superRefine((r, ctx) => {
      if (r.keep !== undefined && r.method !== 'partial') ctx.addIssue({ code: 'custom', path: ['keep'], message: 'only with method: partial (how many trailing characters stay readable)' });
    })).default([]),
    detectors: z.array(z.enum(DETECTORS, { error: oneOf(DETECTORS) })).default([...DETECTORS]),
    exempt: groups.default([]),
    predicates: z.enum(PREDICATE_ACTIONS, { error: oneOf(PREDICATE_ACTIONS) }).default('deny'),
    trusted_functions: z.array(z.string().refine((p) => isNamePattern(p, 2), 'expected schema.function: two non-empty parts separated by a dot, each a name or a glob (* any run of characters, ? one character)')).default([]),
    hash_key: z.string().min(MIN_HASH_KEY_LENGTH, `must be at least ${MIN_HASH_KEY_LENGTH} characters (e.g. \${env:HOOP_MASKING_KEY} holding the output of openssl rand -base64 32)`).optional(),
  });

  const wholeNumber = (min: number, max: number) => {
    const message = `expected a whole number from ${min} to ${max}`;
    return z.number({ error: message }).int(message).min(min, message).max(max, message);
  };
  const flag = z.boolean({ error: 'expected true or false' });
  const estimatedRows = z.string({ error: 'expected a comparison such as ">10000" or "<= 500", quoted (unquoted, YAML reads a leading > as a folded block)' })
    .transform((s, ctx): NonNullable<RuleCondition['estimated_rows']> => {
      const m = /^\s*(>=|<=|>|<)\s*(\d{1,15})\s*$/.exec(s);
      if (!m) {
        ctx.addIssue({ code: 'custom', message: 'expected a comparison such as ">10000", ">= 5000", "<100" or "<= 500"' });
        return z.NEVER;
      }
      return { op: m[1] as '>' | '>=' | '<' | '<=', value: Number(m[2]) };
    });
  const riskRule = z.strictObject({
    name: slug,
    groups: groups.min(1, 'must name at least one group (leave groups out for a rule that applies to everyone)').optional(),
    when: z.strictObject({
      kind: z.array(z.enum(STATEMENT_KINDS, { error: oneOf(STATEMENT_KINDS) })).min(1, 'must name at least one kind (leave kind out to match every kind)').optional(),
      tables: z.array(z.string().refine((p) => isNamePattern(p, 1) || isNamePattern(p, 2), 'expected table or schema.table, each part a name or a glob (* any run of characters, ? one character)'))
        .min(1, 'must name at least one table (leave tables out to match any)').optional(),
      where: flag.optional(),
      limit: flag.optional(),
      joins: flag.optional(),
      aggregates: flag.optional(),
      protected_columns: flag.optional(),
      estimated_rows: estimatedRows.optional(),
    }, { error: (iss) => (iss.input === undefined ? undefined : 'expected a mapping of conditions (when: {} matches every statement)') }),
    action: z.enum(RISK_ACTIONS, { error: oneOf(RISK_ACTIONS) }),
  });
  const notifyTarget = z.strictObject({
    webhook: z.string().refine(isSafeIssuerUrl, 'expected an https:// URL (http:// only on loopback: localhost, 127.0.0.0/8, ::1)'),
    format: z.enum(NOTIFY_FORMATS, { error: oneOf(NOTIFY_FORMATS) }).default('json'),
    secret: z.string().min(MIN_WEBHOOK_SECRET_LENGTH, `must be at least ${MIN_WEBHOOK_SECRET_LENGTH} characters (e.g. \${env:HOOP_WEBHOOK_SECRET} holding the output of openssl rand -hex 32)`).optional(),
  });
  const approval = z.strictObject({
    approvers: groups.default([]),
    min_approvals: wholeNumber(1, 100).default(1),
    timeout: duration.refine((ms) => ms <= MAX_APPROVAL_TIMEOUT_MS, 'must be at most 24h (a held statement keeps its session open while it waits)').default(600_000),
    grant_max: duration.default(8 * 3_600_000),
    notify: z.array(notifyTarget).default([]),
    rules: z.array(riskRule).default([]),
    row_cap: wholeNumber(1, Number.MAX_SAFE_INTEGER).optional(),
  }).superRefine((a, ctx) => {
    const holding = a.rules.find((r) => r.action === 'require_approval');
    if (holding && a.approvers.length === 0) {
      ctx.addIssue({ code: 'custom', path: ['approvers'], message: `required when a rule says require_approval (rule ${holding.name}): the groups whose members may approve` });
    }
  });

  const connection = z.strictObject({
    name: slug,
    type: z.string().refine((t) => engineTypes().includes(t), { error: () => `expected one of: ${engineTypes().join(', ')}` }),
    upstream,
    access: groups,
    max_session: duration.optional(),
    require_reason: z.boolean({ error: 'expected true or false' }).default(false),
    max_sessions_per_user: z.number({ error: 'expected a whole number from 1 to 10000' }).int('expected a whole number from 1 to 10000').min(1, 'expected a whole number from 1 to 10000').max(10_000, 'expected a whole number from 1 to 10000').optional(),
    masking: masking.optional(),
    approval: approval.optional(),
    access_by_grant: groups.default([]),
    agent: slug.optional(),
  }).superRefine((c, ctx) => {
    if (c.access_by_grant.length > 0 && (c.approval?.approvers.length ?? 0) === 0) {
      ctx.addIssue({ code: 'custom', path: ['access_by_grant'], message: 'needs approval.approvers: someone must be able to approve a grant' });
    }
    for (const g of c.access_by_grant.filter((g) => c.access.includes(g))) {
      ctx.addIssue({ code: 'custom', path: ['access_by_grant'], message: `group ${g} is also in access, whose members may always connect; list it in one of them` });
    }
  }).transform((c) => ({
    name: c.name,
    type: c.type,
    upstream: {
      host: c.upstream.host,
      port: c.upstream.port,
      database: c.upstream.database,
      user: c.upstream.user,
      password: c.upstream.password,
      sslmode: c.upstream.sslmode,
      ca: c.upstream.ca,
      connectTimeoutMs: c.upstream.connect_timeout,
    },
    access: c.access,
    maxSessionMs: c.max_session ?? null,
    maxSessionsPerUser: c.max_sessions_per_user ?? DEFAULT_MAX_SESSIONS_PER_USER,
    /** `upstream.roles`: which database role a caller's session runs as (db-roles.ts); null: the service role. */
    roles: c.upstream.roles ?? null,
    requireReason: c.require_reason,
    masking: c.masking ? maskingConfigOf(c.masking) : null,
    /**
     * The key of the `hash` method: the connection's `masking.hash_key`, as bytes. null here when
     * none is given; the running gateway fills in its own key file (`masking.key`), so a
     * connection read from `ConfigHolder` (live-config.ts) always has one.
     */
    maskingKey: (c.masking?.hash_key !== undefined ? Buffer.from(c.masking.hash_key, 'utf8') : null) as Buffer | null,
    approval: c.approval ? approvalConfigOf(c.approval) : null,
    /** Groups that may connect only inside an approved, time-bound grant. */
    accessByGrant: c.access_by_grant,
    /** `agent`: the upstream is reached through the agents of this name (gateway/agents.ts); null: directly. */
    agent: c.agent ?? null,
  }));

  // audit.sinks (docs/audit-sinks.md): each entry is one of three shapes, told apart by its
  // syslog, http or file key; read by hand so a mistake is reported against the shape meant.
  const sinkCommon = {
    name: slug.optional(),
    include_payload: flag.default(false),
    start: z.enum(SINK_STARTS, { error: oneOf(SINK_STARTS) }).default('beginning'),
  };
  const syslogSink = z.strictObject({
    syslog: z.string().transform((v, ctx) => {
      const target = parseTcpTarget(v);
      if (!target) {
        ctx.addIssue({ code: 'custom', message: 'expected tcp://host:port, e.g. tcp://siem.internal:6514 (with tls: true for RFC 5425)' });
        return z.NEVER;
      }
      return target;
    }),
    tls: flag.default(false),
    ca: pem('CERTIFICATE').optional(),
    app_name: z.string().regex(/^[\x21-\x7e]{1,48}$/, 'expected 1 to 48 printable ASCII characters without spaces (RFC 5424 APP-NAME)').default('hoop'),
    ...sinkCommon,
  }).superRefine((v, ctx) => {
    if (v.ca !== undefined && !v.tls) ctx.addIssue({ code: 'custom', path: ['ca'], message: 'only with tls: true (the CA that signed the receiver\'s certificate)' });
  });
  const headerName = z.string().regex(/^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,128}$/, 'expected an HTTP header name');
  const httpSink = z.strictObject({
    http: z.string()
      .refine(isSafeIssuerUrl, 'expected an https:// URL (http:// only on loopback: localhost, 127.0.0.0/8, ::1)')
      .refine((u) => { try { const p = new URL(u); return !p.username && !p.password; } catch { return true; } }, 'must not carry credentials; use token (or headers)'),
    token: z.string().min(1, 'must not be empty').regex(/^[^\r\n\0]+$/, 'must be one line').optional(),
    format: z.enum(HTTP_SINK_FORMATS, { error: oneOf(HTTP_SINK_FORMATS) }).default('hec'),
    headers: z.record(headerName, z.string().regex(/^[^\r\n\0]*$/, 'must be one line')).default({}),
    ...sinkCommon,
  }).superRefine((v, ctx) => {
    if (v.format === 'hec' && v.token === undefined) ctx.addIssue({ code: 'custom', path: ['token'], message: 'required with format: hec (the HEC token, e.g. "${env:HOOP_HEC_TOKEN}")' });
    for (const h of Object.keys(v.headers)) {
      const lower = h.toLowerCase();
      if (RESERVED_SINK_HEADERS.includes(lower) || lower.startsWith('x-hoop-')) ctx.addIssue({ code: 'custom', path: ['headers', h], message: 'is set by hoop' });
      else if (lower === 'authorization' && v.token !== undefined) ctx.addIssue({ code: 'custom', path: ['headers', h], message: 'give either token or an Authorization header, not both' });
    }
  });
  const fileSink = z.strictObject({
    file: str.transform((p) => resolveFrom(baseDir, p)),
    max_bytes: size.refine((n) => n >= 4096, 'must be at least 4KiB').default(100 * 1024 * 1024),
    keep: wholeNumber(1, 1000).default(10),
    ...sinkCommon,
  });
  const sink = z.unknown().transform((v, ctx): SinkConfig => {
    const fail = (message: string) => {
      ctx.addIssue({ code: 'custom', message });
      return z.NEVER;
    };
    if (v === null || typeof v !== 'object' || Array.isArray(v)) return fail('expected a mapping: {syslog: tcp://host:port}, {http: https://…} or {file: PATH}');
    const kinds = SINK_KINDS.filter((k) => k in v);
    if (kinds.length === 0) return fail('expected one of the keys syslog (tcp://host:port), http (https://…) or file (a path)');
    if (kinds.length > 1) return fail(`one sink is one of syslog, http or file, not ${kinds.join(' and ')}`);
    const forward = (issues: z.core.$ZodIssue[]) => {
      for (const issue of issues) ctx.addIssue({ ...issue } as Parameters<typeof ctx.addIssue>[0]);
      return z.NEVER;
    };
    const common = (c: { name?: string | undefined; include_payload: boolean; start: 'beginning' | 'now' }) => ({ name: c.name ?? null, includePayload: c.include_payload, start: c.start });
    if (kinds[0] === 'syslog') {
      const r = syslogSink.safeParse(v, { reportInput: true });
      if (!r.success) return forward(r.error.issues);
      const { host, port } = r.data.syslog;
      return { kind: 'syslog', id: r.data.name ?? sinkIdOf({ kind: 'syslog', host, port }), host, port, tls: r.data.tls, ca: r.data.ca ?? null, appName: r.data.app_name, ...common(r.data) };
    }
    if (kinds[0] === 'http') {
      const r = httpSink.safeParse(v, { reportInput: true });
      if (!r.success) return forward(r.error.issues);
      const d = r.data;
      return { kind: 'http', id: d.name ?? sinkIdOf({ kind: 'http', url: d.http }), url: d.http, token: d.token ?? null, format: d.format, headers: d.headers, ...common(d) };
    }
    const r = fileSink.safeParse(v, { reportInput: true });
    if (!r.success) return forward(r.error.issues);
    return { kind: 'file', id: r.data.name ?? sinkIdOf({ kind: 'file', path: r.data.file }), path: r.data.file, maxBytes: r.data.max_bytes, keep: r.data.keep, ...common(r.data) };
  });

  const cidr = z.string().transform((s, ctx): Cidr => {
    const parsed = parseCidr(s);
    if (!parsed) {
      ctx.addIssue({ code: 'custom', message: 'expected an IPv4 or IPv6 address or CIDR block, e.g. 10.0.0.0/8 or fd00::/8' });
      return z.NEVER;
    }
    return parsed;
  });

  const agent = z.strictObject({
    name: slug,
    sha256: z.string().regex(/^[0-9a-fA-F]{64}$/, 'expected the 64 hex digits of the agent key\'s SHA-256 (printf %s "$KEY" | sha256sum)')
      .transform((h) => h.toLowerCase()),
  });

  return z.strictObject({
    listen: listen.default({ host: '127.0.0.1', port: 8009 }),
    tls: z.strictObject({ cert: pem('CERTIFICATE'), key: pem('PRIVATE KEY') }).optional(),
    store: store.default(`sqlite:${resolve(baseDir, 'hoop-data/hoop.db')}`),
    identity: z.strictObject({
      oidc: oidc.optional(),
      api_keys: z.array(apiKey).default([]),
    }),
    roles: z.strictObject({ admin: groups.default([]), auditor: groups.default([]) }).default({ admin: [], auditor: [] }),
    connections: z.array(connection).default([]),
    agents: z.array(agent).default([]),
    trusted_proxies: z.array(cidr).max(1000, 'at most 1000 entries').default([]),
    // The one-hop path (native-listener.ts): a PostgreSQL listener on the gateway itself.
    postgres_listen: listen.optional(),
    // Gateway processes on this machine sharing the listeners (cluster.ts). 'auto': one per core
    // with a postgres:// store; a SQLite file has one writer process, so there it means 1.
    workers: z.custom<'auto' | number>((n) => n === 'auto' || (Number.isInteger(n) && (n as number) >= 1 && (n as number) <= 256), WORKERS_EXPECTED).default('auto'),
    audit: z.strictObject({
      payload_limit: size.default(1024 * 1024),
      signing_key: z.string().min(1, 'must not be empty').transform((p) => resolveFrom(baseDir, p)).default(resolve(baseDir, 'hoop-data/signing.key')),
      checkpoint_interval: duration.refine((ms) => ms >= 1_000, 'must be at least 1s').default(60_000),
      sinks: z.array(sink).max(32, 'at most 32 sinks').default([]),
      previous_keys: z.array(publicKeyFile).max(100, 'at most 100 keys').default([]),
      // How long the log keeps statements' returned data and events (src/audit/retention.ts); absent: forever.
      retention: z.strictObject({ payloads: retentionPeriod.optional(), events: retentionPeriod.optional() }).optional(),
    }).default({ payload_limit: 1024 * 1024, signing_key: resolve(baseDir, 'hoop-data/signing.key'), checkpoint_interval: 60_000, sinks: [], previous_keys: [] }),
  }).superRefine((c, ctx) => {
    if (!c.identity.oidc && c.identity.api_keys.length === 0) {
      ctx.addIssue({ code: 'custom', path: ['identity'], message: 'configure identity.oidc or at least one identity.api_keys entry; otherwise nobody can sign in' });
    }
    // Also runs when other keys failed: then parts may be unparsed input, so look before trusting.
    const agentNames = new Set(Array.isArray(c.agents) ? c.agents.map((a) => a?.name) : []);
    (Array.isArray(c.connections) ? c.connections : []).forEach((conn, i) => {
      if (typeof conn?.agent === 'string' && !agentNames.has(conn.agent)) {
        const known = [...agentNames];
        ctx.addIssue({ code: 'custom', path: ['connections', i, 'agent'], message: `no agent named ${conn.agent} in agents${known.length > 0 ? ` (configured: ${known.join(', ')})` : ' (the list is empty)'}: add {name: ${conn.agent}, sha256: <hex of its key's SHA-256>} to agents` });
      }
    });
    // A key is one kind of credential only: an agent key authenticates on the agent link and nowhere else.
    const apiHashes = new Set(Array.isArray(c.identity?.api_keys) ? c.identity.api_keys.map((k) => k?.sha256) : []);
    (Array.isArray(c.agents) ? c.agents : []).forEach((a, i) => {
      if (typeof a?.sha256 === 'string' && apiHashes.has(a.sha256)) ctx.addIssue({ code: 'custom', path: ['agents', i, 'sha256'], message: 'is also the hash of an identity.api_keys entry; an agent key must be a key of its own' });
    });
    if (typeof c.workers === 'number' && c.workers > 1 && typeof c.store === 'string' && c.store.startsWith('sqlite:')) {
      ctx.addIssue({ code: 'custom', path: ['workers'], message: `a SQLite store has one writer process, so it serves one worker; workers: ${c.workers} needs a postgres:// store (or workers: 1)` });
    }
    if (c.audit.payload_limit > 1024 ** 3) {
      ctx.addIssue({ code: 'custom', path: ['audit', 'payload_limit'], message: 'must be at most 1GiB' });
    }
    // Each sink's cursor is kept under its id: two sinks with one id would share (and fight over) it.
    const seen = new Map<string, number>();
    c.audit.sinks.forEach((s, i) => {
      const first = seen.get(s.id);
      if (first === undefined) return void seen.set(s.id, i);
      ctx.addIssue({ code: 'custom', path: ['audit', 'sinks', i], message: `the same sink id as audit.sinks[${first}] (${s.id}); give one of them a name` });
    });
  });
}

/** The validated block in the shape the masking policy takes (src/policy/masking/types.ts). */
function maskingConfigOf(m: {
  columns: { column: string; type: MaskingConfig['columns'][number]['type']; method: MaskMethod; keep?: number | undefined }[];
  detectors: MaskingConfig['detectors'];
  exempt: string[];
  predicates: MaskingConfig['predicates'];
  trusted_functions: string[];
}): MaskingConfig {
  return {
    columns: m.columns.map((r) => ({ column: r.column, type: r.type, method: r.method, ...(r.keep !== undefined ? { keep: r.keep } : {}) })),
    detectors: [...new Set(m.detectors)],
    exempt: m.exempt,
    predicates: m.predicates,
    trustedFunctions: m.trusted_functions,
  };
}

/** The validated block in the shape the risk policy takes (src/policy/risk/types.ts). */
function approvalConfigOf(a: {
  approvers: string[];
  min_approvals: number;
  timeout: number;
  grant_max: number;
  notify: { webhook: string; format: 'json' | 'slack'; secret?: string | undefined }[];
  rules: { name: string; groups?: string[] | undefined; when: { [K in keyof RuleCondition]?: RuleCondition[K] | undefined }; action: RiskAction }[];
  row_cap?: number | undefined;
}): ApprovalConfig {
  return {
    approvers: a.approvers,
    minApprovals: a.min_approvals,
    timeoutMs: a.timeout,
    grantMaxMs: a.grant_max,
    notify: a.notify.map((n) => ({ webhook: n.webhook, format: n.format, secret: n.secret ?? null })),
    rules: a.rules.map((r) => ({
      name: r.name,
      groups: r.groups ?? null,
      // Conditions left out are absent, not undefined: a rule's `when` is compared and printed.
      when: Object.fromEntries(Object.entries(r.when).filter(([, v]) => v !== undefined)) as RuleCondition,
      action: r.action,
    })),
    rowCap: a.row_cap ?? null,
  };
}

/** `tcp://host:port` (IPv6 in brackets) with nothing else: no user info, path, query or fragment. */
function parseTcpTarget(v: string): { host: string; port: number } | null {
  const m = /^tcp:\/\/(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(v);
  if (!m) return null;
  const port = Number(m[2]);
  if (port < 1 || port > 65535) return null;
  return { host: m[1]!.replace(/^\[(.*)\]$/, '$1'), port };
}

/**
 * `parts` dot-separated parts, none empty. Globs use only `*` and `?`; the other characters some
 * glob dialects treat as special (`[`, `]`, `{`, `}`, `\`) and quotes are refused, so no pattern
 * means something other than what it says. Control characters and spaces are refused too.
 */
function isNamePattern(pattern: string, parts: number): boolean {
  const split = pattern.split('.');
  return split.length === parts && split.every((p) => p !== '' && /^[^\s\x00-\x1f\x7f[\]{}\\"'.]+$/.test(p));
}

type Schema = ReturnType<typeof schemaFor>;

const WORKERS_EXPECTED = "expected 'auto' or a whole number from 1 to 256";

/** How many gateway processes `workers` asks for where `cores` cores are usable (cluster.ts, cores.ts). */
export function workerCount(config: Pick<GatewayConfig, 'workers' | 'store'>, cores = usableCores()): number {
  if (config.workers !== 'auto') return config.workers;
  return /^postgres(ql)?:\/\//.test(config.store) ? Math.max(1, cores) : 1;
}

export type GatewayConfig = z.output<Schema> & {
  /** The file the config came from (for messages). */
  file: string;
  /** Its absolute path when it was read from a file (loadConfig): what a reload reads again. */
  path: string | null;
  /** SHA-256 of the configuration with secrets left out, recorded in `config.loaded`. */
  fingerprint: string;
};
export type ConnectionConfig = GatewayConfig['connections'][number];
/** `upstream.roles` as validated: group -> role in the file's order, or a template over the group name. */
export type RoleMapping = { map: Record<string, string> } | { template: string };

/**
 * What the engine needs of a connection's upstream. A caller's session gives `role`, the database
 * role mapped from its groups (db-roles.ts); the gateway's own catalog reads give none and stay
 * the service role.
 */
export function upstreamConfigOf(connection: ConnectionConfig, role?: string | null): UpstreamConfig {
  const u = connection.upstream;
  return {
    host: u.host, port: u.port, database: u.database, user: u.user,
    ...(role ? { role } : {}),
    ...(u.password !== undefined ? { password: u.password } : {}),
    sslmode: u.sslmode,
    ...(u.ca !== undefined ? { ca: u.ca } : {}),
    connectTimeoutMs: u.connectTimeoutMs,
  };
}
export type ApiKeyConfig = GatewayConfig['identity']['api_keys'][number];
export type AgentKeyConfig = GatewayConfig['agents'][number];
export type OidcConfig = NonNullable<GatewayConfig['identity']['oidc']>;

// ---------------------------------------------------------------------------------------------

/** Reads, resolves and validates a config file; throws ConfigError listing every problem. */
export function loadConfig(path: string): GatewayConfig {
  const abs = resolve(path);
  const file = basename(abs);
  let text: string;
  try {
    text = readFileSync(abs, 'utf8');
  } catch (err) {
    throw new ConfigError(`${path}: cannot read the config file (${fsReason(err)})`, { hint: 'pass --config with the path of your hoop.yaml' });
  }
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { prettyErrors: false, uniqueKeys: true, lineCounter });
  if (doc.errors.length > 0) {
    const lines = doc.errors.map((e) => {
      const pos = lineCounter.linePos(e.pos[0]);
      return `${file}:${pos.line}:${pos.col}: ${e.message.split('\n')[0]}`;
    });
    throw new ConfigError(lines.join('\n'), { hint: 'fix the YAML syntax' });
  }
  return { ...parseConfig(doc.toJS({ maxAliasCount: 100 }) ?? {}, file, dirname(abs)), path: abs };
}

/**
 * Validates an already parsed document. `file` names it in messages; relative paths (sqlite
 * store, CA and TLS files, `${file:...}` references, signing key) resolve against `baseDir`.
 */
export function parseConfig(raw: unknown, file: string, baseDir: string): GatewayConfig {
  const problems: string[] = [];
  const failedPaths = new Set<string>();
  const resolved = resolveReferences(raw, [], baseDir, (path, reason) => {
    failedPaths.add(formatPath(path));
    problems.push(`${file}: ${formatPath(path)}: ${reason}`);
  });

  // Duplicates are checked on the input, so they are reported beside any other problem.
  const keys = listAt(resolved, 'identity', 'api_keys');
  duplicates(keys.map((k) => k?.['name']), ['identity', 'api_keys'], 'name', 'API key name', problems, file);
  duplicates(keys.map((k) => (typeof k?.['sha256'] === 'string' ? k['sha256'].toLowerCase() : undefined)), ['identity', 'api_keys'], 'sha256', 'API key hash', problems, file);
  duplicates(listAt(resolved, 'connections').map((c) => c?.['name']), ['connections'], 'name', 'connection name', problems, file);
  // Several entries may share a name (several keys of one agent pool), never a key.
  duplicates(listAt(resolved, 'agents').map((a) => (typeof a?.['sha256'] === 'string' ? a['sha256'].toLowerCase() : undefined)), ['agents'], 'sha256', 'agent key hash', problems, file);
  // A second rule with the same pattern could never match (the first matching rule wins).
  listAt(resolved, 'connections').forEach((c, i) => {
    duplicates(listAt(c, 'masking', 'columns').map((r) => r?.['column']), ['connections', i, 'masking', 'columns'], 'column', 'column pattern', problems, file);
    // Decisions and the record name the rule; two of one name could not be told apart.
    duplicates(listAt(c, 'approval', 'rules').map((r) => r?.['name']), ['connections', i, 'approval', 'rules'], 'name', 'rule name', problems, file);
  });

  const result = schemaFor(baseDir).safeParse(resolved, { reportInput: true });
  if (!result.success) {
    for (const issue of result.error.issues) {
      const path = formatPath(issue.path);
      if ([...failedPaths].some((p) => path === p || path.startsWith(`${p}.`) || path.startsWith(`${p}[`))) continue;
      for (const line of describeIssue(issue)) problems.push(`${file}: ${line}`);
    }
  }
  if (problems.length > 0 || !result.success) {
    throw new ConfigError(problems.join('\n'), { hint: 'see docs/configuration.md for every key' });
  }
  return { ...result.data, file, path: null, fingerprint: fingerprintOf(raw) };
}

// ---------------------------------------------------------------------------------------------
// Secret references
// ---------------------------------------------------------------------------------------------

const REFERENCE = /\$\$\{|\$\{([^}]*)\}/g;

function resolveReferences(value: unknown, path: (string | number)[], baseDir: string, fail: (path: (string | number)[], reason: string) => void): unknown {
  if (typeof value === 'string') return resolveString(value, path, baseDir, fail);
  if (Array.isArray(value)) return value.map((v, i) => resolveReferences(v, [...path, i], baseDir, fail));
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[k] = resolveReferences(v, [...path, k], baseDir, fail);
    return out;
  }
  return value;
}

function resolveString(s: string, path: (string | number)[], baseDir: string, fail: (path: (string | number)[], reason: string) => void): string {
  if (!s.includes('${')) return s;
  return s.replace(REFERENCE, (whole, ref: string | undefined) => {
    if (whole === '$${') return '${';
    const m = /^(env|file):(.+)$/.exec(ref ?? '');
    if (!m) {
      fail(path, `unsupported reference \${${(ref ?? '').slice(0, 40)}}; use \${env:NAME} or \${file:PATH} (write $\${ for a literal \${)`);
      return '';
    }
    const [, kind, name] = m as unknown as [string, 'env' | 'file', string];
    if (kind === 'env') {
      const v = process.env[name];
      if (v === undefined || v === '') {
        fail(path, `environment variable ${name} is not set (referenced as \${env:${name}})`);
        return '';
      }
      return v;
    }
    const file = resolveFrom(baseDir, name);
    try {
      return readSmallFile(file).replace(/\r?\n$/, '');
    } catch (err) {
      fail(path, `cannot read ${name} (${fsReason(err)}) (referenced as \${file:${name}})`);
      return '';
    }
  });
}

function readSmallFile(path: string): string {
  const st = statSync(path);
  if (!st.isFile()) throw Object.assign(new Error('not a file'), { code: 'ENOTFILE' });
  if (st.size > MAX_SECRET_FILE_BYTES) throw Object.assign(new Error('too large'), { code: 'EFBIG' });
  return readFileSync(path, 'utf8');
}

function fsReason(err: unknown): string {
  const code = (err as { code?: string }).code;
  switch (code) {
    case 'ENOENT': return 'no such file';
    case 'EACCES': case 'EPERM': return 'permission denied';
    case 'EISDIR': case 'ENOTFILE': return 'not a regular file';
    case 'EFBIG': return 'larger than 1 MiB';
    default: return code ?? errorMessage(err);
  }
}

function resolveFrom(baseDir: string, p: string): string {
  return isAbsolute(p) ? p : resolve(baseDir, p);
}

// ---------------------------------------------------------------------------------------------
// Messages
// ---------------------------------------------------------------------------------------------

export function formatPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const part of path) {
    if (typeof part === 'number') out += `[${part}]`;
    else out += out === '' ? String(part) : `.${String(part)}`;
  }
  return out === '' ? '(top level)' : out;
}

interface Issue {
  code: string;
  path: PropertyKey[];
  message: string;
  input?: unknown;
  expected?: string;
  keys?: string[];
}

function describeIssue(issue: z.core.$ZodIssue): string[] {
  const i = issue as unknown as Issue;
  const path = formatPath(i.path);
  if (i.code === 'unrecognized_keys') {
    return (i.keys ?? []).map((k) => `${formatPath([...i.path, k])}: unknown key`);
  }
  if (i.code === 'invalid_type') {
    if (i.input === undefined) return [`${path}: required`];
    if (i.message && !i.message.startsWith('Invalid input')) return [`${path}: ${i.message}`];
    return [`${path}: expected ${article(i.expected ?? 'value')}, got ${kindOf(i.input)}`];
  }
  if (i.code === 'invalid_value' && i.message.startsWith('Invalid input')) {
    return [`${path}: not an accepted value`];
  }
  if (i.code === 'invalid_union') return [`${path}: expected a string or a number`];
  return [`${path}: ${i.message}`];
}

function article(expected: string): string {
  const names: Record<string, string> = { object: 'a mapping', array: 'a list', string: 'a string', number: 'a number', boolean: 'true or false' };
  return names[expected] ?? expected;
}

function kindOf(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'a mapping';
  return `a ${typeof v}`;
}

type Entry = Record<string, unknown> | undefined;

function listAt(root: unknown, ...keys: string[]): Entry[] {
  let v: unknown = root;
  for (const k of keys) v = v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>)[k] : undefined;
  if (!Array.isArray(v)) return [];
  return v.map((e) => (e !== null && typeof e === 'object' && !Array.isArray(e) ? (e as Record<string, unknown>) : undefined));
}

function duplicates(values: unknown[], base: (string | number)[], key: string, what: string, problems: string[], file: string): void {
  const seen = new Map<string, number>();
  values.forEach((v, i) => {
    if (typeof v !== 'string') return;
    const first = seen.get(v);
    if (first !== undefined) problems.push(`${file}: ${formatPath([...base, i, key])}: duplicate ${what} (the same as ${formatPath([...base, first, key])})`);
    else seen.set(v, i);
  });
}

// ---------------------------------------------------------------------------------------------
// Fingerprint: what was configured, without what is secret
// ---------------------------------------------------------------------------------------------

/**
 * SHA-256 over the config as written, with secret references left unresolved (so the hash
 * changes when a reference changes, not when a rotated secret does), inline upstream passwords,
 * masking hash keys, TLS keys, webhook URLs and webhook secrets, audit sink tokens and header values replaced, and the
 * password of a postgres:// store URL removed.
 */
function fingerprintOf(raw: unknown): string {
  const redact = (v: unknown, path: (string | number)[]): unknown => {
    const key = path[path.length - 1];
    if (typeof v === 'string') {
      if (v.includes('${')) return v;
      if (key === 'password' || key === 'hash_key' || (key === 'key' && path[path.length - 2] === 'tls')) return '<redacted>';
      // A webhook's HMAC key, and its URL (Slack's carries its token in the path).
      if ((key === 'secret' || key === 'webhook') && path[path.length - 3] === 'notify') return '<redacted>';
      // An audit sink's token, and its extra headers' values (one may be a credential).
      if (key === 'token' && path[path.length - 3] === 'sinks') return '<redacted>';
      if (path[path.length - 2] === 'headers' && path[path.length - 4] === 'sinks') return '<redacted>';
      if (key === 'store' && path.length === 1 && /^postgres(ql)?:\/\//.test(v)) {
        try {
          const u = new URL(v);
          if (u.password) u.password = 'redacted';
          return u.toString();
        } catch {
          return '<unparseable>';
        }
      }
      return v;
    }
    if (Array.isArray(v)) return v.map((x, i) => redact(x, [...path, i]));
    if (v !== null && typeof v === 'object') {
      return Object.fromEntries(
        Object.keys(v).sort().map((k) => [k, redact((v as Record<string, unknown>)[k], [...path, k])]),
      );
    }
    return v;
  };
  return createHash('sha256').update(JSON.stringify(redact(raw, []))).digest('hex');
}
