/**
 * The hash mask's token as docs/masking.md specifies it, computed the slow, obvious way with
 * node:crypto (AES-256-CBC for CMAC's chain, one cipher per value), so the gateway's batched
 * implementation (src/policy/masking/token-mac.ts, hash-mask.ts) is checked against something
 * that is not itself. token-mac.test.ts checks this CMAC against the openssl command.
 */
import { createCipheriv, hkdfSync } from 'node:crypto';

export function tokenKeys(key: Buffer): { mac: Buffer; stream: Buffer } {
  const keys = Buffer.from(hkdfSync('sha256', key, Buffer.alloc(0), 'hoop hash mask v2', 64));
  return { mac: keys.subarray(0, 32), stream: keys.subarray(32) };
}

function aes(key: Buffer, block: Buffer): Buffer {
  const c = createCipheriv('aes-256-ecb', key, null);
  c.setAutoPadding(false);
  return c.update(block);
}

function double(block: Buffer): Buffer {
  const out = Buffer.alloc(16);
  const n = (BigInt(`0x${block.toString('hex')}`) << 1n) & ((1n << 128n) - 1n);
  Buffer.from(n.toString(16).padStart(32, '0'), 'hex').copy(out);
  if (block[0]! & 0x80) out[15]! ^= 0x87;
  return out;
}

/** AES-256-CMAC (NIST SP 800-38B). */
export function cmac(key: Buffer, message: Buffer): Buffer {
  const k1 = double(aes(key, Buffer.alloc(16)));
  const k2 = double(k1);
  const blocks = Math.max(1, Math.ceil(message.length / 16));
  const whole = message.length > 0 && message.length % 16 === 0;
  const padded = Buffer.alloc(blocks * 16);
  message.copy(padded);
  if (!whole) padded[message.length] = 0x80;
  const last = padded.subarray((blocks - 1) * 16);
  const k = whole ? k1 : k2;
  for (let i = 0; i < 16; i++) last[i]! ^= k[i]!;
  const cbc = createCipheriv('aes-256-cbc', key, Buffer.alloc(16));
  cbc.setAutoPadding(false);
  const out = cbc.update(padded);
  return out.subarray(out.length - 16);
}

/** The value's keyed stream: T = CMAC, then AES(K_stream, T xor j) for j = 1, 2, ... */
export function tokenStream(key: Buffer, value: Buffer, blocks: number): Buffer {
  const { mac, stream } = tokenKeys(key);
  const t = cmac(mac, value);
  const out = [t];
  for (let j = 1; j < blocks; j++) {
    const input = Buffer.from(t);
    input.writeUInt32BE((input.readUInt32BE(12) ^ j) >>> 0, 12);
    out.push(aes(stream, input));
  }
  return Buffer.concat(out);
}

/** Draws: 16-bit big-endian words of the stream, as many as asked for. */
function draws(key: Buffer, value: Buffer, count: number): number[] {
  const s = tokenStream(key, value, Math.max(1, Math.ceil(count / 8)));
  return Array.from({ length: count }, (_, k) => s.readUInt16BE(2 * k));
}

/** The text token of an ASCII value (bpchar padding aside). */
export function referenceToken(key: Buffer, value: string): string {
  const d = draws(key, Buffer.from(value, 'latin1'), value.replace(/[^0-9A-Za-z]/g, '').length);
  let k = 0;
  return value.replace(/[0-9a-zA-Z]/g, (char) => {
    if (/[0-9]/.test(char)) return String.fromCharCode(0x30 + (d[k++]! % 10));
    if (/[a-z]/.test(char)) return String.fromCharCode(0x61 + (d[k++]! % 26));
    return String.fromCharCode(0x41 + (d[k++]! % 26));
  });
}

/** The integer token of a canonical decimal text, for an integer of `width` bytes. */
export function referenceIntegerToken(key: Buffer, decimal: string, width: 2 | 4 | 8): bigint {
  const digits = { 2: 5, 4: 10, 8: 19 }[width];
  const d = draws(key, Buffer.from(decimal, 'latin1'), digits - 1);
  return BigInt(`1${d.map((x) => x % 10).join('')}`);
}
