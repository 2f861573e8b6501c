/**
 * Where the CLI's bytes go, after gh's `pkg/iostreams`: data on stdout, everything else
 * (progress, prompts, colour-only decoration, errors) on stderr. Colour only on a terminal and
 * never with NO_COLOR or --no-color; prompts only when stdin and stdout are terminals and CI is
 * unset. Commands receive an IOStreams and never touch `process.std*`, so tests can capture
 * output in memory (`IOStreams.test()`).
 */
import { spawn } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';
import { Writable, Readable } from 'node:stream';

export type Env = Readonly<Record<string, string | undefined>>;

/** ANSI styling that degrades to identity functions when colour is off. */
export interface ColorScheme {
  readonly enabled: boolean;
  bold(s: string): string;
  dim(s: string): string;
  red(s: string): string;
  green(s: string): string;
  yellow(s: string): string;
  cyan(s: string): string;
}

function sgr(enabled: boolean, open: number, close: number): (s: string) => string {
  return enabled ? (s) => `\u001b[${open}m${s}\u001b[${close}m` : (s) => s;
}

export function colorScheme(enabled: boolean): ColorScheme {
  return {
    enabled,
    bold: sgr(enabled, 1, 22),
    dim: sgr(enabled, 2, 22),
    red: sgr(enabled, 31, 39),
    green: sgr(enabled, 32, 39),
    yellow: sgr(enabled, 33, 39),
    cyan: sgr(enabled, 36, 39),
  };
}

