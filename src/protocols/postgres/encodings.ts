/**
 * What text PostgreSQL reads from the bytes a client sends, in the session's client_encoding.
 *
 * The server converts every string a client sends (statement text, text-format parameters, COPY
 * data) from client_encoding to its own encoding before its lexer sees it, and converts every
 * text value it sends back; the record must show the characters the server read, not a UTF-8
 * reading of the bytes. Reading LATIN1 as UTF-8 records `DROP TABLE "Ã©"` as `DROP TABLE "é"`,
 * collapses distinct literals into U+FFFD, and in encodings whose second bytes may be ASCII (SJIS,
 * BIG5, GBK, UHC, GB18030, JOHAB) even moves a `\` or `'` in or out of a string literal:
 * `E'<0x95>\' ; DROP TABLE t; --'` is one literal in a UTF-8 reading and a DROP on the server.
 *
 * So `clientDecoder` gives, for each encoding the gateway can read exactly as PostgreSQL does, a
 * decoder whose output is the text the server's conversion to UTF-8 yields, character for
 * character, and that returns null for every byte string the server would reject as invalid or
 * untranslatable. Every decoder was compared with a PostgreSQL 15 server (UTF8 database) for
 * every byte sequence the server's validator accepts (test/protocols/postgres/encodings.test.ts);
 * where an encoding could not be matched exactly it is not offered at all (fail closed):
 *
 * - Single-byte encodings decode through tables taken from PostgreSQL's conversion maps, not
 *   through Node's TextDecoder, which does not read them as PostgreSQL does: WHATWG maps the
 *   label 'iso-8859-1' to windows-1252 and 'iso-8859-9' to windows-1254 (PostgreSQL's LATIN1 and
 *   LATIN5 keep 0x80-0x9F as the C1 controls), Node 20 decodes 'windows-1252' as if it were
 *   ISO-8859-1 (0x80 is U+0080 rather than €), has no ISO-8859-16, and every windows-125x decoder
 *   accepts bytes PostgreSQL has no mapping for (0x81 in WIN1252).
 * - EUC_JP, EUC_KR, EUC_CN and GBK decode through Node's ICU decoders, but only the characters
 *   PostgreSQL maps (listed below as ranges; anything else is null), with the few characters
 *   where ICU and PostgreSQL disagree decoded from PostgreSQL's map instead (EUC_CN 0xA1A4 is
 *   U+30FB, not U+00B7; EUC_KR 0xA2E6 is €, which ICU rejects; EUC_JP's IBM extensions at
 *   0x8FF3F3-0x8FF4FE). The first time one of them is asked for, the decoder decodes every
 *   character PostgreSQL maps and checks the result against a digest of PostgreSQL's own
 *   conversion, so a Node or ICU release that maps differently disables the encoding rather
 *   than misreporting it.
 * - Refused: SJIS and SHIFT_JIS_2004 (ICU's Shift_JIS swaps the control bytes 0x1A, 0x1C and 0x7F
 *   after some characters and maps about 190 characters differently), BIG5 (over 260 characters
 *   map differently), UHC (Node's euc-kr is not code page 949), GB18030 (PostgreSQL follows
 *   GB18030-2005 for characters GB18030-2022 moved, ICU 2022), EUC_TW, EUC_JIS_2004 and JOHAB (no
 *   decoder in Node), MULE_INTERNAL (PostgreSQL itself cannot convert it to UTF-8).
 * - SQL_ASCII: the server does not convert at all, and what it makes of a byte >= 0x80 depends on
 *   the database's encoding, so only pure ASCII decodes; anything else is null.
 * - UTF8: the bytes must be valid UTF-8, as PostgreSQL requires (no surrogates, no overlong
 *   forms); a leading byte-order mark is kept, as the server keeps it.
 *
 * Every decoder returns null for a NUL byte: PostgreSQL rejects NUL in text in every encoding.
 * The comparison was made with a UTF8 database. With a database in another encoding the server
 * converts from client_encoding to that encoding instead (the same characters, or an error for
 * characters the database encoding lacks); with an SQL_ASCII database, or a client_encoding equal
 * to the database's, it only validates, and then accepts bytes a decoder here rejects (0x81 in
 * WIN1252): the gateway refuses what it cannot name, it never names it wrongly.
 */
import { isAscii, isUtf8 } from 'node:buffer';
import { createHash } from 'node:crypto';
import { TextDecoder } from 'node:util';

export interface ClientDecoder {
  /** PostgreSQL's own name for the encoding, as the server reports it: 'UTF8', 'LATIN1', 'WIN1252'. */
  readonly name: string;
  /**
   * Whether every byte below 0x80 is that ASCII character on its own. False only for GBK, whose
   * second bytes may be ASCII (0x40-0x7E): text in it must be decoded before anything looks for
   * quotes, backslashes or semicolons in it.
   */
  readonly asciiSafe: boolean;
  /**
   * The characters PostgreSQL reads from `buf` (one string's bytes, without a terminator), or
   * null when the server would reject them (invalid or untranslatable in this encoding, or a NUL)
   * and the gateway therefore cannot say what the server read.
   */
  decode(buf: Buffer): string | null;
}

/**
 * The PostgreSQL encoding a client_encoding value names, as PostgreSQL spells it ('UTF8',
 * 'LATIN1', 'EUC_JP'), or null for a value PostgreSQL does not accept. PostgreSQL (encnames.c)
 * ignores case and every character that is not a letter or digit, so 'utf-8', 'Unicode',
 * 'ISO_8859-1' and 'windows-1252' are all accepted. A value holding a non-ASCII character, or of
 * 64 bytes or more, is null: whether PostgreSQL ignores such a character depends on the server's
 * locale, and it rejects such long names.
 */
