/**
 * `hoop login` without the terminal: ask the gateway which provider it trusts
 * (`GET /api/v1/auth/config`), obtain tokens (device flow or client credentials), confirm the
 * gateway accepts them (`GET /api/v1/me`), and only then store them. Nothing is written until
 * the gateway has said yes, so a failed or cancelled login leaves no half-written credentials.
 */
import { AuthError, HoopError } from '../errors.js';
import type { StoredCredentials } from './credentials-store.js';
import { OidcClient, type AuthConfig, type DeviceAuthorization, type TokenSet } from './device-flow.js';

export interface GatewayIdentity {
  subject: string;
  email: string | null;
  name: string | null;
  groups: string[];
  method: string;
  expires_at: string | null;
}

const HTTP_TIMEOUT_MS = 10_000;

/** The gateway's OIDC settings; HOOP_USAGE-like error when it has none. */
export async function fetchAuthConfig(gateway: string): Promise<AuthConfig> {
  const body = await getJson(gateway, '/api/v1/auth/config');
  const c = body as Partial<AuthConfig> & { oidc?: unknown };
  if (c.oidc === null || typeof c.issuer !== 'string' || typeof c.client_id !== 'string') {
    throw new AuthError('HOOP_AUTH_REJECTED', `${gateway} has no OIDC login configured`, {
      hint: 'Use an API key instead: export HOOP_TOKEN=<key>.',
    });
  }
  return {
    issuer: c.issuer,
    client_id: c.client_id,
    audience: typeof c.audience === 'string' ? c.audience : '',
    scopes: c.scopes ?? ['openid', 'profile', 'email', 'offline_access'],
  };
}

/** The identity the gateway derives from `token`: the proof that login worked end to end. */
export async function fetchGatewayIdentity(gateway: string, token: string): Promise<GatewayIdentity> {
  const body = (await getJson(gateway, '/api/v1/me', token)) as Partial<GatewayIdentity>;
  return {
    subject: String(body.subject ?? ''),
    email: typeof body.email === 'string' ? body.email : null,
    name: typeof body.name === 'string' ? body.name : null,
    groups: Array.isArray(body.groups) ? body.groups.filter((g): g is string => typeof g === 'string') : [],
    method: String(body.method ?? 'oidc'),
    expires_at: typeof body.expires_at === 'string' ? body.expires_at : null,
  };
}

export function scopeString(scopes: string[] | string): string {
  return Array.isArray(scopes) ? scopes.join(' ') : scopes;
}

export interface DeviceLoginOptions {
  gateway: string;
  config: AuthConfig;
  /** Called once with what the user must open and type. */
  prompt: (authorization: DeviceAuthorization) => void | Promise<void>;
  signal?: AbortSignal;
}

/** RFC 8628 end to end; returns credentials ready to store (not yet stored). */
export async function deviceLogin(options: DeviceLoginOptions): Promise<{ credentials: StoredCredentials; identity: GatewayIdentity }> {
  const client = await OidcClient.discover(options.config.issuer, options.config.client_id);
  const handle = await client.initiateDeviceAuthorization(scopeString(options.config.scopes), options.config.audience || undefined);
  await options.prompt(handle);
  const tokens = await handle.pollDeviceAuthorizationGrant(options.signal);
  return finish(options.gateway, options.config, 'device', tokens);
}

export interface ClientCredentialsLoginOptions {
  gateway: string;
  config: AuthConfig;
  clientId: string;
  clientSecret: string;
}

/** RFC 6749 §4.4 for service identities (HOOP_CLIENT_ID / HOOP_CLIENT_SECRET). */
export async function clientCredentialsLogin(
  options: ClientCredentialsLoginOptions,
): Promise<{ credentials: StoredCredentials; identity: GatewayIdentity }> {
  const client = await OidcClient.discover(options.config.issuer, options.clientId, { clientSecret: options.clientSecret });
  const tokens = await client.clientCredentialsGrant(undefined, options.config.audience || undefined);
  return finish(options.gateway, { ...options.config, client_id: options.clientId }, 'client_credentials', tokens);
}

async function finish(
  gateway: string,
  config: AuthConfig,
  grant: StoredCredentials['grant'],
  tokens: TokenSet,
): Promise<{ credentials: StoredCredentials; identity: GatewayIdentity }> {
  let identity: GatewayIdentity;
  try {
    identity = await fetchGatewayIdentity(gateway, tokens.accessToken);
  } catch (err) {
    if (err instanceof HoopError && err.code !== 'HOOP_NETWORK') {
      throw new AuthError('HOOP_AUTH_REJECTED', `the identity provider signed you in, but ${gateway} refused the token: ${err.message}`, {
        cause: err,
        hint: 'Ask the gateway administrator to check identity.oidc (issuer, audience) against the provider.',
      });
    }
    throw err;
  }
  const now = new Date();
  const credentials: StoredCredentials = {
    gateway,
    issuer: config.issuer,
    client_id: config.client_id,
    grant,
    access_token: tokens.accessToken,
    refresh_token: tokens.refreshToken,
    expires_at: tokens.expiresAt?.toISOString() ?? identity.expires_at,
    subject: identity.subject,
    email: identity.email ?? (typeof tokens.idClaims?.['email'] === 'string' ? tokens.idClaims['email'] : null),
    groups: identity.groups,
    saved_at: now.toISOString(),
  };
  return { credentials, identity };
}

async function getJson(gateway: string, path: string, token?: string): Promise<unknown> {
  let res: Response;
  try {
    res = await fetch(`${gateway}${path}`, {
      headers: { accept: 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
      signal: AbortSignal.timeout(HTTP_TIMEOUT_MS),
      redirect: 'error',
    });
  } catch (err) {
    throw new HoopError('HOOP_NETWORK', `cannot reach the gateway ${gateway}`, {
      cause: err,
      hint: 'Check the URL and that the gateway is running.',
    });
  }
  let body: unknown;
  try {
    body = await res.json();
  } catch {
    throw new HoopError('HOOP_NETWORK', `${gateway}${path} did not answer with JSON (HTTP ${res.status}); is this a hoop gateway?`);
  }
  if (!res.ok) {
    const e = (body as { error?: { code?: unknown; message?: unknown } }).error;
    const message = typeof e?.message === 'string' ? e.message : `HTTP ${res.status}`;
    const code = res.status === 401 ? 'HOOP_AUTH_REJECTED' : res.status === 403 ? 'HOOP_FORBIDDEN' : 'HOOP_INTERNAL';
    throw new HoopError(code, message);
  }
  return body;
}
