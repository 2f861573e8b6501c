/**
 * `hoop connect <name> -- <client> [args…]`: runs the client as a child that shares the terminal,
 * and reports its status the way a shell does (the code, or 128 + the signal's number).
 *
 * Signals: Ctrl-C reaches the whole foreground process group, so the client gets it from the
 * terminal itself (psql cancels the statement); hoop ignores SIGINT while the client runs and
 * stays up to carry the cancel. SIGTERM, SIGHUP and SIGQUIT sent to hoop are passed on to the
 * client, whose exit then ends hoop.
 */
import { spawn, type ChildProcess, type StdioOptions } from 'node:child_process';
import { constants } from 'node:os';
import type { Readable, Writable } from 'node:stream';
import { HoopError } from '../errors.js';
import type { Env, IOStreams } from './iostreams.js';

const FORWARDED = ['SIGTERM', 'SIGHUP', 'SIGQUIT'] as const;

/** A stream backed by a file descriptor (the process's own stdio) is handed over as is; others are piped. */
function fdOf(stream: Readable | Writable): number | null {
  const fd = (stream as { fd?: unknown }).fd;
  return typeof fd === 'number' ? fd : null;
}

/** Exit status of a child as a shell reports it. */
export function shellStatus(code: number | null, signal: NodeJS.Signals | null): number {
  if (code !== null) return code;
  return 128 + (signal ? (constants.signals[signal] ?? 0) : 0);
}

export async function runClientProcess(argv: readonly string[], env: Env, io: IOStreams): Promise<number> {
  const [command, ...args] = argv;
  if (!command) throw new HoopError('HOOP_USAGE', 'no client command after --');
  const fds = [fdOf(io.stdin), fdOf(io.stdout), fdOf(io.stderr)];
  const stdio: StdioOptions = fds.map((fd) => fd ?? 'pipe');
  // The handlers come before the spawn: Node takes a signal over only once it has a listener, and
  // the client may be running (and be seen running) the moment spawn returns, so a SIGTERM just
  // after it would otherwise end hoop by its default action instead of reaching the client. A
  // handler runs on a later turn of the loop, when `child` is set.
  let child: ChildProcess | null = null;
  const ignore = () => {};
  const forward = (signal: NodeJS.Signals) => void child?.kill(signal);
  process.on('SIGINT', ignore);
  for (const s of FORWARDED) process.on(s, forward);
  try {
    const running = (child = spawn(command, args, { env: env as NodeJS.ProcessEnv, stdio }));
    if (fds[0] === null) io.stdin.pipe(running.stdin!).on('error', () => {});
    if (fds[1] === null) running.stdout!.pipe(io.stdout, { end: false });
    if (fds[2] === null) running.stderr!.pipe(io.stderr, { end: false });
    return await new Promise<number>((resolve, reject) => {
      running.once('error', (err: NodeJS.ErrnoException) => {
        reject(
          new HoopError('HOOP_NOT_FOUND', `cannot run '${command}': ${err.code === 'ENOENT' ? 'command not found' : err.message}`, {
            hint: 'Give the client program after `--`, e.g. `hoop connect bank -- psql`.',
          }),
        );
      });
      running.once('close', (code, signal) => resolve(shellStatus(code, signal)));
    });
  } finally {
    process.off('SIGINT', ignore);
    for (const s of FORWARDED) process.off(s, forward);
  }
}
