/**
 * Splits the text of a simple Query into its statements, where PostgreSQL's own lexer would end
 * them: at semicolons outside quotes ('…', E'…', "…", $tag$…$tag$), comments (-- and nested block comments),
 * parentheses, and the BEGIN … END body of CREATE [OR REPLACE] FUNCTION/PROCEDURE (the heuristic
 * psql uses, in psqlscan.l). For the record only: the server still receives the whole text, and
 * the record keeps it; a reader pairs statement i with the i-th command the server completed.
 * Statements that hold nothing but white space and comments are left out, as the server skips them.
 *
 * Where a string literal ends follows src/backend/parser/scan.l:
 * - E'…' takes backslash escapes (\' does not end it); U&'…', B'…' and X'…' never do; a plain
 *   '…' (and N'…') does exactly when standard_conforming_strings is off.
 * - '' inside '…', E'…', U&'…' is a quote; B'…' and X'…' end at their first quote.
 * - A literal followed by white space holding a newline (and perhaps -- comments) and another
 *   quote continues there, with the first part's escaping rule: `E'a'\n'\'; …'` is one literal.
 * - A -- comment ends at a carriage return as well as a newline.
 *
 * The server lexes a whole Query message before running any of it, with standard_conforming_strings
 * as it was when the message arrived: a SET inside the message applies from the next message on.
 * So the split of a message depends on the setting in force before it, and the caller must know
 * that setting (the server reports it in ParameterStatus). When it may not know it (a message
 * sent before the reply to one that may change it), `splitDependsOnStandardConformingStrings`
 * tells whether it matters.
 */

export interface SplitOptions {
  /**
   * The session's standard_conforming_strings when the server lexes the message (default true,
   * PostgreSQL's default). With it off, backslash escapes apply in plain '…' literals too.
   */
  standardConformingStrings?: boolean;
}

const IDENT_START = /[A-Za-z_\u0080-\uffff]/;
const IDENT_CHAR = /[A-Za-z0-9_$\u0080-\uffff]/;

/** How a string literal's body reads: backslash escapes or not, and whether '' is a quote. */
type Literal = 'standard' | 'escape' | 'bits';

export function splitStatements(sql: string, options: SplitOptions = {}): string[] {
  return lex(sql, options.standardConformingStrings === false ? 'escape' : 'standard').statements;
}

/**
 * Whether the server reads `sql` otherwise with standard_conforming_strings off than with it on:
 * exactly when, read with it on, a plain '…' (or N'…') literal holds a backslash. Up to the first
 * such backslash both readings are the same; from it on, with the setting off, `\'` no longer
 * ends the literal and `\n` is a newline. (U&'…' with a backslash is an error with it off.)
 */
export function readsDifferentlyWithoutStandardConformingStrings(sql: string): boolean {
  return sql.includes('\\') && lex(sql, 'standard').plainBackslash;
}

function lex(sql: string, plain: Literal): { statements: string[]; plainBackslash: boolean } {
  let plainBackslash = false;
  const skipPlain = (from: number): number => {
    const to = skipString(sql, from, plain);
    if (plain === 'standard' && !plainBackslash) {
      const b = sql.indexOf('\\', from);
      plainBackslash = b >= 0 && b < to;
    }
    return to;
  };
  const out: string[] = [];
  let start = 0;
  let hasContent = false; // a token other than white space or a comment since `start`
  let parenDepth = 0;
  let beginDepth = 0;
  /** The statement's first four words, to recognise CREATE [OR REPLACE] FUNCTION/PROCEDURE. */
  let words: string[] = [];
  const end = (at: number) => {
    if (hasContent) out.push(trimSpace(sql.slice(start, at)));
    start = at + 1;
    hasContent = false;
    parenDepth = 0;
    beginDepth = 0;
    words = [];
  };
  const n = sql.length;
  let i = 0;
  while (i < n) {
    const c = sql[i]!;
    if (c === '-' && sql[i + 1] === '-') {
      const eol = lineEnd(sql, i);
      i = eol < 0 ? n : eol + 1;
      continue;
    }
    if (c === '/' && sql[i + 1] === '*') {
      i = skipBlockComment(sql, i);
      continue;
    }
    if (isSpace(c)) {
      i++;
      continue;
    }
    if (c === ';') {
      if (parenDepth === 0 && beginDepth === 0) end(i);
      else hasContent = true;
      i++;
      continue;
    }
    hasContent = true;
    if (c === '(') parenDepth++;
    else if (c === ')') parenDepth = Math.max(0, parenDepth - 1);
    if (c === "'") {
      i = skipPlain(i + 1);
      continue;
    }
    if (c === '"') {
      i = skipQuotedIdentifier(sql, i + 1);
      continue;
    }
    if (c === '$') {
      const tagEnd = dollarTagEnd(sql, i);
      if (tagEnd > 0) {
        const tag = sql.slice(i, tagEnd);
        const close = sql.indexOf(tag, tagEnd);
        i = close < 0 ? n : close + tag.length;
        continue;
      }
      i++;
      continue;
    }
    if (IDENT_START.test(c)) {
      let j = i + 1;
      while (j < n && IDENT_CHAR.test(sql[j]!)) j++;
      const word = sql.slice(i, j).toLowerCase();
      if (j === i + 1) {
        // One letter and a quote: E'…' takes backslash escapes, B'…' and X'…' are bit strings,
        // N'…' is a plain literal; U&'…' (and U&"…") never take them.
        if (sql[j] === "'" && (word === 'e' || word === 'b' || word === 'x' || word === 'n')) {
          i = word === 'n' ? skipPlain(j + 1) : skipString(sql, j + 1, word === 'e' ? 'escape' : 'bits');
          continue;
        }
        if (word === 'u' && sql[j] === '&' && sql[j + 1] === "'") {
          i = skipString(sql, j + 2, 'standard');
          continue;
        }
      }
      if (words.length < 4) words.push(word);
      if (isRoutineDefinition(words) && parenDepth === 0) {
        if (word === 'begin') beginDepth++;
        else if (word === 'case' && beginDepth > 0) beginDepth++;
        else if (word === 'end' && beginDepth > 0) beginDepth--;
      }
      i = j;
      continue;
    }
    i++;
  }
  end(n);
  return { statements: out, plainBackslash };
}