export function normalizeEncodingName(value: string): string | null {
  if (value.length === 0 || Buffer.byteLength(value) >= NAMEDATALEN || !isAsciiString(value)) return null;
  return ENCODING_NAMES[value.replace(/[^A-Za-z0-9]/g, '').toLowerCase()] ?? null;
}

/**
 * The decoder for a client_encoding value (any spelling PostgreSQL accepts), or null when the
 * gateway cannot read that encoding exactly as PostgreSQL does, or the value names no encoding.
 */
export function clientDecoder(encodingName: string): ClientDecoder | null {
  const name = normalizeEncodingName(encodingName);
  if (name === null) return null;
  let decoder = decoders.get(name);
  if (decoder === undefined) {
    decoder = makeDecoder(name);
    decoders.set(name, decoder);
  }
  return decoder;
}

/** The encodings clientDecoder offers, by PostgreSQL's name. */
export function supportedClientEncodings(): string[] {
  return Object.keys(CANONICAL).filter((name) => clientDecoder(name) !== null);
}

/** Whether buf[start, end) holds only bytes below 0x80. */
export function isAsciiOnly(buf: Buffer, start = 0, end = buf.length): boolean {
  return isAscii(start === 0 && end === buf.length ? buf : buf.subarray(start, end));
}

// ---------------------------------------------------------------------------------------------

const NAMEDATALEN = 64;
const NONE = 0xffff; // a byte (or character) PostgreSQL has no mapping for
const decoders = new Map<string, ClientDecoder | null>();

function isAsciiString(s: string): boolean {
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) > 0x7f) return false;
  return true;
}

function makeDecoder(name: string): ClientDecoder | null {
  if (name === 'UTF8') return { name, asciiSafe: true, decode: decodeUtf8 };
  if (name === 'SQL_ASCII') return { name, asciiSafe: true, decode: (buf) => (isAscii(buf) && buf.indexOf(0) < 0 ? buf.toString('latin1') : null) };
  if (name === 'LATIN1') return { name, asciiSafe: true, decode: (buf) => (buf.indexOf(0) < 0 ? buf.toString('latin1') : null) };
  const table = SINGLE_BYTE[name];
  if (table !== undefined) return singleByteDecoder(name, table);
  const spec = MULTI_BYTE[name];
  if (spec !== undefined) return multiByteDecoder(name, spec);
  return null;
}

function decodeUtf8(buf: Buffer): string | null {
  if (buf.indexOf(0) >= 0) return null;
  if (isAscii(buf)) return buf.toString('latin1');
  return isUtf8(buf) ? buf.toString('utf8') : null;
}

// Single-byte encodings -----------------------------------------------------------------------

function singleByteDecoder(name: string, upper: string): ClientDecoder {
  if (upper.length !== 128) throw new Error(`encoding table for ${name} has ${upper.length} entries`);
  // Each byte from 0x80 up as UTF-8, three bytes a slot (every mapped character is in the BMP),
  // with its length; length 0 for a byte PostgreSQL rejects.
  const utf8 = new Uint8Array(128 * 3);
  const lengths = new Uint8Array(128);
  for (let i = 0; i < 128; i++) {
    const c = upper.charCodeAt(i);
    if (c !== NONE) lengths[i] = Buffer.from(String.fromCharCode(c), 'utf8').copy(utf8, i * 3);
  }
  return {
    name,
    asciiSafe: true,
    decode(buf) {
      if (buf.indexOf(0) >= 0) return null;
      if (isAscii(buf)) return buf.toString('latin1');
      const out = Buffer.allocUnsafe(buf.length * 3);
      let at = 0;
      for (let i = 0; i < buf.length; i++) {
        const b = buf[i]!;
        if (b < 0x80) {
          out[at++] = b;
          continue;
        }
        const slot = b - 0x80;
        const len = lengths[slot]!;
        if (len === 0) return null;
        const from = slot * 3;
        out[at++] = utf8[from]!;
        if (len > 1) out[at++] = utf8[from + 1]!;
        if (len > 2) out[at++] = utf8[from + 2]!;
      }
      return out.toString('utf8', 0, at);
    },
  };
}

/** An ISO 8859 table: 0x80-0x9F are the C1 controls U+0080-U+009F; `rows` give 0xA0-0xFF. */
function iso8859(rows: string[]): string {
  let c1 = '';
  for (let c = 0x80; c < 0xa0; c++) c1 += String.fromCharCode(c);
  return c1 + rows.join('');
}

/** A table whose `rows` give 0x80-0xFF, sixteen bytes a row. */
function bytes80toFF(rows: string[]): string {
  return rows.join('');
}

// Multi-byte encodings ------------------------------------------------------------------------

interface MultiByteSpec {
  /** The TextDecoder label whose ICU decoder reads the characters listed in `accepted`. */
  label: string;
  asciiSafe: boolean;
  /** Whether 0x8F starts a three-byte character (EUC_JP's JIS X 0212). */
  ss3: boolean;
  /** Valid second (and third) bytes. */
  trail: (b: number) => boolean;
  /**
   * Every character PostgreSQL maps, as ranges of codes (the character's bytes as one number,
   * in hex) between which every code with valid trailing bytes is mapped.
   */
  accepted: string;
  /**
   * Characters decoded from PostgreSQL's map rather than by ICU: a code, and the characters of
   * that code and of the mapped codes following it.
   */
  overrides: [string, string][];
  /** SHA-256 of PostgreSQL's UTF-8 conversion of the self-check text (see `selfCheck`). */
  digest: string;
}

const eucTrail = (b: number) => b >= 0xa1 && b <= 0xfe;
const gbkTrail = (b: number) => (b >= 0x40 && b <= 0x7e) || (b >= 0x80 && b <= 0xfe);

