/**
 * Authentication: `Authorization: Bearer X` to an Identity, by asking each Authenticator in turn
 * (API keys now, OIDC JWTs later through the same interface). The first that recognises the
 * credential decides; an AuthError it throws is final. Reasons are safe to show and to record;
 * tokens are never logged or recorded.
 */
import { AuthError, isHoopError } from '../errors.js';
import type { Authenticator, Identity } from '../identity/identity.js';

/** Longer than any API key or JWT we accept; refuses before hashing or parsing megabytes. */
const MAX_BEARER_LENGTH = 16 * 1024;

export class AuthenticatorChain {
  constructor(private readonly authenticators: readonly Authenticator[]) {}

  /** Identity for the request's Authorization header value; throws AuthError otherwise. */
  async authenticate(authorization: string | undefined): Promise<Identity> {
    return this.authenticateToken(bearerOf(authorization));
  }

  /**
   * Identity for a bearer credential given without a header (the native PostgreSQL listener's
   * password): the same checks as `authenticate`, by the same authenticators.
   */
  async authenticateToken(bearer: string): Promise<Identity> {
    if (bearer === '') throw new AuthError('HOOP_NOT_LOGGED_IN', 'missing bearer token', { hint: 'set HOOP_TOKEN to an API key, or run hoop login' });
    if (bearer.length > MAX_BEARER_LENGTH) throw new AuthError('HOOP_AUTH_REJECTED', 'bearer token too long');
    if (!BEARER_TOKEN.test(bearer)) throw new AuthError('HOOP_AUTH_REJECTED', 'malformed bearer token (expected an API key or an access token)');
    for (const a of this.authenticators) {
      let identity: Identity | null;
      try {
        identity = await a.authenticate(bearer);
      } catch (err) {
        if (err instanceof AuthError) throw err;
        // An authenticator that breaks (JWKS unreachable, ...) must not let anyone in.
        throw new AuthError(isHoopError(err) && err.code === 'HOOP_NETWORK' ? 'HOOP_NETWORK' : 'HOOP_AUTH_REJECTED',
          'the credential could not be verified', { cause: err });
      }
      if (identity) return identity;
    }
    throw new AuthError('HOOP_AUTH_REJECTED', 'unrecognised bearer token', {
      hint: 'use an API key, or run hoop login',
    });
  }
}

/** RFC 6750 section 2.1's b64token. */
const BEARER_TOKEN = /^[A-Za-z0-9\-._~+/]+=*$/;

/** RFC 6750 section 2.1: `Authorization: Bearer <b64token>`; the scheme is case-insensitive. */
export function bearerOf(authorization: string | undefined): string {
  if (authorization === undefined || authorization.trim() === '') {
    throw new AuthError('HOOP_NOT_LOGGED_IN', 'missing bearer token', { hint: 'set HOOP_TOKEN to an API key, or run hoop login' });
  }
  const m = /^Bearer +([A-Za-z0-9\-._~+/]+=*) *$/i.exec(authorization);
  if (!m) throw new AuthError('HOOP_AUTH_REJECTED', 'malformed Authorization header (expected "Bearer <token>")');
  if (m[1]!.length > MAX_BEARER_LENGTH) throw new AuthError('HOOP_AUTH_REJECTED', 'bearer token too long');
  return m[1]!;
}
