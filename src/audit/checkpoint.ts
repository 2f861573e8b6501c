/**
 * Signed checkpoints: an Ed25519 signature over the chain head (seq and hash), appended to the
 * log as a `checkpoint` event. The chain already proves that nothing before a head was changed,
 * reordered or removed; a signed head proves which head the gateway vouched for and when, so a
 * log cut short after a checkpoint that was copied elsewhere (a SIEM, an export bundle) no longer
 * verifies, and a log rebuilt by someone without the key cannot carry new checkpoints.
 *
 *   message   = UTF-8("hoop-checkpoint-v1\n" + seq + "\n" + hash)
 *   signature = Ed25519(private key, message)            (RFC 8032, pure Ed25519)
 *   key_id    = lowercase hex SHA-256 of the raw 32-byte public key
 *
 * The event carries the public key itself, so a bundle verifies without anything else; whether
 * that key is the gateway's is for the verifier to decide (compare key_id with a trusted one).
 */
import { createHash, createPrivateKey, createPublicKey, sign, verify, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';

/** What a `checkpoint` event's data holds. */
export interface CheckpointData {
  /** The head vouched for: the event at `seq` has this `hash`. */
  seq: number;
  hash: string;
  algorithm: 'Ed25519';
  key_id: string;
  /** The raw 32-byte Ed25519 public key, base64. */
  public_key: string;
  /** base64 Ed25519 signature over checkpointMessage(seq, hash). */
  signature: string;
}

const DOMAIN = 'hoop-checkpoint-v1';
const HASH_RE = /^[0-9a-f]{64}$/;
/** The DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410); the raw key follows. */
const ED25519_SPKI_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');

export function checkpointMessage(seq: number, hash: string): Buffer {
  return Buffer.from(`${DOMAIN}\n${seq}\n${hash}`, 'utf8');
}

function rawPublicKey(key: KeyObject): Buffer {
  return (key.export({ type: 'spki', format: 'der' }) as Buffer).subarray(ED25519_SPKI_PREFIX.length);
}

export function keyIdOf(rawPublic: Buffer): string {
  return createHash('sha256').update(rawPublic).digest('hex');
}

export class CheckpointSigner {
  readonly keyId: string;
  /** The public key as SPKI PEM (what bundles put in keys/ and GET /api/v1/audit/keys lists). */
  readonly publicKeyPem: string;
  private readonly publicKeyBase64: string;

  private constructor(private readonly privateKey: KeyObject) {
    const publicKey = createPublicKey(privateKey);
    const raw = rawPublicKey(publicKey);
    this.keyId = keyIdOf(raw);
    this.publicKeyPem = publicKey.export({ type: 'spki', format: 'pem' }) as string;
    this.publicKeyBase64 = raw.toString('base64');
  }

  /** The PKCS#8 PEM file of `audit.signing_key`; throws if it is not an Ed25519 private key. */
  static fromFile(path: string): CheckpointSigner {
    const key = createPrivateKey(readFileSync(path));
    if (key.asymmetricKeyType !== 'ed25519') throw new Error(`${path} holds a ${key.asymmetricKeyType ?? 'non-asymmetric'} key, not an Ed25519 private key`);
    return new CheckpointSigner(key);
  }

  /** The raw 32-byte public key, base64 (as checkpoints carry it). */
  get publicKey(): string {
    return this.publicKeyBase64;
  }

  /**
   * Ed25519 over the exact bytes of an export bundle's SHA256SUMS (docs/audit-export.md). Such a
   * text starts with 64 hex digits, never with the checkpoint domain `hoop-checkpoint-v1`, so
   * neither kind of signature can pass for the other; anything else is refused.
   */
  signSha256Sums(sums: Buffer): Buffer {
    if (!/^([0-9a-f]{64}  [^\n]+\n)+$/.test(sums.toString('utf8'))) throw new TypeError('signSha256Sums: not a SHA256SUMS text');
    return sign(null, sums, this.privateKey);
  }

  sign(head: { seq: number; hash: string }): CheckpointData {
    return {
      seq: head.seq,
      hash: head.hash,
      algorithm: 'Ed25519',
      key_id: this.keyId,
      public_key: this.publicKeyBase64,
      signature: sign(null, checkpointMessage(head.seq, head.hash), this.privateKey).toString('base64'),
    };
  }
}

export type CheckpointVerdict = { ok: true; data: CheckpointData } | { ok: false; reason: string };

/** Checks a checkpoint's shape, that its key_id names its key, and its signature. */
export function verifyCheckpoint(data: unknown): CheckpointVerdict {
  const d = data as Partial<CheckpointData> | null;
  if (!d || typeof d !== 'object') return { ok: false, reason: 'checkpoint data is missing' };
  if (!Number.isSafeInteger(d.seq) || (d.seq as number) < 1) return { ok: false, reason: 'checkpoint seq is not a positive integer' };
  if (typeof d.hash !== 'string' || !HASH_RE.test(d.hash)) return { ok: false, reason: 'checkpoint hash is not 64 hex digits' };
  if (d.algorithm !== 'Ed25519') return { ok: false, reason: `checkpoint algorithm ${JSON.stringify(d.algorithm)} is not Ed25519` };
  const raw = typeof d.public_key === 'string' ? Buffer.from(d.public_key, 'base64') : Buffer.alloc(0);
  if (raw.length !== 32) return { ok: false, reason: 'checkpoint public_key is not a 32-byte Ed25519 key' };
  if (d.key_id !== keyIdOf(raw)) return { ok: false, reason: 'checkpoint key_id does not match its public_key' };
  const signature = typeof d.signature === 'string' ? Buffer.from(d.signature, 'base64') : Buffer.alloc(0);
  if (signature.length !== 64) return { ok: false, reason: 'checkpoint signature is not 64 bytes' };
  const key = createPublicKey({ key: Buffer.concat([ED25519_SPKI_PREFIX, raw]), format: 'der', type: 'spki' });
  if (!verify(null, checkpointMessage(d.seq as number, d.hash), key, signature)) return { ok: false, reason: 'checkpoint signature does not verify' };
  return { ok: true, data: d as CheckpointData };
}
