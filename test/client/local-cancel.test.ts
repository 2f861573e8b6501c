/**
 * Security: a CancelRequest on the local port is unauthenticated (as in PostgreSQL), so another
 * local user can send one. It must not make the tunnel spend the user's token on a WebSocket
 * unless its key is one the listener handed to one of its own live sessions.
 */
import { createServer, type Server } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import pg from 'pg';
import { serialize } from 'pg-protocol';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { openLocalTunnel } from '../../src/client/tunnel.js';
import { until } from '../helpers/poll.js';

let gateway: Server;
let gatewayUrl: string;
let upgrades = 0;

beforeAll(async () => {
  gateway = createServer((_req, res) => res.writeHead(404).end());
  gateway.on('upgrade', (_req, socket) => {
    upgrades++;
    socket.destroy();
  });
  await new Promise<void>((r) => gateway.listen(0, '127.0.0.1', () => r()));
  gatewayUrl = `http://127.0.0.1:${(gateway.address() as AddressInfo).port}`;
});
afterAll(async () => {
  gateway.closeAllConnections();
  await new Promise((r) => gateway.close(r));
});

test('a CancelRequest with a key no session of this listener got uses neither the token nor the gateway', async () => {
  let tokens = 0;
  const t = await openLocalTunnel({
    gateway: gatewayUrl, connection: 'bank', port: 0, user: 'alice', database: 'bank',
    token: async () => {
      tokens++;
      return 'secret-token';
    },
  });
  try {
    for (let i = 0; i < 5; i++) {
      const s = connect(t.port, '127.0.0.1');
      await new Promise((r) => s.once('connect', r));
      s.on('error', () => {});
      s.end(serialize.cancel(1234 + i, 5678));
      await new Promise((r) => s.once('close', r));
    }
    expect(tokens).toBe(0);
    // A fence: a real session, opened after them, does take a token and reach the gateway (which
    // turns it away). Had the cancels gone that way too, they would have got there first.
    const session = new pg.Client({ connectionString: t.uri });
    session.on('error', () => {});
    await session.connect().catch(() => undefined);
    await until(() => upgrades > 0, { what: 'the session reaching the gateway' });
    expect(tokens).toBe(1);
    expect(upgrades).toBe(1);
    await session.end().catch(() => undefined);
  } finally {
    await t.close();
  }
});
