/**
 * A small fictional bank for `hoop demo` and the tests: customers with the kinds of fields a
 * regulated institution must protect (SSN, date of birth, email, phone, credit score, address),
 * their accounts, payment cards and transactions.
 *
 * Everything is generated from a seeded PRNG, so the same seed always yields the same rows (the
 * demo, the docs and the masking tests can quote them). Nothing here is real:
 *  - SSNs use area numbers 900-999 with group numbers 01-49: never issued as SSNs, and outside
 *    the ITIN groups too, yet shaped like SSNs (NNN-NN-NNNN) so that detectors recognise them.
 *  - Card numbers start with well-known test BINs (400000, 424242, 555555, 222300) and carry a
 *    valid Luhn check digit, as real card numbers do.
 *  - Emails use the RFC 2606 domains example.com/.net/.org; phone numbers use the 555-01XX block
 *    reserved for fiction.
 *  - IBANs are German-shaped with the made-up bank code 12345678 and valid ISO 7064 check digits.
 */
import pg from 'pg';

export const BANK_SCHEMA = 'bank';
export const BANK_SEED = 20_240_917;

export const BANK_ROW_COUNTS = {
  customers: 1_000,
  accounts: 1_500,
  cards: 1_200,
  transactions: 10_000,
} as const;

export type BankTable = keyof typeof BANK_ROW_COUNTS;

/** Columns holding personal or financial data; each gets a COMMENT saying so. */
export const BANK_PROTECTED_COLUMNS: Record<string, string> = {
  'customers.full_name': 'PII: customer name',
  'customers.ssn': 'PII (ssn): US Social Security number, NNN-NN-NNNN',
  'customers.date_of_birth': 'PII (date of birth)',
  'customers.email': 'PII (email)',
  'customers.phone': 'PII (phone)',
  'customers.credit_score': 'Confidential (credit score): FCRA consumer report data, 300-850',
  'customers.address': 'PII: street address',
  'accounts.account_number': 'Confidential (account number)',
  'accounts.iban': 'Confidential (account number): IBAN',
  'accounts.balance': 'Confidential: current balance',
  'cards.card_number': 'PCI DSS (card number): primary account number, 16 digits',
};

// ---------------------------------------------------------------------------------------------
// Deterministic randomness

/** mulberry32: a tiny, fast 32-bit PRNG; plenty for fixture data, and identical on every platform. */
export class Prng {
  private state: number;

  constructor(seed: number) {
    this.state = seed >>> 0;
  }

