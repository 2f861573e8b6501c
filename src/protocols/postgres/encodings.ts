/**
 * Client encodings the audit record cannot follow. The engine records statement text as UTF-8.
 * In these client-only encodings (PostgreSQL's encnames.c) the second byte of a character can be
 * an ASCII byte such as `\`, so the server reads different SQL than a UTF-8 reading of the same
 * bytes shows: `E'<0x95>\' ; DROP TABLE t; --'` is one string literal in the record and a DROP
 * on the server. Every other encoding keeps ASCII bytes ASCII.
 */
const UNFAITHFUL = new Set([
  'sjis', 'shiftjis', 'mskanji', 'win932', 'windows932', 'shiftjis2004',
  'big5', 'win950', 'windows950',
  'gbk', 'win936', 'windows936', 'gb18030',
  'uhc', 'win949', 'windows949', 'johab',
]);

/** Whether a client_encoding value (any spelling PostgreSQL accepts) is one of those. */
export function unfaithfulEncoding(value: string): boolean {
  return UNFAITHFUL.has(value.toLowerCase().replace(/[^a-z0-9]/g, ''));
}

// TEMPORARY minimal decoder until the full table lands (UTF8 only, fail closed otherwise).
export interface ClientDecoder { name: string; decode(buf: Buffer): string | null }
const utf8 = new TextDecoder('utf-8', { fatal: true });
export function clientDecoder(value: string): ClientDecoder | null {
  const n = value.toLowerCase().replace(/[^a-z0-9]/g, '');
  if (n === 'utf8' || n === 'unicode') return { name: 'UTF8', decode: (b) => { try { return utf8.decode(b); } catch { return null; } } };
  return null;
}
