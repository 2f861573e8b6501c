/**
 * `hoop connect <name>`: a local PostgreSQL listener whose every client connection is tunnelled
 * to the gateway (src/client/tunnel.ts), pinned to the identity that opened it
 * (src/client/identity-pin.ts). Two ways to use it:
 *
 *   hoop connect bank -- psql …   runs the client with PG* variables and a password file of its
 *                                 own, ends with it and exits with its status (client-process.ts)
 *   hoop connect bank             prints the URI (or, with --pgpass, writes the password to the
 *                                 user's password file), runs until SIGINT/SIGTERM
 *
 * And one way without a tunnel: `hoop connect bank --print-native` prints a URI for the gateway's
 * own PostgreSQL listener (native-uri.ts) and exits; the password there is the caller's token.
 */
import type { ConnectionInfo, MeInfo } from '../../api/types.js';
import type { GatewayApi } from '../../client/api.js';
import { HoopError, UsageError } from '../../errors.js';
import { isLoopbackHost } from '../../net/loopback.js';
import { arg, defineCommand, opt, type CommandGroup } from '../command.js';
import type { CommandContext } from '../context.js';
import { resolveToken } from '../credentials.js';
import type { ColorScheme, Env } from '../iostreams.js';
import { sanitize } from '../output.js';
import { suggestedDuration } from '../../units.js';
import type { LocalTunnel, TunnelEvent } from '../../client/tunnel.js';

const DEFAULT_PORT = 5433;

const EVENT_MARK: Record<TunnelEvent['kind'], (cs: ColorScheme) => string> = {
  'client-connected': (cs) => cs.green('+'),
  'client-closed': (cs) => cs.dim('-'),
  refused: (cs) => cs.red('refused:'),
  error: (cs) => cs.red('error:'),
  hold: (cs) => cs.yellow('!'),
};

export function parsePort(raw: string): number {
  const n = Number(raw);
  if (!/^\d{1,5}$/.test(raw) || n > 65_535) throw new UsageError(`invalid --port '${raw}': expected 0-65535 (0 picks a free port)`);
  return n;
}

