import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { Agent, request } from 'undici';
import { expect, inject, test } from 'vitest';
import { makeCertificates } from '../helpers/tls.js';
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
    expect(events).toEqual(['config.loaded', 'session.start', 'query.start', 'query.end', 'session.end']);
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
