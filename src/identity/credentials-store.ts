/**
 * Where `hoop login` keeps tokens, one entry per gateway URL (gh `internal/keyring` and
 * `internal/config`): the OS keychain (service `hoop`, account = gateway URL) reached with a
 * timeout, else a 0600 file `$XDG_CONFIG_HOME/hoop/credentials.json` in a 0700 directory.
 *
 * - A keychain that does not answer within the timeout is abandoned: the call runs in a child
 *   process that is killed, so it can never hang the CLI.
 * - Every file write is atomic (temporary file, fsync, rename): a crash or Ctrl-C leaves the old
 *   file or the new one, never half of one.
 * - `HOOP_KEYRING=file` forces the file (headless machines, tests); `HOOP_KEYRING=keychain`
 *   makes a keychain failure an error instead of a fallback.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, closeSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { existsSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { HoopError } from '../errors.js';

type Env = Readonly<Record<string, string | undefined>>;

/** What is kept for one gateway. Tokens are secrets: never print or log this object. */
export interface StoredCredentials {
  gateway: string;
  issuer: string;
  client_id: string;
  /** `device` (hoop login) or `client_credentials` (hoop login --client-credentials). */
  grant: 'device' | 'client_credentials';
  access_token: string;
  refresh_token: string | null;
  /** RFC 3339; null when the provider did not say. */
  expires_at: string | null;
  subject: string;
  email: string | null;
  groups: string[];
  saved_at: string;
}

/** Where one gateway's credentials are: 'keychain' or the file's path. */
export type Location = 'keychain' | string;

/** The keychain as the store sees it; the real one runs in a child process. */
export interface KeyringBackend {
  /** `signal` aborts when the store gives up waiting: the backend should stop what it can. */
  get(account: string, signal?: AbortSignal): Promise<string | null>;
  set(account: string, secret: string, signal?: AbortSignal): Promise<void>;
  delete(account: string, signal?: AbortSignal): Promise<boolean>;
}

export const KEYRING_SERVICE = 'hoop';

export interface CredentialsStoreOptions {
  env?: Env;
  /** null: no keychain at all. Default: the OS keychain through a child process (unless HOOP_KEYRING=file). */
  keyring?: KeyringBackend | null;
  /** How long one keychain call may take; default 3 s (HOOP_KEYRING_TIMEOUT_MS). */
  keyringTimeoutMs?: number;
  /** One-line notices (keychain unavailable, file used); default: stderr. */
  notice?: (line: string) => void;
}

export function credentialsDir(env: Env = process.env): string {
  const xdg = env['XDG_CONFIG_HOME'];
  const home = env['HOME'] || homedir();
  return join(xdg && xdg.startsWith('/') ? xdg : join(home, '.config'), 'hoop');
}

interface CredentialsFile {
  version: 1;
  gateways: Record<string, StoredCredentials>;
}

export class CredentialsStore {
  readonly file: string;
  readonly #keyring: KeyringBackend | null;
  readonly #strictKeyring: boolean;
  readonly #timeoutMs: number;
  readonly #notice: (line: string) => void;
  #noticed = false;
  #keyringDown = false;

  constructor(options: CredentialsStoreOptions = {}) {
    const env = options.env ?? process.env;
    this.file = join(credentialsDir(env), 'credentials.json');
    const mode = (env['HOOP_KEYRING'] ?? '').toLowerCase();
    this.#strictKeyring = mode === 'keychain';
    if (mode === 'file' || mode === 'none' || mode === 'off') this.#keyring = null;
    else if (options.keyring !== undefined) this.#keyring = options.keyring;
    else this.#keyring = osKeyringAvailable(env) || this.#strictKeyring ? new ChildProcessKeyring() : null;
    const fromEnv = Number(env['HOOP_KEYRING_TIMEOUT_MS']);
    this.#timeoutMs = options.keyringTimeoutMs ?? (Number.isFinite(fromEnv) && fromEnv > 0 ? fromEnv : 3_000);
    this.#notice = options.notice ?? ((line) => process.stderr.write(`${line}\n`));
  }

  /** The stored credentials for `gateway` and where they were found, or null. */
  async load(gateway: string): Promise<{ credentials: StoredCredentials; where: Location } | null> {
    if (this.#keyring) {
      const secret = await this.#keychain((k, signal) => k.get(gateway, signal), null);
      if (secret) {
        const credentials = parseCredentials(secret);
        if (credentials) return { credentials, where: 'keychain' };
      }
    }
    const fromFile = this.#readFile().gateways[gateway];
    return fromFile ? { credentials: fromFile, where: this.file } : null;
  }

