/**
 * `hoop agent --gateway URL [--gateway URL …] [--allow HOST:PORT …] [--name NAME]`: the
 * network-resident agent (src/agent/agent.ts). The key comes from HOOP_AGENT_KEY only (never a
 * flag: command lines are visible to every local user); logs are JSON lines on stderr.
 */
import type { Logger } from 'pino';
import { UsageError } from '../../errors.js';
import { defineCommand, opt, type CommandGroup } from '../command.js';
import { normalizeGatewayUrl } from '../credentials.js';
import { ExitCode } from '../exit-codes.js';

const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error'] as const;
const NAME = /^[a-z0-9][a-z0-9_-]{0,62}$/;

export const agentCommand = defineCommand({
  name: 'agent',
  summary: 'Run the network-resident agent next to the databases',
  description:
    'Run the agent inside the databases\' network: it dials OUT to each --gateway (one link per\n' +
    'gateway replica, one per worker of a gateway with workers: N; give every replica\'s URL),\n' +
    'authenticates with HOOP_AGENT_KEY, and opens TCP streams for the gateway only to the targets its\n' +
    'allow-list names (--allow, repeatable, else the comma-separated HOOP_AGENT_ALLOW). It relays\n' +
    'bytes; the gateway\'s TLS to the database runs through it. No listener: it logs "agent\n' +
    'connected" per link (JSON lines on stderr) and reconnects with backoff when a link drops.\n' +
    'Stops on Ctrl-C or SIGTERM.\n' +
    'Environment: HOOP_AGENT_KEY (required), HOOP_AGENT_ALLOW, HOOP_GATEWAY (when no --gateway).',
  options: {
    allow: opt.list('--allow <host:port>', 'a target the agent may dial (repeatable; default: $HOOP_AGENT_ALLOW)'),
    name: opt.text('--name <name>', 'the agent name the key must belong to (as in the gateway\'s agents list)'),
    logLevel: opt.choice('--log-level <level>', 'least severe log level to write', LOG_LEVELS, 'info'),
  },
  examples: [
    'HOOP_AGENT_KEY=... hoop agent --gateway https://hoop.bank.example --allow db.internal:5432',
    'HOOP_AGENT_KEY=... hoop agent --gateway https://hoop-0.hoop:8009 --gateway https://hoop-1.hoop:8009 --allow 10.0.3.7:5432',
  ],
  async run(ctx, { options }) {
    const { env } = ctx;
    const key = env.HOOP_AGENT_KEY?.trim();
    if (!key) throw new UsageError('HOOP_AGENT_KEY is not set', { hint: 'Set HOOP_AGENT_KEY to the agent key whose SHA-256 the gateway lists under agents.' });
    const given = ctx.globals.gateways?.length ? ctx.globals.gateways.map((g) => [g, '--gateway'] as const) : env.HOOP_GATEWAY ? [[env.HOOP_GATEWAY, 'HOOP_GATEWAY'] as const] : [];
    if (given.length === 0) throw new UsageError('no gateway to link to', { hint: 'Pass --gateway URL (once per gateway replica) or set HOOP_GATEWAY.' });
    const gateways = [...new Set(given.map(([g, from]) => normalizeGatewayUrl(g, from, env)))];
    if (options.name !== undefined && !NAME.test(options.name)) throw new UsageError(`--name: ${JSON.stringify(options.name.slice(0, 64))} is not an agent name (a-z, 0-9, "-" and "_")`);
    const { allowListFrom } = await import('../../agent/allow.js');
    const allow = allowListFrom(options.allow, env.HOOP_AGENT_ALLOW);
    if (allow.size === 0) throw new UsageError('the allow-list is empty: the agent would refuse every dial', { hint: 'Pass --allow HOST:PORT for each database (or set HOOP_AGENT_ALLOW=host:port,…).' });

    const [{ startAgent }, { pino }] = await Promise.all([import('../../agent/agent.js'), import('pino')]);
    const logger: Logger = pino({
      level: options.logLevel,
      base: { service: 'hoop-agent' },
      redact: { paths: ['authorization', '*.authorization', 'key', '*.key'], censor: '[redacted]' },
      timestamp: pino.stdTimeFunctions.isoTime,
    }, pino.destination({ dest: 2, sync: true }));
    const agent = startAgent({
      gateways, key, allow, logger,
      ...(options.name !== undefined ? { name: options.name } : {}),
      ...numberFromEnv(env.HOOP_AGENT_HEARTBEAT_MS, 'heartbeatMs'),
      ...numberFromEnv(env.HOOP_AGENT_BACKOFF_MAX_MS, 'backoffMaxMs'),
    });
    ctx.defer(() => agent.close());
    logger.info({ gateways, allow: allow.targets.map((t) => `${t.host}:${t.port}`) }, 'agent starting');
    const signal = await ctx.shutdownSignal();
    logger.info({ signal }, 'stopping');
    await agent.close();
    logger.info('stopped');
    return ExitCode.OK;
  },
});

/** Tuning knobs for tests and odd networks: a positive whole number of milliseconds, else ignored. */
function numberFromEnv<K extends string>(raw: string | undefined, key: K): Partial<Record<K, number>> {
  const n = raw !== undefined && /^\d{1,7}$/.test(raw) ? Number(raw) : 0;
  return n > 0 ? ({ [key]: n } as Record<K, number>) : {};
}

export const commands: CommandGroup['commands'] = [agentCommand];
