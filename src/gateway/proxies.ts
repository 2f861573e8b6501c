/**
 * Whose address a request carries, behind a load balancer (`trusted_proxies` in hoop.yaml).
 *
 * `X-Forwarded-For: client, proxy1, proxy2` is a list every hop appends its peer to, so only its
 * right end is written by proxies we run; anything to the left may be whatever the client sent.
 * The rule (the one MDN and most proxies document) is therefore: when the socket's peer is a
 * trusted proxy, walk the list from the right, skipping trusted proxies, and take the first
 * address that is not one: the right-most untrusted hop. Spoofed left-most entries are never
 * reached. When the peer is not trusted, or nothing is configured, the header is ignored: the
 * peer is the client. An entry that is not an IP address where the walk stops makes the client
 * unknown (null), never a guess.
 */
import { BlockList, isIP } from 'node:net';

/** At most this many hops of X-Forwarded-For are read (a longer list is no legitimate chain). */
const MAX_HOPS = 32;

export interface Cidr {
  address: string;
  prefix: number;
  family: 'ipv4' | 'ipv6';
}

/** `10.0.0.0/8`, `2001:db8::/32`, or a bare address (a /32 or /128); null when malformed. */
export function parseCidr(text: string): Cidr | null {
  const m = /^([^/\s]+)(?:\/(\d{1,3}))?$/.exec(text.trim());
  if (!m) return null;
  const address = normalizeAddress(m[1]!);
  const v = isIP(address);
  if (v === 0) return null;
  const max = v === 4 ? 32 : 128;
  const prefix = m[2] === undefined ? max : Number(m[2]);
  if (prefix > max) return null;
  return { address, prefix, family: v === 4 ? 'ipv4' : 'ipv6' };
}

/** The peers whose X-Forwarded-For the gateway believes. Empty: nobody's. */
export class TrustedProxies {
  private readonly list = new BlockList();
  readonly size: number;

  constructor(cidrs: readonly Cidr[]) {
    for (const c of cidrs) this.list.addSubnet(c.address, c.prefix, c.family);
    this.size = cidrs.length;
  }

  trusts(address: string): boolean {
    const a = normalizeAddress(address);
    const v = isIP(a);
    return v !== 0 && this.list.check(a, v === 4 ? 'ipv4' : 'ipv6');
  }

  /**
   * The client's address and, when it came from X-Forwarded-For, the proxy that sent it.
   * `forwardedFor` is every X-Forwarded-For header value, in order.
   */
  clientOf(peer: string | null, forwardedFor: readonly string[]): { address: string | null; proxy?: string } {
    const direct = peer === null ? null : normalizeAddress(peer);
    if (direct === null || this.size === 0 || !this.trusts(direct)) return { address: direct };
    const hops = forwardedFor.flatMap((h) => h.split(',')).map((h) => h.trim()).filter((h) => h !== '');
    if (hops.length === 0) return { address: direct };
    let client: string | null = null;
    for (let i = hops.length - 1; i >= Math.max(0, hops.length - MAX_HOPS); i--) {
      const hop = hopAddress(hops[i]!);
      if (hop === null) return { address: null, proxy: direct }; // a proxy wrote something we cannot read
      client = hop;
      if (!this.trusts(hop)) return { address: hop, proxy: direct };
    }
    // Every hop trusted: the left-most is the client, unless the walk stopped short of it.
    return { address: hops.length > MAX_HOPS ? null : client, proxy: direct };
  }
}

/** One X-Forwarded-For entry: `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1`, `[2001:db8::1]:443`. */
function hopAddress(entry: string): string | null {
  let a = entry;
  const bracketed = /^\[([^\]]+)\](?::\d{1,5})?$/.exec(a);
  if (bracketed) a = bracketed[1]!;
  else if (/^[\d.]+:\d{1,5}$/.test(a)) a = a.slice(0, a.lastIndexOf(':'));
  a = normalizeAddress(a);
  return isIP(a) === 0 ? null : a;
}

/** Lowercase, without a zone, and an IPv4-mapped IPv6 address (`::ffff:10.0.0.1`) as IPv4. */
export function normalizeAddress(address: string): string {
  const a = address.split('%')[0]!.toLowerCase();
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(a);
  return mapped ? mapped[1]! : a;
}
