/** In-memory runs of the CLI: the real program and commands over captured streams. */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { Runtime } from '../../src/cli/context.js';
import { IOStreams, type Env } from '../../src/cli/iostreams.js';
import { runCli } from '../../src/cli/program.js';

export interface TestRun {
  runtime: Runtime;
  stdout(): string;
  stderr(): string;
  /** Delivers the shutdown signal a long-running command waits for. */
  shutdown(signal?: string): void;
}

export function testRuntime(o: { env?: Env; tty?: boolean; now?: Date; columns?: number; input?: string } = {}): TestRun {
  const env = o.env ?? {};
  const t = IOStreams.test({ tty: o.tty ?? false, env, ...(o.columns ? { columns: o.columns } : {}), ...(o.input ? { input: o.input } : {}) });
  let fire!: (signal: string) => void;
  const signalled = new Promise<string>((r) => (fire = r));
  return {
    runtime: { io: t.io, env, now: () => o.now ?? new Date(), shutdownSignal: () => signalled, version: '0.0.0-test' },
    stdout: t.stdout,
    stderr: t.stderr,
    shutdown: (signal = 'SIGINT') => fire(signal),
  };
}

export async function runHoop(argv: string[], o: Parameters<typeof testRuntime>[0] = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  const t = testRuntime(o);
  const code = await runCli(argv, t.runtime);
  return { code, stdout: t.stdout(), stderr: t.stderr() };
}

export const ROOT = resolve(import.meta.dirname, '../..');
export const BIN = join(ROOT, 'bin/hoop.js');

/** A temporary HOME and XDG_CONFIG_HOME, removed by `cleanup`. */
export function tempHome(): { env: Record<string, string>; dir: string; cleanup(): void } {
  const dir = mkdtempSync(join(tmpdir(), 'hoop-cli-home-'));
  return {
    dir,
    env: { HOME: dir, XDG_CONFIG_HOME: join(dir, '.config') },
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
}

/** Environment for a child `hoop`: PATH and the given variables only, so the developer's HOOP_* never leak in. */
export function childEnv(extra: Record<string, string>): Record<string, string> {
  return { PATH: process.env.PATH ?? '/usr/bin:/bin', LANG: 'C.UTF-8', ...extra };
}

/** Runs `node bin/hoop.js` to completion. */
export function runBin(args: string[], env: Record<string, string>, timeoutMs = 20_000): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`hoop ${args.join(' ')} did not exit within ${timeoutMs} ms; stderr: ${stderr}`));
    }, timeoutMs);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolvePromise({ code, stdout, stderr });
    });
  });
}
