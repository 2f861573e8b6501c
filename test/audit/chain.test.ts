import { createHash, randomUUID } from 'node:crypto';
import { describe, expect, test } from 'vitest';
import { EncodedEvent, GENESIS_HASH, auditConstant, canonicalJson, computeHash, sealEvent, verifyChain } from '../../src/audit/chain.js';
import type { AuditEvent, UnsealedEvent } from '../../src/audit/event.js';

function draft(i: number): UnsealedEvent {
  return {
    id: randomUUID(),
    time: new Date(Date.UTC(2026, 10, 29, 0, 0, i)).toISOString(),
    type: i % 2 ? 'query.start' : 'query.end',
    actor: { subject: 'alice', email: 'alice@bank.example', groups: ['analysts'], auth_method: 'api_key' },
    source: { address: '127.0.0.1', application: 'psql' },
    connection: 'bank',
    session_id: 'sess-1',
    data: { statement: `select ${i}`, parameters: [i, 'x', null], nested: { b: 1, a: [true, false] } },
  };
}

function chain(n: number): AuditEvent[] {
  const out: AuditEvent[] = [];
  let prev = GENESIS_HASH;
  for (let i = 1; i <= n; i++) {
    const e = sealEvent(draft(i), i, prev);
    out.push(e);
    prev = e.hash;
  }
  return out;
}

describe('canonicalJson', () => {
  test('sorts keys recursively and has no whitespace', () => {
    expect(canonicalJson({ b: 1, a: { d: [3, { z: 1, y: 2 }], c: 'x' } })).toBe('{"a":{"c":"x","d":[3,{"y":2,"z":1}]},"b":1}');
  });

  test('is independent of insertion order', () => {
    expect(canonicalJson({ x: 1, y: 2, z: { q: 1, p: 2 } })).toBe(canonicalJson({ z: { p: 2, q: 1 }, y: 2, x: 1 }));
  });

  test('sorts keys by UTF-16 code units like RFC 8785', () => {
    expect(canonicalJson({ '\u00e9': 1, z: 2, A: 3, '10': 4, '9': 5 })).toBe('{"10":4,"9":5,"A":3,"z":2,"\u00e9":1}');
  });

  test('normalises undefined as JSON does and -0 to 0, honours toJSON', () => {
    expect(canonicalJson({ a: undefined, b: [undefined, 1], c: -0, d: new Date(0) })).toBe('{"b":[null,1],"c":0,"d":"1970-01-01T00:00:00.000Z"}');
  });

  test('escapes strings exactly as JSON, including control characters and lone surrogates', () => {
    const s = 'a"b\\c\n\u0000\ud800';
    expect(JSON.parse(canonicalJson({ s })).s).toBe(s);
    expect(canonicalJson(s)).toBe('"a\\"b\\\\c\\n\\u0000\\ud800"');
  });

  test.each([
    ['NaN', { a: NaN }, /\$\.a is NaN/],
    ['Infinity', { a: [1, Infinity] }, /\$\.a\[1\] is Infinity/],
    ['bigint', { a: 1n }, /bigint/],
    ['function', { a: () => 1 }, /function/],
    ['symbol', { a: Symbol('x') }, /symbol/],
    ['Map', { a: new Map([[1, 2]]) }, /Map, not a plain object/],
    ['typed array', { a: new Uint8Array(2) }, /Uint8Array/],
    ['top-level undefined', undefined, /undefined/],
  ])('rejects %s rather than silently changing it', (_name, value, message) => {
    expect(() => canonicalJson(value)).toThrow(message);
  });

  test('random objects: the keys in Array.prototype.sort order at every level, the values as JSON.stringify writes them', () => {
    const reference = (v: unknown): string => {
      if (Array.isArray(v)) return `[${v.map(reference).join(',')}]`;
      if (v !== null && typeof v === 'object') return `{${Object.keys(v).sort().map((k) => `${JSON.stringify(k)}:${reference((v as Record<string, unknown>)[k])}`).join(',')}}`;
      return JSON.stringify(v);
    };
    let seed = 9;
    const random = (n: number) => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) >>> 8) % n;
    const KEY_CHARS = ['a', 'B', 'z', '0', '9', '_', '\u00e9', '\ud83d\ude00', '\ud800', '"', '\\', '\n', ' '];
    const key = () => Array.from({ length: random(4) }, () => KEY_CHARS[random(KEY_CHARS.length)]).join('') + (random(3) === 0 ? String(random(30)) : '');
    const value = (depth: number): unknown => {
      const r = random(depth > 3 ? 4 : 7);
      if (r === 0) return random(2) === 0 ? null : random(1000) - 500.25;
      if (r === 1) return key();
      if (r === 2) return random(2) === 1;
      if (r === 3) return random(100);
      if (r === 4) return Array.from({ length: random(4) }, () => value(depth + 1));
      return Object.fromEntries(Array.from({ length: random(2) === 0 ? random(40) : random(8) }, () => [key(), value(depth + 1)]));
    };
    for (let i = 0; i < 2_000; i++) {
      const v = value(0);
      expect(canonicalJson(v)).toBe(reference(v));
    }
  });

  test('rejects cycles but accepts a shared (non-cyclic) reference', () => {
    const shared = { k: 1 };
    expect(canonicalJson({ a: shared, b: shared })).toBe('{"a":{"k":1},"b":{"k":1}}');
    const cyclic: Record<string, unknown> = {};
    cyclic['self'] = cyclic;
    expect(() => canonicalJson(cyclic)).toThrow(/cycle/);
  });
});

