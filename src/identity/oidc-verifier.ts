/**
 * The gateway's OIDC authenticator: verifies bearer JWT access tokens (RFC 9068 shape, RFC 7519
 * claims) against the issuer's published keys.
 *
 * What is checked, in order: the token has JWS compact shape; its `alg` is on the allow-list
 * (asymmetric only: `none` and HMAC are refused before any key lookup, which is what defeats
 * "HS256 signed with the public key"); the signature against the issuer's JWKS (found through
 * OpenID Connect Discovery, cached; an unknown `kid` refetches at most once per cooldown); `iss`
 * equal to the configured issuer; `aud` containing the configured audience; `exp` present and in
 * the future; `nbf` (when present) in the past; `sub` present. Clock tolerance is small.
 */
import {
  createRemoteJWKSet,
  decodeProtectedHeader,
  errors as joseErrors,
  jwtVerify,
  type JWTPayload,
  type JWTVerifyGetKey,
} from 'jose';
import { AuthError, HoopError } from '../errors.js';
import { isLoopbackHost } from '../net/loopback.js';
import type { Authenticator, Identity } from './identity.js';

/** Asymmetric algorithms only. `none` and `HS*` are never accepted, whatever the config says. */
export const ALLOWED_ALGORITHMS = ['RS256', 'PS256', 'ES256', 'EdDSA'] as const;

export interface OidcVerifierOptions {
  issuer: string;
  /** The `aud` value the gateway requires (identity.oidc.audience). */
  audience: string;
  /** Claim holding the groups; a dotted path such as `realm_access.roles` reaches into objects. */
  groupsClaim?: string;
  /** Subset of ALLOWED_ALGORITHMS; default all of them. */
  algorithms?: string[];
  /** Seconds of clock skew tolerated on `exp` and `nbf`; default 30. */
  clockToleranceSec?: number;
  /** Minimum time between two JWKS fetches (the unknown-`kid` refetch is rate-limited by it); default 30 s. */
  jwksCooldownMs?: number;
  /** How long fetched keys are trusted before a refetch; default 10 min. */
  jwksCacheMaxAgeMs?: number;
  /** HTTP timeout for discovery and JWKS; default 5 s. */
  timeoutMs?: number;
  /** For tests: the time to verify at. */
  currentDate?: () => Date;
}

/** Subjects the gateway gives its own identities (`apikey:<name>`, `system:gateway`). */
const RESERVED_SUBJECT = /^(apikey|system):/i;

const JWS_COMPACT = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;

export class OidcVerifier implements Authenticator {
  readonly #issuer: string;
  readonly #audience: string;
  readonly #groupsClaim: string;
  readonly #algorithms: string[];
  readonly #clockTolerance: number;
  readonly #options: OidcVerifierOptions;
  #jwks: JWTVerifyGetKey | null = null;
  #discovering: Promise<JWTVerifyGetKey> | null = null;
  #discoveryFailedAt = 0;

  constructor(options: OidcVerifierOptions) {
    this.#options = options;
    this.#issuer = options.issuer;
    this.#audience = options.audience;
    this.#groupsClaim = options.groupsClaim ?? 'groups';
    const allowed: readonly string[] = ALLOWED_ALGORITHMS;
    const algorithms = options.algorithms ?? [...ALLOWED_ALGORITHMS];
    for (const alg of algorithms) {
      if (!allowed.includes(alg)) {
        throw new HoopError('HOOP_CONFIG_INVALID', `identity.oidc: algorithm ${alg} is not allowed (use ${ALLOWED_ALGORITHMS.join(', ')})`);
      }
    }
    this.#algorithms = algorithms;
    this.#clockTolerance = options.clockToleranceSec ?? 30;
    assertSafeIssuer(options.issuer);
  }

