/**
 * The whole `hoop demo` process, as a user runs it: the built CLI (`npm test` builds first), Ctrl-C
 * (SIGINT), and nothing left running or on disk afterwards.
 */
import { expect, test } from 'vitest';
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const root = join(import.meta.dirname, '..', '..');

function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

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

test('`hoop demo` stops on Ctrl-C (SIGINT) leaving no PostgreSQL process, port or temp dir', async () => {
  expect(existsSync(join(root, 'dist', 'cli', 'main.js')), 'run `npm run build` first (npm test does)').toBe(true);
  const home = mkdtempSync(join(tmpdir(), 'hoop-demo-home-'));
  const dataDir = join(home, 'demo-data');
  try {
    const child = spawn(process.execPath, [join(root, 'bin', 'hoop.js'), 'demo', '--port', '0', '--data-dir', dataDir], {
      cwd: home,
      env: { ...process.env, HOME: home, XDG_CONFIG_HOME: join(home, '.config'), NO_COLOR: '1', HOOP_GATEWAY: '', HOOP_TOKEN: '' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString('utf8')));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));

    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no banner within 60 s:\n${stderr}`)), 60_000);
      const check = () => {
        if (stderr.includes('Press Ctrl-C to stop')) {
          clearTimeout(timer);
          resolve();
        }
      };
      child.stderr.on('data', check);
      void exited.then((code) => reject(new Error(`hoop demo exited early (${code}):\n${stderr}`)));
    });

    const gatewayUrl = /^ {2}gateway\s+(http:\/\/\S+)$/m.exec(stderr)?.[1];
    expect(gatewayUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    const gatewayPort = Number(new URL(gatewayUrl!).port);
    const upstreamPort = Number(/port: (\d+), database: bank/.exec(readFileSync(join(dataDir, 'hoop.yaml'), 'utf8'))?.[1]);
    const clusterDir = clusterDirServing(upstreamPort);
    expect(clusterDir).not.toBeNull();
    expect(await listening(gatewayPort)).toBe(true);
    const health = await fetch(`${gatewayUrl}/healthz`);
    expect(health.status).toBe(200);

    child.kill('SIGINT');
    expect(await exited).toBe(0);
    expect(stderr).toContain('Demo stopped.');
    expect(await listening(gatewayPort)).toBe(false);
    expect(await listening(upstreamPort)).toBe(false);
    expect(existsSync(clusterDir!)).toBe(false);
    const ps = execFileSync('ps', ['-eo', 'args'], { encoding: 'utf8' });
    expect(ps.split('\n').filter((l) => l.includes(clusterDir!))).toEqual([]);
    // A data dir the user chose is kept: it holds the audit log.
    expect(existsSync(join(dataDir, 'hoop.db'))).toBe(true);
  } finally {
    rmSync(home, { recursive: true, force: true });
  }
});
