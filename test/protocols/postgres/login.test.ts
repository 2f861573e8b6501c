/**
 * The server side of a client's login (login.ts) over real sockets: what it answers to the
 * startup-phase requests, what it refuses, and what it hands the engine.
 */
import { createServer, connect, type AddressInfo, type Server, type Socket } from 'node:net';
import { createSecureContext } from 'node:tls';
import { connect as tlsConnect } from 'node:tls';
import { afterEach, describe, expect, test } from 'vitest';
import { ClientLogin, startupOption, type Opening } from '../../../src/protocols/postgres/login.js';
import { frame, MessageType, sslRequest, startupMessage } from '../../../src/protocols/postgres/messages.js';
import { GSSENC_REQUEST_CODE } from '../../../src/protocols/postgres/framing.js';
import { makeCertificates } from '../../helpers/tls.js';

const servers: Server[] = [];
afterEach(() => {
  for (const s of servers.splice(0)) s.close();
});

/** A listener whose first connection runs `fn` with a ClientLogin; the client socket and fn's outcome. */
async function pair<T>(fn: (login: ClientLogin) => Promise<T>, tls: ReturnType<typeof createSecureContext> | null = null): Promise<{ client: Socket; result: Promise<T> }> {
  let resolveResult!: (p: Promise<T>) => void;
  const result = new Promise<Promise<T>>((r) => (resolveResult = r));
  const server = createServer((socket) => {
    socket.on('error', () => {});
    resolveResult(fn(new ClientLogin(socket, tls)));
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const client = connect((server.address() as AddressInfo).port, '127.0.0.1');
  client.on('error', () => {});
  await new Promise<void>((r) => client.once('connect', () => r()));
  return { client, result: result.then((p) => p) };
}

function gssencRequest(): Buffer {
  const b = Buffer.alloc(8);
  b.writeInt32BE(8);
  b.writeInt32BE(GSSENC_REQUEST_CODE, 4);
  return b;
}

const firstByte = (s: Socket) => new Promise<string>((r) => s.once('data', (d: Buffer) => r(String.fromCharCode(d[0]!))));

describe('ClientLogin', () => {
  test('GSSENCRequest and SSLRequest (no certificate) are declined with N; the StartupMessage is handed over with what followed it', async () => {
    const { client, result } = await pair(async (login) => {
      const opening = await login.open();
      return { opening, handed: await login.handOff() };
    });
    client.write(gssencRequest());
    expect(await firstByte(client)).toBe('N');
    client.write(sslRequest());
    expect(await firstByte(client)).toBe('N');
    const startup = startupMessage({ user: 'alice', database: 'bank' });
    const query = frame(MessageType.Query, Buffer.from('select 1\0'));
    client.write(Buffer.concat([startup, query]));
    const { opening, handed } = await result;
    expect(opening).toEqual({ kind: 'startup', protocol: 196608, parameters: { user: 'alice', database: 'bank' } } satisfies Opening);
    expect(handed.equals(Buffer.concat([startup, query]))).toBe(true);
    client.destroy();
  });

  test('bytes after SSLRequest, before the TLS handshake, are refused (CVE-2021-23214)', async () => {
    const { cert, key } = makeCertificates();
    const { client, result } = await pair((login) => login.open(), createSecureContext({ cert, key }));
    client.write(Buffer.concat([sslRequest(), startupMessage({ user: 'injected', database: 'bank' })]));
    await expect(result).rejects.toThrow('unencrypted bytes after SSLRequest, before the TLS handshake');
    client.destroy();
  });

  test('SSLRequest with a certificate: S, then the session continues inside TLS', async () => {
    const { ca, cert, key } = makeCertificates();
    const { client, result } = await pair(async (login) => ({ opening: await login.open(), encrypted: login.encrypted, password: await login.askPassword() }), createSecureContext({ cert, key }));
    client.write(sslRequest());
    expect(await firstByte(client)).toBe('S');
    const secure = tlsConnect({ socket: client, ca, servername: 'localhost' });
    await new Promise<void>((r) => secure.once('secureConnect', () => r()));
    secure.write(startupMessage({ user: 'alice', database: 'bank' }));
    const asked = await new Promise<Buffer>((r) => secure.once('data', r));
    expect([...asked]).toEqual([0x52, 0, 0, 0, 8, 0, 0, 0, 3]); // AuthenticationCleartextPassword
    secure.write(frame(MessageType.PasswordMessage, Buffer.from('hoop_key\0')));
    const { opening, encrypted, password } = await result;
    expect(opening?.kind).toBe('startup');
    expect(encrypted).toBe(true);
    expect(password).toBe('hoop_key');
    secure.destroy();
  });

  test('a SASL response where the password was asked for is a protocol error', async () => {
    const { client, result } = await pair(async (login) => {
      await login.open();
      return login.askPassword();
    });
    client.write(startupMessage({ user: 'alice', database: 'bank' }));
    await firstByte(client);
    const sasl = Buffer.concat([Buffer.from('SCRAM-SHA-256\0'), Buffer.from([0, 0, 0, 4]), Buffer.from('n,,n')]);
    client.write(frame(MessageType.PasswordMessage, sasl));
    await expect(result).rejects.toThrow('malformed password message');
    client.destroy();
  });

  test('a CancelRequest is reported as such', async () => {
    const { client, result } = await pair(async (login) => ({ opening: await login.open(), handed: await login.handOff() }));
    const cancel = Buffer.alloc(16);
    cancel.writeInt32BE(16);
    cancel.writeInt32BE(80877102, 4);
    cancel.writeInt32BE(1234, 8);
    cancel.writeInt32BE(5678, 12);
    client.write(cancel);
    const { opening, handed } = await result;
    expect(opening).toEqual({ kind: 'cancel' });
    expect(handed.equals(cancel)).toBe(true);
    client.destroy();
  });
});

describe('startupOption', () => {
  test('reads -c NAME=VALUE as the server splits options', () => {
    expect(startupOption('-c hoop.reason=INC-1\\ check\\ it', 'hoop.reason')).toBe('INC-1 check it');
    expect(startupOption('-choop.reason=a', 'hoop.reason')).toBe('a');
    expect(startupOption('--hoop.reason=b -c search_path=x', 'hoop.reason')).toBe('b');
    expect(startupOption('-c HOOP.REASON=c -c hoop.reason=d', 'hoop.reason')).toBe('d');
    expect(startupOption('-c search_path=x', 'hoop.reason')).toBeNull();
    expect(startupOption(undefined, 'hoop.reason')).toBeNull();
    expect(startupOption('-c hoop.reason=', 'hoop.reason')).toBe('');
  });
});
