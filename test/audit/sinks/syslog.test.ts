/** RFC 5424 messages and RFC 6587 octet-counted framing, byte for byte. */
import { describe, expect, test } from 'vitest';
import { canonicalJson } from '../../../src/audit/chain.js';
import { severityOf, sinkRecordOf } from '../../../src/audit/sinks/sink.js';
import { headerField, octetCounted, sdParamValue, syslogMessage } from '../../../src/audit/sinks/syslog.js';
import type { AuditEvent } from '../../../src/audit/event.js';
import { OctetCountedReader, parseSyslogMessage } from '../../helpers/syslog.js';

const event: AuditEvent = {
  seq: 42,
  id: '6f1c2a9e-3b4d-4e5f-8a7b-9c0d1e2f3a4b',
  time: '2026-03-01T09:30:00.123Z',
  type: 'access.denied',
  actor: { subject: 'alice', email: 'alice@bank.example', groups: ['analysts'], auth_method: 'api_key' },
  source: { address: '10.0.0.7', application: 'psql' },
  connection: 'bank',
  session_id: null,
  data: { reason: 'not in "access"] \\ groups', note: 'Zoë 😀' },
  prev_hash: 'a'.repeat(64),
  hash: 'b'.repeat(64),
};

describe('syslog messages', () => {
  test('header, structured data and MSG: the event as canonical JSON after a BOM', () => {
    const text = syslogMessage(sinkRecordOf(event), { hostname: 'gw-1.bank.example', appName: 'hoop', procId: '4242' });
    expect(text).toBe(`<108>1 2026-03-01T09:30:00.123Z gw-1.bank.example hoop 4242 access.denied [hoop@32473 seq="42" type="access.denied" hash="${'b'.repeat(64)}"] \uFEFF${canonicalJson(event)}`);
    const parsed = parseSyslogMessage(text);
    expect(parsed).toMatchObject({ pri: 13 * 8 + 4, msgId: 'access.denied', bom: true, sd: { 'hoop@32473': { seq: '42', type: 'access.denied', hash: 'b'.repeat(64) } } });
    expect(JSON.parse(parsed.msg)).toEqual(event);
  });

  test('severity follows the event type', () => {
    expect(['auth.failed', 'access.denied', 'notify.failed', 'approval.decided', 'grant.started', 'config.loaded', 'query.start', 'checkpoint', 'some.future'].map(severityOf))
      .toEqual([4, 4, 3, 5, 5, 5, 6, 6, 6]);
  });

  test('header fields are printable ASCII, cut to their RFC length, "-" when empty; SD values escape " \\ ]', () => {
    expect(headerField('gw 1\u00e9\n', 255)).toBe('gw1');
    expect(headerField('x'.repeat(60), 48)).toBe('x'.repeat(48));
    expect(headerField(' \t', 48)).toBe('-');
    expect(sdParamValue('a"b\\c]d')).toBe('a\\"b\\\\c\\]d');
    expect(parseSyslogMessage(`<1>1 - - - - - [x@1 v="${sdParamValue('a"b\\c]d')}"] m`).sd['x@1']!['v']).toBe('a"b\\c]d');
  });

  test('octet counting counts UTF-8 bytes, and a reader splits frames at every offset', () => {
    const messages = [syslogMessage(sinkRecordOf(event), { hostname: 'h', appName: 'hoop', procId: '1' }), 'é', '<14>1 - - - - - - two'];
    const frames = Buffer.concat(messages.map(octetCounted));
    expect(octetCounted('é').toString('utf8')).toBe('2 é');
    for (let cut = 0; cut <= frames.length; cut++) {
      const reader = new OctetCountedReader();
      expect([...reader.push(frames.subarray(0, cut)), ...reader.push(frames.subarray(cut))]).toEqual(messages);
    }
  });
});
