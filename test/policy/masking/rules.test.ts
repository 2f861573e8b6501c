import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../../src/errors.js';
import { compileFunctionTrust, compileRules, globMatch } from '../../../src/policy/masking/rules.js';
import type { MaskRule } from '../../../src/policy/masking/types.js';

const rule = (column: string, method: MaskRule['method'] = 'redact'): MaskRule => ({ column, type: 'other', method });

describe('globMatch', () => {
  it('matches * as any run (including none) and ? as exactly one character, anchored at both ends', () => {
    expect(globMatch('ssn', 'ssn')).toBe(true);
    expect(globMatch('ssn', 'ssn_last4')).toBe(false);
    expect(globMatch('ssn', 'xssn')).toBe(false);
    expect(globMatch('*ssn*', 'ssn')).toBe(true);
    expect(globMatch('*ssn*', 'customer_ssn_hash')).toBe(true);
    expect(globMatch('card_?', 'card_1')).toBe(true);
    expect(globMatch('card_?', 'card_')).toBe(false);
    expect(globMatch('card_?', 'card_12')).toBe(false);
    expect(globMatch('*', '')).toBe(true);
  });

  it('takes regex metacharacters literally', () => {
    expect(globMatch('a+b(1)[x]{2}$^|\\/', 'a+b(1)[x]{2}$^|\\/')).toBe(true);
    expect(globMatch('a+b', 'aab')).toBe(false);
    expect(globMatch('a.c', 'abc')).toBe(false);
    expect(globMatch('[ab]', 'a')).toBe(false);
  });

  it('is case-sensitive, spans newlines of quoted identifiers, and counts ? in characters', () => {
    expect(globMatch('public', 'Public')).toBe(false);
    expect(globMatch('a*b', 'a\nb')).toBe(true);
    expect(globMatch('?', 'é')).toBe(true);
    expect(globMatch('?', '😀')).toBe(true);
    expect(globMatch('??', '😀')).toBe(false);
  });
});

describe('compileRules', () => {
  it('returns the first rule whose three globs all match', () => {
    const exact = { ...rule('public.customers.ssn', 'partial'), keep: 4 };
    const anySsn = rule('*.*.ssn', 'hash');
    const lookup = compileRules([exact, anySsn, rule('public.customers.*', 'null')]);
    expect(lookup('public', 'customers', 'ssn')).toBe(exact);
    expect(lookup('sales', 'customers', 'ssn')).toBe(anySsn);
    expect(lookup('public', 'customers', 'email')?.method).toBe('null');
    expect(lookup('public', 'orders', 'email')).toBeNull();
    expect(lookup('public', 'customers', 'SSN')?.method).toBe('null'); // case-sensitive: not the ssn rules
  });

  it('matches each part on its own: a dot never crosses parts, but ? and * reach a name that holds one', () => {
    const lookup = compileRules([rule('public.a?b.c'), rule('x*.t.c')]);
    expect(lookup('public', 'a.b', 'c')).not.toBeNull();
    expect(lookup('public.a', 'b', 'c')).toBeNull();
    expect(lookup('x.y', 't', 'c')).not.toBeNull();
    expect(lookup('x', 'y.t', 'c')).toBeNull();
  });

  it('refuses a pattern without exactly three non-empty parts (an ignored rule would leave data clear)', () => {
    for (const column of ['customers.ssn', 'a.b.c.d', 'public..ssn', '', 'ssn']) {
      expect(() => compileRules([rule(column)]), column).toThrow(ConfigError);
    }
  });

  it('has no rule for anything when nothing is configured', () => {
    expect(compileRules([])('public', 'customers', 'ssn')).toBeNull();
  });
});

describe('compileFunctionTrust', () => {
  it('matches schema.function globs', () => {
    const trusted = compileFunctionTrust(['public.normalize_*', 'util.f?']);
    expect(trusted('public', 'normalize_ssn')).toBe(true);
    expect(trusted('public', 'normalize_')).toBe(true);
    expect(trusted('public', 'x_normalize_ssn')).toBe(false);
    expect(trusted('other', 'normalize_ssn')).toBe(false);
    expect(trusted('util', 'fx')).toBe(true);
    expect(trusted('util', 'fxy')).toBe(false);
  });

  it('trusts nothing by default, and refuses a glob without a schema', () => {
    expect(compileFunctionTrust([])('public', 'f')).toBe(false);
    expect(() => compileFunctionTrust(['normalize'])).toThrow(ConfigError);
    expect(() => compileFunctionTrust(['a.b.c'])).toThrow(ConfigError);
  });
});
