/**
 * SCRAM-SHA-256 (RFC 5802, RFC 7677) as PostgreSQL uses it (protocol "SASL Authentication"),
 * and the legacy MD5 password hash.
 *
 * - `ScramClient`: the gateway authenticating UPSTREAM with a connection's password.
 * - `ScramServer`: the local listener checking psql's one-time password.
 *
 * PostgreSQL takes the user from the StartupMessage, so the client-first-message carries an empty
 * `n=`. Channel binding is not offered (gs2 header `n,,`). Passwords are used as UTF-8 without
 * SASLprep, which PostgreSQL also falls back to, and which is the identity for ASCII.
 */
import { createHash, createHmac, pbkdf2Sync, randomBytes, timingSafeEqual } from 'node:crypto';
import { ProtocolError } from '../../errors.js';

export const SCRAM_SHA_256 = 'SCRAM-SHA-256';
const DEFAULT_ITERATIONS = 4096;
/** Refuse absurd iteration counts from a server: a DoS on the gateway's CPU otherwise. */
const MAX_ITERATIONS = 1_000_000;

const hmac = (key: Buffer, data: string | Buffer) => createHmac('sha256', key).update(data).digest();
const sha256 = (data: Buffer) => createHash('sha256').update(data).digest();
const xor = (a: Buffer, b: Buffer) => Buffer.from(a.map((v, i) => v ^ b[i]!));
const nonce = () => randomBytes(18).toString('base64');

/** SaltedPassword := Hi(Normalize(password), salt, i) (RFC 5802 §3). */
function saltedPassword(password: string, salt: Buffer, iterations: number): Buffer {
  return pbkdf2Sync(Buffer.from(password, 'utf8'), salt, iterations, 32, 'sha256');
}

/** Parses `a=x,b=y` attribute lists. Values may contain '='; attribute names are one letter. */
export function parseAttributes(message: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const part of message.split(',')) {
    if (part.length < 2 || part[1] !== '=') throw new ProtocolError('malformed SCRAM message: bad attribute');
    out.set(part[0]!, part.slice(2));
  }
  return out;
}

function required(attrs: Map<string, string>, name: string, what: string): string {
  const v = attrs.get(name);
  if (v === undefined || v === '') throw new ProtocolError(`malformed SCRAM ${what}: missing ${name}=`);
  return v;
}

/** Printable ASCII except ',' (RFC 5802 nonce grammar). */
const NONCE_RE = /^[\x21-\x2b\x2d-\x7e]+$/;

export class ScramClient {
  private readonly clientNonce: string;
  private readonly clientFirstBare: string;
  private serverSignature: Buffer | null = null;

  constructor(
    private readonly password: string,
    options: { nonce?: string; user?: string } = {},
  ) {
    this.clientNonce = options.nonce ?? nonce();
    this.clientFirstBare = `n=${options.user ?? ''},r=${this.clientNonce}`;
  }

  /** client-first-message, sent in SASLInitialResponse. */
  clientFirstMessage(): string {
    return `n,,${this.clientFirstBare}`;
  }

  /** Takes server-first-message (AuthenticationSASLContinue); returns client-final-message. */
  clientFinalMessage(serverFirst: string): string {
    const attrs = parseAttributes(serverFirst);
    if (attrs.has('m')) throw new ProtocolError('SCRAM server requires an unsupported extension');
    const combined = required(attrs, 'r', 'server-first-message');
    const salt = Buffer.from(required(attrs, 's', 'server-first-message'), 'base64');
    const iterations = Number(required(attrs, 'i', 'server-first-message'));
    if (!combined.startsWith(this.clientNonce) || combined.length === this.clientNonce.length) {
      throw new ProtocolError('SCRAM server nonce does not extend the client nonce');
    }
    if (!Number.isInteger(iterations) || iterations < 1 || iterations > MAX_ITERATIONS) {
      throw new ProtocolError('SCRAM iteration count out of range');
    }
    const salted = saltedPassword(this.password, salt, iterations);
    const clientKey = hmac(salted, 'Client Key');
    const storedKey = sha256(clientKey);
    const withoutProof = `c=biws,r=${combined}`; // biws = base64("n,,")
    const authMessage = `${this.clientFirstBare},${serverFirst},${withoutProof}`;
    const proof = xor(clientKey, hmac(storedKey, authMessage));
    this.serverSignature = hmac(hmac(salted, 'Server Key'), authMessage);
    return `${withoutProof},p=${proof.toString('base64')}`;
  }

