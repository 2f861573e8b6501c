import { describe, expect, it } from 'vitest';
import { IOStreams, stripAnsi } from '../../src/cli/iostreams.js';
import { startSpinner } from '../../src/cli/spinner.js';
import { until } from '../helpers/poll.js';

describe('startSpinner', () => {
  it('on a terminal: draws frames on stderr with the latest text and clears the line at stop', async () => {
    const t = IOStreams.test({ tty: true });
    const s = startSpinner(t.io, 'waiting for r-1');
    s.update('waiting for r-1 (1s)');
    await until(() => t.stderr().includes('⠙'), { what: 'a second frame' });
    s.stop();
    s.stop();
    const err = t.stderr();
    expect(t.stdout()).toBe('');
    const frames = stripAnsi(err).split('\r\u001b[2K').filter(Boolean);
    expect(frames[0]).toBe('⠋ waiting for r-1');
    expect(frames[1]).toBe('⠙ waiting for r-1 (1s)');
    expect(err.endsWith('\r\u001b[2K')).toBe(true);
  });

  it('elsewhere: the text once, as a line, and nothing more', () => {
    const t = IOStreams.test({ tty: false });
    const s = startSpinner(t.io, 'waiting for r-1');
    s.update('other');
    s.stop();
    expect(t.stderr()).toBe('waiting for r-1\n');
  });
});
