/**
 * API keys from the gateway config (`identity.api_keys`): the config holds only each key's
 * SHA-256, so a leaked config does not leak keys. A presented key is hashed and compared in
 * constant time against every configured hash (no early exit), so timing reveals neither which
 * entry matched nor how much of a hash did.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { AuthError } from '../errors.js';
import type { Authenticator, Identity } from './identity.js';

export interface ApiKeyEntry {
  name: string;
  /** Lowercase hex of SHA-256 over the key's UTF-8 bytes. */
  sha256: string;
  groups: string[];
}

/** A compact JWS (header.payload.signature, base64url): that is OIDC's to judge, not ours. */
const JWT_SHAPE = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;

export class ApiKeyAuthenticator implements Authenticator {
  private readonly entries: { entry: ApiKeyEntry; digest: Buffer }[];

  constructor(keys: readonly ApiKeyEntry[]) {
    this.entries = keys.map((entry) => ({ entry: { ...entry, groups: [...entry.groups] }, digest: Buffer.from(entry.sha256, 'hex') }));
  }

  async authenticate(bearer: string): Promise<Identity | null> {
    if (JWT_SHAPE.test(bearer)) return null;
    const presented = sha256(bearer);
    let match: ApiKeyEntry | null = null;
    for (const { entry, digest } of this.entries) {
      if (timingSafeEqual(presented, digest) && match === null) match = entry;
    }
    if (!match) throw new AuthError('HOOP_AUTH_REJECTED', 'unknown API key', { hint: 'check HOOP_TOKEN, or ask an administrator for a key' });
    return {
      subject: `apikey:${match.name}`,
      name: match.name,
      email: null,
      groups: [...match.groups],
      method: 'api_key',
      expiresAt: null,
    };
  }
}

function sha256(text: string): Buffer {
  return createHash('sha256').update(text, 'utf8').digest();
}

/** The value to put in `identity.api_keys[].sha256` for a key. */
export function apiKeyHash(key: string): string {
  return sha256(key).toString('hex');
}
