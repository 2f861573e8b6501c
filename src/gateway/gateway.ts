/**
 * The gateway's composition root: store -> recorder -> engine -> config snapshot (live-config.ts:
 * authenticators, connections; reload.ts swaps it) -> the session host (session-host.ts) -> HTTP
 * API and tunnel endpoint on one listener, and the native PostgreSQL listener (`postgres_listen`,
 * native-listener.ts) beside it. `close()` undoes it in reverse: stop accepting, end the sessions
 * (they end and are recorded), flush the recorder, close the store.
 */
import type { AddressInfo } from 'node:net';
import { pino, type Logger } from 'pino';
import { CheckpointSigner } from '../audit/checkpoint.js';
import { Checkpointer } from '../audit/checkpointer.js';
import { SYSTEM_ACTOR } from '../audit/event.js';
import { AuditRecorder } from '../audit/recorder.js';
import { AuditSinks } from '../audit/sinks/deliverer.js';
import { RetentionJob } from '../audit/retention.js';
import { HoopError, errorMessage } from '../errors.js';
import { ApiKeyAuthenticator } from '../identity/api-keys.js';
import type { Authenticator, Identity } from '../identity/identity.js';
import { OidcVerifier } from '../identity/oidc-verifier.js';
import { createEngine, type Engine } from '../protocols/engine.js';
import '../protocols/postgres/engine.js'; // registers type: postgres
import { isLoopbackHost } from '../net/loopback.js';
import { openStore } from '../store/index.js';
import type { Store } from '../store/store.js';
import { AuditKeys } from './audit-keys.js';
import { AuthenticatorChain } from './authn.js';
import { loadConfig, type GatewayConfig } from './config.js';
import { ensureMaskingKey, maskingKeyPath } from './hash-key.js';
import { ensureSigningKey } from './key-files.js';
import { LOG_REDACT } from './log-redact.js';
import { createServer } from './http.js';
import { SessionKills } from './kills.js';
import { ApprovalService } from './approvals.js';
import { GatewayMetrics, mergeWorkerMetrics } from './metrics.js';
import { Notifier } from './notify.js';
import { AUTH_FAILURE_BURST, FailureLimiter, handleRequest, type ApiContext } from './routes.js';
import { TrustedProxies } from './proxies.js';
import { ConfigHolder, buildLiveConfig, type LiveParts } from './live-config.js';
import { ConfigReloader, configChanges, configLoadedEvent, type ReloadOutcome } from './reload.js';
import { TunnelEndpoint, type Planner, type TunnelContext } from './tunnel.js';
import type { UpstreamDial } from './session-host.js';
import { AgentRegistry, mergeAgentReports } from './agents.js';
import { requestSource } from './access.js';
import { SessionHost } from './session-host.js';
import { NativeListener, type NativeAddress } from './native-listener.js';
import { MaskingService } from './masking.js';
import { Estimator } from './estimator.js';
import type { ApprovalRequest } from './approvals.js';
import { loadParser } from '../policy/masking/parse.js';
import { tcpDial } from '../protocols/postgres/upstream.js';
import type { ClusterWorker } from './cluster-worker.js';

export { LOG_REDACT };

export interface RunningGateway {
  /** Base URL, e.g. http://127.0.0.1:8009 (the real port when `listen` asked for port 0). */
  url: string;
  close(): Promise<void>;
  /** The gateway's store, for tests and embedding (`hoop demo`). */
  readonly store: Store;
  /** The config in effect now (live-config.ts); a reload swaps it. */
  readonly configs: ConfigHolder;
  /** Approver notifications (notify.ts): what the approval flow hands its requests to. */
  readonly notifier: Notifier;
  /** Approval requests and reviewers' decisions (approvals.ts); also on the tunnel context as `approvals`. */
  readonly approvals: ApprovalService;
  /** The native PostgreSQL listener's address (`postgres_listen`, the real port), or null. */
  readonly postgresListen: NativeAddress | null;
  /** Audit retention (src/audit/retention.ts), when `audit.retention` says to prune anything; else null. */
  readonly retention: RetentionJob | null;
  /** Reads the config file again and applies it (reload.ts); `hoop gateway` calls it on SIGHUP. */
  reload(source: 'sighup' | 'api', by?: Identity | null): Promise<ReloadOutcome>;
}

