/** configChanges: what a reload records about access rules and the approval block (never a webhook URL or secret). */
import { describe, expect, test } from 'vitest';
import { parseConfig } from '../../src/gateway/config.js';
import { configChanges } from '../../src/gateway/reload.js';

function config(approval: Record<string, unknown> | undefined, extra: Record<string, unknown> = {}) {
  return parseConfig({
    listen: '127.0.0.1:0',
    store: 'sqlite::memory:',
    identity: { api_keys: [{ name: 'etl', sha256: 'ab'.repeat(32), groups: ['etl'] }] },
    connections: [{
      name: 'bank', type: 'postgres', access: ['analysts'],
      upstream: { host: 'db.internal', database: 'bank', user: 'hoop_svc', sslmode: 'disable' },
      ...(approval ? { approval } : {}),
      ...extra,
    }],
  }, 'hoop.yaml', '/tmp');
}

const RULES = [
  { name: 'ddl', when: { kind: ['ddl'] }, action: 'deny' },
  { name: 'export', groups: ['analysts'], when: { kind: ['select'], tables: ['customers'], where: false }, action: 'require_approval' },
];

describe('approval changes', () => {
  test('rules added, removed, changed and reordered; settings as old -> new', () => {
    const before = config({ approvers: ['dba'], rules: RULES, timeout: '10m' });
    const after = config({
      approvers: ['dba', 'security'], min_approvals: 2, timeout: '5m', row_cap: 1000,
      rules: [{ ...RULES[1], when: { kind: ['select', 'copy_out'], where: false } }, RULES[0], { name: 'bulk', when: { estimated_rows: '>= 5000' }, action: 'require_approval' }],
    }, { access_by_grant: ['contractors'] });
    expect(configChanges(before, after).approval).toEqual({
      bank: {
        added: ['bulk: require_approval when estimated_rows>=5000'],
        removed: [],
        changed: [
          'export: require_approval for analysts when kind=select tables=customers where=false -> require_approval for analysts when kind=select,copy_out where=false',
          'access rule order (the first matching rule wins)',
          'approvers: dba -> dba, security',
          'min_approvals: 1 -> 2',
          'timeout: 10m 0s -> 5m 0s',
          'row_cap: (none) -> 1000',
          'access_by_grant: (none) -> contractors',
        ],
      },
    });
    expect(configChanges(after, before).approval['bank']!.removed).toEqual(['bulk: require_approval when estimated_rows>=5000']);
  });

  test('on and off, and nothing when nothing changed', () => {
    expect(configChanges(config(undefined), config({ rules: [RULES[0]] })).approval).toEqual({ bank: { added: ['ddl: deny when kind=ddl'], removed: [], changed: ['approval: off -> on'] } });
    expect(configChanges(config({ rules: [RULES[0]] }), config(undefined)).approval).toEqual({ bank: { added: [], removed: ['ddl: deny when kind=ddl'], changed: ['approval: on -> off'] } });
    expect(configChanges(config({ approvers: ['dba'], rules: RULES }), config({ approvers: ['dba'], rules: RULES })).approval).toEqual({});
    expect(configChanges(null, config({ rules: [{ name: 'all', when: {}, action: 'deny' }] })).approval).toEqual({ bank: { added: ['all: deny when any statement'], removed: [], changed: ['approval: off -> on'] } });
  });

  test('notify targets: counts and formats only, never a URL or secret', () => {
    const a = config({ notify: [{ webhook: 'https://hooks.slack.example/T/B/old-token', format: 'slack' }] });
    const b = config({ notify: [{ webhook: 'https://hooks.slack.example/T/B/new-token', format: 'slack', secret: 'a-secret-of-16-chars' }] });
    const c = config({ notify: [{ webhook: 'https://hooks.example/a' }, { webhook: 'https://hooks.slack.example/T/B/new-token', format: 'slack' }] });
    expect(configChanges(a, b).approval).toEqual({ bank: { added: [], removed: [], changed: ['notify: targets replaced'] } });
    expect(configChanges(a, c).approval).toEqual({ bank: { added: [], removed: [], changed: ['notify: 1 target (slack) -> 2 targets (json, slack)'] } });
    const recorded = JSON.stringify([configChanges(a, b), configChanges(a, c)]);
    for (const secret of ['old-token', 'new-token', 'a-secret-of-16-chars', 'hooks.example']) expect(recorded).not.toContain(secret);
  });
});
