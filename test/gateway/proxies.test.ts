/**
 * trusted_proxies: the client address behind a load balancer is the right-most untrusted
 * X-Forwarded-For hop, only when the socket's peer is a trusted proxy; otherwise the header is
 * ignored. Unit tests of the hop selection, then one request through a real gateway.
 */
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, inject, test } from 'vitest';
import { parseCidr, TrustedProxies } from '../../src/gateway/proxies.js';
import { bankConnection, startTestGateway, type TestGateway } from '../helpers/gateway.js';

const proxies = (...cidrs: string[]) => new TrustedProxies(cidrs.map((c) => parseCidr(c)!));

describe('parseCidr', () => {
  test('IPv4 and IPv6 blocks and bare addresses; malformed ones are null', () => {
    expect(parseCidr('10.0.0.0/8')).toEqual({ address: '10.0.0.0', prefix: 8, family: 'ipv4' });
    expect(parseCidr('fd00::/8')).toEqual({ address: 'fd00::', prefix: 8, family: 'ipv6' });
    expect(parseCidr('192.0.2.1')).toEqual({ address: '192.0.2.1', prefix: 32, family: 'ipv4' });
    expect(parseCidr('::ffff:10.1.2.3')).toEqual({ address: '10.1.2.3', prefix: 32, family: 'ipv4' });
    for (const bad of ['10.0.0.0/33', '::/129', 'lb.internal', '10.0.0/8', '', '10.0.0.0/8/8', '1.2.3.4 /8']) expect(parseCidr(bad), bad).toBeNull();
  });
});

describe('TrustedProxies.clientOf', () => {
  const lb = proxies('10.0.0.0/8', '2001:db8:aa::/48');

  test('without trusted proxies, or from an untrusted peer, the header is ignored', () => {
    expect(proxies().clientOf('10.0.0.5', ['203.0.113.7'])).toEqual({ address: '10.0.0.5' });
    expect(lb.clientOf('198.51.100.9', ['203.0.113.7'])).toEqual({ address: '198.51.100.9' });
    expect(lb.clientOf(null, ['203.0.113.7'])).toEqual({ address: null });
  });

  test('the right-most untrusted hop is the client; spoofed left-most entries are never reached', () => {
    expect(lb.clientOf('10.0.0.5', ['203.0.113.7'])).toEqual({ address: '203.0.113.7', proxy: '10.0.0.5' });
    // The client sent "1.1.1.1, 2.2.2.2" itself; the load balancer appended what it saw.
    expect(lb.clientOf('10.0.0.5', ['1.1.1.1, 2.2.2.2, 203.0.113.7'])).toEqual({ address: '203.0.113.7', proxy: '10.0.0.5' });
    // Through two trusted proxies (several headers count as one list, in order).
    expect(lb.clientOf('10.0.0.5', ['6.6.6.6, 203.0.113.7', '10.20.0.1'])).toEqual({ address: '203.0.113.7', proxy: '10.0.0.5' });
    // A spoofed entry that claims a trusted address is left of the real client: not reached.
    expect(lb.clientOf('10.0.0.5', ['10.9.9.9, 203.0.113.7'])).toEqual({ address: '203.0.113.7', proxy: '10.0.0.5' });
  });

  test('IPv6, IPv4-mapped peers, ports and brackets', () => {
    expect(lb.clientOf('::ffff:10.0.0.5', ['2001:db8:ff::1'])).toEqual({ address: '2001:db8:ff::1', proxy: '10.0.0.5' });
    expect(lb.clientOf('2001:db8:aa::2', ['[2001:DB8:FF::1]:4433'])).toEqual({ address: '2001:db8:ff::1', proxy: '2001:db8:aa::2' });
    expect(lb.clientOf('10.0.0.5', ['203.0.113.7:51234'])).toEqual({ address: '203.0.113.7', proxy: '10.0.0.5' });
  });

  test('every hop trusted: the left-most is the client; no header: the peer; garbage where the walk stops: unknown', () => {
    expect(lb.clientOf('10.0.0.5', ['10.1.1.1, 10.2.2.2'])).toEqual({ address: '10.1.1.1', proxy: '10.0.0.5' });
    expect(lb.clientOf('10.0.0.5', [])).toEqual({ address: '10.0.0.5' });
    expect(lb.clientOf('10.0.0.5', [' , '])).toEqual({ address: '10.0.0.5' });
    expect(lb.clientOf('10.0.0.5', ['203.0.113.7, unknown'])).toEqual({ address: null, proxy: '10.0.0.5' });
    // Garbage left of the client is the client's own doing, and never read.
    expect(lb.clientOf('10.0.0.5', ['<script>, 203.0.113.7'])).toEqual({ address: '203.0.113.7', proxy: '10.0.0.5' });
  });
});

describe('through the gateway', () => {
  const upstream = inject('upstream');
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await startTestGateway({ upstream, connections: [bankConnection(upstream, { name: 'ledger', access: ['finance'] })], config: { trusted_proxies: ['127.0.0.1/32', '::1'] } });
  });
  afterAll(async () => {
    await gw?.close();
  });

  test('records the forwarded client as source.address and the proxy as source.proxy', async () => {
    const res = await request(`${gw.url}/api/v1/connections/ledger`, {
      headers: { authorization: `Bearer ${gw.keys['alice']}`, 'x-forwarded-for': '6.6.6.6, 203.0.113.7' },
    });
    expect(res.statusCode).toBe(403);
    await res.body.dump();
    const bad = await request(`${gw.url}/api/v1/me`, { headers: { authorization: 'Bearer hoop_nope', 'x-forwarded-for': '198.51.100.4' } });
    expect(bad.statusCode).toBe(401);
    await bad.body.dump();
    await expect.poll(async () => (await gw.store.readEvents({ types: ['access.denied', 'auth.failed'] })).length).toBe(2);
    const [d, f] = await gw.store.readEvents({ types: ['access.denied', 'auth.failed'] });
    expect(d!.source).toMatchObject({ address: '203.0.113.7', proxy: '127.0.0.1' });
    expect(f!.source).toMatchObject({ address: '198.51.100.4', proxy: '127.0.0.1' });
  });
});
