/**
 * The one-hop path: the gateway's own PostgreSQL listener (`postgres_listen`), for servers, BI
 * tools and jobs that cannot run `hoop connect`. A client connects as to any PostgreSQL server:
 *
 *   database  = the connection's name              (postgresql://alice@gw:15432/bank)
 *   password  = a bearer credential: an API key or an OIDC access token (PGPASSWORD, .pgpass)
 *   user      = a name of that identity: the API key's name, the OIDC subject, or its email
 *               (any case): logs and pg_stat_activity-style views never show a misleading name
 *   reason    = options='-c hoop.reason=…' where the connection has require_reason
 *
 * The login (protocols/postgres/login.ts) answers SSLRequest with the gateway's `tls`
 * certificate; a connection without TLS is refused before any password is asked for, except
 * from a loopback peer. The password is then asked for with AuthenticationCleartextPassword and
 * checked exactly as the HTTP API checks a Bearer header (the live config's AuthenticatorChain);
 * the admission is the tunnel's (access groups, require_reason, grants, database roles), and the
 * session is served by the same SessionHost (limits, policy, write-ahead audit), recorded with
 * `path: "native"`. Failures are recorded as the HTTP path records them: auth.failed (bad or
 * expired credential, plaintext from afar, a flood) and access.denied (a user name that is not
 * the credential's, a refused admission). Failed logins are limited per source address: past the
 * burst, logins from that address are refused for the rest of the window, recorded once.
 *
 * A CancelRequest (plain or in TLS: libpq sends it without) reaches the session whose key it
 * carries, among the sessions this listener opened only (engine.ts `keyCancel`).
 */
import { randomUUID } from 'node:crypto';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { createSecureContext, type SecureContext } from 'node:tls';
import { AuthError, errorMessage, isHoopError, ProtocolError } from '../errors.js';
import type { Source } from '../audit/event.js';
import type { Identity } from '../identity/identity.js';
import { isLoopbackHost } from '../net/loopback.js';
import type { SessionContext, SessionHooks } from '../protocols/engine.js';
import { ClientLogin, startupOption } from '../protocols/postgres/login.js';
import { SQLSTATE_INVALID_PASSWORD, sqlstateOf } from '../protocols/postgres/sqlstate.js';
import { DeniedError, admitConnection, recordRefusal } from './access.js';
import { namesIdentity } from './authz.js';
import { FailureLimiter, failureKey, recordAuthFailure } from './routes.js';
import type { SessionHost, SessionHostContext } from './session-host.js';

/** Like PostgreSQL's authentication_timeout: a client that never finishes its login is not kept. */
const LOGIN_TIMEOUT_MS = 60_000;
/** Logins in progress at once (unauthenticated sockets); past it new connections are closed at once. */
export const MAX_LOGINS_IN_PROGRESS = 1_000;
/** Failed logins one address may make per window before its logins are refused for the rest of it. */
export const LOGIN_FAILURE_BURST = 10;
export const LOGIN_FAILURE_WINDOW_MS = 60_000;
/** What the access.denied record of a refusal on this listener names as its `path`. */
const RECORD_PATH = 'postgres_listen';
/** What the record says it came by. */
const VIA = 'native';
/** cannot_connect_now: the gateway is stopping. */
const SQLSTATE_CANNOT_CONNECT_NOW = '57P03';

/** Where the listener is, as the API tells clients (`postgres_listen` of ConnectionInfo). */
export interface NativeAddress {
  host: string;
  port: number;
  /** The listener offers TLS (the gateway has `tls`); without it only loopback clients get in. */
  tls: boolean;
}

export class NativeListener {
  private readonly server: Server;
  private readonly secureContext: SecureContext | null;
  private readonly logins = new Set<Socket>();
  /** Failed logins per address: past the burst, logins from it are refused for the window. */
  private readonly failures: FailureLimiter;
  /** One record per address and window of the logins refused for a flood. */
  private readonly floods = new FailureLimiter(1, LOGIN_FAILURE_WINDOW_MS);
  private bound: AddressInfo | null = null;
  /** When the last "too many logins in progress" warning was logged. */
  private fullSince = Number.NEGATIVE_INFINITY;

  constructor(private readonly ctx: SessionHostContext, private readonly sessions: SessionHost, tls: { cert: string; key: string } | undefined) {
    this.secureContext = tls ? createSecureContext({ cert: tls.cert, key: tls.key, minVersion: 'TLSv1.2' }) : null;
    // Per address only: a global cap would stop the counting.
    this.failures = new FailureLimiter(ctx.cluster?.share(LOGIN_FAILURE_BURST) ?? LOGIN_FAILURE_BURST, LOGIN_FAILURE_WINDOW_MS, Number.POSITIVE_INFINITY);
    this.server = createServer((socket) => this.accept(socket));
  }

  /** Where it listens, once it does. */
  get address(): NativeAddress | null {
    return this.bound ? { host: this.bound.address, port: this.bound.port, tls: this.secureContext !== null } : null;
  }

