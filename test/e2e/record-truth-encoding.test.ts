/**
 * "The record is the truth" — how the server reads the bytes.
 *
 * The oracle is not hoop: PostgreSQL's own statement log (log_statement = all, see
 * test/helpers/server-log.ts), what the client received, and what the database holds afterwards.
 * The attacks here are first shown to work against PostgreSQL directly, so a passing test proves
 * the gateway stopped them, not that the bytes were harmless.
 *
 * Cases (numbered as in the brief): 1 client_encoding switched to SJIS by pipelining,
 * 2 other client encodings (LATIN1, WIN1252), 8 standard_conforming_strings = off.
 */
import { afterAll, beforeAll, expect, test } from 'vitest';
import { splitStatements } from '../../src/protocols/postgres/split.js';
import { errorsIn, fe, namesIn, rowsIn, tagsIn, type RawClient } from '../helpers/raw-client.js';
import { brief, ruleViolations, type RecordedStatement } from '../helpers/record.js';
import { startTruth, type Truth } from '../helpers/truth.js';

let t: Truth;
beforeAll(async () => {
  t = await startTruth('hoop-truth-enc');
});
afterAll(async () => {
  await t?.stop();
});

const exists = async (table: string) => (await t.pg.sql<{ r: string | null }>('SELECT to_regclass($1)::text AS r', [table]))[0]!.r !== null;
const bytes = (...parts: (string | number[])[]) => Buffer.concat(parts.map((p) => (typeof p === 'string' ? Buffer.from(p, 'latin1') : Buffer.from(p))));

/**
 * In SJIS, 0x95 is a lead byte that swallows the next byte, even 0x5C (`\`): `E'<95>\'` is the
 * one-character literal 表 and the `'` after it ends the literal. Read as UTF-8 (0x95 is not valid
 * there), the `\'` is an escaped quote and everything up to the last `'` stays inside the literal.
 */
function sjisAttack(table: string): Buffer {
  return bytes("SELECT E'", [0x95], `\\' ; DROP TABLE ${table}; --'`);
}

async function endAndRecord(c: RawClient) {
  await c.end();
  return t.record(c);
}

async function sjisCase(name: string, table: string, pipeline: (attack: Buffer) => Buffer[], ready: number) {
  // Naively read as UTF-8, the attack is one harmless SELECT of a string literal.
  const naive = sjisAttack(table).toString('utf8');
  expect(splitStatements(naive)).toHaveLength(1);

  // Without hoop, the same bytes drop the table: the attack is real.
  await t.pg.sql(`CREATE TABLE ${table} (id int)`);
  const direct = await t.direct(`${name}-direct`);
  const d = await direct.exchange(pipeline(sjisAttack(table)), ready);
  expect(errorsIn(d.messages), namesIn(d.messages).join(', ')).toEqual([]);
  await direct.end();
  expect(await exists(table)).toBe(false);
  expect((await t.logged(`${name}-direct`)).some((s) => s.text.includes(`表' ; DROP TABLE ${table}`))).toBe(true);

  // Through hoop: the table stays, the server never ran the DROP, and the record claims nothing it did not run.
  await t.pg.sql(`CREATE TABLE ${table} (id int)`);
  const c = await t.open(`${name}-hoop`);
  const r = await c.exchange(pipeline(sjisAttack(table)), ready);
  await c.end();
  const logged = await t.logged(`${name}-hoop`);
  const rec = await t.record(c);
  expect.soft(await exists(table), `table ${table} was dropped through hoop; client received: ${namesIn(r.messages).join(', ')}`).toBe(true);
  expect.soft(logged.filter((s) => s.text.includes('DROP TABLE')).map((s) => s.text), 'the server log shows the DROP').toEqual([]);
  expect.soft(ruleViolations(rec.statements, logged), JSON.stringify(brief(rec.statements))).toEqual([]);
  // Refused before the attack reaches the server: a FATAL naming client_encoding (the switch
  // was reported first), or hoop's error saying it cannot read the text behind a pending switch
  // (whose failure then also undoes the SET).
  const refusal = errorsIn(r.messages).find((f) => /client_encoding/.test(f.M ?? ''));
  expect.soft(refusal?.M, `client received: ${namesIn(r.messages).join(', ')}`).toMatch(/^hoop: .*client_encoding/);
  if (refusal?.V === 'FATAL' || refusal?.S === 'FATAL') expect.soft(r.closed || c.isClosed).toBe(true);
}

test('1a. SET client_encoding TO SJIS by Parse/Bind/Execute without Sync, then a Query that hides a DROP: refused before it reaches the server', async () => {
  await sjisCase('enc1a', 'victim_a', (attack) => [fe.run("SET client_encoding TO 'SJIS'"), fe.query(attack)], 1);
});

test('1b. Query "SET client_encoding TO SJIS; SELECT pg_sleep(1)" and the hiding Query in the same write: refused before it reaches the server', async () => {
  await sjisCase('enc1b', 'victim_b', (attack) => [fe.query("SET client_encoding TO 'SJIS'; SELECT pg_sleep(1)"), fe.query(attack)], 2);
});

