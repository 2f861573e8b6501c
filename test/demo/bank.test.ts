import { afterAll, beforeAll, expect, inject, test } from 'vitest';
import pg from 'pg';
import { randomBytes } from 'node:crypto';
import { BANK_ROW_COUNTS, BANK_PROTECTED_COLUMNS, generateBank, ibanValid, luhnCheckDigit, luhnValid, seedBank } from '../../src/demo/bank.js';
import { passwordOf } from '../helpers/postgres.js';

const upstream = inject('upstream');
const admin = () =>
  new pg.Client({ host: upstream.host, port: upstream.port, user: upstream.users.scram, password: passwordOf(upstream.users.scram), database: upstream.database });
const databases = [`bank_a_${randomBytes(4).toString('hex')}`, `bank_b_${randomBytes(4).toString('hex')}`];
const urlOf = (db: string) =>
  `postgresql://${upstream.users.scram}:${encodeURIComponent(passwordOf(upstream.users.scram))}@${upstream.host}:${upstream.port}/${db}`;

/** One digest over every row of every table, in a fixed order and time zone. */
const CHECKSUM = `
  SET TimeZone = 'UTC';
  SELECT md5(string_agg(x, '|' ORDER BY x)) AS digest FROM (
    SELECT 'c' || (t.*)::text AS x FROM bank.customers t UNION ALL
    SELECT 'a' || (t.*)::text FROM bank.accounts t UNION ALL
    SELECT 'k' || (t.*)::text FROM bank.cards t UNION ALL
    SELECT 't' || (t.*)::text FROM bank.transactions t) all_rows`;

beforeAll(async () => {
  const c = admin();
  await c.connect();
  for (const db of databases) await c.query(`CREATE DATABASE ${db}`);
  await c.end();
});

afterAll(async () => {
  const c = admin();
  await c.connect();
  for (const db of databases) await c.query(`DROP DATABASE IF EXISTS ${db} WITH (FORCE)`);
  await c.end();
});

test('the generator is deterministic in its seed and yields the advertised row counts', () => {
  const a = generateBank();
  expect(generateBank()).toEqual(a);
  expect(generateBank(7).customers[0]).not.toEqual(a.customers[0]);
  expect(a.customers).toHaveLength(BANK_ROW_COUNTS.customers);
  expect(a.accounts).toHaveLength(BANK_ROW_COUNTS.accounts);
  expect(a.cards).toHaveLength(BANK_ROW_COUNTS.cards);
  expect(a.transactions).toHaveLength(BANK_ROW_COUNTS.transactions);
});

test('generated values have the documented fictional shapes', () => {
  const { customers, accounts, cards } = generateBank();
  for (const c of customers) {
    expect(c.ssn).toMatch(/^9\d{2}-(0[1-9]|[1-4]\d)-\d{4}$/);
    expect(c.email).toMatch(/^[a-z.0-9]+@example\.(com|net|org)$/);
    expect(c.phone).toMatch(/^\(\d{3}\) 555-01\d{2}$/);
    expect(c.credit_score).toBeGreaterThanOrEqual(300);
    expect(c.credit_score).toBeLessThanOrEqual(850);
  }
  for (const a of accounts) {
    expect(a.account_number).toMatch(/^[1-9]\d{9,11}$/);
    expect(ibanValid(a.iban)).toBe(true);
  }
  for (const k of cards) {
    expect(k.card_number).toMatch(/^(400000|424242|555555|222300)\d{10}$/);
    expect(luhnValid(k.card_number)).toBe(true);
  }
  // The check-digit helpers agree with well-known published test numbers.
  expect(luhnValid('4242424242424242')).toBe(true);
  expect(luhnValid('4242424242424241')).toBe(false);
  expect(luhnCheckDigit('555555555555444')).toBe('4');
  expect(ibanValid('DE89370400440532013000')).toBe(true);
  expect(ibanValid('DE88370400440532013000')).toBe(false);
});

test('seeding twice gives identical tables (checksum over every row), views and comments', async () => {
  const digests: string[] = [];
  for (const db of databases) {
    const started = Date.now();
    const result = await seedBank(urlOf(db));
    expect(Date.now() - started).toBeLessThan(20_000);
    expect(result.counts).toEqual(BANK_ROW_COUNTS);
    const c = new pg.Client({ connectionString: urlOf(db) });
    await c.connect();
    try {
      const res = (await c.query(CHECKSUM)) as unknown as pg.QueryResult[];
      digests.push(res[1]!.rows[0].digest);
      // The database default search_path finds the tables unqualified in new sessions.
      const counts = await c.query(
        'SELECT (SELECT count(*) FROM customers)::int AS customers, (SELECT count(*) FROM accounts)::int AS accounts,' +
          ' (SELECT count(*) FROM cards)::int AS cards, (SELECT count(*) FROM transactions)::int AS transactions',
      );
      expect(counts.rows[0]).toEqual(BANK_ROW_COUNTS);
      const overview = await c.query('SELECT count(*)::int AS n, sum(accounts)::int AS accounts FROM customer_overview');
      expect(overview.rows[0]).toEqual({ n: BANK_ROW_COUNTS.customers, accounts: BANK_ROW_COUNTS.accounts });
      const spending = await c.query('SELECT count(*)::int AS n FROM monthly_spending');
      expect(spending.rows[0].n).toBeGreaterThan(100);
      const comment = await c.query("SELECT col_description('bank.customers'::regclass, 3) AS c");
      expect(comment.rows[0].c).toBe(BANK_PROTECTED_COLUMNS['customers.ssn']);
      const luhn = await c.query('SELECT card_number FROM cards ORDER BY id LIMIT 50');
      for (const r of luhn.rows) expect(luhnValid(r.card_number)).toBe(true);
    } finally {
      await c.end();
    }
  }
  expect(digests[0]).toMatch(/^[0-9a-f]{32}$/);
  expect(digests[1]).toBe(digests[0]);
});
