/**
 * `hoop audit export`: the audit log of a time range for a SIEM (jsonl, csv, cef, ocsf) or, with
 * `--bundle`, a signed tar.gz an examiner verifies alone (docs/audit-export.md). The body is
 * written as it arrives, to a 0600 temporary file beside PATH that is renamed to PATH only once
 * the whole export has arrived, so a failed or interrupted export never leaves a file named PATH.
 * A progress line (bytes, elapsed) goes to stderr on a terminal only.
 */
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { open, rename, rm, type FileHandle } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import type { Writable } from 'node:stream';
import type { AuditExportQuery } from '../../client/api.js';
import { networkError } from '../../client/api.js';
import { UsageError, errorMessage, isHoopError } from '../../errors.js';
import { ExitCode } from '../exit-codes.js';
import { defineCommand, opt, type OptionSpec } from '../command.js';
import type { CommandContext } from '../context.js';
import type { IOStreams } from '../iostreams.js';
import { parseTimeArg } from '../time.js';

export const LINE_FORMATS = ['jsonl', 'csv', 'cef', 'ocsf'] as const;
type LineFormat = (typeof LINE_FORMATS)[number];

const formatOption: OptionSpec<LineFormat | undefined> = {
  flags: '--format <format>',
  description: 'for SIEMs: jsonl (events as stored, default), csv (a row per statement), cef, ocsf',
  choices: LINE_FORMATS,
};

/** `12.3 MiB` */
export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) (v /= 1024), i++;
  return `${v.toFixed(1)} ${units[i]}`;
}

/** The progress line on a terminal's stderr, redrawn at most every 100 ms; nothing elsewhere. */
class Progress {
  private last = 0;
  private readonly started = Date.now();
  constructor(private readonly io: IOStreams) {}

  update(bytes: number, force = false): void {
    if (!this.io.isStderrTTY) return;
    const now = Date.now();
    if (!force && now - this.last < 100) return;
    this.last = now;
    const secs = Math.round((now - this.started) / 1000);
    const what = bytes === 0 ? 'waiting for the gateway to prepare the export' : `${formatBytes(bytes)} received`;
    this.io.stderr.write(`\r\u001b[2K${this.io.err.cyan('⇣')} exporting: ${what}, ${secs} s`);
  }

  stop(): void {
    if (this.io.isStderrTTY) this.io.stderr.write('\r\u001b[2K');
  }
}

interface Sink {
  write(chunk: Buffer): Promise<void>;
  /** Makes the export visible under its name. */
  commit(): Promise<void>;
  /** Removes what was written (a temporary file); idempotent. */
  discard(): Promise<void>;
}

async function fileSink(path: string): Promise<Sink> {
  const tmp = join(dirname(path), `.${basename(path)}.${randomBytes(6).toString('hex')}.part`);
  let fh: FileHandle | null;
  try {
    fh = await open(tmp, 'wx', 0o600);
  } catch (err) {
    throw new UsageError(`cannot write ${path}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'its directory does not exist' : errorMessage(err)}`);
  }
  return {
    async write(chunk) {
      await fh!.write(chunk);
    },
    async commit() {
      await fh!.sync();
      await fh!.close();
      fh = null;
      await rename(tmp, path);
    },
    async discard() {
      await fh?.close().catch(() => {});
      fh = null;
      await rm(tmp, { force: true });
    },
  };
}

function streamSink(out: Writable): Sink {
  return {
    async write(chunk) {
      if (!out.write(chunk)) await once(out, 'drain');
    },
    async commit() {},
    async discard() {},
  };
}

export const auditExportCommand = defineCommand({
  name: 'export',
  summary: 'Export the audit log of a time range for a SIEM, or a signed bundle for an examiner (auditors and admins)',
  description:
    'Export the events of a time range. --format jsonl (the events as stored, with their hashes and\n' +
    'recorded results), csv (one row per statement), cef (ArcSight) or ocsf (OCSF 1.1 JSON); or --bundle:\n' +
    'a tar.gz with the events, recorded results, checkpoints, public keys, summary.csv, report.html and a\n' +
    'signed SHA256SUMS that `hoop audit verify` or standard tools check alone. Times accept RFC 3339, a\n' +
    'date (midnight UTC) or a span back from now (24h, 7d). -o - writes to stdout. The export is recorded.',
  options: {
    since: opt.requiredText('--since <time>', 'events at or after this time'),
    until: opt.requiredText('--until <time>', 'events before this time'),
    user: opt.text('--user <user>', 'only this user (subject, email or API key name)'),
    connection: opt.text('--connection <name>', 'only this connection', { complete: 'connections' }),
    format: formatOption,
    bundle: opt.flag('--bundle', 'a signed tar.gz for an examiner (events, results, keys, report, SHA256SUMS)'),
    output: { ...opt.requiredText('-o, --output <path>', 'where to write it (- for stdout)'), complete: 'file' } as OptionSpec<string>,
  },
  examples: [
    'hoop audit export --since 2026-03-03 --until 2026-03-04 --bundle -o march-3.tar.gz',
    'hoop audit export --since 24h --until 0s --format cef -o - | nc siem.example 514',
    'hoop audit export --since 7d --until 0s --user alice@bank.example --format csv -o alice.csv',
  ],
  async run(ctx, { options }) {
    if (options.bundle && options.format !== undefined) throw new UsageError('--bundle and --format are exclusive: a bundle has its own format');
    const now = ctx.now();
    const since = parseTimeArg(options.since, '--since', now);
    const until = parseTimeArg(options.until, '--until', now);
    if (since >= until) throw new UsageError(`--since (${since}) must be before --until (${until})`);
    const query: AuditExportQuery = {
      format: options.bundle ? 'bundle' : (options.format ?? 'jsonl'),
      since, until, user: options.user, connection: options.connection,
    };
    return exportTo(ctx, query, options.output);
  },
});

async function exportTo(ctx: CommandContext, query: AuditExportQuery, output: string): Promise<number> {
  const { io } = ctx;
  if (output === '-' && query.format === 'bundle' && io.isStdoutTTY) throw new UsageError('a bundle is binary: give -o FILE.tar.gz, or pipe stdout');
  const controller = new AbortController();
  void ctx.shutdownSignal().then(() => controller.abort());
  const hash = createHash('sha256');
  let bytes = 0;
  const sink = output === '-' ? streamSink(io.stdout) : await fileSink(output);
  const progress = new Progress(io);
  progress.update(0, true);
  const timer = setInterval(() => progress.update(bytes), 500); // the elapsed time moves while the gateway prepares
  timer.unref();
  try {
    const body = await ctx.api().auditExport(query, { signal: controller.signal });
    try {
      for await (const chunk of body) {
        hash.update(chunk);
        bytes += chunk.length;
        await sink.write(chunk);
        progress.update(bytes);
      }
    } catch (err) {
      throw isHoopError(err) ? err : networkError(ctx.gateway(), err);
    }
    await sink.commit();
  } catch (err) {
    await sink.discard();
    if (!controller.signal.aborted) throw err;
    progress.stop();
    io.info(`hoop: export interrupted${output === '-' ? '' : `; nothing was written to ${output}`}`);
    return ExitCode.INTERRUPTED;
  } finally {
    clearInterval(timer);
    progress.stop();
  }
  const where = output === '-' ? 'stdout' : output;
  io.info(`Exported ${formatBytes(bytes)} (${query.format}) to ${where}; sha256 ${hash.digest('hex')}`);
  return 0;
}
