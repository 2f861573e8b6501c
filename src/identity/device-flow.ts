/**
 * The CLI side of OAuth with `openid-client` v6: discovery (OpenID Connect Discovery 1.0), the
 * Device Authorization Grant (RFC 8628), refresh (RFC 6749 §6), client credentials (RFC 6749
 * §4.4) and revocation (RFC 7009). Every failure becomes a HoopError with a one-line message:
 * HOOP_AUTH_REJECTED (exit 4) for what the provider refused or the user abandoned, HOOP_NETWORK
 * (exit 1) for a provider that cannot be reached.
 */
import { decodeJwt } from 'jose';
import * as oidc from 'openid-client';
import { AuthError, HoopError } from '../errors.js';
import { isLoopbackHost } from '../net/loopback.js';

/** What `GET /api/v1/auth/config` on the gateway returns when OIDC is configured. */
export interface AuthConfig {
  issuer: string;
  client_id: string;
  audience: string;
  scopes: string[] | string;
}

export interface TokenSet {
  accessToken: string;
  refreshToken: string | null;
  /** Absolute expiry of the access token. */
  expiresAt: Date | null;
  /** Claims of the validated ID token, when the provider returned one. */
  idClaims: Record<string, unknown> | null;
  scope: string | null;
}

export interface DeviceAuthorization {
  userCode: string;
  verificationUri: string;
  verificationUriComplete: string | null;
  expiresIn: number;
  interval: number;
}

export interface ProviderOptions {
  /** Client secret for confidential clients (client credentials). */
  clientSecret?: string;
  /** Per-request HTTP timeout; default 10 s. */
  timeoutMs?: number;
}

/** A discovered provider and the client that talks to it. */
export class OidcClient {
  private constructor(
    readonly issuer: string,
    readonly config: oidc.Configuration,
  ) {}

  /** OpenID Connect Discovery: `/.well-known/openid-configuration` under the issuer. */
  static async discover(issuer: string, clientId: string, options: ProviderOptions = {}): Promise<OidcClient> {
    const url = parseIssuer(issuer);
    const insecure = url.protocol === 'http:';
    let config: oidc.Configuration;
    try {
      config = await oidc.discovery(
        url,
        clientId,
        options.clientSecret === undefined ? { token_endpoint_auth_method: 'none' } : undefined,
        options.clientSecret === undefined ? oidc.None() : oidc.ClientSecretBasic(options.clientSecret),
        {
          timeout: Math.ceil((options.timeoutMs ?? 10_000) / 1000),
          ...(insecure ? { execute: [oidc.allowInsecureRequests] } : {}),
        },
      );
    } catch (err) {
      throw translate(err, issuer);
    }
    return new OidcClient(issuer, config);
  }

  get supportsDeviceFlow(): boolean {
    return typeof this.config.serverMetadata().device_authorization_endpoint === 'string';
  }

  get supportsRevocation(): boolean {
    return typeof this.config.serverMetadata().revocation_endpoint === 'string';
  }

  /** RFC 8628 §3.1–3.2: ask for a device code and a user code. */
  async initiateDeviceAuthorization(scope: string, audience?: string): Promise<DeviceAuthorizationHandle> {
    if (!this.supportsDeviceFlow) {
      throw new AuthError('HOOP_AUTH_REJECTED', `the identity provider ${this.issuer} does not offer the device authorization grant`, {
        hint: 'Enable the device flow for the hoop client at your identity provider.',
      });
    }
    try {
      const params: Record<string, string> = { scope };
      if (audience) params['audience'] = audience; // Auth0-style audience selection; ignored elsewhere
      const response = await oidc.initiateDeviceAuthorization(this.config, params);
      return new DeviceAuthorizationHandle(this, response);
    } catch (err) {
      throw translate(err, this.issuer);
    }
  }

