/**
 * The agent link's multiplexing (src/agent/mux.ts) over real WebSockets on loopback: streams,
 * half-close, interleaving, credit-based flow control, refusals, resets, a lost link, heartbeats,
 * and a hostile peer's frames, each of which must close the link rather than be believed.
 */
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import { afterEach, describe, expect, test } from 'vitest';
import { WebSocket, WebSocketServer } from 'ws';
import { FrameType, HEADER_BYTES, LinkLostError, MAX_FRAME, MAX_STREAMS, MuxLink, MuxRefusal, RefuseCode, STREAM_WINDOW, decodeTarget, encodeTarget, frame, type MuxLinkOptions, type MuxStream, type Target } from '../../src/agent/mux.js';
import { until } from '../helpers/poll.js';

const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const c of cleanups.splice(0)) c();
});

/** A WebSocket pair: `server` (the gateway's side) and `client` (the agent's). */
async function wsPair(clientOptions: ConstructorParameters<typeof WebSocket>[2] = {}): Promise<{ server: WebSocket; client: WebSocket }> {
  const wss = new WebSocketServer({ port: 0, host: '127.0.0.1', maxPayload: MAX_FRAME });
  await once(wss, 'listening');
  const port = (wss.address() as AddressInfo).port;
  const accepted = once(wss, 'connection') as Promise<[WebSocket]>;
  const client = new WebSocket(`ws://127.0.0.1:${port}/`, { maxPayload: MAX_FRAME, ...clientOptions });
  const [[server]] = await Promise.all([accepted, once(client, 'open')]);
  cleanups.push(() => {
    client.terminate();
    server.terminate();
    wss.close();
  });
  return { server, client };
}

/** Gateway and agent links; the agent accepts every OPEN and hands the stream to `onStream`. */
async function linkPair(o: { onStream?: (s: MuxStream, t: Target) => void; refuse?: (t: Target) => boolean; gateway?: Partial<MuxLinkOptions>; agent?: Partial<MuxLinkOptions> } = {}) {
  const { server, client } = await wsPair();
  const gateway = new MuxLink(server, { role: 'gateway', ...o.gateway });
  const agent: MuxLink = new MuxLink(client, {
    role: 'agent',
    onOpen: (id, target) => {
      if (o.refuse?.(target)) return agent.refuse(id, RefuseCode.NOT_ALLOWED, `${target.host}:${target.port} is not allowed`);
      o.onStream?.(agent.accept(id), target);
    },
    ...o.agent,
  });
  return { gateway, agent, server, client };
}

function readAll(s: MuxStream): Promise<Buffer> {
  const chunks: Buffer[] = [];
  s.on('data', (c: Buffer) => chunks.push(c));
  return new Promise((resolve, reject) => {
    s.once('end', () => resolve(Buffer.concat(chunks)));
    s.once('error', reject);
  });
}

function pattern(n: number, seed: number): Buffer {
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + seed) & 0xff;
  return b;
}

