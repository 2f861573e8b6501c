/**
 * The client_encoding decoders must say what PostgreSQL reads: every decoder is compared, for
 * every byte sequence of interest, with the server's own conversion (convert_from, the function
 * the server applies to a client's text), and end to end through a real session whose
 * client_encoding is set, sending raw bytes in a simple Query.
 */
import { connect, type Socket } from 'node:net';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, test } from 'vitest';
import {
  clientDecoder,
  isAsciiOnly,
  normalizeEncodingName,
  supportedClientEncodings,
} from '../../../src/protocols/postgres/encodings.js';
import { frame, MessageType, startupMessage } from '../../../src/protocols/postgres/messages.js';

const upstream = inject('upstream');

const SINGLE_BYTE = [
  'LATIN1', 'LATIN2', 'LATIN3', 'LATIN4', 'LATIN5', 'LATIN6', 'LATIN7', 'LATIN8', 'LATIN9', 'LATIN10',
  'ISO_8859_5', 'ISO_8859_6', 'ISO_8859_7', 'ISO_8859_8',
  'WIN1250', 'WIN1251', 'WIN1252', 'WIN1253', 'WIN1254', 'WIN1255', 'WIN1256', 'WIN1257', 'WIN1258',
  'WIN866', 'WIN874', 'KOI8R', 'KOI8U',
];
const MULTI_BYTE = ['EUC_JP', 'EUC_KR', 'EUC_CN', 'GBK'];
const REFUSED = ['SJIS', 'SHIFT_JIS_2004', 'BIG5', 'UHC', 'GB18030', 'JOHAB', 'EUC_TW', 'EUC_JIS_2004', 'MULE_INTERNAL'];

/** Every spelling in PostgreSQL's pg_encname_tbl (src/common/encnames.c). */
const PG_ALIASES = [
  'abc', 'alt', 'big5', 'euccn', 'eucjis2004', 'eucjp', 'euckr', 'euctw', 'gb18030', 'gbk', 'iso88591',
  'iso885910', 'iso885913', 'iso885914', 'iso885915', 'iso885916', 'iso88592', 'iso88593', 'iso88594',
  'iso88595', 'iso88596', 'iso88597', 'iso88598', 'iso88599', 'johab', 'koi8', 'koi8r', 'koi8u', 'latin1',
  'latin10', 'latin2', 'latin3', 'latin4', 'latin5', 'latin6', 'latin7', 'latin8', 'latin9', 'mskanji',
  'muleinternal', 'shiftjis', 'shiftjis2004', 'sjis', 'sqlascii', 'tcvn', 'tcvn5712', 'uhc', 'unicode', 'utf8',
  'vscii', 'win', 'win1250', 'win1251', 'win1252', 'win1253', 'win1254', 'win1255', 'win1256', 'win1257',
  'win1258', 'win866', 'win874', 'win932', 'win936', 'win949', 'win950', 'windows1250', 'windows1251',
  'windows1252', 'windows1253', 'windows1254', 'windows1255', 'windows1256', 'windows1257', 'windows1258',
  'windows866', 'windows874', 'windows932', 'windows936', 'windows949', 'windows950',
];

const hex = (bytes: number[]) => Buffer.from(bytes);
const decoderFor = (name: string) => {
  const d = clientDecoder(name);
  if (d === null) throw new Error(`no decoder for ${name}`);
  return d;
};