describe('sealEvent', () => {
  test('hash is SHA-256 over prev_hash and the canonical JSON of every other field', () => {
    const d = draft(1);
    const e = sealEvent(d, 1, GENESIS_HASH);
    expect(GENESIS_HASH).toBe('0'.repeat(64));
    expect(e.seq).toBe(1);
    expect(e.prev_hash).toBe(GENESIS_HASH);
    const { hash, ...body } = e;
    const expected = createHash('sha256').update(GENESIS_HASH + canonicalJson(body)).digest('hex');
    expect(hash).toBe(expected);
    expect(hash).toMatch(/^[0-9a-f]{64}$/);
  });

  test('defaults missing optional fields to null', () => {
    const d = draft(1) as Partial<UnsealedEvent>;
    delete d.source;
    delete d.connection;
    delete d.session_id;
    const e = sealEvent(d as UnsealedEvent, 1, GENESIS_HASH);
    expect(e.source).toBeNull();
    expect(e.connection).toBeNull();
    expect(e.session_id).toBeNull();
    expect(verifyChain([e])).toEqual({ ok: true });
  });

  test.each([
    ['seq 0', (d: UnsealedEvent) => sealEvent(d, 0, GENESIS_HASH), /seq/],
    ['fractional seq', (d: UnsealedEvent) => sealEvent(d, 1.5, GENESIS_HASH), /seq/],
    ['short prev hash', (d: UnsealedEvent) => sealEvent(d, 1, 'abc'), /prevHash/],
    ['non-UTC time', (d: UnsealedEvent) => sealEvent({ ...d, time: '2026-11-29T01:00:00+01:00' }, 1, GENESIS_HASH), /time/],
    ['non-uuid id', (d: UnsealedEvent) => sealEvent({ ...d, id: 'X' }, 1, GENESIS_HASH), /id/],
    ['NaN in data', (d: UnsealedEvent) => sealEvent({ ...d, data: { n: NaN } }, 1, GENESIS_HASH), /NaN/],
  ])('refuses a malformed event: %s', (_name, seal, message) => {
    expect(() => seal(draft(1))).toThrow(message);
  });
});

