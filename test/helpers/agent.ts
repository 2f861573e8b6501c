/**
 * Real processes for the agent tests: `hoop gateway` from a config file and `hoop agent`
 * (bin/hoop.js; run `npm run build` first), with their stderr kept, their JSON log lines
 * searchable, and their memory readable from /proc. Every process started here is killed by
 * `stopAll()`.
 */
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { until } from './poll.js';

export const ROOT = resolve(import.meta.dirname, '../..');
export const BIN = join(ROOT, 'bin/hoop.js');

export function newAgentKey(): string {
  return `hoop_agent_${randomBytes(32).toString('base64url')}`;
}

export function sha256Hex(s: string): string {
  return createHash('sha256').update(s).digest('hex');
}

export interface Proc {
  child: ChildProcess;
  readonly pid: number;
  /** Everything written to stderr so far. */
  stderr(): string;
  /** The JSON log lines so far whose msg is `msg` (and that match `fields`). */
  logs(msg: string, fields?: Record<string, unknown>): Record<string, unknown>[];
  /** Resolves once `count` such lines were written. */
  waitForLog(msg: string, fields?: Record<string, unknown>, count?: number, timeoutMs?: number): Promise<Record<string, unknown>[]>;
  /** VmRSS in bytes, from /proc/PID/status. */
  rss(): number;
  kill(signal?: NodeJS.Signals): Promise<void>;
}

const running = new Set<Proc>();

/** Starts `argv` under `prefix` (e.g. `ip netns exec NS`) with node, the CLI and `env` over the test's environment. */
export function startProc(args: string[], env: Record<string, string>, prefix: string[] = [], options: SpawnOptions = {}): Proc {
  const [cmd, ...rest] = [...prefix, process.execPath, BIN, ...args];
  const child = spawn(cmd!, rest, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, HOOP_TEST_LOG: '', NO_COLOR: '1', ...env }, ...options });
  let err = '';
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  child.stdout!.resume();
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const parse = () =>
    err.split('\n').flatMap((l) => {
      try {
        return [JSON.parse(l) as Record<string, unknown>];
      } catch {
        return [];
      }
    });
  const logs = (msg: string, fields: Record<string, unknown> = {}) =>
    parse().filter((l) => l['msg'] === msg && Object.entries(fields).every(([k, v]) => l[k] === v));
  const proc: Proc = {
    child,
    get pid() {
      return child.pid!;
    },
    stderr: () => err,
    logs,
    waitForLog: (msg, fields = {}, count = 1, timeoutMs = 15_000) =>
      until(() => {
        if (child.exitCode !== null) throw new Error(`process exited (${child.exitCode}) before logging ${msg}: ${err.slice(-2000)}`);
        const found = logs(msg, fields);
        return found.length >= count ? found : null;
      }, { timeoutMs, what: `log line "${msg}"` }),
    rss() {
      // Under `ip netns exec`, node is the child of the exec'd process (same pid: exec replaces it).
      const status = readFileSync(`/proc/${child.pid}/status`, 'utf8');
      const kb = /^VmRSS:\s+(\d+) kB$/m.exec(status);
      if (!kb) throw new Error(`no VmRSS for pid ${child.pid}`);
      return Number(kb[1]) * 1024;
    },
    async kill(signal = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      await Promise.race([exited, new Promise((r) => setTimeout(r, 5_000).unref())]);
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGKILL');
        await exited;
      }
      running.delete(proc);
    },
  };
  running.add(proc);
  return proc;
}

/** `hoop gateway --config <file>`; resolves once /healthz answers at `url`. */
export async function startGatewayProc(config: string, url: string, env: Record<string, string> = {}, prefix: string[] = []): Promise<Proc> {
  const p = startProc(['gateway', '--config', config], { HOOP_AGENT_HEARTBEAT_MS: '1000', ...env }, prefix);
  await until(async () => {
    if (p.child.exitCode !== null) throw new Error(`gateway exited (${p.child.exitCode}): ${p.stderr().slice(-3000)}`);
    try {
      return (await fetch(`${url}/healthz`)).ok;
    } catch {
      return false;
    }
  }, { timeoutMs: 30_000, what: 'the gateway to answer /healthz' });
  return p;
}

/** `hoop agent`, with a short heartbeat (1 s: a silent link is dropped after 3 s, long enough for a loaded machine) and backoff, so that tests see losses and reconnects quickly. */
export function startAgentProc(args: string[], key: string, env: Record<string, string> = {}, prefix: string[] = []): Proc {
  return startProc(['agent', ...args], { HOOP_AGENT_KEY: key, HOOP_AGENT_HEARTBEAT_MS: '1000', HOOP_AGENT_BACKOFF_MAX_MS: '500', ...env }, prefix);
}

export async function stopAll(): Promise<void> {
  await Promise.all([...running].map((p) => p.kill('SIGKILL')));
}

/** GET a JSON API path with a bearer key. */
export async function apiGet<T = unknown>(base: string, path: string, key: string): Promise<T> {
  const res = await fetch(`${base}${path}`, { headers: { authorization: `Bearer ${key}` } });
  if (!res.ok) throw new Error(`GET ${path}: ${res.status} ${await res.text()}`);
  return (await res.json()) as T;
}
