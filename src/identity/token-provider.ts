/**
 * Hands every command a valid access token for a gateway, refreshing it with the stored refresh
 * token (RFC 6749 §6) shortly before it expires and persisting the new tokens. The CLI registers
 * `storedToken` with `setStoredTokenProvider`; `hoop connect` calls it for every new tunnel, so
 * long-running tunnels get fresh tokens while open ones are never touched.
 *
 * Refresh happens under the credentials lock, re-reading the store first: two hoop processes that
 * both see an expiring token refresh once, which matters where the provider rotates refresh tokens
 * and treats reuse of an old one as theft.
 */
import { AuthError, HoopError } from '../errors.js';
import { CredentialsStore, type StoredCredentials } from './credentials-store.js';
import { OidcClient, type TokenSet } from './device-flow.js';

type Env = Readonly<Record<string, string | undefined>>;

/** Refresh when less than this much lifetime is left (or a fifth of the lifetime, if shorter). */
export const REFRESH_MARGIN_MS = 60_000;

export interface TokenProviderOptions {
  store?: CredentialsStore;
  env?: Env;
  now?: () => Date;
}

export class TokenProvider {
  readonly store: CredentialsStore;
  readonly #env: Env;
  readonly #now: () => Date;

  constructor(options: TokenProviderOptions = {}) {
    this.#env = options.env ?? process.env;
    this.store = options.store ?? new CredentialsStore({ env: this.#env });
    this.#now = options.now ?? (() => new Date());
  }

  /** A valid access token for `gateway`, refreshed if needed; null when nothing is stored. */
  async storedToken(gateway: string): Promise<string | null> {
    const found = await this.store.load(gateway);
    if (!found) return null;
    if (!this.#needsRefresh(found.credentials)) return found.credentials.access_token;
    return (await this.refresh(gateway)).access_token;
  }

  /** Milliseconds until the stored token should be refreshed (capped at an hour). */
  async msUntilRefresh(gateway: string): Promise<number> {
    const found = await this.store.load(gateway);
    if (!found?.credentials.expires_at) return 3_600_000;
    const c = found.credentials;
    return Math.min(Date.parse(c.expires_at!) - this.#marginMs(c) - this.#now().getTime(), 3_600_000);
  }

  /** Refreshes now (if still needed once the lock is held) and stores the result. */
  async refresh(gateway: string, force = false): Promise<StoredCredentials> {
    return this.store.withLock(async () => {
      const found = await this.store.load(gateway);
      if (!found) {
        throw new HoopError('HOOP_NOT_LOGGED_IN', `not logged in to ${gateway}`, { hint: `Run \`hoop login --gateway ${gateway}\`.` });
      }
      const current = found.credentials;
      if (!force && !this.#needsRefresh(current)) return current; // another process refreshed it
      let tokens: TokenSet;
      try {
        tokens = await this.#renew(current);
      } catch (err) {
        // A provider that is briefly unreachable should not end a token that is still valid.
        if (isNetwork(err) && !this.#expired(current)) return current;
        throw loginAgain(gateway, err);
      }
      const next: StoredCredentials = {
        ...current,
        access_token: tokens.accessToken,
        refresh_token: tokens.refreshToken ?? current.refresh_token,
        expires_at: tokens.expiresAt ? tokens.expiresAt.toISOString() : null,
        saved_at: this.#now().toISOString(),
      };
      await this.store.save(next);
      return next;
    });
  }

  async #renew(current: StoredCredentials): Promise<TokenSet> {
    if (current.grant === 'client_credentials') {
      const id = this.#env['HOOP_CLIENT_ID'];
      const secret = this.#env['HOOP_CLIENT_SECRET'];
      if (!id || !secret || id !== current.client_id) {
        throw new AuthError('HOOP_AUTH_REJECTED', 'the service token expired and HOOP_CLIENT_ID/HOOP_CLIENT_SECRET are not set to renew it');
      }
      const client = await OidcClient.discover(current.issuer, id, { clientSecret: secret });
      return client.clientCredentialsGrant();
    }
    if (!current.refresh_token) {
      throw new AuthError('HOOP_AUTH_REJECTED', 'the access token expired and the provider gave no refresh token');
    }
    const client = await OidcClient.discover(current.issuer, current.client_id);
    return client.refreshTokenGrant(current.refresh_token);
  }

  #needsRefresh(c: StoredCredentials): boolean {
    if (!c.expires_at) return false;
    return Date.parse(c.expires_at) - this.#now().getTime() <= this.#marginMs(c);
  }

  /** A minute before expiry, or a fifth of the token's lifetime when that is shorter. */
  #marginMs(c: StoredCredentials): number {
    const expires = Date.parse(c.expires_at ?? '');
    const saved = Date.parse(c.saved_at);
    const lifetime = Number.isFinite(saved) ? expires - saved : Infinity;
    return Math.min(REFRESH_MARGIN_MS, Math.max(lifetime / 5, 1_000));
  }

  #expired(c: StoredCredentials): boolean {
    return c.expires_at !== null && Date.parse(c.expires_at) <= this.#now().getTime();
  }
}

function isNetwork(err: unknown): boolean {
  return err instanceof HoopError && err.code === 'HOOP_NETWORK';
}

function loginAgain(gateway: string, err: unknown): HoopError {
  const reason = err instanceof Error ? err.message : String(err);
  if (isNetwork(err)) {
    return new HoopError('HOOP_NETWORK', `cannot refresh the token for ${gateway}: ${reason}`, {
      cause: err,
      hint: 'Check the network, or run `hoop login` again.',
    });
  }
  // The instruction is in the message itself: `hoop connect` shows only the message per tunnel.
  return new AuthError('HOOP_AUTH_REJECTED', `your login to ${gateway} has expired (${reason}); run \`hoop login --gateway ${gateway}\` again`, {
    cause: err,
  });
}

export interface KeepFreshOptions {
  /** Told once per failure streak: open sessions continue, new connections need a new login. */
  onFailure: (message: string) => void;
  /** Told when a refresh works again after failures (e.g. after `hoop login` elsewhere). */
  onRecovered?: () => void;
  /** Delay before retrying after a failure; default 30 s. */
  retryMs?: number;
}

/**
 * For long-running commands (`hoop connect`): refreshes the stored token in the background just
 * before it expires, so new tunnels start with a valid token and a problem is reported when it
 * happens rather than when the next psql connects. Never touches open tunnels. Returns stop().
 */
export function keepTokenFresh(tokens: TokenProvider, gateway: string, options: KeepFreshOptions): () => void {
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;
  let failing = false;
  const schedule = (ms: number) => {
    if (stopped) return;
    timer = setTimeout(() => void tick(), Math.max(ms, 1_000));
    timer.unref();
  };
  const tick = async () => {
    try {
      await tokens.storedToken(gateway);
      if (failing) options.onRecovered?.();
      failing = false;
      schedule(await tokens.msUntilRefresh(gateway));
    } catch (err) {
      if (!failing) {
        const reason = err instanceof Error ? err.message : String(err);
        options.onFailure(`${reason}; open sessions continue, new connections will fail until you log in again`);
      }
      failing = true;
      schedule(options.retryMs ?? 30_000);
    }
  };
  void tokens.msUntilRefresh(gateway).then(schedule, () => schedule(options.retryMs ?? 30_000));
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}
