/**
 * `hoop connect` at its edges, as a new user meets them, against a real gateway and real psql:
 * the tunnel pinned to the identity that opened it, `-- <client>` (PG* variables and a private
 * password file, the client's exit status), `--pgpass`, `--single-use`, a listener off loopback,
 * and no password on any command line another Unix user can read.
 */
import { execFile, spawn } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { runCli } from '../../src/cli/program.js';
import { clientEnv } from '../helpers/clients.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { until as poll } from '../helpers/poll.js';
import { runningPids, untilRunning } from '../helpers/postgres.js';
import { BIN, childEnv, runHoop, tempHome, testRuntime } from './helpers.js';

const execFileAsync = promisify(execFile);
const upstream = inject('upstream');
let gw: TestGateway;
let home: ReturnType<typeof tempHome>;

beforeAll(async () => {
  gw = await startTestGateway({ upstream });
  home = tempHome();
}, 60_000);

afterAll(async () => {
  await gw?.close();
  home?.cleanup();
});

const until = <T>(what: string, probe: () => T | undefined) => poll(probe, { what, timeoutMs: 8_000, intervalMs: 20 });
const jsonLine = (t: { stdout(): string }) => until('the JSON line', () => (t.stdout().includes('\n') ? t.stdout() : undefined));

async function query(uri: string, sql: string): Promise<unknown[]> {
  const client = new pg.Client({ connectionString: uri });
  try {
    await client.connect();
    return (await client.query(sql)).rows;
  } finally {
    await client.end().catch(() => {});
  }
}

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const { port } = s.address() as AddressInfo;
  await new Promise((r) => s.close(r));
  return port;
}

describe('the tunnel belongs to the identity that opened it', () => {
  it('once the credential is someone else\'s, new clients get a FATAL saying so and the terminal says to restart', async () => {
    const env: Record<string, string> = { HOOP_GATEWAY: gw.url, HOOP_TOKEN: gw.keys.alice! };
    const t = testRuntime({ env });
    const exit = runCli(['connect', 'bank', '--port', '0', '--json', '--reason', 'INC-9'], t.runtime);
    const { uri } = JSON.parse(await jsonLine(t)) as { uri: string };
    expect(await query(uri, 'SELECT 1 AS one')).toEqual([{ one: 1 }]);

    env.HOOP_TOKEN = gw.keys.bob!; // `hoop logout`, `hoop login` as bob: another credential, another subject
    await expect(query(uri, 'SELECT 2')).rejects.toThrow("this tunnel was opened as apikey:alice, but the credential is now apikey:bob's");
    await until('the refusal on the terminal', () => (/refused: hoop: this tunnel was opened as apikey:alice.*restart `hoop connect bank`/.test(t.stderr()) ? true : undefined));
    expect(await gw.store.listSessions({ subject: 'apikey:bob' })).toEqual([]); // nothing ran as bob under alice's reason

    env.HOOP_TOKEN = gw.keys.alice!; // alice again (say, a fresh login): welcome back
    expect(await query(uri, 'SELECT 3 AS three')).toEqual([{ three: 3 }]);
    t.shutdown();
    expect(await exit).toBe(0);
  });
});

