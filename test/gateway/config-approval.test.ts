/** connections[].approval and connections[].access_by_grant. */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { ConfigError } from '../../src/errors.js';
import { parseConfig } from '../../src/gateway/config.js';

const dir = mkdtempSync(join(tmpdir(), 'hoop-config-approval-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function withConnection(extra: Record<string, unknown>): Record<string, unknown> {
  return {
    listen: '127.0.0.1:0',
    store: 'sqlite:data/hoop.db',
    identity: { api_keys: [{ name: 'etl', sha256: 'ab'.repeat(32), groups: ['etl'] }] },
    connections: [{
      name: 'bank',
      type: 'postgres',
      upstream: { host: 'db.internal', database: 'bank', user: 'hoop_svc', password: 'pw', sslmode: 'disable' },
      access: ['analysts'],
      ...extra,
    }],
  };
}

const parse = (extra: Record<string, unknown>) => parseConfig(withConnection(extra), 'hoop.yaml', dir).connections[0]!;

function problems(extra: Record<string, unknown>): string[] {
  try {
    parseConfig(withConnection(extra), 'hoop.yaml', dir);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as Error).message.split('\n');
  }
  throw new Error('config was accepted');
}

/** The issue's example block. */
const ISSUE_EXAMPLE = {
  approvers: ['dba'],
  min_approvals: 1,
  timeout: '10m',
  grant_max: '8h',
  notify: [
    { webhook: 'https://hooks.example/approvals' },
    { webhook: 'https://hooks.slack.example/T000/B000', format: 'slack' },
  ],
  rules: [
    { name: 'analysts-read-only', groups: ['analysts'], when: { kind: ['insert', 'update', 'delete', 'merge', 'ddl', 'dcl', 'copy_in'] }, action: 'deny' },
    { name: 'ddl', when: { kind: ['ddl'] }, action: 'deny' },
    { name: 'no-where', when: { kind: ['update', 'delete'], where: false }, action: 'require_approval' },
    { name: 'full-export', when: { kind: ['select', 'copy_out'], tables: ['customers', 'accounts'], where: false }, action: 'require_approval' },
    { name: 'protected-aggregate', when: { protected_columns: true, joins: true }, action: 'require_approval' },
    { name: 'bulk', when: { estimated_rows: '>10000' }, action: 'require_approval' },
  ],
  row_cap: 50000,
};

