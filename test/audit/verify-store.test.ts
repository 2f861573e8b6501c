/**
 * verifyStore against the SQLite and PostgreSQL stores themselves, played with as an
 * administrator who dropped the append-only triggers would: an edited, deleted, swapped or
 * inserted event, an edited payload, and the tail cut past a checkpoint (caught against the
 * checkpoint kept elsewhere, `expectedHead`) are each caught at the right seq; a pruned payload
 * is reported as pruned, not as tampering.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import pg from 'pg';
import { afterAll, describe, expect, inject, test } from 'vitest';
import { sealEvent } from '../../src/audit/chain.js';
import type { AuditEvent, UnsealedEvent } from '../../src/audit/event.js';
import { verifyStore } from '../../src/audit/verify.js';
import { openStore } from '../../src/store/index.js';
import type { Store } from '../../src/store/store.js';
import { ALICE, checkpointData, newKey } from '../helpers/bundle.js';

const upstream = inject('upstream');
const dir = mkdtempSync(join(tmpdir(), 'hoop-verify-store-'));
const databases: string[] = [];
const pgAdmin = () => new pg.Client({ host: upstream.host, port: upstream.port, user: upstream.users.trust, database: upstream.database });
const pgUrl = (db: string) => `postgres://${upstream.users.trust}@${upstream.host}:${upstream.port}/${db}`;

afterAll(async () => {
  rmSync(dir, { recursive: true, force: true });
  if (databases.length === 0) return;
  const c = pgAdmin();
  await c.connect();
  for (const name of databases) await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
  await c.end();
});

interface Backend {
  name: 'sqlite' | 'postgres';
  open(): Promise<{ store: Store; sql(statement: string): Promise<void> }>;
  dropGuards: string[];
}

const backends: Backend[] = [
  {
    name: 'sqlite',
    dropGuards: ['DROP TRIGGER events_no_update', 'DROP TRIGGER events_no_delete'],
    async open() {
      const path = join(dir, `${randomUUID()}.db`);
      const store = await openStore(`sqlite:${path}`);
      return {
        store,
        async sql(statement) {
          const db = new Database(path);
          try {
            db.exec(statement);
          } finally {
            db.close();
          }
        },
      };
    },
  },
  {
    name: 'postgres',
    dropGuards: ['ALTER TABLE events DISABLE TRIGGER events_append_only'],
    async open() {
      const name = `hoop_verify_${randomBytes(6).toString('hex')}`;
      const c = pgAdmin();
      await c.connect();
      await c.query(`CREATE DATABASE ${name}`);
      await c.end();
      databases.push(name);
      const store = await openStore(pgUrl(name));
      return {
        store,
        async sql(statement) {
          const client = new pg.Client({ connectionString: pgUrl(name) });
          await client.connect();
          try {
            await client.query(statement);
          } finally {
            await client.end();
          }
        },
      };
    },
  },
];

const key = newKey();
let clock = Date.UTC(2026, 2, 3, 9, 0, 0);
function draft(over: Partial<UnsealedEvent> = {}): UnsealedEvent {
  return { id: randomUUID(), time: new Date((clock += 1000)).toISOString(), type: 'query.start', actor: ALICE, source: null, connection: 'bank', session_id: 's1', data: { statement: 'select 1' }, ...over };
}

/** 12 events: statements with payloads on every query.end, a checkpoint at 6 and one at 12. */
async function fill(store: Store): Promise<AuditEvent[]> {
  const checkpoint = async () => {
    const head = (await store.head())!;
    await store.appendEvents([draft({ type: 'checkpoint', actor: null, session_id: null, connection: null, data: checkpointData(key, head) })]);
  };
  const statement = (i: number) => [
    draft({ data: { statement: `select * from accounts where id = ${i}` } }),
    draft({ type: 'query.end', data: { rows: 1 }, payload: { 'result.sets': [{ columns: ['balance'], rows: [[`${i}.00`]], tag: 'SELECT 1', statement: 0 }] } }),
  ];
  await store.appendEvents([draft({ type: 'session.start', data: { user: 'alice' } }), ...statement(1), ...statement(2)]);
  await checkpoint();
  await store.appendEvents([...statement(3), ...statement(4), draft({ type: 'session.end', data: {} })]);
  await checkpoint();
  return store.readEvents({});
}

