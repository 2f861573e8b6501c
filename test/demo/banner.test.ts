import { expect, test } from 'vitest';
import { MASKED_QUERY, formatBanner, type BannerInfo } from '../../src/demo/banner.js';

const info: BannerInfo = {
  gatewayUrl: 'http://127.0.0.1:8009',
  connection: 'bank',
  postgresVersion: '15.20',
  counts: { customers: 1000, accounts: 1500, cards: 1200, transactions: 10000 },
  dataDir: '/tmp/hoop-demo-x',
  configFile: '/tmp/hoop-demo-x/hoop.yaml',
  logFile: '/tmp/hoop-demo-x/gateway.log',
  dataDirRemoved: true,
  identities: [
    { name: 'alice', groups: ['analysts'], can: 'connects to bank', key: 'KEY-A' },
    { name: 'bob', groups: ['dba'], can: 'connects to bank; admin', key: 'KEY-B' },
    { name: 'carol', groups: ['audit'], can: 'auditor', key: 'KEY-C' },
  ],
  walkthroughAs: 'alice',
  auditor: 'carol',
  exempt: 'bob',
  startupMs: 2345,
};

test('the banner gives one line per identity and the exact commands to type next', () => {
  const text = formatBanner(info);
  const lines = text.split('\n');
  for (const [name, key] of [['alice', 'KEY-A'], ['bob', 'KEY-B'], ['carol', 'KEY-C']]) {
    expect(lines.filter((l) => l.trimStart().startsWith(`${name} `) && l.endsWith(`HOOP_TOKEN=${key}`))).toHaveLength(1);
  }
  expect(lines).toContain('  export HOOP_GATEWAY=http://127.0.0.1:8009 HOOP_TOKEN=KEY-A');
  expect(text).toMatch(/^ {2}hoop connections\b/m);
  expect(text).toMatch(/^ {2}hoop connect bank\b/m);
  expect(text).toMatch(/^ {2}psql "<the URI hoop connect printed>"$/m);
  expect(text).toMatch(/^ {2}hoop sessions\b/m);
  expect(text).toMatch(/^ {2}hoop sessions show <id>/m);
  expect(text).toContain("carol (audit) reads everyone's sessions: HOOP_TOKEN=KEY-C hoop sessions");
  expect(text).toContain('13,700 rows:');
  expect(text).toContain('ready in 2.3 s');
  expect(text).toContain('/tmp/hoop-demo-x is removed');
  // The same query as the masked identity and as the exempt one.
  expect(text).toContain(`bank=> ${MASKED_QUERY}`);
  expect(text).toContain('HOOP_TOKEN=KEY-B hoop connect bank --port 5434');
  expect(text).toContain('bank=> select * from customers;');
  expect(text).toContain('HOOP_TOKEN=KEY-B hoop reviews, then hoop review approve <id>');
  expect(text).toContain(`-c "${MASKED_QUERY.replace(/;$/, '')}"`);
});

test('a kept data dir is said to be kept, and extra sections appear after the identities', () => {
  const text = formatBanner({ ...info, dataDirRemoved: false, sections: [{ title: 'Log in with OIDC:', lines: ['hoop login'] }] });
  expect(text).toContain('/tmp/hoop-demo-x (the audit log) is kept');
  expect(text.indexOf('Log in with OIDC:')).toBeGreaterThan(text.indexOf('HOOP_TOKEN=KEY-C'));
  expect(text.indexOf('Log in with OIDC:')).toBeLessThan(text.indexOf('Try it as alice'));
});

test('commands are spelled the way the user runs the CLI, with their comments aligned', () => {
  const text = formatBanner({ ...info, cli: 'node bin/hoop.js' });
  const commandLines = text.split('\n').filter((l) => l.startsWith('  node bin/hoop.js ') && l.includes('# '));
  expect(commandLines.map((l) => l.slice(0, l.indexOf('#')).trimEnd())).toEqual([
    '  node bin/hoop.js connections',
    '  node bin/hoop.js connect bank',
    '  node bin/hoop.js sessions',
    '  node bin/hoop.js sessions show <id>',
  ]);
  expect(new Set(commandLines.map((l) => l.indexOf('#'))).size).toBe(1);
  expect(text).toContain('HOOP_TOKEN=KEY-C node bin/hoop.js sessions');
});
