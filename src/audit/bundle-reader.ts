/**
 * Reading an audit bundle (a gzip-compressed POSIX ustar archive, the format in docs/audit-export.md) as it
 * streams, without trusting it: the archive comes from whoever handed it to the examiner.
 *
 * `UstarReader` is a push parser in the style of the protocol framers: feed it the decompressed
 * bytes in chunks of any size, it reports each entry's header, then its body as slices of the
 * chunks it was given (no copies, nothing buffered but a partial 512-byte header), then the
 * entry's end. It accepts only what a bundle may hold and refuses the rest before any body
 * byte is reported:
 *
 * - regular files only (typeflag '0' or NUL): links, directories, devices, FIFOs, pax extended
 *   headers and GNU long-name headers (which could smuggle a name or a size of any length) are
 *   refused;
 * - names that are relative, without `..` or `.` segments, empty segments, a trailing `/`,
 *   backslashes or control characters, and each name once;
 * - a header whose checksum does not add up, a size that is not a number;
 * - an archive that ends early, or has anything but zeros after its end marker.
 *
 * Sizes may be octal (ustar, up to 8 GiB) or base-256 (GNU tar, for larger files).
 */
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import { HoopError } from '../errors.js';

const BLOCK = 512;

/** A bundle's archive is not what the format allows: the reason says how. */
export class BundleFormatError extends HoopError {
  constructor(message: string) {
    super('HOOP_AUDIT_VERIFY_FAILED', message);
  }
}

export interface TarEntry {
  name: string;
  size: number;
  /** Seconds since the epoch. */
  mtime: number;
  mode: number;
}

/** What the reader reports to, in archive order: entry, its data (none for an empty file), endEntry. */
export interface TarSink {
  entry(e: TarEntry): void;
  data(chunk: Buffer): void;
  endEntry(): void;
}

const TYPE_NAMES: Record<string, string> = {
  '1': 'a hard link',
  '2': 'a symbolic link',
  '3': 'a character device',
  '4': 'a block device',
  '5': 'a directory',
  '6': 'a FIFO',
  '7': 'a contiguous file',
  x: 'a pax extended header',
  g: 'a pax global header',
  L: 'a GNU long name header',
  K: 'a GNU long link header',
};

export class UstarReader {
  private header = Buffer.alloc(BLOCK);
  private headerLen = 0;
  /** Body bytes of the current entry still to come, then padding to the block. */
  private bodyLeft = 0;
  private padLeft = 0;
  private inEntry = false;
  private ended = false;
  private readonly names = new Set<string>();
  private entries = 0;

  constructor(private readonly sink: TarSink) {}

  /** How many entries have begun. */
  get entryCount(): number {
    return this.entries;
  }

  push(chunk: Buffer): void {
    let off = 0;
    while (off < chunk.length) {
      if (this.ended) {
        for (let i = off; i < chunk.length; i++) {
          if (chunk[i] !== 0) throw new BundleFormatError('the archive has data after its end-of-archive marker');
        }
        return;
      }
      if (this.bodyLeft > 0) {
        const n = Math.min(this.bodyLeft, chunk.length - off);
        this.bodyLeft -= n;
        this.sink.data(chunk.subarray(off, off + n));
        off += n;
        if (this.bodyLeft === 0) this.closeEntry();
        continue;
      }
      if (this.padLeft > 0) {
        const n = Math.min(this.padLeft, chunk.length - off);
        this.padLeft -= n;
        off += n;
        continue;
      }
      const n = Math.min(BLOCK - this.headerLen, chunk.length - off);
      chunk.copy(this.header, this.headerLen, off, off + n);
      this.headerLen += n;
      off += n;
      if (this.headerLen === BLOCK) {
        this.headerLen = 0;
        this.takeHeader(this.header);
      }
    }
  }

  /** The input ended: throws unless the archive was complete. */
  end(): void {
    if (this.ended) return;
    if (this.bodyLeft > 0 || this.inEntry) throw new BundleFormatError('the archive ends in the middle of a file (truncated)');
    throw new BundleFormatError('the archive ends without its end-of-archive marker (truncated)');
  }

  private closeEntry(): void {
    this.inEntry = false;
    this.sink.endEntry();
  }

