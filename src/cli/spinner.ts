/**
 * A one-line spinner on stderr, for a command waiting on someone else (`hoop request`). Only
 * on a terminal (gh's iostreams: progress indicators never reach a pipe or a log); elsewhere it
 * prints its text once, so a script's log still says what it waits for.
 */
import type { IOStreams } from './iostreams.js';

const FRAMES = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];
const FRAME_MS = 100;

export interface Spinner {
  /** Replaces the text shown after the spinner. */
  update(text: string): void;
  /** Clears the line (on a terminal); idempotent. */
  stop(): void;
}

export function startSpinner(io: IOStreams, text: string): Spinner {
  if (!io.isStderrTTY) {
    io.info(text);
    return { update() {}, stop() {} };
  }
  let current = text;
  let frame = 0;
  const draw = () => io.stderr.write(`\r\u001b[2K${io.err.cyan(FRAMES[frame++ % FRAMES.length]!)} ${current}`);
  draw();
  const timer = setInterval(draw, FRAME_MS);
  timer.unref();
  let stopped = false;
  return {
    update(t) {
      current = t;
    },
    stop() {
      if (stopped) return;
      stopped = true;
      clearInterval(timer);
      io.stderr.write('\r\u001b[2K');
    },
  };
}
