/** `hoop demo`: gateway, PostgreSQL with a fictional bank and demo identities, on one machine. */
import { defineCommand, opt, type CommandGroup } from '../command.js';
import { ExitCode } from '../exit-codes.js';
import { parsePort } from './connect.js';

export const demoCommand = defineCommand({
  name: 'demo',
  summary: 'Run a gateway, a demo bank database and demo identities on this machine',
  description:
    'Start a gateway on 127.0.0.1:8009 with a throwaway PostgreSQL holding a fictional bank,\n' +
    'a connection named `bank` and demo API keys for alice (analysts), bob (dba) and carol (audit).\n' +
    'Prints what to type next. Ctrl-C stops everything and leaves nothing running.',
  options: {
    port: opt.parsed('--port <port>', 'gateway port on 127.0.0.1; 0 picks a free one', parsePort, 8009),
    dataDir: opt.text('--data-dir <dir>', 'keep the audit store, config and log here (default: a temp dir, removed at exit)', { complete: 'file' }),
  },
  examples: ['hoop demo', 'hoop demo --port 0 --data-dir ./demo-data', 'hoop demo --json   # one line: {"url","keys",...} for scripts'],
  async run(ctx, { options }) {
    const { runDemo } = await import('../../demo/demo.js');
    const aborted = new AbortController();
    void ctx.shutdownSignal().then(() => aborted.abort());
    let demo;
    try {
      demo = await runDemo({
        port: options.port,
        ...(options.dataDir ? { dataDir: options.dataDir } : {}),
        out: ctx.io.stderr,
        signal: aborted.signal,
        cli: ctx.cliName ?? 'hoop',
      });
    } catch (err) {
      // Ctrl-C during startup: runDemo has undone what it started.
      if (aborted.signal.aborted) return ExitCode.INTERRUPTED;
      throw err;
    }
    const running = demo;
    ctx.defer(() => running.stop());
    if (ctx.globals.json) {
      ctx.io.print(JSON.stringify({ url: demo.url, connection: 'bank' /* fixed by issue 2 */, keys: demo.keys, data_dir: demo.dataDir, postgres_listen: demo.postgresListen }));
    }
    await ctx.shutdownSignal();
    ctx.io.info('Stopping the demo...');
    await demo.stop();
    ctx.io.info('Demo stopped.');
    return ExitCode.OK;
  },
});

export const commands: CommandGroup['commands'] = [demoCommand];
