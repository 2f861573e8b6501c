import { connect, type Socket } from 'node:net';
import { serialize } from 'pg-protocol';
import { Parser } from 'pg-protocol/dist/parser.js';
import { afterAll, beforeAll, describe, expect, inject, test } from 'vitest';
import { readsDifferentlyWithoutStandardConformingStrings, splitDependsOnStandardConformingStrings, splitStatements } from '../../../src/protocols/postgres/split.js';

const upstream = inject('upstream');

describe('splitStatements', () => {
  test.each([
    ['select 1', ['select 1']],
    ['select 1;', ['select 1']],
    ['  select 1 ;  select 2 ;  ', ['select 1', 'select 2']],
    ["select ';'; select 'it''s;'", ["select ';'", "select 'it''s;'"]],
    ["select E'\\\\';'; select 2", ["select E'\\\\'", "'; select 2"]],
    ["select E'\\';'; select 2", ["select E'\\';'", 'select 2']],
    ['select "a;b" from t; select 2', ['select "a;b" from t', 'select 2']],
    ['select $$;$$; select $x$ $$ ; $x$', ['select $$;$$', 'select $x$ $$ ; $x$']],
    ['select 1 -- ; not here\n; select 2', ['select 1 -- ; not here', 'select 2']],
    ['select /* ; /* ; */ ; */ 1; select 2', ['select /* ; /* ; */ ; */ 1', 'select 2']],
    ['-- only a comment ;', []],
    [';;', []],
    ['create rule r as on insert to t do also (insert into a values (1); insert into b values (2)); select 1', ['create rule r as on insert to t do also (insert into a values (1); insert into b values (2))', 'select 1']],
    ['CREATE OR REPLACE PROCEDURE p() LANGUAGE sql BEGIN ATOMIC insert into t values (1); END; call p()', ['CREATE OR REPLACE PROCEDURE p() LANGUAGE sql BEGIN ATOMIC insert into t values (1); END', 'call p()']],
    ['begin; insert into t values (1); end;', ['begin', 'insert into t values (1)', 'end']],
    ["select U&'d\\0061t;a'; select x'1F'", ["select U&'d\\0061t;a'", "select x'1F'"]],
  ])('%j', (sql, expected) => {
    expect(splitStatements(sql)).toEqual(expected);
  });

  test('an unterminated quote or comment keeps the rest as one statement', () => {
    expect(splitStatements("select 'open; select 2")).toEqual(["select 'open; select 2"]);
    expect(splitStatements('select 1 /* open; select 2')).toEqual(['select 1 /* open; select 2']);
  });
});

