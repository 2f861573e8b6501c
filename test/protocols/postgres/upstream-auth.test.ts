/**
 * Security: the gateway authenticating UPSTREAM must not accept a server that starts SCRAM and
 * then skips its proof (AuthenticationOk with no SASLFinal): that server never showed it knows
 * the password, so it may be an impostor in the middle.
 */
import { createServer, type AddressInfo, type Server } from 'node:net';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { authenticationOk, authenticationSASL, readyForQuery } from '../../../src/protocols/postgres/messages.js';
import { connectUpstream, tcpDial } from '../../../src/protocols/postgres/upstream.js';

let server: Server;
let port = 0;
beforeAll(async () => {
  server = createServer((socket) => {
    socket.on('error', () => {});
    let step = 0;
    socket.on('data', () => {
      step++;
      if (step === 1) socket.write(authenticationSASL(['SCRAM-SHA-256'])); // after the StartupMessage
      else if (step === 2) socket.write(Buffer.concat([authenticationOk(), readyForQuery('I')])); // after SASLInitialResponse
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  port = (server.address() as AddressInfo).port;
});
afterAll(async () => {
  await new Promise((r) => server.close(r));
});

test('AuthenticationOk in the middle of SCRAM is refused', async () => {
  const err = await connectUpstream({ host: '127.0.0.1', port, database: 'd', user: 'u', password: 'p', sslmode: 'disable', connectTimeoutMs: 3_000 }, { dial: () => tcpDial({ host: '127.0.0.1', port }) })
    .then((c) => {
      c.socket.destroy();
      return null;
    }, (e: unknown) => e);
  expect(err).toBeInstanceOf(Error);
  expect((err as Error).message).toMatch(/ended SCRAM authentication without proving it knows the password/);
});

test('a cleartext password request over an unverified connection to another host is refused, the password never sent', async () => {
  // Dialled, 0.0.0.0 reaches this machine (Linux and macOS route it to loopback), but it names no
  // loopback interface, so the exemption does not apply: it stands in for a database across the
  // network. (127.0.0.2 would not do: all of 127.0.0.0/8 is loopback, and trusted as such.)
  const received: Buffer[] = [];
  let closed!: () => void;
  const hungUp = new Promise<void>((r) => (closed = r));
  const cleartext = createServer((socket) => {
    socket.on('error', () => {});
    socket.on('close', () => closed());
    socket.once('data', () => socket.write(Buffer.from([0x52, 0, 0, 0, 8, 0, 0, 0, 3]))); // AuthenticationCleartextPassword
    socket.on('data', (d: Buffer) => received.push(d));
  });
  await new Promise<void>((r) => cleartext.listen(0, '127.0.0.1', () => r()));
  const cleartextPort = (cleartext.address() as AddressInfo).port;
  try {
    // The configured host is what the cleartext rule judges; the bytes go to the test server.
    const err = await connectUpstream({ host: 'db.example.invalid', port: cleartextPort, database: 'd', user: 'u', password: 'the-db-secret', sslmode: 'disable', connectTimeoutMs: 3_000 }, { dial: () => tcpDial({ host: '127.0.0.1', port: cleartextPort }) })
      .then((c) => {
        c.socket.destroy();
        return null;
      }, (e: unknown) => e);
    expect((err as Error).message).toMatch(/asked for the password in cleartext over a connection whose server is not verified \(sslmode disable\)/);
    await hungUp; // everything the client sent arrived before its hang-up
    expect(Buffer.concat(received).includes(Buffer.from('the-db-secret'))).toBe(false);
  } finally {
    await new Promise((r) => cleartext.close(r));
  }
});

test('a server that is not PostgreSQL (an HTTP server here) is named as such, with its address, for every sslmode', async () => {
  const http = createServer((socket) => {
    socket.on('error', () => {});
    socket.once('data', () => socket.end('HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n'));
  });
  await new Promise<void>((r) => http.listen(0, '127.0.0.1', () => r()));
  const httpPort = (http.address() as AddressInfo).port;
  try {
    for (const sslmode of ['disable', 'require'] as const) {
      const err = await connectUpstream({ host: '127.0.0.1', port: httpPort, database: 'd', user: 'u', password: 'p', sslmode, connectTimeoutMs: 3_000 }, { dial: () => tcpDial({ host: '127.0.0.1', port: httpPort }) }).then(
        (c) => {
          c.socket.destroy();
          return null;
        },
        (e: unknown) => e,
      );
      expect((err as Error).message).toMatch(new RegExp(`^upstream 127\\.0\\.0\\.1:${httpPort}: its answer (to SSLRequest )?is not PostgreSQL's \\(.*'H'`));
      expect((err as { hint?: string }).hint).toContain('not a proxy or another service');
    }
  } finally {
    await new Promise((r) => http.close(r));
  }
});
