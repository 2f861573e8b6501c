/**
 * The configuration the gateway runs on now, and the one place that changes it.
 *
 * A `LiveConfig` is an immutable snapshot: the validated config (with what needs a restart kept
 * from the running one, reload.ts) and everything built from it (the authenticators of
 * `identity.api_keys`, the trusted proxies, connections by name). A reload builds a whole new
 * snapshot and swaps one reference, so whoever holds a snapshot sees one consistent config:
 * an HTTP request reads one for its whole life, a tunnel upgrade decides with one, and never a
 * mix of two files.
 *
 * What reads the CURRENT config instead of the one its session started with: the statement
 * planner, per statement (`holder.connection(name)`: the connection's masking rules, access and
 * hash key as last loaded; `undefined` once a reload removed the connection: refuse). A session
 * keeps what it was admitted with otherwise (its upstream, its limits).
 */
import type { AuthenticatorChain } from './authn.js';
import type { ConnectionConfig, GatewayConfig } from './config.js';
import type { TrustedProxies } from './proxies.js';

/** A connection of a running gateway: its masking hash key is always resolved. */
export type LiveConnection = ConnectionConfig & { readonly maskingKey: Buffer };

export interface LiveConfig {
  /** Every connection here has `maskingKey` set (its own hash_key, else the gateway's masking.key). */
  readonly config: GatewayConfig;
  readonly authn: AuthenticatorChain;
  readonly proxies: TrustedProxies;
  /** When this snapshot took effect. */
  readonly since: Date;
  connection(name: string): LiveConnection | undefined;
}

/** What the gateway builds a snapshot from besides the config: parts that live as long as the process. */
export interface LiveParts {
  /** The gateway-wide masking hash key (hash-key.ts). */
  maskingKey: Buffer;
  authn(config: GatewayConfig): AuthenticatorChain;
  proxies(config: GatewayConfig): TrustedProxies;
}

export function buildLiveConfig(config: GatewayConfig, parts: LiveParts): LiveConfig {
  const connections: LiveConnection[] = config.connections.map((c) => Object.freeze({ ...c, maskingKey: c.maskingKey ?? parts.maskingKey }));
  const withKeys: GatewayConfig = Object.freeze({ ...config, connections });
  const byName = new Map(connections.map((c) => [c.name, c]));
  return Object.freeze({
    config: withKeys,
    authn: parts.authn(withKeys),
    proxies: parts.proxies(withKeys),
    since: new Date(),
    connection: (name: string) => byName.get(name),
  });
}

/** Holds the current snapshot; `replace` is the atomic switch (reload.ts calls it). */
export class ConfigHolder {
  private live: LiveConfig;

  constructor(initial: LiveConfig) {
    this.live = initial;
  }

  /** The snapshot in effect now. Read it once per decision and use that object throughout. */
  current(): LiveConfig {
    return this.live;
  }

  /**
   * The connection as configured now, for a decision about a new statement (the planner):
   * masking rules (`masking`), the hash key (`maskingKey`, always set), access, limits.
   */
  connection(name: string): LiveConnection | undefined {
    return this.live.connection(name);
  }

  replace(next: LiveConfig): LiveConfig {
    const previous = this.live;
    this.live = next;
    return previous;
  }
}