const ANSI = /\u001b\[[0-9;]*m/g;
export function stripAnsi(s: string): string {
  return s.replace(ANSI, '');
}

export interface IOStreamsOptions {
  stdin: Readable;
  stdout: Writable;
  stderr: Writable;
  stdinIsTTY: boolean;
  stdoutIsTTY: boolean;
  stderrIsTTY: boolean;
  env: Env;
  /** Terminal width when stdout is a terminal. */
  columns?: () => number | undefined;
}

export class IOStreams {
  readonly stdin: Readable;
  /** Where data goes: the process's stdout, or a pager's stdin while one runs. */
  stdout: Writable;
  readonly stderr: Writable;
  readonly isStdinTTY: boolean;
  readonly isStdoutTTY: boolean;
  readonly isStderrTTY: boolean;
  private readonly env: Env;
  private readonly columns: () => number | undefined;
  private colorDisabled: boolean;

  constructor(o: IOStreamsOptions) {
    this.stdin = o.stdin;
    this.stdout = o.stdout;
    this.stderr = o.stderr;
    this.isStdinTTY = o.stdinIsTTY;
    this.isStdoutTTY = o.stdoutIsTTY;
    this.isStderrTTY = o.stderrIsTTY;
    this.env = o.env;
    this.columns = o.columns ?? (() => undefined);
    // https://no-color.org: present and not empty disables colour.
    this.colorDisabled = Boolean(o.env.NO_COLOR) || o.env.TERM === 'dumb';
  }

  static system(env: Env = process.env): IOStreams {
    return new IOStreams({
      stdin: process.stdin,
      stdout: process.stdout,
      stderr: process.stderr,
      stdinIsTTY: Boolean(process.stdin.isTTY),
      stdoutIsTTY: Boolean(process.stdout.isTTY),
      stderrIsTTY: Boolean(process.stderr.isTTY),
      env,
      columns: () => process.stdout.columns,
    });
  }

  /** In-memory streams for tests; `tty` pretends every stream is a terminal; `input` is what stdin reads. */
  static test(options: { tty?: boolean; env?: Env; columns?: number; input?: string } = {}): TestIOStreams {
    const out: string[] = [];
    const err: string[] = [];
    const sink = (into: string[]) =>
      new Writable({
        write(chunk: Buffer | string, _enc, cb) {
          into.push(chunk.toString());
          cb();
        },
      });
    const tty = options.tty ?? false;
    const io = new IOStreams({
      stdin: Readable.from(options.input ? [Buffer.from(options.input)] : []),
      stdout: sink(out),
      stderr: sink(err),
      stdinIsTTY: tty,
      stdoutIsTTY: tty,
      stderrIsTTY: tty,
      env: options.env ?? {},
      columns: () => options.columns,
    });
    return { io, stdout: () => out.join(''), stderr: () => err.join('') };
  }

  /** `--no-color`. */
  disableColor(): void {
    this.colorDisabled = true;
  }

  private colorFor(tty: boolean): boolean {
    if (this.colorDisabled) return false;
    const force = this.env.CLICOLOR_FORCE;
    if (force && force !== '0') return true;
    return tty;
  }

  /** Colours for text written to stdout. */
  get out(): ColorScheme {
    return colorScheme(this.colorFor(this.isStdoutTTY));
  }

  /** Colours for text written to stderr. */
  get err(): ColorScheme {
    return colorScheme(this.colorFor(this.isStderrTTY));
  }

  /** Interactive prompts are allowed: both ends are a person at a terminal, not CI. */
  canPrompt(): boolean {
    return this.isStdinTTY && this.isStdoutTTY && !this.env.CI;
  }

  /**
   * Asks a yes/no question on stderr (@inquirer/prompts), answering `defaultValue` on Enter.
   * Callers check `canPrompt()` first; a closed stdin or Ctrl-C during the question is a no.
   */
  async confirm(message: string, defaultValue = false): Promise<boolean> {
    const { confirm } = await import('@inquirer/prompts');
    // The prompt ends its output when done: give it a view of stderr that stays open.
    const stderr = this.stderr;
    const output = new Writable({ write: (chunk: Buffer, _enc, cb) => void stderr.write(chunk, cb) });
    try {
      return await confirm({ message, default: defaultValue }, { input: this.stdin, output, clearPromptOnDone: false });
    } catch {
      return false;
    }
  }

  /** Width to fit tables into; undefined when stdout is not a terminal (never truncate pipes). */
  terminalWidth(): number | undefined {
    if (!this.isStdoutTTY) return undefined;
    return this.columns() ?? 80;
  }

  /**
   * Sends what follows on stdout through a pager when stdout is a terminal, as gh and git do:
   * HOOP_PAGER, else PAGER, else `less` (with LESS=FRX: it quits when the text fits one screen and
   * keeps colours). An empty value or `cat` turns paging off. Returns a function that ends the
   * input and waits for the pager (the person may read as long as they like); without a pager it
   * resolves at once.
   */
  startPager(): () => Promise<void> {
    const command = this.env.HOOP_PAGER ?? this.env.PAGER ?? 'less';
    if (!this.isStdoutTTY || command.trim() === '' || command.trim() === 'cat') return async () => {};
    if (command === 'less' && !onPath('less', this.env.PATH)) return async () => {};
    const direct = this.stdout;
    const child = spawn('/bin/sh', ['-c', command], {
      stdio: ['pipe', 'inherit', 'inherit'],
      env: { ...this.env, LESS: this.env.LESS ?? 'FRX' },
    });
    const exited = new Promise<void>((resolve) => {
      child.once('close', () => resolve());
      child.once('error', () => resolve()); // no shell: the text already went nowhere; say nothing more
    });
    child.stdin!.on('error', () => {}); // the person quit the pager early: the rest is not wanted
    // Ctrl-C belongs to the pager while it runs, as with git: hoop keeps feeding it.
    const ignore = () => {};
    process.on('SIGINT', ignore);
    this.stdout = child.stdin!;
    return async () => {
      child.stdin!.end();
      await exited;
      process.off('SIGINT', ignore);
      this.stdout = direct;
    };
  }

  /** Data for programs and pipes. */
  print(text: string): void {
    this.stdout.write(text.endsWith('\n') ? text : `${text}\n`);
  }

  /**
   * Resolves once stdout (or the pager) has taken what it was given, so a command that prints
   * page by page keeps no more than a page waiting in memory. At once if nothing waits, or if the
   * reader went away (a pager quit early).
   */
  async drained(): Promise<void> {
    const out = this.stdout;
    if (!out.writableNeedDrain || out.destroyed || out.writableEnded) return;
    await new Promise<void>((resolve) => {
      const done = () => {
        out.off('drain', done).off('close', done).off('error', done);
        resolve();
      };
      out.on('drain', done).on('close', done).on('error', done);
    });
  }

  /** Messages for the person: progress, notices, errors. */
  info(text: string): void {
    this.stderr.write(text.endsWith('\n') ? text : `${text}\n`);
  }

  /** Resolves once everything written so far has been handed to the OS. */
  async flush(): Promise<void> {
    await Promise.all(
      [this.stdout, this.stderr].map(
        (s) => new Promise<void>((resolve) => (s.writableEnded || s.destroyed ? resolve() : s.write('', () => resolve()))),
      ),
    );
  }
}

function onPath(name: string, path: string | undefined): boolean {
  return (path ?? '').split(delimiter).some((dir) => {
    try {
      accessSync(join(dir, name), constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
}

export interface TestIOStreams {
  io: IOStreams;
  stdout(): string;
  stderr(): string;
}
