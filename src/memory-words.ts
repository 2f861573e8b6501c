/**
 * A buffer's memory read four bytes at a time (the word tricks of the detectors' prefilter, the
 * COPY row split and the hash mask's CMAC): the byte order words are read in, and a view of the
 * words under the last memory asked for. Values and rows are ranges of one received chunk after
 * another, and making a view costs more than scanning a short value; the view keeps that one
 * chunk alive until another is asked for.
 */

/** Whether the first byte of a word in memory is its low byte. */
export const LITTLE_ENDIAN = new Uint8Array(Uint32Array.of(1).buffer)[0] === 1;

let viewedMemory: ArrayBufferLike | null = null;
let memoryWords: Int32Array<ArrayBufferLike> | null = null;

/** The aligned words of `memory`; null for memory over 2 GiB (word offsets stay small integers:
 *  such memory is read byte by byte). */
export function wordsOver(memory: ArrayBufferLike): Int32Array<ArrayBufferLike> | null {
  if (memory !== viewedMemory) {
    viewedMemory = memory;
    memoryWords = memory.byteLength > 0x7ffffff0 ? null : new Int32Array(memory, 0, memory.byteLength >> 2);
  }
  return memoryWords;
}

/** The word x with its first `n` bytes in memory (0 to 3) zeroed. */
export function withoutFirstBytes(x: number, n: number): number {
  return x & (LITTLE_ENDIAN ? -1 << (n << 3) : -1 >>> (n << 3));
}
