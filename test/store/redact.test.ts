import { expect, test } from 'vitest';
import { redactSecret, redactUrl } from '../../src/store/redact.js';

test.each([
  ['postgres://hoop:s3cret@db:5432/hoop', 'postgres://hoop:***@db:5432/hoop'],
  ['postgresql://hoop:p@ss/w:rd@db/hoop?sslmode=require', 'postgresql://hoop:***@db/hoop?sslmode=require'],
  ['postgres://hoop@db/hoop?password=s3cret&sslmode=require', 'postgres://hoop@db/hoop?password=***&sslmode=require'],
  ['postgres://db/hoop', 'postgres://db/hoop'],
  ['sqlite:./hoop-data/hoop.db', 'sqlite:./hoop-data/hoop.db'],
])('redactUrl(%s) hides the password', (url, expected) => {
  expect(redactUrl(url)).toBe(expected);
});

test('redactSecret removes every occurrence and ignores an empty secret', () => {
  expect(redactSecret('a s3cret b s3cret', 's3cret')).toBe('a *** b ***');
  expect(redactSecret('unchanged', '')).toBe('unchanged');
  expect(redactSecret('unchanged', null)).toBe('unchanged');
});
