/**
 * `hoop login`, `hoop logout`, `hoop whoami`: the terminal side of src/identity/. The flows live
 * there (device flow, client credentials, storage, refresh); these declarations only talk to the
 * person: what to open, what to type, what happened.
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { AuthError, HoopError, UsageError } from '../../errors.js';
import { CredentialsStore, writeFileAtomic, type Location, type StoredCredentials } from '../../identity/credentials-store.js';
import { OidcClient, type DeviceAuthorization } from '../../identity/device-flow.js';
import { clientCredentialsLogin, deviceLogin, fetchAuthConfig, fetchGatewayIdentity, type GatewayIdentity } from '../../identity/login.js';
import { TokenProvider, keepTokenFresh } from '../../identity/token-provider.js';
import { defineCommand, opt, type CommandGroup } from '../command.js';
import type { CommandContext } from '../context.js';
import { configDir, normalizeGatewayUrl, resolveGateway, setStoredTokenProvider } from '../credentials.js';
import type { Env, IOStreams } from '../iostreams.js';
import { printJson, sanitize } from '../output.js';

/** Plugs stored credentials (with transparent refresh) into `resolveToken`. Called by main. */
export function installStoredTokenProvider(env: Env): void {
  let tokens: TokenProvider | undefined; // one per process: a keychain that timed out is not asked again
  setStoredTokenProvider((gateway) => (tokens ??= new TokenProvider({ env })).storedToken(gateway));
}

/**
 * For `hoop connect`: keeps the stored login fresh while it runs and tells the person, once, when
 * a refresh fails (open sessions continue). Returns the function that stops it.
 */
export function keepStoredTokenFresh(ctx: CommandContext, gateway: string): () => void {
  const { io } = ctx;
  const tokens = new TokenProvider({ env: ctx.env, store: new CredentialsStore({ env: ctx.env, notice: (l) => io.info(l) }) });
  return keepTokenFresh(tokens, gateway, {
    onFailure: (message) => io.info(`${io.err.yellow('warning:')} ${message}`),
    onRecovered: () => io.info(`Login to ${gateway} refreshed; new connections work again.`),
  });
}

export const loginCommand = defineCommand({
  name: 'login',
  summary: 'Sign in to a gateway with your identity provider',
  description:
    'Sign in with the OAuth 2.0 device flow: hoop asks the gateway which identity provider it trusts,\n' +
    'shows a URL and a code to enter there, and waits while you sign in in a browser. Tokens are\n' +
    'kept in the OS keychain (or a 0600 file where there is none) and refreshed automatically.\n' +
    'The gateway becomes the default for later commands.\n\n' +
    'Service identities: --client-credentials with HOOP_CLIENT_ID and HOOP_CLIENT_SECRET.',
  options: {
    browser: { flags: '--no-browser', description: 'do not open a browser; just print the URL and code', defaultValue: true },
    clientCredentials: opt.flag('--client-credentials', 'sign in as a service with HOOP_CLIENT_ID/HOOP_CLIENT_SECRET'),
  },
  examples: [
    'hoop login --gateway https://hoop.example.com',
    'hoop login --gateway http://127.0.0.1:8009 --no-browser',
    'HOOP_CLIENT_ID=etl HOOP_CLIENT_SECRET=... hoop login --client-credentials --gateway https://hoop.example.com',
  ],
  async run(ctx, { options }) {
    const gateway = loginGateway(ctx);
    const { io } = ctx;
    const config = await fetchAuthConfig(gateway);
    let result;
    if (options.clientCredentials) {
      const clientId = ctx.env.HOOP_CLIENT_ID?.trim();
      const clientSecret = ctx.env.HOOP_CLIENT_SECRET;
      if (!clientId || !clientSecret) {
        throw new UsageError('--client-credentials needs HOOP_CLIENT_ID and HOOP_CLIENT_SECRET in the environment');
      }
      result = await clientCredentialsLogin({ gateway, config, clientId, clientSecret });
    } else {
      const cancel = new AbortController();
      void ctx.shutdownSignal().then(() => cancel.abort());
      result = await deviceLogin({
        gateway,
        config,
        signal: cancel.signal,
        prompt: (auth) => showDeviceCode(ctx, auth, options.browser),
      });
    }
    const store = new CredentialsStore({ env: ctx.env, notice: (line) => io.info(line) });
    const where = await store.save(result.credentials);
    saveDefaultGateway(ctx.env, gateway);
    const id = result.identity;
    if (ctx.globals.json) {
      printJson(io, { gateway, ...identityJson(id), expires_at: result.credentials.expires_at, stored_in: where });
      return;
    }
    const who = sanitize(id.email ?? id.subject);
    io.info(`${io.err.green('✓')} Logged in to ${gateway} as ${io.err.bold(who)} (groups: ${sanitize(id.groups.join(', ') || 'none')})`);
  },
});