  async authenticate(bearer: string): Promise<Identity | null> {
    if (!JWS_COMPACT.test(bearer)) return null; // not a JWT: let the API key authenticator try
    let alg: unknown;
    try {
      alg = decodeProtectedHeader(bearer).alg;
    } catch {
      return null; // three dot-separated parts that are not a JOSE header: not ours
    }
    if (typeof alg !== 'string' || !this.#algorithms.includes(alg)) {
      throw rejected('algorithm not allowed');
    }
    const keys = await this.#keys();
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(bearer, keys, {
        issuer: this.#issuer,
        audience: this.#audience,
        algorithms: this.#algorithms,
        requiredClaims: ['exp', 'sub'],
        clockTolerance: this.#clockTolerance,
        ...(this.#options.currentDate ? { currentDate: this.#options.currentDate() } : {}),
      }));
    } catch (err) {
      throw reasonFor(err);
    }
    // `sub` names the identity everywhere (session ownership, cancel ownership): it must be a
    // string, and never one of the gateway's own namespaces, or a token could pose as an API key.
    if (typeof payload.sub !== 'string' || payload.sub === '') throw rejected('token has no subject');
    if (RESERVED_SUBJECT.test(payload.sub)) throw rejected('token subject is reserved');
    return identityOf(payload, this.#groupsClaim);
  }

  /** The issuer's key set, found through discovery once; failures retried after a pause. */
  async #keys(): Promise<JWTVerifyGetKey> {
    if (this.#jwks) return this.#jwks;
    if (!this.#discovering) {
      if (Date.now() - this.#discoveryFailedAt < 2_000) {
        throw unreachable(this.#issuer);
      }
      this.#discovering = this.#discover().then(
        (jwks) => {
          this.#jwks = jwks;
          this.#discovering = null;
          return jwks;
        },
        (err: unknown) => {
          this.#discoveryFailedAt = Date.now();
          this.#discovering = null;
          throw err;
        },
      );
    }
    return this.#discovering;
  }

  async #discover(): Promise<JWTVerifyGetKey> {
    const timeout = this.#options.timeoutMs ?? 5_000;
    const metadata = await discoverIssuer(this.#issuer, timeout);
    return createRemoteJWKSet(new URL(metadata.jwks_uri), {
      cooldownDuration: this.#options.jwksCooldownMs ?? 30_000,
      cacheMaxAge: this.#options.jwksCacheMaxAgeMs ?? 600_000,
      timeoutDuration: timeout,
    });
  }
}

/** OpenID Connect Discovery 1.0 §4: fetch the metadata and check it names the same issuer. */
export async function discoverIssuer(issuer: string, timeoutMs = 5_000): Promise<{ issuer: string; jwks_uri: string }> {
  const url = `${issuer.replace(/\/$/, '')}/.well-known/openid-configuration`;
  let body: unknown;
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs), redirect: 'error' });
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    body = await res.json();
  } catch (err) {
    throw unreachable(issuer, err);
  }
  const meta = body as { issuer?: unknown; jwks_uri?: unknown };
  if (meta.issuer !== issuer || typeof meta.jwks_uri !== 'string') {
    // §4.3: the issuer in the document must be exactly the one configured.
    throw new HoopError('HOOP_NETWORK', `the identity provider's discovery document does not match issuer ${issuer}`, {
      hint: 'Check identity.oidc.issuer in the gateway config (exact URL, trailing slash included).',
    });
  }
  assertSafeIssuer(meta.jwks_uri);
  return { issuer: meta.issuer, jwks_uri: meta.jwks_uri };
}

/** http is accepted only on loopback (demo and tests); everything else must be https. */
export function isSafeIssuerUrl(url: string): boolean {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return false;
  }
  return parsed.protocol === 'https:' || (parsed.protocol === 'http:' && isLoopbackHost(parsed.hostname));
}

export function assertSafeIssuer(url: string): void {
  if (isSafeIssuerUrl(url)) return;
  if (!URL.canParse(url)) throw new HoopError('HOOP_CONFIG_INVALID', `identity.oidc.issuer: not a URL: ${url}`);
  throw new HoopError('HOOP_CONFIG_INVALID', `identity.oidc: ${url} must use https (http is allowed only for loopback)`);
}

