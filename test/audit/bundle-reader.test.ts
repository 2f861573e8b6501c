/**
 * The bundle's tar reader against archives made by the system's GNU tar (an oracle apart from
 * the reader): every split of the input gives the same entries, and what a bundle may not hold
 * (links, directories, pax and GNU long-name headers, unsafe or repeated names, damage,
 * truncation, trailing data) is refused before any of its bytes are reported.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync, gzipSync } from 'node:zlib';
import { afterAll, describe, expect, test } from 'vitest';
import { readTarGz, unsafeName, UstarReader, type TarEntry } from '../../src/audit/bundle-reader.js';

const dir = mkdtempSync(join(tmpdir(), 'hoop-tar-test-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function tar(args: string[], cwd = dir): Buffer {
  const out = join(dir, `out-${Math.random().toString(36).slice(2)}.tar`);
  execFileSync('tar', ['-cf', out, ...args], { cwd, stdio: ['ignore', 'ignore', 'ignore'] });
  return readFileSync(out);
}

type Seen = { entry: TarEntry; body: Buffer };
function collect(): { sink: ConstructorParameters<typeof UstarReader>[0]; seen: Seen[] } {
  const seen: Seen[] = [];
  let parts: Buffer[] = [];
  return {
    seen,
    sink: {
      entry: (entry) => { parts = []; seen.push({ entry, body: Buffer.alloc(0) }); },
      data: (chunk) => parts.push(Buffer.from(chunk)),
      endEntry: () => { seen.at(-1)!.body = Buffer.concat(parts); },
    },
  };
}

function read(bytes: Buffer, split?: number[]): Seen[] {
  const { sink, seen } = collect();
  const r = new UstarReader(sink);
  let at = 0;
  for (const cut of [...(split ?? []), bytes.length]) {
    r.push(bytes.subarray(at, cut));
    at = cut;
  }
  r.end();
  return seen;
}

function files(names: Record<string, string | Buffer>): string {
  const base = mkdtempSync(join(dir, 'src-'));
  for (const [name, body] of Object.entries(names)) {
    mkdirSync(join(base, name, '..'), { recursive: true });
    writeFileSync(join(base, name), body);
  }
  return base;
}

describe('UstarReader', () => {
  test('reads the entries GNU tar writes, in order, whatever the split', () => {
    const big = Buffer.alloc(70_000, 7);
    const base = files({ 'manifest.json': '{"a":1}', 'events.jsonl': 'x\n'.repeat(300), 'payloads/12.json': big, empty: '' });
    for (const format of ['ustar', 'gnu']) {
      const bytes = tar(['--format', format, '-C', base, 'manifest.json', 'events.jsonl', 'payloads/12.json', 'empty']);
      const whole = read(bytes);
      expect(whole.map((s) => [s.entry.name, s.entry.size])).toEqual([['manifest.json', 7], ['events.jsonl', 600], ['payloads/12.json', 70_000], ['empty', 0]]);
      expect(whole[2]!.body.equals(big)).toBe(true);
      if (format !== 'ustar') continue;
      // Every split point through the headers and the first bodies, and 1-byte chunks.
      for (let cut = 1; cut < 2048; cut += 7) expect(read(bytes, [cut]).map((s) => s.body.length)).toEqual([7, 600, 70_000, 0]);
      const { sink, seen } = collect();
      const r = new UstarReader(sink);
      for (let i = 0; i < 4096; i++) r.push(bytes.subarray(i, i + 1));
      r.push(bytes.subarray(4096));
      r.end();
      expect(seen.map((s) => s.body.toString().slice(0, 7))).toEqual(['{"a":1}', 'x\nx\nx\nx', '\u0007'.repeat(7), '']);
    }
  });

  test('refuses links, directories, long-name and pax headers', () => {
    const base = files({ target: 'secret' });
    symlinkSync('/etc/passwd', join(base, 'link'));
    expect(() => read(tar(['-C', base, 'link']))).toThrow(/"link" is a symbolic link; a bundle holds regular files only/);
    expect(() => read(tar(['-C', base, 'target', 'target', '--hard-dereference']))).toThrow(/appears twice|hard link/);
    mkdirSync(join(base, 'keys'));
    expect(() => read(tar(['-C', base, 'keys']))).toThrow(/is a directory/);
    const long = `${'a'.repeat(120)}.json`;
    writeFileSync(join(base, long), '{}');
    expect(() => read(tar(['--format', 'gnu', '-C', base, long]))).toThrow(/GNU long name header/);
    expect(() => read(tar(['--format', 'posix', '-C', base, long]))).toThrow(/pax extended header/);
  });

  test('refuses absolute names, .. segments and a name twice', () => {
    const base = files({ 'a.txt': 'one' });
    expect(() => read(tar(['-P', join(base, 'a.txt')]))).toThrow(/unsafe file name .*an absolute path/);
    const inner = join(base, 'inner');
    mkdirSync(inner);
    expect(() => read(tar(['-P', '../a.txt'], inner))).toThrow(/unsafe file name "\.\.\/a\.txt": a "\.\." segment/);
    // Appended again (tar -r): two regular entries of one name, the second would overwrite the first.
    const twice = join(dir, 'twice.tar');
    execFileSync('tar', ['-cf', twice, '-C', base, 'a.txt']);
    execFileSync('tar', ['-rf', twice, '-C', base, 'a.txt']);
    expect(() => read(readFileSync(twice))).toThrow(/a\.txt appears twice in the archive/);
    expect(unsafeName('payloads//1.json')).toMatch(/empty path segment/);
    expect(unsafeName('./x')).toMatch(/"\." segment/);
    expect(unsafeName('a\\b')).toMatch(/backslash/);
    expect(unsafeName('keys/\u0007.pem')).toMatch(/control character/);
    expect(unsafeName('payloads/1.json')).toBeNull();
  });

  test('refuses a damaged header, a truncated archive and data after the end', () => {
    const bytes = tar(['-C', files({ 'a.txt': 'hello' }), 'a.txt']);
    const damaged = Buffer.from(bytes);
    damaged[10] = damaged[10]! ^ 1;
    expect(() => read(damaged)).toThrow(/checksum does not match/);
    expect(() => read(bytes.subarray(0, 512 + 3))).toThrow(/ends in the middle of a file/);
    expect(() => read(bytes.subarray(0, 1024))).toThrow(/without its end-of-archive marker/);
    const trailing = Buffer.concat([bytes, Buffer.from('junk')]);
    expect(() => read(trailing)).toThrow(/data after its end-of-archive marker/);
    expect(() => read(Buffer.alloc(512, 0x41))).toThrow(/checksum|not a ustar/);
  });

  test('reads a base-256 size (GNU tar, files of 8 GiB and more) without taking the body on trust', () => {
    const bytes = Buffer.from(tar(['--format', 'gnu', '-C', files({ 'events.jsonl': 'abc' }), 'events.jsonl']));
    const header = bytes.subarray(0, 512);
    header.fill(0, 124, 136);
    header[124] = 0x80;
    header.writeUIntBE(3, 130, 6);
    header.fill(0x20, 148, 156);
    let sum = 0;
    for (const b of header) sum += b;
    header.write(`${sum.toString(8).padStart(6, '0')}\u0000 `, 148, 'latin1');
    expect(read(bytes).map((s) => [s.entry.name, s.body.toString()])).toEqual([['events.jsonl', 'abc']]);
  });
});

describe('readTarGz', () => {
  test('gunzips as it streams, and names a stream that is not gzip or is cut short', async () => {
    const bytes = tar(['-C', files({ 'a.txt': 'hello' }), 'a.txt']);
    const gz = gzipSync(bytes);
    const { sink, seen } = collect();
    async function* chunks(b: Buffer) {
      for (let i = 0; i < b.length; i += 100) yield b.subarray(i, i + 100);
    }
    await readTarGz(chunks(gz), sink);
    expect(seen.map((s) => s.body.toString())).toEqual(['hello']);
    expect(gunzipSync(gz).equals(bytes)).toBe(true);
    await expect(readTarGz(chunks(bytes), collect().sink)).rejects.toThrow(/not a gzip-compressed archive/);
    await expect(readTarGz(chunks(gz.subarray(0, gz.length - 30)), collect().sink)).rejects.toThrow(/not a gzip-compressed archive, or damaged|truncated/);
  });
});