function multiByteDecoder(name: string, spec: MultiByteSpec): ClientDecoder | null {
  let icu: TextDecoder;
  try {
    icu = new TextDecoder(spec.label, { fatal: true, ignoreBOM: true });
  } catch {
    return null; // a Node built without full ICU
  }
  // What each code is: 0 unmapped, 1 decoded by ICU, 2 overridden. Two-byte codes index `two`
  // directly; EUC_JP's three-byte codes (0x8F and two bytes) index `three` by their last two.
  const two = new Uint8Array(0x10000);
  const three = spec.ss3 ? new Uint8Array(0x10000) : null;
  const override = new Map<number, string>();
  const codes = acceptedCodes(spec);
  for (const code of codes) (code > 0xffff ? three! : two)[code & 0xffff] = 1;
  for (const [first, chars] of spec.overrides) {
    let at = codes.indexOf(parseInt(first, 16));
    for (const ch of chars) {
      const code = codes[at++];
      if (code === undefined) throw new Error(`override ${first} for ${name} runs past the mapped codes`);
      (code > 0xffff ? three! : two)[code & 0xffff] = 2;
      override.set(code, ch);
    }
  }
  if (!selfCheck(spec, icu, codes, override)) return null;

  const decodeRun = (buf: Buffer, start: number, end: number): string | null => {
    if (start === end) return '';
    try {
      return icu.decode(buf.subarray(start, end));
    } catch {
      return null;
    }
  };
  return {
    name,
    asciiSafe: spec.asciiSafe,
    decode(buf) {
      if (buf.indexOf(0) >= 0) return null;
      if (isAscii(buf)) return buf.toString('latin1');
      let out = '';
      let run = 0; // start of the bytes not yet decoded
      const n = buf.length;
      for (let i = 0; i < n; ) {
        const b = buf[i]!;
        if (b < 0x80) {
          i++;
          continue;
        }
        let code: number;
        let state: number;
        let len: number;
        if (b === 0x8f && three !== null) {
          if (i + 3 > n) return null;
          len = 3;
          code = 0x8f0000 | (buf[i + 1]! << 8) | buf[i + 2]!;
          state = three[code & 0xffff]!;
        } else {
          if (i + 2 > n) return null;
          len = 2;
          code = (b << 8) | buf[i + 1]!;
          state = two[code]!;
        }
        if (state === 0) return null;
        if (state === 2) {
          const before = decodeRun(buf, run, i);
          if (before === null) return null;
          out += before + override.get(code)!;
          run = i + len;
        }
        i += len;
      }
      const rest = decodeRun(buf, run, n);
      return rest === null ? null : out + rest;
    },
  };
}

/** Every code `spec.accepted` lists, in order. */
function acceptedCodes(spec: MultiByteSpec): number[] {
  const codes: number[] = [];
  for (const range of spec.accepted.trim().split(/\s+/)) {
    const [from, to] = range.split('-').map((h) => parseInt(h, 16)) as [number, number];
    for (let code = from; code <= to; code++) {
      if (!spec.trail(code & 0xff)) continue;
      if (code > 0xffff && !spec.trail((code >> 8) & 0xff)) continue;
      codes.push(code);
    }
  }
  return codes;
}

/** The code's bytes written at `at` in `out`; returns the position after them. */
function putCode(out: Uint8Array, at: number, code: number): number {
  if (code > 0xffff) out[at++] = code >> 16;
  out[at++] = (code >> 8) & 0xff;
  out[at++] = code & 0xff;
  return at;
}

/**
 * Whether ICU decodes every mapped, not overridden character exactly as PostgreSQL converts it:
 * the self-check text is all those characters in order, then the first of them followed by
 * every ASCII byte from 0x01 to 0x7F (some ICU decoders remap control bytes after a
 * multi-byte character), and its decoding must hash to PostgreSQL's digest.
 */
function selfCheck(spec: MultiByteSpec, icu: TextDecoder, codes: number[], override: Map<number, string>): boolean {
  const out = Buffer.alloc(codes.length * 3 + 3 + 0x7f);
  let at = 0;
  let first: number | undefined;
  for (const code of codes) {
    if (override.has(code)) continue;
    first ??= code;
    at = putCode(out, at, code);
  }
  if (first === undefined) return false;
  at = putCode(out, at, first);
  for (let b = 1; b < 0x80; b++) out[at++] = b;
  let text: string;
  try {
    text = icu.decode(out.subarray(0, at));
  } catch {
    return false;
  }
  return createHash('sha256').update(text, 'utf8').digest('hex') === spec.digest;
}

// Data ----------------------------------------------------------------------------------------

/** PostgreSQL's encoding names (pg_enc2name_tbl), for which the decoders exist or are refused. */
const CANONICAL = {
  SQL_ASCII: 1, EUC_JP: 1, EUC_CN: 1, EUC_KR: 1, EUC_TW: 1, EUC_JIS_2004: 1, UTF8: 1, MULE_INTERNAL: 1,
  LATIN1: 1, LATIN2: 1, LATIN3: 1, LATIN4: 1, LATIN5: 1, LATIN6: 1, LATIN7: 1, LATIN8: 1, LATIN9: 1, LATIN10: 1,
  WIN1256: 1, WIN1258: 1, WIN866: 1, WIN874: 1, KOI8R: 1, WIN1251: 1, WIN1252: 1,
  ISO_8859_5: 1, ISO_8859_6: 1, ISO_8859_7: 1, ISO_8859_8: 1,
  WIN1250: 1, WIN1253: 1, WIN1254: 1, WIN1255: 1, WIN1257: 1, KOI8U: 1,
  SJIS: 1, BIG5: 1, GBK: 1, UHC: 1, GB18030: 1, JOHAB: 1, SHIFT_JIS_2004: 1,
} as const;

/**
 * Every spelling PostgreSQL accepts (pg_encname_tbl in src/common/encnames.c), reduced to lower
 * case letters and digits, and the encoding it names.
 */
