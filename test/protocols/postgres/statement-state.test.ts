/**
 * Security: the statement recorded in query.start for an Execute must be the one the server runs.
 * The engine predicts the server's prepared statements and portals from the client's messages;
 * a client must not be able to make that prediction wrong (a redefinition the server refuses,
 * messages the server skips after an error until Sync, several Sync segments in one write).
 */
import { connect, type Socket } from 'node:net';
import pg from 'pg';
import { serialize } from 'pg-protocol';
import { Parser } from 'pg-protocol/dist/parser.js';
import { afterAll, beforeAll, beforeEach, describe, expect, inject, it } from 'vitest';
import { startHarness, until, upstreamConfig, type Harness } from './engine-harness.js';

const upstream = inject('upstream');

class Raw {
  messages: { name: string }[] = [];
  private parser = new Parser();
  constructor(readonly socket: Socket) {
    socket.on('data', (d) => this.parser.parse(d, (m) => this.messages.push(m as { name: string })));
    socket.on('error', () => {});
  }
  static async open(port: number): Promise<Raw> {
    const socket = connect(port, '127.0.0.1');
    await new Promise((r) => socket.once('connect', r));
    const c = new Raw(socket);
    socket.write(serialize.startup({ user: 'raw', database: 'raw' }));
    await c.ready(1);
    return c;
  }
  /** Waits until `n` ReadyForQuery have arrived in total. */
  async ready(n: number): Promise<void> {
    await until(() => this.messages.filter((m) => m.name === 'readyForQuery').length >= n, 10_000);
  }
  /** Waits until the gateway has read every byte written so far: what is written next reaches it as a chunk of its own. */
  async taken(h: Harness): Promise<void> {
    const side = await until(() => h.accepted(this.socket.localPort!));
    await until(() => side.bytesRead === this.socket.bytesWritten, { what: 'the gateway reading what was written' });
  }
}

const INSERT = 'insert into sec_state values (1)';
let h: Harness;
let db: pg.Client;
beforeAll(async () => {
  h = await startHarness({ upstream: upstreamConfig(upstream) });
  db = new pg.Client(upstreamConfig(upstream));
  await db.connect();
  await db.query('DROP TABLE IF EXISTS sec_state; CREATE TABLE sec_state (id int)');
});
beforeEach(async () => {
  await db.query('TRUNCATE sec_state');
});
afterAll(async () => {
  await h?.close();
  await db?.end();
});

async function rowsInTable(): Promise<number> {
  return (await db.query<{ n: number }>('select count(*)::int as n from sec_state')).rows[0]!.n;
}

/** The statement recorded for the last Execute, once it has ended. */
async function lastExecuteRecorded(): Promise<{ statement: string; outcome: string }> {
  const start = await until(() => h.starts().filter((s) => s.protocol === 'extended').at(-1));
  const end = await until(() => h.ends().find((e) => e.queryId === start.queryId));
  return { statement: start.statement, outcome: end.outcome };
}

