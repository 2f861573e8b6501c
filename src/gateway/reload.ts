/**
 * Reloading the config file while the gateway runs (SIGHUP in `hoop gateway`, and
 * `POST /api/v1/admin/reload` for admins).
 *
 * - The file is read and validated in full first; any problem keeps the running config, and the
 *   problems are returned (the API answers 422 with them, SIGHUP logs them). Nothing is recorded.
 * - What a running process cannot take over (its listener, TLS, store, audit settings, OIDC
 *   verifier) is kept from the running config and listed as `needs_restart`. Everything else —
 *   connections (masking, approval rules, access, require_reason, limits; added and removed), API keys, roles,
 *   trusted proxies — applies to new sessions and new statements.
 * - `config.loaded` (source, who, what changed: names and rule summaries, never a secret) is made
 *   durable BEFORE the new config takes effect, so no rule is ever in force unrecorded; if the
 *   store cannot record it, the reload fails and the running config stays.
 * - Reloads run one at a time, so each diff is against the config it replaces.
 */
import { isDeepStrictEqual } from 'node:util';
import type { Logger } from 'pino';
import type { ConfigChanges } from '../api/types.js';
import { SYSTEM_ACTOR } from '../audit/event.js';
import type { AuditRecorder } from '../audit/recorder.js';
import { ConfigError, errorMessage } from '../errors.js';
import { actorOf, type Identity } from '../identity/identity.js';
import type { MaskingConfig, MaskRule } from '../policy/masking/types.js';
import type { ApprovalConfig, RiskRule } from '../policy/risk/types.js';
import { formatDuration } from '../units.js';
import type { ConnectionConfig, GatewayConfig } from './config.js';
import type { ConfigHolder, LiveConfig } from './live-config.js';

export type ReloadSource = 'start' | 'sighup' | 'api';

export type ReloadOutcome =
  | { ok: true; sha256: string; changes: ConfigChanges }
  | { ok: false; problems: string[] };

export interface ReloaderOptions {
  holder: ConfigHolder;
  /** Reads and validates the config again (loadConfig of the file the gateway started from); null: nothing to re-read. */
  load: (() => GatewayConfig) | null;
  build(config: GatewayConfig): LiveConfig;
  recorder: AuditRecorder;
  logger: Logger;
  /** `workers: N`: which worker this is ("2/4"), recorded in config.loaded. */
  worker?: string;
  /** Called after a reload asked of this process is applied (with `workers: N`, an API reload then reaches the other workers); not for a relayed one. */
  onApplied?: (source: Exclude<ReloadSource, 'start'>, by: Identity | null) => void;
  /** Called once a reloaded config is in effect, relayed ones too. */
  onReplaced?: () => void;
}

export class ConfigReloader {
  private queue: Promise<unknown> = Promise.resolve();

  constructor(private readonly o: ReloaderOptions) {}

  /** `relayed`: another worker's reload, passed on by the primary (`workers: N`): not passed on again. */
  reload(source: Exclude<ReloadSource, 'start'>, by: Identity | null, relayed = false): Promise<ReloadOutcome> {
    const run = this.queue.then(() => this.reloadNow(source, by, relayed));
    this.queue = run.catch(() => {});
    return run;
  }

  private async reloadNow(source: Exclude<ReloadSource, 'start'>, by: Identity | null, relayed: boolean): Promise<ReloadOutcome> {
    const { holder, logger } = this.o;
    const log = logger.child({ source, ...(by ? { by: by.subject } : {}) });
    const refuse = (problems: string[]): ReloadOutcome => {
      log.error({ problems }, 'config reload refused; the running config is kept');
      return { ok: false, problems };
    };
    if (!this.o.load) return refuse(['the gateway was not started from a config file: there is nothing to read again']);
    let next: GatewayConfig;
    try {
      next = this.o.load();
    } catch (err) {
      if (err instanceof ConfigError) return refuse(err.message.split('\n').filter((l) => l.trim() !== ''));
      return refuse([`the config could not be read: ${errorMessage(err)}`]);
    }
    const running = holder.current();
    const { applied, needsRestart } = keepRestartOnly(running.config, next);
    const live = this.o.build(applied);
    const changes = configChanges(running.config, live.config, needsRestart);
    try {
      await this.o.recorder.record(configLoadedEvent(live.config, source, by, changes, this.o.worker));
    } catch (err) {
      return refuse([`config.loaded could not be recorded (${errorMessage(err)}); a config is not applied unrecorded`]);
    }
    holder.replace(live);
    this.o.onReplaced?.();
    log.info({ sha256: live.config.fingerprint, changes }, 'config reloaded');
    if (needsRestart.length > 0) log.warn({ needs_restart: needsRestart }, 'some changes take effect only after a restart; the running values are kept');
    if (!relayed) this.o.onApplied?.(source, by);
    return { ok: true, sha256: live.config.fingerprint, changes };
  }
}

