/**
 * `hoop gateway --config hoop.yaml [--check]`: run the gateway in the foreground, logs on stderr
 * (JSON lines with RFC 3339 times, or readable lines on a terminal); `--check` only validates.
 * SIGHUP reads the config file again (gateway/reload.ts): applied if valid, else logged and ignored.
 */
import type { Logger } from 'pino';
import { ConfigError, errorMessage } from '../../errors.js';
import type { GatewayConfig } from '../../gateway/config.js';
import type { ClusterWorker } from '../../gateway/cluster-worker.js';
import type { startGateway as StartGateway } from '../../gateway/gateway.js';
import { defineCommand, opt, type CommandGroup } from '../command.js';
import type { CommandContext } from '../context.js';
import { ExitCode, type ExitCodeValue } from '../exit-codes.js';
import type { IOStreams } from '../iostreams.js';
import { prettyLogStream } from '../log-pretty.js';
import { printJson } from '../output.js';

const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error'] as const;

export const gatewayCommand = defineCommand({
  name: 'gateway',
  summary: 'Run the gateway',
  description:
    'Run the gateway from a YAML config file. Logs to stderr: JSON lines (pino, RFC 3339 times) when\n' +
    'stderr is not a terminal, readable lines when it is; stops cleanly on Ctrl-C or SIGTERM.\n' +
    'A bad config is refused with every problem on its own line: file, key path and reason.\n' +
    'SIGHUP (kill -HUP <pid>) reads the config again and applies it to new sessions and statements;\n' +
    'a config with problems is logged and the running one kept (docs/configuration.md, "Reloading").\n' +
    'With `workers: N` (default: one per core on a postgres:// store) this process forks N workers\n' +
    'that share its listeners; signals go to it, and it passes them on (docs/deployment.md).\n' +
    'With --check, only validate the config: exit 0 when it is valid, 2 when it is not.',
  options: {
    config: opt.requiredText('-c, --config <path>', 'gateway config file (YAML)', { complete: 'file' }),
    check: opt.flag('--check', 'validate the config and exit (0 valid, 2 not), without starting'),
    logLevel: opt.choice('--log-level <level>', 'least severe log level to write', LOG_LEVELS, 'info'),
  },
  examples: ['hoop gateway --config hoop.yaml', 'hoop gateway --config hoop.yaml --check', 'BANK_DB_PASSWORD=... hoop gateway -c /etc/hoop/hoop.yaml --log-level debug'],
  async run(ctx, { options }) {
    const { io } = ctx;
    const { loadConfig, workerCount } = await import('../../gateway/config.js');
    let config: GatewayConfig;
    try {
      config = loadConfig(options.config);
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      if (options.check && ctx.globals.json) printJson(io, { valid: false, problems: problemsOf(err) });
      else reportProblems(io, err);
      return options.check ? ExitCode.USAGE : ExitCode.ERROR;
    }
    if (options.check) {
      if (ctx.globals.json) printJson(io, { valid: true, problems: [] });
      else io.info(`${io.err.green('✓')} ${config.file} is valid: ${plural(config.connections.length, 'connection')}, ${plural(config.identity.api_keys.length, 'API key')}${config.identity.oidc ? ', OIDC' : ''}, ${plural(workerCount(config), 'worker')}.`);
      return ExitCode.OK;
    }

    // The gateway itself is loaded only where it runs: not in the primary of `workers: N`.
    const [{ LOG_REDACT }, { pino }, { ClusterWorker }] = await Promise.all([
      import('../../gateway/log-redact.js'), import('pino'), import('../../gateway/cluster-worker.js'),
    ]);
    // A process forked by the primary of `workers: N` (cluster.ts) is one of its workers.
    const worker = ClusterWorker.fromProcess();
    const base = { service: 'hoop-gateway', ...(worker ? { worker: worker.label } : {}) };
    const logOptions = { level: options.logLevel, base, redact: LOG_REDACT, timestamp: pino.stdTimeFunctions.isoTime };
    const logger: Logger = io.isStderrTTY
      ? pino(logOptions, prettyLogStream((text) => io.stderr.write(text), io.err))
      : pino(logOptions, pino.destination({ dest: 2, sync: true }));
    const workers = worker ? 1 : workerCount(config);
    if (workers > 1) return runPrimary(ctx, config, logger, workers, options.config);
    const { startGateway } = await import('../../gateway/gateway.js');
    if (worker) return runWorker(config, logger, worker, startGateway);
    // Registered before the start: SIGHUP's default action would end the process.
    let reload: (() => Promise<unknown>) | null = null;
    const onHangup = () => {
      if (!reload) return logger.warn('SIGHUP while starting: ignored; send it again once the gateway listens');
      reload().catch((err: unknown) => logger.error({ err: errorMessage(err) }, 'config reload failed; the running config is kept'));
    };
    process.on('SIGHUP', onHangup);
    ctx.defer(() => void process.off('SIGHUP', onHangup));
    // Listening before the gateway logs that it listens: a SIGTERM right after that line (a
    // supervisor, a test) must stop it cleanly, not kill it with the default action.
    const signalled = ctx.shutdownSignal();
    const gateway = await startGateway(config, { logger });
    ctx.defer(() => gateway.close());
    reload = () => gateway.reload('sighup');
    if (io.isStderrTTY) {
      const native = gateway.postgresListen;
      const pg = native ? `, PostgreSQL on ${native.host.includes(':') ? `[${native.host}]` : native.host}:${native.port}${native.tls ? '' : ' (no tls: loopback clients only)'}` : '';
      io.info(`${io.err.green('✓')} hoop gateway listening on ${io.err.bold(gateway.url)}${pg} (config ${options.config}); Ctrl-C to stop.`);
    }
    const signal = await signalled;
    logger.info({ signal }, 'stopping');
    try {
      await gateway.close(); // logs the one `stopped` line
    } catch (err) {
      logger.error({ err: errorMessage(err) }, 'stop failed');
      throw err;
    }
    return ExitCode.OK;
  },
});