describe('the recorded statement is the one that runs', () => {
  it('a named statement redefinition that the server refuses does not change the record', async () => {
    const raw = await Raw.open(h.port);
    raw.socket.write(Buffer.concat([serialize.parse({ name: 'sx1', text: INSERT }), serialize.sync()]));
    await raw.ready(2);
    // The server answers "prepared statement sx1 already exists" and keeps the INSERT.
    raw.socket.write(Buffer.concat([serialize.parse({ name: 'sx1', text: 'select 2' }), serialize.sync()]));
    await raw.ready(3);
    raw.socket.write(Buffer.concat([serialize.bind({ statement: 'sx1' }), serialize.execute({}), serialize.sync()]));
    await raw.ready(4);
    expect(await rowsInTable()).toBe(1);
    expect(await lastExecuteRecorded()).toEqual({ statement: INSERT, outcome: 'ok' });
    raw.socket.end(serialize.end());
  });

  it('a Parse the server skips after an error (until Sync) does not change the record', async () => {
    const raw = await Raw.open(h.port);
    raw.socket.write(Buffer.concat([serialize.parse({ text: INSERT }), serialize.sync()]));
    await raw.ready(2);
    raw.socket.write(Buffer.concat([
      serialize.parse({ name: 'broken', text: 'selec nonsense' }), // error: the rest is skipped
      serialize.parse({ text: 'select 3' }),
      serialize.sync(),
    ]));
    await raw.ready(3);
    raw.socket.write(Buffer.concat([serialize.bind({}), serialize.execute({}), serialize.sync()]));
    await raw.ready(4);
    expect(await rowsInTable()).toBe(1);
    expect(await lastExecuteRecorded()).toEqual({ statement: INSERT, outcome: 'ok' });
    raw.socket.end(serialize.end());
  });

  it('a Close the server skips after an error does not hide the statement', async () => {
    const raw = await Raw.open(h.port);
    raw.socket.write(Buffer.concat([serialize.parse({ name: 'sx2', text: INSERT }), serialize.sync()]));
    await raw.ready(2);
    raw.socket.write(Buffer.concat([
      serialize.parse({ name: 'broken2', text: 'selec nonsense' }),
      serialize.close({ type: 'S', name: 'sx2' }),
      serialize.sync(),
    ]));
    await raw.ready(3);
    raw.socket.write(Buffer.concat([serialize.bind({ statement: 'sx2' }), serialize.execute({}), serialize.sync()]));
    await raw.ready(4);
    expect(await rowsInTable()).toBe(1);
    expect(await lastExecuteRecorded()).toEqual({ statement: INSERT, outcome: 'ok' });
    raw.socket.end(serialize.end());
  });

  it('a portal rebind the server refuses inside a transaction does not change the record', async () => {
    const raw = await Raw.open(h.port);
    raw.socket.write(Buffer.concat([
      serialize.query('begin'),
      serialize.parse({ name: 'ins', text: INSERT }),
      serialize.parse({ name: 'sel', text: 'select 4' }),
      serialize.bind({ statement: 'ins', portal: 'pp' }),
      serialize.sync(),
    ]));
    await raw.ready(3);
    // "cursor pp already exists": the server keeps the INSERT portal (and aborts the transaction,
    // so take the savepoint-free path: the Execute below then fails, and must not be recorded as the SELECT).
    raw.socket.write(Buffer.concat([serialize.bind({ statement: 'sel', portal: 'pp' }), serialize.sync()]));
    await raw.ready(4);
    raw.socket.write(Buffer.concat([serialize.execute({ portal: 'pp' }), serialize.sync()]));
    await raw.ready(5);
    const recorded = await lastExecuteRecorded();
    expect(recorded.statement).toBe(INSERT);
    raw.socket.end(serialize.end());
  });

  it('several Sync segments in one write: the Execute is recorded after the earlier segments are answered', async () => {
    const raw = await Raw.open(h.port);
    raw.socket.write(Buffer.concat([
      serialize.parse({ text: INSERT }),
      serialize.sync(),
      serialize.parse({ name: 'broken3', text: 'selec nonsense' }),
      serialize.parse({ text: 'select 5' }),
      serialize.sync(),
      serialize.bind({}),
      serialize.execute({}),
      serialize.sync(),
    ]));
    await raw.ready(4);
    expect(await rowsInTable()).toBe(1);
    expect(await lastExecuteRecorded()).toEqual({ statement: INSERT, outcome: 'ok' });
    raw.socket.end(serialize.end());
  });

  it('a failed unnamed Parse drops the unnamed statement, as the server does', async () => {
    const raw = await Raw.open(h.port);
    raw.socket.write(Buffer.concat([serialize.parse({ text: 'select 6' }), serialize.sync()]));
    await raw.ready(2);
    raw.socket.write(Buffer.concat([serialize.parse({ text: 'selec nonsense' }), serialize.sync()]));
    await raw.ready(3);
    raw.socket.write(Buffer.concat([serialize.bind({}), serialize.execute({}), serialize.sync()]));
    await raw.ready(4);
    // The server has no unnamed statement any more: the Bind fails and nothing runs.
    expect(raw.messages.filter((m) => m.name === 'error')).toHaveLength(2);
    const recorded = await lastExecuteRecorded();
    expect(recorded).toEqual({ statement: '', outcome: 'error' });
    raw.socket.end(serialize.end());
  });
});

