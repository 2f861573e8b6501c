import type { Actor, AuthMethod } from '../audit/event.js';

/** Who is calling, as the gateway established it from a bearer credential. */
export interface Identity {
  subject: string;
  email: string | null;
  name: string | null;
  groups: string[];
  method: Exclude<AuthMethod, 'system'>;
  /** When the credential stops being valid; null for API keys. */
  expiresAt: Date | null;
}

/**
 * Turns a bearer credential into an identity, or throws `AuthError` (code HOOP_AUTH_REJECTED)
 * with a reason that is safe to show and to record. API keys and OIDC tokens each implement it;
 * the gateway asks them in turn.
 */
export interface Authenticator {
  /** Returns null when the credential is not of this authenticator's kind. */
  authenticate(bearer: string): Promise<Identity | null>;
}

export function actorOf(identity: Identity): Actor {
  return {
    subject: identity.subject,
    email: identity.email,
    groups: identity.groups,
    auth_method: identity.method,
  };
}
