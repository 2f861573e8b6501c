/** RFC 5424 messages and RFC 6587 octet-counted framing, byte for byte. */
import { describe, expect, test } from 'vitest';
import { canonicalJson } from '../../../src/audit/chain.js';
import { severityOf, sinkRecordOf } from '../../../src/audit/sinks/sink.js';
import { SyslogTransport, headerField, octetCounted, sdParamValue, syslogMessage } from '../../../src/audit/sinks/syslog.js';
import type { SyslogSinkConfig } from '../../../src/audit/sinks/sink.js';
import type { AuditEvent } from '../../../src/audit/event.js';
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { until } from '../../helpers/poll.js';
import { OctetCountedReader, parseSyslogMessage, startTlsSyslog } from '../../helpers/syslog.js';
import { makeCertificates } from '../../helpers/tls.js';

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

describe('syslog transport', () => {
  const record = sinkRecordOf(event);
  const cfg = (port: number, over: Partial<SyslogSinkConfig> = {}): SyslogSinkConfig => ({
    kind: 'syslog', id: 's', name: 's', host: 'localhost', port, tls: true, ca: null, appName: 'hoop', includePayload: false, start: 'beginning', ...over,
  });
  const signal = () => AbortSignal.timeout(10_000);

  test('TLS: delivered to a receiver whose certificate the configured CA signed, for its name or address; refused otherwise', async () => {
    const certs = makeCertificates();
    const rx = await startTlsSyslog(certs);
    try {
      for (const host of ['localhost', '127.0.0.1']) {
        const t = new SyslogTransport(cfg(rx.port, { host, ca: certs.ca }), { graceMs: 20 });
        await t.deliver([record], signal());
        await t.close();
      }
      await until(() => rx.messages.length === 2);
      expect(rx.messages.map((m) => JSON.parse(m.msg))).toEqual([event, event]);
      const stranger = makeCertificates();
      const wrongCa = new SyslogTransport(cfg(rx.port, { ca: stranger.ca }), { graceMs: 20 });
      await expect(wrongCa.deliver([record], signal())).rejects.toThrow(/certificate/);
      const noCa = new SyslogTransport(cfg(rx.port), { graceMs: 20 }); // the system roots do not know the test CA
      await expect(noCa.deliver([record], signal())).rejects.toThrow(/certificate/);
      expect(rx.messages).toHaveLength(2);
    } finally {
      await rx.close();
    }
  });

  test('a receiver that closes or resets the connection within the grace period fails the batch, and the next one reconnects', async () => {
    let mode: 'reset' | 'close' | 'keep' = 'reset';
    const got: string[] = [];
    const server = createServer((socket) => {
      const reader = new OctetCountedReader();
      socket.on('data', (c: Buffer) => {
        got.push(...reader.push(c));
        if (mode === 'reset') socket.resetAndDestroy();
        else if (mode === 'close') socket.end();
      });
      socket.on('error', () => {});
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
    const port = (server.address() as AddressInfo).port;
    const t = new SyslogTransport(cfg(port, { host: '127.0.0.1', tls: false }), { graceMs: 300 });
    try {
      await expect(t.deliver([record], signal())).rejects.toThrow(/ECONNRESET|closed/);
      mode = 'close';
      await expect(t.deliver([record], signal())).rejects.toThrow(/closed/);
      mode = 'keep';
      await t.deliver([record, record], signal());
      await t.deliver([record], signal()); // the same connection, still healthy
      expect(got).toHaveLength(5); // the receiver saw the failed batches too: a resend repeats them
    } finally {
      await t.close();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });

  test('an abort (the deliverer\'s deadline) ends the attempt, whatever it waits for', async () => {
    const sockets: Socket[] = [];
    const server = createServer((s) => sockets.push(s.on('error', () => {})));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
    const t = new SyslogTransport(cfg((server.address() as AddressInfo).port, { host: '127.0.0.1', tls: false }), { graceMs: 60_000 });
    try {
      await expect(t.deliver([record], AbortSignal.timeout(200))).rejects.toThrow(/abort|timeout/i);
    } finally {
      await t.close();
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });
});
