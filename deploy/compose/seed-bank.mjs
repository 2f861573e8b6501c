// The quick start's one-shot `bank-seed` service: fills the `bank` database with the fictional
// bank of `hoop demo` (src/demo/bank.ts, built to /app/dist/demo/bank.js in the image), as the
// gateway's service role hoop_svc. A second run finds the schema and leaves it alone.
// HOOP_APP_DIR, HOOP_KEYS_DIR, BANK_HOST, BANK_PORT: other places, for test/deploy/deploy.test.ts.
import { readFileSync } from 'node:fs';

const APP = process.env.HOOP_APP_DIR ?? '/app';
const KEYS = process.env.HOOP_KEYS_DIR ?? '/keys';
const { seedBank } = await import(`${APP}/dist/demo/bank.js`);

const password = readFileSync(`${KEYS}/gateway/bank-db.password`, 'utf8').trim();
const url = `postgres://hoop_svc:${encodeURIComponent(password)}@${process.env.BANK_HOST ?? 'bank'}:${process.env.BANK_PORT ?? '5432'}/bank`;
try {
  const { counts } = await seedBank(url);
  process.stderr.write(`bank-seed: seeded ${Object.entries(counts).map(([t, n]) => `${n} ${t}`).join(', ')}\n`);
} catch (err) {
  if (err?.code !== '42P06') throw err; // duplicate_schema: seeded by an earlier run
  process.stderr.write('bank-seed: schema bank exists already; nothing to do\n');
}
