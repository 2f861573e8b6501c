/**
 * The gateway's own masking hash key: `masking.key` beside `audit.signing_key`, 32 random bytes,
 * created 0600 (in a 0700 directory) on first start, like the signing key. It keys the `hash`
 * method of every connection whose `masking` block gives no `hash_key`, so tokens stay stable
 * across restarts and replicas that share the file.
 *
 * A file that others may read is refused rather than used: whoever holds the key can build a
 * dictionary of tokens (hash every possible SSN) and unmask them.
 */
import { randomBytes } from 'node:crypto';
import { closeSync, fstatSync, mkdirSync, openSync, readSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { Logger } from 'pino';
import { HoopError, errorMessage } from '../errors.js';

export const MASKING_KEY_FILE = 'masking.key';
const KEY_BYTES = 32;

/** Where the gateway-wide key lives for a given `audit.signing_key` path. */
export function maskingKeyPath(signingKeyPath: string): string {
  return join(dirname(signingKeyPath), MASKING_KEY_FILE);
}

/** Reads the key at `path`, creating it on first start; throws HOOP_CONFIG_INVALID when it cannot be used. */
export function ensureMaskingKey(path: string, logger: Logger): Buffer {
  const created = createIfAbsent(path);
  if (created) {
    logger.info({ path }, 'created masking hash key');
    return created;
  }
  return readKey(path);
}

function createIfAbsent(path: string): Buffer | null {
  const key = randomBytes(KEY_BYTES);
  try {
    mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
    writeFileSync(path, key, { mode: 0o600, flag: 'wx' });
    return key;
  } catch (err) {
    if ((err as { code?: string }).code === 'EEXIST') return null;
    throw new HoopError('HOOP_CONFIG_INVALID', `masking key: cannot create ${path}: ${errorMessage(err)}`, { cause: err });
  }
}

function readKey(path: string): Buffer {
  const fail = (why: string, cause?: unknown) =>
    new HoopError('HOOP_CONFIG_INVALID', `masking key: cannot use ${path}: ${why}`, {
      ...(cause !== undefined ? { cause } : {}),
      hint: 'it must be a regular file of at least 32 bytes, mode 0600 (chmod 600 it), readable by the gateway; a hash_key in the connection\'s masking block takes its place',
    });
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (err) {
    throw fail(errorMessage(err), err);
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw fail('not a regular file');
    if ((st.mode & 0o077) !== 0) throw fail(`its mode ${(st.mode & 0o777).toString(8).padStart(4, '0')} lets others read it; it must be 0600`);
    if (st.size < KEY_BYTES) throw fail(`it holds ${st.size} bytes, fewer than ${KEY_BYTES}`);
    if (st.size > 4096) throw fail('larger than 4 KiB: not a key file');
    const key = Buffer.alloc(st.size);
    let read = 0;
    while (read < st.size) {
      const n = readSync(fd, key, read, st.size - read, read);
      if (n === 0) break;
      read += n;
    }
    if (read < KEY_BYTES) throw fail(`it holds ${read} bytes, fewer than ${KEY_BYTES}`);
    return key.subarray(0, read);
  } finally {
    closeSync(fd);
  }
}