describe('a listener off loopback', () => {
  const env = () => ({ HOOP_GATEWAY: gw.url, HOOP_TOKEN: gw.keys.alice! });

  it('without a terminal needs --insecure-listen-anywhere (exit 2), before contacting the gateway', async () => {
    const r = await runHoop(['connect', 'bank', '--listen', '0.0.0.0', '--port', '0'], { env: { ...env(), HOOP_GATEWAY: 'http://127.0.0.1:9' } });
    expect(r.code).toBe(2);
    expect(r.stderr).toBe(
      "hoop: refusing to listen on 0.0.0.0 without confirmation: --listen 0.0.0.0 is not a loopback address: anyone who can reach it may try the tunnel's password\n" +
        'Pass --insecure-listen-anywhere to allow it, or --listen 127.0.0.1.\n',
    );
    // A terminal in CI is not a person who can answer.
    const ci = await runHoop(['connect', 'bank', '--listen', '0.0.0.0', '--port', '0'], { env: { ...env(), CI: 'true' }, tty: true });
    expect(ci.code).toBe(2);
  });

  it('on a terminal asks; no (the default) exits 2, yes listens', async () => {
    const no = await runHoop(['connect', 'bank', '--listen', '0.0.0.0', '--port', '0'], { env: { ...env(), NO_COLOR: '1' }, tty: true, input: '\n' });
    expect(no.code).toBe(2);
    expect(no.stderr).toContain('Listen on 0.0.0.0 anyway?');
    expect(no.stderr).toContain('hoop: not listening on 0.0.0.0');

    const t = testRuntime({ env: { ...env(), NO_COLOR: '1' }, tty: true, input: 'y\n' });
    const exit = runCli(['connect', 'bank', '--listen', '0.0.0.0', '--port', '0'], t.runtime);
    const uri = await until('the psql example', () => /psql "(postgresql:\/\/[^"]+)"/.exec(t.stderr())?.[1]);
    expect(await query(uri.replace('@0.0.0.0:', '@127.0.0.1:'), 'SELECT 1 AS one')).toEqual([{ one: 1 }]);
    t.shutdown();
    expect(await exit).toBe(0);
  });

  it('--insecure-listen-anywhere listens without asking, with a warning', async () => {
    const t = testRuntime({ env: env() });
    const exit = runCli(['connect', 'bank', '--listen', '0.0.0.0', '--port', '0', '--insecure-listen-anywhere', '--json'], t.runtime);
    expect(JSON.parse(await jsonLine(t))).toMatchObject({ host: '0.0.0.0' });
    expect(t.stderr()).toContain('Warning: listening on 0.0.0.0, not a loopback address');
    t.shutdown();
    expect(await exit).toBe(0);
  });
});

describe('--single-use and --pgpass', () => {
  it('--single-use: the first client works, a second one gets a FATAL', async () => {
    const t = testRuntime({ env: { HOOP_GATEWAY: gw.url, HOOP_TOKEN: gw.keys.alice! } });
    const exit = runCli(['connect', 'bank', '--port', '0', '--json', '--single-use'], t.runtime);
    const { uri } = JSON.parse(await jsonLine(t)) as { uri: string };
    expect(await query(uri, 'SELECT 1 AS one')).toEqual([{ one: 1 }]);
    await expect(query(uri, 'SELECT 1')).rejects.toThrow('this tunnel is --single-use and its one client connection was already made');
    t.shutdown();
    expect(await exit).toBe(0);
  });

  it('--pgpass writes one 0600 line (updating, never duplicating), psql -w finds it, and it is removed at exit', async () => {
    const port = await freePort();
    const pgpass = join(home.dir, '.pgpass');
    const other = 'db.example:5432:*:someone:kept\\:secret';
    writeFileSync(pgpass, `# mine\n${other}\n127.0.0.1:${port}:hoop_test:alice:stale-from-a-crashed-run\n`, { mode: 0o644 });
    const t = testRuntime({ env: { HOOP_GATEWAY: gw.url, HOOP_TOKEN: gw.keys.alice!, HOME: home.dir } });
    const exit = runCli(['connect', 'bank', '--port', String(port), '--json', '--pgpass'], t.runtime);
    const info = JSON.parse(await jsonLine(t)) as { uri: string; password: string | null; passfile: string };
    expect(info).toMatchObject({ password: null, passfile: pgpass, uri: `postgresql://alice@127.0.0.1:${port}/hoop_test?sslmode=disable` });
    expect(statSync(pgpass).mode & 0o777).toBe(0o600);
    const lines = readFileSync(pgpass, 'utf8').trimEnd().split('\n');
    expect(lines.slice(0, 2)).toEqual(['# mine', other]);
    expect(lines).toHaveLength(3);
    expect(lines[2]).toMatch(new RegExp(`^127\\.0\\.0\\.1:${port}:hoop_test:alice:[A-Za-z0-9_-]{32}$`));

    const r = await execFileAsync('psql', ['-X', '-w', '-At', '-d', info.uri, '-c', 'SELECT 40 + 2'], { env: clientEnv({ HOME: home.dir }) });
    expect(r.stdout).toBe('42\n');

    t.shutdown();
    expect(await exit).toBe(0);
    expect(readFileSync(pgpass, 'utf8')).toBe(`# mine\n${other}\n`);
  });
});