describe('streams', () => {
  test('bytes flow both ways; END half-closes each direction; a whole close sends no RESET', async () => {
    let onAgent!: (s: MuxStream) => void;
    const agentSide = new Promise<MuxStream>((resolve) => (onAgent = resolve));
    const { gateway, agent } = await linkPair({ onStream: (s) => onAgent(s) });
    const g = await gateway.open({ host: 'db.internal', port: 5432 }, 5_000);
    const a = await agentSide;
    g.end(Buffer.from('hello agent'));
    expect((await readAll(a)).toString()).toBe('hello agent');
    // The other direction is still open after the gateway's END.
    a.end(Buffer.from('hello gateway'));
    expect((await readAll(g)).toString()).toBe('hello gateway');
    await Promise.all([until(() => g.destroyed), until(() => a.destroyed)]);
    expect(g.errored).toBeNull();
    expect(a.errored).toBeNull();
    expect(gateway.size).toBe(0);
    expect(agent.size).toBe(0);
  });

  test('the gateway\'s end is a TCP socket\'s: when the database\'s side ends first, it ends too and the stream is gone on both sides', async () => {
    let onAgent!: (s: MuxStream) => void;
    const agentSide = new Promise<MuxStream>((resolve) => (onAgent = resolve));
    const { gateway, agent } = await linkPair({ onStream: (s) => onAgent(s) });
    const g = await gateway.open({ host: 'db', port: 5432 }, 5_000);
    const a = await agentSide;
    a.resume();
    a.end(Buffer.from('server hung up')); // the server closed after its last message
    expect((await readAll(g)).toString()).toBe('server hung up');
    // Nobody called g.end(): the gateway's side followed by itself, and nothing is left open.
    await Promise.all([until(() => g.destroyed), until(() => a.destroyed)]);
    expect([gateway.size, agent.size]).toEqual([0, 0]);
  });

  test('streams interleave on one link and keep their own bytes', async () => {
    const sizes = [3 * STREAM_WINDOW + 17, 1_000_001, 5];
    const { gateway } = await linkPair({ onStream: (s, t) => s.end(pattern(sizes[t.port - 1]!, t.port)) });
    const got = await Promise.all(sizes.map(async (_, i) => readAll(await gateway.open({ host: 'h', port: i + 1 }, 5_000))));
    got.forEach((b, i) => expect(b.equals(pattern(sizes[i]!, i + 1))).toBe(true));
  });

  test('a reader that stops holds the sender to one window: nothing more is sent until it reads', async () => {
    let sent = 0;
    let agentStream: MuxStream | null = null;
    const { gateway } = await linkPair({
      agent: { onBytes: (d, n) => void (d === 'sent' && (sent += n)) },
      onStream: (s, t) => {
        if (t.port !== 1) return;
        agentStream = s;
        // Writes 4 windows as fast as the link allows.
        s.end(pattern(4 * STREAM_WINDOW, 7));
      },
    });
    const g = await gateway.open({ host: 'h', port: 1 }, 5_000);
    g.pause();
    await until(() => sent >= STREAM_WINDOW);
    // Give the sender every chance to overrun: the link round-trips a few frames meanwhile.
    for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
    await gateway.open({ host: 'h', port: 2 }, 5_000).then((s) => s.destroy());
    expect(sent).toBe(STREAM_WINDOW);
    expect(agentStream!.writableLength).toBeGreaterThan(0);
    // The reader resumes: the rest arrives, intact.
    const all = readAll(g);
    g.resume();
    expect((await all).equals(pattern(4 * STREAM_WINDOW, 7))).toBe(true);
  });

  test('a slow consumer (a socket that drains slowly) gets credit only as it takes bytes', async () => {
    let inFlightMax = 0;
    let sent = 0;
    let consumed = 0;
    const total = 2 * 1024 * 1024;
    const done = new Promise<void>((resolve) => {
      void linkPair({
        agent: { onBytes: (d, n) => { if (d === 'sent') { sent += n; inFlightMax = Math.max(inFlightMax, sent - consumed); } } },
        onStream: (s) => s.end(pattern(total, 1)),
      }).then(async ({ gateway }) => {
        const g = await gateway.open({ host: 'h', port: 1 }, 5_000);
        g.pipe(new Writable({
          highWaterMark: 16 * 1024,
          write(chunk: Buffer, _e, cb) {
            consumed += chunk.length;
            setImmediate(cb);
          },
          final(cb) {
            cb();
            resolve();
          },
        }));
      });
    });
    await done;
    expect(consumed).toBe(total);
    // In flight never exceeds the window plus what Node's own buffers between push and write hold.
    expect(inFlightMax).toBeLessThanOrEqual(STREAM_WINDOW + 2 * 64 * 1024);
  });

  test('a refused OPEN rejects with the agent\'s code and reason', async () => {
    const { gateway } = await linkPair({ refuse: (t) => t.port === 22 });
    const err = await gateway.open({ host: 'bastion', port: 22 }, 5_000).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(MuxRefusal);
    expect((err as MuxRefusal).refuseCode).toBe(RefuseCode.NOT_ALLOWED);
    expect((err as MuxRefusal).reason).toBe('bastion:22 is not allowed');
    expect(gateway.size).toBe(0);
  });

  test('a RESET ends the stream on the other side with an error, and the link lives on', async () => {
    let agentStream!: MuxStream;
    const { gateway } = await linkPair({ onStream: (s) => (agentStream = s) });
    const g = await gateway.open({ host: 'h', port: 1 }, 5_000);
    await until(() => agentStream);
    const failed = new Promise<Error>((r) => agentStream.once('error', r));
    g.destroy(new Error('client went away'));
    expect((await failed).message).toMatch(/reset by the other side: client went away/);
    const again = await gateway.open({ host: 'h', port: 2 }, 5_000);
    expect(again.destroyed).toBe(false);
  });

  test('a lost link ends its streams (close listeners first) and rejects pending opens', async () => {
    const order: string[] = [];
    const { gateway, client } = await linkPair({ onStream: () => {} });
    const g = await gateway.open({ host: 'h', port: 1 }, 5_000);
    gateway.onClose(() => order.push(`listener:${g.destroyed ? 'after' : 'before'}`));
    const err = new Promise<Error>((r) => g.once('error', r));
    client.terminate();
    expect(await err).toBeInstanceOf(LinkLostError);
    expect(order).toEqual(['listener:before']);
    await expect(gateway.open({ host: 'h', port: 2 }, 5_000)).rejects.toBeInstanceOf(LinkLostError);
  });

  test('a peer that stops answering pings is dropped after three intervals', async () => {
    const { server, client } = await wsPair({ autoPong: false });
    client.on('message', () => {});
    const gateway = new MuxLink(server, { role: 'gateway', heartbeatMs: 50 });
    const reason = await new Promise<string>((r) => gateway.onClose(r));
    expect(reason).toMatch(/no heartbeat/);
  });

  test('the open times out when the agent never answers, and the late ACCEPT is ignored', async () => {
    const { server, client } = await wsPair();
    const gateway = new MuxLink(server, { role: 'gateway' });
    const opens: number[] = [];
    client.on('message', (d: Buffer) => opens.push(d.readUInt32BE(1)));
    await expect(gateway.open({ host: 'h', port: 1 }, 50)).rejects.toThrow(/did not open a stream/);
    client.send(frame(FrameType.ACCEPT, opens[0]!));
    const next = gateway.open({ host: 'h', port: 1 }, 5_000);
    await until(() => opens.length >= 3); // OPEN, RESET (timeout), OPEN
    client.send(frame(FrameType.ACCEPT, opens[2]!));
    await expect(next).resolves.toBeDefined();
    expect(gateway.isClosed).toBe(false);
  });
});