describe('normalizeEncodingName', () => {
  test.each([
    ['UTF8', 'UTF8'], ['utf-8', 'UTF8'], ['Unicode', 'UTF8'], ['LATIN1', 'LATIN1'], ['ISO-8859-1', 'LATIN1'],
    ['ISO88591', 'LATIN1'], ['iso_8859_1', 'LATIN1'], ['latin 9', 'LATIN9'], ['ISO-8859-16', 'LATIN10'],
    ['WIN1252', 'WIN1252'], ['windows-1252', 'WIN1252'], ['KOI8R', 'KOI8R'], ['koi8', 'KOI8R'], ['KOI8-U', 'KOI8U'],
    ['EUC_JP', 'EUC_JP'], ['euc-jp', 'EUC_JP'], ['SQL_ASCII', 'SQL_ASCII'], ['Shift_JIS', 'SJIS'], ['win', 'WIN1251'],
    ['alt', 'WIN866'], ['TCVN5712', 'WIN1258'], ['ISO_8859_5', 'ISO_8859_5'], ['mule_internal', 'MULE_INTERNAL'],
  ])('%s is %s', (value, name) => {
    expect(normalizeEncodingName(value)).toBe(name);
  });

  test.each(['', 'utf16', 'ascii', 'us-ascii', 'latin11', 'iso885911', 'cp1252', 'LATİN1', 'latin1\u00a0', 'u-'.repeat(31) + 'tf8'])(
    '%j names no encoding',
    (value) => {
      expect(normalizeEncodingName(value)).toBeNull();
    },
  );
});

describe('clientDecoder', () => {
  test('offers exactly the encodings it reads as PostgreSQL does, under any spelling', () => {
    expect(supportedClientEncodings().sort()).toEqual(['UTF8', 'SQL_ASCII', ...SINGLE_BYTE, ...MULTI_BYTE].sort());
    for (const name of REFUSED) expect(clientDecoder(name), name).toBeNull();
    expect(clientDecoder('bogus')).toBeNull();
    expect(clientDecoder('windows-1252')?.name).toBe('WIN1252');
    expect(clientDecoder('unicode')?.name).toBe('UTF8');
  });

  test('LATIN1 keeps 0x80-0x9F as C1 controls, where WHATWG would read windows-1252', () => {
    expect(decoderFor('LATIN1').decode(hex([0x80, 0x92, 0xe9]))).toBe('\u0080\u0092é');
    expect(decoderFor('WIN1252').decode(hex([0x80, 0x92, 0xe9]))).toBe('€’é');
    expect(decoderFor('LATIN5').decode(hex([0x80, 0xdd]))).toBe('\u0080İ');
  });

  test('the DROP TABLE "Ã©" sent in LATIN1 is recorded as sent', () => {
    const sql = Buffer.concat([Buffer.from('DROP TABLE "'), hex([0xc3, 0xa9]), Buffer.from('"')]);
    expect(decoderFor('LATIN1').decode(sql)).toBe('DROP TABLE "Ã©"');
    expect(decoderFor('LATIN1').decode(hex([0xe9]))).not.toBe(decoderFor('LATIN1').decode(hex([0xe8])));
  });

  test('bytes the server rejects decode to null', () => {
    expect(decoderFor('WIN1252').decode(hex([0x41, 0x81]))).toBeNull();
    expect(decoderFor('LATIN3').decode(hex([0xa5]))).toBeNull();
    expect(decoderFor('UTF8').decode(hex([0xc3]))).toBeNull();
    expect(decoderFor('UTF8').decode(hex([0xed, 0xa0, 0x80]))).toBeNull(); // a surrogate
    expect(decoderFor('UTF8').decode(hex([0xc0, 0xa7]))).toBeNull(); // an overlong '
    expect(decoderFor('EUC_JP').decode(hex([0xa4]))).toBeNull(); // truncated
    expect(decoderFor('EUC_KR').decode(hex([0xc9, 0xa1]))).toBeNull(); // user-defined area ICU maps to U+E000
    expect(decoderFor('GBK').decode(hex([0x80]))).toBeNull(); // ICU's € in GBK, not PostgreSQL's
    for (const name of supportedClientEncodings()) expect(decoderFor(name).decode(hex([0x41, 0, 0x42])), name).toBeNull();
  });

  test('SQL_ASCII reads ASCII only', () => {
    const d = decoderFor('SQL_ASCII');
    expect(d.decode(Buffer.from("select 'x'"))).toBe("select 'x'");
    expect(d.decode(hex([0x41, 0xe9]))).toBeNull();
  });

  test('UTF8 keeps a byte-order mark, as the server does', () => {
    expect(decoderFor('UTF8').decode(hex([0xef, 0xbb, 0xbf, 0x41]))).toBe('\ufeffA');
  });

  test('a GBK character whose second byte is a backslash stays one character', () => {
    const d = decoderFor('GBK');
    expect(d.asciiSafe).toBe(false);
    const sql = Buffer.concat([Buffer.from("SELECT E'"), hex([0x95, 0x5c]), Buffer.from("' ; DROP TABLE t; --'")]);
    expect(d.decode(sql)).toBe("SELECT E'\u661e' ; DROP TABLE t; --'");
  });

  test('characters ICU reads differently from PostgreSQL decode as PostgreSQL does', () => {
    expect(decoderFor('EUC_CN').decode(hex([0xa1, 0xa4, 0x41, 0xa1, 0xaa]))).toBe('\u30fbA\u2015');
    expect(decoderFor('EUC_KR').decode(hex([0xa2, 0xe6, 0xb0, 0xa1]))).toBe('€가');
    expect(decoderFor('EUC_JP').decode(hex([0x8f, 0xa2, 0xc3, 0x8f, 0xf3, 0xf3, 0xa4, 0xa2]))).toBe('\uffe4\u2170あ');
  });

  test('pure ASCII decodes the same in every encoding', () => {
    const ascii = Buffer.from("SELECT 'a\\'; -- ~\x7f\x01");
    for (const name of supportedClientEncodings()) expect(decoderFor(name).decode(ascii), name).toBe(ascii.toString('latin1'));
    expect(isAsciiOnly(ascii)).toBe(true);
    expect(isAsciiOnly(hex([0x41, 0x80, 0x41]))).toBe(false);
    expect(isAsciiOnly(hex([0x41, 0x80, 0x41]), 2)).toBe(true);
    expect(isAsciiOnly(hex([0x41, 0x80, 0x41]), 0, 1)).toBe(true);
  });
});

