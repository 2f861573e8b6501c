/** The one answer to "does this host name this machine's loopback interface?". */
import { BlockList, isIP } from 'node:net';

const LOOPBACK = new BlockList();
LOOPBACK.addSubnet('127.0.0.0', 8, 'ipv4'); // RFC 1122 3.2.1.3; also matches ::ffff:127.x.y.z
LOOPBACK.addAddress('::1', 'ipv6'); // RFC 4291 2.5.3

/**
 * True for the name `localhost` (any case, with or without the root's trailing dot), an IPv4
 * address in 127.0.0.0/8, and the IPv6 loopback `::1` in any spelling, also IPv4-mapped
 * (`::ffff:127.0.0.1`); an IPv6 address may come in URL brackets (`[::1]`, as `URL.hostname`
 * gives it).
 *
 * No other host name counts, even one that resolves to 127.0.0.1 today (`127.0.0.1.nip.io`,
 * `db.localhost`): resolution can change between this check and the connection, and callers
 * use the answer to let secrets travel without TLS. `0.0.0.0` and `::` mean every interface,
 * not loopback; an address with a zone (`::1%lo`) is refused rather than interpreted.
 */
export function isLoopbackHost(host: string): boolean {
  if (/^localhost\.?$/i.test(host)) return true;
  const bracketed = host.startsWith('[') && host.endsWith(']');
  const address = bracketed ? host.slice(1, -1) : host;
  const family = isIP(address);
  if (family === 0 || (bracketed && family !== 6) || address.includes('%')) return false;
  return LOOPBACK.check(address, family === 4 ? 'ipv4' : 'ipv6');
}
