/**
 * Which gateway, and which bearer token, a command uses (gh `internal/config` order):
 *   gateway: --gateway, then HOOP_GATEWAY, then the default saved at login;
 *   token:   HOOP_TOKEN (API key or bearer, for automated jobs), then stored credentials.
 * Storage belongs to `src/identity/`: it registers a provider with `setStoredTokenProvider`, so
 * this module knows nothing of keychains or refresh.
 */
import { readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { HoopError, UsageError } from '../errors.js';
import { isLoopbackHost } from '../net/loopback.js';
import type { Env } from './iostreams.js';

/** Returns a valid (refreshed if needed) access token for the gateway, or null when none is stored. */
export type StoredTokenProvider = (gateway: string) => Promise<string | null>;

let storedTokenProvider: StoredTokenProvider | null = null;

export function setStoredTokenProvider(provider: StoredTokenProvider | null): void {
  storedTokenProvider = provider;
}

/** `$XDG_CONFIG_HOME/hoop`, else `~/.config/hoop`. */
export function configDir(env: Env = process.env): string {
  const xdg = env.XDG_CONFIG_HOME;
  const home = env.HOME || homedir();
  return join(xdg && xdg.startsWith('/') ? xdg : join(home, '.config'), 'hoop');
}

/**
 * Normalises a gateway base URL: http(s) only, no trailing slash, no query or credentials.
 * Bearer tokens travel with every request, so plain http is accepted only to a loopback address
 * (the demo, a local gateway) unless HOOP_INSECURE_HTTP=1 says otherwise; a bare host name means
 * https.
 */
export function normalizeGatewayUrl(raw: string, from: string, env: Env = process.env): string {
  let url: URL;
  try {
    url = new URL(raw.includes('://') ? raw : `${isLoopbackHost(raw.split(/[/:]/)[0] ?? '') ? 'http' : 'https'}://${raw}`);
  } catch {
    throw new UsageError(`invalid gateway URL '${raw}' (from ${from})`, { hint: 'Use a URL like https://hoop.example.com or http://127.0.0.1:8009.' });
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new UsageError(`invalid gateway URL '${raw}' (from ${from}): only http and https are supported`);
  }
  if (url.username || url.password || url.search || url.hash) {
    throw new UsageError(`invalid gateway URL '${raw}' (from ${from}): no credentials, query or fragment allowed`);
  }
  if (url.protocol === 'http:' && !isLoopbackHost(url.hostname) && env.HOOP_INSECURE_HTTP !== '1') {
    throw new UsageError(`refusing to send credentials over plain http to ${url.host} (from ${from})`, {
      hint: 'Use the gateway\'s https:// URL (plain http is only for loopback addresses; HOOP_INSECURE_HTTP=1 overrides).',
    });
  }
  return `${url.origin}${url.pathname.replace(/\/+$/, '')}`;
}

function savedDefaultGateway(env: Env): string | null {
  const file = join(configDir(env), 'config.json');
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw new HoopError('HOOP_INTERNAL', `cannot read ${file}: ${(err as Error).message}`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new HoopError('HOOP_CONFIG_INVALID', `${file} is not valid JSON`, { hint: 'Fix or delete it, then run `hoop login --gateway <url>`.' });
  }
  const value = (parsed as { default_gateway?: unknown } | null)?.default_gateway;
  return typeof value === 'string' && value !== '' ? value : null;
}

export function resolveGateway(flags: { gateway?: string | undefined }, env: Env = process.env): string {
  if (flags.gateway) return normalizeGatewayUrl(flags.gateway, '--gateway', env);
  if (env.HOOP_GATEWAY) return normalizeGatewayUrl(env.HOOP_GATEWAY, 'HOOP_GATEWAY', env);
  const saved = savedDefaultGateway(env);
  if (saved) return normalizeGatewayUrl(saved, join(configDir(env), 'config.json'), env);
  throw new HoopError('HOOP_NOT_LOGGED_IN', 'no gateway given and none saved', {
    hint: 'Pass --gateway <url>, set HOOP_GATEWAY, or run `hoop login --gateway <url>`.',
  });
}

export type TokenSource = 'HOOP_TOKEN' | 'stored';

/** The token and where it came from (for hints: a rejected HOOP_TOKEN is not fixed by logging in). */
export async function resolveCredential(gateway: string, env: Env = process.env): Promise<{ token: string; source: TokenSource }> {
  const fromEnv = env.HOOP_TOKEN?.trim();
  if (fromEnv) return { token: fromEnv, source: 'HOOP_TOKEN' };
  const stored = storedTokenProvider ? await storedTokenProvider(gateway) : null;
  if (stored) return { token: stored, source: 'stored' };
  throw new HoopError('HOOP_NOT_LOGGED_IN', `not logged in to ${gateway}`, {
    hint: `Run \`hoop login --gateway ${gateway}\`, or set HOOP_TOKEN to an API key.`,
  });
}

export async function resolveToken(gateway: string, env: Env = process.env): Promise<string> {
  return (await resolveCredential(gateway, env)).token;
}
