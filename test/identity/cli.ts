/** Runs the built CLI (`node bin/hoop.js`) as a user would, in a temporary HOME. */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';

export const ROOT = resolve(import.meta.dirname, '../..');
const BIN = join(ROOT, 'bin/hoop.js');

export function assertBuilt(): void {
  if (!existsSync(join(ROOT, 'dist/cli/main.js'))) throw new Error('run `npm run build` first (these tests run the built CLI)');
}

export interface Run {
  child: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  /** Resolves with the exit code. */
  exit: Promise<number>;
  /** Resolves once stderr matches `re`, with the match. */
  waitForStderr(re: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
  /** Resolves once stdout matches `re`, with the match. */
  waitForStdout(re: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
}

export function hoop(args: string[], env: Record<string, string>): Run {
  const child = spawn(process.execPath, [BIN, ...args], {
    env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin', NO_COLOR: '1', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  const waiters: (() => void)[] = [];
  child.stdout!.setEncoding('utf8').on('data', (s: string) => {
    out += s;
    for (const w of waiters) w();
  });
  child.stderr!.setEncoding('utf8').on('data', (s: string) => {
    err += s;
    for (const w of waiters) w();
  });
  const waitFor = (text: () => string, re: RegExp, timeoutMs: number) =>
    new Promise<RegExpMatchArray>((resolveMatch, reject) => {
      const timer = setTimeout(() => reject(new Error(`output never matched ${re}: ${out} ${err}`)), timeoutMs);
      const check = () => {
        const m = re.exec(text());
        if (m) {
          clearTimeout(timer);
          resolveMatch(m);
        }
      };
      waiters.push(check);
      // 'close' comes once its output streams have ended too: nothing more can match after it.
      void closed.then(() => {
        check();
        reject(new Error(`hoop exited before its output matched ${re}: ${out} ${err}`));
      });
      check();
    });
  const exit = new Promise<number>((resolveExit) => child.on('exit', (code, signal) => resolveExit(code ?? (signal ? 128 : -1))));
  const closed = new Promise<void>((resolveClosed) => child.on('close', () => resolveClosed()));
  return {
    child,
    stdout: () => out,
    stderr: () => err,
    exit,
    waitForStderr: (re, timeoutMs = 15_000) => waitFor(() => err, re, timeoutMs),
    waitForStdout: (re, timeoutMs = 15_000) => waitFor(() => out, re, timeoutMs),
  };
}

/** Runs to completion. */
export async function hoopRun(args: string[], env: Record<string, string>): Promise<{ code: number; stdout: string; stderr: string }> {
  const run = hoop(args, env);
  const code = await run.exit;
  return { code, stdout: run.stdout(), stderr: run.stderr() };
}
