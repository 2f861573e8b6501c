/**
 * The gateway signs the chain head at intervals (audit.checkpoint_interval) and at shutdown,
 * with the Ed25519 key at audit.signing_key; an idle log gains no checkpoints.
 */
import { createPrivateKey, createPublicKey } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, inject, test, vi } from 'vitest';
import { keyIdOf } from '../../src/audit/checkpoint.js';
import { verifyStore } from '../../src/audit/verify.js';
import { openStore } from '../../src/store/index.js';
import { startTestGateway } from '../helpers/gateway.js';
import { tunnelClient } from './ws-client.js';

const dir = mkdtempSync(join(tmpdir(), 'hoop-checkpoints-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

test('checkpoints cover the head after activity, not while idle, and once more at shutdown; all verify', async () => {
  const storePath = join(dir, 'hoop.db');
  const signingKey = join(dir, 'signing.key');
  const gw = await startTestGateway({
    upstream: inject('upstream'),
    store: `sqlite:${storePath}`,
    config: { audit: { payload_limit: '1MiB', signing_key: signingKey, checkpoint_interval: '1s' } },
  });
  const checkpoints = async () => (await gw.store.readEvents({})).filter((e) => e.type === 'checkpoint');
  try {
    // config.loaded is the first event: the first interval signs it.
    await expect.poll(async () => (await checkpoints()).length, { timeout: 5_000 }).toBe(1);
    const client = await tunnelClient(gw.url, 'bank', gw.keys['alice']!);
    await client.query('SELECT 1');
    await client.end();
    // The session's end is recorded after the fact; then a checkpoint covers it.
    await expect.poll(async () => (await gw.store.readEvents({})).some((e) => e.type === 'session.end'), { timeout: 5_000 }).toBe(true);
    const sessionEnd = (await gw.store.readEvents({})).find((e) => e.type === 'session.end')!;
    await expect.poll(async () => (await checkpoints()).some((c) => Number(c.data['seq']) >= sessionEnd.seq), { timeout: 5_000 }).toBe(true);
    const covering = (await checkpoints()).find((c) => Number(c.data['seq']) >= sessionEnd.seq)!;
    const covered = (await gw.store.readEvents({ afterSeq: Number(covering.data['seq']) - 1, limit: 1 }))[0]!;
    expect(covering.data).toMatchObject({ seq: covered.seq, hash: covered.hash, algorithm: 'Ed25519' });
    // Idle: nothing new to vouch for. Each interval starts by reading the head (nothing else
    // does while idle); a second read means the interval before it has run to its end, and it
    // wrote nothing.
    const before = (await checkpoints()).length;
    const headReads = vi.spyOn(gw.store, 'head');
    await expect.poll(() => headReads.mock.calls.length, { timeout: 5_000 }).toBeGreaterThanOrEqual(2);
    headReads.mockRestore();
    expect(await checkpoints()).toHaveLength(before);
    // Activity just before shutdown is covered by the checkpoint written at shutdown.
    const late = await tunnelClient(gw.url, 'bank', gw.keys['alice']!);
    await late.query('SELECT 2');
    await late.end();
  } finally {
    await gw.close();
  }
  // The key that signed is the one in the signing key file.
  const raw = (createPublicKey(createPrivateKey(readFileSync(signingKey))).export({ type: 'spki', format: 'der' }) as Buffer).subarray(12);
  const store = await openStore(`sqlite:${storePath}`);
  try {
    const events = await store.readEvents({});
    const last = events.at(-1)!;
    expect(last.type).toBe('checkpoint');
    expect(last.data['seq']).toBe(events.filter((e) => e.type !== 'checkpoint').at(-1)!.seq);
    const report = await verifyStore(store);
    expect(report).toMatchObject({ ok: true, key_ids: [keyIdOf(raw)] });
    // Two while it ran, the shutdown one, and one more if an interval fell inside the last session.
    expect(report.checkpoints).toBeGreaterThanOrEqual(3);
  } finally {
    await store.close();
  }
});
