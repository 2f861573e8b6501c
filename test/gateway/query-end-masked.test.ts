/** query.end carries what the engine masked (StatementEnd.masked), and only when it masked anything. */
import { expect, test } from 'vitest';
import { queryEndData } from '../../src/gateway/session-audit.js';
import { StatementRun } from '../../src/protocols/postgres/results.js';

const START = { queryId: 'q', protocol: 'simple' as const, statement: 'SELECT ssn FROM customers', statementName: null, portal: null, parameters: [] };

test('masked counts by label reach query.end', () => {
  const run = new StatementRun(START, 1000);
  run.tally('public.customers.ssn:partial', 3);
  run.tally('detector:ssn');
  run.tally('detector:ssn');
  expect(queryEndData(run.finish()).masked).toEqual({ 'public.customers.ssn:partial': 3, 'detector:ssn': 2 });
});

test('a statement that masked nothing has no masked field', () => {
  expect('masked' in queryEndData(new StatementRun(START, 1000).finish())).toBe(false);
});