describe('named statements can run through SQL EXECUTE', () => {
  it('a named Parse is recorded (write-ahead) with its SQL, so EXECUTE <name> in a simple Query is traceable', async () => {
    const raw = await Raw.open(h.port);
    raw.socket.write(Buffer.concat([serialize.parse({ name: 'hidden', text: INSERT }), serialize.sync()]));
    await raw.ready(2);
    raw.socket.write(serialize.query('EXECUTE hidden'));
    await raw.ready(3);
    expect(await rowsInTable()).toBe(1);
    const recorded = h.starts().find((s) => s.statementName === 'hidden' && s.portal === null);
    expect(recorded).toMatchObject({ protocol: 'extended', statement: INSERT });
    const end = await until(() => h.ends().find((e) => e.queryId === recorded!.queryId));
    expect(end.outcome).toBe('ok');
    raw.socket.end(serialize.end());
  });

  it('a named Parse that cannot be recorded is not sent: EXECUTE finds no statement', async () => {
    const raw = await Raw.open(h.port);
    h.queryStart = async (s) => {
      if (s.statementName === 'unrecorded') throw new (await import('../../../src/errors.js')).AuditUnavailableError('store down');
    };
    try {
      raw.socket.write(Buffer.concat([serialize.parse({ name: 'unrecorded', text: INSERT }), serialize.sync()]));
      await raw.ready(2);
      expect(raw.messages.filter((m) => m.name === 'error')).toHaveLength(1);
    } finally {
      h.queryStart = async () => {};
    }
    raw.socket.write(serialize.query('EXECUTE unrecorded'));
    await raw.ready(3);
    expect(raw.messages.filter((m) => m.name === 'error')).toHaveLength(2);
    expect(await rowsInTable()).toBe(0);
    raw.socket.end(serialize.end());
  });
});

describe('fastpath FunctionCall', () => {
  it('of a function hoop cannot name is refused: recorded with its arguments, nothing runs', async () => {
    const raw = await Raw.open(h.port);
    const args = [Buffer.from('2'), Buffer.from('40')];
    const body = Buffer.concat([
      Buffer.from([0, 0, 0, 177]), // int4pl
      Buffer.from([0, 1, 0, 0]), // one format code: text
      Buffer.from([0, 2]),
      ...args.flatMap((a) => [Buffer.from([0, 0, 0, a.length]), a]),
      Buffer.from([0, 0]), // result in text
    ]);
    const head = Buffer.alloc(5);
    head[0] = 0x46; // 'F'
    head.writeInt32BE(body.length + 4, 1);
    raw.socket.write(Buffer.concat([head, body]));
    await raw.ready(2);
    const recorded = h.starts().find((s) => s.statement === '-- FunctionCall oid 177 (not a known builtin)');
    expect(recorded?.parameters).toEqual(['2', '40']);
    const end = await until(() => h.ends().find((e) => e.queryId === recorded!.queryId));
    expect(end).toMatchObject({ outcome: 'refused', error: { code: '42501', message: expect.stringMatching(/function OID 177/) } });
    expect(raw.messages.find((m) => m.name === 'error')).toMatchObject({ code: '42501' });
    raw.socket.end(serialize.end());
  });
});

