/**
 * The gateway's log lines for a person at a terminal: pino writes its JSON line here, and it
 * comes out as `09:12:03 INFO  gateway listening  url=http://127.0.0.1:8009 connections=2`.
 * Away from a terminal the JSON lines go out as they are (for log shipping); this is only the
 * view. Redaction has happened before the line gets here.
 */
import type { DestinationStream } from 'pino';
import type { ColorScheme } from './iostreams.js';
import { sanitize } from './output.js';

const LEVELS: Record<number, string> = { 10: 'TRACE', 20: 'DEBUG', 30: 'INFO', 40: 'WARN', 50: 'ERROR', 60: 'FATAL' };
/** Fields every line has, or that the line's layout already shows. */
const SHOWN = new Set(['level', 'time', 'msg', 'pid', 'hostname', 'service', 'name']);

export function prettyLogStream(write: (text: string) => void, cs: ColorScheme): DestinationStream {
  return { write: (line: string) => write(formatLogLine(line, cs)) };
}

export function formatLogLine(line: string, cs: ColorScheme): string {
  let record: Record<string, unknown>;
  try {
    record = JSON.parse(line) as Record<string, unknown>;
  } catch {
    return line.endsWith('\n') ? line : `${line}\n`;
  }
  const level = typeof record.level === 'number' ? record.level : 30;
  const label = (LEVELS[level] ?? String(level)).padEnd(5);
  const styled = level >= 50 ? cs.red(label) : level >= 40 ? cs.yellow(label) : level >= 30 ? cs.green(label) : cs.dim(label);
  const fields = Object.entries(record)
    .filter(([k]) => !SHOWN.has(k))
    .map(([k, v]) => `${cs.dim(`${sanitize(k)}=`)}${valueText(v)}`);
  const parts = [cs.dim(clock(record.time)), styled, sanitize(String(record.msg ?? ''))];
  return `${parts.join(' ')}${fields.length ? `  ${fields.join(' ')}` : ''}\n`;
}

/** Local wall-clock time of the record, as `hoop connect` prints its events. */
function clock(time: unknown): string {
  const d = new Date(typeof time === 'string' || typeof time === 'number' ? time : Date.now());
  if (Number.isNaN(d.getTime())) return '--:--:--';
  return [d.getHours(), d.getMinutes(), d.getSeconds()].map((n) => String(n).padStart(2, '0')).join(':');
}

function valueText(v: unknown): string {
  if (typeof v === 'string') return sanitize(/^[^\s"=]+$/.test(v) ? v : JSON.stringify(v));
  return sanitize(JSON.stringify(v) ?? String(v));
}
