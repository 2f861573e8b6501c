import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { configDir, resolveCredential, resolveGateway, resolveToken, setStoredTokenProvider } from '../../src/cli/credentials.js';
import { HoopError } from '../../src/errors.js';
import { tempHome } from './helpers.js';

function saveDefault(env: Record<string, string>, content: string): void {
  const dir = configDir(env);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'config.json'), content);
}

describe('resolveGateway', () => {
  const homes: (() => void)[] = [];
  afterEach(() => homes.splice(0).forEach((c) => c()));
  const home = () => {
    const h = tempHome();
    homes.push(h.cleanup);
    return h.env;
  };

  it('prefers --gateway, then HOOP_GATEWAY, then the default saved at login', () => {
    const env = home();
    saveDefault(env, JSON.stringify({ default_gateway: 'https://saved.example/' }));
    expect(resolveGateway({ gateway: 'https://flag.example:8009/' }, { ...env, HOOP_GATEWAY: 'https://env.example' })).toBe('https://flag.example:8009');
    expect(resolveGateway({}, { ...env, HOOP_GATEWAY: 'https://env.example' })).toBe('https://env.example');
    expect(resolveGateway({}, env)).toBe('https://saved.example');
  });

  it('reads the saved default under XDG_CONFIG_HOME, else ~/.config', () => {
    const env = home();
    expect(configDir(env)).toBe(join(env.XDG_CONFIG_HOME!, 'hoop'));
    expect(configDir({ HOME: env.HOME })).toBe(join(env.HOME!, '.config', 'hoop'));
    saveDefault({ HOME: env.HOME! }, JSON.stringify({ default_gateway: 'https://home.example' }));
    expect(resolveGateway({}, { HOME: env.HOME })).toBe('https://home.example');
  });

  it('without any source: HOOP_NOT_LOGGED_IN saying to pass --gateway or log in', () => {
    const env = home();
    const err = (() => {
      try {
        resolveGateway({}, env);
      } catch (e) {
        return e as HoopError;
      }
      throw new Error('resolved');
    })();
    expect(err.code).toBe('HOOP_NOT_LOGGED_IN');
    expect(err.hint).toContain('--gateway');
    expect(err.hint).toContain('hoop login');
  });

  it('tolerates a config without default_gateway; refuses a corrupt one clearly', () => {
    const env = home();
    saveDefault(env, JSON.stringify({ something: 'else' }));
    expect(() => resolveGateway({}, env)).toThrow(/no gateway given/);
    saveDefault(env, '{ not json');
    expect(() => resolveGateway({}, env)).toThrow(/config\.json is not valid JSON/);
  });

  it('refuses gateway URLs that are not plain http(s) base URLs', () => {
    expect(resolveGateway({ gateway: '127.0.0.1:8009' }, {})).toBe('http://127.0.0.1:8009');
    for (const bad of ['ftp://x', 'https://user:pw@x', 'https://x/?a=1', 'http://']) {
      expect(() => resolveGateway({ gateway: bad }, {})).toThrow(HoopError);
    }
  });

  it('sends tokens over plain http only to loopback addresses, unless HOOP_INSECURE_HTTP=1', () => {
    expect(() => resolveGateway({ gateway: 'http://hoop.bank.example' }, {})).toThrow(/refusing to send credentials over plain http to hoop\.bank\.example/);
    expect(resolveGateway({ gateway: 'http://hoop.bank.example' }, { HOOP_INSECURE_HTTP: '1' })).toBe('http://hoop.bank.example');
    expect(resolveGateway({ gateway: 'hoop.bank.example' }, {})).toBe('https://hoop.bank.example');
    for (const local of ['http://localhost:8009', 'http://127.0.0.2:8009', 'http://[::1]:8009', 'localhost:8009']) {
      expect(resolveGateway({ gateway: local }, {})).toMatch(/^http:\/\//);
    }
  });
});

describe('resolveToken', () => {
  afterEach(() => setStoredTokenProvider(null));

  it('takes HOOP_TOKEN first, without asking the stored-credentials provider', async () => {
    let asked = false;
    setStoredTokenProvider(async () => {
      asked = true;
      return 'stored';
    });
    expect(await resolveCredential('http://gw', { HOOP_TOKEN: ' key ' })).toEqual({ token: 'key', source: 'HOOP_TOKEN' });
    expect(asked).toBe(false);
  });

  it('asks the registered provider for the gateway, else says how to log in', async () => {
    const seen: string[] = [];
    setStoredTokenProvider(async (gw) => {
      seen.push(gw);
      return gw === 'http://a' ? 'token-a' : null;
    });
    expect(await resolveToken('http://a', {})).toBe('token-a');
    await expect(resolveToken('http://b', {})).rejects.toMatchObject({
      code: 'HOOP_NOT_LOGGED_IN',
      hint: 'Run `hoop login --gateway http://b`, or set HOOP_TOKEN to an API key.',
    });
    expect(seen).toEqual(['http://a', 'http://b']);
  });
});