describe('verifyChain', () => {
  test('accepts an intact chain, an empty one, and a segment given its predecessor', () => {
    const events = chain(10);
    expect(verifyChain(events)).toEqual({ ok: true });
    expect(verifyChain([])).toEqual({ ok: true });
    expect(verifyChain(events.slice(4), events[3]!.hash)).toEqual({ ok: true });
    expect(verifyChain(events.slice(4), GENESIS_HASH)).toMatchObject({ ok: false, seq: 5, reason: expect.stringMatching(/prev link/) });
  });

  test('survives a JSON round trip (what a store or an export does)', () => {
    const events = chain(5);
    expect(verifyChain(JSON.parse(JSON.stringify(events)) as AuditEvent[])).toEqual({ ok: true });
  });

  const tamperings: [string, (e: AuditEvent) => void][] = [
    ['id', (e) => (e.id = randomUUID())],
    ['time', (e) => (e.time = '2020-01-01T00:00:00.000Z')],
    ['type', (e) => (e.type = 'session.end')],
    ['actor.subject', (e) => (e.actor!.subject = 'mallory')],
    ['actor.groups', (e) => e.actor!.groups.push('dba')],
    ['source.address', (e) => (e.source!.address = '10.0.0.1')],
    ['connection', (e) => (e.connection = 'other')],
    ['session_id', (e) => (e.session_id = 'sess-2')],
    ['data value', (e) => ((e.data as { statement: string }).statement = 'select 0')],
    ['nested data', (e) => ((e.data as { nested: { b: number } }).nested.b = 2)],
    ['added data key', (e) => ((e.data as Record<string, unknown>)['extra'] = 1)],
    ['hash', (e) => (e.hash = e.hash.replace(/^./, (c) => (c === '0' ? '1' : '0')))],
  ];
  test.each(tamperings)('detects tampering with %s and names that event', (_field, tamper) => {
    const events = chain(6);
    tamper(events[3]!);
    expect(verifyChain(events)).toEqual({ ok: false, seq: 4, reason: expect.stringMatching(/hash mismatch/) });
  });

  test('detects a rewritten event whose hash was recomputed: the next link breaks', () => {
    const events = chain(6);
    const forged = sealEvent({ ...unsealed(events[2]!), data: { statement: 'select innocent' } }, 3, events[1]!.hash);
    events[2] = forged;
    expect(verifyChain(events)).toEqual({ ok: false, seq: 4, reason: expect.stringMatching(/prev link broken.*seq 3/) });
  });

  test('detects a changed seq and a changed prev_hash', () => {
    const a = chain(4);
    a[2]!.seq = 9;
    expect(verifyChain(a)).toMatchObject({ ok: false, seq: 9, reason: expect.stringMatching(/seq gap/) });
    const b = chain(4);
    b[0]!.prev_hash = 'f'.repeat(64);
    expect(verifyChain(b)).toMatchObject({ ok: false, seq: 1, reason: expect.stringMatching(/prev link/) });
  });

  test('detects reordering', () => {
    const events = chain(5);
    [events[1], events[2]] = [events[2]!, events[1]!];
    expect(verifyChain(events)).toEqual({ ok: false, seq: 3, reason: expect.stringMatching(/seq gap: expected 2, found 3/) });
    const swapped = chain(5);
    const moved = swapped.splice(3, 1)[0]!;
    swapped.splice(1, 0, moved);
    expect(verifyChain(swapped)).toMatchObject({ ok: false, seq: 4 });
  });

  test('detects deletion in the middle and at the start', () => {
    const events = chain(5);
    events.splice(2, 1);
    expect(verifyChain(events)).toEqual({ ok: false, seq: 4, reason: 'seq gap: expected 3, found 4 (events missing)' });
    const headless = chain(5).slice(1);
    expect(verifyChain(headless, GENESIS_HASH)).toMatchObject({ ok: false, seq: 2, reason: expect.stringMatching(/prev link/) });
  });

  test('detects a duplicated (replayed) event', () => {
    const events = chain(3);
    events.splice(2, 0, events[1]!);
    expect(verifyChain(events)).toMatchObject({ ok: false, seq: 2, reason: expect.stringMatching(/out of order/) });
  });
});

