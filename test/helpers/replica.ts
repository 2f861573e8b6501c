/**
 * A real gateway replica: `node bin/hoop.js gateway --config FILE` (the built CLI; needs
 * `npm run build`), its logs collected, its URL read from the "gateway listening" line. Replicas
 * of one deployment share one config file (and so the store, the keys and the signing key).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { BIN, childEnv } from '../cli/helpers.js';
import { until } from './poll.js';

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