const ENCODING_NAMES: Record<string, keyof typeof CANONICAL> = {
  abc: 'WIN1258', alt: 'WIN866', big5: 'BIG5', euccn: 'EUC_CN', eucjis2004: 'EUC_JIS_2004',
  eucjp: 'EUC_JP', euckr: 'EUC_KR', euctw: 'EUC_TW', gb18030: 'GB18030', gbk: 'GBK',
  iso88591: 'LATIN1', iso885910: 'LATIN6', iso885913: 'LATIN7', iso885914: 'LATIN8',
  iso885915: 'LATIN9', iso885916: 'LATIN10', iso88592: 'LATIN2', iso88593: 'LATIN3',
  iso88594: 'LATIN4', iso88595: 'ISO_8859_5', iso88596: 'ISO_8859_6', iso88597: 'ISO_8859_7',
  iso88598: 'ISO_8859_8', iso88599: 'LATIN5', johab: 'JOHAB', koi8: 'KOI8R', koi8r: 'KOI8R',
  koi8u: 'KOI8U', latin1: 'LATIN1', latin10: 'LATIN10', latin2: 'LATIN2', latin3: 'LATIN3',
  latin4: 'LATIN4', latin5: 'LATIN5', latin6: 'LATIN6', latin7: 'LATIN7', latin8: 'LATIN8',
  latin9: 'LATIN9', mskanji: 'SJIS', muleinternal: 'MULE_INTERNAL', shiftjis: 'SJIS',
  shiftjis2004: 'SHIFT_JIS_2004', sjis: 'SJIS', sqlascii: 'SQL_ASCII', tcvn: 'WIN1258',
  tcvn5712: 'WIN1258', uhc: 'UHC', unicode: 'UTF8', utf8: 'UTF8', vscii: 'WIN1258',
  win: 'WIN1251', win1250: 'WIN1250', win1251: 'WIN1251', win1252: 'WIN1252', win1253: 'WIN1253',
  win1254: 'WIN1254', win1255: 'WIN1255', win1256: 'WIN1256', win1257: 'WIN1257',
  win1258: 'WIN1258', win866: 'WIN866', win874: 'WIN874', win932: 'SJIS', win936: 'GBK',
  win949: 'UHC', win950: 'BIG5', windows1250: 'WIN1250', windows1251: 'WIN1251',
  windows1252: 'WIN1252', windows1253: 'WIN1253', windows1254: 'WIN1254', windows1255: 'WIN1255',
  windows1256: 'WIN1256', windows1257: 'WIN1257', windows1258: 'WIN1258', windows866: 'WIN866',
  windows874: 'WIN874', windows932: 'SJIS', windows936: 'GBK', windows949: 'UHC',
  windows950: 'BIG5',
};

/**
 * Bytes 0x80-0xFF of each single-byte encoding but LATIN1 (whose bytes are the code points
 * U+0000-U+00FF), from PostgreSQL's conversion maps to UTF-8; \uFFFF marks a byte PostgreSQL
 * rejects. Bytes below 0x80 are ASCII in every one of them.
 */