describe('connections[].approval: valid', () => {
  test('the issue\'s example', () => {
    expect(parse({ approval: ISSUE_EXAMPLE }).approval).toEqual({
      approvers: ['dba'],
      minApprovals: 1,
      timeoutMs: 600_000,
      grantMaxMs: 8 * 3_600_000,
      notify: [
        { webhook: 'https://hooks.example/approvals', format: 'json', secret: null },
        { webhook: 'https://hooks.slack.example/T000/B000', format: 'slack', secret: null },
      ],
      rules: [
        { name: 'analysts-read-only', groups: ['analysts'], when: { kind: ['insert', 'update', 'delete', 'merge', 'ddl', 'dcl', 'copy_in'] }, action: 'deny' },
        { name: 'ddl', groups: null, when: { kind: ['ddl'] }, action: 'deny' },
        { name: 'no-where', groups: null, when: { kind: ['update', 'delete'], where: false }, action: 'require_approval' },
        { name: 'full-export', groups: null, when: { kind: ['select', 'copy_out'], tables: ['customers', 'accounts'], where: false }, action: 'require_approval' },
        { name: 'protected-aggregate', groups: null, when: { protected_columns: true, joins: true }, action: 'require_approval' },
        { name: 'bulk', groups: null, when: { estimated_rows: { op: '>', value: 10_000 } }, action: 'require_approval' },
      ],
      rowCap: 50_000,
    });
  });

  test('defaults; no block is null; access_by_grant defaults to none', () => {
    expect(parse({ approval: {} }).approval).toEqual({ approvers: [], minApprovals: 1, timeoutMs: 600_000, grantMaxMs: 28_800_000, notify: [], rules: [], rowCap: null });
    const none = parse({});
    expect(none.approval).toBeNull();
    expect(none.accessByGrant).toEqual([]);
  });

  test('estimated_rows comparisons, with or without spaces', () => {
    const rows = (s: string) => parse({ approval: { rules: [{ name: 'r', when: { estimated_rows: s }, action: 'deny' }] } }).approval!.rules[0]!.when.estimated_rows;
    expect(rows('>10000')).toEqual({ op: '>', value: 10000 });
    expect(rows('>= 5000')).toEqual({ op: '>=', value: 5000 });
    expect(rows(' < 3 ')).toEqual({ op: '<', value: 3 });
    expect(rows('<=0')).toEqual({ op: '<=', value: 0 });
  });

  test('a webhook secret from the environment; http webhooks on loopback; deny-only rules need no approvers', () => {
    process.env['HOOP_TEST_WEBHOOK_SECRET'] = 'k'.repeat(32);
    try {
      const a = parse({ approval: { notify: [{ webhook: 'http://127.0.0.1:9999/hook', secret: '${env:HOOP_TEST_WEBHOOK_SECRET}' }], rules: [{ name: 'ddl', when: { kind: ['ddl'] }, action: 'deny' }] } }).approval!;
      expect(a.notify).toEqual([{ webhook: 'http://127.0.0.1:9999/hook', format: 'json', secret: 'k'.repeat(32) }]);
    } finally {
      delete process.env['HOOP_TEST_WEBHOOK_SECRET'];
    }
  });

  test('access_by_grant with approvers', () => {
    expect(parse({ access_by_grant: ['contractors'], approval: { approvers: ['dba'] } }).accessByGrant).toEqual(['contractors']);
  });

  test('the fingerprint never sees a webhook secret or URL written inline', () => {
    const fp = (secret: string, webhook: string) => parseConfig(withConnection({ approval: { notify: [{ webhook, secret }] } }), 'hoop.yaml', dir).fingerprint;
    expect(fp('a'.repeat(16), 'https://hooks.slack.example/T/B/one')).toBe(fp('b'.repeat(16), 'https://hooks.slack.example/T/B/two'));
    // Everything else still counts.
    const base = fp('a'.repeat(16), 'https://x.example/');
    expect(parseConfig(withConnection({ approval: { notify: [{ webhook: 'https://x.example/', secret: 'a'.repeat(16), format: 'slack' }] } }), 'hoop.yaml', dir).fingerprint).not.toBe(base);
  });
});

