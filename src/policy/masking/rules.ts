/**
 * Which configured rule protects a catalog column, and which user functions the operator vouches
 * for. Globs are compiled to anchored regular expressions once, when the config is loaded; the
 * lookups the analysis makes per column are then a scan of a few precompiled patterns.
 *
 * Patterns are split on '.': `masking.columns[].column` has exactly three parts
 * (`schema.table.column`), `masking.trusted_functions[]` exactly two (`schema.function`). Each part
 * is a glob: `*` any run of characters (none included), `?` exactly one; everything else matches
 * itself, case-sensitively (PostgreSQL folds unquoted names to lower case, so `public.Customers.ssn`
 * names a quoted identifier). A name that itself contains a '.' is reached with `?` or `*`.
 * A malformed pattern is a config error, never silently ignored: an ignored rule would leave its
 * column clear.
 */
import { ConfigError } from '../../errors.js';
import type { MaskRule, ProtectionLookup } from './types.js';

const REGEX_SYNTAX = /[\\^$.*+?()[\]{}|/]/g;

/** One glob as an anchored RegExp (`s`: `*` and `?` also match newlines, which quoted identifiers may hold;
 *  `u`: `?` is one character, not one UTF-16 unit). */
export function compileGlob(glob: string): RegExp {
  let source = '';
  for (const part of glob.split(/([*?])/)) {
    if (part === '*') source += '.*';
    else if (part === '?') source += '.';
    else source += part.replace(REGEX_SYNTAX, '\\$&');
  }
  return new RegExp(`^${source}$`, 'su');
}

/** Whether `text` matches the glob `pattern` as a whole (compiles it each call: for config-time checks and tests). */
export function globMatch(pattern: string, text: string): boolean {
  return compileGlob(pattern).test(text);
}

function splitPattern(pattern: string, parts: number, what: string): RegExp[] {
  const pieces = pattern.split('.');
  if (pieces.length !== parts || pieces.some((piece) => piece === '')) {
    throw new ConfigError(`masking: ${what} pattern "${pattern}" must have ${parts} non-empty dot-separated parts`, {
      hint: parts === 3 ? 'write schema.table.column, e.g. "*.*.ssn" or "public.customers.ssn"' : 'write schema.function, e.g. "public.normalize_*"',
    });
  }
  return pieces.map(compileGlob);
}

/** partial: how many trailing characters a rule leaves readable (4 unless it says; a keep that
 *  is not a non-negative integer keeps nothing: config validation should have refused it). */
export function keptCharacters(rule: MaskRule): number {
  const keep = rule.keep ?? 4;
  return Number.isInteger(keep) && keep >= 0 ? keep : 0;
}

/** The first configured rule whose `schema.table.column` globs all match wins. */
export function compileRules(rules: MaskRule[]): ProtectionLookup {
  const compiled = rules.map((rule) => {
    const [schema, table, column] = splitPattern(rule.column, 3, 'masking.columns');
    return { schema: schema!, table: table!, column: column!, rule };
  });
  return (schema, table, column) => {
    for (const entry of compiled) {
      // Column first: it is the part most likely to differ.
      if (entry.column.test(column) && entry.table.test(table) && entry.schema.test(schema)) return entry.rule;
    }
    return null;
  };
}

/** `masking.trusted_functions`: whether any `schema.function` glob matches. */
export function compileFunctionTrust(globs: string[]): (schema: string, name: string) => boolean {
  const compiled = globs.map((glob) => splitPattern(glob, 2, 'masking.trusted_functions'));
  return (schema, name) => compiled.some(([schemaGlob, nameGlob]) => nameGlob!.test(name) && schemaGlob!.test(schema));
}
