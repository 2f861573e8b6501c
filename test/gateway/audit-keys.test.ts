/**
 * Audit signing keys: GET /api/v1/audit/keys lists the active key and the retired ones
 * (audit.previous_keys, public keys only) with their first and last use; restarting with a new
 * key records `audit.key_rotated` and signs at once with the new key; the old and new
 * checkpoints all verify.
 */
import { createPrivateKey, createPublicKey, generateKeyPairSync, randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { afterAll, describe, expect, inject, test } from 'vitest';
import { keyIdOf } from '../../src/audit/checkpoint.js';
import { verifyStore } from '../../src/audit/verify.js';
import { AuditKeys } from '../../src/gateway/audit-keys.js';
import { parseConfig } from '../../src/gateway/config.js';
import { openStore } from '../../src/store/index.js';
import { runHoop } from '../cli/helpers.js';
import { apiCall, startTestGateway } from '../helpers/gateway.js';

const upstream = inject('upstream');
const dir = mkdtempSync(join(tmpdir(), 'hoop-audit-keys-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const storeUrl = `sqlite:${join(dir, 'hoop.db')}`;
const keyId = (privatePath: string) => keyIdOf((createPublicKey(createPrivateKey(readFileSync(privatePath))).export({ type: 'spki', format: 'der' }) as Buffer).subarray(12));

function logLines(): { logger: pino.Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({ write(chunk: Buffer, _enc, done) { for (const l of chunk.toString().split('\n')) if (l) lines.push(JSON.parse(l)); done(); } });
  return { logger: pino({ level: 'info' }, sink), lines };
}

async function gateway(signingKey: string, previousKeys: string[] = [], logger?: pino.Logger) {
  return startTestGateway({ upstream, store: storeUrl, config: { audit: { payload_limit: '1MiB', signing_key: signingKey, previous_keys: previousKeys } }, ...(logger ? { logger } : {}) });
}

describe('audit keys and rotation', () => {
  test('a restart with a new key records the rotation, lists both keys with their use, and every checkpoint verifies', async () => {
    const first = join(dir, 'first.key');
    const second = join(dir, 'second.key');
    // Two runs with the first key: each stop signs the head.
    for (let run = 0; run < 2; run++) {
      const gw = await gateway(first);
      const keys = await apiCall(gw, 'GET', '/audit/keys', 'alice');
      expect(keys.status).toBe(200); // any signed-in identity
      expect(keys.json).toMatchObject([{ key_id: keyId(first), algorithm: 'Ed25519', status: 'active', pem: expect.stringMatching(/^-----BEGIN PUBLIC KEY-----\n/) }]);
      expect(keys.json[0].first_used === null).toBe(run === 0);
      await gw.close();
    }
    const oldPublic = join(dir, 'first.pub.pem');
    writeFileSync(oldPublic, createPublicKey(createPrivateKey(readFileSync(first))).export({ type: 'spki', format: 'pem' }));

    const { logger, lines } = logLines();
    const gw = await gateway(second, [oldPublic], logger);
    try {
      const events = await gw.store.readEvents({});
      const rotated = events.filter((e) => e.type === 'audit.key_rotated');
      expect(rotated.map((e) => e.data)).toEqual([{ previous_key_id: keyId(first), key_id: keyId(second) }]);
      // Signed at once by the new key: the checkpoint right after covers the rotation.
      const next = events.find((e) => e.seq === rotated[0]!.seq + 1)!;
      expect(next).toMatchObject({ type: 'checkpoint', data: { key_id: keyId(second), seq: rotated[0]!.seq } });
      const keys = (await apiCall(gw, 'GET', '/audit/keys', 'carol')).json;
      expect(keys.map((k: { key_id: string; status: string }) => [k.key_id, k.status])).toEqual([[keyId(second), 'active'], [keyId(first), 'retired']]);
      expect(keys[0].first_used).toBe(next.time);
      const firstCheckpoints = events.filter((e) => e.type === 'checkpoint' && e.data['key_id'] === keyId(first));
      expect(firstCheckpoints).toHaveLength(2);
      expect(keys[1]).toMatchObject({ first_used: firstCheckpoints[0]!.time, last_used: firstCheckpoints[1]!.time, pem: readFileSync(oldPublic, 'utf8') });
      // hoop audit keys: the same, as a table (into a pipe: tab-separated rows, no header) or JSON.
      const cli = await runHoop(['audit', 'keys'], { env: { HOOP_GATEWAY: gw.url, HOOP_TOKEN: gw.keys['alice']! } });
      expect(cli.code).toBe(0);
      expect(cli.stdout.trimEnd().split('\n').map((l) => l.split('\t'))).toEqual([
        [keyId(second), 'active', keys[0].first_used, keys[0].last_used],
        [keyId(first), 'retired', keys[1].first_used, keys[1].last_used],
      ]);
      expect(JSON.parse((await runHoop(['audit', 'keys', '--json'], { env: { HOOP_GATEWAY: gw.url, HOOP_TOKEN: gw.keys['alice']! } })).stdout)).toEqual(keys);
      expect(lines.some((l) => l['msg'] === 'audit signing key rotated')).toBe(true);
      expect(lines.some((l) => l['level'] === 40)).toBe(false); // the old key is listed: no warning
      expect((await apiCall({ ...gw, keys: { nobody: 'hoop_not-a-key' } }, 'GET', '/audit/keys', 'nobody')).status).toBe(401);
      expect((await apiCall(gw, 'GET', '/audit/keys?x=1', 'alice')).status).toBe(400);
    } finally {
      await gw.close();
    }

    // Again with the second key: nothing to record.
    const again = await gateway(second, [oldPublic]);
    const rotations = (await again.store.readEvents({ types: ['audit.key_rotated'] })).length;
    await again.close();
    expect(rotations).toBe(1);

    // A third key, the second not listed: recorded, with a warning naming the unlisted key.
    const third = logLines();
    const gw3 = await gateway(join(dir, 'third.key'), [oldPublic], third.logger);
    const last = (await gw3.store.readEvents({ types: ['audit.key_rotated'] })).at(-1)!;
    await gw3.close();
    expect(last.data).toEqual({ previous_key_id: keyId(second), key_id: keyId(join(dir, 'third.key')) });
    expect(third.lines.find((l) => l['level'] === 40)).toMatchObject({ previous_key_id: keyId(second), msg: expect.stringMatching(/not in audit\.previous_keys/) });

    const store = await openStore(storeUrl);
    try {
      expect(await verifyStore(store)).toMatchObject({ ok: true, key_ids: [keyId(first), keyId(second), keyId(join(dir, 'third.key'))] });
    } finally {
      await store.close();
    }
  });

  test('rotation or not: a new key, a switch back to a listed key, and another replica\'s key on a shared store', async () => {
    const store = await openStore('sqlite::memory:');
    try {
      const checkpoint = async (key: string) => {
        const head = (await store.head()) ?? { seq: 0, hash: '0'.repeat(64) };
        await store.appendEvents([{ id: randomUUID(), time: new Date().toISOString(), type: 'checkpoint', actor: null, source: null, connection: null, session_id: null, data: { seq: head.seq, hash: head.hash, key_id: key, public_key: 'AAAA' } }]);
      };
      const keys = (active: string, previous: string[] = []) => new AuditKeys(store, { key_id: active, pem: 'pem' }, previous.map((key_id) => ({ key_id, pem: 'pem' })));
      expect(await keys('a').rotation()).toBeNull(); // an empty log
      await checkpoint('a');
      await checkpoint('b');
      expect(await keys('b').rotation()).toBeNull(); // the newest checkpoint is its own
      expect(await keys('a').rotation()).toBeNull(); // a signed before, b not retired: b is another replica
      expect(await keys('a', ['b']).rotation()).toEqual({ previous_key_id: 'b', key_id: 'a', previous_listed: true }); // back to a, b retired
      expect(await keys('c').rotation()).toEqual({ previous_key_id: 'b', key_id: 'c', previous_listed: false }); // a new key
      const listed = await keys('c', ['a']).list();
      expect(listed.map((k) => [k.key_id, k.status])).toEqual([['c', 'active'], ['a', 'retired']]); // b's 'AAAA' is no Ed25519 key: not listed
    } finally {
      await store.close();
    }
  });

  test('audit.previous_keys takes Ed25519 public keys only: a private key, another algorithm or a missing file is refused with the key path', () => {
    const { privateKey } = generateKeyPairSync('ed25519');
    const priv = join(dir, 'old-private.pem');
    writeFileSync(priv, privateKey.export({ type: 'pkcs8', format: 'pem' }));
    const rsa = join(dir, 'rsa.pub.pem');
    writeFileSync(rsa, generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey.export({ type: 'spki', format: 'pem' }));
    const parse = (previous_keys: string[]) => parseConfig({ identity: { api_keys: [{ name: 'a', sha256: 'a'.repeat(64), groups: [] }] }, audit: { previous_keys } }, 'hoop.yaml', dir);
    expect(() => parse(['old-private.pem'])).toThrow(/hoop\.yaml: audit\.previous_keys\[0\]: old-private\.pem holds a private key; previous_keys takes public keys only/);
    expect(() => parse(['rsa.pub.pem'])).toThrow(/audit\.previous_keys\[0\]: rsa\.pub\.pem holds a rsa key, not an Ed25519 audit signing key/);
    expect(() => parse(['missing.pem'])).toThrow(/audit\.previous_keys\[0\]: cannot read missing\.pem/);
    const pub = join(dir, 'ok.pub.pem');
    writeFileSync(pub, createPublicKey(privateKey).export({ type: 'spki', format: 'pem' }));
    const raw = (createPublicKey(privateKey).export({ type: 'spki', format: 'der' }) as Buffer).subarray(12);
    expect(parse(['ok.pub.pem']).audit.previous_keys).toEqual([{ path: pub, key_id: keyIdOf(raw), pem: readFileSync(pub, 'utf8') }]);
  });
});
