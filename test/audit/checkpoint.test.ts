import { generateKeyPairSync, randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { GENESIS_HASH, sealEvent } from '../../src/audit/chain.js';
import { CheckpointSigner, verifyCheckpoint } from '../../src/audit/checkpoint.js';
import type { AuditEvent, UnsealedEvent } from '../../src/audit/event.js';
import { verifyEvents } from '../../src/audit/verify.js';

const dir = mkdtempSync(join(tmpdir(), 'hoop-checkpoint-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function keyFile(name: string, type: 'ed25519' | 'ec' = 'ed25519'): string {
  const { privateKey } = type === 'ed25519' ? generateKeyPairSync('ed25519') : generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const path = join(dir, name);
  writeFileSync(path, privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
  return path;
}

const signer = CheckpointSigner.fromFile(keyFile('signing.key'));
const intruder = CheckpointSigner.fromFile(keyFile('other.key'));
const head = { seq: 41, hash: 'ab'.repeat(32) };

/** A log of `n` statements, a checkpoint of its head (by `by`), then one more statement. */
function logWithCheckpoint(n: number, by = signer, rewrite?: (events: UnsealedEvent[]) => void): AuditEvent[] {
  const drafts: UnsealedEvent[] = Array.from({ length: n }, (_, i) => ({
    id: randomUUID(), time: new Date(Date.UTC(2026, 5, 1, 0, 0, i)).toISOString(), type: 'query.start', actor: null, source: null, connection: 'bank', session_id: 's', data: { i },
  }));
  const events: AuditEvent[] = [];
  let prev = GENESIS_HASH;
  const append = (e: UnsealedEvent) => {
    const sealed = sealEvent(e, events.length + 1, prev);
    events.push(sealed);
    prev = sealed.hash;
  };
  drafts.forEach(append);
  append({ id: randomUUID(), time: '2026-06-01T01:00:00.000Z', type: 'checkpoint', actor: null, source: null, connection: null, session_id: null, data: { ...by.sign({ seq: n, hash: prev }) } });
  append({ id: randomUUID(), time: '2026-06-01T01:00:01.000Z', type: 'query.start', actor: null, source: null, connection: 'bank', session_id: 's', data: { i: 'after' } });
  if (!rewrite) return events;
  // Someone without the key edits the past and recomputes every hash: the chain holds again.
  const unsealed = events.map(({ seq: _s, prev_hash: _p, hash: _h, ...e }) => e as UnsealedEvent);
  rewrite(unsealed);
  const rebuilt: AuditEvent[] = [];
  let p = GENESIS_HASH;
  for (const e of unsealed) {
    const s = sealEvent(e, rebuilt.length + 1, p);
    rebuilt.push(s);
    p = s.hash;
  }
  return rebuilt;
}

describe('signed checkpoints', () => {
  test('a signature verifies, and names its key by the SHA-256 of the public key', () => {
    const data = signer.sign(head);
    expect(data).toMatchObject({ seq: 41, hash: head.hash, algorithm: 'Ed25519', key_id: signer.keyId });
    expect(Buffer.from(data.public_key, 'base64')).toHaveLength(32);
    expect(verifyCheckpoint(data)).toEqual({ ok: true, data });
  });

  test('a changed head, signature or key is refused with its reason', () => {
    const data = signer.sign(head);
    expect(verifyCheckpoint({ ...data, seq: 42 })).toEqual({ ok: false, reason: 'checkpoint signature does not verify' });
    expect(verifyCheckpoint({ ...data, hash: 'cd'.repeat(32) })).toEqual({ ok: false, reason: 'checkpoint signature does not verify' });
    const other = intruder.sign(head);
    // Another key's signature under this key's name, and this key's name on another key.
    expect(verifyCheckpoint({ ...data, signature: other.signature })).toEqual({ ok: false, reason: 'checkpoint signature does not verify' });
    expect(verifyCheckpoint({ ...other, key_id: data.key_id })).toEqual({ ok: false, reason: 'checkpoint key_id does not match its public_key' });
    expect(verifyCheckpoint({ ...data, algorithm: 'HS256' })).toMatchObject({ ok: false, reason: expect.stringMatching(/not Ed25519/) });
    expect(verifyCheckpoint({ ...data, signature: 'AAAA' })).toMatchObject({ ok: false, reason: 'checkpoint signature is not 64 bytes' });
    expect(verifyCheckpoint(null)).toMatchObject({ ok: false });
  });

  test('a signing key file that is not Ed25519 is refused', () => {
    expect(() => CheckpointSigner.fromFile(keyFile('ec.key', 'ec'))).toThrow(/not an Ed25519 private key/);
  });

  test('verification checks each checkpoint against the event the chain has at its seq', () => {
    const events = logWithCheckpoint(5);
    expect(verifyEvents(events, { fromGenesis: true })).toMatchObject({
      ok: true, events: 7, checkpoints: 1, last_checkpoint: { seq: 6, covers_seq: 5, key_id: signer.keyId }, key_ids: [signer.keyId],
    });
  });

  test('a log rewritten with recomputed hashes keeps a valid chain but fails at the checkpoint', () => {
    const events = logWithCheckpoint(5, signer, (e) => {
      e[2]!.data = { i: 'edited' };
    });
    expect(verifyEvents(events, { fromGenesis: true })).toMatchObject({
      ok: false, events: 5, failure: { seq: 6, reason: 'checkpoint vouches for a different hash at seq 5: the log was rewritten after it was signed' },
    });
  });

  test('a forged checkpoint fails; another key signing is reported, for the verifier to trust or not', () => {
    const forged = logWithCheckpoint(3, signer, (e) => {
      (e[3]!.data as { signature: string }).signature = intruder.sign({ seq: 3, hash: 'ff'.repeat(32) }).signature;
    });
    expect(verifyEvents(forged, { fromGenesis: true })).toMatchObject({ ok: false, failure: { seq: 4, reason: 'checkpoint signature does not verify' } });
    expect(verifyEvents(logWithCheckpoint(3, intruder), { fromGenesis: true })).toMatchObject({ ok: true, key_ids: [intruder.keyId] });
  });
});
