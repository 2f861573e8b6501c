/** The StartupMessage `options` value that gives a session its role, escaped as libpq's PGOPTIONS are. */
import { expect, test } from 'vitest';
import { roleOption } from '../../../src/protocols/postgres/upstream.js';

test('a plain role name goes as it is', () => {
  expect(roleOption('hoop_analyst')).toBe('-c role=hoop_analyst');
});

test('spaces and backslashes are backslash-escaped, so the server reads one switch with the whole name', () => {
  expect(roleOption('odd name\\x')).toBe('-c role=odd\\ name\\\\x');
});