describe('connections[].approval: refused, precisely', () => {
  test('rules', () => {
    expect(problems({
      approval: {
        approvers: ['dba'],
        rules: [
          { name: 'Bad Name', when: {}, action: 'deny' },
          { name: 'a', when: { kind: ['select', 'drop'] }, action: 'deny' },
          { name: 'b', when: { kind: [] }, action: 'deny' },
          { name: 'c', when: { tables: ['a.b.c', ''] }, action: 'deny' },
          { name: 'd', when: { where: 'no' }, action: 'deny' },
          { name: 'e', when: { estimated_rows: 10000 }, action: 'deny' },
          { name: 'f', when: { estimated_rows: '~10' }, action: 'deny' },
          { name: 'g', when: { colour: 'red' }, action: 'deny' },
          { name: 'h', groups: [], when: {}, action: 'deny' },
          { name: 'i', action: 'deny' },
          { name: 'j', when: {}, action: 'hold' },
          { name: 'k', when: {}, action: 'deny', extra: 1 },
        ],
      },
    })).toEqual([
      'hoop.yaml: connections[0].approval.rules[0].name: must be a lowercase slug: a-z, 0-9, "-" and "_", starting with a letter or digit, at most 63 characters',
      'hoop.yaml: connections[0].approval.rules[1].when.kind[1]: expected one of: select, insert, update, delete, merge, copy_in, copy_out, ddl, dcl, transaction, utility',
      'hoop.yaml: connections[0].approval.rules[2].when.kind: must name at least one kind (leave kind out to match every kind)',
      'hoop.yaml: connections[0].approval.rules[3].when.tables[0]: expected table or schema.table, each part a name or a glob (* any run of characters, ? one character)',
      'hoop.yaml: connections[0].approval.rules[3].when.tables[1]: expected table or schema.table, each part a name or a glob (* any run of characters, ? one character)',
      'hoop.yaml: connections[0].approval.rules[4].when.where: expected true or false',
      'hoop.yaml: connections[0].approval.rules[5].when.estimated_rows: expected a comparison such as ">10000" or "<= 500", quoted (unquoted, YAML reads a leading > as a folded block)',
      'hoop.yaml: connections[0].approval.rules[6].when.estimated_rows: expected a comparison such as ">10000", ">= 5000", "<100" or "<= 500"',
      'hoop.yaml: connections[0].approval.rules[7].when.colour: unknown key',
      'hoop.yaml: connections[0].approval.rules[8].groups: must name at least one group (leave groups out for a rule that applies to everyone)',
      'hoop.yaml: connections[0].approval.rules[9].when: required',
      'hoop.yaml: connections[0].approval.rules[10].action: expected one of: allow, deny, require_approval',
      'hoop.yaml: connections[0].approval.rules[11].extra: unknown key',
    ]);
  });

  test('duplicate rule names', () => {
    expect(problems({ approval: { rules: [{ name: 'a', when: {}, action: 'deny' }, { name: 'b', when: {}, action: 'deny' }, { name: 'a', when: {}, action: 'allow' }] } })).toEqual([
      'hoop.yaml: connections[0].approval.rules[2].name: duplicate rule name (the same as connections[0].approval.rules[0].name)',
    ]);
  });

  test('require_approval needs approvers', () => {
    expect(problems({ approval: { rules: [{ name: 'ddl', when: { kind: ['ddl'] }, action: 'deny' }, { name: 'export', when: { kind: ['copy_out'] }, action: 'require_approval' }] } })).toEqual([
      'hoop.yaml: connections[0].approval.approvers: required when a rule says require_approval (rule export): the groups whose members may approve',
    ]);
  });

  test('numbers, durations, notify targets, unknown keys', () => {
    expect(problems({
      approval: {
        approvers: ['dba', 'has space'],
        min_approvals: 0,
        timeout: '2d',
        grant_max: 'forever',
        row_cap: 1.5,
        notify: [
          { webhook: 'http://hooks.example/x' },
          { webhook: 'https://hooks.example/x', format: 'teams' },
          { webhook: 'https://hooks.example/x', secret: 'short-secret' },
          { url: 'https://hooks.example/x' },
        ],
        rulez: [],
      },
    })).toEqual([
      'hoop.yaml: connections[0].approval.approvers[1]: must be a group name without spaces or commas',
      'hoop.yaml: connections[0].approval.min_approvals: expected a whole number from 1 to 100',
      'hoop.yaml: connections[0].approval.timeout: must be at most 24h (a held statement keeps its session open while it waits)',
      'hoop.yaml: connections[0].approval.grant_max: expected a duration such as 8h, 30m, 1h30m or 90s',
      'hoop.yaml: connections[0].approval.notify[0].webhook: expected an https:// URL (http:// only on loopback: localhost, 127.0.0.0/8, ::1)',
      'hoop.yaml: connections[0].approval.notify[1].format: expected one of: json, slack',
      'hoop.yaml: connections[0].approval.notify[2].secret: must be at least 16 characters (e.g. ${env:HOOP_WEBHOOK_SECRET} holding the output of openssl rand -hex 32)',
      'hoop.yaml: connections[0].approval.notify[3].webhook: required',
      'hoop.yaml: connections[0].approval.notify[3].url: unknown key',
      'hoop.yaml: connections[0].approval.row_cap: expected a whole number from 1 to 9007199254740991',
      'hoop.yaml: connections[0].approval.rulez: unknown key',
    ]);
  });

  test('a short webhook secret is refused without echoing it', () => {
    const lines = problems({ approval: { notify: [{ webhook: 'https://h.example/', secret: 'sekrit-value' }] } });
    expect(lines.join('\n')).not.toContain('sekrit-value');
  });

  test('access_by_grant needs approvers, and must not repeat a group of access', () => {
    expect(problems({ access_by_grant: ['contractors'] })).toEqual([
      'hoop.yaml: connections[0].access_by_grant: needs approval.approvers: someone must be able to approve a grant',
    ]);
    expect(problems({ access_by_grant: ['analysts'], approval: { approvers: ['dba'] } })).toEqual([
      'hoop.yaml: connections[0].access_by_grant: group analysts is also in access, whose members may always connect; list it in one of them',
    ]);
    expect(problems({ access_by_grant: 'contractors', approval: { approvers: ['dba'] } })).toEqual([
      'hoop.yaml: connections[0].access_by_grant: expected a list, got a string',
    ]);
  });
});