describe('hostile frames close the link', () => {
  /** A raw peer against a link of `role`; resolves with the close code the link sent. */
  async function closeCodeFor(role: 'gateway' | 'agent', frames: (Buffer | string)[], before?: (link: MuxLink) => Promise<void>): Promise<{ code: number; reason: string }> {
    const { server, client } = await wsPair();
    const link = new MuxLink(server, { role, onOpen: (id) => link.accept(id) });
    if (before) await before(link);
    const closed = once(client, 'close') as Promise<[number, Buffer]>;
    for (const f of frames) client.send(f);
    const [code, reason] = await closed;
    expect(link.isClosed).toBe(true);
    return { code, reason: reason.toString() };
  }
  const open = (id: number, t: Target = { host: 'db', port: 5432 }) => frame(FrameType.OPEN, id, encodeTarget(t));

  test('a text message', async () => {
    expect(await closeCodeFor('agent', ['hello'])).toEqual({ code: 1002, reason: 'text message on the agent link' });
  });
  test('a frame shorter than its header', async () => {
    expect((await closeCodeFor('agent', [Buffer.from([4, 0, 0])])).code).toBe(1002);
  });
  test('an unknown frame type', async () => {
    expect((await closeCodeFor('agent', [frame(99 as FrameType, 1)])).reason).toBe('unknown frame type 99');
  });
  test('stream id 0', async () => {
    expect((await closeCodeFor('agent', [open(0)])).reason).toBe('stream id 0');
  });
  test('an OPEN sent to the gateway (an agent cannot make the gateway dial)', async () => {
    expect((await closeCodeFor('gateway', [open(1)])).reason).toBe('OPEN sent to the gateway');
  });
  test('an OPEN of a stream id that is open', async () => {
    expect((await closeCodeFor('agent', [open(1), open(1)])).reason).toMatch(/OPEN of stream 1, which is open/);
  });
  test('a second OPEN of a stream id still being dialled (no answer yet)', async () => {
    const { server, client } = await wsPair();
    const link = new MuxLink(server, { role: 'agent', onOpen: () => {} }); // the dial never finishes
    const closed = once(client, 'close') as Promise<[number, Buffer]>;
    client.send(open(1));
    client.send(open(1));
    const [code, reason] = await closed;
    expect([code, reason.toString()]).toEqual([1002, 'OPEN of stream 1, which is open']);
    expect(link.isClosed).toBe(true);
  });
  test('OPENs beyond the stream limit are refused, counting those still being dialled', async () => {
    const { server, client } = await wsPair();
    const link = new MuxLink(server, { role: 'agent', onOpen: () => {} });
    const refused: number[] = [];
    client.on('message', (d: Buffer) => void (d[0] === FrameType.REFUSE && d[HEADER_BYTES] === RefuseCode.LIMIT && refused.push(d.readUInt32BE(1))));
    for (let id = 1; id <= MAX_STREAMS + 1; id++) client.send(open(id));
    await until(() => refused.length === 1);
    expect(refused).toEqual([MAX_STREAMS + 1]);
    expect(link.isClosed).toBe(false);
  });
  test('an OPEN with a target that is no host:port', async () => {
    const bad = Buffer.concat([Buffer.from([0, 0]), Buffer.from('db')]); // port 0
    expect((await closeCodeFor('agent', [frame(FrameType.OPEN, 1, bad)])).reason).toBe('OPEN with an invalid target');
    expect(decodeTarget(Buffer.concat([Buffer.from([0x15, 0x38]), Buffer.from('a b')]))).toBeNull();
    expect(decodeTarget(Buffer.concat([Buffer.from([0x15, 0x38]), Buffer.from('db\n')]))).toBeNull();
    expect(decodeTarget(encodeTarget({ host: 'db.internal', port: 5432 }))).toEqual({ host: 'db.internal', port: 5432 });
  });
  test('DATA beyond the credit given', async () => {
    const big = Buffer.alloc(64 * 1024, 1);
    const frames = [open(1), ...Array.from({ length: STREAM_WINDOW / big.length + 1 }, () => frame(FrameType.DATA, 1, big))];
    expect((await closeCodeFor('agent', frames)).reason).toMatch(/beyond the credit given/);
  });
  test('CREDIT for more than was sent', async () => {
    const credit = Buffer.alloc(4);
    credit.writeUInt32BE(1, 0);
    expect((await closeCodeFor('agent', [open(1), frame(FrameType.CREDIT, 1, credit)])).reason).toMatch(/CREDIT on stream 1 for more than was sent/);
  });
  test('DATA after END', async () => {
    expect((await closeCodeFor('agent', [open(1), frame(FrameType.END, 1), frame(FrameType.DATA, 1, Buffer.from('x'))])).reason).toMatch(/after its END/);
  });
  test('an ACCEPT sent to the agent', async () => {
    expect((await closeCodeFor('agent', [frame(FrameType.ACCEPT, 1)])).reason).toBe('ACCEPT sent to the agent');
  });
  test('a frame larger than the limit (the WebSocket layer refuses it: 1009)', async () => {
    expect((await closeCodeFor('agent', [Buffer.alloc(MAX_FRAME + 1)])).code).toBe(1009);
  });
  test('frames for streams that are gone are dropped without harm', async () => {
    const { server, client } = await wsPair();
    const link = new MuxLink(server, { role: 'agent', onOpen: (id) => link.accept(id) });
    client.send(frame(FrameType.DATA, 7, Buffer.from('late')));
    client.send(frame(FrameType.END, 7));
    client.send(frame(FrameType.RESET, 7, Buffer.from('late')));
    client.send(open(1));
    await until(() => link.size === 1);
    expect(link.isClosed).toBe(false);
  });
});
