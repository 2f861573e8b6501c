import { chmodSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { until } from '../helpers/poll.js';
import {
  ChildProcessKeyring,
  CredentialsStore,
  type KeyringBackend,
  type StoredCredentials,
} from '../../src/identity/credentials-store.js';

let home: string;
beforeEach(() => {
  home = mkdtempSync(join(tmpdir(), 'hoop-creds-'));
});
afterEach(() => {
  rmSync(home, { recursive: true, force: true });
});

function creds(gateway: string, token = 'at-1'): StoredCredentials {
  return {
    gateway,
    issuer: 'http://127.0.0.1:1',
    client_id: 'hoop-cli',
    grant: 'device',
    access_token: token,
    refresh_token: 'rt-1',
    expires_at: new Date(Date.now() + 600_000).toISOString(),
    subject: 'alice',
    email: 'alice@bank.example',
    groups: ['analysts'],
    saved_at: new Date().toISOString(),
  };
}

class MemoryKeyring implements KeyringBackend {
  readonly items = new Map<string, string>();
  async get(account: string): Promise<string | null> {
    return this.items.get(account) ?? null;
  }
  async set(account: string, secret: string): Promise<void> {
    this.items.set(account, secret);
  }
  async delete(account: string): Promise<boolean> {
    return this.items.delete(account);
  }
}

/** A keychain that never answers (a locked keyring waiting on a prompt nobody sees). */
class HangingKeyring implements KeyringBackend {
  get(): Promise<string | null> {
    return new Promise(() => undefined);
  }
  set(): Promise<void> {
    return new Promise(() => undefined);
  }
  delete(): Promise<boolean> {
    return new Promise(() => undefined);
  }
}

describe('credentials file', () => {
  it('is 0600 in a 0700 directory, keeps gateways apart, and deletes per gateway', async () => {
    const env = { XDG_CONFIG_HOME: join(home, 'cfg'), HOOP_KEYRING: 'file' };
    const store = new CredentialsStore({ env });
    const where = await store.save(creds('http://gw-a:8009', 'token-a'));
    await store.save(creds('https://gw-b.example', 'token-b'));
    expect(where).toBe(join(home, 'cfg', 'hoop', 'credentials.json'));
    expect(statSync(where).mode & 0o777).toBe(0o600);
    expect(statSync(join(home, 'cfg', 'hoop')).mode & 0o777).toBe(0o700);
    expect((await store.load('http://gw-a:8009'))!.credentials.access_token).toBe('token-a');
    expect((await store.load('https://gw-b.example'))!).toMatchObject({ where, credentials: { access_token: 'token-b' } });
    expect(await store.load('http://other:1')).toBeNull();
    expect(await store.delete('http://gw-a:8009')).toBe(true);
    expect(await store.load('http://gw-a:8009')).toBeNull();
    expect((await store.load('https://gw-b.example'))!.credentials.access_token).toBe('token-b');
    expect(await store.delete('https://gw-b.example')).toBe(true);
    expect(readdirSync(join(home, 'cfg', 'hoop'))).toEqual([]); // no temp files, no empty file
  });

  it('tightens an existing credentials directory that others could read', async () => {
    const dir = join(home, 'loose', 'hoop');
    mkdirSync(dir, { recursive: true, mode: 0o755 });
    chmodSync(dir, 0o755);
    const store = new CredentialsStore({ env: { XDG_CONFIG_HOME: join(home, 'loose'), HOOP_KEYRING: 'file' } });
    await store.save(creds('http://gw:2', 'token'));
    expect(statSync(dir).mode & 0o777).toBe(0o700);
  });

  it('rewrites atomically: a leftover temp file never replaces good credentials', async () => {
    const env = { XDG_CONFIG_HOME: home, HOOP_KEYRING: 'file' };
    const store = new CredentialsStore({ env });
    const file = await store.save(creds('http://gw:1', 'first'));
    // a crashed writer's half-written temp file beside the real one
    writeFileSync(`${file}.999.deadbeef.tmp`, '{"version":1,"gatew');
    await store.save(creds('http://gw:1', 'second'));
    expect(JSON.parse(readFileSync(file, 'utf8')).gateways['http://gw:1'].access_token).toBe('second');
    expect(statSync(file).mode & 0o777).toBe(0o600);
  });

  it('uses HOME/.config when XDG_CONFIG_HOME is unset', () => {
    const store = new CredentialsStore({ env: { HOME: home, HOOP_KEYRING: 'file' } });
    expect(store.file).toBe(join(home, '.config', 'hoop', 'credentials.json'));
  });
});

describe('keychain', () => {
  it('stores in the keychain when it answers, and leaves no copy in the file', async () => {
    const keyring = new MemoryKeyring();
    const store = new CredentialsStore({ env: { XDG_CONFIG_HOME: home }, keyring });
    expect(await store.save(creds('http://gw:1'))).toBe('keychain');
    expect(JSON.parse(keyring.items.get('http://gw:1')!).access_token).toBe('at-1');
    expect((await store.load('http://gw:1'))!.where).toBe('keychain');
    expect(readdirSync(home)).toEqual([]); // nothing written to disk
    expect(await store.delete('http://gw:1')).toBe(true);
    expect(keyring.items.size).toBe(0);
  });

  it('a hanging keychain is abandoned after the timeout and the file is used, with one notice', async () => {
    const notices: string[] = [];
    const store = new CredentialsStore({
      env: { XDG_CONFIG_HOME: home },
      keyring: new HangingKeyring(),
      keyringTimeoutMs: 200,
      notice: (line) => notices.push(line),
    });
    const started = Date.now();
    const where = await store.save(creds('http://gw:1'));
    expect(where).toBe(store.file);
    const found = await store.load('http://gw:1');
    expect(found!.where).toBe(store.file);
    expect(Date.now() - started).toBeLessThan(2_000);
    expect(notices).toHaveLength(1);
    expect(notices[0]).toMatch(/^Notice: OS keychain unavailable \(no answer within 200 ms\); using .*credentials\.json \(mode 0600\)\.$/);
  });

  it('HOOP_KEYRING=keychain turns a keychain failure into an error instead of a fallback', async () => {
    const store = new CredentialsStore({ env: { XDG_CONFIG_HOME: home, HOOP_KEYRING: 'keychain' }, keyring: new HangingKeyring(), keyringTimeoutMs: 100 });
    await expect(store.save(creds('http://gw:1'))).rejects.toThrow(/the OS keychain failed: no answer within 100 ms/);
  });

  it('the child-process keychain kills a helper that never answers', async () => {
    const script = join(home, 'hang.mjs');
    writeFileSync(script, 'setInterval(() => {}, 1000);\n');
    const store = new CredentialsStore({ env: { XDG_CONFIG_HOME: home }, keyring: new ChildProcessKeyring(script), keyringTimeoutMs: 500, notice: () => undefined });
    const started = Date.now();
    expect(await store.load('http://gw:1')).toBeNull();
    expect(Date.now() - started).toBeLessThan(3_000);
    // Every process running the helper script is gone: found by its command line, since on a
    // loaded machine the helper may be killed before it got to write its pid.
    const helpers = () => readdirSync('/proc').filter((d) => /^\d+$/.test(d)).filter((d) => {
      try {
        return readFileSync(`/proc/${d}/cmdline`, 'utf8').includes(script);
      } catch {
        return false; // gone between the listing and the read
      }
    });
    await until(() => helpers().length === 0, { what: () => `the keychain helper gone (still running: ${helpers().join(', ')})` });
  });
});

describe('lock', () => {
  it('serialises concurrent holders', async () => {
    const store = new CredentialsStore({ env: { XDG_CONFIG_HOME: home, HOOP_KEYRING: 'file' } });
    const order: string[] = [];
    const hold = (name: string) =>
      store.withLock(async () => {
        order.push(`${name}:in`);
        await new Promise((r) => setTimeout(r, 100));
        order.push(`${name}:out`);
      });
    await Promise.all([hold('a'), hold('b')]);
    expect(order).toEqual(['a:in', 'a:out', 'b:in', 'b:out']);
  });
});