/**
 * Whether splitStatements splits `sql` differently with standard_conforming_strings on and off:
 * when it does, a caller that cannot be sure of the setting the server will lex the message
 * with cannot say which statements it holds.
 */
export function splitDependsOnStandardConformingStrings(sql: string): boolean {
  if (!sql.includes('\\')) return false; // the setting only changes what a backslash does
  const on = splitStatements(sql, { standardConformingStrings: true });
  const off = splitStatements(sql, { standardConformingStrings: false });
  return on.length !== off.length || on.some((s, k) => s !== off[k]);
}

/**
 * White space as the server's lexer knows it: space, tab, newline, carriage return, form feed,
 * and vertical tab (PostgreSQL 16 on; before, a vertical tab is a syntax error and nothing runs).
 * Not U+00A0 and the like, which are identifier characters to the server.
 */
function isSpace(c: string | undefined): boolean {
  return c === ' ' || c === '\t' || c === '\n' || c === '\r' || c === '\f' || c === '\v';
}

function isNewline(c: string | undefined): boolean {
  return c === '\n' || c === '\r';
}

function trimSpace(s: string): string {
  let a = 0;
  let b = s.length;
  while (a < b && isSpace(s[a])) a++;
  while (b > a && isSpace(s[b - 1])) b--;
  return s.slice(a, b);
}

/** The index of the newline or carriage return that ends the line from i, or -1. */
function lineEnd(sql: string, i: number): number {
  for (let j = i; j < sql.length; j++) if (isNewline(sql[j])) return j;
  return -1;
}

/** CREATE [OR REPLACE] FUNCTION|PROCEDURE …: only there can BEGIN ATOMIC hold semicolons. */
function isRoutineDefinition(words: string[]): boolean {
  if (words[0] !== 'create') return false;
  const kind = words[1] === 'or' && words[2] === 'replace' ? words[3] : words[1];
  return kind === 'function' || kind === 'procedure';
}

function skipBlockComment(sql: string, i: number): number {
  let depth = 0;
  while (i < sql.length) {
    if (sql[i] === '/' && sql[i + 1] === '*') {
      depth++;
      i += 2;
    } else if (sql[i] === '*' && sql[i + 1] === '/') {
      depth--;
      i += 2;
      if (depth === 0) return i;
    } else i++;
  }
  return i;
}

/**
 * From just after the opening quote to just after the literal's closing quote, past any
 * continuation (which keeps the literal's `kind`).
 */
function skipString(sql: string, i: number, kind: Literal): number {
  const n = sql.length;
  for (;;) {
    while (i < n) {
      const c = sql[i]!;
      if (c === '\\' && kind === 'escape') i += 2;
      else if (c === "'") {
        if (kind !== 'bits' && sql[i + 1] === "'") i += 2;
        else break;
      } else i++;
    }
    if (i >= n) return n;
    const next = continuation(sql, i + 1);
    if (next < 0) return i + 1;
    i = next;
  }
}

/**
 * After a literal's closing quote at `at - 1`: the index just past the quote that continues it
 * (scan.l's {quotecontinue}: white space and -- comments holding at least one newline, then a
 * quote, a comment always ended by a newline), or -1.
 */
function continuation(sql: string, at: number): number {
  let j = at;
  // Up to the first newline: spaces, tabs, form feeds, vertical tabs and -- comments.
  for (;;) {
    const c = sql[j];
    if (c === ' ' || c === '\t' || c === '\f' || c === '\v') j++;
    else if (c === '-' && sql[j + 1] === '-') {
      j = lineEnd(sql, j);
      if (j < 0) return -1;
    } else if (isNewline(c)) break;
    else return -1;
  }
  j++;
  // Then any white space, and -- comments ended by a newline, up to the quote.
  for (;;) {
    const c = sql[j];
    if (isSpace(c)) j++;
    else if (c === '-' && sql[j + 1] === '-') {
      j = lineEnd(sql, j);
      if (j < 0) return -1;
      j++;
    } else if (c === "'") return j + 1;
    else return -1;
  }
}

function skipQuotedIdentifier(sql: string, i: number): number {
  while (i < sql.length) {
    if (sql[i] === '"') {
      if (sql[i + 1] === '"') i += 2;
      else return i + 1;
    } else i++;
  }
  return i;
}

/** The end of a `$tag$` opening at i (the tag empty or an identifier not starting with a digit), or -1. */
function dollarTagEnd(sql: string, i: number): number {
  let j = i + 1;
  if (sql[j] === '$') return j + 1;
  if (j >= sql.length || !IDENT_START.test(sql[j]!)) return -1;
  while (j < sql.length && /[A-Za-z0-9_\u0080-\uffff]/.test(sql[j]!)) j++;
  return sql[j] === '$' ? j + 1 : -1;
}