export const connectCommand = defineCommand({
  name: 'connect',
  summary: 'Open a local PostgreSQL port tunnelled through the gateway',
  description:
    'Open a local PostgreSQL listener for a connection. Every client connection to it is\n' +
    'authenticated with a password made for this run (it works only while this command runs),\n' +
    'then tunnelled to the gateway as the identity that opened it.\n\n' +
    'With `-- <client> [args...]`, runs the client with PGHOST, PGPORT, PGUSER, PGDATABASE and\n' +
    'a private PGPASSFILE, closes the tunnel when it exits and exits with its status.\n' +
    'Without, prints a ready-to-use connection URI (with --pgpass: writes the password to your\n' +
    'password file instead) and runs until Ctrl-C.\n\n' +
    'With --print-native, opens no tunnel: prints a URI for the gateway\'s own PostgreSQL\n' +
    'listener (postgres_listen), TLS verify-full, whose password is your token (give it in\n' +
    'PGPASSWORD, or let --pgpass write it to your password file); --show-token puts it into the URI.',
  args: [
    arg('name', 'connection name (see `hoop connections`)', { complete: 'connections' }),
    arg('client', 'client program and its arguments, after `--`', { optional: true, variadic: true }),
  ],
  options: {
    port: opt.optionalParsed('--port <port>', `local port (default ${DEFAULT_PORT}; with -- <client>, a free one); 0 picks a free one`, parsePort),
    listen: opt.parsed('--listen <address>', 'local address to listen on', parseListen, '127.0.0.1'),
    reason: opt.text('--reason <text>', 'why you connect; recorded with the session'),
    pgpass: opt.flag('--pgpass', 'write the password to ~/.pgpass (or $PGPASSFILE) instead of printing it; removed at exit'),
    singleUse: opt.flag('--single-use', 'accept one client connection only; later ones are refused'),
    insecureListenAnywhere: opt.flag('--insecure-listen-anywhere', 'allow a --listen address other than loopback without asking'),
    printNative: opt.flag('--print-native', 'print a URI for the gateway\'s own PostgreSQL listener (token as the password) and exit; no tunnel'),
    showToken: opt.flag('--show-token', 'with --print-native: put your token into the printed URI (a credential: keep it out of logs)'),
  },
  examples: [
    "hoop connect bank -- psql -c 'select 1'",
    'hoop connect bank --reason "INC-1234: check failed transfers" -- pg_dump -t accounts -f accounts.sql',
    'hoop connect bank --pgpass --port 6543     # then: psql -h 127.0.0.1 -p 6543 -U <user> <db>',
    'hoop connect bank --port 0 --json          # one JSON line for scripts',
    'PGPASSWORD="$HOOP_TOKEN" psql "$(hoop connect bank --print-native)"   # one hop, no tunnel',
  ],
  async run(ctx, { args, options }) {
    const name = args.name as string;
    const client = (args.client as string[] | undefined) ?? [];
    if (options.showToken && !options.printNative) throw new UsageError('--show-token goes with --print-native');
    if (options.printNative) {
      if (client.length > 0 || options.singleUse || options.port !== undefined) {
        throw new UsageError('--print-native opens no tunnel: it takes no client command, --port or --single-use', { hint: 'Run the client yourself with the printed URI.' });
      }
      return printNative(ctx, name, options);
    }
    if (client.length > 0 && options.pgpass) {
      throw new UsageError('--pgpass cannot be combined with a client command', { hint: 'With `-- <client>` the client gets a password file of its own; drop --pgpass.' });
    }
    if (client.length > 0 && ctx.globals.json) {
      throw new UsageError('--json cannot be combined with a client command', { hint: 'With `-- <client>` stdout belongs to the client; drop --json.' });
    }
    // A client run needs no port anyone types, and two of them must not collide.
    const port = options.port ?? (client.length > 0 ? 0 : DEFAULT_PORT);
    await confirmListen(ctx, options.listen, options.insecureListenAnywhere);
    const gateway = ctx.gateway();
    const api = ctx.api();
    const [me, connection] = await Promise.all([api.me(), checkConnection(api, name, options.reason)]);
    const user = localUserName(me);
    const { openLocalTunnel } = await import('../../client/tunnel.js');
    const { pinnedToken } = await import('../../client/identity-pin.js');
    const { io } = ctx;
    const cs = io.err;
    const quiet = client.length > 0 && !io.isStderrTTY; // a scripted client: only refusals and errors
    // Reached through an agent that is not connected: every session would be refused; say why now.
    if (connection.agent && !connection.agent.online) {
      io.info(`${cs.yellow('!')} connection ${connection.name} is offline: no agent ${connection.agent.name} is connected to ${gateway}; sessions are refused until one connects (see docs/agent.md)`);
    }
    const tunnel = await openLocalTunnel({
      gateway,
      connection: connection.name,
      token: pinnedToken({
        token: () => resolveToken(gateway, ctx.env),
        subjectOf: (token) => subjectOf(ctx, gateway, token),
        subject: me.subject,
        restart: `restart \`hoop connect ${connection.name}\``,
      }),
      listen: options.listen,
      port,
      user,
      database: connection.database,
      singleUse: options.singleUse,
      ...(options.reason ? { reason: options.reason } : {}),
      onEvent: (e) => {
        if (quiet && (e.kind === 'client-connected' || e.kind === 'client-closed')) return;
        const stamp = cs.dim(ctx.now().toISOString().slice(11, 19));
        io.info(`${stamp} ${EVENT_MARK[e.kind](cs)} ${sanitize(e.message)}`);
      },
    }).catch((err: unknown) => {
      throw listenError(err, options.listen, port);
    });
    ctx.defer(() => tunnel.close());
    // Stored logins are refreshed in the background; a failure is told once, open sessions stay.
    if (!ctx.env.HOOP_TOKEN?.trim()) ctx.defer((await import('./auth.js')).keepStoredTokenFresh(ctx, gateway));
    if (client.length > 0) return runClient(ctx, tunnel, client);
    return serveListener(ctx, tunnel, connection, options.pgpass);
  },
});