describe('against PostgreSQL', () => {
  let db: pg.Client;
  beforeAll(async () => {
    db = new pg.Client({ host: upstream.host, port: upstream.port, user: upstream.users.trust, database: 'postgres' });
    await db.connect();
    // What the server makes of each byte sequence: its text, or nothing when it rejects it.
    await db.query(`CREATE FUNCTION pg_temp.probe(enc name, seqs bytea[]) RETURNS TABLE (seq bytea, txt text)
      LANGUAGE plpgsql AS $$
      DECLARE s bytea;
      BEGIN
        FOREACH s IN ARRAY seqs LOOP
          BEGIN txt := convert_from(s, enc); seq := s; RETURN NEXT;
          EXCEPTION WHEN others THEN NULL; END;
        END LOOP;
      END $$`);
  });
  afterAll(async () => {
    await db?.end();
  });

  /** Compares the decoder with the server for every sequence; returns how many the server accepted. */
  async function compare(name: string, seqs: Buffer[]): Promise<number> {
    const { rows } = await db.query<{ seq: Buffer; txt: string }>('SELECT seq, txt FROM pg_temp.probe($1, $2)', [name, seqs]);
    const server = new Map(rows.map((r) => [r.seq.toString('hex'), r.txt]));
    const d = decoderFor(name);
    const wrong: string[] = [];
    for (const seq of seqs) {
      const h = seq.toString('hex');
      const ours = d.decode(seq);
      const theirs = server.get(h) ?? null;
      if (ours !== theirs) wrong.push(`${h}: server ${JSON.stringify(theirs)}, decoder ${JSON.stringify(ours)}`);
    }
    expect(wrong.slice(0, 20), `${name}: ${wrong.length} sequences differ`).toEqual([]);
    return server.size;
  }

  test('names resolve as the server resolves them', async () => {
    const spellings = [...PG_ALIASES, 'UTF-8', 'ISO_8859-1', 'Windows-1252', 'KOI8-R', 'EUC_JIS_2004', 'ISO_8859_8', 'latin-1', 'utf16', 'ascii', 'cp1252', 'iso885911'];
    const { rows } = await db.query<{ n: string; e: string }>('SELECT n, pg_encoding_to_char(pg_char_to_encoding(n)) AS e FROM unnest($1::text[]) n', [spellings]);
    for (const { n, e } of rows) expect(normalizeEncodingName(n), n).toBe(e === '' ? null : e);
  });

  test('single-byte encodings: every byte from 0x80 to 0xFF', async () => {
    const seqs = Array.from({ length: 128 }, (_, i) => hex([0x80 + i]));
    for (const name of SINGLE_BYTE) expect(await compare(name, seqs)).toBeGreaterThan(80);
  });

  test('multi-byte encodings: every one- and two-byte sequence from a high byte, and EUC_JP three-byte ones', async () => {
    const seqs: Buffer[] = [];
    for (let a = 0x80; a <= 0xff; a++) {
      seqs.push(hex([a]));
      for (let b = 0x01; b <= 0xff; b++) seqs.push(hex([a, b]));
    }
    const some = [0x01, 0x27, 0x41, 0x5c, 0x7f, 0x80, 0x8e, 0x8f, 0xa0, 0xfe, 0xff];
    const eucjp = [...seqs];
    for (let b = 0xa0; b <= 0xff; b++) for (let c = 0xa0; c <= 0xff; c++) eucjp.push(hex([0x8f, b, c]));
    for (const b of some) for (const c of [...some, 0xa1, 0xa2]) eucjp.push(hex([0x8f, b, c]), hex([0x8f, c, b]));
    expect(await compare('EUC_JP', eucjp)).toBeGreaterThan(13000);
    expect(await compare('EUC_KR', seqs)).toBeGreaterThan(8000);
    expect(await compare('EUC_CN', seqs)).toBeGreaterThan(7000);
    expect(await compare('GBK', seqs)).toBeGreaterThan(21000);
  });

  test('UTF8: valid and invalid sequences at every boundary', async () => {
    const seqs: Buffer[] = [];
    for (let a = 0x80; a <= 0xff; a++) {
      seqs.push(hex([a]));
      for (const b of [0x41, 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf, 0xc0, 0xff]) seqs.push(hex([a, b]), hex([a, b, 0x80]), hex([a, b, 0x80, 0x80]));
    }
    seqs.push(hex([0xef, 0xbb, 0xbf]), hex([0xf4, 0x8f, 0xbf, 0xbf]), hex([0xf4, 0x90, 0x80, 0x80]), hex([0xf8, 0x88, 0x80, 0x80, 0x80]));
    await compare('UTF8', seqs);
  });

  test('a session with client_encoding set reads raw bytes as the decoder does, both ways', async () => {
    const raw = await RawSession.open();
    try {
      for (const name of [...SINGLE_BYTE, ...MULTI_BYTE, 'UTF8']) {
        const d = decoderFor(name);
        // Every character the decoder accepts (for the multi-byte encodings, a sample of each lead byte).
        const chars: Buffer[] = [];
        const candidates: Buffer[] = [];
        for (let a = 0x80; a <= 0xff; a++) {
          candidates.push(hex([a]));
          for (const b of [0x40, 0x5c, 0x7e, 0x80, 0xa1, 0xa2, 0xb0, 0xc1, 0xe0, 0xfe]) candidates.push(hex([a, b]));
        }
        candidates.push(hex([0x8f, 0xa2, 0xc3]), hex([0x8f, 0xf3, 0xf3]), hex([0xe3, 0x81, 0x82]), hex([0xf0, 0x9f, 0x98, 0x80]));
        for (const c of candidates) if (d.decode(c) !== null && d.decode(Buffer.concat([c, Buffer.from('x')])) !== null) chars.push(c);
        const text = Buffer.concat(chars);
        expect(text.includes('$h$'), name).toBe(false);
        await raw.query(Buffer.from(`SET client_encoding TO '${name}'`));
        const [got] = await raw.query(Buffer.concat([Buffer.from('SELECT encode(convert_to($h$'), text, Buffer.from("$h$, 'UTF8'), 'hex')")]));
        expect(Buffer.from(got!.toString('latin1'), 'hex').toString('utf8'), name).toBe(d.decode(text));
        // And what the server sends back in this encoding decodes to the text it converted.
        const utf8 = Buffer.from(d.decode(text)!, 'utf8').toString('hex');
        const [back] = await raw.query(Buffer.from(`SELECT convert_from(decode('${utf8}', 'hex'), 'UTF8')`));
        expect(d.decode(back!), name).toBe(d.decode(text));
      }
      // Bytes the decoder refuses, the server refuses too.
      for (const [name, bytes] of [['WIN1252', [0x81]], ['LATIN3', [0xa5]], ['ISO_8859_8', [0xc0]], ['EUC_KR', [0xc9, 0xa1]], ['GBK', [0xa2, 0xab]], ['UTF8', [0xc0, 0xa7]]] as const) {
        expect(decoderFor(name).decode(hex([...bytes]))).toBeNull();
        await raw.query(Buffer.from(`SET client_encoding TO '${name}'`));
        await expect(raw.query(Buffer.concat([Buffer.from("SELECT '"), hex([...bytes]), Buffer.from("'")]))).rejects.toThrow(/22021|22P05/);
      }
    } finally {
      raw.close();
    }
  });
});