export const logoutCommand = defineCommand({
  name: 'logout',
  summary: 'Forget the stored credentials for a gateway',
  description: 'Revoke the refresh token at the identity provider (where it supports revocation) and delete\nthe credentials stored for the gateway.',
  examples: ['hoop logout', 'hoop logout --gateway https://hoop.example.com'],
  async run(ctx) {
    const gateway = ctx.gateway();
    const { io } = ctx;
    const store = new CredentialsStore({ env: ctx.env, notice: (line) => io.info(line) });
    const found = await store.load(gateway);
    if (!found) {
      io.info(`Not logged in to ${gateway}; nothing to do.`);
      return;
    }
    const c = found.credentials;
    let revoked = 'not revoked: the provider offers no revocation';
    try {
      const client = await OidcClient.discover(c.issuer, c.client_id);
      const token = c.refresh_token ?? c.access_token;
      if (c.grant === 'device' && (await client.tokenRevocation(token, c.refresh_token ? 'refresh_token' : 'access_token'))) {
        revoked = `${c.refresh_token ? 'refresh' : 'access'} token revoked`;
      } else if (c.grant === 'client_credentials') {
        revoked = 'service token left to expire';
      }
    } catch (err) {
      revoked = `could not revoke at the provider: ${err instanceof Error ? err.message : String(err)}`;
    }
    await store.delete(gateway);
    io.info(`Logged out of ${gateway} (${revoked}).`);
  },
});

export const whoamiCommand = defineCommand({
  name: 'whoami',
  summary: 'Show who you are at the gateway, and where your token is kept',
  description: 'Show the identity the gateway sees (subject, email, groups), the token expiry, and where\nthe credentials are stored (keychain, file, or HOOP_TOKEN).',
  examples: ['hoop whoami', 'hoop whoami --json'],
  async run(ctx) {
    const gateway = ctx.gateway();
    const { io } = ctx;
    let token: string;
    let storedIn: Location | 'HOOP_TOKEN';
    let stored: StoredCredentials | null = null;
    const fromEnv = ctx.env.HOOP_TOKEN?.trim();
    if (fromEnv) {
      token = fromEnv;
      storedIn = 'HOOP_TOKEN';
    } else {
      const tokens = new TokenProvider({ env: ctx.env, store: new CredentialsStore({ env: ctx.env, notice: (l) => io.info(l) }) });
      const found = await tokens.store.load(gateway);
      if (!found) {
        throw new HoopError('HOOP_NOT_LOGGED_IN', `not logged in to ${gateway}`, {
          hint: `Run \`hoop login --gateway ${gateway}\`, or set HOOP_TOKEN to an API key.`,
        });
      }
      token = (await tokens.storedToken(gateway))!;
      storedIn = found.where;
      stored = (await tokens.store.load(gateway))?.credentials ?? found.credentials;
    }
    const id = await fetchGatewayIdentity(gateway, token).catch((err: unknown) => {
      if (err instanceof HoopError && err.code === 'HOOP_AUTH_REJECTED') {
        throw new AuthError('HOOP_AUTH_REJECTED', `${gateway} rejected the token: ${err.message}`, {
          hint: storedIn === 'HOOP_TOKEN' ? 'Check HOOP_TOKEN.' : `Run \`hoop login --gateway ${gateway}\` again.`,
        });
      }
      if (err instanceof HoopError && err.code === 'HOOP_NETWORK' && stored) {
        // The gateway is down: what was stored at login still answers "who am I".
        io.info(`${io.err.yellow('warning:')} ${err.message}; showing the identity stored at login`);
        return { subject: stored.subject, email: stored.email, name: null, groups: stored.groups, method: 'oidc', expires_at: stored.expires_at };
      }
      throw err;
    });
    if (ctx.globals.json) {
      printJson(io, { gateway, ...identityJson(id), stored_in: storedIn });
      return;
    }
    printWhoami(ctx, gateway, id, storedIn);
  },
});

function identityJson(id: GatewayIdentity): Record<string, unknown> {
  return { subject: id.subject, email: id.email, name: id.name, groups: id.groups, method: id.method, expires_at: id.expires_at };
}