describe('Bind plans the statement, and planning can run functions', () => {
  const FN = `create or replace function sec_plan_leak() returns int language plpgsql immutable as $$
    begin raise notice 'leaked %', (select count(*) from sec_state); return 1; end $$`;

  it('a Bind that is not executed right away is recorded before it is sent', async () => {
    await db.query(FN);
    const raw = await Raw.open(h.port);
    raw.socket.write(Buffer.concat([serialize.parse({ text: 'select sec_plan_leak()' }), serialize.bind({}), serialize.sync()]));
    await raw.ready(2);
    expect(raw.messages.some((m) => m.name === 'notice')).toBe(true); // the function ran at Bind
    const recorded = h.starts().find((s) => s.statement === 'select sec_plan_leak()');
    expect(recorded).toMatchObject({ protocol: 'extended', portal: '' });
    expect((await until(() => h.ends().find((e) => e.queryId === recorded!.queryId))).outcome).toBe('ok');
    raw.socket.end(serialize.end());
  });

  it('if that record cannot be made, the Bind is not sent and nothing runs', async () => {
    await db.query(FN);
    const raw = await Raw.open(h.port);
    h.queryStart = async (s) => {
      if (s.statement === 'select sec_plan_leak() as refused') throw new (await import('../../../src/errors.js')).AuditUnavailableError('store down');
    };
    try {
      raw.socket.write(Buffer.concat([serialize.parse({ text: 'select sec_plan_leak() as refused' }), serialize.bind({}), serialize.sync()]));
      await raw.ready(2);
    } finally {
      h.queryStart = async () => {};
    }
    expect(raw.messages.some((m) => m.name === 'notice')).toBe(false);
    expect(raw.messages.filter((m) => m.name === 'error')).toHaveLength(1);
    raw.socket.end(serialize.end());
  });

  it('Bind, Describe and Execute written apart (as node-postgres does) are still one record', async () => {
    const raw = await Raw.open(h.port);
    const pause = () => raw.taken(h);
    raw.socket.write(serialize.parse({ text: 'select 78 as apart' }));
    await pause();
    raw.socket.write(serialize.bind({}));
    await pause();
    raw.socket.write(serialize.describe({ type: 'P', name: '' }));
    await pause();
    const execute = serialize.execute({});
    raw.socket.write(execute.subarray(0, 3)); // even an Execute split across chunks
    await pause();
    raw.socket.write(Buffer.concat([execute.subarray(3), serialize.sync()]));
    await raw.ready(2);
    expect(raw.messages.filter((m) => m.name === 'dataRow')).toHaveLength(1);
    expect(h.starts().filter((s) => s.statement === 'select 78 as apart').map((s) => s.portal)).toEqual(['']);
    raw.socket.end(serialize.end());
  });

  it('Bind with Execute right behind it (what drivers send) is recorded once, as the Execute', async () => {
    const raw = await Raw.open(h.port);
    raw.socket.write(Buffer.concat([
      serialize.parse({ text: 'select 77 as once' }),
      serialize.bind({}),
      serialize.describe({ type: 'P', name: '' }),
      serialize.execute({}),
      serialize.sync(),
    ]));
    await raw.ready(2);
    expect(h.starts().filter((s) => s.statement === 'select 77 as once')).toHaveLength(1);
    raw.socket.end(serialize.end());
  });
});

describe('a refused Execute', () => {
  it('does not send the Bind it covers either (planning would run functions unrecorded)', async () => {
    await db.query(`create or replace function sec_plan_leak() returns int language plpgsql immutable as $$
      begin raise notice 'leaked %', (select count(*) from sec_state); return 1; end $$`);
    const raw = await Raw.open(h.port);
    h.queryStart = async (s) => {
      if (s.statement === 'select sec_plan_leak() as covered') throw new (await import('../../../src/errors.js')).AuditUnavailableError('store down');
    };
    try {
      raw.socket.write(Buffer.concat([
        serialize.parse({ text: 'select sec_plan_leak() as covered' }),
        serialize.bind({}),
        serialize.describe({ type: 'P', name: '' }),
        serialize.execute({}),
        serialize.sync(),
      ]));
      await raw.ready(2);
    } finally {
      h.queryStart = async () => {};
    }
    expect(raw.messages.some((m) => m.name === 'notice')).toBe(false);
    const errors = raw.messages.filter((m) => m.name === 'error') as unknown as { message: string }[];
    expect(errors.map((e) => e.message)).toEqual(['hoop: statement refused: audit log unavailable']);
    const start = h.starts().find((s) => s.statement === 'select sec_plan_leak() as covered')!;
    expect((await until(() => h.ends().find((e) => e.queryId === start.queryId))).outcome).toBe('refused');
    // the session is still usable
    raw.socket.write(serialize.query('select 1'));
    await raw.ready(3);
    raw.socket.end(serialize.end());
  });
});