/** A session over a raw socket, to send bytes the pg driver would encode as UTF-8. */
class RawSession {
  private buffered = Buffer.alloc(0);
  private waiting: (() => void) | null = null;
  private constructor(private readonly socket: Socket) {
    socket.on('data', (d: Buffer) => {
      this.buffered = Buffer.concat([this.buffered, d]);
      this.waiting?.();
    });
  }

  static async open(): Promise<RawSession> {
    const socket = connect(upstream.port, upstream.host);
    await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
    const s = new RawSession(socket);
    socket.write(startupMessage({ user: upstream.users.trust, database: 'postgres', client_encoding: 'UTF8' }));
    await s.untilReady();
    return s;
  }

  private async next(): Promise<{ type: number; body: Buffer }> {
    while (this.buffered.length < 5 || this.buffered.length < 1 + this.buffered.readInt32BE(1)) {
      await new Promise<void>((resolve) => (this.waiting = resolve));
      this.waiting = null;
    }
    const len = this.buffered.readInt32BE(1);
    const message = { type: this.buffered[0]!, body: this.buffered.subarray(5, 1 + len) };
    this.buffered = this.buffered.subarray(1 + len);
    return message;
  }

  /** Collects the first column of each DataRow until ReadyForQuery; an ErrorResponse rejects with its SQLSTATE and message. */
  private async untilReady(): Promise<Buffer[]> {
    const values: Buffer[] = [];
    let error: string | null = null;
    for (;;) {
      const { type, body } = await this.next();
      if (type === MessageType.ReadyForQuery) break;
      if (type === MessageType.ErrorResponse) error ??= body.toString('latin1').replace(/\0/g, ' ');
      if (type === MessageType.DataRow) {
        const len = body.readInt32BE(2);
        values.push(Buffer.from(body.subarray(6, 6 + len)));
      }
    }
    if (error !== null) throw new Error(error);
    return values;
  }

  query(sql: Buffer): Promise<Buffer[]> {
    this.socket.write(frame(MessageType.Query, sql, Buffer.from([0])));
    return this.untilReady();
  }

  close(): void {
    this.socket.write(frame(MessageType.Terminate));
    this.socket.end();
  }
}