describe('EncodedEvent: one encoding for the hash and the stored row', () => {
  const base = { id: '0b9d6c3e-8f1a-4c2b-9d3e-5f6a7b8c9d0e', time: '2026-11-29T01:02:03.456Z', type: 'query.end' } as const;
  // Values chosen to be awkward for a canonical encoder: key order (integer-like, non-ASCII,
  // empty), escapes, number forms, undefined members and items, toJSON (which is handed the path).
  const cases: [string, () => UnsealedEvent][] = [
    ['typical', () => ({
      ...base,
      actor: { subject: 'alice', email: 'alice@bank.example', groups: ['analysts'], auth_method: 'api_key' },
      source: { address: '127.0.0.1', application: 'psql' },
      connection: 'bank',
      session_id: 's-1',
      data: { query_id: 'q1', outcome: 'ok', error: null, command_tags: ['SELECT 1'], rows: 1, bytes: 11, duration_ms: 0.25, result: { columns: ['abalance'], rows: [['0'], [null]], truncated: false, sha256: 'ab'.repeat(32) } },
    })],
    ['awkward', () => ({
      ...base,
      actor: { subject: 'bob', email: undefined, groups: [], auth_method: 'oidc' },
      source: undefined as unknown as null,
      connection: undefined as unknown as null,
      session_id: null,
      data: {
        '10': 'ten', '9': 'nine', '01': 'oh-one', '\u00e9': 'e-acute', A: 'upper', '': 'empty key', '\ud83d\ude00': 'emoji', 'z\u0000': 'nul key',
        s: 'a"b\\c\n\t\u0000\u001f\u007f\u2028\ud800 é中文😀',
        n: [-0, 1e21, 5e-324, -1.5e-300, 9007199254740993, 0.1 + 0.2],
        u: [undefined, null],
        skip: undefined,
        d: new Date(0),
        k: { toJSON: (key: string) => `toJSON got ${key}` },
        arr: [{ toJSON: (key: string) => key }],
        nested: { b: { d: {}, c: [] }, a: [[[]]] },
      },
    })],
    ['null actor, no data', () => ({ ...base, type: 'session.end', actor: null, source: { address: null }, connection: 'c', session_id: 's', data: undefined as unknown as Record<string, unknown> })],
  ];
  // Computed with the implementation before EncodedEvent (commit aba2e8f), which canonicalised
  // the whole body in one walk: the chain format must not move by a byte.
  const golden = [
    '5e76c0f88c68a594f887048f83900a18d362332b9637608ca571fba53251d1fb',
    '4750ecae7e8d9fe8676e0cc7fc3637e6ab41f32475f0522bd66624cd5f893c1c',
    '0dfd59f1712a00e06ef90d4a18448fbb043c735f0436306bfe73fd5cc68054c2',
  ];

  /** The hash as the chain defines it: one canonicalJson over the whole body. */
  function referenceHash(e: UnsealedEvent, seq: number, prev: string): string {
    const body = { seq, id: e.id, time: e.time, type: e.type, actor: e.actor ?? null, source: e.source ?? null, connection: e.connection ?? null, session_id: e.session_id ?? null, data: e.data, prev_hash: prev };
    return createHash('sha256').update(prev + canonicalJson(body), 'utf8').digest('hex');
  }

  test('sealing hashes exactly the bytes of canonicalJson over the whole body (golden hashes)', () => {
    let prev = GENESIS_HASH;
    cases.forEach(([, make], i) => {
      const seq = 42 + i;
      const plain = sealEvent(make(), seq, prev);
      const encoded = sealEvent(EncodedEvent.of(make()), seq, prev);
      expect(plain.hash).toBe(golden[i]);
      expect(encoded.hash).toBe(golden[i]);
      expect(referenceHash(make(), seq, prev)).toBe(golden[i]);
      expect(computeHash(plain)).toBe(golden[i]); // what verification recomputes from the sealed event
      expect(encoded).toEqual(plain);
      prev = plain.hash;
    });
  });

  test.each(cases)('%s: json is canonicalJson of each field, and the fields read back from it', (_name, make) => {
    const e = make();
    const encoded = EncodedEvent.of(e);
    const fields = { id: e.id, time: e.time, type: e.type, actor: e.actor ?? null, source: e.source ?? null, connection: e.connection ?? null, session_id: e.session_id ?? null, data: e.data };
    for (const [name, value] of Object.entries(fields)) {
      const text = encoded.json[name as keyof typeof encoded.json];
      // Encoded where it sits in the event ({"data":…}), so toJSON is handed the same path.
      expect(text).toBe(value === undefined ? undefined : canonicalJson({ [name]: value }).slice(`{"${name}":`.length, -1));
      expect(encoded[name as keyof typeof fields]).toEqual(text === undefined ? undefined : JSON.parse(text));
    }
    expect(EncodedEvent.of(encoded)).toBe(encoded);
  });

  test('is a snapshot: changing the objects it was made from changes neither its JSON nor its fields', () => {
    const e = draft(1);
    const encoded = EncodedEvent.of(e);
    const before = JSON.stringify(encoded);
    (e.data as { parameters: unknown[] }).parameters.push('later');
    e.actor!.groups.push('dba');
    expect(JSON.stringify(encoded)).toBe(before);
    expect(encoded.json.data).not.toContain('later');
    expect(sealEvent(encoded, 1, GENESIS_HASH)).toEqual(sealEvent({ ...encoded }, 1, GENESIS_HASH));
  });

  test('auditConstant: a frozen copy whose cached encoding gives the same JSON, hash and fields as encoding it afresh', () => {
    const groups = ['analysts'];
    const original = { subject: 'alice', email: 'alice@bank.example', groups, auth_method: 'api_key' as const };
    const actor = auditConstant(original);
    const source = auditConstant({ address: '127.0.0.1', application: 'psql', extra: undefined });
    groups.push('dba'); // the caller's objects stay theirs: the constant is a copy
    original.subject = 'mallory';
    expect(actor).toEqual({ subject: 'alice', email: 'alice@bank.example', groups: ['analysts'], auth_method: 'api_key' });
    expect(Object.isFrozen(actor) && Object.isFrozen(actor.groups)).toBe(true);
    expect(() => actor.groups.push('dba')).toThrow(TypeError);
    const fresh = { ...draft(3), actor: { ...actor, groups: [...actor.groups] }, source: { address: '127.0.0.1', application: 'psql' } };
    const cached = EncodedEvent.of({ ...fresh, actor, source });
    expect(cached.json).toEqual(EncodedEvent.of(fresh).json);
    expect(cached.actor).toBe(actor); // immutable, so its own snapshot
    expect(sealEvent(cached, 7, GENESIS_HASH)).toEqual(sealEvent(fresh, 7, GENESIS_HASH));
    expect(computeHash(sealEvent(cached, 7, GENESIS_HASH))).toBe(sealEvent(fresh, 7, GENESIS_HASH).hash);
    expect(() => auditConstant({ n: Number.NaN })).toThrow('canonical JSON: $.n is NaN');
  });

  test('refuses what canonical JSON refuses, naming the path within the event', () => {
    expect(() => EncodedEvent.of({ ...draft(1), data: { rows: [[1, NaN]] } })).toThrow('canonical JSON: $.data.rows[0][1] is NaN');
    expect(() => EncodedEvent.of({ ...draft(1), actor: { groups: new Set() } as never })).toThrow('canonical JSON: $.actor.groups is a Set, not a plain object');
    expect(() => sealEvent({ ...draft(1), data: { n: 1n } }, 1, GENESIS_HASH)).toThrow('$.data.n is a bigint');
  });
});

/** A sealed event's fields before sealing. */
function unsealed({ seq: _s, prev_hash: _p, hash: _h, payload_sha256: _ps, payload: _pl, ...e }: AuditEvent): UnsealedEvent {
  return e;
}
