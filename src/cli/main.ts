/**
 * The process edge: builds the real runtime (process streams, environment, signals), runs the
 * command line, flushes output and exits with the code from exit-codes.ts. Everything below this
 * file is testable in memory.
 */
import { basename, isAbsolute, relative } from 'node:path';
import type { Runtime } from './context.js';
import { ExitCode } from './exit-codes.js';
import { IOStreams } from './iostreams.js';
import { reportError, runCli } from './program.js';
import { hoopVersion } from '../version.js';


/** SIGINT/SIGTERM resolve `shutdownSignal()` once; a second one while shutting down exits at once. */
function shutdownOnSignals(io: IOStreams): () => Promise<string> {
  let promise: Promise<string> | undefined;
  return () =>
    (promise ??= new Promise<string>((resolve) => {
      let received = false;
      const onSignal = (signal: NodeJS.Signals) => {
        if (received) {
          io.info('hoop: interrupted again; exiting without a clean shutdown');
          process.exit(ExitCode.INTERRUPTED);
        }
        received = true;
        resolve(signal);
      };
      process.on('SIGINT', onSignal);
      process.on('SIGTERM', onSignal);
    }));
}

/** `hoop` when run through the installed bin link, else how to run this file from here. */
function cliName(): string {
  const script = process.argv[1] ?? '';
  if (basename(script) === 'hoop') return 'hoop';
  const rel = relative(process.cwd(), script);
  return `node ${rel.startsWith('..') || isAbsolute(rel) ? script : rel}`;
}

export function systemRuntime(): Runtime {
  const io = IOStreams.system(process.env);
  return { io, env: process.env, now: () => new Date(), shutdownSignal: shutdownOnSignals(io), version: hoopVersion(), cliName: cliName() };
}

export async function main(argv: string[]): Promise<void> {
  const runtime = systemRuntime();
  // Stored credentials (keychain or file, refreshed before expiry) behind resolveToken.
  (await import('./commands/auth.js')).installStoredTokenProvider(runtime.env);
  // A closed pipe (`hoop sessions | head -1`) is not an error worth a stack trace.
  for (const s of [process.stdout, process.stderr]) {
    s.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'EPIPE') process.exit(ExitCode.OK);
    });
  }
  let code: number;
  try {
    code = await runCli(argv.slice(2), runtime);
  } catch (err) {
    reportError(err, runtime);
    code = ExitCode.ERROR;
  }
  await runtime.io.flush();
  process.exit(code);
}
