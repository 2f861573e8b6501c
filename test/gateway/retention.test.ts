/**
 * Audit retention (issue 9, "Retention") on a real gateway, with a log it recorded itself from
 * statements through the tunnel: the job's clock is moved forward (GatewayOptions.retention.now)
 * instead of waiting 400 days. Payloads of old statements go and the chain still verifies, they
 * read as pruned (API and `hoop sessions show`); then a prefix of old events goes, up to the head
 * a signed checkpoint vouches for, and verification accepts the new start because the log itself
 * records the pruning; tampering afterwards is still caught. On SQLite and PostgreSQL.
 */
import { randomBytes } from 'node:crypto';
import Database from 'better-sqlite3';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, test } from 'vitest';
import type { AuditEvent } from '../../src/audit/event.js';
import { verifyStore } from '../../src/audit/verify.js';
import { childEnv, runBin } from '../cli/helpers.js';
import { bankConnection, startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { until } from '../helpers/poll.js';
import { tunnelClient } from './ws-client.js';

const upstream = inject('upstream');
const DAY = 86_400_000;

interface Backend {
  name: string;
  /** A store URL (undefined: the helper's SQLite file) and raw SQL on it, past the Store interface. */
  open(): Promise<{ url: string | undefined; sql(gw: TestGateway, statement: string): Promise<void>; unguard: string[]; close(): Promise<void> }>;
}

const backends: Backend[] = [
  {
    name: 'SQLite',
    open: async () => ({
      url: undefined,
      async sql(gw, statement) {
        const db = new Database(`${gw.dir}/hoop.db`);
        try {
          db.exec(statement);
        } finally {
          db.close();
        }
      },
      unguard: ['DROP TRIGGER events_no_update', 'DROP TRIGGER events_no_delete'],
      close: async () => {},
    }),
  },
  {
    name: 'PostgreSQL',
    open: async () => {
      const database = `hoop_retention_${randomBytes(6).toString('hex')}`;
      const admin = new pg.Client({ host: upstream.host, port: upstream.port, user: upstream.users.trust, database: upstream.database });
      await admin.connect();
      await admin.query(`CREATE DATABASE ${database}`).finally(() => admin.end());
      const url = `postgres://${upstream.users.trust}@${upstream.host}:${upstream.port}/${database}`;
      return {
        url,
        async sql(_gw, statement) {
          const c = new pg.Client({ connectionString: url });
          await c.connect();
          await c.query(statement).finally(() => c.end());
        },
        unguard: ['ALTER TABLE events DISABLE TRIGGER events_append_only'],
        close: async () => {},
      };
    },
  },
];

describe.each(backends)('audit retention on a $name store', ({ open }) => {
  let gw: TestGateway;
  let raw: Awaited<ReturnType<Backend['open']>>;
  let clock = Date.now();
  let oldSession: string;
  let newSession: string;
  /** A time after every event of the old part and before every event of the new one. */
  let middle: number;
  let firstCheckpoint: AuditEvent;

  const events = () => gw.store.readEvents({ payload: false });
  const prunedRecords = async () => (await gw.store.readEvents({ types: ['audit.pruned'] })).map((e) => e.data);

  /** A session of two statements that return rows, and a checkpoint that covers its end. */
  async function session(tag: string): Promise<{ id: string; checkpoint: AuditEvent }> {
    const from = (await gw.store.head())?.seq ?? 0;
    const client = await tunnelClient(gw.url, 'bank', gw.keys['bob']!);
    await client.query(`SELECT '${tag}' || g AS v FROM generate_series(1, 3) g`);
    await client.query(`SELECT '${tag}-second' AS v`);
    await client.end();
    const end = await until(async () => (await events()).find((e) => e.type === 'session.end' && e.seq > from), { timeoutMs: 10_000 });
    const checkpoint = await until(async () => (await events()).find((e) => e.type === 'checkpoint' && Number(e.data['seq']) >= end.seq), { timeoutMs: 10_000 });
    return { id: end.session_id!, checkpoint };
  }

  beforeAll(async () => {
    raw = await open();
    gw = await startTestGateway({
      upstream,
      ...(raw.url ? { store: raw.url } : {}),
      connections: [bankConnection(upstream)],
      config: { audit: { payload_limit: '1MiB', checkpoint_interval: '1s', retention: { payloads: '400d', events: '7y' } } },
      // Runs only when the test says; its clock is the test's.
      retention: { intervalMs: 3_600_000, now: () => clock },
    });
    // A run now finds nothing that old.
    expect(await gw.retention!.run()).toEqual({ payloads: null, events: null });
    const old = await session('old');
    oldSession = old.id;
    firstCheckpoint = old.checkpoint;
    middle = Date.parse(old.checkpoint.time) + 1;
    await until(() => Date.now() > middle + 1);
    newSession = (await session('new')).id;
    expect(await prunedRecords()).toEqual([]);
  }, 60_000);
  afterAll(async () => {
    await gw?.close();
    await raw?.close();
  });

  test('payloads older than audit.retention.payloads go, recorded; the chain verifies; readers say pruned', async () => {
    clock = middle + 400 * DAY;
    const before = new Date(middle).toISOString();
    const withPayload = (await events()).filter((e) => e.payload_sha256 !== undefined);
    const old = withPayload.filter((e) => e.time < before);
    expect(old.length).toBeGreaterThanOrEqual(2);
    const outcome = await gw.retention!.run();
    expect(outcome.payloads).toEqual({ kind: 'payloads', before, count: old.length, first_seq: old[0]!.seq, last_seq: old.at(-1)!.seq });
    expect(outcome.events).toBeNull(); // nothing is 7 years old
    // Recorded by the gateway itself.
    const [record] = await gw.store.readEvents({ types: ['audit.pruned'] });
    expect(record).toMatchObject({ actor: { subject: 'system:gateway' }, data: outcome.payloads });
    // Old payloads read as pruned, new ones are intact; the chain verifies and counts them.
    const after = await gw.store.readEvents({});
    for (const e of after.filter((x) => x.payload_sha256 !== undefined)) expect(e.payload === null, `seq ${e.seq}`).toBe(e.time < before);
    const report = await verifyStore(gw.store);
    expect(report).toMatchObject({ ok: true, payloads_pruned: old.length });
    expect(report).not.toHaveProperty('pruned_start');
    // A second run finds nothing new, and records nothing.
    expect((await gw.retention!.run()).payloads).toBeNull();
    expect(await prunedRecords()).toHaveLength(1);
    // The API serves the event with payload null; hoop sessions show says why the rows are missing.
    const env = childEnv({ HOOP_GATEWAY: gw.url, HOOP_TOKEN: gw.keys['root']! });
    const shownOld = await runBin(['sessions', 'show', oldSession], env);
    expect(shownOld.stderr).toBe('');
    expect(shownOld.stdout).toContain("SELECT 'old' || g AS v");
    expect(shownOld.stdout).toContain('returned data: pruned by audit retention');
    expect(shownOld.stdout).not.toContain('old1');
    const shownNew = await runBin(['sessions', 'show', newSession], env);
    expect(shownNew.stdout).toContain('new1');
    expect(shownNew.stdout).not.toContain('pruned by audit retention');
  });

  test('events older than audit.retention.events go up to a checkpointed head; the log verifies from there; tampering is still caught', async () => {
    clock = middle + 7 * 365 * DAY;
    const start = Number(firstCheckpoint.data['seq']);
    const outcome = await gw.retention!.run();
    expect(outcome.events).toEqual({
      kind: 'events', before: new Date(middle).toISOString(), count: start - 1, first_seq: 1, last_seq: start - 1, new_first_seq: start, anchor_checkpoint_seq: firstCheckpoint.seq,
    });
    const left = await events();
    expect(left[0]!.seq).toBe(start);
    expect(left.some((e) => e.seq === firstCheckpoint.seq)).toBe(true); // the anchor stays
    // The record went in before the delete, so it is in the log that remains.
    const records = await gw.store.readEvents({ types: ['audit.pruned'] });
    const record = records.find((e) => e.data['kind'] === 'events')!;
    expect(record.data).toEqual(outcome.events);
    const report = await verifyStore(gw.store, { pageSize: 7 });
    expect(report).toMatchObject({ ok: true, first_seq: start, pruned_start: { first_seq: start, pruned_event_seq: record.seq, checkpoint_seq: firstCheckpoint.seq } });
    expect(report.checkpoints).toBeGreaterThanOrEqual(2);
    // The old session is gone from the listing; the new one is whole.
    const sessions = (await gw.store.listSessions({})).map((s) => s.id);
    expect(sessions).toContain(newSession);
    expect(sessions).not.toContain(oldSession);
    // Nothing more to do: no second record.
    expect((await gw.retention!.run()).events).toBeNull();
    expect((await prunedRecords()).filter((d) => d['kind'] === 'events')).toHaveLength(1);
    // Without the guard (an administrator), deleting one more event at the front is caught...
    for (const statement of raw.unguard) await raw.sql(gw, statement);
    await raw.sql(gw, `DELETE FROM events WHERE seq = ${start}`);
    expect(await verifyStore(gw.store)).toMatchObject({ ok: false, failure: { seq: start + 1, reason: expect.stringMatching(/no audit.pruned event/) } });
    // ...retention refuses to build on that start...
    clock += DAY;
    expect((await gw.retention!.run()).events).toBeNull();
    // ...and so is an edit of a remaining event.
    const edited = left.find((e) => e.type === 'query.start' && e.session_id === newSession)!;
    await raw.sql(gw, `UPDATE events SET connection = 'elsewhere' WHERE seq = ${edited.seq}`);
    expect(await verifyStore(gw.store)).toMatchObject({ ok: false, failure: { seq: edited.seq, reason: expect.stringMatching(/hash mismatch/) } });
  });
});