describe('hoop connect bank -- <client>', () => {
  const env = (extra: Record<string, string> = {}) => ({ HOOP_GATEWAY: gw.url, HOOP_TOKEN: gw.keys.alice!, PATH: process.env.PATH ?? '', ...extra });

  it('runs psql with PG* variables and a private password file; its output is the data; the tunnel ends with it', async () => {
    const r = await runHoop(['connect', 'bank', '--port', '0', '--', 'psql', '-X', '-w', '-At', '-c', "SELECT current_database() || ' via hoop'"], { env: env({ PGPASSWORD: 'not-this-one' }) });
    expect(r).toMatchObject({ code: 0, stdout: 'hoop_test via hoop\n' });
    expect(r.stderr).not.toMatch(/[A-Za-z0-9_-]{32}/); // no password on the terminal either
  });

  it('the environment: host, port, user, database, a 0600 PGPASSFILE removed afterwards, no inherited PGPASSWORD or PGSERVICE', async () => {
    const script = 'echo "$PGHOST $PGUSER $PGDATABASE ${PGPASSWORD-unset} ${PGSERVICE-unset}"; echo "$PGPORT"; echo "$PGPASSFILE"; stat -c %a "$PGPASSFILE"; cut -d: -f1-4 "$PGPASSFILE"';
    // No --port: a client run takes a free port, so two of them never collide on 5433.
    const r = await runHoop(['connect', 'bank', '--', 'sh', '-c', script], { env: env({ PGPASSWORD: 'x', PGSERVICE: 'elsewhere' }) });
    expect(r.code).toBe(0);
    const [who, port, passfile, mode, key] = r.stdout.trimEnd().split('\n');
    expect(who).toBe('127.0.0.1 alice hoop_test unset unset');
    expect(mode).toBe('600');
    expect(key).toBe(`127.0.0.1:${port}:hoop_test:alice`);
    expect(port).not.toBe('5433');
    expect(existsSync(passfile!)).toBe(false);
  });

  it('exits with the client\'s status, 128 + n for a signal, 1 for a client that does not exist', async () => {
    expect((await runHoop(['connect', 'bank', '--port', '0', '--', 'sh', '-c', 'exit 7'], { env: env() })).code).toBe(7);
    expect((await runHoop(['connect', 'bank', '--port', '0', '--', 'sh', '-c', 'kill -TERM $$'], { env: env() })).code).toBe(143);
    const missing = await runHoop(['connect', 'bank', '--port', '0', '--', 'no-such-client-program'], { env: env() });
    expect(missing.code).toBe(1);
    expect(missing.stderr.split('\n')[0]).toBe("hoop: cannot run 'no-such-client-program': command not found");
  });

  it('SIGTERM to hoop is passed on to the client, and hoop exits with its status (143)', async () => {
    const hoop = spawn(process.execPath, [BIN, 'connect', 'bank', '--', 'sh', '-c', 'echo ready; exec sleep 30'], {
      env: childEnv({ ...home.env, HOOP_GATEWAY: gw.url, HOOP_TOKEN: gw.keys.alice! }),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const exited = new Promise<number | null>((r) => hoop.once('exit', (code) => r(code)));
    let out = '';
    hoop.stdout.on('data', (d: Buffer) => (out += d.toString()));
    try {
      await until('the client running', () => (out.includes('ready') ? true : undefined));
      hoop.kill('SIGTERM');
      expect(await exited).toBe(143);
    } finally {
      hoop.kill('SIGKILL');
    }
  });

  it('--pgpass and --json do not combine with a client (exit 2)', async () => {
    expect((await runHoop(['connect', 'bank', '--pgpass', '--', 'psql'], { env: env() })).code).toBe(2);
    expect((await runHoop(['connect', 'bank', '--json', '--', 'psql'], { env: env() })).code).toBe(2);
  });
});

/** A process's parent pid from /proc/PID/stat ("pid (comm) state ppid …"), or null once it is gone. */
function parentOf(pid: string): string | null {
  try {
    return readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ')[1] ?? null;
  } catch {
    return null;
  }
}

const asRoot = process.getuid?.() === 0 && existsSync('/usr/sbin/runuser');

describe('no password on a command line', () => {
  it.skipIf(!asRoot)('another Unix user (nobody) finds the password in no process\'s command line, environment or file while psql runs', async () => {
    const witness = 'SELECT pg_sleep(30) AS cmdline_witness';
    const hoop = spawn(process.execPath, [BIN, 'connect', 'bank', '--port', '0', '--', 'psql', '-X', '-w', '-c', witness], {
      env: childEnv({ ...home.env, HOOP_GATEWAY: gw.url, HOOP_TOKEN: gw.keys.alice! }),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    hoop.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<number | null>((r) => hoop.once('exit', (code) => r(code)));
    const dir = mkdtempSync(join(tmpdir(), 'hoop-scan-'));
    try {
      await untilRunning(upstream, witness, 8_000);
      // As root, find psql (hoop's child) and the password it was given, to know what to look for.
      const psqlPid = readdirSync('/proc').find((p) => /^\d+$/.test(p) && parentOf(p) === String(hoop.pid));
      expect(psqlPid).toBeDefined();
      const environ = readFileSync(`/proc/${psqlPid}/environ`, 'utf8').split('\0');
      const passfile = environ.find((v) => v.startsWith('PGPASSFILE='))!.slice('PGPASSFILE='.length);
      const password = readFileSync(passfile, 'utf8').trimEnd().split(':').pop()!;
      expect(password).toMatch(/^[A-Za-z0-9_-]{32}$/);
      expect(environ.some((v) => v.startsWith('PGPASSWORD='))).toBe(false);

      const scan = join(dir, 'scan.mjs');
      writeFileSync(
        scan,
        `import { readdirSync, readFileSync } from 'node:fs';
const out = { cmdlines: [], environ: null, passfile: null };
for (const p of readdirSync('/proc')) {
  if (!/^\\d+$/.test(p)) continue;
  try { out.cmdlines.push(readFileSync('/proc/' + p + '/cmdline', 'utf8').split('\\0').join(' ')); } catch {}
}
try { readFileSync('/proc/${psqlPid}/environ', 'utf8'); out.environ = 'readable'; } catch (e) { out.environ = e.code; }
try { readFileSync(${JSON.stringify(passfile)}, 'utf8'); out.passfile = 'readable'; } catch (e) { out.passfile = e.code; }
console.log(JSON.stringify(out));
`,
      );
      chmodSync(dir, 0o755);
      chmodSync(scan, 0o644);
      const { stdout } = await execFileAsync('runuser', ['-u', 'nobody', '--', process.execPath, scan], { cwd: '/' });
      const seen = JSON.parse(stdout) as { cmdlines: string[]; environ: string; passfile: string };
      expect(seen.cmdlines.some((c) => c.includes('cmdline_witness'))).toBe(true); // nobody does see psql's command line...
      expect(seen.cmdlines.filter((c) => c.includes(password))).toEqual([]); // ...but no password in it or any other
      expect(seen.environ).toBe('EACCES');
      expect(seen.passfile).toBe('EACCES');

      // Cancel the sleep upstream: psql fails with status 1, and hoop exits with it and cleans up.
      const [pid] = await runningPids(upstream, witness);
      const admin = new pg.Client({ host: upstream.host, port: upstream.port, user: upstream.users.trust, database: 'postgres' });
      await admin.connect();
      await admin.query('SELECT pg_cancel_backend($1)', [pid]).finally(() => admin.end());
      expect(await exited).toBe(1);
      expect(existsSync(passfile)).toBe(false);
      expect(stderr).toContain('canceling statement due to user request');
    } finally {
      hoop.kill('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
