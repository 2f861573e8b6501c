/** Message-value redaction and the rewriting of message texts, on their own (the engine test runs them against a server). */
import { describe, expect, test } from 'vitest';
import { clientDecoder } from '../../../src/protocols/postgres/encodings.js';
import { rewriteNotice, rewriteNotification, redactValues, type MessageRewrite } from '../../../src/protocols/postgres/message-text.js';
import { MessageType, decodeNoticeFields, frame } from '../../../src/protocols/postgres/messages.js';
import { decodeNotification } from '../../../src/protocols/postgres/notices.js';

describe('redactValues', () => {
  test.each([
    ['invalid input syntax for type integer: "123-45-6789"', 'invalid input syntax for type integer: "***"', 1],
    // No quote inside a value is escaped: from the first quote to the last one.
    ['invalid input syntax for type integer: "12"34" here', 'invalid input syntax for type integer: "***" here', 1],
    // Unterminated: to the end of the text.
    ['value "123-45', 'value "***', 1],
    ['Key (a, lower(b))=(1, x) y)) already exists.', 'Key (a, lower(b))=(***) already exists.', 1],
    ['Key (ssn)=(123-45-6789', 'Key (ssn)=(***', 1],
    ['Key (ssn)=(1) is not present in table "t".', 'Key (ssn)=(***) is not present in table "***".', 2],
    ['Failing row contains (1, 123-45-6789, null).', 'Failing row contains (***).', 1],
    ['invalid byte sequence for encoding "UTF8": 0x80 0x41', 'invalid byte sequence for encoding "***": 0x**', 2],
    ['division by zero', 'division by zero', 0],
    ['already "***"', 'already "***"', 0],
  ])('%s', (text, want, count) => {
    expect(redactValues(text)).toEqual({ text: want, count });
  });
});

function notice(fields: Record<string, string>): Buffer {
  const parts = Object.entries(fields).flatMap(([k, v]) => [Buffer.from(k, 'latin1'), Buffer.from(v + '\0', 'latin1')]);
  return frame(MessageType.ErrorResponse, ...parts, Buffer.from([0]));
}

function rewrite(over: Partial<MessageRewrite> = {}): MessageRewrite & { counts: Record<string, number> } {
  const counts: Record<string, number> = {};
  return { redactValues: false, decoder: clientDecoder('UTF8'), tally: (l, n = 1) => void (counts[l] = (counts[l] ?? 0) + n), counts, ...over };
}

describe('rewriteNotice', () => {
  test('redacts every text field but severity, code and positions; context and internal query go whole', () => {
    const body = notice({ S: 'ERROR', V: 'ERROR', C: '22P02', M: 'bad "v"', P: '8', W: 'JSON data, line 1: 123-45-6789', q: "select '1'", D: 'Token "x" is invalid.' }).subarray(5);
    const r = rewrite({ redactValues: true });
    const out = rewriteNotice(MessageType.ErrorResponse, body, r)!;
    expect(decodeNoticeFields(out.subarray(5))).toEqual({ S: 'ERROR', V: 'ERROR', C: '22P02', M: 'bad "***"', P: '8', W: '***', q: '***', D: 'Token "***" is invalid.' });
    expect(r.counts).toEqual({ 'message values': 4 });
  });

  test('nothing changed: null, so the original bytes go', () => {
    const body = notice({ S: 'NOTICE', C: '00000', M: 'plain' }).subarray(5);
    expect(rewriteNotice(MessageType.NoticeResponse, body, rewrite({ redactValues: true, scrubText: (t) => t }))).toBeNull();
  });

  test('in another client encoding, characters the scrubber left stay as they were', () => {
    const body = Buffer.concat([Buffer.from('M', 'latin1'), Buffer.from('caf\xe9 123-45-6789\0', 'latin1'), Buffer.from([0])]);
    const out = rewriteNotice(MessageType.NoticeResponse, body, rewrite({ decoder: clientDecoder('LATIN1'), scrubText: (t) => t.replace(/\d/g, '*') }))!;
    expect(out.subarray(6, out.length - 2).toString('latin1')).toBe('caf\xe9 ***-**-****');
  });

  test('a rewrite the encoding would reject keeps only its ASCII bytes', () => {
    const body = Buffer.concat([Buffer.from('M'), Buffer.from('x\xa4\xa2y\0', 'latin1'), Buffer.from([0])]); // one EUC_JP character
    const out = rewriteNotice(MessageType.NoticeResponse, body, rewrite({ decoder: clientDecoder('EUC_JP'), scrubText: (t) => t.replace('\xa4', '*') }))!;
    expect(out.subarray(6, out.length - 2).toString('latin1')).toBe('x*?y');
  });
});

test('rewriteNotification scrubs channel and payload, keeps the pid', () => {
  const pid = Buffer.alloc(4);
  pid.writeInt32BE(4242);
  const body = Buffer.concat([pid, Buffer.from('ch\0pay 123-45-6789\0')]);
  const out = rewriteNotification(body, rewrite({ scrubText: (t) => t.replace(/\d{3}-\d{2}-\d{4}/, '***-**-****') }))!;
  expect(decodeNotification(out.subarray(5))).toEqual({ pid: 4242, channel: 'ch', payload: 'pay ***-**-****' });
});
