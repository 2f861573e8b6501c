/** guardPlan: which records the guard decides, and what a refusal looks like to the engine. */
import { beforeAll, expect, test } from 'vitest';
import type { StatementStart } from '../../src/protocols/engine.js';
import { guardPlan } from '../../src/gateway/guard-plan.js';
import { loadParser } from '../../src/policy/masking/parse.js';

const ROLES = ['hoop_svc', 'hoop_analyst'];
const start = (statement: string, extra: Partial<StatementStart> = {}): StatementStart => ({
  queryId: 'q', protocol: 'simple', statement, statementName: null, portal: null, parameters: [], ...extra,
});

beforeAll(async () => {
  await loadParser();
});

test('a refused text: 42501 with the reason, and what the record keeps', () => {
  expect(guardPlan(start('SET ROLE NONE'), ROLES)).toEqual({
    action: 'refuse', code: '42501',
    message: 'hoop: statement refused: SET ROLE: it would change the database role every user of this connection shares',
    summary: { guard: { refused: 'shared credential' } },
  });
});

test('Parse and Bind records, and the extended protocol, are decided by their text', () => {
  for (const phase of ['parse', 'bind'] as const) {
    expect(guardPlan(start("SELECT set_config('role', $1, false)", { protocol: 'extended', phase }), ROLES)?.code).toBe('42501');
    expect(guardPlan(start('SELECT $1::int', { protocol: 'extended', phase }), ROLES)).toBeNull();
  }
});

test('an unparseable text with a word the guard looks for: 42601 with the parser\'s message', () => {
  const plan = guardPlan(start('ALTER ROLE'), ROLES);
  expect(plan).toMatchObject({ action: 'refuse', code: '42601', summary: { guard: { refused: 'unparseable' } } });
  expect(plan?.message).toMatch(/syntax error at end of input/);
});

test('a text cut at the text limit is refused: its end was never read', () => {
  expect(guardPlan(start('SELECT 1 -- …', { statementTruncated: true }), ROLES)).toMatchObject({ action: 'refuse', code: '42501', message: expect.stringContaining('audit.payload_limit') });
});

test('unknown statements and ordinary ones: no objection', () => {
  expect(guardPlan(start('-- a prepared statement SQL may have replaced', { protocol: 'extended', unknown: true }), ROLES)).toBeNull();
  expect(guardPlan(start('SELECT pg_catalog.lo_open($1, $2)', { protocol: 'fastpath' }), ROLES)).toBeNull();
  expect(guardPlan(start('RESET ROLE; DISCARD ALL'), ROLES)).toBeNull();
});
