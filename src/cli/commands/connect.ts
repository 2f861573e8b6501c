/**
 * `hoop connect <name>`: a local PostgreSQL listener whose every client connection is tunnelled
 * to the gateway (src/client/tunnel.ts). Prints the ready-to-use URI with the one-time local
 * password, reports tunnel events on stderr, and runs until SIGINT/SIGTERM, then closes cleanly.
 */
import type { ConnectionInfo, MeInfo } from '../../api/types.js';
import type { GatewayApi } from '../../client/api.js';
import { HoopError, UsageError } from '../../errors.js';
import { isLoopbackHost } from '../../net/loopback.js';
import { arg, defineCommand, opt, type CommandGroup } from '../command.js';
import { resolveToken } from '../credentials.js';
import type { ColorScheme } from '../iostreams.js';
import { sanitize } from '../output.js';
import type { TunnelEvent } from '../../client/tunnel.js';

const DEFAULT_PORT = 5433;

const EVENT_MARK: Record<TunnelEvent['kind'], (cs: ColorScheme) => string> = {
  'client-connected': (cs) => cs.green('+'),
  'client-closed': (cs) => cs.dim('-'),
  refused: (cs) => cs.red('refused:'),
  error: (cs) => cs.red('error:'),
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
    'authenticated with a one-time password, then tunnelled to the gateway with your identity.\n' +
    'Prints a ready-to-use connection URI; runs until Ctrl-C.',
  args: [arg('name', 'connection name (see `hoop connections`)', { complete: 'connections' })],
  options: {
    port: opt.parsed('--port <port>', 'local port; 0 picks a free one', parsePort, DEFAULT_PORT),
    listen: opt.parsed('--listen <address>', 'local address to listen on', parseListen, '127.0.0.1'),
    reason: opt.text('--reason <text>', 'why you connect; recorded with the session'),
  },
  examples: [
    'hoop connect bank',
    'hoop connect bank --port 6543 --reason "INC-1234: check failed transfers"',
    'psql "$(hoop connect bank --port 0 --json | jq -r .uri)"   # in another terminal, or a script',
  ],
  async run(ctx, { args, options }) {
    const name = args.name as string;
    const gateway = ctx.gateway();
    const api = ctx.api();
    const [me, connection] = await Promise.all([api.me(), checkConnection(api, name, options.reason)]);
    const user = localUserName(me);
    const { openLocalTunnel } = await import('../../client/tunnel.js');
    const { io } = ctx;
    const cs = io.err;
    const tunnel = await openLocalTunnel({
      gateway,
      connection: connection.name,
      token: () => resolveToken(gateway, ctx.env),
      listen: options.listen,
      port: options.port,
      user,
      database: connection.database,
      ...(options.reason ? { reason: options.reason } : {}),
      onEvent: (e) => {
        const stamp = cs.dim(ctx.now().toISOString().slice(11, 19));
        io.info(`${stamp} ${EVENT_MARK[e.kind](cs)} ${sanitize(e.message)}`);
      },
    }).catch((err: unknown) => {
      throw listenError(err, options.listen, options.port);
    });
    ctx.defer(() => tunnel.close());
    // Stored logins are refreshed in the background; a failure is told once, open sessions stay.
    if (!ctx.env.HOOP_TOKEN?.trim()) ctx.defer((await import('./auth.js')).keepStoredTokenFresh(ctx, gateway));
    if (ctx.globals.json) {
      const { host, port, password, database, uri } = tunnel;
      io.print(JSON.stringify({ name: connection.name, host, port, user: tunnel.user, password, database, uri }));
    } else {
      io.info(`${cs.green('✓')} Tunnel to ${cs.bold(connection.name)} (database ${connection.database}) via ${gateway}`);
      io.info(`  Listening on ${tunnel.host}:${tunnel.port} as ${tunnel.user}, with a one-time password valid while this runs.`);
      if (io.isStdoutTTY) {
        io.info(`  Connect with:  psql "${tunnel.uri}"`);
      } else {
        // Into a pipe or file, the URI is the command's data; the person still sees how to use it.
        io.print(tunnel.uri);
        io.info('  Connect with:  psql "<the URI printed on stdout>"');
      }
      if (connection.requires_approval) io.info(cs.yellow('  Risky statements on this connection may be held for a reviewer\'s approval.'));
      io.info(cs.dim('  Press Ctrl-C to close the tunnel.'));
    }
    if (!isLoopbackHost(tunnel.host)) {
      io.info(cs.yellow(`Warning: listening on ${tunnel.host}, not a loopback address: anyone who can reach it and learns the password acts as you.`));
    }
    const signal = await ctx.shutdownSignal();
    if (!ctx.globals.json) io.info(`Closing the tunnel (${signal})...`);
    await tunnel.close();
    if (!ctx.globals.json) io.info('Tunnel closed.');
  },
});

function parseListen(raw: string): string {
  const v = raw.trim();
  if (!v || /\s|\//.test(v)) throw new UsageError(`invalid --listen '${raw}': expected an address such as 127.0.0.1 or ::1`);
  return v;
}

/**
 * Asks the gateway whether this identity may open a session on `name` now (it records a
 * refusal as access.denied), before any port is opened. An unknown or forbidden connection is
 * explained from the list of connections, as pickConnection words it.
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

