import { describe, expect, test } from 'vitest';
import { splitStatements } from '../../../src/protocols/postgres/split.js';

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