  /** RFC 6749 §6. Providers that rotate refresh tokens return a new one; otherwise keep the old. */
  async refreshTokenGrant(refreshToken: string): Promise<TokenSet> {
    try {
      const tokens = await oidc.refreshTokenGrant(this.config, refreshToken);
      const set = tokenSetOf(tokens);
      return { ...set, refreshToken: set.refreshToken ?? refreshToken };
    } catch (err) {
      throw translate(err, this.issuer, 'refresh');
    }
  }

  /** RFC 6749 §4.4, for service identities. */
  async clientCredentialsGrant(scope?: string, audience?: string): Promise<TokenSet> {
    try {
      const params: Record<string, string> = {};
      if (scope) params['scope'] = scope;
      if (audience) params['audience'] = audience;
      return tokenSetOf(await oidc.clientCredentialsGrant(this.config, params));
    } catch (err) {
      throw translate(err, this.issuer);
    }
  }

  /** RFC 7009. Returns false where the provider has no revocation endpoint. */
  async tokenRevocation(token: string, hint: 'refresh_token' | 'access_token'): Promise<boolean> {
    if (!this.supportsRevocation) return false;
    try {
      await oidc.tokenRevocation(this.config, token, { token_type_hint: hint });
      return true;
    } catch (err) {
      throw translate(err, this.issuer);
    }
  }
}

export class DeviceAuthorizationHandle implements DeviceAuthorization {
  readonly userCode: string;
  readonly verificationUri: string;
  readonly verificationUriComplete: string | null;
  readonly expiresIn: number;
  readonly interval: number;

  constructor(
    private readonly client: OidcClient,
    private readonly response: oidc.DeviceAuthorizationResponse,
  ) {
    this.userCode = response.user_code;
    this.verificationUri = response.verification_uri;
    this.verificationUriComplete = response.verification_uri_complete ?? null;
    this.expiresIn = response.expires_in;
    this.interval = response.interval ?? 5;
  }

  /**
   * RFC 8628 §3.4–3.5: poll the token endpoint at `interval`, five seconds slower after each
   * `slow_down`, until the user finishes, refuses, or the code expires. `signal` is Ctrl-C.
   */
  async pollDeviceAuthorizationGrant(signal?: AbortSignal): Promise<TokenSet> {
    const expiry = AbortSignal.timeout(this.expiresIn * 1000);
    const combined = signal ? AbortSignal.any([signal, expiry]) : expiry;
    // openid-client notices an abort only between its (up to 5 s) sleeps; answer at once instead.
    let onAbort: (() => void) | undefined;
    const aborted = new Promise<never>((_, reject) => {
      onAbort = () => reject(combined.reason);
      combined.addEventListener('abort', onAbort, { once: true });
    });
    try {
      const tokens = await Promise.race([
        oidc.pollDeviceAuthorizationGrant(this.client.config, this.response, undefined, { signal: combined }),
        aborted,
      ]);
      return tokenSetOf(tokens);
    } catch (err) {
      if (signal?.aborted) {
        throw new AuthError('HOOP_AUTH_REJECTED', 'login cancelled', { hint: 'Nothing was stored; run `hoop login` again when ready.' });
      }
      if (expiry.aborted) throw expiredCode();
      throw translate(err, this.client.issuer);
    } finally {
      combined.removeEventListener('abort', onAbort!);
      aborted.catch(() => undefined);
    }
  }
}

function tokenSetOf(tokens: oidc.TokenEndpointResponse & oidc.TokenEndpointResponseHelpers): TokenSet {
  const expiresIn = tokens.expiresIn();
  let idClaims: Record<string, unknown> | null = null;
  try {
    idClaims = (tokens.claims() as Record<string, unknown> | undefined) ?? null;
  } catch {
    idClaims = null;
  }
  return {
    accessToken: tokens.access_token,
    refreshToken: tokens.refresh_token ?? null,
    expiresAt: expiresIn === undefined ? jwtExpiry(tokens.access_token) : new Date(Date.now() + expiresIn * 1000),
    idClaims,
    scope: tokens.scope ?? null,
  };
}

/**
 * Without `expires_in`, a JWT access token's own `exp` (read, not verified: it only schedules the
 * next refresh; the gateway verifies the token) still lets hoop refresh in time.
 */