// ---------------------------------------------------------------------------------------------

/** Keys a running gateway cannot take over, with how to read each. */
const RESTART_KEYS: { key: string; of(c: GatewayConfig): unknown }[] = [
  { key: 'listen', of: (c) => c.listen },
  { key: 'tls', of: (c) => c.tls },
  { key: 'postgres_listen', of: (c) => c.postgres_listen },
  { key: 'store', of: (c) => c.store },
  { key: 'workers', of: (c) => c.workers },
  { key: 'audit.payload_limit', of: (c) => c.audit.payload_limit },
  { key: 'audit.signing_key', of: (c) => c.audit.signing_key },
  { key: 'audit.checkpoint_interval', of: (c) => c.audit.checkpoint_interval },
  { key: 'audit.sinks', of: (c) => c.audit.sinks },
  { key: 'audit.retention', of: (c) => c.audit.retention },
  { key: 'audit.previous_keys', of: (c) => c.audit.previous_keys.map((k) => k.key_id) },
  { key: 'identity.oidc', of: (c) => c.identity.oidc },
];

/** `next`, with the restart-only keys of `running`, and which of those differ. */
export function keepRestartOnly(running: GatewayConfig, next: GatewayConfig): { applied: GatewayConfig; needsRestart: string[] } {
  const needsRestart = RESTART_KEYS.filter((k) => !isDeepStrictEqual(k.of(running), k.of(next))).map((k) => k.key);
  const { tls: _tls, postgres_listen: _postgresListen, ...rest } = next;
  const { oidc: _oidc, ...identity } = next.identity;
  const applied: GatewayConfig = {
    ...rest,
    ...(running.tls ? { tls: running.tls } : {}),
    listen: running.listen,
    ...(running.postgres_listen ? { postgres_listen: running.postgres_listen } : {}),
    store: running.store,
    workers: running.workers,
    audit: running.audit,
    identity: { ...identity, ...(running.identity.oidc ? { oidc: running.identity.oidc } : {}) },
  };
  return { applied, needsRestart };
}

/** What changed from `prev` (null at start: everything is added) to `next`. Names and rule summaries only. */
export function configChanges(prev: GatewayConfig | null, next: GatewayConfig, needsRestart: string[] = []): ConfigChanges {
  const before = new Map((prev?.connections ?? []).map((c) => [c.name, c]));
  const after = new Map(next.connections.map((c) => [c.name, c]));
  const masking: ConfigChanges['masking'] = {};
  const approval: ConfigChanges['approval'] = {};
  for (const name of new Set([...before.keys(), ...after.keys()])) {
    const diff = maskingChanges(before.get(name), after.get(name));
    if (diff) masking[name] = diff;
    const rules = approvalChanges(before.get(name), after.get(name));
    if (rules) approval[name] = rules;
  }
  const keysBefore = new Map((prev?.identity.api_keys ?? []).map((k) => [k.name, k]));
  const keysAfter = new Map(next.identity.api_keys.map((k) => [k.name, k]));
  return {
    connections: setChanges(before, after, (a, b) => isDeepStrictEqual(a, b)),
    masking,
    approval,
    // The hash changing means a new key for the same name; only the name is recorded.
    api_keys: setChanges(keysBefore, keysAfter, (a, b) => isDeepStrictEqual(a, b)),
    agents: agentKeyChanges(prev, next),
    roles: (['admin', 'auditor'] as const).filter((r) => !isDeepStrictEqual(prev?.roles[r] ?? [], next.roles[r])),
    trusted_proxies: !isDeepStrictEqual(prev?.trusted_proxies ?? [], next.trusted_proxies),
    needs_restart: needsRestart,
  };
}

