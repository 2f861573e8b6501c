/**
 * HMAC-SHA256 (RFC 2104 over FIPS 180-4) for the hash mask's hot path.
 *
 * Why not `crypto.createHmac`: each call builds a native Hmac object, copies the key and returns
 * a fresh digest Buffer, about 4 µs a value; a result of a million rows with a hashed column spent
 * seconds there. Here the key's inner and outer pad states are computed once per key, and each
 * value costs two or three SHA-256 compressions into preallocated scratch, with no allocation.
 * The compressions run in WebAssembly (sha256-wasm.ts), the padding and byte order here.
 * The tests check it against node:crypto byte for byte.
 */
import { createHash } from 'node:crypto';
import { sha256Compressor, type Sha256Compressor } from './sha256-wasm.js';

const IV = Int32Array.from([0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19]);
const BLOCK = 64;

/** Byte addresses in the compressor's memory: the block and its schedule, the running state, the pads' states, the IV. */
const W_AT = 0, STATE_AT = 256, INNER_AT = 288, OUTER_AT = 320, IV_AT = 352;

export class HmacSha256 {
  private readonly compress: (to: number, from: number) => void;
  /** Views on the compressor's memory (the pads' states are only addressed: INNER_AT, OUTER_AT). */
  /** The running state; after `digestWords`, the digest's eight big-endian words. */
  private readonly state: Int32Array;
  private readonly w: Int32Array;
  /** The last digest; overwritten by the next call. */
  readonly out = new Uint8Array(32);

  /** `compressor`: where the SHA-256 compressions run (tests pass the JavaScript one). */
  constructor(key: Uint8Array, compressor: Sha256Compressor = sha256Compressor()) {
    const { compress, memory } = compressor;
    this.compress = compress;
    this.w = new Int32Array(memory.buffer, W_AT, 64);
    this.state = new Int32Array(memory.buffer, STATE_AT, 8);
    new Int32Array(memory.buffer, IV_AT, 8).set(IV);
    const block = new Uint8Array(BLOCK);
    block.set(key.length > BLOCK ? createHash('sha256').update(key).digest() : key);
    const pad = new Uint8Array(BLOCK);
    for (const [value, at] of [[0x36, INNER_AT], [0x5c, OUTER_AT]] as const) {
      for (let i = 0; i < BLOCK; i++) pad[i] = block[i]! ^ value;
      this.loadWords(pad, 0, BLOCK);
      compress(at, IV_AT);
    }
  }

  /** HMAC of `bytes[start, end)`, written to `this.out` (and returned). */
  digest(bytes: Uint8Array, start = 0, end = bytes.length): Uint8Array {
    const words = this.digestWords(bytes, start, end);
    for (let i = 0; i < 8; i++) writeUint32(this.out, 4 * i, words[i]!);
    return this.out;
  }

  /**
   * HMAC of `bytes[start, end)` as eight big-endian 32-bit words (byte 4i is the top byte of word
   * i), with no byte conversion: the array is overwritten by the next call.
   */
  digestWords(bytes: Uint8Array, start: number, end: number): Int32Array {
    const state = this.state;
    const w = this.w;
    const compress = this.compress;
    let from = INNER_AT; // the first compression starts from the pad's state, the others from the running one
    let offset = start;
    for (; end - offset >= BLOCK; offset += BLOCK) {
      this.loadWords(bytes, offset, end);
      compress(STATE_AT, from);
      from = STATE_AT;
    }
    // The last bytes, 0x80, zeros and the bit count (the pad block's 64 bytes included): one
    // block, or two when fewer than 9 bytes are left in the first.
    const rest = end - offset;
    const bits = (BLOCK + (end - start)) * 8;
    this.loadWords(bytes, offset, end);
    w[rest >> 2] |= 0x80 << (24 - 8 * (rest & 3));
    if (rest + 9 > BLOCK) {
      compress(STATE_AT, from);
      from = STATE_AT;
      w.fill(0, 0, 16);
    }
    w[14] = Math.floor(bits / 0x100000000);
    w[15] = bits | 0;
    compress(STATE_AT, from);
    // The outer hash of the inner digest: 32 bytes, so its padding is fixed.
    for (let i = 0; i < 8; i++) w[i] = state[i]!;
    w[8] = 0x80000000 | 0;
    for (let i = 9; i < 15; i++) w[i] = 0;
    w[15] = (BLOCK + 32) * 8;
    compress(STATE_AT, OUTER_AT);
    return state;
  }

  /** w[0..16) from bytes[offset, offset + 64), bytes at or past `end` read as zero. */
  private loadWords(bytes: Uint8Array, offset: number, end: number): void {
    const w = this.w;
    if (end - offset >= BLOCK) {
      for (let i = 0; i < 16; i++, offset += 4) {
        w[i] = (bytes[offset]! << 24) | (bytes[offset + 1]! << 16) | (bytes[offset + 2]! << 8) | bytes[offset + 3]!;
      }
      return;
    }
    // A short last block (most values): zeros, then its bytes or'ed in one by one.
    w.fill(0, 0, 16);
    for (let i = 0, n = end - offset; i < n; i++) w[i >> 2] |= bytes[offset + i]! << (24 - 8 * (i & 3));
  }
}

function writeUint32(into: Uint8Array, at: number, word: number): void {
  into[at] = word >>> 24;
  into[at + 1] = word >>> 16;
  into[at + 2] = word >>> 8;
  into[at + 3] = word;
}
