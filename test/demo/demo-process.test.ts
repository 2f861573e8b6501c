/**
 * The whole `hoop demo` process, as a user runs it: the built CLI (`npm test` builds first), Ctrl-C
 * (SIGINT), and nothing left running or on disk afterwards.
 */
import { expect, test } from 'vitest';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { listening } from '../helpers/clients.js';
import { until } from '../helpers/poll.js';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const root = join(import.meta.dirname, '..', '..');


/** The throwaway cluster serving `port`: its postmaster.pid names the port on line 4. */
function clusterDirServing(port: number): string | null {
  for (const name of readdirSync(tmpdir()).filter((d) => d.startsWith('hoop-demo-pg-'))) {
    const dir = join(tmpdir(), name);
    try {
      if (readFileSync(join(dir, 'data', 'postmaster.pid'), 'utf8').split('\n')[3]?.trim() === String(port)) return dir;
    } catch {
      // not running, or not ours to read
    }
  }
  return null;
}

const processesMentioning = (text: string) =>
  execFileSync('ps', ['-eo', 'args'], { encoding: 'utf8' }).split('\n').filter((l) => l.includes(text));

interface DemoProcess {
  child: ChildProcess;
  stderr: () => string;
  exited: Promise<number | null>;
  gatewayPort: number;
  upstreamPort: number;
  clusterDir: string;
}

/** Runs the built CLI's `hoop demo` until its banner, and finds the cluster it started. */
async function startDemoProcess(home: string, args: string[]): Promise<DemoProcess> {
  expect(existsSync(join(root, 'dist', 'cli', 'main.js')), 'run `npm run build` first (npm test does)').toBe(true);
  const child = spawn(process.execPath, [join(root, 'bin', 'hoop.js'), 'demo', '--port', '0', ...args], {
    cwd: home,
    env: { ...process.env, HOME: home, XDG_CONFIG_HOME: join(home, '.config'), NO_COLOR: '1', HOOP_GATEWAY: '', HOOP_TOKEN: '' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString('utf8')));
  const exited = new Promise<number | null>((resolve) => child.once('close', (code) => resolve(code)));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no banner within 60 s:\n${stderr}`)), 60_000);
    child.stderr!.on('data', () => {
      if (stderr.includes('Press Ctrl-C to stop')) {
        clearTimeout(timer);
        resolve();
      }
    });
    void exited.then((code) => reject(new Error(`hoop demo exited early (${code}):\n${stderr}`)));
  });
  const gatewayUrl = /^ {2}gateway\s+(http:\/\/\S+)$/m.exec(stderr)?.[1];
  expect(gatewayUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
  const dataDir = /^ {2}data dir\s+(\S+)$/m.exec(stderr)?.[1];
  const upstreamPort = Number(/port: (\d+), database: bank/.exec(readFileSync(join(dataDir!, 'hoop.yaml'), 'utf8'))?.[1]);
  const clusterDir = clusterDirServing(upstreamPort);
  expect(clusterDir).not.toBeNull();
  return { child, stderr: () => stderr, exited, gatewayPort: Number(new URL(gatewayUrl!).port), upstreamPort, clusterDir: clusterDir! };
}

test('`hoop demo` stops on Ctrl-C (SIGINT) leaving no PostgreSQL process, port or temp dir', async () => {
  const home = mkdtempSync(join(tmpdir(), 'hoop-demo-home-'));
  const dataDir = join(home, 'demo-data');
  try {
    const demo = await startDemoProcess(home, ['--data-dir', dataDir]);
    expect(await listening(demo.gatewayPort)).toBe(true);
    const health = await fetch(`http://127.0.0.1:${demo.gatewayPort}/healthz`);
    expect(health.status).toBe(200);

    demo.child.kill('SIGINT');
    expect(await demo.exited).toBe(0);
    expect(demo.stderr()).toContain('Demo stopped.');
    // On Node 20, oidc-provider would warn of an "Unsupported runtime" (it runs fine on 20.19+).
    expect(demo.stderr()).not.toMatch(/oidc-provider|Unsupported runtime/);
    // The service identity can be tried: its secret is printed with the others.
    expect(demo.stderr()).toMatch(/HOOP_CLIENT_ID=hoop-service HOOP_CLIENT_SECRET=\S+ .* login --client-credentials/);
    expect(await listening(demo.gatewayPort)).toBe(false);
    expect(await listening(demo.upstreamPort)).toBe(false);
    expect(existsSync(demo.clusterDir)).toBe(false);
    // Neither PostgreSQL nor the watchdog (whose arguments name the cluster dir) is left.
    expect(processesMentioning(demo.clusterDir)).toEqual([]);
    // A data dir the user chose is kept: it holds the audit log.
    expect(existsSync(join(dataDir, 'hoop.db'))).toBe(true);
  } finally {
    rmSync(home, { recursive: true, force: true });
  }
});

test('when `hoop demo` is killed outright (SIGKILL), its watchdog stops PostgreSQL and removes the temp dirs', async () => {
  const home = mkdtempSync(join(tmpdir(), 'hoop-demo-home-'));
  try {
    const demo = await startDemoProcess(home, []);
    const dataDir = /^ {2}data dir\s+(\S+)$/m.exec(demo.stderr())![1]!;
    expect(existsSync(dataDir)).toBe(true);
    demo.child.kill('SIGKILL');
    await demo.exited;
    await until(() => !existsSync(demo.clusterDir) && !existsSync(dataDir), { timeoutMs: 15_000, intervalMs: 100, what: 'the cluster and data dirs removed' });
    await until(async () => !(await listening(demo.upstreamPort)), { timeoutMs: 5_000, intervalMs: 100, what: 'the upstream port closed' });
    await until(() => processesMentioning(demo.clusterDir).length === 0, { timeoutMs: 5_000, intervalMs: 100, what: 'no process left naming the cluster dir' });
  } finally {
    rmSync(home, { recursive: true, force: true });
  }
});