function jwtExpiry(token: string): Date | null {
  try {
    const { exp } = decodeJwt(token);
    return typeof exp === 'number' ? new Date(exp * 1000) : null;
  } catch {
    return null;
  }
}

function parseIssuer(issuer: string): URL {
  let url: URL;
  try {
    url = new URL(issuer);
  } catch {
    throw new HoopError('HOOP_AUTH_REJECTED', `the gateway announced an invalid issuer URL: ${issuer}`);
  }
  if (url.protocol === 'https:') return url;
  if (url.protocol === 'http:' && isLoopbackHost(url.hostname)) return url;
  throw new AuthError('HOOP_AUTH_REJECTED', `refusing to log in over plain http to ${issuer}`, {
    hint: 'The identity provider must use https (http is only accepted on loopback for the demo).',
  });
}

function expiredCode(): AuthError {
  return new AuthError('HOOP_AUTH_REJECTED', 'the login code expired before it was used', {
    hint: 'Run `hoop login` again and finish in the browser within the time shown.',
  });
}

/** Maps openid-client / oauth4webapi / fetch failures to one-line HoopErrors. */
export function translate(err: unknown, issuer: string, during?: 'refresh'): HoopError {
  if (err instanceof HoopError) return err;
  let oauthError = (err as { error?: unknown }).error;
  if (err instanceof oidc.WWWAuthenticateChallengeError) {
    // 401 with a challenge (RFC 6749 §5.2 invalid_client): the code is in the challenge
    oauthError = err.cause.find((c) => c.parameters.error)?.parameters.error ?? 'invalid_client';
  }
  if (typeof oauthError === 'string') {
    const code = String(oauthError);
    switch (code) {
      case 'expired_token':
        return expiredCode();
      case 'access_denied':
        return new AuthError('HOOP_AUTH_REJECTED', 'the login was denied at the identity provider', {
          hint: 'Run `hoop login` again and allow access, or ask your administrator.',
        });
      case 'invalid_grant':
        return new AuthError(
          'HOOP_AUTH_REJECTED',
          during === 'refresh' ? 'the session at the identity provider has ended (refresh token no longer valid)' : 'the identity provider refused the grant',
          { hint: 'Run `hoop login` again.' },
        );
      case 'invalid_client':
      case 'unauthorized_client':
        return new AuthError('HOOP_AUTH_REJECTED', `the identity provider refused the client (${code})`, {
          hint: 'Check the client id (and secret) the gateway or HOOP_CLIENT_ID/HOOP_CLIENT_SECRET name.',
        });
      default:
        return new AuthError('HOOP_AUTH_REJECTED', `the identity provider refused the request (${safeCode(code)})`);
    }
  }
  if (isNetworkFailure(err)) {
    return new HoopError('HOOP_NETWORK', `cannot reach the identity provider ${issuer}`, {
      cause: err,
      hint: 'Check your network connection and that the provider is up, then try again.',
    });
  }
  const message = err instanceof Error ? err.message : String(err);
  return new HoopError('HOOP_NETWORK', `unexpected answer from the identity provider ${issuer}: ${message}`, { cause: err });
}

function isNetworkFailure(err: unknown): boolean {
  for (let e: unknown = err, i = 0; e && i < 6; e = (e as { cause?: unknown }).cause, i++) {
    if (e instanceof TypeError && /fetch failed|network/i.test(e.message)) return true;
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && /^(ECONNREFUSED|ECONNRESET|ENOTFOUND|EAI_AGAIN|ETIMEDOUT|EHOSTUNREACH|ENETUNREACH|UND_ERR_)/.test(code)) return true;
    const name = (e as { name?: unknown }).name;
    if (name === 'TimeoutError' || name === 'AbortError') return true;
  }
  return false;
}

/** Error codes are RFC 6749 ASCII tokens; anything else is not echoed. */
function safeCode(code: string): string {
  return /^[a-z_]{1,64}$/.test(code) ? code : 'error';
}
