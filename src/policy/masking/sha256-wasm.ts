/**
 * The SHA-256 compression function (FIPS 180-4, 6.2.2) as a small WebAssembly module that this
 * file writes itself, byte by byte, when it is loaded: no toolchain, no download, no binary in
 * the repository. Why: the hash mask runs it twice per value, and in WebAssembly its 64 rounds
 * are straight-line code over locals (unrolled here, the eight working variables renamed round
 * by round instead of moved), with native rotates and no typed-array bounds checks; the same
 * function in JavaScript costs about twice as much.
 *
 * The module has one page of memory and one function `c(to, from)`: it compresses the block in
 * words 0..15 of memory (words 16..63 are its message schedule) onto the eight-word state at
 * byte address `from` and writes the result at `to` (which may equal `from`). Words are the
 * platform's i32s, written and read by JavaScript through an Int32Array on the same memory, so
 * byte order never enters. Where WebAssembly is missing (`node --jitless`), the same contract runs
 * in JavaScript. hmac.ts is its one user; its tests compare both with node:crypto.
 */

const K = [
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
];

// Opcodes (WebAssembly core spec, 5.4).
const LOCAL_GET = 0x20, LOCAL_SET = 0x21, LOCAL_TEE = 0x22;
const I32_LOAD = 0x28, I32_STORE = 0x36, I32_CONST = 0x41;
const I32_ADD = 0x6a, I32_AND = 0x71, I32_OR = 0x72, I32_XOR = 0x73, I32_SHR_U = 0x76, I32_ROTR = 0x78;
const END = 0x0b;

function uleb(n: number): number[] {
  const out: number[] = [];
  do {
    let byte = n & 0x7f;
    n >>>= 7;
    if (n !== 0) byte |= 0x80;
    out.push(byte);
  } while (n !== 0);
  return out;
}

function sleb(n: number): number[] {
  n |= 0;
  const out: number[] = [];
  for (;;) {
    const byte = n & 0x7f;
    n >>= 7;
    if ((n === 0 && (byte & 0x40) === 0) || (n === -1 && (byte & 0x40) !== 0)) {
      out.push(byte);
      return out;
    }
    out.push(byte | 0x80);
  }
}

/** The function body: params 0 (to) and 1 (from); locals 2..9 the working variables, 10 and 11 temporaries. */
function body(): number[] {
  const code: number[] = [];
  const get = (i: number) => code.push(LOCAL_GET, i);
  const set = (i: number) => code.push(LOCAL_SET, i);
  const c32 = (n: number) => code.push(I32_CONST, ...sleb(n));
  const load = (offset: number) => code.push(I32_LOAD, 2, ...uleb(offset)); // the address is on the stack
  const word = (t: number) => { c32(0); load(4 * t); };
  const op = (o: number) => code.push(o);
  const TO = 0, FROM = 1, T1 = 10, X = 11;

  // The message schedule: W[t] = σ1(W[t-2]) + W[t-7] + σ0(W[t-15]) + W[t-16].
  for (let t = 16; t < 64; t++) {
    c32(0); // the store's address
    word(t - 2); code.push(LOCAL_TEE, X);
    c32(17); op(I32_ROTR); get(X); c32(19); op(I32_ROTR); op(I32_XOR); get(X); c32(10); op(I32_SHR_U); op(I32_XOR);
    word(t - 7); op(I32_ADD);
    word(t - 15); code.push(LOCAL_TEE, X);
    c32(7); op(I32_ROTR); get(X); c32(18); op(I32_ROTR); op(I32_XOR); get(X); c32(3); op(I32_SHR_U); op(I32_XOR); op(I32_ADD);
    word(t - 16); op(I32_ADD);
    code.push(I32_STORE, 2, ...uleb(4 * t));
  }
  // a..h from the state at `from`.
  for (let i = 0; i < 8; i++) { get(FROM); load(4 * i); set(2 + i); }
  // v[0..7] name the locals holding a..h this round.
  let v = [2, 3, 4, 5, 6, 7, 8, 9];
  for (let t = 0; t < 64; t++) {
    const [a, b, c, d, e, f, g, h] = v as [number, number, number, number, number, number, number, number];
    // T1 = h + Σ1(e) + Ch(e, f, g) + K[t] + W[t]
    get(h);
    get(e); c32(6); op(I32_ROTR); get(e); c32(11); op(I32_ROTR); op(I32_XOR); get(e); c32(25); op(I32_ROTR); op(I32_XOR); op(I32_ADD);
    get(g); get(e); get(f); get(g); op(I32_XOR); op(I32_AND); op(I32_XOR); op(I32_ADD);
    c32(K[t]!); op(I32_ADD);
    word(t); op(I32_ADD);
    set(T1);
    // d + T1 is the next e (into d's local); T1 + Σ0(a) + Maj(a, b, c) the next a (into h's local).
    get(d); get(T1); op(I32_ADD); set(d);
    get(T1);
    get(a); c32(2); op(I32_ROTR); get(a); c32(13); op(I32_ROTR); op(I32_XOR); get(a); c32(22); op(I32_ROTR); op(I32_XOR); op(I32_ADD);
    get(a); get(b); op(I32_AND); get(c); get(a); get(b); op(I32_OR); op(I32_AND); op(I32_OR); op(I32_ADD);
    set(h);
    v = [h, a, b, c, d, e, f, g];
  }
  // to[i] = from[i] + v[i]
  for (let i = 0; i < 8; i++) {
    get(TO);
    get(FROM); load(4 * i); get(v[i]!); op(I32_ADD);
    code.push(I32_STORE, 2, ...uleb(4 * i));
  }
  code.push(END);
  // One local declaration: 10 i32s (locals 2..11).
  return [1, 10, 0x7f, ...code];
}

