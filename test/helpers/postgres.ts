/**
 * The upstream PostgreSQL the tests share: one throwaway cluster started by the global setup,
 * with a user for each authentication method the gateway must speak upstream.
 */
import pg from 'pg';
import { PostgresCluster } from '../../src/demo/postgres-cluster.js';
import { until } from './poll.js';
import { makeCertificates } from './tls.js';

export interface UpstreamInfo {
  host: string;
  port: number;
  socketDir: string;
  /** PEM of the CA that signed the server certificate (for sslmode=verify-full). */
  ca: string;
  /** Every user's password is `${user}-secret`. */
  users: { scram: string; md5: string; plain: string; trust: string; tlsOnly: string };
  database: string;
}

export const UPSTREAM_USERS = {
  scram: 'hoop_scram',
  md5: 'hoop_md5',
  plain: 'hoop_plain',
  trust: 'hoop_trust',
  tlsOnly: 'hoop_tls',
} as const;

export function passwordOf(user: string): string {
  return `${user}-secret`;
}

export async function startUpstream(): Promise<{ cluster: PostgresCluster; info: UpstreamInfo }> {
  const certs = makeCertificates();
  const u = UPSTREAM_USERS;
  const cluster = await PostgresCluster.start({
    name: 'hoop-test-pg',
    tls: { cert: certs.cert, key: certs.key },
    settings: { max_connections: 200 },
    hba: [
      'local all all trust',
      `hostssl all ${u.tlsOnly} 127.0.0.1/32 scram-sha-256`,
      `host all ${u.tlsOnly} 127.0.0.1/32 reject`,
      `host all ${u.md5} 127.0.0.1/32 md5`,
      `host all ${u.plain} 127.0.0.1/32 password`,
      `host all ${u.trust} 127.0.0.1/32 trust`,
      'host all all 127.0.0.1/32 scram-sha-256',
    ],
  });
  const database = 'hoop_test';
  const roles = [u.scram, u.plain, u.trust, u.tlsOnly]
    .map((r) => `CREATE ROLE ${r} LOGIN SUPERUSER PASSWORD '${passwordOf(r)}';`)
    .join('');
  await cluster.psql(
    `SET password_encryption = 'scram-sha-256'; ${roles}` +
      `SET password_encryption = 'md5'; CREATE ROLE ${u.md5} LOGIN SUPERUSER PASSWORD '${passwordOf(u.md5)}';`,
  );
  await cluster.psql(`CREATE DATABASE ${database} OWNER ${u.scram}`);
  return {
    cluster,
    info: { host: cluster.host, port: cluster.port, socketDir: cluster.socketDir, ca: certs.ca, users: { ...u }, database },
  };
}

/**
 * A fresh database in the shared cluster, owned by the SCRAM user, for the tables of one test
 * file, so that files running in parallel never see each other's DDL. `info` is the shared
 * upstream with `database` pointing at it.
 */
export async function createTestDatabase(upstream: UpstreamInfo, prefix: string): Promise<{ info: UpstreamInfo; drop(): Promise<void> }> {
  const name = `${prefix}_${process.pid}_${Math.floor(Math.random() * 1e6)}`;
  const admin = async (sql: string) => {
    const client = new pg.Client({ host: upstream.host, port: upstream.port, user: upstream.users.trust, database: 'postgres' });
    await client.connect();
    try {
      await client.query(sql);
    } finally {
      await client.end();
    }
  };
  await admin(`CREATE DATABASE ${name} OWNER ${upstream.users.scram}`);
  return { info: { ...upstream, database: name }, drop: () => admin(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`) };
}

/** The cluster to look at: its info (a superuser connection is opened for the call) or a client already connected to it. */
export type ClusterHandle = UpstreamInfo | pg.Client;

async function onCluster<T>(on: ClusterHandle, fn: (client: pg.Client) => Promise<T>): Promise<T> {
  if (on instanceof pg.Client) return fn(on);
  const client = new pg.Client({ host: on.host, port: on.port, user: on.users.trust, database: 'postgres' });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

const RUNNING = `SELECT pid FROM pg_stat_activity WHERE query = $1 AND state = 'active' AND pid <> pg_backend_pid()`;

/** The pids of the backends running `query` (its exact text) right now, as pg_stat_activity shows them. */
export function runningPids(on: ClusterHandle, query: string): Promise<number[]> {
  return onCluster(on, async (c) => (await c.query<{ pid: number }>(RUNNING, [query])).rows.map((r) => r.pid));
}

/**
 * Resolves with its backend's pid once PostgreSQL itself shows `query` (its exact text) running:
 * `active` in pg_stat_activity. The witness that a statement went through the gateway and is
 * executing, e.g. before cancelling it. Test files share the cluster and run in parallel, so give
 * each test's statement a text of its own (an alias will do).
 */
export function untilRunning(on: ClusterHandle, query: string, timeoutMs = 10_000): Promise<number> {
  return onCluster(on, (c) =>
    until(async () => (await c.query<{ pid: number }>(RUNNING, [query])).rows[0]?.pid, { timeoutMs, what: `${query} running upstream` }),
  );
}