describe.each(backends)('verifyStore on $name', (backend) => {
  async function tampered(statements: (events: AuditEvent[]) => string[]): Promise<{ store: Store; events: AuditEvent[] }> {
    const { store, sql } = await backend.open();
    const events = await fill(store);
    for (const s of backend.dropGuards) await sql(s);
    for (const s of statements(events)) await sql(s);
    return { store, events };
  }

  test('an intact store verifies with its payloads; a pruned one is counted as pruned; a cut tail fails against a kept checkpoint', async () => {
    const { store, sql } = await backend.open();
    try {
      const events = await fill(store);
      expect(events.map((e) => e.type === 'checkpoint')).toEqual([false, false, false, false, false, true, false, false, false, false, false, true]);
      const last = events.at(-1)!;
      const head = { seq: Number(last.data['seq']), hash: String(last.data['hash']) };
      expect(await verifyStore(store, { pageSize: 5, expectedHead: head })).toMatchObject({ ok: true, events: 12, checkpoints: 2, payloads: 4, payloads_pruned: 0, key_ids: [key.id] });
      await sql('DELETE FROM event_payloads WHERE seq = 3'); // what retention does
      expect(await verifyStore(store, { pageSize: 5 })).toMatchObject({ ok: true, payloads: 3, payloads_pruned: 1 });
      // The tail past the first checkpoint cut off: a shorter chain that holds on its own ...
      for (const s of backend.dropGuards) await sql(s);
      await sql('DELETE FROM events WHERE seq > 8');
      expect(await verifyStore(store)).toMatchObject({ ok: true, events: 8 });
      // ... but not against the last checkpoint a SIEM or a bundle kept.
      expect(await verifyStore(store, { expectedHead: head })).toMatchObject({ ok: false, failure: { seq: 9, reason: `events missing: the log ends at seq 8, the expected head is seq ${head.seq}` } });
    } finally {
      await store.close();
    }
  });

  test.each([
    { what: 'an edited event', sql: () => [`UPDATE events SET connection = 'other' WHERE seq = 4`], seq: 4, reason: /hash mismatch/ },
    { what: 'a deleted event', sql: () => ['DELETE FROM events WHERE seq = 4'], seq: 5, reason: /seq gap: expected 4, found 5/ },
    {
      what: 'two events swapped (their seqs exchanged)',
      sql: () => ['UPDATE events SET seq = 1000 WHERE seq = 4', 'UPDATE events SET seq = 4 WHERE seq = 5', 'UPDATE events SET seq = 5 WHERE seq = 1000'],
      seq: 4, reason: /hash mismatch|prev link broken/,
    },
    {
      what: 'an event inserted (later seqs and payloads shifted up)',
      sql: (events: AuditEvent[]) => {
        const forged = sealEvent(draft({ data: { statement: 'select 1' } }), 4, events[2]!.hash);
        return [
          'UPDATE events SET seq = seq + 1000 WHERE seq > 3', 'UPDATE events SET seq = seq - 999 WHERE seq > 1000',
          'UPDATE event_payloads SET seq = seq + 1000 WHERE seq > 3', 'UPDATE event_payloads SET seq = seq - 999 WHERE seq > 1000',
          `INSERT INTO events (seq, id, time, type, actor, source, connection, session_id, data, prev_hash, hash)
             VALUES (4, '${forged.id}', '${forged.time}', 'query.start', '${JSON.stringify(ALICE)}', NULL, 'bank', 's1', '{"statement":"select 1"}', '${forged.prev_hash}', '${forged.hash}')`,
        ];
      },
      seq: 5, reason: /prev link broken: prev_hash does not equal the hash of seq 4/,
    },
    { what: 'an edited payload', sql: () => [`UPDATE event_payloads SET payload = '{"result.sets":[]}' WHERE seq = 5`], seq: 5, reason: /payload mismatch/ },
  ])('$what is caught', async ({ sql, seq, reason }) => {
    const { store } = await tampered(sql);
    try {
      expect(await verifyStore(store, { pageSize: 3 })).toMatchObject({ ok: false, failure: { seq, reason: expect.stringMatching(reason) } });
    } finally {
      await store.close();
    }
  });
});