/**
 * One of `workers: N`. The primary decides when it stops (SIGTERM, or the primary is gone), so a
 * terminal's Ctrl-C, which reaches the whole process group, does not stop it twice; and it
 * reloads when the primary tells it (SIGHUP there), not on a SIGHUP of its own.
 */
async function runWorker(config: GatewayConfig, logger: Logger, worker: ClusterWorker, start: typeof StartGateway): Promise<ExitCodeValue> {
  process.on('SIGINT', () => {});
  process.on('SIGHUP', () => {});
  const stop = new Promise<string>((resolve) => {
    process.on('SIGTERM', () => resolve('SIGTERM')); // kept: a second one (the primary's, after a group's) must not kill it
    process.once('disconnect', () => resolve('primary gone'));
  });
  const gateway = await start(config, { logger, cluster: worker });
  const signal = await stop;
  logger.info({ signal }, 'stopping');
  await gateway.close();
  return ExitCode.OK;
}

/** `workers: N` (N > 1): forks the workers (cluster.ts), says where they listen, and stops them on a signal. */
async function runPrimary(ctx: CommandContext, config: GatewayConfig, logger: Logger, count: number, file: string): Promise<ExitCodeValue> {
  const { io } = ctx;
  const [{ GatewayPrimary }, { prepareKeys }] = await Promise.all([import('../../gateway/cluster.js'), import('../../gateway/key-files.js')]);
  // The workers find the keys; none races another to create them.
  prepareKeys(config, logger);
  const primary = new GatewayPrimary({ count, logger, ...hangFromEnv(ctx.env) });
  const onHangup = () => primary.reload();
  process.on('SIGHUP', onHangup);
  ctx.defer(() => void process.off('SIGHUP', onHangup));
  const signalled = ctx.shutdownSignal();
  const at = await Promise.race([primary.start(), signalled.then(() => null)]);
  if (at) {
    logger.info({ url: at.url, ...(at.postgres ? { postgres: at.postgres } : {}), workers: count, connections: config.connections.length }, 'gateway listening');
    if (io.isStderrTTY) {
      const pg = at.postgres ? `, PostgreSQL on ${at.postgres.host.includes(':') ? `[${at.postgres.host}]` : at.postgres.host}:${at.postgres.port}` : '';
      io.info(`${io.err.green('✓')} hoop gateway listening on ${io.err.bold(at.url)}${pg}, ${count} workers (config ${file}); Ctrl-C to stop.`);
    }
  }
  const signal = await signalled;
  logger.info({ signal }, 'stopping');
  await primary.stop();
  logger.info('stopped');
  return ExitCode.OK;
}

/** HOOP_WORKER_HANG_MS: how long a worker may not answer before it is killed (tests shorten it); else the default. */
function hangFromEnv(env: NodeJS.ProcessEnv): { hangMs?: number } {
  const raw = env['HOOP_WORKER_HANG_MS'];
  return raw !== undefined && /^\d{1,7}$/.test(raw) && Number(raw) > 0 ? { hangMs: Number(raw) } : {};
}

/** A ConfigError holds one problem per line (config.ts). */
function problemsOf(err: ConfigError): string[] {
  return err.message.split('\n').map((l) => l.trim()).filter(Boolean);
}

/** Each problem on its own line, as a compiler prints them, then what to do. */
function reportProblems(io: IOStreams, err: ConfigError): void {
  const problems = problemsOf(err);
  io.info(`${io.err.red('hoop:')} the config has ${plural(problems.length, 'problem')}:`);
  for (const p of problems) io.info(`  ${p}`);
  if (err.hint) io.info(io.err.dim(err.hint));
}

function plural(n: number, one: string): string {
  return `${n} ${one}${n === 1 ? '' : 's'}`;
}

export const commands: CommandGroup['commands'] = [gatewayCommand];