  /** Stores credentials for their gateway: keychain first, file where the keychain fails. */
  async save(credentials: StoredCredentials): Promise<Location> {
    const gateway = credentials.gateway;
    if (this.#keyring) {
      const stored = await this.#keychain(async (k, signal) => {
        await k.set(gateway, JSON.stringify(credentials), signal);
        return true;
      }, false);
      if (stored) {
        this.#updateFile((f) => delete f.gateways[gateway]); // no stale copy left behind
        return 'keychain';
      }
    }
    this.#updateFile((f) => {
      f.gateways[gateway] = credentials;
    });
    return this.file;
  }

  /** Forgets the gateway's credentials everywhere. Returns whether anything was stored. */
  async delete(gateway: string): Promise<boolean> {
    let deleted = false;
    if (this.#keyring) deleted = await this.#keychain((k, signal) => k.delete(gateway, signal), false);
    let inFile = false;
    this.#updateFile((f) => {
      inFile = gateway in f.gateways;
      delete f.gateways[gateway];
    }, true);
    return deleted || inFile;
  }

  /**
   * Runs `fn` holding an exclusive lock on the credentials (a lock file beside them), so that two
   * hoop processes refreshing at once do not both spend a rotating refresh token.
   */
  async withLock<T>(fn: () => Promise<T>, waitMs = 10_000): Promise<T> {
    ensureDir(dirname(this.file));
    const lock = `${this.file}.lock`;
    const deadline = Date.now() + waitMs;
    for (;;) {
      try {
        closeSync(openSync(lock, 'wx', 0o600));
        break;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw storeError(`cannot lock ${lock}`, err);
        if (isStale(lock, 30_000)) {
          safeUnlink(lock);
          continue;
        }
        if (Date.now() > deadline) {
          throw new HoopError('HOOP_INTERNAL', `credentials are locked by another hoop process (${lock})`, {
            hint: 'Wait for it to finish, or delete the lock file if no hoop process is running.',
          });
        }
        await new Promise((r) => setTimeout(r, 50));
      }
    }
    try {
      return await fn();
    } finally {
      safeUnlink(lock);
    }
  }

  async #keychain<T>(op: (k: KeyringBackend, signal: AbortSignal) => Promise<T>, fallback: T): Promise<T> {
    const keyring = this.#keyring!;
    if (this.#keyringDown) return fallback; // it failed once in this process: do not wait again
    const abandon = new AbortController();
    let timer: NodeJS.Timeout | undefined;
    try {
      return await Promise.race([
        op(keyring, abandon.signal),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => {
            abandon.abort();
            reject(new Error(`no answer within ${this.#timeoutMs} ms`));
          }, this.#timeoutMs);
        }),
      ]);
    } catch (err) {
      const reason = err instanceof Error ? err.message : String(err);
      if (this.#strictKeyring) {
        throw new HoopError('HOOP_INTERNAL', `the OS keychain failed: ${reason}`, { hint: 'Unset HOOP_KEYRING to fall back to a file.' });
      }
      this.#keyringDown = true;
      if (!this.#noticed) {
        this.#noticed = true;
        this.#notice(`Notice: OS keychain unavailable (${oneLine(reason)}); using ${this.file} (mode 0600).`);
      }
      return fallback;
    } finally {
      clearTimeout(timer);
    }
  }

  #readFile(): CredentialsFile {
    let text: string;
    try {
      text = readFileSync(this.file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { version: 1, gateways: {} };
      throw storeError(`cannot read ${this.file}`, err);
    }
    try {
      const parsed = JSON.parse(text) as Partial<CredentialsFile>;
      const gateways: Record<string, StoredCredentials> = {};
      for (const [url, value] of Object.entries(parsed.gateways ?? {})) {
        const c = parseCredentials(JSON.stringify(value));
        if (c) gateways[url] = c;
      }
      return { version: 1, gateways };
    } catch {
      throw new HoopError('HOOP_INTERNAL', `${this.file} is not valid JSON`, { hint: 'Delete it and run `hoop login` again.' });
    }
  }

  #updateFile(change: (file: CredentialsFile) => void, onlyIfExists = false): void {
    if (onlyIfExists && !existsSync(this.file)) return;
    const current = this.#readFile();
    change(current);
    if (Object.keys(current.gateways).length === 0 && existsSync(this.file)) {
      safeUnlink(this.file);
      return;
    }
    if (Object.keys(current.gateways).length === 0) return;
    writeFileAtomic(this.file, `${JSON.stringify(current, null, 2)}\n`);
  }
}