const SINGLE_BYTE: Record<string, string> = {
  LATIN2: iso8859([
    '\u00A0Ą˘Ł¤ĽŚ§¨ŠŞŤŹ\u00ADŽŻ',
    '°ą˛ł´ľśˇ¸šşťź˝žż',
    'ŔÁÂĂÄĹĆÇČÉĘËĚÍÎĎ',
    'ĐŃŇÓÔŐÖ×ŘŮÚŰÜÝŢß',
    'ŕáâăäĺćçčéęëěíîď',
    'đńňóôőö÷řůúűüýţ˙',
  ]),
  LATIN3: iso8859([
    '\u00A0Ħ˘£¤\uFFFFĤ§¨İŞĞĴ\u00AD\uFFFFŻ',
    '°ħ²³´µĥ·¸ışğĵ½\uFFFFż',
    'ÀÁÂ\uFFFFÄĊĈÇÈÉÊËÌÍÎÏ',
    '\uFFFFÑÒÓÔĠÖ×ĜÙÚÛÜŬŜß',
    'àáâ\uFFFFäċĉçèéêëìíîï',
    '\uFFFFñòóôġö÷ĝùúûüŭŝ˙',
  ]),
  LATIN4: iso8859([
    '\u00A0ĄĸŖ¤ĨĻ§¨ŠĒĢŦ\u00ADŽ¯',
    '°ą˛ŗ´ĩļˇ¸šēģŧŊžŋ',
    'ĀÁÂÃÄÅÆĮČÉĘËĖÍÎĪ',
    'ĐŅŌĶÔÕÖ×ØŲÚÛÜŨŪß',
    'āáâãäåæįčéęëėíîī',
    'đņōķôõö÷øųúûüũū˙',
  ]),
  LATIN5: iso8859([
    '\u00A0¡¢£¤¥¦§¨©ª«¬\u00AD®¯',
    '°±²³´µ¶·¸¹º»¼½¾¿',
    'ÀÁÂÃÄÅÆÇÈÉÊËÌÍÎÏ',
    'ĞÑÒÓÔÕÖ×ØÙÚÛÜİŞß',
    'àáâãäåæçèéêëìíîï',
    'ğñòóôõö÷øùúûüışÿ',
  ]),
  LATIN6: iso8859([
    '\u00A0ĄĒĢĪĨĶ§ĻĐŠŦŽ\u00ADŪŊ',
    '°ąēģīĩķ·ļđšŧž―ūŋ',
    'ĀÁÂÃÄÅÆĮČÉĘËĖÍÎÏ',
    'ÐŅŌÓÔÕÖŨØŲÚÛÜÝÞß',
    'āáâãäåæįčéęëėíîï',
    'ðņōóôõöũøųúûüýþĸ',
  ]),
  LATIN7: iso8859([
    '\u00A0”¢£¤„¦§Ø©Ŗ«¬\u00AD®Æ',
    '°±²³“µ¶·ø¹ŗ»¼½¾æ',
    'ĄĮĀĆÄÅĘĒČÉŹĖĢĶĪĻ',
    'ŠŃŅÓŌÕÖ×ŲŁŚŪÜŻŽß',
    'ąįāćäåęēčéźėģķīļ',
    'šńņóōõö÷ųłśūüżž’',
  ]),
  LATIN8: iso8859([
    '\u00A0\u1E02\u1E03£Ċċ\u1E0A§\u1E80©\u1E82\u1E0B\u1EF2\u00AD®Ÿ',
    '\u1E1E\u1E1FĠġ\u1E40\u1E41¶\u1E56\u1E81\u1E57\u1E83\u1E60\u1EF3\u1E84\u1E85\u1E61',
    'ÀÁÂÃÄÅÆÇÈÉÊËÌÍÎÏ',
    'ŴÑÒÓÔÕÖ\u1E6AØÙÚÛÜÝŶß',
    'àáâãäåæçèéêëìíîï',
    'ŵñòóôõö\u1E6Bøùúûüýŷÿ',
  ]),
  LATIN9: iso8859([
    '\u00A0¡¢£€¥Š§š©ª«¬\u00AD®¯',
    '°±²³Žµ¶·ž¹º»ŒœŸ¿',
    'ÀÁÂÃÄÅÆÇÈÉÊËÌÍÎÏ',
    'ÐÑÒÓÔÕÖ×ØÙÚÛÜÝÞß',
    'àáâãäåæçèéêëìíîï',
    'ðñòóôõö÷øùúûüýþÿ',
  ]),
  LATIN10: iso8859([
    '\u00A0ĄąŁ€„Š§š©Ș«Ź\u00ADźŻ',
    '°±ČłŽ”¶·žčș»ŒœŸż',
    'ÀÁÂĂÄĆÆÇÈÉÊËÌÍÎÏ',
    'ĐŃÒÓÔŐÖŚŰÙÚÛÜĘȚß',
    'àáâăäćæçèéêëìíîï',
    'đńòóôőöśűùúûüęțÿ',
  ]),
  ISO_8859_5: iso8859([
    '\u00A0ЁЂЃЄЅІЇЈЉЊЋЌ\u00ADЎЏ',
    'АБВГДЕЖЗИЙКЛМНОП',
    'РСТУФХЦЧШЩЪЫЬЭЮЯ',
    'абвгдежзийклмноп',
    'рстуфхцчшщъыьэюя',
    '№ёђѓєѕіїјљњћќ§ўџ',
  ]),
  ISO_8859_6: iso8859([
    '\u00A0\uFFFF\uFFFF\uFFFF¤\uFFFF\uFFFF\uFFFF\uFFFF\uFFFF\uFFFF\uFFFF\u060C\u00AD\uFFFF\uFFFF',
    '\uFFFF\uFFFF\uFFFF\uFFFF\uFFFF\uFFFF\uFFFF\uFFFF\uFFFF\uFFFF\uFFFF\u061B\uFFFF\uFFFF\uFFFF\u061F',
    '\uFFFF\u0621\u0622\u0623\u0624\u0625\u0626\u0627\u0628\u0629\u062A\u062B\u062C\u062D\u062E\u062F',
    '\u0630\u0631\u0632\u0633\u0634\u0635\u0636\u0637\u0638\u0639\u063A\uFFFF\uFFFF\uFFFF\uFFFF\uFFFF',
    '\u0640\u0641\u0642\u0643\u0644\u0645\u0646\u0647\u0648\u0649\u064A\u064B\u064C\u064D\u064E\u064F',
    '\u0650\u0651\u0652\uFFFF\uFFFF\uFFFF\uFFFF\uFFFF\uFFFF\uFFFF\uFFFF\uFFFF\uFFFF\uFFFF\uFFFF\uFFFF',
  ]),
  ISO_8859_7: iso8859([
    '\u00A0‘’£€₯¦§¨©ͺ«¬\u00AD\uFFFF―',
    '°±²³΄΅Ά·ΈΉΊ»Ό½ΎΏ',
    'ΐΑΒΓΔΕΖΗΘΙΚΛΜΝΞΟ',
    'ΠΡ\uFFFFΣΤΥΦΧΨΩΪΫάέήί',
    'ΰαβγδεζηθικλμνξο',
    'πρςστυφχψωϊϋόύώ\uFFFF',
  ]),
  ISO_8859_8: iso8859([
    '\u00A0\uFFFF¢£¤¥¦§¨©×«¬\u00AD®¯',
    '°±²³´µ¶·¸¹÷»¼½¾\uFFFF',
    '\uFFFF\uFFFF\uFFFF\uFFFF\uFFFF\uFFFF\uFFFF\uFFFF\uFFFF\uFFFF\uFFFF\uFFFF\uFFFF\uFFFF\uFFFF\uFFFF',
    '\uFFFF\uFFFF\uFFFF\uFFFF\uFFFF\uFFFF\uFFFF\uFFFF\uFFFF\uFFFF\uFFFF\uFFFF\uFFFF\uFFFF\uFFFF‗',
    '\u05D0\u05D1\u05D2\u05D3\u05D4\u05D5\u05D6\u05D7\u05D8\u05D9\u05DA\u05DB\u05DC\u05DD\u05DE\u05DF',
    '\u05E0\u05E1\u05E2\u05E3\u05E4\u05E5\u05E6\u05E7\u05E8\u05E9\u05EA\uFFFF\uFFFF\u200E\u200F\uFFFF',
  ]),
  WIN1250: bytes80toFF([
    '€\uFFFF‚\uFFFF„…†‡\uFFFF‰Š‹ŚŤŽŹ',
    '\uFFFF‘’“”•–—\uFFFF™š›śťžź',
    '\u00A0ˇ˘Ł¤Ą¦§¨©Ş«¬\u00AD®Ż',
    '°±˛ł´µ¶·¸ąş»Ľ˝ľż',
    'ŔÁÂĂÄĹĆÇČÉĘËĚÍÎĎ',
    'ĐŃŇÓÔŐÖ×ŘŮÚŰÜÝŢß',
    'ŕáâăäĺćçčéęëěíîď',
    'đńňóôőö÷řůúűüýţ˙',
  ]),
  WIN1251: bytes80toFF([
    'ЂЃ‚ѓ„…†‡€‰Љ‹ЊЌЋЏ',
    'ђ‘’“”•–—\uFFFF™љ›њќћџ',
    '\u00A0ЎўЈ¤Ґ¦§Ё©Є«¬\u00AD®Ї',
    '°±Ііґµ¶·ё№є»јЅѕї',
    'АБВГДЕЖЗИЙКЛМНОП',
    'РСТУФХЦЧШЩЪЫЬЭЮЯ',
    'абвгдежзийклмноп',
    'рстуфхцчшщъыьэюя',
  ]),
  WIN1252: bytes80toFF([
    '€\uFFFF‚ƒ„…†‡ˆ‰Š‹Œ\uFFFFŽ\uFFFF',
    '\uFFFF‘’“”•–—˜™š›œ\uFFFFžŸ',
    '\u00A0¡¢£¤¥¦§¨©ª«¬\u00AD®¯',
    '°±²³´µ¶·¸¹º»¼½¾¿',
    'ÀÁÂÃÄÅÆÇÈÉÊËÌÍÎÏ',
    'ÐÑÒÓÔÕÖ×ØÙÚÛÜÝÞß',
    'àáâãäåæçèéêëìíîï',
    'ðñòóôõö÷øùúûüýþÿ',
  ]),
  WIN1253: bytes80toFF([
    '€\uFFFF‚ƒ„…†‡\uFFFF‰\uFFFF‹\uFFFF\uFFFF\uFFFF\uFFFF',
    '\uFFFF‘’“”•–—\uFFFF™\uFFFF›\uFFFF\uFFFF\uFFFF\uFFFF',
    '\u00A0΅Ά£¤¥¦§¨©\uFFFF«¬\u00AD®―',
    '°±²³΄µ¶·ΈΉΊ»Ό½ΎΏ',
    'ΐΑΒΓΔΕΖΗΘΙΚΛΜΝΞΟ',
    'ΠΡ\uFFFFΣΤΥΦΧΨΩΪΫάέήί',
    'ΰαβγδεζηθικλμνξο',
    'πρςστυφχψωϊϋόύώ\uFFFF',
  ]),
  WIN1254: bytes80toFF([
    '€\uFFFF‚ƒ„…†‡ˆ‰Š‹Œ\uFFFF\uFFFF\uFFFF',
    '\uFFFF‘’“”•–—˜™š›œ\uFFFF\uFFFFŸ',
    '\u00A0¡¢£¤¥¦§¨©ª«¬\u00AD®¯',
    '°±²³´µ¶·¸¹º»¼½¾¿',
    'ÀÁÂÃÄÅÆÇÈÉÊËÌÍÎÏ',
    'ĞÑÒÓÔÕÖ×ØÙÚÛÜİŞß',
    'àáâãäåæçèéêëìíîï',
    'ğñòóôõö÷øùúûüışÿ',
  ]),
  WIN1255: bytes80toFF([
    '€\uFFFF‚ƒ„…†‡ˆ‰\uFFFF‹\uFFFF\uFFFF\uFFFF\uFFFF',
    '\uFFFF‘’“”•–—˜™\uFFFF›\uFFFF\uFFFF\uFFFF\uFFFF',
    '\u00A0¡¢£₪¥¦§¨©×«¬\u00AD®¯',
    '°±²³´µ¶·¸¹÷»¼½¾¿',
    '\u05B0\u05B1\u05B2\u05B3\u05B4\u05B5\u05B6\u05B7\u05B8\u05B9\uFFFF\u05BB\u05BC\u05BD\u05BE\u05BF',
    '\u05C0\u05C1\u05C2\u05C3\u05F0\u05F1\u05F2\u05F3\u05F4\uFFFF\uFFFF\uFFFF\uFFFF\uFFFF\uFFFF\uFFFF',
    '\u05D0\u05D1\u05D2\u05D3\u05D4\u05D5\u05D6\u05D7\u05D8\u05D9\u05DA\u05DB\u05DC\u05DD\u05DE\u05DF',
    '\u05E0\u05E1\u05E2\u05E3\u05E4\u05E5\u05E6\u05E7\u05E8\u05E9\u05EA\uFFFF\uFFFF\u200E\u200F\uFFFF',
  ]),
  WIN1256: bytes80toFF([
    '€\u067E‚ƒ„…†‡ˆ‰\u0679‹Œ\u0686\u0698\u0688',
    '\u06AF‘’“”•–—\u06A9™\u0691›œ\u200C\u200D\u06BA',
    '\u00A0\u060C¢£¤¥¦§¨©\u06BE«¬\u00AD®¯',
    '°±²³´µ¶·¸¹\u061B»¼½¾\u061F',
    '\u06C1\u0621\u0622\u0623\u0624\u0625\u0626\u0627\u0628\u0629\u062A\u062B\u062C\u062D\u062E\u062F',
    '\u0630\u0631\u0632\u0633\u0634\u0635\u0636×\u0637\u0638\u0639\u063A\u0640\u0641\u0642\u0643',
    'à\u0644â\u0645\u0646\u0647\u0648çèéêë\u0649\u064Aîï',
    '\u064B\u064C\u064D\u064Eô\u064F\u0650÷\u0651ù\u0652ûü\u200E\u200F\u06D2',
  ]),
  WIN1257: bytes80toFF([
    '€\uFFFF‚\uFFFF„…†‡\uFFFF‰\uFFFF‹\uFFFF¨ˇ¸',
    '\uFFFF‘’“”•–—\uFFFF™\uFFFF›\uFFFF¯˛\uFFFF',
    '\u00A0\uFFFF¢£¤\uFFFF¦§Ø©Ŗ«¬\u00AD®Æ',
    '°±²³´µ¶·ø¹ŗ»¼½¾æ',
    'ĄĮĀĆÄÅĘĒČÉŹĖĢĶĪĻ',
    'ŠŃŅÓŌÕÖ×ŲŁŚŪÜŻŽß',
    'ąįāćäåęēčéźėģķīļ',
    'šńņóōõö÷ųłśūüżž˙',
  ]),
  WIN1258: bytes80toFF([
    '€\uFFFF‚ƒ„…†‡ˆ‰\uFFFF‹Œ\uFFFF\uFFFF\uFFFF',
    '\uFFFF‘’“”•–—˜™\uFFFF›œ\uFFFF\uFFFFŸ',
    '\u00A0¡¢£¤¥¦§¨©ª«¬\u00AD®¯',
    '°±²³´µ¶·¸¹º»¼½¾¿',
    'ÀÁÂĂÄÅÆÇÈÉÊË\u0300ÍÎÏ',
    'ĐÑ\u0309ÓÔƠÖ×ØÙÚÛÜƯ\u0303ß',
    'àáâăäåæçèéêë\u0301íîï',
    'đñ\u0323óôơö÷øùúûüư₫ÿ',
  ]),
  WIN866: bytes80toFF([
    'АБВГДЕЖЗИЙКЛМНОП',
    'РСТУФХЦЧШЩЪЫЬЭЮЯ',
    'абвгдежзийклмноп',
    '░▒▓│┤╡╢╖╕╣║╗╝╜╛┐',
    '└┴┬├─┼╞╟╚╔╩╦╠═╬╧',
    '╨╤╥╙╘╒╓╫╪┘┌█▄▌▐▀',
    'рстуфхцчшщъыьэюя',
    'ЁёЄєЇїЎў°∙·√№¤■\u00A0',
  ]),
  WIN874: bytes80toFF([
    '€\uFFFF\uFFFF\uFFFF\uFFFF…\uFFFF\uFFFF\uFFFF\uFFFF\uFFFF\uFFFF\uFFFF\uFFFF\uFFFF\uFFFF',
    '\uFFFF‘’“”•–—\uFFFF\uFFFF\uFFFF\uFFFF\uFFFF\uFFFF\uFFFF\uFFFF',
    '\u00A0\u0E01\u0E02\u0E03\u0E04\u0E05\u0E06\u0E07\u0E08\u0E09\u0E0A\u0E0B\u0E0C\u0E0D\u0E0E\u0E0F',
    '\u0E10\u0E11\u0E12\u0E13\u0E14\u0E15\u0E16\u0E17\u0E18\u0E19\u0E1A\u0E1B\u0E1C\u0E1D\u0E1E\u0E1F',
    '\u0E20\u0E21\u0E22\u0E23\u0E24\u0E25\u0E26\u0E27\u0E28\u0E29\u0E2A\u0E2B\u0E2C\u0E2D\u0E2E\u0E2F',
    '\u0E30\u0E31\u0E32\u0E33\u0E34\u0E35\u0E36\u0E37\u0E38\u0E39\u0E3A\uFFFF\uFFFF\uFFFF\uFFFF\u0E3F',
    '\u0E40\u0E41\u0E42\u0E43\u0E44\u0E45\u0E46\u0E47\u0E48\u0E49\u0E4A\u0E4B\u0E4C\u0E4D\u0E4E\u0E4F',
    '\u0E50\u0E51\u0E52\u0E53\u0E54\u0E55\u0E56\u0E57\u0E58\u0E59\u0E5A\u0E5B\uFFFF\uFFFF\uFFFF\uFFFF',
  ]),
  KOI8R: bytes80toFF([
    '─│┌┐└┘├┤┬┴┼▀▄█▌▐',
    '░▒▓⌠■∙√≈≤≥\u00A0⌡°²·÷',
    '═║╒ё╓╔╕╖╗╘╙╚╛╜╝╞',
    '╟╠╡Ё╢╣╤╥╦╧╨╩╪╫╬©',
    'юабцдефгхийклмно',
    'пярстужвьызшэщчъ',
    'ЮАБЦДЕФГХИЙКЛМНО',
    'ПЯРСТУЖВЬЫЗШЭЩЧЪ',
  ]),
  KOI8U: bytes80toFF([
    '─│┌┐└┘├┤┬┴┼▀▄█▌▐',
    '░▒▓⌠■∙√≈≤≥\u00A0⌡°²·÷',
    '═║╒ёє╔ії╗╘╙╚╛ґ╝╞',
    '╟╠╡ЁЄ╣ІЇ╦╧╨╩╪Ґ╬©',
    'юабцдефгхийклмно',
    'пярстужвьызшэщчъ',
    'ЮАБЦДЕФГХИЙКЛМНО',
    'ПЯРСТУЖВЬЫЗШЭЩЧЪ',
  ]),
};

