/**
 * `hoop connect <name> --print-native`: a libpq connection URI ("Connection URIs" in the libpq
 * documentation) for the gateway's own PostgreSQL listener (`postgres_listen`), where the
 * password is the caller's bearer token and the user name one of its identity's names.
 *
 *   postgresql://alice@gw.example:15432/bank?sslmode=verify-full[&sslrootcert=CA][&options=-c%20hoop.reason%3D…]
 *
 * sslmode is verify-full whenever the listener offers TLS (never weaker by default); the root
 * certificate is the one this CLI trusts the gateway with (NODE_EXTRA_CA_CERTS) when set, else
 * libpq's own (PGSSLROOTCERT, ~/.postgresql/root.crt; `sslrootcert=system` on libpq 16+).
 */
import type { MeInfo, NativeListenInfo } from '../api/types.js';
import { isLoopbackHost } from '../net/loopback.js';

export interface NativeTarget {
  uri: string;
  host: string;
  port: number;
  user: string;
  database: string;
  sslmode: 'verify-full' | 'disable';
  sslrootcert: string | null;
}

/** The name the native listener takes for this identity: the API key's name, else the email, else the subject. */
export function nativeUserName(me: Pick<MeInfo, 'subject' | 'email' | 'method'>): string {
  if (me.method === 'api_key' && me.subject.startsWith('apikey:')) return me.subject.slice('apikey:'.length);
  return me.email ?? me.subject;
}

/**
 * The target for `listen` (as the gateway reports it) reached through `gateway` (the API's URL):
 * a wildcard listen address means the gateway's own host name.
 */
export function nativeTarget(o: {
  listen: NativeListenInfo;
  gateway: string;
  me: Pick<MeInfo, 'subject' | 'email' | 'method'>;
  database: string;
  reason?: string | undefined;
  rootCert?: string | undefined;
  /** Put into the URI as its password (only when asked for: it is a credential). */
  password?: string | undefined;
}): NativeTarget {
  const wildcard = o.listen.host === '0.0.0.0' || o.listen.host === '::';
  const host = wildcard ? unbracket(new URL(o.gateway).hostname) : o.listen.host;
  const user = nativeUserName(o.me);
  const sslmode = o.listen.tls ? 'verify-full' : 'disable';
  const sslrootcert = o.listen.tls && o.rootCert ? o.rootCert : null;
  const query = [`sslmode=${sslmode}`];
  if (sslrootcert) query.push(`sslrootcert=${encodeURIComponent(sslrootcert)}`);
  if (o.reason) query.push(`options=${encodeURIComponent(`-c hoop.reason=${escapeOption(o.reason)}`)}`);
  const auth = `${encodeURIComponent(user)}${o.password !== undefined ? `:${encodeURIComponent(o.password)}` : ''}`;
  const hostInUri = host.includes(':') ? `[${host}]` : host;
  const uri = `postgresql://${auth}@${hostInUri}:${o.listen.port}/${encodeURIComponent(o.database)}?${query.join('&')}`;
  return { uri, host, port: o.listen.port, user, database: o.database, sslmode, sslrootcert };
}

/** Whether a client elsewhere can log in: without TLS, only from the listener's own machine. */
export function reachableWithoutTls(target: NativeTarget): boolean {
  return target.sslmode !== 'disable' || isLoopbackHost(target.host);
}

/** A value inside `options`, as the server splits them (pg_split_opts): whitespace and backslashes escaped. */
function escapeOption(value: string): string {
  return value.replace(/[\\\s]/g, (c) => `\\${c}`);
}

function unbracket(host: string): string {
  return host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
}
