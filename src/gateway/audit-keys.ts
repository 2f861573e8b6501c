/**
 * The audit signing keys a gateway knows (`GET /api/v1/audit/keys`) and key rotation at start.
 *
 * Keys come from the config (audit.signing_key is active, audit.previous_keys are retired) and
 * from the log itself: every key that signed a checkpoint, with the times of its first and last
 * checkpoint. The log is asked once in full (Store.checkpointKeys, one grouped query), then only
 * for checkpoints after the last seq seen.
 *
 * Rotation: when the gateway starts with a key other than the one that signed the newest
 * checkpoint, and either its key has never signed one (a new key) or the other key is listed in
 * previous_keys (a deliberate switch, also back to an older key), it records `audit.key_rotated`
 * {previous_key_id, key_id}; the caller then checkpoints at once, so the new key vouches for the
 * head that includes the rotation and a restart does not record it again.
 */
import { createPublicKey } from 'node:crypto';
import type { AuditKey } from '../api/types.js';
import type { CheckpointKeyUse, Store } from '../store/store.js';

/** The DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410); the raw key follows. */
const ED25519_SPKI_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');

export interface KnownKey {
  key_id: string;
  pem: string;
}

export interface Rotation {
  previous_key_id: string;
  key_id: string;
  /** Whether the previous key is in audit.previous_keys (if not, the gateway warns). */
  previous_listed: boolean;
}

export class AuditKeys {
  private readonly usage = new Map<string, Omit<CheckpointKeyUse, 'key_id'>>();
  private afterSeq = 0;
  private refreshing: Promise<void> = Promise.resolve();

  constructor(
    private readonly store: Pick<Store, 'checkpointKeys' | 'readEvents'>,
    private readonly active: KnownKey,
    private readonly previous: readonly KnownKey[],
  ) {}

  /** Every key, active first, then retired ones, then those only the log names; each with its use. */
  async list(): Promise<AuditKey[]> {
    await this.refresh();
    const out: AuditKey[] = [];
    const seen = new Set<string>();
    const add = (id: string, pem: string | null, status: AuditKey['status']) => {
      if (seen.has(id)) return;
      const use = this.usage.get(id);
      const text = pem ?? (use ? pemOf(use.public_key) : null);
      if (text === null) return; // a checkpoint that names no usable key: verification reports it
      seen.add(id);
      out.push({ key_id: id, algorithm: 'Ed25519', pem: text, status, first_used: use?.first_used ?? null, last_used: use?.last_used ?? null });
    };
    add(this.active.key_id, this.active.pem, 'active');
    for (const k of this.previous) add(k.key_id, k.pem, 'retired');
    for (const id of this.usage.keys()) add(id, null, 'unknown');
    return out;
  }

  /** The rotation to record now, if the active key is not the one that signed the newest checkpoint (see the file comment). */
  async rotation(): Promise<Rotation | null> {
    const [newest] = await this.store.readEvents({ types: ['checkpoint'], newestFirst: true, limit: 1, payload: false });
    const previous = newest ? newest.data['key_id'] : undefined;
    if (typeof previous !== 'string' || previous === this.active.key_id) return null;
    await this.refresh();
    const listed = this.previous.some((k) => k.key_id === previous);
    if (this.usage.has(this.active.key_id) && !listed) return null; // another replica's key: not a rotation of ours
    return { previous_key_id: previous, key_id: this.active.key_id, previous_listed: listed };
  }

  /** Takes in the checkpoints written since the last refresh (one at a time: results merge). */
  private refresh(): Promise<void> {
    this.refreshing = this.refreshing.catch(() => {}).then(async () => { // a failed read is retried by the next
      for (const u of await this.store.checkpointKeys(this.afterSeq)) {
        const known = this.usage.get(u.key_id);
        if (!known) this.usage.set(u.key_id, { public_key: u.public_key, first_used: u.first_used, last_used: u.last_used, last_seq: u.last_seq, checkpoints: u.checkpoints });
        else {
          known.first_used = known.first_used < u.first_used ? known.first_used : u.first_used;
          known.last_used = known.last_used > u.last_used ? known.last_used : u.last_used;
          known.last_seq = Math.max(known.last_seq, u.last_seq);
          known.checkpoints += u.checkpoints;
        }
        this.afterSeq = Math.max(this.afterSeq, u.last_seq);
      }
    });
    return this.refreshing;
  }
}

/** The SPKI PEM of a raw Ed25519 public key (base64), or null if it is not one. */
function pemOf(rawBase64: string): string | null {
  const raw = Buffer.from(rawBase64, 'base64');
  if (raw.length !== 32) return null;
  try {
    return createPublicKey({ key: Buffer.concat([ED25519_SPKI_PREFIX, raw]), format: 'der', type: 'spki' }).export({ type: 'spki', format: 'pem' }) as string;
  } catch {
    return null;
  }
}