/**
 * `--print-native`: the URI of the gateway's own PostgreSQL listener for this identity; the token
 * goes into the user's password file with --pgpass (it stays: nothing here runs to remove it),
 * into the URI only with --show-token.
 */
async function printNative(ctx: CommandContext, name: string, options: { reason?: string | undefined; pgpass: boolean; showToken: boolean }): Promise<void> {
  const gateway = ctx.gateway();
  const api = ctx.api();
  const [me, connection] = await Promise.all([api.me(), checkConnection(api, name, options.reason)]);
  const listen = connection.postgres_listen ?? null;
  if (!listen) {
    throw new HoopError('HOOP_NOT_FOUND', `the gateway at ${gateway} has no PostgreSQL listener of its own (postgres_listen)`, {
      hint: `Use the tunnel: hoop connect ${connection.name} -- psql, or ask an administrator to set postgres_listen.`,
    });
  }
  const { nativeTarget, reachableWithoutTls } = await import('../native-uri.js');
  const { resolve: resolvePath } = await import('node:path');
  const token = options.pgpass || options.showToken ? await resolveToken(gateway, ctx.env) : undefined;
  const target = nativeTarget({
    listen, gateway, me, database: connection.name, reason: options.reason, rootCert: ctx.env.NODE_EXTRA_CA_CERTS ? resolvePath(ctx.env.NODE_EXTRA_CA_CERTS) : undefined,
    ...(options.showToken ? { password: token } : {}),
  });
  let passfile: string | null = null;
  if (options.pgpass) {
    const { upsertPgpass, userPgpassPath } = await import('../pgpass.js');
    const { homedir } = await import('node:os');
    passfile = userPgpassPath(ctx.env, homedir());
    upsertPgpass(passfile, { host: target.host, port: target.port, database: target.database, user: target.user, password: token! });
  }
  const { io } = ctx;
  if (ctx.globals.json) {
    const { uri, host, port, user, database, sslmode } = target;
    io.print(JSON.stringify({ uri, host, port, user, database, sslmode, ...(target.sslrootcert ? { sslrootcert: target.sslrootcert } : {}), ...(passfile ? { passfile } : {}) }));
  } else {
    io.print(target.uri);
    const cs = io.err;
    if (passfile) io.info(cs.dim(`The password (your current token) is in ${passfile} (0600); an OIDC token expires: run this again after hoop login.`));
    else if (!options.showToken) io.info(cs.dim('The password is your token: give it in PGPASSWORD (e.g. PGPASSWORD="$HOOP_TOKEN"), or run again with --pgpass.'));
    if (!reachableWithoutTls(target)) io.info(cs.yellow(`Warning: the listener offers no TLS; only clients on ${target.host} itself can log in.`));
  }
}

/** The gateway's subject for a token, with a client of its own (the context's uses the current token). */
async function subjectOf(ctx: CommandContext, gateway: string, token: string): Promise<string> {
  const { GatewayApi } = await import('../../client/api.js');
  const api = new GatewayApi({ gateway, token: async () => token, userAgent: `hoop-cli/${ctx.version}` });
  try {
    return (await api.me()).subject;
  } finally {
    await api.close();
  }
}

/**
 * A listener off loopback lets anyone who can reach the address try the password and, with it,
 * act as you: a person at a terminal confirms; elsewhere only the explicit flag will do.
 */
async function confirmListen(ctx: CommandContext, listen: string, allowed: boolean): Promise<void> {
  if (isLoopbackHost(listen) || allowed) return;
  const risk = `--listen ${listen} is not a loopback address: anyone who can reach it may try the tunnel's password`;
  if (!ctx.io.canPrompt()) {
    throw new UsageError(`refusing to listen on ${listen} without confirmation: ${risk}`, {
      hint: 'Pass --insecure-listen-anywhere to allow it, or --listen 127.0.0.1.',
    });
  }
  ctx.io.info(ctx.io.err.yellow(`Warning: ${risk}, and acts as you.`));
  if (!(await ctx.io.confirm(`Listen on ${listen} anyway?`, false))) {
    throw new UsageError(`not listening on ${listen}`, { hint: 'Use --listen 127.0.0.1, or pass --insecure-listen-anywhere.' });
  }
}

