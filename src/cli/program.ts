/**
 * Assembles the command declarations into a commander program and runs it: parse errors become
 * one-line usage errors (exit 2), HoopErrors become "hoop: <what happened>" plus their hint, with
 * the exit code from `exit-codes.ts`. Nothing here writes to process streams directly.
 */
import { Argument, Command, CommanderError, Option } from 'commander';
import { errorMessage, isHoopError } from '../errors.js';
import type { AnyCommand, CommandGroup, OptionDefs, OptionSpec } from './command.js';
import { opt } from './command.js';
import { createContext, type GlobalOptions, type Runtime } from './context.js';
import { ExitCode, exitCodeFor } from './exit-codes.js';

/**
 * Every command group, in help order. Adding a group is one line here: the module exports
 * `commands: AnyCommand[]` (see docs/cli-internals.md).
 */
function commandGroups(): Promise<CommandGroup>[] {
  return [
    import('./commands/auth.js'),
    import('./commands/connections.js'),
    import('./commands/connect.js'),
    import('./commands/sessions.js'),
    import('./commands/reviews.js'),
    import('./commands/audit.js'),
    import('./commands/gateway.js'),
    import('./commands/demo.js'),
    import('./commands/completion.js'),
  ];
}

export async function commandTree(): Promise<AnyCommand[]> {
  return (await Promise.all(commandGroups())).flatMap((g) => g.commands);
}

/** Options every command accepts (commander recognises them before or after the subcommand). */
export const GLOBAL_OPTIONS = {
  gateway: opt.text('--gateway <url>', 'gateway base URL (default: $HOOP_GATEWAY, then the one saved at login)'),
  json: opt.flag('--json', 'print machine-readable JSON on stdout'),
  color: { flags: '--no-color', description: 'disable colour (also NO_COLOR=1)', defaultValue: true } satisfies OptionSpec<boolean>,
} satisfies OptionDefs;

export const VERSION_FLAGS = '-v, --version';

/** Where an action leaves its exit code for runCli. */
interface RunState {
  exitCode: number;
}

export async function buildProgram(runtime: Runtime, tree?: readonly AnyCommand[], state: RunState = { exitCode: 0 }): Promise<Command> {
  const io = runtime.io;
  const program = new Command('hoop')
    .description('Access gateway for databases: every query authorized, recorded and reviewable.')
    .version(runtime.version, VERSION_FLAGS, 'print the version')
    .helpOption('-h, --help', 'show help')
    .exitOverride()
    .showSuggestionAfterError(true)
    .configureOutput({
      writeOut: (s) => io.stdout.write(s),
      writeErr: (s) => io.stderr.write(s),
      outputError: () => {}, // runCli prints parse errors itself, as one line
      getOutHelpWidth: () => io.terminalWidth() ?? 100,
      getErrHelpWidth: () => (io.isStderrTTY ? (io.terminalWidth() ?? 80) : 100),
    })
    .configureHelp({
      showGlobalOptions: true,
      // Only the program's own options are global; a parent command's filters (sessions --since)
      // do not belong on its subcommands' help pages.
      visibleGlobalOptions(cmd: Command) {
        let root = cmd;
        while (root.parent) root = root.parent;
        return cmd === root ? [] : root.options.filter((o) => !o.hidden);
      },
    })
    .helpCommand('help [command]', 'show help for a command');
  for (const [, spec] of Object.entries(GLOBAL_OPTIONS)) program.addOption(toOption(spec));
  program.addHelpText(
    'after',
    '\nEnvironment:\n  HOOP_GATEWAY   default gateway URL\n  HOOP_TOKEN     API key or bearer token; overrides stored credentials\n' +
      '  NO_COLOR       disable colour\n  HOOP_DEBUG=1   print stack traces\n' +
      '  HOOP_PAGER     pager for long views on a terminal (else PAGER, else less; empty: none)\n' +
      '  HOOP_INSECURE_HTTP=1  allow a plain http:// gateway that is not on a loopback address\n\n' +
      'Exit codes: 0 ok, 1 error, 2 usage, 4 not logged in or token rejected, 5 denied,\n' +
      '  6 approval denied or expired, 8 approval pending, 10 audit verification failed;\n' +
      '  `hoop connect <name> -- <client>` exits with the client\'s status.\n',
  );
  for (const spec of tree ?? (await commandTree())) attach(program, spec, runtime, state);
  return program;
}

function toOption(spec: OptionSpec<unknown>): Option {
  const o = new Option(spec.flags, spec.description);
  const parse = spec.parse;
  if (parse && spec.repeatable) o.argParser((raw: string, previous: unknown) => [...((previous as unknown[] | undefined) ?? []), parse(raw)]);
  else if (parse) o.argParser((raw: string) => parse(raw));
  if (spec.choices) o.choices(spec.choices);
  if (spec.required) o.makeOptionMandatory();
  // Boolean defaults are implied by the flag; showing "(default: false)" is noise.
  if (spec.defaultValue !== undefined && typeof spec.defaultValue !== 'boolean' && !spec.repeatable) o.default(spec.defaultValue);
  return o;
}

