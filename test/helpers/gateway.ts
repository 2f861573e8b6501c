/**
 * An in-process gateway for tests: the config is built in code and goes through the real
 * `parseConfig`, API keys are random (their SHA-256 in the config, the plaintext returned in
 * `keys`), the store is SQLite in a temp dir unless given, and the listener is on a free port.
 * `close()` stops the gateway and removes the temp dir.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino, type Logger } from 'pino';
import { request } from 'undici';
import type { RetentionJob } from '../../src/audit/retention.js';
import { startGateway, type GatewayOptions } from '../../src/gateway/gateway.js';
import type { Notifier } from '../../src/gateway/notify.js';
import type { ReloadOutcome } from '../../src/gateway/reload.js';
import type { Planner } from '../../src/gateway/tunnel.js';
import { parseConfig, type GatewayConfig } from '../../src/gateway/config.js';
import { apiKeyHash } from '../../src/identity/api-keys.js';
import type { Store } from '../../src/store/store.js';
import { passwordOf, type UpstreamInfo } from './postgres.js';

/** A connection entry as it would be written in hoop.yaml. */
export type RawConnection = Record<string, unknown>;

export interface TestGatewayOptions {
  upstream: UpstreamInfo;
  /** Store URL; default `sqlite:<tempdir>/hoop.db`. */
  store?: string;
  /** Connections as written in hoop.yaml; default one `bank` connection (see bankConnection). */
  connections?: RawConnection[];
  /** API keys to mint; default alice (analysts), bob (dba), carol (audit), root (platform). */
  apiKeys?: { name: string; groups: string[] }[];
  /** Plaintext keys by name instead of random ones (replicas that share one config). */
  keys?: Record<string, string>;
  /** `identity.oidc` as written in hoop.yaml, beside the API keys. */
  oidc?: Record<string, unknown>;
  /** Default {admin: [platform], auditor: [audit]}. */
  roles?: { admin?: string[]; auditor?: string[] };
  /** Other top-level keys (tls, audit, ...) merged over the defaults. */
  config?: Record<string, unknown>;
  logger?: Logger;
  /** The statement decisions (src/gateway/gateway.ts GatewayOptions.planner). */
  planner?: Planner;
  /** Audit retention's schedule and clock (GatewayOptions.retention). */
  retention?: GatewayOptions['retention'];
  /** This gateway's place among `workers: N` (GatewayOptions.worker): its agent links' 101 say so. */
  worker?: GatewayOptions['worker'];
  /** Changes the parsed config before the gateway starts (parts the file format cannot say yet). */
  adjustConfig?: (config: GatewayConfig) => GatewayConfig;
}

export interface TestGateway {
  url: string;
  /** API key name -> plaintext key. */
  keys: Record<string, string>;
  store: Store;
  /** The gateway's approver notifications (src/gateway/notify.ts). */
  notifier: Notifier;
  config: GatewayConfig;
  /** The gateway's audit retention job, when the config has audit.retention. */
  retention: RetentionJob | null;
  /** The temp dir holding the SQLite store and the signing key. */
  dir: string;
  /** The native PostgreSQL listener (`postgres_listen` in `config`), with its real port; or null. */
  postgresListen: { host: string; port: number; tls: boolean } | null;
  /** Reloads the same config, as `POST /api/v1/admin/reload` does a file's. */
  reload(): Promise<ReloadOutcome>;
  close(): Promise<void>;
}

export const DEFAULT_TEST_KEYS = [
  { name: 'alice', groups: ['analysts'] },
  { name: 'bob', groups: ['dba'] },
  { name: 'carol', groups: ['audit'] },
  { name: 'root', groups: ['platform'] },
];

/** The shared upstream as a hoop.yaml connection named `name` (SCRAM user, no TLS). */
export function bankConnection(upstream: UpstreamInfo, overrides: RawConnection = {}): RawConnection {
  const user = upstream.users.scram;
  return {
    name: 'bank',
    type: 'postgres',
    upstream: { host: upstream.host, port: upstream.port, database: upstream.database, user, password: passwordOf(user), sslmode: 'disable' },
    access: ['analysts', 'dba'],
    ...overrides,
  };
}

export function newApiKey(): string {
  return `hoop_${randomBytes(32).toString('base64url')}`;
}

export async function startTestGateway(opts: TestGatewayOptions): Promise<TestGateway> {
  const dir = mkdtempSync(join(tmpdir(), 'hoop-gw-'));
  const keys: Record<string, string> = {};
  const apiKeys = (opts.apiKeys ?? DEFAULT_TEST_KEYS).map((k) => {
    keys[k.name] = opts.keys?.[k.name] ?? newApiKey();
    return { name: k.name, sha256: apiKeyHash(keys[k.name]!), groups: k.groups };
  });
  const raw: Record<string, unknown> = {
    listen: '127.0.0.1:0',
    store: opts.store ?? `sqlite:${join(dir, 'hoop.db')}`,
    identity: { api_keys: apiKeys, ...(opts.oidc ? { oidc: opts.oidc } : {}) },
    roles: { admin: ['platform'], auditor: ['audit'], ...opts.roles },
    connections: opts.connections ?? [bankConnection(opts.upstream)],
    audit: { payload_limit: '1MiB', signing_key: join(dir, 'signing.key') },
    ...opts.config,
  };
  try {
    const parsed = parseConfig(raw, 'test-gateway.yaml', dir);
    const config = opts.adjustConfig ? opts.adjustConfig(parsed) : parsed;
    const logger = opts.logger ?? pino({ level: process.env['HOOP_TEST_LOG'] ?? 'silent' }, pino.destination(2));
    const gateway = await startGateway(config, { logger, reloadFrom: () => config, ...(opts.planner ? { planner: opts.planner } : {}), ...(opts.retention ? { retention: opts.retention } : {}), ...(opts.worker ? { worker: opts.worker } : {}) });
    return {
      url: gateway.url,
      keys,
      store: gateway.store,
      notifier: gateway.notifier,
      config,
      retention: gateway.retention,
      dir,
      postgresListen: gateway.postgresListen,
      reload: () => gateway.reload('api', null),
      async close() {
        try {
          await gateway.close();
        } finally {
          rmSync(dir, { recursive: true, force: true });
        }
      },
    };
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
}

/** One call of the gateway's HTTP API as the test identity `who` (a key of `gw.keys`); the JSON body or null. */
export async function apiCall(gw: TestGateway, method: 'GET' | 'POST', path: string, who: string, body?: unknown): Promise<{ status: number; json: any }> {
  const res = await request(`${gw.url}/api/v1${path}`, {
    method,
    headers: { authorization: `Bearer ${gw.keys[who]!}`, ...(body ? { 'content-type': 'application/json' } : {}) },
    ...(body ? { body: JSON.stringify(body) } : {}),
  });
  return { status: res.statusCode, json: await res.body.json().catch(() => null) };
}