/** Where the client should connect: the listener's address, or loopback when it listens everywhere. */
function clientHost(host: string): string {
  if (host === '0.0.0.0') return '127.0.0.1';
  if (host === '::' || host === '[::]') return '::1';
  return host;
}

/** Variables that would send libpq elsewhere or override the password file; the client must not inherit them. */
const OVERRIDING_PG_VARIABLES = ['PGPASSWORD', 'PGSERVICE', 'PGSERVICEFILE', 'PGHOSTADDR', 'PGREQUIRESSL', 'PGSSLMODE'];

/** `-- <client>`: the client gets the tunnel in PG* variables and a password file of its own. */
async function runClient(ctx: CommandContext, tunnel: LocalTunnel, argv: string[]): Promise<number> {
  const { privatePgpass } = await import('../pgpass.js');
  const { runClientProcess } = await import('../client-process.js');
  const host = clientHost(tunnel.host);
  const passfile = privatePgpass({ host, port: tunnel.port, database: tunnel.database, user: tunnel.user, password: tunnel.password });
  ctx.defer(() => passfile.remove());
  const env: Record<string, string | undefined> = { ...ctx.env };
  for (const k of OVERRIDING_PG_VARIABLES) delete env[k];
  Object.assign(env, {
    PGHOST: host,
    PGPORT: String(tunnel.port),
    PGUSER: tunnel.user,
    PGDATABASE: tunnel.database,
    PGPASSFILE: passfile.path,
    PGSSLMODE: 'disable', // the local hop; the gateway leg is the tunnel's own TLS
  } satisfies Env);
  return runClientProcess(argv, env, ctx.io);
}

/** Without a client: tell the person (or the script) how to connect, then wait for Ctrl-C. */
async function serveListener(ctx: CommandContext, tunnel: LocalTunnel, connection: ConnectionInfo, pgpass: boolean): Promise<void> {
  const { io } = ctx;
  const cs = io.err;
  const gateway = ctx.gateway();
  let uri = tunnel.uri;
  let passfile: string | null = null;
  if (pgpass) {
    const { upsertPgpass, userPgpassPath } = await import('../pgpass.js');
    const { homedir } = await import('node:os');
    passfile = userPgpassPath(ctx.env, homedir());
    // The line names the host the printed URI does, so libpq finds it for exactly that URI.
    const remove = upsertPgpass(passfile, { host: tunnel.host, port: tunnel.port, database: tunnel.database, user: tunnel.user, password: tunnel.password });
    ctx.defer(remove);
    uri = tunnel.uri.replace(`:${encodeURIComponent(tunnel.password)}@`, '@');
  }
  if (ctx.globals.json) {
    const { host, port, database } = tunnel;
    const password = passfile ? null : tunnel.password;
    io.print(JSON.stringify({ name: connection.name, host, port, user: tunnel.user, password, database, uri, ...(passfile ? { passfile } : {}) }));
  } else {
    io.info(`${cs.green('✓')} Tunnel to ${cs.bold(connection.name)} (database ${connection.database}) via ${gateway}`);
    io.info(`  Listening on ${tunnel.host}:${tunnel.port} as ${tunnel.user}, with a password made for this run: it works until this command stops.`);
    if (passfile) io.info(`  The password is in ${passfile} (0600) until then.`);
    if (io.isStdoutTTY) {
      io.info(`  Connect with:  psql "${uri}"`);
    } else {
      // Into a pipe or file, the URI is the command's data; the person still sees how to use it.
      io.print(uri);
      io.info('  Connect with:  psql "<the URI printed on stdout>"');
    }
    if (connection.requires_approval) io.info(cs.yellow('  Risky statements on this connection may be held for a reviewer\'s approval.'));
    if (connection.grant?.active_until) {
      io.info(cs.yellow(`  Your access grant ${connection.grant.request ?? ''} ends at ${connection.grant.active_until}; sessions still open then are ended.`));
    }
    io.info(cs.dim('  Press Ctrl-C to close the tunnel.'));
  }
  if (!isLoopbackHost(tunnel.host)) {
    io.info(cs.yellow(`Warning: listening on ${tunnel.host}, not a loopback address: anyone who can reach it and learns the password acts as you.`));
  }
  const signal = await ctx.shutdownSignal();
  if (!ctx.globals.json) io.info(`Closing the tunnel (${signal})...`);
  await tunnel.close();
  if (!ctx.globals.json) io.info('Tunnel closed.');
}

