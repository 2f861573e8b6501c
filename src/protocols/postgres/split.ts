/**
 * Splits the text of a simple Query into its statements, where PostgreSQL's own lexer would end
 * them: at semicolons outside quotes ('…', E'…', "…", $tag$…$tag$), comments (-- and nested block comments),
 * parentheses, and the BEGIN … END body of CREATE [OR REPLACE] FUNCTION/PROCEDURE (the heuristic
 * psql uses, in psqlscan.l). For the record only: the server still receives the whole text, and
 * the record keeps it; a reader pairs statement i with the i-th command the server completed.
 * Statements that hold nothing but white space and comments are left out, as the server skips them.
 */

const IDENT_START = /[A-Za-z_\u0080-\uffff]/;
const IDENT_CHAR = /[A-Za-z0-9_$\u0080-\uffff]/;

export function splitStatements(sql: string): string[] {
  const out: string[] = [];
  let start = 0;
  let hasContent = false; // a token other than white space or a comment since `start`
  let parenDepth = 0;
  let beginDepth = 0;
  /** The statement's first four words, to recognise CREATE [OR REPLACE] FUNCTION/PROCEDURE. */
  let words: string[] = [];
  const end = (at: number) => {
    if (hasContent) out.push(sql.slice(start, at).trim());
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
      const nl = sql.indexOf('\n', i);
      i = nl < 0 ? n : nl + 1;
      continue;
    }
    if (c === '/' && sql[i + 1] === '*') {
      i = skipBlockComment(sql, i);
      continue;
    }
    if (/\s/.test(c)) {
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
      i = skipString(sql, i + 1, false);
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
      // E'…' (and e'…') strings take backslash escapes; U&'…', B'…', X'…', N'…' do not.
      if (sql[j] === "'" && j === i + 1 && (word === 'e' || word === 'b' || word === 'x' || word === 'n')) {
        i = skipString(sql, j + 1, word === 'e');
        continue;
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
  return out;
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

/** From just after the opening quote to just after the closing one; '' is an escaped quote. */
function skipString(sql: string, i: number, backslashEscapes: boolean): number {
  while (i < sql.length) {
    const c = sql[i]!;
    if (backslashEscapes && c === '\\') i += 2;
    else if (c === "'") {
      if (sql[i + 1] === "'") i += 2;
      else return i + 1;
    } else i++;
  }
  return i;
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