  async listen(host: string, port: number): Promise<NativeAddress> {
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, host, () => {
        this.server.off('error', reject);
        resolve();
      });
    });
    this.bound = this.server.address() as AddressInfo;
    return this.address!;
  }

  /** Stops accepting and drops logins in progress; live sessions are the SessionHost's to end. */
  async close(): Promise<void> {
    const closed = new Promise<void>((r) => this.server.close(() => r()));
    for (const s of this.logins) s.destroy();
    await closed;
  }

  private accept(socket: Socket): void {
    socket.on('error', () => {});
    if (this.logins.size >= MAX_LOGINS_IN_PROGRESS) {
      // Sockets that never finish logging in must not exhaust the gateway's descriptors (logged once a minute at most).
      if (Date.now() - this.fullSince > LOGIN_FAILURE_WINDOW_MS) {
        this.fullSince = Date.now();
        this.ctx.logger.warn({ address: socket.remoteAddress ?? null, logins: this.logins.size }, 'native listener: too many logins in progress; new connections are closed');
      }
      return void socket.destroy();
    }
    socket.setNoDelay(true);
    this.logins.add(socket);
    const timer = setTimeout(() => socket.destroy(), LOGIN_TIMEOUT_MS);
    timer.unref();
    void this.login(socket).finally(() => {
      clearTimeout(timer);
      this.logins.delete(socket);
    });
  }

  private async login(socket: Socket): Promise<void> {
    const address = socket.remoteAddress ?? null;
    const source: Source = { address, application: null };
    const login = new ClientLogin(socket, this.secureContext);
    try {
      const opening = await login.open();
      if (!opening) return void socket.destroy();
      if (opening.kind === 'cancel') return this.cancel(login);
      const { parameters } = opening;
      source.application = cleanText(parameters.application_name, 200);
      if (!login.encrypted && !(address !== null && isLoopbackHost(address))) {
        // Refused before any password is asked for: it would cross the network in clear.
        const e = new AuthError('HOOP_AUTH_REJECTED', 'TLS is required: this listener accepts unencrypted connections from loopback only');
        recordAuthFailure(this.ctx, source, e, { stage: 'tls', via: VIA });
        return login.refuse('28000', `hoop: ${e.message}; connect with sslmode=verify-full (or require)${this.secureContext ? '' : ', once the gateway has a tls certificate'}`);
      }
      const key = failureKey(address);
      if (this.failures.full(key)) return this.refuseFlood(login, source, key);
      if (opening.protocol >>> 16 !== 3) {
        return login.refuse(sqlstateOf('HOOP_PROTOCOL'), `hoop: unsupported frontend protocol ${opening.protocol >>> 16}.${opening.protocol & 0xffff}: hoop speaks 3.0`);
      }
      const user = parameters.user ?? '';
      if (user === '') return login.refuse('28000', 'hoop: no user name given: connect as the name of your API key, or your OIDC subject or email');
      const database = parameters.database || user; // as PostgreSQL: the database defaults to the user name
      const password = await login.askPassword();
      if (password === null) return void login.stream.destroy(); // libpq asks the person for one, then reconnects
      const identity = await this.authenticate(login, source, key, user, password);
      if (!identity) return;
      await this.admit(login, source, identity, database, parameters);
    } catch (err) {
      if (socket.destroyed) return; // gone, or a failed TLS handshake: nobody to tell
      if (err instanceof ProtocolError) return login.refuse(sqlstateOf('HOOP_PROTOCOL'), `hoop: ${err.message}`);
      // The store (a grant lookup) or something else failed: say so without details, log them.
      this.ctx.logger.warn({ err: errorMessage(err), address }, 'native listener: login failed');
      login.refuse(isHoopError(err) ? sqlstateOf(err.code) : sqlstateOf('HOOP_INTERNAL'), isHoopError(err) ? `hoop: ${err.message}` : 'hoop: internal error; the gateway log says more');
    }
  }

  /** The password as a bearer credential, and the user name as a name of its identity; null: refused (and recorded). */
  private async authenticate(login: ClientLogin, source: Source, key: string, user: string, password: string): Promise<Identity | null> {
    const shownUser = JSON.stringify(user.slice(0, 64));
    let identity: Identity;
    try {
      identity = await this.ctx.authn.authenticateToken(password);
    } catch (err) {
      const e = err instanceof AuthError ? err : new AuthError('HOOP_AUTH_REJECTED', 'authentication failed', { cause: err });
      // An identity provider that cannot be reached is not the client's failed guess.
      if (e.code !== 'HOOP_NETWORK') this.failures.admit(key);
      recordAuthFailure(this.ctx, source, e, { stage: 'authenticate', via: VIA, user: user.slice(0, 64) });
      login.refuse(SQLSTATE_INVALID_PASSWORD, `hoop: password authentication failed for user ${shownUser}: ${e.message}; the password is an API key or an access token (hoop connect --print-native shows how)`);
      return null;
    }
    if (!namesIdentity(identity, user)) {
      this.failures.admit(key);
      const why = `the user name ${shownUser} does not name the identity the password belongs to; connect as ${JSON.stringify(nameOf(identity))}`;
      const err = new DeniedError('HOOP_AUTH_REJECTED', why, { stage: 'user', data: { user: user.slice(0, 64) } });
      recordRefusal(this.ctx, { source, path: RECORD_PATH }, identity, err, VIA);
      login.refuse('28000', `hoop: ${why}`);
      return null;
    }
    return identity;
  }

  /** The tunnel's admission; then the session, served as every session is (session-host.ts). */
  private async admit(login: ClientLogin, source: Source, identity: Identity, database: string, parameters: Record<string, string>): Promise<void> {
    const reason = cleanText(startupOption(parameters.options, 'hoop.reason') ?? undefined, 1000);
    let admission: Awaited<ReturnType<typeof admitConnection>>;
    try {
      admission = await admitConnection(this.ctx.config, identity, database, reason, (s, c) => this.ctx.approvals.activeGrant(s, c));
    } catch (err) {
      if (!(err instanceof DeniedError)) throw err;
      recordRefusal(this.ctx, { source, path: RECORD_PATH }, identity, err, VIA);
      const told = err.denial.stage === 'reason'
        ? `connection ${database} requires a reason for every session; give one in the startup options: options='-c hoop.reason=…' (PGOPTIONS="-c hoop.reason=INC-1234\\ why")`
        : err.message;
      return login.refuse(sqlstateOf(err.code), `hoop: ${told}`);
    }
    const { connection, grant } = admission;
    if (connection.type !== 'postgres') return login.refuse('08004', `hoop: connection ${connection.name} is not a PostgreSQL database`);
    if (this.sessions.isClosing) return login.refuse(SQLSTATE_CANNOT_CONNECT_NOW, 'hoop: the gateway is shutting down; reconnect in a moment');
    const preread = await login.handOff();
    const stream = login.stream;
    // Not awaited: from here the session is the SessionHost's (a shutdown ends it with a FATAL).
    void this.sessions.serve(stream, {
      identity,
      connection,
      grant,
      sessionId: randomUUID(),
      path: 'native',
      tls: login.tlsVersion,
      source,
      requestPath: RECORD_PATH,
      reason,
      preread,
      keyCancel: true,
      terminate: () => stream.destroy(),
    });
  }

  /** A CancelRequest: the engine finds the session by its key (among this listener's) and never answers. */
  private async cancel(login: ClientLogin): Promise<void> {
    const preread = await login.handOff();
    await this.ctx.engines('postgres').serve(login.stream, cancelContext(preread));
  }

  private refuseFlood(login: ClientLogin, source: Source, key: string): void {
    const address = source.address ?? 'an unknown address';
    const admitted = this.floods.admit(key);
    if (admitted !== null) {
      this.ctx.logger.warn({ address }, 'native listener: too many failed logins; refusing logins from this address for a while');
      this.ctx.recorder.recordLater({
        type: 'auth.failed',
        actor: null,
        source,
        data: {
          stage: 'rate_limit', via: VIA, code: 'HOOP_AUTH_REJECTED',
          reason: `too many failed logins from ${address} (${LOGIN_FAILURE_BURST} within ${LOGIN_FAILURE_WINDOW_MS / 1000} s); logins refused for the rest of the window`,
          ...(admitted > 0 ? { suppressed: admitted } : {}),
        },
      });
    }
    login.refuse('28000', `hoop: too many failed logins from ${address}; try again later`);
  }
}