  private takeHeader(h: Buffer): void {
    if (h[0] === 0 && h[148] === 0 && h.every((b) => b === 0)) {
      this.ended = true; // the end marker; what follows must be zeros (tar pads to its record size)
      return;
    }
    if (checksumOf(h) !== parseOctal(h, 148, 8, 'checksum')) throw new BundleFormatError(`tar header ${this.entries + 1}: the checksum does not match (not a tar archive, or damaged)`);
    const magic = h.toString('latin1', 257, 265);
    const posix = magic === 'ustar\u000000';
    if (!posix && magic !== 'ustar  \u0000') throw new BundleFormatError(`tar header ${this.entries + 1}: not a ustar header`);
    let name = cString(h, 0, 100);
    if (posix) {
      const prefix = cString(h, 345, 155);
      if (prefix !== '') name = `${prefix}/${name}`;
    }
    const typeflag = String.fromCharCode(h[156]!);
    if (typeflag !== '0' && typeflag !== '\u0000') {
      throw new BundleFormatError(`${printable(name)} is ${TYPE_NAMES[typeflag] ?? `an entry of type ${JSON.stringify(typeflag)}`}; a bundle holds regular files only`);
    }
    const bad = unsafeName(name);
    if (bad) throw new BundleFormatError(`unsafe file name ${printable(name)}: ${bad}`);
    if (this.names.has(name)) throw new BundleFormatError(`${name} appears twice in the archive`);
    this.names.add(name);
    const size = parseSize(h);
    this.entries++;
    this.inEntry = true;
    this.sink.entry({ name, size, mtime: parseOctal(h, 136, 12, 'mtime'), mode: parseOctal(h, 100, 8, 'mode') });
    this.bodyLeft = size;
    this.padLeft = (BLOCK - (size % BLOCK)) % BLOCK;
    if (size === 0) this.closeEntry();
  }
}

/** Why a name may not be extracted or trusted, or null. */
export function unsafeName(name: string): string | null {
  if (name === '') return 'empty';
  if (name.startsWith('/')) return 'an absolute path';
  if (name.endsWith('/')) return 'a directory';
  if (name.includes('\\')) return 'a backslash';
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(name)) return 'a control character';
  for (const part of name.split('/')) {
    if (part === '') return 'an empty path segment';
    if (part === '..') return 'a ".." segment';
    if (part === '.') return 'a "." segment';
  }
  return null;
}

function checksumOf(h: Buffer): number {
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : h[i]!;
  return sum;
}

function cString(h: Buffer, start: number, len: number): string {
  const end = h.indexOf(0, start);
  const text = h.subarray(start, end === -1 || end > start + len ? start + len : end);
  const name = text.toString('utf8');
  if (Buffer.byteLength(name) !== text.length) throw new BundleFormatError('a tar header holds a name that is not UTF-8');
  return name;
}

/** Octal digits, optionally led by spaces and ended by a space or NUL. */
function parseOctal(h: Buffer, start: number, len: number, what: string): number {
  const text = h.toString('latin1', start, start + len).replace(/[\u0000 ]+$/, '').replace(/^ +/, '');
  if (!/^[0-7]{1,12}$/.test(text)) throw new BundleFormatError(`a tar header's ${what} is not an octal number`);
  return parseInt(text, 8);
}

/** The size field: octal, or GNU base-256 (high bit of the first byte set) for files of 8 GiB or more. */
function parseSize(h: Buffer): number {
  if ((h[124]! & 0x80) === 0) return parseOctal(h, 124, 12, 'size');
  if (h[124] !== 0x80) throw new BundleFormatError("a tar header's size is negative or too large");
  let size = 0;
  for (let i = 125; i < 136; i++) {
    size = size * 256 + h[i]!;
    if (size > Number.MAX_SAFE_INTEGER) throw new BundleFormatError("a tar header's size is too large");
  }
  return size;
}

function printable(name: string): string {
  return JSON.stringify(name.length > 120 ? `${name.slice(0, 120)}…` : name);
}

/**
 * Feeds a gzip-compressed archive from `source` (chunks as they arrive: a file, an HTTP body)
 * through gunzip into `sink`, with backpressure: the next chunk is read once the sink has taken
 * the last. Rejects with BundleFormatError for a stream that is not gzip or not a bundle's tar.
 */
export async function readTarGz(source: AsyncIterable<Buffer | Uint8Array | string> | NodeJS.ReadableStream, sink: TarSink): Promise<void> {
  const reader = new UstarReader(sink);
  try {
    await pipeline(source, createGunzip({ chunkSize: 256 * 1024 }), async (gunzipped: AsyncIterable<Buffer>) => {
      for await (const chunk of gunzipped) reader.push(chunk);
    });
  } catch (err) {
    if (err instanceof HoopError) throw err;
    const code = (err as { code?: string }).code;
    if (code === 'Z_DATA_ERROR' || code === 'Z_BUF_ERROR') throw new BundleFormatError(`not a gzip-compressed archive, or damaged: ${(err as Error).message}`);
    throw err;
  }
  reader.end();
}

