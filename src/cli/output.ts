/**
 * Output helpers shared by commands. Tables follow gh's tableprinter: on a terminal, aligned
 * columns under a header, truncated to the window; into a pipe, tab-separated values without a
 * header and without truncation, so `cut -f1` works.
 */
import { stripAnsi, type IOStreams } from './iostreams.js';

export type Cell = string | { text: string; style?: (s: string) => string };

const GAP = '  ';

function textOf(c: Cell): string {
  return typeof c === 'string' ? c : c.text;
}

function styled(c: Cell, padded: string): string {
  return typeof c === 'string' || !c.style ? padded : c.style(padded);
}

/** One line per row; control characters in values (hostile or just odd) never reach the terminal raw. */
export function sanitize(s: string): string {
  return s.replace(/[\u0000-\u001f\u007f-\u009f]/g, (ch) => (ch === '\t' || ch === '\n' ? ' ' : '\uFFFD'));
}

function truncate(s: string, width: number): string {
  if (width <= 0) return '';
  const chars = [...s];
  if (chars.length <= width) return s;
  return width === 1 ? '…' : `${chars.slice(0, width - 1).join('')}…`;
}

function displayWidth(s: string): number {
  return [...stripAnsi(s)].length;
}

/**
 * A column title. On a terminal too narrow for every column, `optional` columns are left out
 * (the rightmost first), then the widest of the others are truncated, never `keep` ones (ids
 * you copy). Pipes always get every column in full.
 */
export type Header = string | { title: string; keep?: true; optional?: true };

export function printTable(io: IOStreams, columns: Header[], rows: Cell[][]): void {
  let clean = rows.map((r) => r.map((c) => (typeof c === 'string' ? sanitize(c) : { ...c, text: sanitize(c.text) })));
  if (!io.isStdoutTTY) {
    for (const r of clean) io.print(r.map(textOf).join('\t'));
    return;
  }
  let specs = columns.map((h) => (typeof h === 'string' ? { title: h } : h));
  const naturalWidth = (i: number) => Math.max(displayWidth(specs[i]!.title), ...clean.map((r) => displayWidth(textOf(r[i] ?? ''))));
  let widths = specs.map((_, i) => naturalWidth(i));
  const max = io.terminalWidth();
  const total = () => widths.reduce((a, b) => a + b, 0) + GAP.length * (widths.length - 1);
  for (let i = specs.length - 1; max !== undefined && i >= 0 && total() > max; i--) {
    if (!specs[i]!.optional) continue;
    specs = specs.filter((_, j) => j !== i);
    widths = widths.filter((_, j) => j !== i);
    clean = clean.map((r) => r.filter((_, j) => j !== i));
  }
  const headers = specs.map((s) => s.title);
  if (max !== undefined) fitWidths(widths, specs.map((s) => Boolean(s.keep)), max - GAP.length * (widths.length - 1));
  const cs = io.out;
  const line = (cells: Cell[], header: boolean): string =>
    cells
      .map((c, i) => {
        const w = widths[i] ?? 0;
        const t = truncate(textOf(c), w);
        const last = i === cells.length - 1;
        const padded = last ? t : t + ' '.repeat(Math.max(0, w - displayWidth(t)));
        return header ? cs.bold(padded) : styled(c, padded);
      })
      .join(GAP)
      .trimEnd();
  io.print(line(headers, true));
  for (const r of clean) io.print(line(r, false));
}

/** Shrinks the widest columns first until the row fits, never below a readable minimum. */
function fitWidths(widths: number[], keep: boolean[], available: number): void {
  const MIN = 6;
  let total = widths.reduce((a, b) => a + b, 0);
  while (total > available) {
    let widest = -1;
    widths.forEach((w, i) => {
      if (!keep[i] && (widest < 0 || w > (widths[widest] ?? 0))) widest = i;
    });
    const w = widths[widest] ?? 0;
    if (widest < 0 || w <= MIN) return;
    widths[widest] = w - 1;
    total -= 1;
  }
}

/** `--json`: pretty on a terminal, one compact line into a pipe. */
export function printJson(io: IOStreams, value: unknown): void {
  io.print(io.isStdoutTTY ? JSON.stringify(value, null, 2) : JSON.stringify(value));
}
