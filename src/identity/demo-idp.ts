/**
 * The embedded OpenID Provider for `hoop demo` and for the tests: `oidc-provider` configured for
 * the OAuth 2.0 Device Authorization Grant (RFC 8628), refresh tokens (`offline_access`), the
 * client credentials grant for a service client, token revocation (RFC 7009), and JWT access
 * tokens (RFC 9068) for the gateway's audience via resource indicators (RFC 8707), carrying a
 * `groups` claim. State lives in memory; it is gone when the provider stops.
 *
 * Not for production: users and passwords are fixed at start, the login page is deliberately
 * plain, and http is only acceptable because it listens on loopback.
 */
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { exportJWK, generateKeyPair, type JWK } from 'jose';

export interface DemoUser {
  username: string;
  password: string;
  email: string;
  name: string;
  groups: string[];
}

export interface DemoIdpOptions {
  /** 0 picks a free port. */
  port?: number;
  /** Address to listen on; default 127.0.0.1. */
  host?: string;
  /** Host name in the issuer URL (default: the listen host). */
  issuerHost?: string;
  users?: DemoUser[];
  /** Access token lifetime in seconds (default 900). */
  accessTokenTtl?: number;
  /** How long a device code waits for the user, in seconds (default 600). */
  deviceCodeTtl?: number;
  /** Refresh token lifetime in seconds (default 14 days). */
  refreshTokenTtl?: number;
  /** The `aud` of access tokens; the gateway's `identity.oidc.audience` (default `hoop`). */
  audience?: string;
  /** Public client for `hoop login` (device flow); default `hoop-cli`. */
  clientId?: string;
  /** Confidential client for `hoop login --client-credentials`. */
  serviceClient?: { clientId: string; clientSecret: string; groups: string[] };
  /** Private signing JWKs (the first signs). Generated when absent; tests pass their own. */
  signingKeys?: JWK[];
  /** Polling interval advertised with each device code (RFC 8628 §3.2), in seconds; default 5. */
  pollInterval?: number;
  /** Answer this many first polls of each device code with `slow_down`, as a busy provider may. */
  busyPolls?: number;
}

export interface DemoIdp {
  issuer: string;
  clientId: string;
  audience: string;
  users: DemoUser[];
  serviceClient: { clientId: string; clientSecret: string; groups: string[] };
  /** Requests served per path, for tests that check caching (`/jwks`). */
  requestCount(path: string): number;
  /** When each device code was polled at the token endpoint (ms since epoch), oldest first. */
  devicePolls(): number[][];
  close(): Promise<void>;
}

/** The resource indicator (RFC 8707) under which the gateway's tokens are issued. */
export const HOOP_RESOURCE = 'urn:hoop:gateway';

export const DEMO_SCOPES = 'openid email profile groups offline_access';

export function defaultDemoUsers(): DemoUser[] {
  const pw = () => randomBytes(6).toString('base64url');
  return [
    { username: 'alice', password: pw(), email: 'alice@bank.example', name: 'Alice Analyst', groups: ['analysts'] },
    { username: 'bob', password: pw(), email: 'bob@bank.example', name: 'Bob DBA', groups: ['dba'] },
    { username: 'carol', password: pw(), email: 'carol@bank.example', name: 'Carol Auditor', groups: ['audit'] },
  ];
}

type ProviderModule = typeof import('oidc-provider');
type KoaContextish = import('oidc-provider').KoaContextish;

/**
 * oidc-provider 9 prints "Unsupported runtime" on Node 20 at import (it runs fine on 20.19+), and
 * notices for defaults through console.info, which would land on stdout. Keep both quiet.
 */
async function loadProvider(): Promise<ProviderModule> {
  const { warn, info } = console;
  const quiet =
    (orig: (...a: unknown[]) => void) =>
    (...args: unknown[]) => {
      if (typeof args[0] === 'string' && args[0].startsWith('oidc-provider ')) return;
      orig.apply(console, args);
    };
  console.warn = quiet(warn);
  console.info = quiet(info);
  try {
    return await import('oidc-provider');
  } finally {
    console.warn = warn;
    console.info = info;
  }
}