  /** A float in [0, 1). */
  next(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** An integer in [min, max], both inclusive. */
  int(min: number, max: number): number {
    return min + Math.floor(this.next() * (max - min + 1));
  }

  pick<T>(items: readonly T[]): T {
    return items[Math.floor(this.next() * items.length)] as T;
  }

  digits(n: number): string {
    let s = '';
    for (let i = 0; i < n; i++) s += String(this.int(0, 9));
    return s;
  }

  /** Roughly normal around `mean` (Irwin-Hall of 4 uniforms), clamped to [min, max]. */
  bell(mean: number, spread: number, min: number, max: number): number {
    const u = (this.next() + this.next() + this.next() + this.next() - 2) / 2; // ~[-1, 1]
    return Math.min(max, Math.max(min, Math.round(mean + u * spread)));
  }
}

// ---------------------------------------------------------------------------------------------
// Check digits

/** The Luhn (mod 10) check digit for a string of digits. */
export function luhnCheckDigit(payload: string): string {
  let sum = 0;
  for (let i = 0; i < payload.length; i++) {
    let d = Number(payload[payload.length - 1 - i]);
    if (i % 2 === 0) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
  }
  return String((10 - (sum % 10)) % 10);
}

export function luhnValid(number: string): boolean {
  return /^\d{2,}$/.test(number) && luhnCheckDigit(number.slice(0, -1)) === number.slice(-1);
}

/** ISO 13616 IBAN check digits (ISO 7064 mod 97-10) for a country and BBAN. */
export function ibanCheckDigits(country: string, bban: string): string {
  const rearranged = `${bban}${country}00`.replace(/[A-Z]/g, (c) => String(c.charCodeAt(0) - 55));
  let remainder = 0;
  for (const ch of rearranged) remainder = (remainder * 10 + Number(ch)) % 97;
  return String(98 - remainder).padStart(2, '0');
}

export function ibanValid(iban: string): boolean {
  const m = /^([A-Z]{2})(\d{2})([A-Z0-9]+)$/.exec(iban);
  return m !== null && ibanCheckDigits(m[1] as string, m[3] as string) === m[2];
}

// ---------------------------------------------------------------------------------------------
// Vocabulary

const FIRST_NAMES = [
  'James', 'Mary', 'Robert', 'Patricia', 'John', 'Jennifer', 'Michael', 'Linda', 'David', 'Elizabeth',
  'William', 'Barbara', 'Richard', 'Susan', 'Joseph', 'Jessica', 'Thomas', 'Sarah', 'Carlos', 'Karen',
  'Daniel', 'Lisa', 'Matthew', 'Nancy', 'Anthony', 'Betty', 'Mark', 'Sandra', 'Wei', 'Ashley',
  'Steven', 'Kimberly', 'Andrew', 'Emily', 'Kenji', 'Donna', 'Joshua', 'Michelle', 'Priya', 'Carol',
  'Kevin', 'Amanda', 'Brian', 'Melissa', 'Omar', 'Deborah', 'Lucas', 'Aisha', 'Mateo', 'Sofia',
  'Ethan', 'Olivia', 'Noah', 'Emma', 'Liam', 'Ava', 'Diego', 'Fatima', 'Hiroshi', 'Ingrid',
];

const LAST_NAMES = [
  'Smith', 'Johnson', 'Williams', 'Brown', 'Jones', 'Garcia', 'Miller', 'Davis', 'Rodriguez', 'Martinez',
  'Hernandez', 'Lopez', 'Gonzalez', 'Wilson', 'Anderson', 'Thomas', 'Taylor', 'Moore', 'Jackson', 'Martin',
  'Lee', 'Perez', 'Thompson', 'White', 'Harris', 'Sanchez', 'Clark', 'Ramirez', 'Lewis', 'Robinson',
  'Walker', 'Young', 'Allen', 'King', 'Wright', 'Scott', 'Torres', 'Nguyen', 'Hill', 'Flores',
  'Green', 'Adams', 'Nelson', 'Baker', 'Hall', 'Rivera', 'Campbell', 'Mitchell', 'Carter', 'Roberts',
  'Chen', 'Patel', 'Kim', 'Okafor', 'Novak', 'Schmidt', 'Rossi', 'Tanaka', 'Haddad', 'Larsen',
];

const STREETS = [
  'Oak', 'Maple', 'Cedar', 'Pine', 'Elm', 'Washington', 'Lake', 'Hill', 'Park', 'Main',
  'Walnut', 'Spring', 'North', 'Ridge', 'Sunset', 'Willow', 'Church', 'Mill', 'River', 'Highland',
];
const STREET_SUFFIXES = ['St', 'Ave', 'Rd', 'Blvd', 'Ln', 'Dr', 'Ct', 'Way'];

const CITIES: readonly (readonly [string, string, string])[] = [
  // city, state, telephone area code
  ['Springfield', 'IL', '217'], ['Columbus', 'OH', '614'], ['Austin', 'TX', '512'], ['Portland', 'OR', '503'],
  ['Denver', 'CO', '303'], ['Charlotte', 'NC', '704'], ['Phoenix', 'AZ', '602'], ['Madison', 'WI', '608'],
  ['Richmond', 'VA', '804'], ['Omaha', 'NE', '402'], ['Tampa', 'FL', '813'], ['Boise', 'ID', '208'],
  ['Albany', 'NY', '518'], ['Hartford', 'CT', '860'], ['Nashville', 'TN', '615'], ['Sacramento', 'CA', '916'],
  ['Burlington', 'VT', '802'], ['Savannah', 'GA', '912'], ['Anchorage', 'AK', '907'], ['Providence', 'RI', '401'],
];

const EMAIL_DOMAINS = ['example.com', 'example.net', 'example.org'];

const CARD_BINS = ['400000', '424242', '555555', '222300'];

/** merchant, category, typical amount in dollars (debits). */
const MERCHANTS: readonly (readonly [string, string, number])[] = [
  ['Corner Grocery', 'groceries', 60], ['FreshMart', 'groceries', 85], ['Green Valley Market', 'groceries', 45],
  ['Blue Bottle Cafe', 'dining', 9], ['Luigi Trattoria', 'dining', 48], ['Taco Town', 'dining', 14],
  ['QuickFuel', 'fuel', 42], ['Sunrise Gas', 'fuel', 38],
  ['City Transit', 'transport', 25], ['RideShare Co', 'transport', 18],
  ['Northwind Electric', 'utilities', 110], ['Aqua Water Works', 'utilities', 55], ['Fiberlink Internet', 'utilities', 70],
  ['Pixel Streaming', 'entertainment', 15], ['Cineplex 12', 'entertainment', 28],
  ['Everyday Pharmacy', 'health', 32], ['Lakeside Clinic', 'health', 120],
  ['Bookworm Books', 'shopping', 24], ['Hardware Depot', 'shopping', 67], ['Threads Apparel', 'shopping', 58],
  ['SkyHigh Airlines', 'travel', 340], ['Harbor Hotel', 'travel', 190],
];

const DEPOSITS: readonly (readonly [string, string, number])[] = [
  ['ACME Corp Payroll', 'income', 2400], ['Globex Payroll', 'income', 3100], ['Initech Payroll', 'income', 1900],
  ['Mobile Deposit', 'transfer', 300], ['Transfer from Savings', 'transfer', 500],
];

// Fixed calendar so that the data never depends on the day it is generated.
const DAY_MS = 86_400_000;
const TX_WINDOW_START = Date.UTC(2026, 0, 1);
const TX_WINDOW_DAYS = 304; // 2026-01-01 .. 2026-10-31

function isoDay(ms: number): string {
  return new Date(ms).toISOString().slice(0, 10);
}

function cents(amount: number): string {
  const negative = amount < 0;
  const abs = Math.abs(amount);
  return `${negative ? '-' : ''}${Math.floor(abs / 100)}.${String(abs % 100).padStart(2, '0')}`;
}

// ---------------------------------------------------------------------------------------------
// Rows

export interface CustomerRow {
  id: number; full_name: string; ssn: string; date_of_birth: string; email: string; phone: string;
  credit_score: number; address: string; city: string; state: string; created_at: string;
}
export interface AccountRow {
  id: number; account_number: string; iban: string; customer_id: number; type: 'checking' | 'savings';
  balance: string; opened_at: string;
}
export interface CardRow {
  id: number; card_number: string; account_id: number; cardholder_name: string; expiry: string;
  status: 'active' | 'blocked' | 'expired'; issued_at: string;
}
export interface TransactionRow {
  id: number; account_id: number; amount: string; merchant: string; category: string;
  occurred_at: string; description: string;
}
export interface BankData {
  customers: CustomerRow[];
  accounts: AccountRow[];
  cards: CardRow[];
  transactions: TransactionRow[];
}

/** Generates the whole bank in memory; pure and deterministic in `seed`. */
export function generateBank(seed: number = BANK_SEED): BankData {
  const rng = new Prng(seed);
  const customers = generateCustomers(rng);
  const accounts = generateAccounts(rng, customers);
  const cards = generateCards(rng, accounts, customers);
  const transactions = generateTransactions(rng, accounts);
  return { customers, accounts, cards, transactions };
}

function generateCustomers(rng: Prng): CustomerRow[] {
  const rows: CustomerRow[] = [];
  const ssns = new Set<string>();
  const emails = new Set<string>();
  for (let id = 1; id <= BANK_ROW_COUNTS.customers; id++) {
    const first = rng.pick(FIRST_NAMES);
    const last = rng.pick(LAST_NAMES);
    let ssn: string;
    do {
      ssn = `${rng.int(900, 999)}-${String(rng.int(1, 49)).padStart(2, '0')}-${String(rng.int(1, 9999)).padStart(4, '0')}`;
    } while (ssns.has(ssn));
    ssns.add(ssn);
    const base = `${first}.${last}`.toLowerCase();
    let email = `${base}@${rng.pick(EMAIL_DOMAINS)}`;
    for (let n = 2; emails.has(email); n++) email = `${base}${n}@${rng.pick(EMAIL_DOMAINS)}`;
    emails.add(email);
    const [city, state, area] = rng.pick(CITIES);
    const born = Date.UTC(1945, 0, 1) + rng.int(0, 60 * 365) * DAY_MS; // 1945 .. ~2004
    const created = Date.UTC(2012, 0, 1) + rng.int(0, 13 * 365) * DAY_MS + rng.int(0, DAY_MS / 1000 - 1) * 1000;
    rows.push({
      id,
      full_name: `${first} ${last}`,
      ssn,
      date_of_birth: isoDay(born),
      email,
      phone: `(${area}) 555-01${rng.digits(2)}`,
      credit_score: rng.bell(690, 300, 300, 850),
      address: `${rng.int(1, 9899)} ${rng.pick(STREETS)} ${rng.pick(STREET_SUFFIXES)}`,
      city,
      state,
      created_at: new Date(created).toISOString(),
    });
  }
  return rows;
}

function generateAccounts(rng: Prng, customers: CustomerRow[]): AccountRow[] {
  const rows: AccountRow[] = [];
  const numbers = new Set<string>();
  const owners: { customer: CustomerRow; type: 'checking' | 'savings' }[] = customers.map((customer) => ({ customer, type: 'checking' }));
  // The remaining accounts are savings accounts of distinct, randomly chosen customers.
  const shuffled = [...customers];
  for (let i = shuffled.length - 1; i > 0; i--) {
    const j = rng.int(0, i);
    [shuffled[i], shuffled[j]] = [shuffled[j] as CustomerRow, shuffled[i] as CustomerRow];
  }
  for (const customer of shuffled.slice(0, BANK_ROW_COUNTS.accounts - customers.length)) owners.push({ customer, type: 'savings' });
  owners.sort((a, b) => a.customer.id - b.customer.id || a.type.localeCompare(b.type));

  for (const [index, { customer, type }] of owners.entries()) {
    let accountNumber: string;
    do {
      accountNumber = String(rng.int(1, 9)) + rng.digits(rng.int(9, 11)); // 10-12 digits
    } while (numbers.has(accountNumber));
    numbers.add(accountNumber);
    const bban = `12345678${accountNumber.slice(-10).padStart(10, '0')}`;
    const opened = Math.max(Date.parse(customer.created_at), Date.UTC(2012, 0, 1)) + rng.int(0, 400) * DAY_MS;
    const balance = type === 'checking' ? rng.bell(420_000, 500_000, 1_200, 2_500_000) : rng.bell(2_600_000, 2_500_000, 10_000, 12_000_000);
    rows.push({
      id: index + 1,
      account_number: accountNumber,
      iban: `DE${ibanCheckDigits('DE', bban)}${bban}`,
      customer_id: customer.id,
      type,
      balance: cents(balance + rng.int(0, 99)),
      opened_at: new Date(Math.min(opened, TX_WINDOW_START - DAY_MS)).toISOString(),
    });
  }
  return rows;
}

function generateCards(rng: Prng, accounts: AccountRow[], customers: CustomerRow[]): CardRow[] {
  const rows: CardRow[] = [];
  const numbers = new Set<string>();
  const checking = accounts.filter((a) => a.type === 'checking');
  // Every checking account has an active card; the rest are older, replaced or blocked cards.
  const holders = [...checking];
  while (holders.length < BANK_ROW_COUNTS.cards) holders.push(rng.pick(checking));
  for (const [index, account] of holders.entries()) {
    let number: string;
    do {
      const payload = rng.pick(CARD_BINS) + rng.digits(9);
      number = payload + luhnCheckDigit(payload);
    } while (numbers.has(number));
    numbers.add(number);
    const current = index < checking.length;
    const status = current ? 'active' : rng.next() < 0.6 ? 'expired' : 'blocked';
    const expiryYear = status === 'expired' ? rng.int(2022, 2025) : rng.int(2027, 2031);
    const expiryMonth = rng.int(1, 12);
    const issued = Date.UTC(expiryYear - 5, expiryMonth - 1, 1);
    const customer = customers[account.customer_id - 1] as CustomerRow;
    rows.push({
      id: index + 1,
      card_number: number,
      account_id: account.id,
      cardholder_name: customer.full_name.toUpperCase(),
      expiry: isoDay(Date.UTC(expiryYear, expiryMonth, 0)), // last day of the expiry month
      status,
      issued_at: isoDay(issued),
    });
  }
  return rows;
}

function generateTransactions(rng: Prng, accounts: AccountRow[]): TransactionRow[] {
  const rows: TransactionRow[] = [];
  const checking = accounts.filter((a) => a.type === 'checking');
  for (let id = 1; id <= BANK_ROW_COUNTS.transactions; id++) {
    // Most activity is on checking accounts; savings see transfers.
    const account = rng.next() < 0.9 ? rng.pick(checking) : rng.pick(accounts);
    const deposit = account.type === 'savings' || rng.next() < 0.08;
    const [merchant, category, typical] = deposit ? rng.pick(DEPOSITS) : rng.pick(MERCHANTS);
    const amountCents = Math.max(100, Math.round(typical * 100 * (0.4 + rng.next() * 1.2)));
    const at = TX_WINDOW_START + rng.int(0, TX_WINDOW_DAYS - 1) * DAY_MS + rng.int(6 * 3600, 23 * 3600) * 1000;
    const description = deposit
      ? `${category === 'income' ? 'DIRECT DEP' : 'DEPOSIT'} ${merchant.toUpperCase()}`
      : `POS PURCHASE ${merchant.toUpperCase()} #${rng.digits(4)}`;
    rows.push({
      id,
      account_id: account.id,
      amount: cents(deposit ? amountCents : -amountCents),
      merchant,
      category,
      occurred_at: new Date(at).toISOString(),
      description,
    });
  }
  rows.sort((a, b) => a.occurred_at.localeCompare(b.occurred_at) || a.id - b.id);
  return rows.map((row, i) => ({ ...row, id: i + 1 }));
}

// ---------------------------------------------------------------------------------------------
// Loading

const DDL = `
CREATE SCHEMA bank;
COMMENT ON SCHEMA bank IS 'Fictional bank generated by hoop demo: every name, number and address is made up';

CREATE TABLE bank.customers (
  id            integer PRIMARY KEY,
  full_name     text NOT NULL,
  ssn           char(11) NOT NULL UNIQUE,
  date_of_birth date NOT NULL,
  email         text NOT NULL UNIQUE,
  phone         text NOT NULL,
  credit_score  smallint NOT NULL CHECK (credit_score BETWEEN 300 AND 850),
  address       text NOT NULL,
  city          text NOT NULL,
  state         char(2) NOT NULL,
  created_at    timestamptz NOT NULL
);

CREATE TABLE bank.accounts (
  id             integer PRIMARY KEY,
  account_number varchar(12) NOT NULL UNIQUE,
  iban           varchar(34) NOT NULL UNIQUE,
  customer_id    integer NOT NULL REFERENCES bank.customers(id),
  type           text NOT NULL CHECK (type IN ('checking', 'savings')),
  balance        numeric(14,2) NOT NULL,
  opened_at      timestamptz NOT NULL
);
CREATE INDEX ON bank.accounts (customer_id);

CREATE TABLE bank.cards (
  id              integer PRIMARY KEY,
  card_number     char(16) NOT NULL UNIQUE,
  account_id      integer NOT NULL REFERENCES bank.accounts(id),
  cardholder_name text NOT NULL,
  expiry          date NOT NULL,
  status          text NOT NULL CHECK (status IN ('active', 'blocked', 'expired')),
  issued_at       date NOT NULL
);
CREATE INDEX ON bank.cards (account_id);

CREATE TABLE bank.transactions (
  id          bigint PRIMARY KEY,
  account_id  integer NOT NULL REFERENCES bank.accounts(id),
  amount      numeric(12,2) NOT NULL,
  merchant    text NOT NULL,
  category    text NOT NULL,
  occurred_at timestamptz NOT NULL,
  description text NOT NULL
);
CREATE INDEX ON bank.transactions (account_id, occurred_at);

CREATE VIEW bank.customer_overview AS
  SELECT c.id, c.full_name, c.email, c.ssn, c.credit_score, c.city, c.state,
         count(a.id) AS accounts, coalesce(sum(a.balance), 0)::numeric(14,2) AS total_balance
    FROM bank.customers c LEFT JOIN bank.accounts a ON a.customer_id = c.id
   GROUP BY c.id;
COMMENT ON VIEW bank.customer_overview IS 'One row per customer with account count and total balance (exposes ssn and email)';

CREATE VIEW bank.monthly_spending AS
  SELECT t.account_id, date_trunc('month', t.occurred_at AT TIME ZONE 'UTC')::date AS month, t.category,
         count(*) AS transactions, -sum(t.amount) AS spent
    FROM bank.transactions t
   WHERE t.amount < 0
   GROUP BY 1, 2, 3;
COMMENT ON VIEW bank.monthly_spending IS 'Debits per account, month and category';
`;

/** `unnest` over one array parameter per column: one round trip and one statement per table. */
async function insertRows<T extends object>(client: pg.ClientBase, table: string, columns: (keyof T & string)[], types: string[], rows: T[]): Promise<void> {
  const params = columns.map((c) => rows.map((r) => (r as Record<string, unknown>)[c]));
  const unnest = types.map((t, i) => `$${i + 1}::${t}[]`).join(', ');
  await client.query(`INSERT INTO bank.${table} (${columns.join(', ')}) SELECT * FROM unnest(${unnest})`, params);
}

export interface SeedResult {
  schema: string;
  counts: Record<BankTable, number>;
}

/**
 * Creates schema `bank` (tables, views, comments on protected columns) in the database the client
 * or URL points at, fills it, and makes `bank` the database's default search_path so that
 * `select * from customers` works. Objects belong to the connecting role. The schema must not exist.
 */
export async function seedBank(target: pg.ClientBase | string, options: { seed?: number } = {}): Promise<SeedResult> {
  const data = generateBank(options.seed ?? BANK_SEED);
  const own = typeof target === 'string' ? new pg.Client({ connectionString: target }) : null;
  const client = own ?? (target as pg.ClientBase);
  if (own) await own.connect();
  try {
    await client.query('BEGIN');
    await client.query(DDL);
    for (const [column, comment] of Object.entries(BANK_PROTECTED_COLUMNS)) {
      await client.query(`COMMENT ON COLUMN bank.${column} IS ${client.escapeLiteral(comment)}`);
    }
    await insertRows(client, 'customers',
      ['id', 'full_name', 'ssn', 'date_of_birth', 'email', 'phone', 'credit_score', 'address', 'city', 'state', 'created_at'],
      ['int4', 'text', 'text', 'date', 'text', 'text', 'int2', 'text', 'text', 'text', 'timestamptz'], data.customers);
    await insertRows(client, 'accounts',
      ['id', 'account_number', 'iban', 'customer_id', 'type', 'balance', 'opened_at'],
      ['int4', 'text', 'text', 'int4', 'text', 'numeric', 'timestamptz'], data.accounts);
    await insertRows(client, 'cards',
      ['id', 'card_number', 'account_id', 'cardholder_name', 'expiry', 'status', 'issued_at'],
      ['int4', 'text', 'int4', 'text', 'date', 'text', 'date'], data.cards);
    await insertRows(client, 'transactions',
      ['id', 'account_id', 'amount', 'merchant', 'category', 'occurred_at', 'description'],
      ['int8', 'int4', 'numeric', 'text', 'text', 'timestamptz', 'text'], data.transactions);
    // New sessions (psql through the gateway) find the bank tables without a schema prefix.
    await client.query(`DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET search_path = bank, public', current_database()); END $$`);
    await client.query('COMMIT');
    await client.query('ANALYZE bank.customers, bank.accounts, bank.cards, bank.transactions');
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  } finally {
    if (own) await own.end();
  }
  return {
    schema: BANK_SCHEMA,
    counts: {
      customers: data.customers.length,
      accounts: data.accounts.length,
      cards: data.cards.length,
      transactions: data.transactions.length,
    },
  };
}
