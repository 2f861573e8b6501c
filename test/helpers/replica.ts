/**
 * A real gateway replica: `node bin/hoop.js gateway --config FILE` (the built CLI; needs
 * `npm run build`), its logs collected, its URL read from the "gateway listening" line. Replicas
 * of one deployment share one config file (and so the store, the keys and the signing key).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { apiKeyHash } from '../../src/identity/api-keys.js';
import { BIN, childEnv } from '../cli/helpers.js';
import { until } from './poll.js';
import { passwordOf, type UpstreamInfo } from './postgres.js';

export interface Replica {
  url: string;
  child: ChildProcess;
  logs(): string;
  exited: Promise<number | null>;
  /** SIGTERM, then waits for the exit (the gateway signs its last checkpoint on the way out). */
  stop(): Promise<number | null>;
}

export async function startReplica(config: string, name: string, env: Record<string, string>): Promise<Replica> {
  const child = spawn(process.execPath, [BIN, 'gateway', '--config', config], { env: childEnv(env), stdio: ['ignore', 'pipe', 'pipe'] });
  let logs = '';
  child.stderr!.on('data', (d: Buffer) => (logs += d.toString()));
  child.stdout!.on('data', (d: Buffer) => (logs += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
  const stop = () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    return exited;
  };
  try {
    const line = await until(() => logs.split('\n').find((l) => l.includes('"msg":"gateway listening"')), { timeoutMs: 30_000, what: () => `replica ${name} listening (logs: ${logs})` });
    return { url: (JSON.parse(line) as { url: string }).url, child, logs: () => logs, exited, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** The hoop.yaml replicas of one deployment share: loopback on free ports, a PostgreSQL store, API keys, then `body` (connections, roles, …). */
export function replicaConfig(o: { store: string; keys: { name: string; key: string; groups: string[] }[]; body: string[]; signingKey: string; audit?: string; workers?: number }): string {
  return [
    'listen: 127.0.0.1:0',
    `store: ${o.store}`,
    // One process per replica unless a test is about workers (workers.test.ts): the default is one per core.
    `workers: ${o.workers ?? 1}`,
    'identity:',
    '  api_keys:',
    ...o.keys.map((k) => `    - {name: ${k.name}, sha256: ${apiKeyHash(k.key)}, groups: [${k.groups.join(', ')}]}`),
    ...o.body,
    `audit: {signing_key: ${o.signingKey}${o.audit ? `, ${o.audit}` : ''}}`,
    '',
  ].join('\n');
}

/** Replica A, then B, of one config: A creates the store's schema and the signing key, B finds both. Both are pushed to `started` as they come up, for cleanup. */
export async function startReplicaPair(config: string, env: Record<string, string>, started: Replica[]): Promise<[Replica, Replica]> {
  const a = await startReplica(config, 'A', env);
  started.push(a);
  const b = await startReplica(config, 'B', env);
  started.push(b);
  return [a, b];
}

/** The `connections:` entry `bank` for `upstream` (its SCRAM user, no TLS), as hoop.yaml lines; `more` lines go inside it. */
export function bankConnectionLines(u: UpstreamInfo, access: string[], more: string[] = []): string[] {
  return [
    'connections:',
    '  - name: bank',
    '    type: postgres',
    `    upstream: {host: ${u.host}, port: ${u.port}, database: ${u.database}, user: ${u.users.scram}, password: "${passwordOf(u.users.scram)}", sslmode: disable}`,
    `    access: [${access.join(', ')}]`,
    ...more,
  ];
}