function printWhoami(ctx: CommandContext, gateway: string, id: GatewayIdentity, storedIn: string): void {
  const rows: [string, string][] = [
    ['Gateway', gateway],
    ['Subject', id.subject],
    ['Email', id.email ?? '-'],
    ['Name', id.name ?? '-'],
    ['Groups', id.groups.join(', ') || '-'],
    ['Method', id.method],
    ['Expires', id.expires_at ? `${id.expires_at} (${relative(Date.parse(id.expires_at) - ctx.now().getTime())})` : 'never (API key)'],
    ['Stored in', storedIn === 'HOOP_TOKEN' ? 'HOOP_TOKEN environment variable' : storedIn === 'keychain' ? 'OS keychain' : storedIn],
  ];
  for (const [k, v] of rows) ctx.io.print(`${`${k}:`.padEnd(11)}${sanitize(v)}`);
}

function relative(ms: number): string {
  if (ms <= 0) return 'expired';
  const m = Math.round(ms / 60_000);
  if (m < 1) return 'in less than a minute';
  if (m < 120) return `in ${m} min`;
  return `in ${Math.round(m / 60)} h`;
}

/** `hoop login` needs a gateway: --gateway, HOOP_GATEWAY, else the saved default. */
function loginGateway(ctx: CommandContext): string {
  try {
    return resolveGateway(ctx.globals, ctx.env);
  } catch (err) {
    if (err instanceof HoopError && err.code === 'HOOP_NOT_LOGGED_IN') {
      throw new UsageError('which gateway? pass --gateway <url>', { hint: 'For the demo: hoop login --gateway http://127.0.0.1:8009' });
    }
    throw err;
  }
}

/** Records the gateway as the default in `$XDG_CONFIG_HOME/hoop/config.json`, keeping other keys. */
export function saveDefaultGateway(env: Env, gateway: string): void {
  const file = join(configDir(env), 'config.json');
  let current: Record<string, unknown> = {};
  try {
    const parsed = JSON.parse(readFileSync(file, 'utf8')) as unknown;
    if (parsed && typeof parsed === 'object' && !Array.isArray(parsed)) current = parsed as Record<string, unknown>;
  } catch {
    // absent or unreadable: start afresh
  }
  writeFileAtomic(file, `${JSON.stringify({ ...current, default_gateway: normalizeGatewayUrl(gateway, '--gateway') }, null, 2)}\n`);
}

function showDeviceCode(ctx: CommandContext, auth: DeviceAuthorization, allowBrowser: boolean): void {
  const { io } = ctx;
  const cs = io.err;
  // These come from the identity provider: no control characters reach the terminal.
  const complete = auth.verificationUriComplete === null ? null : sanitize(auth.verificationUriComplete);
  io.info(`To sign in, open ${cs.bold(sanitize(auth.verificationUri))}`);
  io.info(`and enter the code: ${cs.bold(cs.cyan(sanitize(auth.userCode)))}`);
  if (complete) io.info(cs.dim(`(or open ${complete} which has the code filled in)`));
  const target = complete ?? auth.verificationUri;
  if (allowBrowser && isDesktop(io, ctx.env) && /^https?:\/\//.test(target)) {
    if (openBrowser(target, ctx.env)) io.info(cs.dim('Opened your browser.'));
  }
  io.info(cs.dim(`Waiting for you to finish signing in (the code expires in ${Math.round(auth.expiresIn / 60)} min; Ctrl-C to cancel)...`));
}

/** A person at a graphical session: a terminal on both ends, not CI, not over SSH, a display. */
function isDesktop(io: IOStreams, env: Env): boolean {
  if (!io.isStdinTTY || !io.isStderrTTY || env.CI) return false;
  if (env.SSH_CONNECTION || env.SSH_TTY) return false;
  if (process.platform === 'darwin' || process.platform === 'win32') return true;
  return Boolean(env.DISPLAY || env.WAYLAND_DISPLAY || env.BROWSER);
}

/** Starts the browser detached; the URL is one argv element, never parsed by a shell. */
function openBrowser(url: string, env: Env): boolean {
  const [cmd, ...args] = env.BROWSER
    ? [env.BROWSER, url]
    : process.platform === 'darwin'
      ? ['open', url]
      : process.platform === 'win32'
        ? ['rundll32', 'url.dll,FileProtocolHandler', url]
        : ['xdg-open', url];
  try {
    const child = spawn(cmd!, args, { detached: true, stdio: 'ignore' });
    child.on('error', () => undefined);
    child.unref();
    return true;
  } catch {
    return false;
  }
}

export const commands: CommandGroup['commands'] = [loginCommand, logoutCommand, whoamiCommand];
