/**
 * The key files a gateway creates on first start when they are absent: the audit signing key, and
 * the masking key beside it (hash-key.ts). Kept apart from the gateway's composition root so that
 * the primary of `workers: N` makes them before it forks without loading the whole gateway.
 */
import { generateKeyPairSync } from 'node:crypto';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import type { Logger } from 'pino';
import { HoopError, errorMessage } from '../errors.js';
import type { GatewayConfig } from './config.js';
import { ensureMaskingKey, maskingKeyPath } from './hash-key.js';

/**
 * Creates the signing key and the masking key file if absent: the primary of `workers: N` does it
 * before it forks, so that no two workers race to create different ones.
 */
export function prepareKeys(config: GatewayConfig, logger: Logger): void {
  ensureSigningKey(config.audit.signing_key, logger);
  ensureMaskingKey(maskingKeyPath(config.audit.signing_key), logger);
}

/** The Ed25519 key that signs audit checkpoints: created (0600, PKCS#8 PEM) on first start. */
export function ensureSigningKey(path: string, logger: Logger): void {
  if (existsSync(path)) return;
  try {
    mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
    const { privateKey } = generateKeyPairSync('ed25519');
    writeFileSync(path, privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600, flag: 'wx' });
    logger.info({ path }, 'created audit signing key');
  } catch (err) {
    if ((err as { code?: string }).code === 'EEXIST') return;
    throw new HoopError('HOOP_CONFIG_INVALID', `audit.signing_key: cannot create ${path}: ${errorMessage(err)}`, { cause: err });
  }
}
