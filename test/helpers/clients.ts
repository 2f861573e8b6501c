/** Runs the real PostgreSQL client programs (psql, pgbench, pg_dump) against a URI. */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { connect } from 'node:net';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);

export interface ClientResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Environment for client programs: no inherited PG* settings, no ~/.psqlrc, no pager. */
export function clientEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('PG')) env[k] = v;
  return { ...env, PSQLRC: '/dev/null', PAGER: 'cat', PGCONNECT_TIMEOUT: '10', ...extra };
}

export async function runClient(program: string, args: string[], options: { input?: string; env?: Record<string, string>; timeoutMs?: number } = {}): Promise<ClientResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(program, args, { env: clientEnv(options.env), stdio: ['pipe', 'pipe', 'pipe'] });
    collect(child, options.timeoutMs ?? 60_000).then(resolve, reject);
    child.stdin!.end(options.input ?? '');
  });
}

export function collect(child: ChildProcess, timeoutMs: number): Promise<ClientResult> {
  let stdout = '';
  let stderr = '';
  child.stdout?.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr?.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${child.spawnfile} timed out after ${timeoutMs} ms\nstdout: ${stdout}\nstderr: ${stderr}`));
    }, timeoutMs);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? -1, stdout, stderr });
    });
  });
}

/** psql with ON_ERROR_STOP unless told otherwise; unaligned, tuples-only output. */
export function psql(uri: string, args: string[], options: { input?: string; onErrorStop?: boolean } = {}): Promise<ClientResult> {
  const stop = options.onErrorStop === false ? [] : ['-v', 'ON_ERROR_STOP=1'];
  return runClient('psql', ['-X', '-w', '-At', ...stop, '-d', uri, ...args], { input: options.input });
}

export async function execOk(program: string, args: string[], env: Record<string, string> = {}): Promise<string> {
  const { stdout } = await execFileAsync(program, args, { env: clientEnv(env), maxBuffer: 256 * 1024 * 1024 });
  return stdout;
}

/** Resolves true when something accepts TCP connections on 127.0.0.1:port. */
export function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}