export interface GatewayOptions {
  logger?: Logger;
  /** Decides each statement (masking and approvals will; tests give their own). Default: run as sent. */
  planner?: Planner;
  /**
   * The same, given the config holder, for a planner that must read the CURRENT config of the
   * connection per statement (`configs.connection(name)`: masking rules and hash key as last
   * reloaded). Takes precedence over `planner`.
   */
  plannerFor?: (configs: ConfigHolder) => Planner;
  /** How a reload reads the config again. Default: loadConfig of the file it came from (`config.path`). */
  reloadFrom?: () => GatewayConfig;
  /** Agent link heartbeat interval (ms); default HOOP_AGENT_HEARTBEAT_MS, else 5 s. */
  agentHeartbeatMs?: number;
  /** This process's place among `workers: N` (1-based index), told to agents (agents.ts AgentDeps.worker); default: `cluster`'s. */
  worker?: { index: number; count: number };
  /** Audit retention's schedule and clock (tests); default every hour, the real time. */
  retention?: { intervalMs?: number; now?: () => number };
  /** This process is one of `workers: N` (cluster.ts forked it); absent: the only one. */
  cluster?: ClusterWorker;
}

export async function startGateway(config: GatewayConfig, options: GatewayOptions = {}): Promise<RunningGateway> {
  const logger = options.logger ?? pino({ name: 'hoop-gateway', redact: LOG_REDACT, timestamp: pino.stdTimeFunctions.isoTime }, pino.destination(2));
  // One engine per connection type in use (each keeps its sessions' cancel keys).
  const engines = new Map<string, Engine>();
  const { cluster } = options;
  const engineFor = (type: string): Engine => {
    let e = engines.get(type);
    if (!e) {
      engines.set(type, (e = createEngine(type)));
      // A client's cancel connection may reach another worker than its session.
      if (cluster) e.onUnknownCancel = (c) => cluster.forwardCancel(c);
    }
    return e;
  };
  cluster?.onCancel((c) => {
    for (const e of engines.values()) e.cancelByKey?.(c);
  });
  const metrics = new GatewayMetrics(() => [...engines.values()].reduce((n, e) => n + e.activeSessions, 0));
  const store = metrics.instrument(await openStore(config.store));
  const recorder = new AuditRecorder(store, { logger });
  const kills = new SessionKills({ store, logger });
  // Read the config in effect now (a reload may change admins and webhooks); set once configs exist.
  let rolesNow: () => GatewayConfig['roles'] = () => config.roles;
  let connectionsNow: () => GatewayConfig['connections'] = () => config.connections;
  // Its worker starts with the listener; until then a queued notification just waits in the store.
  // `targets`: where a row queued by another replica or an earlier run finds its signing secret.
  const notifier = new Notifier({ store, recorder, logger, metrics, targets: () => connectionsNow().flatMap((c) => c.approval?.notify ?? []) });
  let closed = false;
  const approvals = new ApprovalService({ store, recorder, logger, roles: () => rolesNow() });
  // Every request and decision reaches the connection's approvers by its webhooks.
  const notifyApprovers = (event: 'approval.requested' | 'approval.decided') => (r: ApprovalRequest) => {
    const targets = connectionsNow().find((c) => c.name === r.connection)?.approval?.notify ?? [];
    for (const t of targets) void notifier.enqueue(t, { ...r, event }).catch(() => {}); // enqueue logs its failure
  };
  approvals.onRequested = notifyApprovers('approval.requested');
  approvals.onDecided = notifyApprovers('approval.decided');
  // Every upstream dial of a connection with `agent:` goes through that agent (agents.ts); set once configs exist.
  let agents: AgentRegistry | null = null;
  const dialUpstream: UpstreamDial = (connection, upstream, session) => {
    if (connection.agent === null) return tcpDial(upstream);
    if (!agents) return Promise.reject(new HoopError('HOOP_UPSTREAM', 'the gateway is starting'));
    return agents.dialVia(connection.agent, {
      host: upstream.host, port: upstream.port, connection: connection.name,
      sessionId: session?.id ?? null, timeoutMs: upstream.connectTimeoutMs ?? 10_000,
      ...(session?.onLost ? { onLost: session.onLost } : {}),
    });
  };
  const estimator = new Estimator(dialUpstream);
  let sinks: AuditSinks | null = null;
  let retention: RetentionJob | null = null;

  try {
    ensureSigningKey(config.audit.signing_key, logger);
    const signer = loadSigner(config.audit.signing_key);
    // Kept outside the log (log shipping, a runbook), it is what a verifier should trust.
    logger.info({ key_id: signer.keyId }, 'audit checkpoints are signed with this key');
    const checkpointer = new Checkpointer({ store, recorder, signer, intervalMs: config.audit.checkpoint_interval, logger });
    const parts = liveParts(config, ensureMaskingKey(maskingKeyPath(config.audit.signing_key), logger));
    const configs = new ConfigHolder(buildLiveConfig(config, parts));
    rolesNow = () => configs.current().config.roles;
    connectionsNow = () => configs.current().config.connections;
    const file = config.path;
    const reloadFrom = options.reloadFrom ?? (file !== null ? () => loadConfig(file) : null);
    const masking = new MaskingService({ current: (name) => configs.connection(name), dial: dialUpstream });
    const reloader = new ConfigReloader({
      holder: configs, load: reloadFrom, build: (c) => buildLiveConfig(c, parts), recorder, logger,
      // A reload also reads every catalog again: the operator's way to make DDL done outside hoop seen at once.
      onReplaced: () => masking.catalogsChanged(),
      ...(cluster ? { worker: cluster.label, onApplied: (source, by) => void (source === 'api' && cluster.reloadOthers(by)) } : {}),
    });
    cluster?.onReload((source, by) => void reloader.reload(source, by, true).catch((err: unknown) => logger.error({ err: errorMessage(err) }, 'config reload failed; the running config is kept')));
    cluster?.onReport('metrics', () => metrics.render());
    const auditKeys = new AuditKeys(store, { key_id: signer.keyId, pem: signer.publicKeyPem }, config.audit.previous_keys);
    let native: NativeListener | null = null;
    const authFailures = new FailureLimiter(cluster?.share(AUTH_FAILURE_BURST) ?? AUTH_FAILURE_BURST, 60_000);
    // Told to each agent link, so that an agent links to every worker behind one URL.
    const place = options.worker ?? cluster;
    const registry = new AgentRegistry({
      keys: () => configs.current().config.agents,
      recorder, logger, metrics, authFailures,
      source: (req) => requestSource(configs.current(), req),
      heartbeatMs: options.agentHeartbeatMs ?? heartbeatFromEnv(),
      ...(place ? { worker: place } : {}),
    });
    agents = registry;
    cluster?.onReport('agents', () => registry.linkCounts(configs.current().config.agents.map((a) => a.name)));
    const shared = {
      store, recorder, metrics, logger, kills, notifier, approvals, configs, reloader, agents: registry, auditKeys,
      postgresListen: () => native?.address ?? null,
      authFailures,
      ...(cluster ? {
        metricsText: async () => mergeWorkerMetrics((await cluster.gather('metrics')).map((r) => ({ worker: String(r.worker), text: String(r.value) })), cluster.count),
        agentsNow: async () => mergeAgentReports(await cluster.gather('agents'), cluster.count),
      } : {}),
      denials: new FailureLimiter(AUTH_FAILURE_BURST, 60_000),
      audit: { checkpointer, signer },
    };
    // A request reads one snapshot for its whole life (live-config.ts).
    const requestContext = (): ApiContext => {
      const live = configs.current();
      return { ...shared, config: live.config, authn: live.authn, proxies: live.proxies };
    };
    const planner = options.plannerFor ? options.plannerFor(configs) : options.planner;
    await loadParser(); // masking reads statements with PostgreSQL's own parser (WASM, loaded once)
    // A tunnel upgrade reads the snapshot in effect when it reaches each check.
    const tunnelContext: TunnelContext = {
      ...shared,
      get config() { return configs.current().config; },
      get authn() { return configs.current().authn; },
      get proxies() { return configs.current().proxies; },
      engines: engineFor,
      policy: {
        current: (name) => configs.connection(name),
        masking,
        approvals,
        estimator,
      },
      ...(planner ? { planner } : {}),
      dialUpstream,
      ...(cluster ? { cluster } : {}),
    };
    const sessions = new SessionHost(tunnelContext);
    const tunnels = new TunnelEndpoint(tunnelContext, sessions);
    native = config.postgres_listen ? new NativeListener(tunnelContext, sessions, config.tls) : null;

    const started = configs.current().config;
    await recorder.record(configLoadedEvent(started, 'start', null, configChanges(null, started)));

    await recordRotation(auditKeys, recorder, checkpointer, logger);
    checkpointer.start();
    // After the recorder: the sinks read what it made durable, in the background, from their cursors.
    sinks = startSinks(config, store, metrics, logger);
    const kept = config.audit.retention;
    retention = kept && (kept.payloads !== undefined || kept.events !== undefined)
      ? new RetentionJob({ store, recorder, logger, payloadsMs: kept.payloads ?? null, eventsMs: kept.events ?? null, ...options.retention })
      : null;
    retention?.start();
    await kills.start();
    notifier.start();
    await approvals.start();

    const server = createServer((req, res) => void handleRequest(requestContext(), req, res), config.tls);
    server.on('upgrade', (req, socket, head) => (AgentRegistry.matches(req) ? registry.handleUpgrade(req, socket, head) : tunnels.handleUpgrade(req, socket, head)));
    server.on('clientError', (_err, socket) => {
      if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n');
      else socket.destroy();
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(config.listen.port, config.listen.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    const address = server.address() as AddressInfo;
    const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
    const url = `${config.tls ? 'https' : 'http'}://${host}:${address.port}`;
    // A worker's own line; the primary says `gateway listening` once every worker listens.
    logger.info({ url, connections: config.connections.length }, cluster ? 'worker listening' : 'gateway listening');
    if (!config.tls && !isLoopbackHost(address.address)) {
      logger.warn({ url }, 'listening on a non-loopback address without tls: bearer tokens travel in clear unless a TLS proxy is in front');
    }
    if (native && config.postgres_listen) {
      try {
        const at = await native.listen(config.postgres_listen.host, config.postgres_listen.port);
        logger.info({ host: at.host, port: at.port, tls: at.tls }, 'native PostgreSQL listener listening');
        if (!at.tls && !isLoopbackHost(at.host)) logger.warn({ host: at.host }, 'postgres_listen without tls: only loopback clients can log in (others are refused before any password is sent)');
      } catch (err) {
        server.close();
        throw new HoopError('HOOP_CONFIG_INVALID', `postgres_listen: cannot listen on ${config.postgres_listen.host}:${config.postgres_listen.port}: ${errorMessage(err)}`, { cause: err });
      }
    }

    cluster?.announceListening({ url, postgres: native?.address ?? null });
    return {
      url,
      store,
      configs,
      notifier,
      approvals,
      postgresListen: native?.address ?? null,
      retention,
      reload: (source, by = null) => reloader.reload(source, by),
      async close(): Promise<void> {
        if (closed) return;
        closed = true;
        const stopped = new Promise<void>((resolve) => server.close(() => resolve()));
        server.closeIdleConnections();
        const nativeStopped = native?.close();
        tunnels.close();
        await sessions.close();
        await nativeStopped;
        registry.close(); // after the sessions: they end with the gateway's reason, not a lost link
        await kills.close();
        await approvals.close(); // after the tunnels: their sessions' holds are cancelled by then
        await estimator.close();
        server.closeAllConnections();
        await stopped;
        await notifier.close(); // before the recorder's flush: a give-up records notify.failed
        await retention?.close(); // stops after its current batch
        await checkpointer.close(); // the last head this gateway wrote, signed
        await recorder.flush().catch((err: unknown) => logger.error({ err: errorMessage(err) }, 'audit flush failed at shutdown'));
        await sinks?.close(SINK_DRAIN_MS); // the last events, the final checkpoint among them, if the sinks take them in time
        await store.close();
        logger.info('stopped');
      },
    };
  } catch (err) {
    await sinks?.close(0);
    await retention?.close();
    await kills.close();
    await notifier.close();
    await approvals.close();
    await recorder.flush().catch(() => {});
    await store.close().catch(() => {});
    throw err;
  }
}

/** How long a stopping gateway keeps delivering to its audit sinks before it leaves the rest to the next run. */
const SINK_DRAIN_MS = 2_000;

function startSinks(config: GatewayConfig, store: Store, metrics: GatewayMetrics, logger: Logger): AuditSinks | null {
  if (config.audit.sinks.length === 0) return null;
  for (const s of config.audit.sinks) {
    if (s.kind === 'syslog' && !s.tls && !isLoopbackHost(s.host)) {
      logger.warn({ sink: s.id }, 'audit sink over plain TCP to a non-loopback host: audit events travel in clear (set tls: true)');
    }
  }
  metrics.registerSinks(config.audit.sinks.map((s) => s.id));
  const sinks = new AuditSinks({ store, sinks: config.audit.sinks, logger, metrics: metrics.sinks });
  sinks.start();
  logger.info({ sinks: config.audit.sinks.map((s) => s.id) }, 'audit sinks started');
  return sinks;
}

/**
 * What every config snapshot shares: the masking key file and the OIDC verifier (its JWKS cache;
 * identity.oidc needs a restart) live as long as the process; API keys and trusted proxies are
 * built per snapshot.
 */
function liveParts(config: GatewayConfig, maskingKey: Buffer): LiveParts {
  const oidc = config.identity.oidc;
  const oidcVerifiers: Authenticator[] = oidc ? [new OidcVerifier({ issuer: oidc.issuer, audience: oidc.audience, groupsClaim: oidc.groups_claim })] : [];
  return {
    maskingKey,
    // Each authenticator returns null for credentials of the other kind (JWT vs opaque key).
    authn: (c) => new AuthenticatorChain([...oidcVerifiers, new ApiKeyAuthenticator(c.identity.api_keys)]),
    proxies: (c) => new TrustedProxies(c.trusted_proxies),
  };
}

/** HOOP_AGENT_HEARTBEAT_MS: a positive whole number of milliseconds (tests shorten it), else the default. */
function heartbeatFromEnv(): number | undefined {
  const raw = process.env.HOOP_AGENT_HEARTBEAT_MS;
  return raw !== undefined && /^\d{1,7}$/.test(raw) && Number(raw) > 0 ? Number(raw) : undefined;
}

/**
 * A start with another signing key than the newest checkpoint's is recorded (audit-keys.ts), then
 * signed at once with the new key, which so vouches for the head that records the switch.
 */
async function recordRotation(keys: AuditKeys, recorder: AuditRecorder, checkpointer: Checkpointer, logger: Logger): Promise<void> {
  const rotation = await keys.rotation();
  if (!rotation) return;
  const { previous_key_id, key_id } = rotation;
  await recorder.record({ type: 'audit.key_rotated', actor: SYSTEM_ACTOR, data: { previous_key_id, key_id } });
  await checkpointer.checkpoint();
  logger.info({ previous_key_id, key_id }, 'audit signing key rotated');
  if (!rotation.previous_listed) {
    logger.warn({ previous_key_id }, 'the key that signed the newest checkpoint is not in audit.previous_keys: list its public key there so GET /api/v1/audit/keys names it as retired (checkpoints carry their key and still verify)');
  }
}

function loadSigner(path: string): CheckpointSigner {
  try {
    return CheckpointSigner.fromFile(path);
  } catch (err) {
    throw new HoopError('HOOP_CONFIG_INVALID', `audit.signing_key: cannot use ${path}: ${errorMessage(err)}`, { cause: err, hint: 'it must be an Ed25519 private key in PKCS#8 PEM; delete it to have a new one created' });
  }
}