/** Groups from `claim`: a top-level claim of that exact name wins, else a dotted path. */
export function groupsFrom(payload: Record<string, unknown>, claim: string): string[] {
  let value: unknown = payload[claim];
  if (value === undefined && claim.includes('.')) {
    value = payload;
    for (const part of claim.split('.')) {
      value = value !== null && typeof value === 'object' ? (value as Record<string, unknown>)[part] : undefined;
    }
  }
  if (typeof value === 'string') return value === '' ? [] : [value];
  if (Array.isArray(value)) return value.filter((g): g is string => typeof g === 'string');
  return [];
}

function identityOf(payload: JWTPayload, groupsClaim: string): Identity {
  const str = (v: unknown): string | null => (typeof v === 'string' && v !== '' ? v : null);
  return {
    subject: payload.sub!,
    email: str(payload['email']),
    name: str(payload['name']) ?? str(payload['preferred_username']),
    groups: groupsFrom(payload, groupsClaim),
    method: 'oidc',
    expiresAt: new Date(payload.exp! * 1000),
  };
}

function rejected(reason: string): AuthError {
  return new AuthError('HOOP_AUTH_REJECTED', reason, { hint: 'Run `hoop login` to get a new token.' });
}

function unreachable(issuer: string, cause?: unknown): HoopError {
  return new HoopError('HOOP_NETWORK', `cannot reach the identity provider ${issuer} to verify the token`, {
    cause,
    hint: 'Check that the gateway can reach identity.oidc.issuer.',
  });
}

/** Maps jose's failures to reasons that are precise and safe to show and record. */
function reasonFor(err: unknown): HoopError {
  if (err instanceof joseErrors.JWTExpired) return rejected('token expired');
  if (err instanceof joseErrors.JWTClaimValidationFailed) {
    switch (err.claim) {
      case 'nbf':
        return rejected('token not yet valid');
      case 'aud':
        return rejected('wrong audience');
      case 'iss':
        return rejected('wrong issuer');
      case 'exp':
        return rejected('token has no valid expiry');
      case 'sub':
        return rejected('token has no subject');
      case 'iat':
        return rejected('token issued in the future');
      default:
        return rejected(`claim ${err.claim} invalid`);
    }
  }
  if (err instanceof joseErrors.JOSEAlgNotAllowed) return rejected('algorithm not allowed');
  if (err instanceof joseErrors.JWSSignatureVerificationFailed) return rejected('signature invalid');
  if (err instanceof joseErrors.JWKSNoMatchingKey) return rejected('signed by an unknown key');
  if (err instanceof joseErrors.JWKSMultipleMatchingKeys) return rejected('signing key is ambiguous');
  if (err instanceof joseErrors.JWKSTimeout || err instanceof joseErrors.JWKSInvalid) {
    return new HoopError('HOOP_NETWORK', 'the identity provider did not serve its keys', { cause: err });
  }
  if (err instanceof joseErrors.JWSInvalid || err instanceof joseErrors.JWTInvalid) return rejected('malformed token');
  if (err instanceof joseErrors.JOSENotSupported) return rejected('algorithm not allowed');
  if (err instanceof TypeError) {
    // fetch failures surface as TypeError from the remote key set
    return new HoopError('HOOP_NETWORK', 'cannot reach the identity provider to fetch its keys', { cause: err });
  }
  return rejected('token invalid');
}

/** Builds the authenticator from the gateway config key `identity.oidc`. */
export function oidcAuthenticator(config: {
  issuer: string;
  audience: string;
  groups_claim?: string | undefined;
}): OidcVerifier {
  return new OidcVerifier({
    issuer: config.issuer,
    audience: config.audience,
    ...(config.groups_claim ? { groupsClaim: config.groups_claim } : {}),
  });
}
