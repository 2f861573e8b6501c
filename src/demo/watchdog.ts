/**
 * A watchdog that cleans up after `hoop demo` if the demo process dies without stopping: killed
 * (SIGKILL, OOM) or hung up (terminal closed), cases where no exit handler runs. PostgreSQL is
 * started by `pg_ctl`, which detaches the postmaster into its own session, so it would otherwise
 * outlive the demo and keep its temp dir.
 *
 * The watchdog is a detached Node process (its own session: Ctrl-C and SIGHUP of the terminal do
 * not reach it) holding the read end of a pipe from the demo. When the pipe closes without a
 * "disarm" line first, the demo is gone: it runs the stop command and removes the dirs.
 */
import { spawn, type ChildProcess } from 'node:child_process';

const SCRIPT = `
const { execFileSync } = require('node:child_process');
const { rmSync } = require('node:fs');
const [stopFile, stopArgs, dirs] = JSON.parse(process.argv[1]);
let input = '';
let done = false;
process.stdin.setEncoding('utf8');
process.stdin.on('data', (d) => { input += d; });
const finish = () => {
  if (done) return;
  done = true;
  if (input.includes('disarm')) process.exit(0);
  try { execFileSync(stopFile, stopArgs, { stdio: 'ignore', timeout: 60000 }); } catch {}
  for (const dir of dirs) { try { rmSync(dir, { recursive: true, force: true }); } catch {} }
  process.exit(0);
};
process.stdin.on('end', finish);
process.stdin.on('error', finish);
process.stdin.on('close', finish);
`;

export interface Watchdog {
  /** Tells the watchdog the demo cleaned up itself, and waits for it to exit. */
  disarm(): Promise<void>;
  readonly pid: number;
}

export function startWatchdog(stop: [string, string[]], dirs: string[]): Watchdog {
  const child: ChildProcess = spawn(process.execPath, ['-e', SCRIPT, JSON.stringify([stop[0], stop[1], dirs])], {
    detached: true,
    stdio: ['pipe', 'ignore', 'ignore'],
  });
  // Neither the child nor its pipe may keep the demo's event loop alive.
  child.unref();
  const stdin = child.stdin as (NodeJS.WritableStream & { unref?: () => void }) | null;
  stdin?.unref?.();
  child.on('error', () => undefined);
  stdin?.on('error', () => undefined);
  const exited = new Promise<void>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve();
    else child.once('exit', () => resolve());
  });
  return {
    pid: child.pid ?? -1,
    async disarm() {
      // Keep this process alive until the watchdog has read the line and exited.
      child.ref();
      stdin?.end('disarm\n');
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([exited, new Promise((resolve) => (timer = setTimeout(resolve, 3000)))]);
      clearTimeout(timer);
      child.unref();
    },
  };
}