/** Writes `content` to `path` via a 0600 temporary file in the same directory, fsync and rename. */
export function writeFileAtomic(path: string, content: string): void {
  ensureDir(dirname(path));
  const tmp = `${path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  let fd: number | undefined;
  try {
    fd = openSync(tmp, 'wx', 0o600);
    writeSync(fd, content);
    fsyncSync(fd);
    closeSync(fd);
    fd = undefined;
    renameSync(tmp, path);
  } catch (err) {
    if (fd !== undefined) closeSync(fd);
    safeUnlink(tmp);
    throw storeError(`cannot write ${path}`, err);
  }
}

/** The credentials directory, private to this user even if it existed with looser permissions. */
function ensureDir(dir: string): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const st = statSync(dir);
  if ((st.mode & 0o077) !== 0 && st.uid === process.getuid?.()) chmodSync(dir, 0o700);
}

function isStale(path: string, ageMs: number): boolean {
  try {
    return Date.now() - statSync(path).mtimeMs > ageMs;
  } catch {
    return false;
  }
}

function safeUnlink(path: string): void {
  try {
    unlinkSync(path);
  } catch {
    // already gone
  }
}

function storeError(message: string, cause: unknown): HoopError {
  const reason = (cause as NodeJS.ErrnoException)?.code ?? (cause instanceof Error ? cause.message : '');
  return new HoopError('HOOP_INTERNAL', `${message}${reason ? ` (${reason})` : ''}`, { cause });
}

function oneLine(text: string): string {
  return text.replace(/\s+/g, ' ').slice(0, 160);
}

function parseCredentials(text: string): StoredCredentials | null {
  try {
    const c = JSON.parse(text) as Partial<StoredCredentials>;
    if (typeof c.gateway !== 'string' || typeof c.access_token !== 'string' || typeof c.issuer !== 'string') return null;
    return {
      gateway: c.gateway,
      issuer: c.issuer,
      client_id: typeof c.client_id === 'string' ? c.client_id : '',
      grant: c.grant === 'client_credentials' ? 'client_credentials' : 'device',
      access_token: c.access_token,
      refresh_token: typeof c.refresh_token === 'string' ? c.refresh_token : null,
      expires_at: typeof c.expires_at === 'string' ? c.expires_at : null,
      subject: typeof c.subject === 'string' ? c.subject : '',
      email: typeof c.email === 'string' ? c.email : null,
      groups: Array.isArray(c.groups) ? c.groups.filter((g): g is string => typeof g === 'string') : [],
      saved_at: typeof c.saved_at === 'string' ? c.saved_at : '',
    };
  } catch {
    return null;
  }
}

/**
 * Whether an OS keychain can be expected: macOS and Windows always; Linux only with a D-Bus
 * session (the Secret Service lives there), so headless servers go straight to the file.
 */
export function osKeyringAvailable(env: Env): boolean {
  if (process.platform === 'darwin' || process.platform === 'win32') return true;
  return Boolean(env['DBUS_SESSION_BUS_ADDRESS']);
}

/** The OS keychain, one child process per call, killed when the store gives up on it. */
export class ChildProcessKeyring implements KeyringBackend {
  constructor(
    private readonly script: string = fileURLToPath(new URL('./keyring-child.js', import.meta.url)),
    private readonly service: string = KEYRING_SERVICE,
  ) {}

  async get(account: string, signal?: AbortSignal): Promise<string | null> {
    const value = await this.#call({ op: 'get', account }, signal);
    return typeof value === 'string' ? value : null;
  }

  async set(account: string, secret: string, signal?: AbortSignal): Promise<void> {
    await this.#call({ op: 'set', account, secret }, signal);
  }

  async delete(account: string, signal?: AbortSignal): Promise<boolean> {
    return (await this.#call({ op: 'delete', account }, signal)) === true;
  }

  #call(request: { op: string; account: string; secret?: string }, signal?: AbortSignal): Promise<unknown> {
    return new Promise((resolve, reject) => {
      const child = spawn(process.execPath, [this.script], { stdio: ['pipe', 'pipe', 'ignore'], windowsHide: true });
      // Abandoned (the store stopped waiting): kill it, so a hung keychain never outlives the CLI.
      signal?.addEventListener('abort', () => child.kill('SIGKILL'), { once: true });
      let out = '';
      child.stdout.setEncoding('utf8');
      child.stdout.on('data', (chunk: string) => {
        out += chunk;
      });
      child.on('error', reject);
      child.on('close', () => {
        try {
          const answer = JSON.parse(out) as { ok: boolean; value?: unknown; error?: string };
          if (answer.ok) resolve(answer.value);
          else reject(new Error(answer.error ?? 'keychain error'));
        } catch {
          reject(new Error('the keychain helper gave no answer'));
        }
      });
      child.stdin.on('error', () => undefined);
      child.stdin.end(JSON.stringify({ ...request, service: this.service }));
    });
  }
}