export async function startDemoIdp(options: DemoIdpOptions = {}): Promise<DemoIdp> {
  const { default: Provider, errors } = await loadProvider();
  const host = options.host ?? '127.0.0.1';
  const users = options.users ?? defaultDemoUsers();
  const audience = options.audience ?? 'hoop';
  const clientId = options.clientId ?? 'hoop-cli';
  const serviceClient = options.serviceClient ?? {
    clientId: 'hoop-service',
    clientSecret: randomBytes(18).toString('base64url'),
    groups: ['etl'],
  };
  const accessTokenTtl = options.accessTokenTtl ?? 900;
  const refreshTokenTtl = options.refreshTokenTtl ?? 14 * 24 * 3600;
  const keys = options.signingKeys ?? [await newSigningKey()];
  const pollInterval = options.pollInterval ?? 5;
  const busyPolls = options.busyPolls ?? 0;

  const counts = new Map<string, number>();
  let handler: (req: IncomingMessage, res: ServerResponse) => void = () => undefined;
  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    counts.set(path, (counts.get(path) ?? 0) + 1);
    handler(req, res);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, host, () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  const issuerHost = options.issuerHost ?? host;
  const issuer = `http://${issuerHost.includes(':') ? `[${issuerHost}]` : issuerHost}:${port}`;

  const byName = new Map(users.map((u) => [u.username, u]));
  const provider = new Provider(issuer, {
    adapter: memoryAdapter(),
    clients: [
      {
        client_id: clientId,
        client_name: 'hoop CLI',
        token_endpoint_auth_method: 'none',
        grant_types: ['urn:ietf:params:oauth:grant-type:device_code', 'refresh_token'],
        response_types: [],
        redirect_uris: [],
      },
      {
        client_id: serviceClient.clientId,
        client_secret: serviceClient.clientSecret,
        client_name: 'hoop service identity',
        token_endpoint_auth_method: 'client_secret_basic',
        grant_types: ['client_credentials'],
        response_types: [],
        redirect_uris: [],
      },
    ],
    jwks: { keys },
    cookies: { keys: [randomBytes(32).toString('base64url')] },
    scopes: ['openid', 'offline_access', 'email', 'profile', 'groups'],
    claims: {
      openid: ['sub'],
      email: ['email', 'email_verified'],
      profile: ['name', 'preferred_username'],
      groups: ['groups'],
    },
    conformIdTokenClaims: false, // the ID token carries email and groups for `hoop login` to show
    findAccount: (_ctx, id) => {
      const user = byName.get(id);
      if (!user) return undefined;
      return {
        accountId: id,
        claims: () => ({
          sub: id,
          email: user.email,
          email_verified: true,
          name: user.name,
          preferred_username: id,
          groups: user.groups,
        }),
      };
    },
    features: {
      devInteractions: { enabled: false },
      deviceFlow: {
        enabled: true,
        userCodeInputSource: (ctx, form, _out, err) => {
          const msg = err ? '<p class="error">That code is not valid. Try again.</p>' : '<p>Enter the code shown by <code>hoop login</code>.</p>';
          ctx.body = page('Sign in to hoop', `${msg}${form}<button type="submit" form="op.deviceInputForm">Continue</button>`);
        },
        userCodeConfirmSource: (ctx, form, _client, _info, userCode) => {
          ctx.body = page(
            'Confirm device',
            `<p>Check that <code>hoop login</code> shows this code:</p><p><code>${escapeHtml(userCode)}</code></p>${form}` +
              '<button type="submit" form="op.deviceConfirmForm">Continue</button>' +
              '<button type="submit" form="op.deviceConfirmForm" value="yes" name="abort">Abort</button>',
          );
        },
        successSource: (ctx) => {
          ctx.body = page('Signed in', '<p>You are signed in. Return to your terminal; you can close this page.</p>');
        },
      },
      clientCredentials: { enabled: true },
      revocation: { enabled: true, allowedPolicy: async (_ctx, client, token) => token.clientId === client.clientId },
      introspection: { enabled: false },
      userinfo: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: async () => HOOP_RESOURCE,
        useGrantedResource: async () => true,
        getResourceServerInfo: async (_ctx, resource) => {
          if (resource !== HOOP_RESOURCE) throw new errors.InvalidTarget();
          return {
            scope: 'gateway',
            audience,
            accessTokenTTL: accessTokenTtl,
            accessTokenFormat: 'jwt',
            jwt: { sign: { alg: algOf(keys[0]!) } },
          };
        },
      },
    },
    // The gateway reads identity from the access token alone, so put it there (RFC 9068 §2.2.3).
    extraTokenClaims: async (_ctx, token) => {
      if (token.kind === 'ClientCredentials') {
        return token.clientId === serviceClient.clientId ? { groups: serviceClient.groups } : undefined;
      }
      const user = token.accountId ? byName.get(token.accountId) : undefined;
      return user ? { email: user.email, name: user.name, groups: user.groups } : undefined;
    },
    issueRefreshToken: async (_ctx, client, code) =>
      client.grantTypeAllowed('refresh_token') && code.scopes.has('offline_access'),
    rotateRefreshToken: true,
    pkce: { required: () => false },
    ttl: {
      AccessToken: () => accessTokenTtl,
      ClientCredentials: () => accessTokenTtl,
      DeviceCode: () => options.deviceCodeTtl ?? 600,
      IdToken: () => 3600,
      RefreshToken: () => refreshTokenTtl,
      Interaction: () => 600,
      Session: () => 3600,
      Grant: () => refreshTokenTtl,
    },
    clientBasedCORS: () => false,
    renderError: (ctx, out) => {
      ctx.type = 'html';
      const lines = Object.entries(out)
        .map(([k, v]) => `<p><strong>${escapeHtml(k)}</strong>: ${escapeHtml(String(v))}</p>`)
        .join('');
      ctx.body = page('Sign-in failed', lines);
    },
    interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
  });

  // RFC 8628 §3.2/§3.5: advertise the polling interval, and tell a client that polls too soon
  // (or any poll while "busy") to slow down by five seconds.
  const polls = new Map<string, number[]>();
  const required = new Map<string, number>();
  provider.use(async (ctx: KoaContextish, next: () => Promise<void>) => {
    await next();
    const route = ctx['oidc']?.route as string | undefined;
    const body = ctx.body as Record<string, unknown> | undefined;
    if (route === 'device_authorization' && ctx['status'] === 200 && body) body['interval'] = pollInterval;
    const params = ctx['oidc']?.params as Record<string, unknown> | undefined;
    if (route !== 'token' || params?.['grant_type'] !== 'urn:ietf:params:oauth:grant-type:device_code') return;
    const code = String(params['device_code'] ?? '');
    const times = polls.get(code) ?? [];
    const now = Date.now();
    const last = times.at(-1);
    times.push(now);
    polls.set(code, times);
    if (body?.['error'] !== 'authorization_pending') return;
    const interval = required.get(code) ?? pollInterval;
    const tooSoon = last !== undefined && now - last < interval * 1000 - 250;
    if (times.length <= busyPolls || tooSoon) {
      required.set(code, interval + 5);
      ctx.body = { error: 'slow_down', error_description: 'poll less often' };
    }
  });

  const callback = provider.callback();
  handler = (req, res) => {
    const url = req.url ?? '/';
    if (url.startsWith('/interaction/')) {
      interaction(provider, byName, req, res).catch((err: unknown) => {
        if (!res.headersSent) {
          res.writeHead(400, { 'content-type': 'text/html; charset=utf-8' });
          res.end(page('Sign-in failed', `<p>${escapeHtml(err instanceof Error ? err.message : String(err))}</p>`));
        } else res.end();
      });
      return;
    }
    callback(req, res);
  };

  return {
    issuer,
    clientId,
    audience,
    users,
    serviceClient,
    requestCount: (path) => counts.get(path) ?? 0,
    devicePolls: () => [...polls.values()],
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

type Payload = Record<string, unknown> & { grantId?: string; userCode?: string; uid?: string; consumed?: number };

/**
 * oidc-provider's storage, in memory and private to one provider (its built-in development
 * adapter is process-wide, which would mix two providers started by the same test run).
 */
function memoryAdapter(): new (model: string) => object {
  const items = new Map<string, { payload: Payload; expiresAt: number }>();
  const index = new Map<string, string>(); // userCode / uid -> id
  const grants = new Map<string, Set<string>>(); // grantId -> keys
  const live = (key: string): Payload | undefined => {
    const item = items.get(key);
    if (!item) return undefined;
    if (item.expiresAt <= Date.now()) {
      items.delete(key);
      return undefined;
    }
    return item.payload;
  };
  return class MemoryAdapter {
    constructor(private readonly model: string) {}
    key(id: string): string {
      return `${this.model}:${id}`;
    }
    async upsert(id: string, payload: Payload, expiresIn?: number): Promise<void> {
      const key = this.key(id);
      items.set(key, { payload, expiresAt: expiresIn ? Date.now() + expiresIn * 1000 : Infinity });
      if (payload.userCode) index.set(`${this.model}:userCode:${payload.userCode}`, id);
      if (payload.uid) index.set(`${this.model}:uid:${payload.uid}`, id);
      if (payload.grantId) {
        const set = grants.get(payload.grantId) ?? new Set<string>();
        set.add(key);
        grants.set(payload.grantId, set);
      }
    }
    async find(id: string): Promise<Payload | undefined> {
      return live(this.key(id));
    }
    async findByUserCode(userCode: string): Promise<Payload | undefined> {
      const id = index.get(`${this.model}:userCode:${userCode}`);
      return id ? live(this.key(id)) : undefined;
    }
    async findByUid(uid: string): Promise<Payload | undefined> {
      const id = index.get(`${this.model}:uid:${uid}`);
      return id ? live(this.key(id)) : undefined;
    }
    async consume(id: string): Promise<void> {
      const payload = live(this.key(id));
      if (payload) payload.consumed = Math.floor(Date.now() / 1000);
    }
    async destroy(id: string): Promise<void> {
      items.delete(this.key(id));
    }
    async revokeByGrantId(grantId: string): Promise<void> {
      for (const key of grants.get(grantId) ?? []) items.delete(key);
      grants.delete(grantId);
    }
  };
}

/** A fresh RS256 private signing key as a JWK, with a random `kid`. */
export async function newSigningKey(alg: 'RS256' | 'PS256' | 'ES256' | 'EdDSA' = 'RS256'): Promise<JWK> {
  const { privateKey } = await generateKeyPair(alg, { extractable: true });
  const jwk = await exportJWK(privateKey);
  return { ...jwk, alg, use: 'sig', kid: randomBytes(8).toString('hex') };
}

function algOf(key: JWK): string {
  return key.alg ?? (key.kty === 'EC' ? 'ES256' : key.kty === 'OKP' ? 'EdDSA' : 'RS256');
}

type Provider = InstanceType<ProviderModule['default']>;

/** The login and consent pages: GET shows the form for the current prompt, POST submits it. */
async function interaction(
  provider: Provider,
  users: Map<string, DemoUser>,
  req: IncomingMessage,
  res: ServerResponse,
): Promise<void> {
  const details = await provider.interactionDetails(req, res);
  const action = `/interaction/${details.uid}`;
  if (req.method === 'GET') {
    res.writeHead(200, {
      'content-type': 'text/html; charset=utf-8',
      'cache-control': 'no-store',
      'content-security-policy': "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'",
    });
    if (details.prompt.name === 'login') {
      res.end(
        page(
          'Sign in to hoop',
          `<form method="post" action="${action}/login" id="login">` +
            '<input type="hidden" name="prompt" value="login">' +
            '<label>User <input name="username" autocomplete="username" autofocus></label>' +
            '<label>Password <input name="password" type="password" autocomplete="current-password"></label>' +
            '<button type="submit">Sign in</button></form>',
        ),
      );
    } else {
      res.end(
        page(
          'Allow hoop',
          `<p>The hoop CLI asks to act as <strong>${escapeHtml(String(details.session?.accountId ?? ''))}</strong> ` +
            'at the hoop gateway (your email and groups, kept signed in).</p>' +
            `<form method="post" action="${action}/confirm" id="consent"><button type="submit">Allow</button></form>` +
            `<form method="post" action="${action}/abort" id="deny"><button type="submit">Deny</button></form>`,
        ),
      );
    }
    return;
  }
  if (req.method !== 'POST') {
    res.writeHead(405).end();
    return;
  }
  const step = (req.url ?? '').split('?')[0]!.split('/')[3];
  const form = new URLSearchParams(await readBody(req, 16 * 1024));
  if (step === 'login' && details.prompt.name === 'login') {
    const user = users.get(form.get('username') ?? '');
    if (!user || !sameSecret(user.password, form.get('password') ?? '')) {
      res.writeHead(401, { 'content-type': 'text/html; charset=utf-8' });
      res.end(page('Sign in to hoop', `<p class="error">Wrong user or password.</p><p><a href="${action}">Try again</a></p>`));
      return;
    }
    await provider.interactionFinished(req, res, { login: { accountId: user.username } }, { mergeWithLastSubmission: false });
    return;
  }
  if (step === 'confirm' && details.prompt.name === 'consent') {
    const { params, session, prompt } = details;
    const grant = details.grantId
      ? await provider.Grant.find(details.grantId)
      : new provider.Grant({ accountId: session!.accountId, clientId: String(params.client_id) });
    if (!grant) throw new Error('grant not found');
    const missing = prompt.details as {
      missingOIDCScope?: string[];
      missingOIDCClaims?: string[];
      missingResourceScopes?: Record<string, string[]>;
    };
    if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
    if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
    for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes ?? {})) {
      grant.addResourceScope(indicator, scopes.join(' '));
    }
    const grantId = await grant.save();
    await provider.interactionFinished(req, res, { consent: details.grantId ? {} : { grantId } }, { mergeWithLastSubmission: true });
    return;
  }
  if (step === 'abort') {
    await provider.interactionFinished(
      req,
      res,
      { error: 'access_denied', error_description: 'the user denied the request' },
      { mergeWithLastSubmission: false },
    );
    return;
  }
  res.writeHead(400, { 'content-type': 'text/html; charset=utf-8' });
  res.end(page('Sign-in failed', '<p>Unexpected form.</p>'));
}

function readBody(req: IncomingMessage, limit: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        reject(new Error('form too large'));
        req.destroy();
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function sameSecret(expected: string, given: string): boolean {
  const a = Buffer.from(expected);
  const b = Buffer.from(given);
  return a.length === b.length && timingSafeEqual(a, b);
}

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function page(title: string, body: string): string {
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>${escapeHtml(title)}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{font-family:system-ui,sans-serif;max-width:26rem;margin:3rem auto;padding:0 1rem}
label,input,button{display:block;width:100%;margin:.4rem 0}input{padding:.5rem;box-sizing:border-box}
button{padding:.6rem;cursor:pointer}code{font-size:1.4em}.error{color:#b00020}</style></head>
<body><h1>${escapeHtml(title)}</h1>${body}</body></html>`;
}
