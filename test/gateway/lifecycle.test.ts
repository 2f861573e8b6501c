import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { Agent, request } from 'undici';
import { expect, inject, test } from 'vitest';
import { makeCertificates } from '../helpers/tls.js';
import { AUTH_FAILURE_BURST, FailureLimiter } from '../../src/gateway/routes.js';
import { startTestGateway } from '../helpers/gateway.js';
import { tunnelClient } from './ws-client.js';

const upstream = inject('upstream');

test('close() ends live sessions (recorded), stops accepting, and flushes the audit log', async () => {
  const gw = await startTestGateway({ upstream, store: 'sqlite::memory:' });
  let closed = false;
  try {
    const client = await tunnelClient(gw.url, 'bank', gw.keys['alice']);
    const gone = new Promise<void>((resolve) => client.on('end', () => resolve()));
    const fatal = new Promise<Error>((resolve) => client.on('error', resolve));
    expect((await client.query('SELECT 1 AS one')).rows).toEqual([{ one: 1 }]);
    const store = gw.store;
    // Keep the store readable after close: read through the same object before it closes.
    const readBeforeClose = store.readEvents.bind(store);
    const events: string[] = [];
    const ends: Record<string, unknown>[] = [];
    const origClose = store.close.bind(store);
    store.close = async () => {
      const all = await readBeforeClose({});
      events.push(...all.map((e) => e.type));
      ends.push(...all.filter((e) => e.type === 'session.end').map((e) => e.data));
      await origClose();
    };
    await gw.close();
    closed = true;
    await gone;
    expect((await fatal).message).toBe('hoop: the gateway is shutting down; reconnect in a moment');
    // The shutdown checkpoint signs the head once everything else is in.
    expect(events).toEqual(['config.loaded', 'session.start', 'query.start', 'query.end', 'session.end', 'checkpoint']);
    expect(ends[0]).toMatchObject({ reason: 'gateway shutting down' });
    await expect(request(`${gw.url}/healthz`)).rejects.toThrow();
  } finally {
    if (!closed) await gw.close();
  }
});

test('https when tls is configured; the signing key is created 0600 on first start', async () => {
  const certs = makeCertificates();
  const gw = await startTestGateway({ upstream, config: { tls: { cert: certs.cert, key: certs.key } } });
  const agent = new Agent({ connect: { ca: certs.ca } });
  try {
    expect(gw.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    const res = await request(`${gw.url}/api/v1/me`, { dispatcher: agent, headers: { authorization: `Bearer ${gw.keys['carol']}` } });
    expect(res.statusCode).toBe(200);
    expect(((await res.body.json()) as { subject: string }).subject).toBe('apikey:carol');
    await expect(request(gw.url.replace('https', 'http') + '/healthz')).rejects.toThrow();
    const key = join(gw.dir, 'signing.key');
    expect(statSync(key).mode & 0o077).toBe(0);
    expect(readFileSync(key, 'utf8')).toMatch(/^-----BEGIN PRIVATE KEY-----/);
  } finally {
    await agent.close();
    await gw.close();
  }
});

test('a flood of failed authentications from one address is counted, but recorded only up to the burst', async () => {
  const gw = await startTestGateway({ upstream, store: 'sqlite::memory:' });
  try {
    for (let i = 0; i < AUTH_FAILURE_BURST + 5; i++) {
      const res = await request(`${gw.url}/api/v1/me`, { headers: { authorization: 'Bearer hoop_guess' } });
      expect(res.statusCode).toBe(401);
      await res.body.dump();
    }
    await expect.poll(async () => (await gw.store.readEvents({})).filter((e) => e.type === 'auth.failed').length).toBe(AUTH_FAILURE_BURST);
    const metrics = await (await request(`${gw.url}/metrics`)).body.text();
    expect(metrics).toContain(`hoop_auth_failures_total{code="HOOP_AUTH_REJECTED"} ${AUTH_FAILURE_BURST + 5}`);
  } finally {
    await gw.close();
  }
});

test('the limiter reports what it suppressed on the next recorded failure', () => {
  const l = new FailureLimiter(2, 1000);
  expect([l.admit('a', 0), l.admit('a', 1), l.admit('a', 2), l.admit('a', 3), l.admit('b', 4)]).toEqual([0, 0, null, null, 0]);
  expect(l.admit('a', 1000)).toBe(2);
  expect(l.admit('a', 1001)).toBe(0);
});
