import { describe, expect, it } from 'vitest';
import { runHoop } from './helpers.js';

describe('hoop program', () => {
  it('prints help on stdout for a bare `hoop` and --help, listing every command', async () => {
    for (const argv of [[], ['--help']]) {
      const r = await runHoop(argv);
      expect(r.code).toBe(0);
      for (const cmd of ['connections', 'connect', 'sessions', 'gateway', 'demo', 'completion']) expect(r.stdout).toContain(cmd);
      expect(r.stdout).toContain('--gateway <url>');
      expect(r.stdout).not.toContain('__complete');
      expect(r.stderr).toBe('');
    }
  });

  it('prints the version', async () => {
    const r = await runHoop(['--version']);
    expect(r).toMatchObject({ code: 0, stdout: '0.0.0-test\n' });
  });

  it('shows a command help page with its examples and the global options', async () => {
    const r = await runHoop(['connect', '--help']);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('Usage: hoop connect [options] <name> [client...]');
    expect(r.stdout).toContain('--port <port>');
    expect(r.stdout).toContain('(default 5433; with -- <client>, a free one)');
    expect(r.stdout).toContain('$ hoop connect bank');
    expect(r.stdout).toContain('--json');
  });

  it('refuses an unknown command with exit 2, one line and a suggestion', async () => {
    const r = await runHoop(['conect', 'bank']);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    const lines = r.stderr.trimEnd().split('\n');
    expect(lines[0]).toBe("hoop: unknown command 'conect' (did you mean connect?)");
    expect(lines[1]).toBe('Run `hoop --help` for usage.');
    expect(lines).toHaveLength(2);
  });

  it('refuses an unknown flag with exit 2, pointing at the right help page', async () => {
    const r = await runHoop(['sessions', '--sinse', '2h']);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe("hoop: unknown option '--sinse' (did you mean --since?)\nRun `hoop sessions --help` for usage.\n");
  });

  it('treats missing and excess arguments as usage errors', async () => {
    const missing = await runHoop(['connect']);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/^hoop: missing required argument 'name'\n/);
    const excess = await runHoop(['connections', 'extra']);
    expect(excess.code).toBe(2);
    expect(excess.stderr).toMatch(/^hoop: too many arguments for 'connections'/);
    const shell = await runHoop(['completion', 'powershell']);
    expect(shell.code).toBe(2);
    expect(shell.stderr).toMatch(/^hoop: command-argument value 'powershell' is invalid for argument 'shell'\. Allowed choices are bash, zsh, fish\./);
  });

  it('validates flag values before doing anything (exit 2)', async () => {
    const port = await runHoop(['connect', 'bank', '--port', '70000']);
    expect(port.code).toBe(2);
    expect(port.stderr).toBe("hoop: invalid --port '70000': expected 0-65535 (0 picks a free port)\n");
    const since = await runHoop(['sessions', '--since', 'yesterday'], { env: { HOOP_GATEWAY: 'http://127.0.0.1:9', HOOP_TOKEN: 'x' } });
    expect(since.code).toBe(2);
    expect(since.stderr).toMatch(/^hoop: invalid --since 'yesterday': use RFC 3339/);
    const gw = await runHoop(['gateway']);
    expect(gw.code).toBe(2);
    expect(gw.stderr).toMatch(/^hoop: required option '-c, --config <path>' not specified\n/);
  });

  it('says how to log in when there is no gateway or no token (exit 4)', async () => {
    const noGateway = await runHoop(['connections']);
    expect(noGateway.code).toBe(4);
    expect(noGateway.stderr).toBe(
      'hoop: no gateway given and none saved\nPass --gateway <url>, set HOOP_GATEWAY, or run `hoop login --gateway <url>`.\n',
    );
    const noToken = await runHoop(['connections', '--gateway', 'http://127.0.0.1:9/']);
    expect(noToken.code).toBe(4);
    expect(noToken.stderr).toBe(
      'hoop: not logged in to http://127.0.0.1:9\nRun `hoop login --gateway http://127.0.0.1:9`, or set HOOP_TOKEN to an API key.\n',
    );
  });

  it('reports an unreachable gateway in one line with the URL (exit 1)', async () => {
    const r = await runHoop(['connections'], { env: { HOOP_GATEWAY: 'http://127.0.0.1:9', HOOP_TOKEN: 'k' } });
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(
      'hoop: cannot reach the gateway at http://127.0.0.1:9: connection refused\nCheck --gateway or HOOP_GATEWAY, and that the gateway is running.\n',
    );
  });

  it('prints a stack trace only with HOOP_DEBUG=1', async () => {
    const plain = await runHoop(['connections'], { env: { HOOP_GATEWAY: 'http://127.0.0.1:9', HOOP_TOKEN: 'k' } });
    expect(plain.stderr).not.toContain('    at ');
    const debug = await runHoop(['connections'], { env: { HOOP_GATEWAY: 'http://127.0.0.1:9', HOOP_TOKEN: 'k', HOOP_DEBUG: '1' } });
    expect(debug.stderr).toContain('    at ');
  });

  it('colours errors only on a terminal, and never with NO_COLOR or --no-color', async () => {
    const tty = await runHoop(['connections'], { tty: true });
    expect(tty.stderr).toContain('\u001b[31mhoop:\u001b[39m');
    const noColorEnv = await runHoop(['connections'], { tty: true, env: { NO_COLOR: '1' } });
    expect(noColorEnv.stderr).not.toContain('\u001b[');
    const noColorFlag = await runHoop(['connections', '--no-color'], { tty: true });
    expect(noColorFlag.stderr).not.toContain('\u001b[');
    const pipe = await runHoop(['connections']);
    expect(pipe.stderr).not.toContain('\u001b[');
  });
});

describe('help pages', () => {
  it('list only the program\'s options as global, not a parent command\'s filters', async () => {
    const r = await runHoop(['sessions', 'show', '--help']);
    const globals = r.stdout.slice(r.stdout.indexOf('Global Options:'));
    expect(globals).toContain('--gateway <url>');
    expect(globals).not.toContain('--since');
  });
});
