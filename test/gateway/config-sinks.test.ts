/** audit.sinks: the three shapes, their ids, and what is refused. */
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { ConfigError } from '../../src/errors.js';
import { parseConfig } from '../../src/gateway/config.js';
import { keepRestartOnly } from '../../src/gateway/reload.js';
import { makeCertificates } from '../helpers/tls.js';

const dir = mkdtempSync(join(tmpdir(), 'hoop-config-sinks-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function withSinks(sinks: unknown): Record<string, unknown> {
  return {
    listen: '127.0.0.1:0',
    store: 'sqlite:data/hoop.db',
    identity: { api_keys: [{ name: 'etl', sha256: 'ab'.repeat(32), groups: ['etl'] }] },
    audit: { sinks },
  };
}

const parse = (sinks: unknown) => parseConfig(withSinks(sinks), 'hoop.yaml', dir).audit.sinks;

function problems(sinks: unknown): string[] {
  try {
    parseConfig(withSinks(sinks), 'hoop.yaml', dir);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as Error).message.split('\n');
  }
  throw new Error('config was accepted');
}

describe('audit.sinks', () => {
  test('the contract example, with defaults and derived ids', () => {
    const certs = makeCertificates();
    process.env['HOOP_TEST_HEC'] = 'hec-token-1234';
    try {
      const sinks = parse([
        { syslog: 'tcp://siem.internal:6514', tls: true, ca: certs.ca },
        { http: 'https://hec.example/services/collector?x=1', token: '${env:HOOP_TEST_HEC}' },
        { file: 'audit/hoop.jsonl', name: 'local-copy', include_payload: true, start: 'now' },
        { syslog: 'tcp://[::1]:514' },
      ]);
      expect(sinks).toEqual([
        { kind: 'syslog', id: 'syslog:tcp://siem.internal:6514', name: null, host: 'siem.internal', port: 6514, tls: true, ca: certs.ca, appName: 'hoop', includePayload: false, start: 'beginning' },
        { kind: 'http', id: `http:https://hec.example#${createHash('sha256').update('https://hec.example/services/collector?x=1').digest('hex').slice(0, 12)}`, name: null, url: 'https://hec.example/services/collector?x=1', token: 'hec-token-1234', format: 'hec', headers: {}, includePayload: false, start: 'beginning' },
        { kind: 'file', id: 'local-copy', name: 'local-copy', path: join(dir, 'audit/hoop.jsonl'), maxBytes: 100 * 1024 * 1024, keep: 10, includePayload: true, start: 'now' },
        { kind: 'syslog', id: 'syslog:tcp://[::1]:514', name: null, host: '::1', port: 514, tls: false, ca: null, appName: 'hoop', includePayload: false, start: 'beginning' },
      ]);
      expect(parseConfig(withSinks([]), 'hoop.yaml', dir).audit.sinks).toEqual([]);
      expect(parseConfig({ ...withSinks([]), audit: undefined }, 'hoop.yaml', dir).audit.sinks).toEqual([]);
    } finally {
      delete process.env['HOOP_TEST_HEC'];
    }
  });

  test('mistakes are named by key path, each on its own line', () => {
    expect(problems([
      { syslog: 'udp://siem:514' },
      { http: 'http://hec.example/collector', token: 't' },
      { http: 'https://hec.example/c' },
      { file: 'a.jsonl', keep: 0, max_bytes: '1KiB', colour: 'red' },
      { syslog: 'tcp://a:1', http: 'https://b/' },
      {},
      { syslog: 'tcp://siem:6514', ca: '-----BEGIN CERTIFICATE-----\nMA==\n-----END CERTIFICATE-----', app_name: 'has space' },
      { http: 'https://user:pw@hec.example/', format: 'json', headers: { 'Content-Type': 'text/plain', Authorization: 'x' } },
    ])).toEqual([
      'hoop.yaml: audit.sinks[0].syslog: expected tcp://host:port, e.g. tcp://siem.internal:6514 (with tls: true for RFC 5425)',
      'hoop.yaml: audit.sinks[1].http: expected an https:// URL (http:// only on loopback: localhost, 127.0.0.0/8, ::1)',
      'hoop.yaml: audit.sinks[2].token: required with format: hec (the HEC token, e.g. "${env:HOOP_HEC_TOKEN}")',
      'hoop.yaml: audit.sinks[3].max_bytes: must be at least 4KiB',
      'hoop.yaml: audit.sinks[3].keep: expected a whole number from 1 to 1000',
      'hoop.yaml: audit.sinks[3].colour: unknown key',
      'hoop.yaml: audit.sinks[4]: one sink is one of syslog, http or file, not syslog and http',
      'hoop.yaml: audit.sinks[5]: expected one of the keys syslog (tcp://host:port), http (https://…) or file (a path)',
      'hoop.yaml: audit.sinks[6].app_name: expected 1 to 48 printable ASCII characters without spaces (RFC 5424 APP-NAME)',
      'hoop.yaml: audit.sinks[6].ca: only with tls: true (the CA that signed the receiver\'s certificate)',
      'hoop.yaml: audit.sinks[7].http: must not carry credentials; use token (or headers)',
      'hoop.yaml: audit.sinks[7].headers.Content-Type: is set by hoop',
    ]);
  });

  test('two sinks with one id are refused; a name tells them apart', () => {
    expect(problems([{ file: 'a.jsonl' }, { file: './a.jsonl', keep: 3 }])).toEqual([
      `hoop.yaml: audit.sinks[1]: the same sink id as audit.sinks[0] (file:${join(dir, 'a.jsonl')}); give one of them a name`,
    ]);
    expect(parse([{ file: 'a.jsonl' }, { file: './a.jsonl', name: 'second' }]).map((s) => s.id)).toEqual([`file:${join(dir, 'a.jsonl')}`, 'second']);
  });

  test('the fingerprint leaves tokens and header values out', () => {
    const fp = (token: string, header: string) => parseConfig(withSinks([{ http: 'https://h.example/', format: 'json', token, headers: { 'X-Api-Key': header } }]), 'hoop.yaml', dir).fingerprint;
    expect(fp('token-one', 'key-one')).toBe(fp('token-two', 'key-two'));
    expect(fp('token-one', 'key-one')).not.toBe(parseConfig(withSinks([{ http: 'https://other.example/', format: 'json', token: 'token-one' }]), 'hoop.yaml', dir).fingerprint);
  });

  test('a reload keeps the running sinks and says they need a restart', () => {
    const running = parseConfig(withSinks([{ file: 'a.jsonl' }]), 'hoop.yaml', dir);
    const next = parseConfig(withSinks([{ file: 'b.jsonl' }]), 'hoop.yaml', dir);
    const { applied, needsRestart } = keepRestartOnly(running, next);
    expect(needsRestart).toEqual(['audit.sinks']);
    expect(applied.audit.sinks).toEqual(running.audit.sinks);
    expect(keepRestartOnly(running, running).needsRestart).toEqual([]);
  });
});