/** The name a client should log in with: the API key's name, else the email, else the subject. */
function nameOf(identity: Identity): string {
  if (identity.method === 'api_key' && identity.subject.startsWith('apikey:')) return identity.subject.slice('apikey:'.length);
  return identity.email ?? identity.subject;
}

/** A client-given text for the record: no control characters, trimmed, bounded; null when empty. */
function cleanText(value: string | undefined, max: number): string | null {
  if (value === undefined) return null;
  // eslint-disable-next-line no-control-regex
  const text = value.replace(/[\x00-\x1f\x7f]+/g, ' ').trim();
  return text === '' ? null : text.slice(0, max);
}

const NO_SESSION = (): never => {
  throw new Error('a cancel stream carries no session');
};
const CANCEL_HOOKS: SessionHooks = {
  sessionStart: async () => NO_SESSION(),
  plan: NO_SESSION,
  queryStart: async () => NO_SESSION(),
  queryEnd: () => {},
  sessionEnd: () => {},
  protocolError: () => {},
};

/** The context of a stream that carries only a CancelRequest: it reaches sessions by key alone. */
function cancelContext(preread: Buffer): SessionContext {
  return {
    upstream: { host: '', port: 0, database: '', user: '', sslmode: 'disable' },
    dial: () => Promise.reject(new Error('a cancel stream dials nothing')),
    hooks: CANCEL_HOOKS,
    payloadLimit: 0,
    owner: '',
    keyCancel: true,
    preread,
  };
}
