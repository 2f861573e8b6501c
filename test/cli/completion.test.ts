import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { commandTree } from '../../src/cli/program.js';
import { ROOT, runHoop } from './helpers.js';

const FILES = { bash: 'hoop.bash', zsh: '_hoop', fish: 'hoop.fish' } as const;

/** As bash's default COMP_WORDBREAKS does: `a:b` becomes `a`, `:`, `b`. */
function bashWordbreaks(word: string): string[] {
  return word.split(/(:)/).filter((w, _i, all) => w !== '' || all.length === 1);
}

/** Asks the generated bash script what it offers for a command line ending in `words`. */
function bashComplete(words: string[]): string[] {
  const script = `source ${JSON.stringify(join(ROOT, 'completions/hoop.bash'))}
COMP_LINE=${JSON.stringify(words.join(' '))}; COMP_POINT=\${#COMP_LINE}
COMP_WORDS=(${words.flatMap(bashWordbreaks).map((w) => `'${w}'`).join(' ')}); COMP_CWORD=$((\${#COMP_WORDS[@]} - 1)); COMPREPLY=()
_hoop; printf '%s\\n' "\${COMPREPLY[@]}"`;
  return execFileSync('bash', ['--norc', '-c', script], { encoding: 'utf8', env: { PATH: '/usr/bin:/bin' } })
    .split('\n')
    .filter(Boolean);
}

describe('shell completion', () => {
  it.each(Object.entries(FILES))('completions/%s is exactly `hoop completion` output (regenerate: npm run completions)', async (shell, file) => {
    const r = await runHoop(['completion', shell]);
    expect(r.code).toBe(0);
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe(readFileSync(join(ROOT, 'completions', file), 'utf8'));
  });

  it('bash completes commands, subcommands, flags and flag values from the command tree', async () => {
    const topLevel = (await commandTree()).filter((c) => !c.hidden).map((c) => c.name);
    expect(topLevel).toEqual(expect.arrayContaining(['login', 'logout', 'whoami', 'connections', 'connect', 'sessions', 'gateway', 'demo', 'completion']));
    expect(bashComplete(['hoop', ''])).toEqual([...topLevel, 'help']);
    expect(bashComplete(['hoop', 'conn'])).toEqual(['connections', 'connect']);
    // bash splits words at ':'; the URL must still count as one option value.
    expect(bashComplete(['hoop', '--gateway', 'http://127.0.0.1:8009', 'sessions', ''])).toEqual(['show', 'kill']);
    expect(bashComplete(['hoop', '--gateway', 'gw', 'sessions', ''])).toEqual(['show', 'kill']);
    expect(bashComplete(['hoop', 'sessions', '--s'])).toEqual(['--since']);
    expect(bashComplete(['hoop', 'connect', '--port', '0', '--'])).toContain('--reason');
    expect(bashComplete(['hoop', 'gateway', '--log-level', ''])).toEqual(['trace', 'debug', 'info', 'warn', 'error']);
    expect(bashComplete(['hoop', 'completion', ''])).toEqual(['bash', 'zsh', 'fish']);
    expect(bashComplete(['hoop', 'review', ''])).toEqual(['approve', 'deny']);
    expect(bashComplete(['hoop', 'request', 'bank', '--n'])).toContain('--no-wait');
    // A flag's value is not mistaken for a subcommand.
    expect(bashComplete(['hoop', '--gateway', 'sessions', 'con'])).toEqual(['connections', 'connect']);
  });

  it('never offers the hidden __complete command', () => {
    expect(bashComplete(['hoop', '__'])).toEqual([]);
    expect(readFileSync(join(ROOT, 'completions/hoop.fish'), 'utf8')).not.toContain("-a '__complete'");
  });
});
