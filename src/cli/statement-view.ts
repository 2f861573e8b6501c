/**
 * How `hoop sessions show` reads a recorded statement's text for display only (the record is
 * never changed, and `--json` and `--catalog` show everything):
 *
 * - `catalogRelations`: is this one of the catalog queries psql sends for its backslash commands
 *   (`\d`, `\dt`, tab completion)? Those are folded into one line by default. The rule is meant
 *   to never fold a statement that reads user data, at the price of sometimes not folding a
 *   catalog query someone wrote by hand. A statement is a catalog query when, read as tokens
 *   (string literals and quoted identifiers skipped):
 *     1. it is one SELECT (a trailing `;` at most), with no comment and no dollar quote —
 *        psql's own queries have none, a person's often do;
 *     2. every relation it reads — the item after FROM or JOIN, and each item after a comma in
 *        a FROM list — is qualified with `pg_catalog.` or `information_schema.` (or is a
 *        parenthesised subquery, itself held to the same rule);
 *     3. every function it calls is qualified the same way (psql qualifies all of them since
 *        CVE-2018-1058), or is SQL syntax that looks like a call (`IN (`, `ANY (`, `ARRAY(`, ...),
 *        and none is one that reaches past the catalog (pg_read_file, lo_*, query_to_xml, ...);
 *     4. it reads at least one relation.
 *   The answer lists the relations, so the folded line still says what was read.
 * - `copyLayout`: the columns and format a COPY statement names, so its data can be shown as a
 *   table under the right headers.
 */

const CATALOG_SCHEMAS = new Set(['pg_catalog', 'information_schema']);
/** Words that may stand before `(` without being a function call. */
const SYNTAX_BEFORE_PAREN = new Set([
  'select', 'from', 'join', 'on', 'in', 'any', 'all', 'some', 'exists', 'array', 'and', 'or', 'not', 'as', 'when', 'then', 'else',
  'case', 'where', 'using', 'over', 'filter', 'within', 'values', 'row', 'lateral', 'operator', 'cast', 'coalesce', 'nullif',
  'greatest', 'least', 'is', 'by', 'having', 'union', 'except', 'intersect', 'between', 'like', 'ilike', 'similar', 'escape',
  'distinct', 'partition', 'order', 'group', 'limit', 'offset', 'with', 'ordinality', 'collate', 'position', 'substring', 'trim',
  'extract', 'overlay', 'count', 'max', 'min', 'sum', 'avg', 'bool_and', 'bool_or', 'string_agg', 'array_agg',
]);
/** Catalog functions that reach beyond the catalog (files, large objects, whole tables as XML, settings). */
const REACHES_DATA = /^(pg_read_|pg_ls_|pg_stat_file|lo_|loread|query_to_|table_to_|cursor_to_|schema_to_|database_to_|dblink|current_setting|set_config|pg_file)/;
/** Keywords that end a FROM list at its own depth. */
const FROM_END = new Set(['where', 'group', 'order', 'limit', 'offset', 'having', 'window', 'union', 'except', 'intersect', 'fetch', 'for']);

type Token = { kind: 'word'; text: string } | { kind: 'punct'; text: string };

/** Tokens of `sql`, or null when it has what psql's own catalog queries never do. */
function tokens(sql: string): Token[] | null {
  const out: Token[] = [];
  let i = 0;
  while (i < sql.length) {
    const c = sql[i]!;
    if (/\s/.test(c)) {
      i++;
    } else if (c === '-' && sql[i + 1] === '-') return null;
    else if (c === '/' && sql[i + 1] === '*') return null;
    else if (c === '$') return null; // dollar quotes or parameters
    else if (c === "'") {
      i++;
      while (i < sql.length && !(sql[i] === "'" && sql[i + 1] !== "'")) i += sql[i] === "'" ? 2 : 1;
      if (i >= sql.length) return null;
      i++;
      out.push({ kind: 'punct', text: "'" });
    } else if (c === '"') {
      const end = sql.indexOf('"', i + 1);
      if (end < 0) return null;
      out.push({ kind: 'word', text: sql.slice(i, end + 1) });
      i = end + 1;
    } else if (/[A-Za-z_]/.test(c)) {
      const m = /^[A-Za-z_][A-Za-z0-9_$]*/.exec(sql.slice(i))!;
      out.push({ kind: 'word', text: m[0].toLowerCase() });
      i += m[0].length;
    } else {
      out.push({ kind: 'punct', text: c });
      i++;
    }
  }
  return out;
}

/** A qualified name starting at tokens[i]: [schema, name, tokens used], or null. */
function qualified(t: Token[], i: number): [string, string, number] | null {
  const a = t[i];
  const dot = t[i + 1];
  const b = t[i + 2];
  if (a?.kind === 'word' && dot?.text === '.' && b?.kind === 'word') return [a.text, b.text, 3];
  return null;
}

/**
 * The relations a psql catalog query reads (`pg_catalog.pg_class`, ...), or null when the
 * statement is not one by the rule above.
 */
