/** `hoop gateway --config hoop.yaml`: run the gateway in the foreground, logs on stderr. */
import { errorMessage } from '../../errors.js';
import { defineCommand, opt, type CommandGroup } from '../command.js';

const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error'] as const;

export const gatewayCommand = defineCommand({
  name: 'gateway',
  summary: 'Run the gateway',
  description: 'Run the gateway from a YAML config file. Logs JSON lines (pino) to stderr; stops cleanly on\nCtrl-C or SIGTERM. A bad config is refused at start with the file, key path and reason.',
  options: {
    config: opt.requiredText('-c, --config <path>', 'gateway config file (YAML)', { complete: 'file' }),
    logLevel: opt.choice('--log-level <level>', 'least severe log level to write', LOG_LEVELS, 'info'),
  },
  examples: ['hoop gateway --config hoop.yaml', 'BANK_DB_PASSWORD=... hoop gateway -c /etc/hoop/hoop.yaml --log-level debug'],
  async run(ctx, { options }) {
    const [{ loadConfig }, { LOG_REDACT, startGateway }, { pino }] = await Promise.all([
      import('../../gateway/config.js'),
      import('../../gateway/gateway.js'),
      import('pino'),
    ]);
    const config = loadConfig(options.config);
    const logger = pino({ level: options.logLevel, base: { service: 'hoop-gateway' }, redact: LOG_REDACT }, pino.destination({ dest: 2, sync: true }));
    const gateway = await startGateway(config, { logger });
    ctx.defer(() => gateway.close());
    const { io } = ctx;
    if (io.isStderrTTY) io.info(`${io.err.green('✓')} hoop gateway listening on ${io.err.bold(gateway.url)} (config ${options.config}); Ctrl-C to stop.`);
    const signal = await ctx.shutdownSignal();
    logger.info({ signal }, 'stopping');
    try {
      await gateway.close();
    } catch (err) {
      logger.error({ err: errorMessage(err) }, 'stop failed');
      throw err;
    }
    logger.info('stopped');
  },
});

export const commands: CommandGroup['commands'] = [gatewayCommand];