function section(id: number, content: number[]): number[] {
  return [id, ...uleb(content.length), ...content];
}

function moduleBytes(): Uint8Array {
  const fn = body();
  const name = (s: string) => [...uleb(s.length), ...Array.from(s, (ch) => ch.charCodeAt(0))];
  return Uint8Array.from([
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
    ...section(1, [1, 0x60, 2, 0x7f, 0x7f, 0]), // type 0: (i32, i32) -> ()
    ...section(3, [1, 0]), // function 0 has type 0
    ...section(5, [1, 0x00, 1]), // one memory, at least one page
    ...section(7, [2, ...name('c'), 0x00, 0, ...name('m'), 0x02, 0]), // exports: c (function 0), m (memory 0)
    ...section(10, [1, ...uleb(fn.length), ...fn]),
  ]);
}

/** The little of the WebAssembly JS API used here (the project's lib settings do not declare it; Node 20 has it built in). */
interface WasmMemory { readonly buffer: ArrayBuffer }
interface WasmApi {
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object, imports: object) => { exports: Record<string, unknown> };
}
/** Absent under `node --jitless`: then the same function in JavaScript (jsSha256Compressor) runs. */
const wasm = (globalThis as unknown as { WebAssembly?: WasmApi }).WebAssembly;

let compiled: object | null = null;

export interface Sha256Compressor {
  /** compress(to, from): byte addresses of eight-word states in `memory`. */
  compress: (to: number, from: number) => void;
  memory: WasmMemory;
}

/** A compressor with memory of its own (compiled once per process, instantiated per caller). */
export function sha256Compressor(): Sha256Compressor {
  if (!wasm) return jsSha256Compressor();
  compiled ??= new wasm.Module(moduleBytes());
  const exports = new wasm.Instance(compiled, {}).exports as { c: (to: number, from: number) => void; m: WasmMemory };
  return { compress: exports.c, memory: exports.m };
}

/** The same contract in JavaScript over an ArrayBuffer of one page (where WebAssembly is missing; tests). */
export function jsSha256Compressor(): Sha256Compressor {
  const memory = { buffer: new ArrayBuffer(65536) };
  const m = new Int32Array(memory.buffer);
  const k = Int32Array.from(K);
  const compress = (to: number, from: number): void => {
    const t0 = to >> 2, f0 = from >> 2;
    for (let t = 16; t < 64; t++) {
      const x = m[t - 15]!, y = m[t - 2]!;
      const s0 = ((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3);
      const s1 = ((y >>> 17) | (y << 15)) ^ ((y >>> 19) | (y << 13)) ^ (y >>> 10);
      m[t] = (m[t - 16]! + s0 + m[t - 7]! + s1) | 0;
    }
    let a = m[f0]!, b = m[f0 + 1]!, c = m[f0 + 2]!, d = m[f0 + 3]!, e = m[f0 + 4]!, f = m[f0 + 5]!, g = m[f0 + 6]!, h = m[f0 + 7]!;
    for (let t = 0; t < 64; t++) {
      const S1 = ((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7));
      const t1 = (h + S1 + ((e & f) ^ (~e & g)) + k[t]! + m[t]!) | 0;
      const S0 = ((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10));
      const t2 = (S0 + ((a & b) ^ (a & c) ^ (b & c))) | 0;
      h = g; g = f; f = e; e = (d + t1) | 0; d = c; c = b; b = a; a = (t1 + t2) | 0;
    }
    const v = [a, b, c, d, e, f, g, h];
    for (let i = 0; i < 8; i++) m[t0 + i] = (m[f0 + i]! + v[i]!) | 0;
  };
  return { compress, memory };
}
