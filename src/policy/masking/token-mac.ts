/**
 * The keyed pseudorandom stream behind the `hash` mask, computed for many values at once.
 *
 * For a value v: T = AES-256-CMAC(K_mac, v) (NIST SP 800-38B), and when more than one block of
 * stream is wanted, block j >= 1 = AES-256(K_stream, T xor uint128be(j)). K_mac and K_stream are
 * the two halves of HKDF-SHA256(masking.hash_key, info "hoop hash mask v2"). CMAC and AES are
 * both NIST-approved, and AES runs in node:crypto (AES-NI where the CPU has it).
 *
 * Why batches: a call into node:crypto costs about 1 µs whatever it does, and a result of a
 * million rows with a hashed column made a million of them (or, before, ran HMAC-SHA256's two
 * compressions per value in WebAssembly, ~0.5 µs). Here the CBC chains of all pending values
 * advance together, one AES-ECB call per block position (a layer), so a 64 KB chunk of rows costs
 * three or four calls in all. Longer values (more than LAYERED_BLOCKS blocks) are rare; their
 * callers use `tag` and `stretch`, which walk a value of any size in bounded windows.
 */
import { createCipheriv, hkdfSync, type Cipher } from 'node:crypto';
import { LITTLE_ENDIAN } from '../../memory-words.js';

const BLOCK = 16;
/** Values of up to this many blocks advance in layers (`streams`); longer ones go through `tag`. */
export const LAYERED_BLOCKS = 4;
/** How much of a long value one CBC call takes (its output is thrown away but for the last block). */
const CBC_WINDOW = 64 * 1024;
const INFO = 'hoop hash mask v2';

export class TokenMac {
  private readonly ecb: Cipher;
  private readonly streamEcb: Cipher;
  private readonly macKey: Buffer;
  /** CMAC's subkeys as words: K1 for a last block that is whole, K2 for a padded one. */
  private readonly k1: Int32Array;
  private readonly k2: Int32Array;
  /** Layer input and the previous layer's output, as words (both grown on demand). */
  private input = new Int32Array(1024);
  private chain = new Int32Array(1024);
  /** Per value of the batch being computed: its index while chaining, its block count. */
  private active = new Int32Array(64);
  private blocks = new Int32Array(64);

  constructor(key: Uint8Array) {
    const keys = Buffer.from(hkdfSync('sha256', key, Buffer.alloc(0), INFO, 64));
    this.macKey = keys.subarray(0, 32);
    this.ecb = ecbCipher(this.macKey);
    this.streamEcb = ecbCipher(keys.subarray(32));
    const k1 = doubled(this.ecb.update(Buffer.alloc(BLOCK)));
    this.k1 = words(k1);
    this.k2 = words(doubled(k1));
  }

  /**
   * For value i (`messages[at[i], at[i] + length[i])`, i < count), `want[i]` blocks of stream at
   * `out[outAt[i], outAt[i] + 16 * want[i])`: T, then the stretched blocks. Every `at` and `outAt`
   * is a multiple of 16, and each value is already followed in `messages` by CMAC's padding (0x80,
   * then zeros to its last block's end; nothing for a whole last block). `messages` and `out`
   * start at a multiple of 4 in their memory; `out` must have room.
   */
  streams(messages: Uint8Array, at: Int32Array, length: Int32Array, want: Int32Array, outAt: Int32Array, count: number, out: Uint8Array): void {
    const o = new Int32Array(out.buffer, out.byteOffset, out.length >> 2);
    this.tags(messages, at, length, outAt, count, o);
    let extra = 0;
    for (let i = 0; i < count; i++) extra += want[i]! - 1;
    if (extra === 0) return;
    const bytes = this.inputBytes(extra);
    const input = this.input;
    let w = 0;
    for (let i = 0; i < count; i++) {
      const t = outAt[i]! >> 2;
      for (let j = 1; j < want[i]!; j++, w += 4) {
        input[w] = o[t]!; input[w + 1] = o[t + 1]!; input[w + 2] = o[t + 2]!;
        input[w + 3] = o[t + 3]! ^ (LITTLE_ENDIAN ? byteSwapped(j) : j); // T xor uint128be(j)
      }
    }
    const chain = this.chain;
    new Uint8Array(chain.buffer, 0, 4 * w).set(this.streamEcb.update(bytes.subarray(0, 4 * w)));
    w = 0;
    for (let i = 0; i < count; i++) {
      const n = 4 * (want[i]! - 1);
      const t = (outAt[i]! >> 2) + 4;
      for (let q = 0; q < n; q++) o[t + q] = chain[w + q]!;
      w += n;
    }
  }

