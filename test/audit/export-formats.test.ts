/**
 * The export's pure parts against oracles that are not hoop's own code: ustar headers read by
 * GNU tar, CEF lines read by a parser written from the spec, canonical JSON compared with
 * Python's json.dumps (the README's claim), the span's anchors over a real SQLite store, and the
 * filters.
 */
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { canonicalJson, computeHash } from '../../src/audit/chain.js';
import type { AuditEvent, UnsealedEvent } from '../../src/audit/event.js';
import { fullLineOf, stubLineOf } from '../../src/audit/export/bundle.js';
import { cefHeaderEscape, cefLine } from '../../src/audit/export/cef.js';
import { ocsfClassOf, ocsfEvent } from '../../src/audit/export/ocsf.js';
import { readPages, withPayloads } from '../../src/audit/export/source.js';
import { computeSpan, matchesFilters, rangeSeqs } from '../../src/audit/export/span.js';
import { tarEnd, tarPadding, ustarHeader } from '../../src/audit/export/tar.js';
import { openStore } from '../../src/store/index.js';
import { SqliteStore } from '../../src/store/sqlite.js';
import type { Store } from '../../src/store/store.js';
import { createTestDatabase } from '../helpers/postgres.js';
import { parseCef } from '../helpers/cef.js';

const run = promisify(execFile);
const dir = mkdtempSync(join(tmpdir(), 'hoop-xfmt-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const alice = { subject: 'apikey:alice', email: 'Alice@Bank.example', groups: ['analysts'], auth_method: 'api_key' as const };

function sealedLike(over: Partial<AuditEvent>): AuditEvent {
  const e = {
    seq: 7, id: randomUUID(), time: '2026-03-03T10:00:00.000Z', type: 'query.start', actor: alice, source: { address: '::ffff:10.1.2.3', application: 'psql' },
    connection: 'bank', session_id: randomUUID(), data: { query_id: 'q1', statement: 'SELECT 1' }, prev_hash: 'a'.repeat(64), ...over,
  } as Omit<AuditEvent, 'hash'>;
  return { ...e, hash: computeHash(e) } as AuditEvent;
}

describe('ustar', () => {
  it('GNU tar lists what the headers say: names, sizes, mode 0644, owner 0, the mtime', async () => {
    const mtime = Date.parse('2026-03-04T05:06:07Z') / 1000;
    const files: [string, Buffer][] = [['README.txt', Buffer.from('hi\n')], ['payloads/10.json', Buffer.alloc(513, 'x')], ['keys/' + 'a'.repeat(64) + '.pem', Buffer.alloc(0)]];
    const parts: Buffer[] = [];
    for (const [name, data] of files) parts.push(ustarHeader(name, data.length, mtime), data, tarPadding(data.length));
    parts.push(tarEnd());
    writeFileSync(join(dir, 't.tar'), Buffer.concat(parts));
    const { stdout } = await run('tar', ['tvf', join(dir, 't.tar'), '--numeric-owner', '--full-time'], { env: { TZ: 'UTC', PATH: process.env['PATH']! } });
    const rows = stdout.trimEnd().split('\n').map((l) => l.split(/\s+/));
    expect(rows.map((r) => [r[0], r[1], r[2], r[3], r[4], r[5]])).toEqual(files.map(([name, data]) => ['-rw-r--r--', '0/0', String(data.length), '2026-03-04', '05:06:07', name]));
    const x = mkdtempSync(join(dir, 'x-'));
    await run('tar', ['xf', join(dir, 't.tar'), '-C', x]);
    expect((await run('cat', [join(x, 'payloads/10.json')])).stdout).toBe('x'.repeat(513));
  });

  it('refuses names a bundle must never hold', () => {
    expect(() => ustarHeader('x'.repeat(100), 1, 0)).toThrow(/1 to 99 bytes/);
    expect(() => ustarHeader('/etc/passwd', 1, 0)).toThrow(/relative/);
    expect(() => ustarHeader('a/../b', 1, 0)).toThrow(/relative/);
    expect(() => ustarHeader('big', 8 ** 11, 0)).toThrow(/too large/);
  });
});

describe('CEF', () => {
  it('escapes hostile header and extension values so a spec parser reads back exactly what was recorded', () => {
    const hostile = 'a|b\\c=d\ne\r\nf =x msg=forged';
    const e = sealedLike({ type: 'query.start', data: { query_id: 'q=1', statement: hostile }, connection: 'bank', actor: { ...alice, email: 'eve=|\\@x' } });
    const line = cefLine(e, '1.2.3|4\\');
    expect(line.endsWith('\n')).toBe(true);
    expect(line.slice(0, -1)).not.toMatch(/[\r\n]/);
    const { header, ext } = parseCef(line.slice(0, -1));
    expect(header).toEqual(['hoop', 'hoop', '1.2.3|4\\', 'query.start', 'Statement started', '3']);
    expect(ext).toMatchObject({ msg: hostile, suser: 'eve=|\\@x', suid: 'apikey:alice', src: '10.1.2.3', cs4: 'q=1', cs4Label: 'queryId', cn1: '7', externalId: e.id, rt: String(Date.parse(e.time)) });
    expect(cefHeaderEscape('x\ny')).toBe('x y');
  });

  it('severity and outcome follow what happened; an IPv6 source goes to c6a2', () => {
    const denied = parseCef(cefLine(sealedLike({ type: 'access.denied', data: { reason: 'no' }, source: { address: '2001:db8::1' } }), '1').trimEnd());
    expect(denied.header[5]).toBe('6');
    expect(denied.ext).toMatchObject({ outcome: 'failure', msg: 'no', c6a2: '2001:db8::1', c6a2Label: 'sourceAddress' });
    expect(denied.ext['src']).toBeUndefined();
    const ok = parseCef(cefLine(sealedLike({ type: 'query.end', data: { query_id: 'q1', outcome: 'ok', rows: 3, bytes: 40 } }), '1').trimEnd());
    expect(ok.ext).toMatchObject({ outcome: 'success', cn2: '3', cn2Label: 'rows', out: '40', msg: 'ok: 3 rows' });
  });
});

describe('OCSF', () => {
  it('type_uid is class_uid * 100 + activity_id for every event type, in the documented classes', () => {
    const classes = Object.fromEntries(['session.start', 'session.end', 'query.end', 'auth.failed', 'approval.requested', 'export.created', 'checkpoint'].map((t) => {
      const o = ocsfEvent(sealedLike({ type: t as AuditEvent['type'] }), '1.0.0');
      expect(o['type_uid']).toBe((o['class_uid'] as number) * 100 + (o['activity_id'] as number));
      return [t, [o['class_uid'], o['activity_id']]];
    }));
    expect(classes).toEqual({
      'session.start': [3002, 1], 'session.end': [3002, 2], 'query.end': [6005, 4], 'auth.failed': [3002, 1],
      'approval.requested': [6003, 1], 'export.created': [6003, 2], checkpoint: [0, 99],
    });
    expect(ocsfClassOf('query.start').category_uid).toBe(6);
  });
});

describe('bundle lines', () => {
  it('a FULL line is the canonical event without payload, and its hash recomputes as computeHash does', () => {
    const e = sealedLike({ payload_sha256: 'b'.repeat(64), data: { z: 1, a: ['é', null], nested: { y: 'x', b: -0 } } });
    const { line, hash } = fullLineOf({ ...e, payload: { 'result.sets': [] } });
    expect(line).toBe(`${canonicalJson(e)}\n`);
    expect(hash).toBe(e.hash);
    const bare = sealedLike({ source: null, connection: null, session_id: null, actor: null });
    expect(fullLineOf(bare)).toEqual({ line: `${canonicalJson(bare)}\n`, hash: bare.hash });
    expect(JSON.parse(stubLineOf(e))).toEqual({ hash: e.hash, omitted: true, prev_hash: e.prev_hash, seq: e.seq });
  });

  it("Python's json.dumps(sort_keys, compact separators, ensure_ascii=False) writes the same bytes for the values hoop records", async () => {
    const values = [
      { statement: "SELECT 'naïve', '日本', '😀', E'\\x01', 'tab\there', 'nl\nx', 'bs\\\\', '\u2028\u2029', '\u007f'", n: [0, -1, 1.5, 0.1, 1e21, 123456789012, -0, 2 ** 53 - 1], t: true, f: false, z: null },
      { 'key with "quotes"': 'v', Z: 1, a: 2, 'é': 3, '': 4, nested: [{ b: 1, a: [] }, {}] },
      { control: '\u0000\u0008\u000b\u000c\u001f', lone: 'x\u00e9y' },
    ];
    const file = join(dir, 'values.jsonl');
    writeFileSync(file, values.map((v) => JSON.stringify(v)).join('\n') + '\n');
    const py = 'import json,sys\nfor l in open(sys.argv[1],encoding="utf-8"):\n    sys.stdout.write(json.dumps(json.loads(l),sort_keys=True,separators=(",",":"),ensure_ascii=False)+"\\n")';
    const { stdout } = await run('python3', ['-c', py, file], { env: { ...process.env, PYTHONIOENCODING: 'utf-8' } });
    expect(stdout.trimEnd().split('\n')).toEqual(values.map((v) => canonicalJson(v)));
  });
});

describe('filters', () => {
  const e = (over: Partial<AuditEvent>) => sealedLike(over);
  it('user: subject, API key name, email in any case; approval events by their requester; connection exactly', () => {
    for (const user of ['apikey:alice', 'alice', 'alice@bank.EXAMPLE']) expect(matchesFilters(e({}), { user, connection: null })).toBe(true);
    expect(matchesFilters(e({}), { user: 'bob', connection: null })).toBe(false);
    const decided = e({ type: 'approval.decided', actor: { ...alice, subject: 'apikey:bob', email: null }, data: { request: 'r1', requester: 'apikey:alice' } });
    expect(matchesFilters(decided, { user: 'alice', connection: null })).toBe(true);
    expect(matchesFilters(e({ type: 'query.start', actor: null, data: { requester: 'apikey:alice' } }), { user: 'alice', connection: null })).toBe(false);
    expect(matchesFilters(e({}), { user: null, connection: 'bank' })).toBe(true);
    expect(matchesFilters(e({}), { user: 'alice', connection: 'vault' })).toBe(false);
  });
});

const upstream = inject('upstream');
const pgDatabases: Awaited<ReturnType<typeof createTestDatabase>>[] = [];
afterAll(async () => {
  for (const db of pgDatabases) await db.drop();
});

describe.each(['sqlite', 'postgres'])('the span over a real %s store', (kind) => {
  async function storeWith(spec: ('e' | 'c')[], times?: string[]): Promise<Store> {
    let store: Store;
    if (kind === 'sqlite') {
      store = new SqliteStore(join(dir, `${randomUUID()}.db`));
    } else {
      // One database per store: each starts its own chain.
      const db = await createTestDatabase(upstream, 'hoop_xspan');
      pgDatabases.push(db);
      store = await openStore(`postgres://${db.info.users.trust}@${db.info.host}:${db.info.port}/${db.info.database}`);
    }
    await store.migrate();
    const sealed: AuditEvent[] = [];
    for (const [i, kind] of spec.entries()) {
      const time = times?.[i] ?? new Date(Date.parse('2026-03-03T00:00:00Z') + i * 60_000).toISOString();
      const head = sealed.at(-1);
      const draft: UnsealedEvent = kind === 'c'
        ? { id: randomUUID(), time, type: 'checkpoint', actor: null, source: null, connection: null, session_id: null, data: { seq: head!.seq, hash: head!.hash } }
        : { id: randomUUID(), time, type: 'config.loaded', actor: alice, source: null, connection: null, session_id: null, data: {} };
      sealed.push(...(await store.appendEvents([draft])));
    }
    return store;
  }
  const minute = (i: number) => new Date(Date.parse('2026-03-03T00:00:00Z') + i * 60_000).toISOString();

  it('starts at the head the newest checkpoint before the range names, and ends at the first checkpoint after it', async () => {
    //            1    2    3    4    5    6    7    8    9
    const store = await storeWith(['e', 'c', 'e', 'c', 'e', 'e', 'c', 'e', 'c']);
    expect(await computeSpan(store, { since: minute(4), until: minute(6) }, 9)).toEqual({ first_seq: 3, last_seq: 7, start_checkpoint: 4 });
    // From genesis when no checkpoint precedes the range.
    expect(await computeSpan(store, { since: minute(0), until: minute(1) }, 9)).toEqual({ first_seq: 1, last_seq: 2, start_checkpoint: null });
    // The bound caps the range: events after it are the next export's.
    expect(await computeSpan(store, { since: minute(4), until: minute(60) }, 7)).toEqual({ first_seq: 3, last_seq: 7, start_checkpoint: 4 });
    // A checkpoint that is the range's last event ends the span itself.
    expect(await computeSpan(store, { since: minute(6), until: minute(7) }, 9)).toEqual({ first_seq: 3, last_seq: 7, start_checkpoint: 4 });
    await store.close();
  });

  it('an empty range still has a span: anchor to anchor', async () => {
    const store = await storeWith(['e', 'c', 'e', 'c', 'e'], [minute(0), minute(1), minute(2), minute(3), minute(30)]);
    expect(await computeSpan(store, { since: minute(10), until: minute(20) }, 4)).toEqual({ first_seq: 3, last_seq: 4, start_checkpoint: 4 });
    // The range is found from checkpoints well outside it (by the time index), not by scanning from seq 1.
    expect(await rangeSeqs(store, { since: minute(10), until: minute(20) }, 4)).toEqual({ after: 4, before: 5 });
    expect(await rangeSeqs(store, { since: minute(0), until: minute(1) }, 4)).toEqual({ after: 0, before: 5 });
    expect(await computeSpan(store, { since: '2020-01-01T00:00:00.000Z', until: '2020-01-02T00:00:00.000Z' }, 4)).toEqual({ first_seq: 1, last_seq: 2, start_checkpoint: null });
    await store.close();
  });
});

describe('reading with bounded memory', () => {
  /** A store of `n` events whose statements weigh `bytes(seq)`, recording the page sizes asked for. */
  function fakeStore(n: number, bytes: (seq: number) => number) {
    const limits: number[] = [];
    const payloadCalls: number[][] = [];
    const store = {
      async readEvents(f: { afterSeq?: number; beforeSeq?: number; limit?: number }) {
        limits.push(f.limit!);
        const out: AuditEvent[] = [];
        for (let s = (f.afterSeq ?? 0) + 1; s < Math.min(f.beforeSeq ?? Infinity, n + 1) && out.length < f.limit!; s++) {
          out.push({ ...sealedLike({ seq: s, data: { statement: 'x'.repeat(bytes(s)), bytes: 1_000_000 } }), payload_sha256: 'c'.repeat(64) });
        }
        return out;
      },
      async readPayloads(seqs: readonly number[]) {
        payloadCalls.push([...seqs]);
        return new Map(seqs.map((s) => [s, { 'result.sets': [s] }]));
      },
    };
    return { store, limits, payloadCalls };
  }

  it('payloads come a few at a time, bounded by what their events say they weigh', async () => {
    // 300 small events, then 200 whose results were a megabyte each (a hostile session's statements), then small again.
    const { store, payloadCalls } = fakeStore(2000, () => 10);
    const page = await store.readEvents({ afterSeq: 0, limit: 2000 });
    for (const e of page) e.data['bytes'] = e.seq > 300 && e.seq <= 500 ? 1_000_000 : 10;
    let seen = 0;
    for await (const { event, payload } of withPayloads(store, page, (e) => e.seq % 2 === 0)) {
      expect(event.seq).toBe(++seen);
      expect(payload).toEqual(event.seq % 2 === 0 ? { 'result.sets': [event.seq] } : undefined);
    }
    expect(seen).toBe(2000);
    // Each payload batch is at most 16 events and about 16 MiB by the events' own byte counts.
    expect(Math.max(...payloadCalls.map((c) => c.length))).toBe(16);
    expect(payloadCalls.filter((c) => c.every((s) => s > 300 && s <= 500)).every((c) => c.length <= 8)).toBe(true);
    expect(payloadCalls.flat()).toEqual(Array.from({ length: 1000 }, (_, i) => 2 * (i + 1)));
  });

  it("reads the store's byte-bounded pages, asking for the seqs and times wanted", async () => {
    const { store } = fakeStore(3000, () => 10);
    const asked: { afterSeq?: number; beforeSeq?: number; until?: string; limit: number; maxBytes: number }[] = [];
    const paged = {
      ...store,
      async readEventPage(p: { afterSeq?: number; beforeSeq?: number; until?: string; limit: number; maxBytes: number }) {
        asked.push(p);
        if (p.until !== undefined && p.until < '2026-01-01') return { events: [], next: null };
        const events = await store.readEvents({ afterSeq: p.afterSeq, beforeSeq: p.beforeSeq, limit: 100 });
        return { events, next: events.length === 100 ? events.at(-1)!.seq : null };
      },
    };
    const seqs: number[] = [];
    for await (const page of readPages(paged, { afterSeq: 150, beforeSeq: 420, since: '2026-01-01T00:00:00.000Z', until: '2027-01-01T00:00:00.000Z' })) seqs.push(...page.map((e) => e.seq));
    expect(seqs).toEqual(Array.from({ length: 269 }, (_, i) => 151 + i));
    expect(asked.map((p) => p.afterSeq)).toEqual([150, 250, 350]);
    expect(asked.every((p) => p.beforeSeq === 420 && p.maxBytes === 8 * 1024 * 1024 && p.limit === 1000)).toBe(true);
    const none: number[] = [];
    for await (const page of readPages(paged, { afterSeq: 0, beforeSeq: 50, until: '2020-01-01T00:00:00.000Z' })) none.push(...page.map((e) => e.seq));
    expect(none).toEqual([]);
  });
});