function attach(parent: Command, spec: AnyCommand, runtime: Runtime, state: RunState): void {
  const cmd = parent.command(spec.name, { hidden: spec.hidden ?? false }).summary(spec.summary).description(spec.description ?? spec.summary);
  for (const a of spec.args ?? []) {
    const name = a.variadic ? `${a.name}...` : a.name;
    const argument = new Argument(a.required ? `<${name}>` : `[${name}]`, a.description);
    if (a.complete && typeof a.complete === 'object') argument.choices(a.complete.choices);
    cmd.addArgument(argument);
  }
  const options: [string, OptionSpec<unknown>, string][] = Object.entries((spec.options ?? {}) as OptionDefs).map(([key, o]) => {
    const option = toOption(o);
    cmd.addOption(option);
    return [key, o, option.attributeName()];
  });
  if (spec.examples?.length) cmd.addHelpText('after', `\nExamples:\n${spec.examples.map((e) => `  $ ${e}`).join('\n')}\n`);
  for (const sub of spec.subcommands ?? []) attach(cmd, sub, runtime, state);
  const run = spec.run;
  if (!run) return;
  cmd.action(async (...params: unknown[]) => {
    const self = params[params.length - 1] as Command;
    const args: Record<string, string | string[] | undefined> = {};
    (spec.args ?? []).forEach((a, i) => {
      args[a.name] = a.variadic ? ((params[i] as string[] | undefined) ?? []) : (params[i] as string | undefined);
    });
    const raw = self.opts();
    const values: Record<string, unknown> = {};
    for (const [key, o, attr] of options) values[key] = raw[attr] ?? o.defaultValue;
    const g = self.optsWithGlobals() as { gateway?: string; json?: boolean; color?: boolean };
    const globals: GlobalOptions = { gateway: g.gateway, json: g.json === true, color: g.color !== false };
    if (!globals.color) runtime.io.disableColor();
    const ctx = createContext(runtime, globals);
    try {
      const code = await run(ctx, { args, options: values });
      state.exitCode = code ?? ExitCode.OK;
    } finally {
      await ctx.cleanup();
    }
  });
}

/** Runs one command line (`argv` without node and script) and returns the exit code. */
export async function runCli(argv: readonly string[], runtime: Runtime, tree?: readonly AnyCommand[]): Promise<number> {
  const io = runtime.io;
  let program: Command | undefined;
  const state: RunState = { exitCode: ExitCode.OK };
  try {
    program = await buildProgram(runtime, tree, state);
    if (argv.length === 0) {
      program.outputHelp();
      return ExitCode.OK;
    }
    if (argv.includes('--no-color')) io.disableColor();
    await program.parseAsync(argv as string[], { from: 'user' });
    return state.exitCode;
  } catch (err) {
    if (err instanceof CommanderError) return reportCommanderError(err, argv, program, runtime);
    reportError(err, runtime);
    return exitCodeFor(err);
  }
}

function reportCommanderError(err: CommanderError, argv: readonly string[], program: Command | undefined, runtime: Runtime): number {
  // Help and version were asked for and already printed.
  if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version') return ExitCode.OK;
  // A group without a subcommand: commander printed its help to stderr.
  if (err.code === 'commander.help') return ExitCode.USAGE;
  const message = err.message
    .replace(/^error: /, '')
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean)
    .join(' ')
    .replace('(Did you mean', '(did you mean');
  const path = program ? commandPath(program, argv) : [];
  const io = runtime.io;
  io.info(`hoop: ${message}`);
  io.info(io.err.dim(`Run \`${['hoop', ...path].join(' ')} --help\` for usage.`));
  return ExitCode.USAGE;
}

/** The subcommand words in argv, to point the usage hint at the right help page. */
function commandPath(program: Command, argv: readonly string[]): string[] {
  const path: string[] = [];
  let cmd = program;
  for (const word of argv) {
    if (word.startsWith('-')) continue;
    const next = cmd.commands.find((c) => c.name() === word || c.aliases().includes(word));
    if (!next) break;
    path.push(next.name());
    cmd = next;
  }
  return path;
}

/** One line for what happened, one for what to do; a stack trace only with HOOP_DEBUG=1. */
export function reportError(err: unknown, runtime: Runtime): void {
  const io = runtime.io;
  const oneLine = errorMessage(err)
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean)
    .join('; ');
  io.info(`${io.err.red('hoop:')} ${oneLine || 'unknown error'}`);
  if (isHoopError(err) && err.hint) io.info(io.err.dim(err.hint));
  if (runtime.env.HOOP_DEBUG === '1' && err instanceof Error && err.stack) io.info(err.stack);
}