export function catalogRelations(sql: string): string[] | null {
  let text = sql.trim();
  if (text.endsWith(';')) text = text.slice(0, -1);
  const t = tokens(text);
  if (!t || t.length === 0 || t[0]!.text !== 'select' || t.some((x) => x.text === ';')) return null;
  const relations = new Set<string>();
  const fromDepths: number[] = []; // paren depths at which a FROM list is open
  let depth = 0;
  let expectRelation = false;
  for (let i = 0; i < t.length; i++) {
    const tok = t[i]!;
    if (expectRelation) {
      expectRelation = false;
      if (tok.text === '(') {
        depth++;
        continue;
      }
      if (tok.kind === 'word' && tok.text === 'lateral') {
        expectRelation = true;
        continue;
      }
      const q = qualified(t, i);
      if (!q || !CATALOG_SCHEMAS.has(q[0])) return null;
      relations.add(`${q[0]}.${q[1]}`);
      i += q[2] - 1;
      continue;
    }
    if (tok.text === '(') depth++;
    else if (tok.text === ')') {
      while (fromDepths.length && fromDepths[fromDepths.length - 1]! >= depth) fromDepths.pop();
      depth--;
    } else if (tok.kind === 'word' && (tok.text === 'from' || tok.text === 'join')) {
      // EXTRACT(x FROM y), SUBSTRING(a FROM b), TRIM(... FROM ...): not relations.
      if (tok.text === 'from' && insideSyntaxCall(t, i)) continue;
      expectRelation = true;
      if (tok.text === 'from') fromDepths.push(depth);
    } else if (tok.text === ',' && fromDepths[fromDepths.length - 1] === depth) expectRelation = true;
    else if (tok.kind === 'word' && FROM_END.has(tok.text)) {
      while (fromDepths.length && fromDepths[fromDepths.length - 1]! >= depth) fromDepths.pop();
    }
    if (tok.kind === 'word' && t[i + 1]?.text === '(') {
      if (REACHES_DATA.test(tok.text)) return null;
      if (t[i - 1]?.text === '.') continue; // its schema was checked with the schema's token
      if (!SYNTAX_BEFORE_PAREN.has(tok.text)) return null;
    }
    if (tok.kind === 'word' && t[i + 1]?.text === '.' && t[i + 2]?.kind === 'word' && t[i + 3]?.text === '(' && !CATALOG_SCHEMAS.has(tok.text)) return null;
  }
  if (expectRelation) return null;
  return relations.size > 0 ? [...relations] : null;
}

/** Whether the FROM at t[i] is inside EXTRACT( / SUBSTRING( / TRIM( / OVERLAY( / POSITION( at its own depth. */
function insideSyntaxCall(t: Token[], i: number): boolean {
  let depth = 0;
  for (let j = i - 1; j >= 0; j--) {
    const x = t[j]!.text;
    if (x === ')') depth++;
    else if (x === '(') {
      if (depth === 0) return ['extract', 'substring', 'trim', 'overlay', 'position'].includes(t[j - 1]?.text ?? '');
      depth--;
    }
  }
  return false;
}

export interface CopyLayout {
  direction: 'to' | 'from';
  /** Named in the statement (`COPY t (a, b) TO ...`), else null. */
  columns: string[] | null;
  format: 'text' | 'csv' | 'binary';
  delimiter: string;
  /** CSV with HEADER: the first line names the columns. */
  header: boolean;
}

/** The layout of a `COPY` statement, or null when it is not one. */
export function copyLayout(sql: string): CopyLayout | null {
  const m = /^\s*copy\s+((?:"[^"]*"|[\w$]+)(?:\s*\.\s*(?:"[^"]*"|[\w$]+))?|\((?:[^()]|\([^()]*\))*\))\s*(\(([^)]*)\))?\s*(to|from)\b([\s\S]*)$/i.exec(sql);
  if (!m) return null;
  const columns = m[3] !== undefined ? m[3].split(',').map((c) => c.trim().replace(/^"(.*)"$/, '$1')).filter(Boolean) : null;
  const options = m[5] ?? '';
  const format = /\bbinary\b/i.test(options) ? 'binary' : /\bcsv\b/i.test(options) ? 'csv' : 'text';
  const delimiter = /\bdelimiter\s+(?:as\s+)?'([^'])'/i.exec(options)?.[1] ?? (format === 'csv' ? ',' : '\t');
  const header = format === 'csv' && /\bheader\b(?!\s+(false|off|0)\b)/i.test(options);
  return { direction: m[4]!.toLowerCase() as 'to' | 'from', columns, format, delimiter, header };
}

/** One line of COPY text or CSV data as its fields (`null` for NULL: `\N` in text format, an unquoted empty CSV field). */
export function copyFields(line: string, layout: CopyLayout): (string | null)[] {
  const l = line.replace(/\r?\n$/, '');
  if (layout.format === 'text') return l.split(layout.delimiter).map((f) => (f === '\\N' ? null : f));
  const fields: (string | null)[] = [];
  let i = 0;
  for (;;) {
    if (l[i] === '"') {
      let v = '';
      i++;
      while (i < l.length) {
        if (l[i] === '"' && l[i + 1] === '"') (v += '"'), (i += 2);
        else if (l[i] === '"') {
          i++;
          break;
        } else v += l[i++];
      }
      fields.push(v);
    } else {
      const end = l.indexOf(layout.delimiter, i);
      const v = l.slice(i, end < 0 ? l.length : end);
      fields.push(v === '' ? null : v);
      i = end < 0 ? l.length : end;
    }
    if (l[i] !== layout.delimiter) break;
    i++;
  }
  return fields;
}