describe('string literals as the server lexes them', () => {
  const on = { standardConformingStrings: true };
  const off = { standardConformingStrings: false };

  test.each([
    // [sql, split with standard_conforming_strings on, split with it off]
    [String.raw`SELECT 'a\'; DROP TABLE t; --'`, [String.raw`SELECT 'a\'`, 'DROP TABLE t'], [String.raw`SELECT 'a\'; DROP TABLE t; --'`]],
    [String.raw`select N'a\'; select 2; --'`, [String.raw`select N'a\'`, 'select 2'], [String.raw`select N'a\'; select 2; --'`]],
    [String.raw`select E'a\'; select 2; --'`, [String.raw`select E'a\'; select 2; --'`], [String.raw`select E'a\'; select 2; --'`]],
    [String.raw`select 'a\\'; select 2`, [String.raw`select 'a\\'`, 'select 2'], [String.raw`select 'a\\'`, 'select 2']],
    [String.raw`select '\'''; select 2; --'`, [String.raw`select '\'''`, 'select 2'], [String.raw`select '\'''; select 2; --'`]],
    [String.raw`select U&'a\'; select 2`, [String.raw`select U&'a\'`, 'select 2'], [String.raw`select U&'a\'`, 'select 2']],
    [String.raw`select $$\'$$; select 2`, [String.raw`select $$\'$$`, 'select 2'], [String.raw`select $$\'$$`, 'select 2']],
    // A literal continued after a newline keeps its first part's escaping rule.
    ["select E'a'\n'\\'; select 2; --'", ["select E'a'\n'\\'; select 2; --'"], ["select E'a'\n'\\'; select 2; --'"]],
    ["select 'a'\n'\\'; select 2; --'", ["select 'a'\n'\\'", 'select 2'], ["select 'a'\n'\\'; select 2; --'"]],
    ["select 'a' -- c\n\t-- d\r\n'\\'; select 2; --'", ["select 'a' -- c\n\t-- d\r\n'\\'", 'select 2'], ["select 'a' -- c\n\t-- d\r\n'\\'; select 2; --'"]],
    ["select B'1'\n'\\'; select 2; --'", ["select B'1'\n'\\'", 'select 2'], ["select B'1'\n'\\'", 'select 2']],
    ["select X'1F'\n  '\\'; select 2", ["select X'1F'\n  '\\'", 'select 2'], ["select X'1F'\n  '\\'", 'select 2']],
    // No continuation without a newline, nor across a block comment.
    [String.raw`select E'a' '\'; select 2; --'`, [String.raw`select E'a' '\'`, 'select 2'], [String.raw`select E'a' '\'; select 2; --'`]],
    ["select E'a' /* */\n'\\'; select 2; --'", ["select E'a' /* */\n'\\'", 'select 2'], ["select E'a' /* */\n'\\'; select 2; --'"]],
    // B'…' and X'…' end at their first quote: '' there starts a new literal.
    [String.raw`select B'1''\'; select 2; --'`, [String.raw`select B'1''\'`, 'select 2'], [String.raw`select B'1''\'; select 2; --'`]],
    // A -- comment ends at a carriage return too.
    ['select 1 --c\r; select 2', ['select 1 --c', 'select 2'], ['select 1 --c', 'select 2']],
  ])('%j', (sql, withOn, withOff) => {
    expect(splitStatements(sql, on)).toEqual(withOn);
    expect(splitStatements(sql)).toEqual(withOn);
    expect(splitStatements(sql, off)).toEqual(withOff);
    expect(splitDependsOnStandardConformingStrings(sql)).toBe(JSON.stringify(withOn) !== JSON.stringify(withOff));
  });

  test('white space is what the server takes for it', () => {
    expect(splitStatements('\u00a0;select 1')).toEqual(['\u00a0', 'select 1']); // an identifier character to the server
    expect(splitStatements(' \t\f\v\r\n; select 1')).toEqual(['select 1']);
  });

  test('splitDependsOnStandardConformingStrings is false without backslashes, or where they cannot matter', () => {
    expect(splitDependsOnStandardConformingStrings("select 'a'; select 'b'")).toBe(false);
    expect(splitDependsOnStandardConformingStrings(String.raw`select E'\''; select 1`)).toBe(false);
    expect(splitDependsOnStandardConformingStrings(String.raw`select '\\'; select 1`)).toBe(false);
    expect(splitDependsOnStandardConformingStrings(String.raw`SET standard_conforming_strings = off; SELECT 'a\'; DROP TABLE t; --'`)).toBe(true);
  });
});

describe('readsDifferentlyWithoutStandardConformingStrings: a backslash in a plain literal, as read with the setting on', () => {
  test.each([
    [String.raw`SELECT 'q\' AS x, ' AS y, credit_score FROM customers -- '`, true],
    [String.raw`SELECT 'a\b'`, true],
    [String.raw`SELECT N'\'`, true],
    [String.raw`SELECT 'x' || '\\'`, true],
    ["SELECT 'a'\n'\\'", true], // a continued plain literal
    [String.raw`SELECT 'a', E'\'', $$\$$, 1 AS "\"`, false],
    ["SELECT E'a'\n'\\'", false], // a continued E'…' keeps its escapes
    [String.raw`SELECT 1 -- '\'`, false],
    [String.raw`SELECT /* '\' */ 1`, false],
    [String.raw`SELECT B'1', X'1F', U&'\0041'`, false],
    ["SELECT 'no backslash'", false],
  ])('%j: %s', (sql, expected) => {
    expect(readsDifferentlyWithoutStandardConformingStrings(sql)).toBe(expected);
    // Where the split differs, the reading does too (never the other way round).
    if (splitDependsOnStandardConformingStrings(sql)) expect(expected).toBe(true);
  });
});

