/**
 * HMAC-SHA256 (RFC 2104 over FIPS 180-4) for the hash mask's hot path.
 *
 * Why not `crypto.createHmac`: each call builds a native Hmac object, copies the key and returns
 * a fresh digest Buffer, about 4 µs a value; a result of a million rows with a hashed column spent
 * seconds there. Here the key's inner and outer pad states are computed once per key, and each
 * value costs two or three SHA-256 compressions into preallocated scratch, with no allocation.
 * The tests check it against node:crypto byte for byte.
 */
import { createHash } from 'node:crypto';

const K = Int32Array.from([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
]);
const IV = Int32Array.from([0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19]);
const BLOCK = 64;

export class HmacSha256 {
  private readonly innerPadState = new Int32Array(8);
  private readonly outerPadState = new Int32Array(8);
  /** The running state; after `digestWords`, the digest's eight big-endian words. */
  private readonly state = new Int32Array(8);
  private readonly w = new Int32Array(64);
  /** The last digest; overwritten by the next call. */
  readonly out = new Uint8Array(32);

  constructor(key: Uint8Array) {
    const block = new Uint8Array(BLOCK);
    block.set(key.length > BLOCK ? createHash('sha256').update(key).digest() : key);
    const pad = new Uint8Array(BLOCK);
    for (const [value, target] of [[0x36, this.innerPadState], [0x5c, this.outerPadState]] as const) {
      for (let i = 0; i < BLOCK; i++) pad[i] = block[i]! ^ value;
      target.set(IV);
      this.loadWords(pad, 0, BLOCK);
      compress(target, this.w);
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
    state.set(this.innerPadState);
    let offset = start;
    for (; end - offset >= BLOCK; offset += BLOCK) {
      this.loadWords(bytes, offset, end);
      compress(state, w);
    }
    // The last bytes, 0x80, zeros and the bit count (the pad block's 64 bytes included): one
    // block, or two when fewer than 9 bytes are left in the first.
    const rest = end - offset;
    const bits = (BLOCK + (end - start)) * 8;
    this.loadWords(bytes, offset, end);
    w[rest >> 2] |= 0x80 << (24 - 8 * (rest & 3));
    if (rest + 9 > BLOCK) {
      compress(state, w);
      w.fill(0, 0, 16);
    }
    w[14] = Math.floor(bits / 0x100000000);
    w[15] = bits | 0;
    compress(state, w);
    // The outer hash of the inner digest: 32 bytes, so its padding is fixed.
    for (let i = 0; i < 8; i++) w[i] = state[i]!;
    w[8] = 0x80000000 | 0;
    for (let i = 9; i < 15; i++) w[i] = 0;
    w[15] = (BLOCK + 32) * 8;
    state.set(this.outerPadState);
    compress(state, w);
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
    for (let i = 0; i < 16; i++, offset += 4) {
      let word = 0;
      for (let j = 0; j < 4; j++) word |= (offset + j < end ? bytes[offset + j]! : 0) << (24 - 8 * j);
      w[i] = word;
    }
  }
}

function writeUint32(into: Uint8Array, at: number, word: number): void {
  into[at] = word >>> 24;
  into[at + 1] = word >>> 16;
  into[at + 2] = word >>> 8;
  into[at + 3] = word;
}

function compress(h: Int32Array, w: Int32Array): void {
  for (let t = 16; t < 64; t++) {
    const x = w[t - 15]!;
    const y = w[t - 2]!;
    const s0 = ((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3);
    const s1 = ((y >>> 17) | (y << 15)) ^ ((y >>> 19) | (y << 13)) ^ (y >>> 10);
    w[t] = (w[t - 16]! + s0 + w[t - 7]! + s1) | 0;
  }
  let a = h[0]!, b = h[1]!, c = h[2]!, d = h[3]!, e = h[4]!, f = h[5]!, g = h[6]!, k = h[7]!;
  for (let t = 0; t < 64; t++) {
    const S1 = ((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7));
    const t1 = (k + S1 + ((e & f) ^ (~e & g)) + K[t]! + w[t]!) | 0;
    const S0 = ((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10));
    const t2 = (S0 + ((a & b) ^ (a & c) ^ (b & c))) | 0;
    k = g; g = f; f = e; e = (d + t1) | 0; d = c; c = b; b = a; a = (t1 + t2) | 0;
  }
  h[0] = (h[0]! + a) | 0; h[1] = (h[1]! + b) | 0; h[2] = (h[2]! + c) | 0; h[3] = (h[3]! + d) | 0;
  h[4] = (h[4]! + e) | 0; h[5] = (h[5]! + f) | 0; h[6] = (h[6]! + g) | 0; h[7] = (h[7]! + k) | 0;
}