async function encodingCase(app: string, encoding: string, literalBytes: [number, number], value: { bytes: number[]; text: string }) {
  await t.pg.sql(`DROP TABLE IF EXISTS "é", "Ã©"; CREATE TABLE "é" (x int); CREATE TABLE "Ã©" (x int)`);
  const c = await t.open(app, { encoding });
  // C3 A9 is "é" in UTF-8, but two characters in the client encoding: Ã and ©.
  const drop = await c.query(bytes('DROP TABLE "', [0xc3, 0xa9], '"'));
  expect(errorsIn(drop.messages)).toEqual([]);
  const [x1, x2] = literalBytes;
  await c.query(bytes("SELECT 'x", [x1], "' AS v"));
  await c.query(bytes("SELECT 'x", [x2], "' AS v"));
  const got = await c.query(bytes("SELECT '", value.bytes, "' AS v"));
  const rec = await endAndRecord(c);
  const logged = await t.logged(app);

  // What the database did: it dropped "Ã©" and kept "é".
  expect(await exists('"é"')).toBe(true);
  expect(await exists('"Ã©"')).toBe(false);
  const loggedDrop = logged.find((s) => s.text.startsWith('DROP TABLE'))!;
  expect(loggedDrop.text).toBe('DROP TABLE "Ã©"');
  const recDrop = rec.statements.find((s) => s.statement.startsWith('DROP TABLE'));
  expect.soft(recDrop?.statement, 'the record names another table than the server dropped').toBe(loggedDrop.text);

  // Two literals differing only in high bytes are two different statements, as the server ran them.
  const loggedSelects = logged.filter((s) => s.text.startsWith("SELECT 'x")).map((s) => s.text);
  expect(new Set(loggedSelects).size).toBe(2);
  const recSelects = rec.statements.filter((s) => s.statement.startsWith("SELECT 'x")).map((s) => s.statement);
  expect.soft(new Set(recSelects).size, `recorded: ${JSON.stringify(recSelects)}`).toBe(2);
  expect.soft(recSelects).toEqual(loggedSelects);

  // A result value with high bytes is recorded as the client received it, decoded in the client encoding.
  const received = rowsIn(got.messages);
  expect(received).toEqual([[value.text]]);
  expect(got.messages.find((m) => m.type === 'D')!.values![0]).toEqual(Buffer.from(value.bytes));
  const recValue = rec.statements.find((s) => s.statement.endsWith("' AS v") && !s.statement.startsWith("SELECT 'x"));
  expect.soft(recValue?.statement).toBe(logged.at(-1)!.text);
  expect.soft(recValue && (recValue.e?.['result']?.['sets'] ?? []).flatMap((s: { rows: unknown[] }) => s.rows)).toEqual(received);

  expect.soft(ruleViolations(rec.statements, logged), JSON.stringify(brief(rec.statements))).toEqual([]);
}

test('2a. client_encoding LATIN1: the record names what the server ran (DROP TABLE "Ã©"), keeps high-byte literals apart, and values as received', async () => {
  await encodingCase('enc2a', 'LATIN1', [0xe9, 0xe8], { bytes: [0x63, 0x61, 0x66, 0xe9], text: 'café' });
});

test('2b. client_encoding WIN1252: the same, with bytes that differ from LATIN1 (0x80 is €)', async () => {
  await encodingCase('enc2b', 'WIN1252', [0x80, 0x8a], { bytes: [0x80, 0x35], text: '€5' });
});

test('8. standard_conforming_strings = off: a Query the scs=on splitter sees as one SELECT runs a DROP; the record must list it, or refuse the Query', async () => {
  // With scs on: SELECT 'a\', '; DROP TABLE t2; --' — one statement with two literals.
  // With scs off: SELECT 'a'' , ' then DROP TABLE t2, then a comment.
  const sql = "SELECT 'a\\' , '; DROP TABLE t2; --'";
  expect(splitStatements(sql)).toHaveLength(1);
  // Without hoop: the DROP runs.
  await t.pg.sql('CREATE TABLE t2 (id int)');
  const d = await t.direct('enc8-direct');
  expect(errorsIn((await d.query('SET standard_conforming_strings = off')).messages)).toEqual([]);
  expect(tagsIn((await d.query(sql)).messages)).toEqual(['SELECT 1', 'DROP TABLE']);
  await d.end();
  expect(await exists('t2')).toBe(false);

  await t.pg.sql('CREATE TABLE t2 (id int)');
  const c = await t.open('enc8');
  const set = await c.query('SET standard_conforming_strings = off');
  // A gateway may refuse the SET itself (an error, or a FATAL that ends the session): then the attack goes nowhere.
  const setRefused = set.closed || errorsIn(set.messages).length > 0;
  const r = c.isClosed ? null : await c.query(sql);
  const rec = await endAndRecord(c);
  const logged = await t.logged('enc8');
  const dropped = !(await exists('t2'));
  const query = rec.statements.find((s: RecordedStatement) => s.statement === sql);
  if (dropped) {
    // The server ran the DROP: the record's statements of that Query must name it.
    expect(setRefused).toBe(false);
    expect(logged.some((s) => s.text === sql)).toBe(true);
    expect(tagsIn(r!.messages)).toEqual(['SELECT 1', 'DROP TABLE']);
    expect.soft(query, JSON.stringify(brief(rec.statements))).toBeDefined();
    expect.soft((query?.s['statements'] ?? [query?.statement]) as string[], 'the server dropped t2, the record\'s statements do not name the DROP').toContain('DROP TABLE t2');
  } else {
    // Refused (the Query, or the SET before it): t2 intact, no DROP in the server log, and a refused Query got an error.
    if (!setRefused) expect.soft(errorsIn(r!.messages).length).toBeGreaterThan(0);
    expect.soft(logged.filter((s) => s.text.includes('DROP TABLE t2'))).toEqual([]);
  }
  expect.soft(ruleViolations(rec.statements, logged), JSON.stringify(brief(rec.statements))).toEqual([]);
});