describe('against PostgreSQL', () => {
  // Messages valid under both settings, so that every statement the server lexes also completes.
  const BOTH = [
    String.raw`SELECT 'a\'; SELECT 2 AS two; --'`,
    String.raw`SELECT N'a\'; SELECT 2 AS two; --'`,
    String.raw`SELECT E'a\'; SELECT 2 AS two; --'`,
    String.raw`SELECT 'a\\'; SELECT 2 AS two`,
    String.raw`SELECT E'\\'; SELECT 2 AS two`,
    String.raw`SELECT '\'''; SELECT 2 AS two; --'`,
    "SELECT E'a'\n'\\'; SELECT 2 AS two; --'",
    "SELECT 'a'\n'\\'; SELECT 2 AS two; --'",
    "SELECT 'a' -- c\n  -- d\r'\\'; SELECT 2 AS two; --'",
    "SELECT 'a'\r\n\f'b'; SELECT 'c'\n\n'\\' AS x; --'\n; SELECT 3",
    'SELECT 1 AS one --c\r; SELECT 2 AS two',
    String.raw`SELECT 1 AS "a\"; SELECT 2 AS two`,
    String.raw`SELECT $$\'$$; SELECT 2 AS two; SELECT $x$ ' $x$`,
    "SELECT B'1'\n'0'; SELECT X'1F'\n'E'; SELECT 2",
  ];
  let raw: RawSession;
  beforeAll(async () => {
    raw = await RawSession.open();
  });
  afterAll(() => raw?.close());

  test.each([true, false])('the server completes the statements the split finds (standard_conforming_strings %s)', async (scs) => {
    await raw.run(`SET standard_conforming_strings = ${scs ? 'on' : 'off'}`);
    const options = { standardConformingStrings: scs };
    for (const sql of BOTH) {
      const r = await raw.run(sql);
      expect(r.error, sql).toBeNull();
      expect(splitStatements(sql, options).length, sql).toBe(r.completed);
    }
    if (scs) {
      const sql = String.raw`SELECT U&'\0041'; SELECT 2 AS two`;
      expect((await raw.run(sql)).completed).toBe(splitStatements(sql, options).length);
    }
  });

  test('a backslash in a continued bit string ends it, whatever the setting', async () => {
    await raw.run('SET standard_conforming_strings = off');
    const sql = "SELECT 1 AS one; SELECT B'1'\n'\\'; SELECT 2 AS two; --'";
    const r = await raw.run(sql);
    // The second statement is B'1\', which fails; read as a plain literal it would be B'1'; SELECT 2 AS two; --'.
    expect(r.completed).toBe(1);
    expect(r.error).toMatch(/"\\" is not a valid binary digit/);
    expect(splitStatements(sql, { standardConformingStrings: false })).toEqual(['SELECT 1 AS one', "SELECT B'1'\n'\\'", 'SELECT 2 AS two']);
  });

  test('the server lexes a whole message with the setting it had when the message arrived', async () => {
    await raw.run('SET standard_conforming_strings = on');
    const sql = String.raw`SET standard_conforming_strings = off; SELECT 'a\'; SELECT 2 AS two; --'`;
    expect((await raw.run(sql)).completed).toBe(3);
    expect(splitStatements(sql)).toHaveLength(3);
    expect((await raw.run(String.raw`SELECT 'a\'; SELECT 2 AS two; --'`)).completed).toBe(1); // now off
    await raw.run('SET standard_conforming_strings = on');
  });
});

/** A session over a raw socket, to count the commands the server completes for one simple Query. */
class RawSession {
  private messages: { name: string; message?: string }[] = [];
  private constructor(private readonly socket: Socket) {
    const parser = new Parser();
    socket.on('data', (d: Buffer) => parser.parse(d, (m) => this.messages.push(m as { name: string })));
  }

  static async open(): Promise<RawSession> {
    const socket = connect(upstream.port, upstream.host);
    await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
    const s = new RawSession(socket);
    socket.write(serialize.startup({ user: upstream.users.trust, database: 'postgres' }));
    await s.untilReady();
    return s;
  }

  private async untilReady(): Promise<{ name: string; message?: string }[]> {
    for (;;) {
      const at = this.messages.findIndex((m) => m.name === 'readyForQuery');
      if (at >= 0) return this.messages.splice(0, at + 1);
      await new Promise<void>((resolve) => this.socket.once('data', () => setImmediate(resolve)));
    }
  }

  /** The number of commands completed, and the error that ended the message, if any. */
  async run(sql: string): Promise<{ completed: number; error: string | null }> {
    this.socket.write(serialize.query(sql));
    const got = await this.untilReady();
    const error = got.find((m) => m.name === 'error');
    return { completed: got.filter((m) => m.name === 'commandComplete').length, error: error?.message ?? null };
  }

  close(): void {
    this.socket.end(serialize.end());
  }
}
