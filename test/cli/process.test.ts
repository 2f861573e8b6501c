/**
 * Whole-process tests: `node bin/hoop.js` (the built CLI; `npm test` builds first) in a temporary
 * HOME/XDG_CONFIG_HOME with only PATH and the variables each test sets.
 */
import { execFile, spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { promisify } from 'node:util';
import { existsSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { apiKeyHash } from '../../src/identity/api-keys.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { passwordOf } from '../helpers/postgres.js';
import { BIN, ROOT, childEnv, runBin, tempHome } from './helpers.js';

const execFileAsync = promisify(execFile);

let home: ReturnType<typeof tempHome>;
let gw: TestGateway;

beforeAll(async () => {
  home = tempHome();
  gw = await startTestGateway({ upstream: inject('upstream') });
}, 60_000);

afterAll(async () => {
  await gw?.close();
  home?.cleanup();
});

const env = (extra: Record<string, string> = {}) => childEnv({ ...home.env, ...extra });

/** Starts a long-running hoop and hands back its first stdout line. */
function startBin(args: string[], e: Record<string, string>): { child: ChildProcessWithoutNullStreams; firstLine: Promise<string>; stderr: () => string; exited: Promise<number | null> } {
  const child = spawn(process.execPath, [BIN, ...args], { env: e, stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const lines = createInterface({ input: child.stdout });
  const firstLine = new Promise<string>((resolve, reject) => {
    lines.once('line', resolve);
    child.once('exit', (code) => reject(new Error(`hoop exited (${code}) before printing; stderr: ${stderr}`)));
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { child, firstLine, stderr: () => stderr, exited };
}

describe('bin/hoop.js', () => {
  it('--help lists the commands on stdout and exits 0', async () => {
    const r = await runBin(['--help'], env());
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^Usage: hoop \[options\] \[command\]/);
    expect(r.stdout).toContain('connect [options] <name>');
    expect(r.stderr).toBe('');
  });

  it('an unknown command exits 2 with one line and a hint', async () => {
    const r = await runBin(['frobnicate'], env());
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toBe("hoop: unknown command 'frobnicate'\nRun `hoop --help` for usage.\n");
  });

  it('`connections` without credentials exits 4 with one line saying how to log in', async () => {
    const r = await runBin(['connections', '--gateway', gw.url], env());
    expect(r.code).toBe(4);
    expect(r.stdout).toBe('');
    const lines = r.stderr.trimEnd().split('\n');
    expect(lines[0]).toBe(`hoop: not logged in to ${gw.url}`);
    expect(lines[1]).toContain(`hoop login --gateway ${gw.url}`);
    expect(lines).toHaveLength(2);
  });

  it('`completion <shell>` prints exactly the files in completions/', async () => {
    for (const [shell, file] of [['bash', 'hoop.bash'], ['zsh', '_hoop'], ['fish', 'hoop.fish']] as const) {
      const r = await runBin(['completion', shell], env());
      expect(r.code).toBe(0);
      expect(r.stdout).toBe(readFileSync(join(ROOT, 'completions', file), 'utf8'));
    }
  });

  it('`__complete connections` lists usable connection names for completion scripts, silently', async () => {
    const ok = await runBin(['__complete', 'connections'], env({ HOOP_GATEWAY: gw.url, HOOP_TOKEN: gw.keys.alice! }));
    expect(ok).toEqual({ code: 0, stdout: 'bank\n', stderr: '' });
    const denied = await runBin(['__complete', 'connections'], env({ HOOP_GATEWAY: gw.url, HOOP_TOKEN: gw.keys.carol! }));
    expect(denied).toEqual({ code: 0, stdout: '', stderr: '' });
    const away = await runBin(['__complete', 'connections'], env({ HOOP_GATEWAY: 'http://127.0.0.1:9' }));
    expect(away).toEqual({ code: 0, stdout: '', stderr: '' });
  });

  it('bash completes connection names by asking the gateway named by --gateway', async () => {
    const binDir = join(home.dir, 'bin');
    mkdirSync(binDir, { recursive: true });
    if (!existsSync(join(binDir, 'hoop'))) symlinkSync(BIN, join(binDir, 'hoop'));
    const line = `hoop --gateway ${gw.url} connect `;
    const script = `source ${JSON.stringify(join(ROOT, 'completions/hoop.bash'))}
COMP_LINE=${JSON.stringify(line)}; COMP_POINT=\${#COMP_LINE}; COMP_WORDS=(hoop --gateway x connect ''); COMP_CWORD=4
_hoop; printf '%s\\n' "\${COMPREPLY[@]}"`;
    const { stdout } = await execFileAsync('bash', ['--norc', '-c', script], { env: env({ PATH: `${binDir}:${process.env.PATH ?? ''}`, HOOP_TOKEN: gw.keys.alice! }) });
    expect(stdout).toBe('bank\n');
  });

  it('`connect --json` prints one JSON line, psql works through it, and SIGINT ends it with exit 0', async () => {
    const run = startBin(['connect', 'bank', '--port', '0', '--json'], env({ HOOP_GATEWAY: gw.url, HOOP_TOKEN: gw.keys.alice! }));
    try {
      const info = JSON.parse(await run.firstLine) as Record<string, unknown>;
      expect(Object.keys(info).sort()).toEqual(['database', 'host', 'name', 'password', 'port', 'uri', 'user']);
      expect(info).toMatchObject({ name: 'bank', host: '127.0.0.1', user: 'alice', database: 'hoop_test' });
      expect(String(info.password).length).toBeGreaterThanOrEqual(24);
      // Asynchronously: the gateway lives in this process and must keep answering.
      const { stdout } = await execFileAsync('psql', [String(info.uri), '-XwAtc', 'SELECT 40 + 2'], { env: { PATH: process.env.PATH ?? '' } });
      expect(stdout.trim()).toBe('42');
      // Without the one-time password the local port refuses.
      await expect(
        execFileAsync('psql', ['-XwAtc', 'SELECT 1', '-h', '127.0.0.1', '-p', String(info.port), '-U', 'alice', 'hoop_test'], {
          env: { PATH: process.env.PATH ?? '', PGPASSWORD: 'wrong', PGCONNECT_TIMEOUT: '5' },
        }),
      ).rejects.toThrow(/password authentication failed/);
    } finally {
      run.child.kill('SIGINT');
    }
    expect(await run.exited).toBe(0);
    expect(run.stderr()).toMatch(/^\d\d:\d\d:\d\d \+ client 127\.0\.0\.1:\d+ connected to bank \(session [0-9a-f]{8}\)$/m);
  });

  it('`connect` refuses a connection outside your groups before opening a port (exit 5)', async () => {
    const r = await runBin(['connect', 'bank', '--port', '0'], env({ HOOP_GATEWAY: gw.url, HOOP_TOKEN: gw.keys.carol! }));
    expect(r.code).toBe(5);
    expect(r.stdout).toBe('');
    expect(r.stderr.split('\n')[0]).toBe("hoop: you may not use connection 'bank' (access: analysts, dba)");
  });

  it('`gateway --config` serves until SIGTERM and stops cleanly; a bad config exits 1 naming file and key', async () => {
    const upstream = inject('upstream');
    const key = 'hoop_process_test_key';
    const config = join(home.dir, 'hoop.yaml');
    writeFileSync(
      config,
      [
        'listen: 127.0.0.1:0',
        `store: sqlite:${join(home.dir, 'gw.db')}`,
        'identity:',
        `  api_keys: [{name: ci, sha256: ${apiKeyHash(key)}, groups: [analysts]}]`,
        'connections:',
        '  - name: bank',
        '    type: postgres',
        `    upstream: {host: ${upstream.host}, port: ${upstream.port}, database: ${upstream.database}, user: ${upstream.users.scram}, password: "\${env:DB_PASSWORD}", sslmode: disable}`,
        '    access: [analysts]',
        `audit: {signing_key: ${join(home.dir, 'signing.key')}}`,
        '',
      ].join('\n'),
    );
    const run = spawn(process.execPath, [BIN, 'gateway', '--config', config], { env: env({ DB_PASSWORD: passwordOf(upstream.users.scram) }), stdio: ['ignore', 'pipe', 'pipe'] });
    let logs = '';
    run.stderr.on('data', (d: Buffer) => (logs += d.toString()));
    const exited = new Promise<number | null>((resolve) => run.once('exit', resolve));
    const url = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`gateway did not start: ${logs}`)), 20_000);
      run.stderr.on('data', () => {
        const m = /"url":"(http:\/\/[^"]+)"/.exec(logs);
        if (m) {
          clearTimeout(timer);
          resolve(m[1]!);
        }
      });
    });
    const listed = await runBin(['connections', '--json'], env({ HOOP_GATEWAY: url, HOOP_TOKEN: key }));
    expect(JSON.parse(listed.stdout)).toMatchObject([{ name: 'bank', allowed: true }]);
    run.kill('SIGTERM');
    expect(await exited).toBe(0);
    expect(logs).toContain('"msg":"stopped"');

    writeFileSync(config, 'listen: 127.0.0.1:0\nstore: "sqlite::memory:"\nbogus_key: 1\n');
    const bad = await runBin(['gateway', '--config', config], env());
    expect(bad.code).toBe(1);
    expect(bad.stderr.split('\n')[0]).toMatch(/^hoop: the config has \d+ problems?:$/);
    expect(bad.stderr).toMatch(/^ {2}hoop\.yaml: bogus_key: unknown key$/m);
    expect(bad.stderr).not.toContain('    at ');
  });
});

describe('hoop demo', () => {
  it('--port 0 --json prints one line with the URL and keys; the gateway answers; SIGINT stops everything (exit 0)', async () => {
    const run = startBin(['demo', '--port', '0', '--json'], env());
    let info: { url: string; connection: string; keys: Record<string, string>; data_dir: string };
    try {
      info = JSON.parse(await run.firstLine) as typeof info;
      expect(info.connection).toBe('bank');
      const listed = await runBin(['connections', '--json'], env({ HOOP_GATEWAY: info.url, HOOP_TOKEN: info.keys.alice! }));
      expect(JSON.parse(listed.stdout)).toMatchObject([{ name: 'bank', allowed: true }]);
    } finally {
      run.child.kill('SIGINT');
    }
    expect(await run.exited).toBe(0);
    expect(existsSync(info.data_dir)).toBe(false);
    // The banner spells the CLI the way it was run.
    expect(run.stderr()).toContain("node bin/hoop.js connect bank");
  }, 60_000);
});