  /** T of every value, at the words out[outAt[i] / 4, +4). */
  private tags(messages: Uint8Array, at: Int32Array, length: Int32Array, outAt: Int32Array, count: number, o: Int32Array): void {
    const m = new Int32Array(messages.buffer, messages.byteOffset, messages.length >> 2);
    if (this.active.length < count) {
      this.active = new Int32Array(2 * count);
      this.blocks = new Int32Array(2 * count);
    }
    // Values still chaining, in layer order (active[0, n)); the previous layer's output for
    // active[k] is chain[4k, 4k + 4).
    const active = this.active;
    const blocks = this.blocks;
    let n = 0;
    for (let i = 0; i < count; i++) {
      blocks[i] = blocksOf(length[i]!);
      if (blocks[i]! > LAYERED_BLOCKS) throw new RangeError(`TokenMac.streams: a value of ${length[i]} bytes is longer than ${LAYERED_BLOCKS} blocks (use tag)`);
      active[n++] = i;
    }
    for (let layer = 0; n > 0; layer++) {
      const bytes = this.inputBytes(n);
      const input = this.input;
      const chain = this.chain;
      for (let k = 0, w = 0; k < n; k++, w += 4) {
        const i = active[k]!;
        const from = (at[i]! >> 2) + 4 * layer;
        let x0 = m[from]!, x1 = m[from + 1]!, x2 = m[from + 2]!, x3 = m[from + 3]!;
        if (layer > 0) { x0 ^= chain[w]!; x1 ^= chain[w + 1]!; x2 ^= chain[w + 2]!; x3 ^= chain[w + 3]!; }
        if (layer === blocks[i]! - 1) {
          const key = length[i]! > 0 && (length[i]! & 15) === 0 ? this.k1 : this.k2;
          x0 ^= key[0]!; x1 ^= key[1]!; x2 ^= key[2]!; x3 ^= key[3]!;
        }
        input[w] = x0; input[w + 1] = x1; input[w + 2] = x2; input[w + 3] = x3;
      }
      new Uint8Array(chain.buffer, 0, n * BLOCK).set(this.ecb.update(bytes.subarray(0, n * BLOCK)));
      let next = 0;
      for (let k = 0, w = 0; k < n; k++, w += 4) {
        const i = active[k]!;
        if (blocks[i] === layer + 1) {
          const t = outAt[i]! >> 2;
          o[t] = chain[w]!; o[t + 1] = chain[w + 1]!; o[t + 2] = chain[w + 2]!; o[t + 3] = chain[w + 3]!;
        } else {
          const v = 4 * next; // <= w: compacted in place
          chain[v] = chain[w]!; chain[v + 1] = chain[w + 1]!; chain[v + 2] = chain[w + 2]!; chain[v + 3] = chain[w + 3]!;
          active[next++] = i;
        }
      }
      n = next;
    }
  }

  /** The layer input's bytes, with room for `blocks` blocks (the chain grows with it). */
  private inputBytes(blocks: number): Buffer {
    if (this.input.length < 4 * blocks) {
      this.input = new Int32Array(8 * blocks);
      this.chain = new Int32Array(8 * blocks);
    }
    return Buffer.from(this.input.buffer, 0, this.input.length * 4);
  }

  /** T (CMAC) of `value[start, end)` of any length, read in windows: nothing of its size is allocated. */
  tag(value: Uint8Array, start: number, end: number): Buffer {
    const length = end - start;
    const blocks = blocksOf(length);
    const lastAt = start + (blocks - 1) * BLOCK;
    const cbc = createCipheriv('aes-256-cbc', this.macKey, Buffer.alloc(BLOCK));
    cbc.setAutoPadding(false);
    for (let at = start; at < lastAt; at += CBC_WINDOW) cbc.update(value.subarray(at, Math.min(lastAt, at + CBC_WINDOW)));
    const last = Buffer.alloc(BLOCK);
    last.set(value.subarray(lastAt, end));
    if (end - lastAt < BLOCK) last[end - lastAt] = 0x80;
    const key = new Uint8Array((length > 0 && (length & 15) === 0 ? this.k1 : this.k2).buffer);
    for (let b = 0; b < BLOCK; b++) last[b]! ^= key[b]!;
    return cbc.update(last);
  }

  /** Stream blocks first..first+count-1 (first >= 1) of the value whose T is `tag`. */
  stretch(tag: Buffer, first: number, count: number): Buffer {
    const input = Buffer.alloc(count * BLOCK);
    for (let k = 0; k < count; k++) {
      const j = first + k;
      const w = k * BLOCK;
      tag.copy(input, w);
      input[w + 12]! ^= j >>> 24; input[w + 13]! ^= j >>> 16; input[w + 14]! ^= j >>> 8; input[w + 15]! ^= j;
    }
    return this.streamEcb.update(input);
  }
}


function byteSwapped(n: number): number {
  return ((n & 0xff) << 24) | ((n & 0xff00) << 8) | ((n >>> 8) & 0xff00) | (n >>> 24);
}

/** A block's bytes as the platform's words (XOR does not care about their order). */
function words(block: Buffer): Int32Array {
  return new Int32Array(Uint8Array.from(block).buffer);
}

/** CMAC blocks of a message of `length` bytes (an empty one is one padded block). */
function blocksOf(length: number): number {
  return length === 0 ? 1 : Math.ceil(length / BLOCK);
}

function ecbCipher(key: Buffer): Cipher {
  const cipher = createCipheriv('aes-256-ecb', key, null);
  cipher.setAutoPadding(false); // whole blocks only; update() is called forever, final() never
  return cipher;
}

/** A block times x in GF(2^128) (SP 800-38B's subkey step: shift left, xor R_128 = 0x87 on carry). */
function doubled(block: Buffer): Buffer {
  const out = Buffer.alloc(BLOCK);
  for (let i = 0; i < BLOCK; i++) out[i] = ((block[i]! << 1) | (i + 1 < BLOCK ? block[i + 1]! >>> 7 : 0)) & 0xff;
  if (block[0]! & 0x80) out[BLOCK - 1]! ^= 0x87;
  return out;
}
