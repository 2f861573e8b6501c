/**
 * Statement text for the record, read the way the server reads it: in the session's client
 * encoding, kept up to a limit with the length and SHA-256 of all of it, hashed in slices so a
 * huge message never stalls other sessions.
 */
import { createHash } from 'node:crypto';
import { setImmediate as yieldToOthers } from 'node:timers/promises';
import type { ClientDecoder } from './encodings.js';

/** Bytes hashed per turn of the event loop. */
const HASH_SLICE = 1024 * 1024;

export interface RecordedText {
  text: string;
  bytes: number;
  sha256: string;
  truncated: boolean;
}

/** The bytes of a NUL-terminated string starting at `at` (bounded by `end`), or null if unterminated. */
export function cstringAt(buf: Buffer, at: number, end: number): Buffer | null {
  const nul = buf.indexOf(0, at);
  return nul < 0 || nul >= end ? null : buf.subarray(at, nul);
}

/**
 * Decodes `bytes` in the client encoding, keeping at most `limit` bytes of text; null when the
 * bytes are not valid in that encoding (the gateway cannot say what the server will read).
 */
export async function recordedText(bytes: Buffer, decoder: ClientDecoder, limit: number): Promise<RecordedText | null> {
  const truncated = bytes.length > limit;
  let text: string | null = null;
  if (!truncated) text = decoder.decode(bytes);
  else {
    // Cut on a character boundary: back off over at most a few bytes of a split character.
    for (let cut = limit; cut >= Math.max(0, limit - 4) && text === null; cut--) text = decoder.decode(bytes.subarray(0, cut));
  }
  if (text === null) return null;
  const fitted = withinJsonLimit(text, limit);
  return { text: fitted, bytes: bytes.length, sha256: await sha256InSlices(bytes), truncated: truncated || fitted.length < text.length };
}

/**
 * The longest start of `text` whose JSON encoding stays within `limit` bytes: a control byte
 * costs six (`\u0001`), so text full of them would otherwise be kept at six times the limit.
 */
function withinJsonLimit(text: string, limit: number): string {
  let size = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    size += c < 0x20 ? (c === 0x0a || c === 0x09 || c === 0x0d || c === 0x08 || c === 0x0c ? 2 : 6) : c === 0x22 || c === 0x5c ? 2 : c < 0x80 ? 1 : c < 0x800 ? 2 : 3;
    if (size > limit) return text.slice(0, i > 0 && (text.charCodeAt(i - 1) & 0xfc00) === 0xd800 ? i - 1 : i);
  }
  return text;
}

export function sha256Of(bytes: Buffer): string {
  return createHash('sha256').update(bytes).digest('hex');
}

export async function sha256InSlices(bytes: Buffer): Promise<string> {
  const hash = createHash('sha256');
  for (let at = 0; at < bytes.length; at += HASH_SLICE) {
    if (at > 0) await yieldToOthers();
    hash.update(bytes.subarray(at, Math.min(bytes.length, at + HASH_SLICE)));
  }
  return hash.digest('hex');
}

/** ASCII lower-case view for the risk checks below (non-ASCII bytes cannot spell keywords). */
export function lowerAscii(bytes: Buffer): string {
  return bytes.toString('latin1').toLowerCase();
}

/**
 * A statement that may change how the server reads later messages when it runs: client_encoding
 * or standard_conforming_strings, by SET, RESET, set_config, a COMMIT or ROLLBACK undoing a SET
 * LOCAL (or a SET in a failed block), PREPARE TRANSACTION, DO, CALL.
 * (A function that calls set_config inside is beyond what the text shows: see the README.)
 */
function mayChangeSettings(lower: string): boolean {
  return /encoding|names|conforming|reset|discard|set_config|rollback|abort|commit|\bend\b|prepare|\bdo\b|\bcall\b/.test(lower);
}

/** A statement that may enter COPY-in mode (only a top-level COPY ... FROM STDIN does). */
function mayCopyIn(lower: string): boolean {
  return lower.includes('copy') && lower.includes('stdin');
}

/** What a statement's text says it may do when it runs, for the forwarder's waits. */
export interface Risks {
  /** May replace named statements or portals (catalog.ts). */
  names: boolean;
  /** May change client_encoding or standard_conforming_strings. */
  settings: boolean;
  /** May enter COPY-in mode. */
  copyIn: boolean;
}

export const NO_RISKS: Risks = Object.freeze({ names: false, settings: false, copyIn: false });
export const ALL_RISKS: Risks = Object.freeze({ names: true, settings: true, copyIn: true });

export function risksOf(lower: string): Risks {
  return { names: mayTouchNames(lower), settings: mayChangeSettings(lower), copyIn: mayCopyIn(lower) };
}

/**
 * Statement texts (ASCII, lower-cased) that may touch protocol names when they run: the forwarder
 * waits for them to complete before it names what a named statement or portal holds.
 */
function mayTouchNames(lower: string): boolean {
  return /prepare|deallocate|discard|declare|close|\bdo\b|\bcall\b/.test(lower);
}