  /** Checks server-final-message (AuthenticationSASLFinal): proves the server knew the password. */
  verifyServerFinal(serverFinal: string): void {
    const attrs = parseAttributes(serverFinal);
    if (attrs.has('e')) throw new ProtocolError(`SCRAM authentication failed: ${attrs.get('e')}`);
    const v = Buffer.from(required(attrs, 'v', 'server-final-message'), 'base64');
    if (!this.serverSignature || v.length !== this.serverSignature.length || !timingSafeEqual(v, this.serverSignature)) {
      throw new ProtocolError('SCRAM server signature does not match: the server did not prove it knows the password');
    }
  }
}

export type ScramServerResult = { ok: true; serverFinal: string } | { ok: false; reason: string };

export class ScramServer {
  private readonly salt: Buffer;
  private readonly iterations: number;
  private readonly storedKey: Buffer;
  private readonly serverKey: Buffer;
  private readonly serverNonce: string;
  private clientFirstBare: string | null = null;
  private serverFirst: string | null = null;
  private combinedNonce: string | null = null;

  constructor(password: string, options: { salt?: Buffer; iterations?: number; nonce?: string } = {}) {
    this.salt = options.salt ?? randomBytes(16);
    this.iterations = options.iterations ?? DEFAULT_ITERATIONS;
    const salted = saltedPassword(password, this.salt, this.iterations);
    this.storedKey = sha256(hmac(salted, 'Client Key'));
    this.serverKey = hmac(salted, 'Server Key');
    this.serverNonce = options.nonce ?? nonce();
  }

  /** Takes client-first-message (from SASLInitialResponse); returns server-first-message. */
  serverFirstMessage(clientFirst: string): string {
    // gs2-header: "n,," or "y,," (no channel binding); "p=" would require TLS binding we lack.
    const m = /^([ny]),(a=[^,]*)?,(.*)$/s.exec(clientFirst);
    if (!m) throw new ProtocolError('malformed SCRAM client-first-message (channel binding is not supported)');
    this.clientFirstBare = m[3]!;
    const attrs = parseAttributes(this.clientFirstBare);
    const clientNonce = required(attrs, 'r', 'client-first-message');
    if (!NONCE_RE.test(clientNonce)) throw new ProtocolError('malformed SCRAM client nonce');
    this.combinedNonce = clientNonce + this.serverNonce;
    this.serverFirst = `r=${this.combinedNonce},s=${this.salt.toString('base64')},i=${this.iterations}`;
    this.gs2Header = clientFirst.slice(0, clientFirst.length - this.clientFirstBare.length);
    return this.serverFirst;
  }

  private gs2Header = '';

  /** Takes client-final-message; checks the proof in constant time. */
  verifyClientFinal(clientFinal: string): ScramServerResult {
    if (!this.serverFirst || !this.clientFirstBare) throw new ProtocolError('SCRAM client-final-message before client-first-message');
    const attrs = parseAttributes(clientFinal);
    const proofAt = clientFinal.lastIndexOf(',p=');
    if (proofAt < 0) throw new ProtocolError('malformed SCRAM client-final-message: missing p=');
    if (required(attrs, 'c', 'client-final-message') !== Buffer.from(this.gs2Header).toString('base64')) {
      return { ok: false, reason: 'SCRAM channel binding does not match' };
    }
    if (required(attrs, 'r', 'client-final-message') !== this.combinedNonce) return { ok: false, reason: 'SCRAM nonce does not match' };
    const proof = Buffer.from(required(attrs, 'p', 'client-final-message'), 'base64');
    const authMessage = `${this.clientFirstBare},${this.serverFirst},${clientFinal.slice(0, proofAt)}`;
    const clientSignature = hmac(this.storedKey, authMessage);
    if (proof.length !== clientSignature.length) return { ok: false, reason: 'password authentication failed' };
    const clientKey = xor(proof, clientSignature);
    if (!timingSafeEqual(sha256(clientKey), this.storedKey)) return { ok: false, reason: 'password authentication failed' };
    return { ok: true, serverFinal: `v=${hmac(this.serverKey, authMessage).toString('base64')}` };
  }
}

/** PostgreSQL md5 auth: "md5" || md5hex(md5hex(password || user) || salt). */
export function md5PasswordHash(user: string, password: string, salt: Buffer): string {
  const inner = createHash('md5').update(password, 'utf8').update(user, 'utf8').digest('hex');
  return 'md5' + createHash('md5').update(inner).update(salt).digest('hex');
}