/** Names under `agents` whose set of keys differs (several entries may share a name). */
function agentKeyChanges(prev: GatewayConfig | null, next: GatewayConfig): string[] {
  const keysOf = (c: GatewayConfig | null) => {
    const m = new Map<string, string[]>();
    for (const a of c?.agents ?? []) m.set(a.name, [...(m.get(a.name) ?? []), a.sha256].sort());
    return m;
  };
  const before = keysOf(prev);
  const after = keysOf(next);
  return [...new Set([...before.keys(), ...after.keys()])].filter((n) => !isDeepStrictEqual(before.get(n), after.get(n)));
}

function setChanges<T>(before: Map<string, T>, after: Map<string, T>, same: (a: T, b: T) => boolean): { added: string[]; removed: string[]; changed: string[] } {
  return {
    added: [...after.keys()].filter((n) => !before.has(n)),
    removed: [...before.keys()].filter((n) => !after.has(n)),
    changed: [...after.keys()].filter((n) => before.has(n) && !same(before.get(n)!, after.get(n)!)),
  };
}

/** A rule as the record shows it: `public.customers.ssn: ssn partial keep 4`. */
export function ruleSummary(r: MaskRule): string {
  return `${r.column}: ${ruleTerms(r)}`;
}

function ruleTerms(r: MaskRule): string {
  return `${r.type} ${r.method}${r.keep !== undefined ? ` keep ${r.keep}` : ''}`;
}

type Masked = Pick<ConnectionConfig, 'masking' | 'maskingKey'>;

function maskingChanges(a: Masked | undefined, b: Masked | undefined): { added: string[]; removed: string[]; changed: string[] } | null {
  const ma = a?.masking ?? null;
  const mb = b?.masking ?? null;
  const rulesA = new Map((ma?.columns ?? []).map((r) => [r.column, r]));
  const rulesB = new Map((mb?.columns ?? []).map((r) => [r.column, r]));
  const added = [...rulesB.values()].filter((r) => !rulesA.has(r.column)).map(ruleSummary);
  const removed = [...rulesA.values()].filter((r) => !rulesB.has(r.column)).map(ruleSummary);
  const changed: string[] = [];
  if ((ma === null) !== (mb === null)) changed.push(`masking: ${ma ? 'on' : 'off'} -> ${mb ? 'on' : 'off'}`);
  for (const [column, rb] of rulesB) {
    const ra = rulesA.get(column);
    if (ra && ruleTerms(ra) !== ruleTerms(rb)) changed.push(`${column}: ${ruleTerms(ra)} -> ${ruleTerms(rb)}`);
  }
  // The first matching rule wins, so the order of the rules both configs have is part of the policy.
  const orderA = [...rulesA.keys()].filter((c) => rulesB.has(c));
  const orderB = [...rulesB.keys()].filter((c) => rulesA.has(c));
  if (!isDeepStrictEqual(orderA, orderB)) changed.push('column rule order (the first matching rule wins)');
  if (ma && mb) {
    for (const [key, of] of SETTINGS) {
      const va = of(ma);
      const vb = of(mb);
      if (va !== vb) changed.push(`${key}: ${va} -> ${vb}`);
    }
    // Only that it changed: hashed tokens change with it.
    if (a?.maskingKey && b?.maskingKey && !a.maskingKey.equals(b.maskingKey)) changed.push('hash_key: replaced (hash tokens change)');
  }
  if (added.length === 0 && removed.length === 0 && changed.length === 0) return null;
  return { added, removed, changed };
}

const list = (xs: readonly string[]) => (xs.length ? xs.join(', ') : '(none)');

const SETTINGS: [string, (m: MaskingConfig) => string][] = [
  ['detectors', (m) => list(m.detectors)],
  ['exempt', (m) => list(m.exempt)],
  ['predicates', (m) => m.predicates],
  ['trusted_functions', (m) => list(m.trustedFunctions)],
];

/** An access rule as the record shows it: `full-export: require_approval when kind=select,copy_out tables=customers where=false`. */
export function accessRuleSummary(r: RiskRule): string {
  return `${r.name}: ${accessRuleTerms(r)}`;
}

function accessRuleTerms(r: RiskRule): string {
  const when = Object.entries(r.when).map(([key, v]) => {
    if (Array.isArray(v)) return `${key}=${v.join(',')}`;
    if (v !== null && typeof v === 'object') return `${key}${(v as { op: string }).op}${(v as { value: number }).value}`;
    return `${key}=${String(v)}`;
  });
  return `${r.action}${r.groups ? ` for ${r.groups.join(',')}` : ''} when ${when.length > 0 ? when.join(' ') : 'any statement'}`;
}

