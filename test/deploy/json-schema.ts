/**
 * A small JSON Schema validator for the keywords the Compose specification's schema uses
 * (draft 2019-09 as that file writes it: `definitions` and `#/definitions/…` refs, `id` as an
 * annotation). Strict: a keyword it does not implement, a format it does not know, or a ref it
 * cannot follow is an error, never a silent pass.
 */

type Schema = Record<string, unknown> | boolean;

const ANNOTATIONS = new Set(['$schema', 'id', '$id', 'definitions', 'deprecated', 'description', 'title', '$comment']);
const KEYWORDS = new Set(['$ref', 'type', 'enum', 'properties', 'patternProperties', 'additionalProperties', 'required', 'items', 'oneOf', 'anyOf', 'minimum', 'maximum', 'uniqueItems', 'format']);

/** Go's time.ParseDuration, which Compose uses: 1h30m, 10s, 500ms, 1.5s. */
const DURATION = /^(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+$/;
/** Formats the Compose schema names that only its own tooling defines; checked structurally by the schema around them. */
const ANNOTATION_FORMATS = new Set(['ports', 'expose', 'subnet_ip_address']);

function typeOf(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  if (typeof v === 'number') return Number.isInteger(v) ? 'integer' : 'number';
  return typeof v;
}

function typeMatches(v: unknown, t: string): boolean {
  const actual = typeOf(v);
  return actual === t || (t === 'number' && actual === 'integer');
}

export class SchemaValidator {
  constructor(private readonly root: Record<string, unknown>) {}

  /** Every problem found, as `path: what`; empty when `value` is valid. */
  validate(value: unknown): string[] {
    return this.check(this.root, value, '$');
  }

  private resolve(ref: string): Schema {
    if (!ref.startsWith('#/')) throw new Error(`unsupported $ref ${ref}`);
    let node: unknown = this.root;
    for (const part of ref.slice(2).split('/')) {
      node = (node as Record<string, unknown> | undefined)?.[part.replace(/~1/g, '/').replace(/~0/g, '~')];
    }
    if (node === undefined) throw new Error(`unresolvable $ref ${ref}`);
    return node as Schema;
  }

  private check(schema: Schema, v: unknown, path: string): string[] {
    if (schema === true) return [];
    if (schema === false) return [`${path}: not allowed here`];
    for (const k of Object.keys(schema)) {
      if (!KEYWORDS.has(k) && !ANNOTATIONS.has(k)) throw new Error(`unsupported JSON Schema keyword ${k} at ${path}`);
    }
    const errors: string[] = [];
    if (typeof schema['$ref'] === 'string') errors.push(...this.check(this.resolve(schema['$ref']), v, path));
    const type = schema['type'] as string | string[] | undefined;
    if (type !== undefined) {
      const types = Array.isArray(type) ? type : [type];
      if (!types.some((t) => typeMatches(v, t))) return [...errors, `${path}: expected ${types.join(' or ')}, got ${typeOf(v)}`];
    }
    const en = schema['enum'] as unknown[] | undefined;
    if (en && !en.some((e) => JSON.stringify(e) === JSON.stringify(v))) errors.push(`${path}: expected one of ${JSON.stringify(en)}, got ${JSON.stringify(v)}`);
    if (typeof v === 'number') {
      if (typeof schema['minimum'] === 'number' && v < schema['minimum']) errors.push(`${path}: below ${schema['minimum']}`);
      if (typeof schema['maximum'] === 'number' && v > schema['maximum']) errors.push(`${path}: above ${schema['maximum']}`);
    }
    const format = schema['format'] as string | undefined;
    if (format !== undefined) {
      if (format === 'duration') {
        if (typeof v === 'string' && !DURATION.test(v)) errors.push(`${path}: not a duration: ${v}`);
      } else if (!ANNOTATION_FORMATS.has(format)) {
        throw new Error(`unsupported format ${format} at ${path}`);
      }
    }
    if (typeOf(v) === 'object') errors.push(...this.object(schema, v as Record<string, unknown>, path));
    if (Array.isArray(v)) {
      if (schema['items'] !== undefined) v.forEach((item, i) => errors.push(...this.check(schema['items'] as Schema, item, `${path}[${i}]`)));
      if (schema['uniqueItems'] === true && new Set(v.map((x) => JSON.stringify(x))).size !== v.length) errors.push(`${path}: items are not unique`);
    }
    const oneOf = schema['oneOf'] as Schema[] | undefined;
    if (oneOf) {
      const results = oneOf.map((s) => this.check(s, v, path));
      const passing = results.filter((r) => r.length === 0).length;
      if (passing !== 1) errors.push(passing === 0 ? `${path}: matches none of oneOf (${results.map((r) => r[0]).join('; ')})` : `${path}: matches ${passing} of oneOf`);
    }
    const anyOf = schema['anyOf'] as Schema[] | undefined;
    if (anyOf) {
      const results = anyOf.map((s) => this.check(s, v, path));
      if (!results.some((r) => r.length === 0)) errors.push(`${path}: matches none of anyOf (${results.map((r) => r[0]).join('; ')})`);
    }
    return errors;
  }

  private object(schema: Record<string, unknown>, v: Record<string, unknown>, path: string): string[] {
    const errors: string[] = [];
    const properties = (schema['properties'] ?? {}) as Record<string, Schema>;
    const patterns = Object.entries((schema['patternProperties'] ?? {}) as Record<string, Schema>).map(([p, s]) => [new RegExp(p, 'u'), s] as const);
    for (const r of (schema['required'] ?? []) as string[]) if (!(r in v)) errors.push(`${path}: ${r} is required`);
    for (const [key, value] of Object.entries(v)) {
      const at = `${path}.${key}`;
      let matched = false;
      if (key in properties) {
        matched = true;
        errors.push(...this.check(properties[key]!, value, at));
      }
      for (const [re, s] of patterns) {
        if (re.test(key)) {
          matched = true;
          errors.push(...this.check(s, value, at));
        }
      }
      const extra = schema['additionalProperties'];
      if (!matched && extra !== undefined) errors.push(...(extra === false ? [`${at}: unknown key`] : this.check(extra as Schema, value, at)));
    }
    return errors;
  }
}