describe('carrying a Bind until its Execute', () => {
  it('is bounded: a Bind followed by Describes trickled one per chunk is recorded, not carried forever', async () => {
    const raw = await Raw.open(h.port);
    raw.socket.write(serialize.parse({ text: 'select 79 as trickled' }));
    raw.socket.write(serialize.bind({}));
    for (let k = 0; k < 12; k++) {
      await raw.taken(h);
      raw.socket.write(serialize.describe({ type: 'P', name: '' }));
    }
    // recorded (as a Bind) before any Execute or Sync was sent
    await until(() => h.starts().find((s) => s.statement === 'select 79 as trickled'));
    raw.socket.write(Buffer.concat([serialize.execute({}), serialize.sync()]));
    await raw.ready(2);
    expect(h.starts().filter((s) => s.statement === 'select 79 as trickled')).toHaveLength(2);
    raw.socket.end(serialize.end());
  });
});

describe('client encodings the record cannot follow', () => {
  it('a StartupMessage asking for SJIS is refused before anything reaches the server', async () => {
    const socket = connect(h.port, '127.0.0.1');
    await new Promise((r) => socket.once('connect', r));
    const raw = new Raw(socket);
    // (pg-protocol's serializer always appends client_encoding UTF8, so the packet is built here)
    const body = Buffer.from('\0\x03\0\0user\0raw\0database\0raw\0client_encoding\0Shift_JIS\0\0', 'latin1');
    const len = Buffer.alloc(4);
    len.writeInt32BE(body.length + 4);
    socket.write(Buffer.concat([len, body]));
    await until(() => raw.messages.find((m) => m.name === 'error'));
    expect((raw.messages.find((m) => m.name === 'error') as unknown as { message: string }).message).toMatch(/client_encoding Shift_JIS is not supported through hoop/);
    socket.destroy();
  });

  it('SET client_encoding to SJIS ends the session with a FATAL', async () => {
    const raw = await Raw.open(h.port);
    let closed = false;
    raw.socket.once('close', () => (closed = true));
    raw.socket.write(serialize.query(`SET client_encoding TO 'SJIS'`));
    await until(() => raw.messages.find((m) => m.name === 'error'));
    expect(raw.messages.find((m) => m.name === 'error')).toMatchObject({ severity: 'FATAL', message: expect.stringMatching(/client_encoding SJIS is not supported/) });
    await until(() => closed);
    expect(h.sessionEnds().at(-1)).toMatchObject({ reason: 'protocol-error' });
  });
});

describe('SQL PREPARE / DEALLOCATE behind the protocol', () => {
  it('an Execute of a name redefined by SQL is not recorded as the old Parse text', async () => {
    const raw = await Raw.open(h.port);
    raw.socket.write(Buffer.concat([serialize.parse({ name: 'sqlp', text: 'select 1' }), serialize.sync()]));
    await raw.ready(2);
    raw.socket.write(serialize.query(`DEALLOCATE sqlp; PREPARE sqlp AS ${INSERT}`));
    await raw.ready(3);
    raw.socket.write(Buffer.concat([serialize.bind({ statement: 'sqlp' }), serialize.execute({}), serialize.sync()]));
    await raw.ready(4);
    expect(await rowsInTable()).toBe(1);
    const recorded = await lastExecuteRecorded();
    expect(recorded.statement).not.toBe('select 1');
    expect(recorded.statement).toMatch(/prepared statement "sqlp": unknown \(SQL in this session may have replaced it/);
    raw.socket.end(serialize.end());
  });

  it('a name only SQL PREPARE defined is marked unknown too, and a later Parse is known again', async () => {
    const raw = await Raw.open(h.port);
    raw.socket.write(serialize.query(`PREPARE onlysql AS ${INSERT}`));
    await raw.ready(2);
    raw.socket.write(Buffer.concat([serialize.bind({ statement: 'onlysql' }), serialize.execute({}), serialize.sync()]));
    await raw.ready(3);
    expect((await lastExecuteRecorded()).statement).toMatch(/prepared statement "onlysql": unknown/);
    raw.socket.write(Buffer.concat([serialize.parse({ name: 'fresh', text: 'select 81' }), serialize.bind({ statement: 'fresh' }), serialize.execute({}), serialize.sync()]));
    await raw.ready(4);
    expect((await lastExecuteRecorded()).statement).toBe('select 81');
    raw.socket.end(serialize.end());
  });
});