type Approved = Pick<ConnectionConfig, 'approval' | 'accessByGrant'>;

function approvalChanges(a: Approved | undefined, b: Approved | undefined): { added: string[]; removed: string[]; changed: string[] } | null {
  const aa = a?.approval ?? null;
  const ab = b?.approval ?? null;
  const rulesA = new Map((aa?.rules ?? []).map((r) => [r.name, r]));
  const rulesB = new Map((ab?.rules ?? []).map((r) => [r.name, r]));
  const added = [...rulesB.values()].filter((r) => !rulesA.has(r.name)).map(accessRuleSummary);
  const removed = [...rulesA.values()].filter((r) => !rulesB.has(r.name)).map(accessRuleSummary);
  const changed: string[] = [];
  if ((aa === null) !== (ab === null)) changed.push(`approval: ${aa ? 'on' : 'off'} -> ${ab ? 'on' : 'off'}`);
  for (const [name, rb] of rulesB) {
    const ra = rulesA.get(name);
    if (ra && accessRuleTerms(ra) !== accessRuleTerms(rb)) changed.push(`${name}: ${accessRuleTerms(ra)} -> ${accessRuleTerms(rb)}`);
  }
  // The first matching rule wins, so the order of the rules both configs have is part of the policy.
  const orderA = [...rulesA.keys()].filter((n) => rulesB.has(n));
  const orderB = [...rulesB.keys()].filter((n) => rulesA.has(n));
  if (!isDeepStrictEqual(orderA, orderB)) changed.push('access rule order (the first matching rule wins)');
  if (aa && ab) {
    for (const [key, of] of APPROVAL_SETTINGS) {
      const va = of(aa);
      const vb = of(ab);
      if (va !== vb) changed.push(`${key}: ${va} -> ${vb}`);
    }
    // Webhook URLs may carry a token (Slack's do): only that they changed.
    if (aa.notify.length === ab.notify.length && !isDeepStrictEqual(aa.notify, ab.notify)) changed.push('notify: targets replaced');
  }
  const grantA = list(a?.accessByGrant ?? []);
  const grantB = list(b?.accessByGrant ?? []);
  if (a && b && grantA !== grantB) changed.push(`access_by_grant: ${grantA} -> ${grantB}`);
  if (added.length === 0 && removed.length === 0 && changed.length === 0) return null;
  return { added, removed, changed };
}

const targets = (n: number) => `${n} target${n === 1 ? '' : 's'}`;

const APPROVAL_SETTINGS: [string, (a: ApprovalConfig) => string][] = [
  ['approvers', (a) => list(a.approvers)],
  ['min_approvals', (a) => String(a.minApprovals)],
  ['timeout', (a) => formatDuration(a.timeoutMs)],
  ['grant_max', (a) => formatDuration(a.grantMaxMs)],
  ['row_cap', (a) => (a.rowCap === null ? '(none)' : String(a.rowCap))],
  ['notify', (a) => (a.notify.length === 0 ? '(none)' : `${targets(a.notify.length)} (${a.notify.map((n) => n.format).join(', ')})`)],
];

/** The `config.loaded` event: what is in effect, who loaded it and what changed (never a secret). */
export function configLoadedEvent(config: GatewayConfig, source: ReloadSource, by: Identity | null, changes: ConfigChanges, worker?: string) {
  return {
    type: 'config.loaded' as const,
    actor: by ? actorOf(by) : SYSTEM_ACTOR,
    data: {
      source,
      ...(by ? { by: by.subject } : {}),
      // With `workers: N` each worker applies (and records) the config it serves with.
      ...(worker !== undefined ? { worker } : {}),
      file: config.file,
      sha256: config.fingerprint,
      connections: config.connections.map((c) => c.name),
      api_keys: config.identity.api_keys.map((k) => k.name),
      agents: [...new Set(config.agents.map((a) => a.name))],
      oidc_issuer: config.identity.oidc?.issuer ?? null,
      masking: Object.fromEntries(config.connections.filter((c) => c.masking).map((c) => [c.name, { columns: c.masking!.columns.length, detectors: c.masking!.detectors }])),
      approval: Object.fromEntries(config.connections.filter((c) => c.approval).map((c) => [c.name, { rules: c.approval!.rules.map(accessRuleSummary), approvers: c.approval!.approvers, min_approvals: c.approval!.minApprovals }])),
      changes,
    },
  };
}
