/**
 * The POSIX ustar archive format (POSIX.1-1988, pax's "ustar" interchange format), as a bundle
 * uses it: regular files only, names under 100 bytes (no prefix field), mode 0644, uid/gid 0,
 * one mtime. Each entry is a 512-byte header, the data, and zero padding to a 512-byte block;
 * the archive ends with two zero blocks.
 */

export const BLOCK = 512;

/** An octal field of `width` bytes: digits, zero-padded, NUL-terminated. */
function octal(value: number, width: number): string {
  const digits = value.toString(8);
  if (digits.length > width - 1) throw new RangeError(`tar: ${value} does not fit a ${width}-byte field`);
  return `${digits.padStart(width - 1, '0')}\0`;
}

/** The largest entry ustar's 12-byte size field holds: 8 GiB - 1. */
export const MAX_ENTRY_SIZE = 8 ** 11 - 1;

export function ustarHeader(name: string, size: number, mtimeSeconds: number): Buffer {
  const nameBytes = Buffer.from(name, 'utf8');
  if (nameBytes.length === 0 || nameBytes.length >= 100) throw new RangeError(`tar: name must be 1 to 99 bytes: ${JSON.stringify(name)}`);
  if (name.startsWith('/') || name.split('/').includes('..')) throw new RangeError(`tar: not a relative name: ${JSON.stringify(name)}`);
  if (!Number.isSafeInteger(size) || size < 0 || size > MAX_ENTRY_SIZE) throw new RangeError(`tar: entry ${name} is too large for ustar (${size} bytes)`);
  const h = Buffer.alloc(BLOCK, 0);
  nameBytes.copy(h, 0);
  h.write(octal(0o644, 8), 100, 'ascii'); // mode
  h.write(octal(0, 8), 108, 'ascii'); // uid
  h.write(octal(0, 8), 116, 'ascii'); // gid
  h.write(octal(size, 12), 124, 'ascii');
  h.write(octal(Math.max(0, Math.floor(mtimeSeconds)), 12), 136, 'ascii');
  h.write('        ', 148, 'ascii'); // checksum field counts as spaces while summing
  h.write('0', 156, 'ascii'); // typeflag: regular file
  h.write('ustar\0', 257, 'ascii'); // magic
  h.write('00', 263, 'ascii'); // version
  let sum = 0;
  for (const b of h) sum += b;
  h.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'ascii');
  return h;
}

/** Zero bytes that complete an entry of `size` bytes to a whole block. */
export function tarPadding(size: number): Buffer {
  const rest = size % BLOCK;
  return Buffer.alloc(rest === 0 ? 0 : BLOCK - rest, 0);
}

/** The end-of-archive marker: two zero blocks. */
export function tarEnd(): Buffer {
  return Buffer.alloc(2 * BLOCK, 0);
}