function parseListen(raw: string): string {
  const v = raw.trim();
  if (!v || /\s|\//.test(v)) throw new UsageError(`invalid --listen '${raw}': expected an address such as 127.0.0.1 or ::1`);
  return v;
}

/**
 * Asks the gateway whether this identity may open a session on `name` now (it records a
 * refusal as access.denied), before any port is opened. An unknown or forbidden connection is
 * explained from the list of connections, as pickConnection words it (one that needs an access
 * grant: how to request it).
 */
async function checkConnection(api: GatewayApi, name: string, reason: string | undefined): Promise<ConnectionInfo> {
  try {
    return await api.connection(name, reason);
  } catch (err) {
    if (!(err instanceof HoopError) || (err.code !== 'HOOP_NOT_FOUND' && err.code !== 'HOOP_FORBIDDEN')) throw err;
    pickConnection(await api.connections(), name);
    throw err;
  }
}

/** The connection by name, or a clear refusal before any port is opened. */
export function pickConnection(list: ConnectionInfo[], name: string): ConnectionInfo {
  const c = list.find((x) => x.name === name);
  if (!c) {
    const names = list.filter((x) => x.allowed).map((x) => x.name);
    throw new HoopError('HOOP_NOT_FOUND', `no connection named '${name}'`, {
      hint: names.length ? `Connections you may use: ${names.join(', ')}.` : 'Run `hoop connections` to see what the gateway offers.',
    });
  }
  if (!c.allowed && c.grant?.required) {
    throw new HoopError('HOOP_FORBIDDEN', `you may use connection '${name}' only inside an approved access grant, and have none open now`, {
      hint: `Request access first: hoop request ${name} --duration ${suggestedDuration(c.grant.max_duration_ms ?? 3_600_000)} --reason "…" (an approver decides it), then connect again.`,
    });
  }
  if (!c.allowed) {
    throw new HoopError('HOOP_FORBIDDEN', `you may not use connection '${name}' (access: ${c.access.join(', ') || 'nobody'})`, {
      hint: 'Ask an administrator to add one of your groups to its access list.',
    });
  }
  return c;
}

/**
 * A PostgreSQL user name for the local side, from the identity: what psql shows in its prompt
 * and the upstream sees as application context. Only [a-z0-9_], so it never needs quoting.
 */
export function localUserName(me: Pick<MeInfo, 'email' | 'subject'>): string {
  const base = (me.email ?? '').split('@')[0] || me.subject.split(/[@:|/]/).pop() || '';
  const safe = base
    .toLowerCase()
    .replace(/[^a-z0-9_]+/g, '_')
    .replace(/^_+|_+$/g, '')
    .slice(0, 63);
  return /^[a-z_]/.test(safe) ? safe : safe ? `u_${safe}`.slice(0, 63) : 'hoop';
}

function listenError(err: unknown, listen: string, port: number): unknown {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  if (code === 'EADDRINUSE') {
    return new HoopError('HOOP_NETWORK', `port ${port} on ${listen} is already in use`, { hint: 'Pass --port with another port, or --port 0 for any free one.', cause: err });
  }
  if (code === 'EADDRNOTAVAIL' || code === 'EACCES') {
    return new HoopError('HOOP_NETWORK', `cannot listen on ${listen}:${port} (${code})`, { hint: 'Pass --listen 127.0.0.1 or a --port above 1023.', cause: err });
  }
  return err;
}

export const commands: CommandGroup['commands'] = [connectCommand];