/** The multi-byte encodings decoded through ICU, with PostgreSQL's map to check it against. */
const MULTI_BYTE: Record<string, MultiByteSpec> = {
  EUC_JP: {
    label: 'euc-jp',
    asciiSafe: true,
    ss3: true,
    trail: eucTrail,
    accepted: `
      a1a1-a2ae a2ba-a2c1 a2ca-a2d0 a2dc-a2ea a2f2-a2f9 a2fe-a2fe a3b0-a3b9 a3c1-a3da
      a3e1-a3fa a4a1-a4f3 a5a1-a5f6 a6a1-a6b8 a6c1-a6d8 a7a1-a7c1 a7d1-a7f1 a8a1-a8c0
      ada1-adbe adc0-add6 addf-adfc b0a1-cfd3 d0a1-f4a6 8fa2af-8fa2b6 8fa2b8-8fa2b9
      8fa2c2-8fa2c4 8fa2eb-8fa2f1 8fa6e1-8fa6e5 8fa6e7-8fa6e7 8fa6e9-8fa6ea 8fa6ec-8fa6ec
      8fa6f1-8fa6fc 8fa7c2-8fa7ce 8fa7f2-8fa7fe 8fa9a1-8fa9a2 8fa9a4-8fa9a4 8fa9a6-8fa9a6
      8fa9a8-8fa9a9 8fa9ab-8fa9ad 8fa9af-8fa9b0 8fa9c1-8fa9d0 8faaa1-8faab8 8faaba-8faaf7
      8faba1-8fabbb 8fabbd-8fabc3 8fabc5-8fabf7 8fb0a1-8fede3 8ff3f3-8ff4fe 8ea1-8edf
    `,
    overrides: [
      ['8fa2c3', '\uFFE4'],
      [
        '8ff3f3',
        '\u2170\u2171\u2172\u2173\u2174\u2175\u2176\u2177\u2178\u2179\u2160\u2161\u2162\u2163' +
        '\u2164\u2165\u2166\u2167\u2168\u2169\uFF07\uFF02\u3231\u2116\u2121\u70BB\u4EFC\u50F4' +
        '\u51EC\u5307\u5324\uFA0E\u548A\u5759\uFA0F\uFA10\u589E\u5BEC\u5CF5\u5D53\uFA11\u5FB7' +
        '\u6085\u6120\u654E\u663B\u6665\uFA12\uF929\u6801\uFA13\uFA14\u6A6B\u6AE2\u6DF8\u6DF2' +
        '\u7028\uFA15\uFA16\u7501\u7682\u769E\uFA17\u7930\uFA18\uFA19\uFA1A\uFA1B\u7AE7\uFA1C' +
        '\uFA1D\u7DA0\u7DD6\uFA1E\u8362\uFA1F\u85B0\uFA20\uFA21\u8807\uFA22\u8B7F\u8CF4\u8D76' +
        '\uFA23\uFA24\uFA25\u90DE\uFA26\u9115\uFA27\uFA28\u9592\uF9DC\uFA29\u973B\u974D\u9751' +
        '\uFA2A\uFA2B\uFA2C\u999E\u9AD9\u9B72\uFA2D\u9ED1',
      ],
    ],
    digest: 'da42d45a2ae04ddf412c6f184f6d6083d090722d363b1012500780b5a4becbac',
  },
  EUC_KR: {
    label: 'euc-kr',
    asciiSafe: true,
    ss3: false,
    trail: eucTrail,
    accepted: `
      a1a1-a2e8 a3a1-a5aa a5b0-a5b9 a5c1-a5d8 a5e1-a5f8 a6a1-a6e4 a7a1-a7ef a8a1-a8a4
      a8a6-a8a6 a8a8-a8af a8b1-aaf3 aba1-abf6 aca1-acc1 acd1-acf1 b0a1-c8fe caa1-fdfe
    `,
    overrides: [
      ['a2e6', '\u20AC\u00AE\u327E'],
    ],
    digest: '1236a874687ea89f69d19bacc5b5089518d01a7fc1ac2f9df312b2a73376b06e',
  },
  EUC_CN: {
    label: 'gb2312',
    asciiSafe: true,
    ss3: false,
    trail: eucTrail,
    accepted: `
      a1a1-a1fe a2b1-a2e2 a2e5-a2ee a2f1-a2fc a3a1-a4f3 a5a1-a5f6 a6a1-a6b8 a6c1-a6d8
      a7a1-a7c1 a7d1-a7f1 a8a1-a8ba a8c5-a8e9 a9a4-a9ef b0a1-d7f9 d8a1-f7fe
    `,
    overrides: [
      ['a1a4', '\u30FB'],
      ['a1aa', '\u2015'],
    ],
    digest: '1f0ff3b4151016bc9cebd18b61ba7a18142a310731eeafb47f61ec4d8c4cd975',
  },
  GBK: {
    label: 'gbk',
    asciiSafe: false,
    ss3: false,
    trail: gbkTrail,
    accepted: `
      8140-a0fe a1a1-a1fe a2a1-a2aa a2b1-a2e2 a2e5-a2ee a2f1-a2fc a3a1-a3fe a4a1-a4f3
      a5a1-a5f6 a6a1-a6b8 a6c1-a6d8 a6e0-a6eb a6ee-a6f2 a6f4-a6f5 a7a1-a7c1 a7d1-a7f1
      a840-a895 a8a1-a8bb a8bd-a8be a8c0-a8c0 a8c5-a8e9 a940-a957 a959-a95a a95c-a95c
      a960-a988 a996-a996 a9a4-a9ef aa40-aaa0 ab40-aba0 ac40-aca0 ad40-ada0 ae40-aea0
      af40-afa0 b040-d7f9 d840-f8a0 f940-f9a0 fa40-faa0 fb40-fba0 fc40-fca0 fd40-fda0
      fe40-fe4f
    `,
    overrides: [],
    digest: '60d4deaf09ed37a3857f95c11aae929cfcad9d11571a79f6d827af2a49ab185d',
  },
};
