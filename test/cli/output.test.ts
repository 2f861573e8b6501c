import { describe, expect, it } from 'vitest';
import { ExitCode, exitCodeFor } from '../../src/cli/exit-codes.js';
import { IOStreams } from '../../src/cli/iostreams.js';
import { printJson, printTable } from '../../src/cli/output.js';
import { parseTimeArg } from '../../src/cli/time.js';
import { AuthError, HoopError, UsageError } from '../../src/errors.js';

describe('IOStreams', () => {
  it('colours only terminals, never with NO_COLOR, TERM=dumb or after --no-color', () => {
    expect(IOStreams.test({ tty: true }).io.out.enabled).toBe(true);
    expect(IOStreams.test({ tty: false }).io.out.enabled).toBe(false);
    expect(IOStreams.test({ tty: true, env: { NO_COLOR: '1' } }).io.err.enabled).toBe(false);
    expect(IOStreams.test({ tty: true, env: { TERM: 'dumb' } }).io.err.enabled).toBe(false);
    const { io } = IOStreams.test({ tty: true });
    io.disableColor();
    expect(io.err.red('x')).toBe('x');
    // NO_COLOR wins over CLICOLOR_FORCE.
    expect(IOStreams.test({ env: { CLICOLOR_FORCE: '1' } }).io.out.enabled).toBe(true);
    expect(IOStreams.test({ env: { CLICOLOR_FORCE: '1', NO_COLOR: '1' } }).io.out.enabled).toBe(false);
  });

  it('prompts only when stdin and stdout are terminals and CI is unset', () => {
    expect(IOStreams.test({ tty: true }).io.canPrompt()).toBe(true);
    expect(IOStreams.test({ tty: true, env: { CI: 'true' } }).io.canPrompt()).toBe(false);
    expect(IOStreams.test({ tty: false }).io.canPrompt()).toBe(false);
  });
});

describe('tables and JSON', () => {
  it('into a pipe: tab-separated, no header, nothing truncated, control characters neutralised', () => {
    const t = IOStreams.test();
    printTable(t.io, ['A', 'B'], [['x'.repeat(300), 'evil\u001b]0;title\u0007\tcol']]);
    expect(t.stdout()).toBe(`${'x'.repeat(300)}\tevil\uFFFD]0;title\uFFFD col\n`);
  });

  it('on a terminal: aligned under a header, fitted to the width, keeping id columns whole', () => {
    const t = IOStreams.test({ tty: true, columns: 50, env: { NO_COLOR: '1' } });
    const id = '0193a5c2-7c1e-7a10-9f1e-2b1c3d4e5f60';
    printTable(t.io, [{ title: 'ID', keep: true }, 'NOTE'], [[id, 'a rather long note that cannot fit']]);
    const lines = t.stdout().trimEnd().split('\n');
    expect(lines[0]).toMatch(/^ID\s+NOTE$/);
    expect(lines[1]).toBe(`${id}  a rather lo…`);
  });

  it('--json is pretty on a terminal and one line in a pipe', () => {
    const pipe = IOStreams.test();
    printJson(pipe.io, { a: [1] });
    expect(pipe.stdout()).toBe('{"a":[1]}\n');
    const tty = IOStreams.test({ tty: true });
    printJson(tty.io, { a: [1] });
    expect(tty.stdout()).toBe('{\n  "a": [\n    1\n  ]\n}\n');
  });
});

describe('time arguments', () => {
  const now = new Date('2026-11-28T12:00:00.000Z');
  it('accepts spans back from now and RFC 3339', () => {
    expect(parseTimeArg('2h', '--since', now)).toBe('2026-11-28T10:00:00.000Z');
    expect(parseTimeArg('7d', '--since', now)).toBe('2026-11-21T12:00:00.000Z');
    expect(parseTimeArg('1h30m', '--since', now)).toBe('2026-11-28T10:30:00.000Z');
    expect(parseTimeArg('2026-11-01', '--since', now)).toBe('2026-11-01T00:00:00.000Z');
    expect(parseTimeArg('2026-11-28T09:00:00+02:00', '--until', now)).toBe('2026-11-28T07:00:00.000Z');
  });
  it('refuses anything else as a usage error naming the flag', () => {
    for (const bad of ['yesterday', '2h ago', '-2h', '2026-13-45', '2026-11-28T09:00:00', '12', '99999999999999w']) {
      expect(() => parseTimeArg(bad, '--since', now)).toThrow(UsageError);
    }
  });
});

describe('exit codes', () => {
  it('maps every documented failure to its code in one place', () => {
    expect(exitCodeFor(new UsageError('x'))).toBe(2);
    expect(exitCodeFor(new HoopError('HOOP_NOT_LOGGED_IN', 'x'))).toBe(4);
    expect(exitCodeFor(new AuthError('HOOP_AUTH_REJECTED', 'x'))).toBe(4);
    expect(exitCodeFor(new HoopError('HOOP_POLICY_DENIED', 'x'))).toBe(5);
    expect(exitCodeFor(new HoopError('HOOP_FORBIDDEN', 'x'))).toBe(5);
    expect(exitCodeFor(new HoopError('HOOP_APPROVAL_DENIED', 'x'))).toBe(6);
    expect(exitCodeFor(new HoopError('HOOP_APPROVAL_PENDING', 'x'))).toBe(8);
    expect(exitCodeFor(new HoopError('HOOP_AUDIT_VERIFY_FAILED', 'x'))).toBe(10);
    expect(exitCodeFor(new HoopError('HOOP_NETWORK', 'x'))).toBe(1);
    expect(exitCodeFor(new Error('plain'))).toBe(ExitCode.ERROR);
  });
});
