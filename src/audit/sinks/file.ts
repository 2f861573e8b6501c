/**
 * The file sink: JSON Lines (one event's canonical JSON per line) appended to PATH, rotated by
 * size: when the next line would take PATH past `maxBytes`, PATH becomes PATH.1, PATH.1 becomes
 * PATH.2, … up to PATH.<keep> (the oldest beyond it is dropped), and a new PATH is started. A
 * line is never split across files; a single line longer than `maxBytes` gets a file of its own.
 *
 * A batch counts as delivered once it is fsynced (and a rotation once the directory is). A
 * write that fails part-way is cut back off the file, so a retry does not leave half a line.
 * Files are created 0600 (an existing PATH is set to 0600), and a missing directory 0700.
 */
import { constants } from 'node:fs';
import { chmod, mkdir, open, rename, rm, type FileHandle } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { FileSinkConfig, SinkRecord, SinkTransport } from './sink.js';

export class FileTransport implements SinkTransport {
  private fh: FileHandle | null = null;
  private size = 0;

  constructor(private readonly cfg: Pick<FileSinkConfig, 'path' | 'maxBytes' | 'keep'>) {}

  async deliver(records: readonly SinkRecord[]): Promise<void> {
    let pending: Buffer[] = [];
    let pendingBytes = 0;
    for (const r of records) {
      const line = Buffer.from(`${r.json}\n`, 'utf8');
      const fh = await this.file();
      if (this.size + pendingBytes > 0 && this.size + pendingBytes + line.length > this.cfg.maxBytes) {
        await this.append(fh, pending, pendingBytes);
        pending = [];
        pendingBytes = 0;
        await this.rotate();
      }
      pending.push(line);
      pendingBytes += line.length;
    }
    if (pendingBytes > 0) await this.append(await this.file(), pending, pendingBytes);
  }

  async close(): Promise<void> {
    const fh = this.fh;
    this.fh = null;
    await fh?.close().catch(() => {});
  }

  /** Writes and fsyncs; on failure cuts the file back to where it was and forgets the handle. */
  private async append(fh: FileHandle, chunks: Buffer[], bytes: number): Promise<void> {
    if (bytes === 0) return;
    const before = this.size;
    const data = Buffer.concat(chunks, bytes);
    try {
      for (let off = 0; off < data.length;) off += (await fh.write(data, off, data.length - off)).bytesWritten;
      await fh.sync();
      this.size = before + data.length;
    } catch (err) {
      await fh.truncate(before).catch(() => {});
      await this.close();
      throw err;
    }
  }

  private async file(): Promise<FileHandle> {
    if (this.fh) return this.fh;
    await mkdir(dirname(this.cfg.path), { recursive: true, mode: 0o700 });
    const fh = await open(this.cfg.path, constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT, 0o600);
    try {
      await fh.chmod(0o600);
      this.size = (await fh.stat()).size;
    } catch (err) {
      await fh.close().catch(() => {});
      throw err;
    }
    this.fh = fh;
    return fh;
  }

  /** PATH -> PATH.1 -> … -> PATH.<keep>; the directory fsynced, so the renames survive a crash. */
  private async rotate(): Promise<void> {
    await this.close();
    const { path, keep } = this.cfg;
    await rm(`${path}.${keep}`, { force: true });
    for (let i = keep - 1; i >= 1; i--) await rename(`${path}.${i}`, `${path}.${i + 1}`).catch(ignoreMissing);
    await rename(path, `${path}.1`);
    await chmod(`${path}.1`, 0o600);
    const dir = await open(dirname(path), constants.O_RDONLY);
    try {
      await dir.sync();
    } finally {
      await dir.close();
    }
    this.size = 0;
  }
}

function ignoreMissing(err: unknown): void {
  if ((err as { code?: string }).code !== 'ENOENT') throw err;
}
