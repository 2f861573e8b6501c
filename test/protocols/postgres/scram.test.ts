import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { ProtocolError } from '../../../src/errors.js';
import { md5PasswordHash, ScramClient, ScramServer } from '../../../src/protocols/postgres/scram.js';

// RFC 7677 §3 test vector.
const V = {
  user: 'user',
  password: 'pencil',
  clientNonce: 'rOprNGfwEbeRWgbNEkqO',
  serverNonce: '%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0',
  salt: 'W22ZaJ0SNY7soEsUEjb6gQ==',
  clientFirst: 'n,,n=user,r=rOprNGfwEbeRWgbNEkqO',
  serverFirst: 'r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096',
  clientFinal: 'c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=',
  serverFinal: 'v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=',
};

describe('SCRAM-SHA-256', () => {
  it('client reproduces the RFC 7677 test vector', () => {
    const c = new ScramClient(V.password, { nonce: V.clientNonce, user: V.user });
    expect(c.clientFirstMessage()).toBe(V.clientFirst);
    expect(c.clientFinalMessage(V.serverFirst)).toBe(V.clientFinal);
    expect(() => c.verifyServerFinal(V.serverFinal)).not.toThrow();
    expect(() => c.verifyServerFinal('v=AAAA' + V.serverFinal.slice(6))).toThrow(/server signature does not match/);
  });

  it('server reproduces the RFC 7677 test vector', () => {
    const s = new ScramServer(V.password, { salt: Buffer.from(V.salt, 'base64'), iterations: 4096, nonce: V.serverNonce });
    expect(s.serverFirstMessage(V.clientFirst)).toBe(V.serverFirst);
    expect(s.verifyClientFinal(V.clientFinal)).toEqual({ ok: true, serverFinal: V.serverFinal });
  });

  it('client and server agree with the right password and refuse a wrong one', () => {
    const run = (clientPassword: string) => {
      const c = new ScramClient(clientPassword);
      const s = new ScramServer('one-time-secret');
      const result = s.verifyClientFinal(c.clientFinalMessage(s.serverFirstMessage(c.clientFirstMessage())));
      if (result.ok) c.verifyServerFinal(result.serverFinal);
      return result.ok;
    };
    expect(run('one-time-secret')).toBe(true);
    expect(run('one-time-secreT')).toBe(false);
  });

  it('refuses a tampered nonce, a bad proof length, channel binding, and absurd iteration counts', () => {
    const s = new ScramServer('pw');
    s.serverFirstMessage('n,,n=,r=abc');
    expect(s.verifyClientFinal('c=biws,r=abcWRONG,p=AAAA')).toMatchObject({ ok: false });
    const s2 = new ScramServer('pw', { nonce: 'xyz' });
    s2.serverFirstMessage('n,,n=,r=abc');
    expect(s2.verifyClientFinal('c=biws,r=abcxyz,p=AAAA')).toMatchObject({ ok: false });
    expect(() => new ScramServer('pw').serverFirstMessage('p=tls-server-end-point,,n=,r=abc')).toThrow(ProtocolError);
    expect(() => new ScramServer('pw').serverFirstMessage('garbage')).toThrow(ProtocolError);
    const c = new ScramClient('pw', { nonce: 'abc' });
    expect(() => c.clientFinalMessage('r=abcdef,s=AAAA,i=99999999')).toThrow(/iteration count/);
    expect(() => c.clientFinalMessage('r=zzz,s=AAAA,i=4096')).toThrow(/nonce/);
  });
});

describe('md5PasswordHash', () => {
  it('computes md5(md5(password || user) || salt) as PostgreSQL does', () => {
    const salt = Buffer.from([1, 2, 3, 4]);
    const inner = createHash('md5').update('secretalice').digest('hex');
    const expected = 'md5' + createHash('md5').update(Buffer.concat([Buffer.from(inner), salt])).digest('hex');
    expect(md5PasswordHash('alice', 'secret', salt)).toBe(expected);
    expect(expected).toMatch(/^md5[0-9a-f]{32}$/);
  });
});
