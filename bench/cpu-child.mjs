#!/usr/bin/env node
/**
 * The proxy processes bench/cpu.mjs measures, each in its own process so that its CPU time
 * (/proc/PID/stat) is its own. One role per process, given as the first argument:
 *
 *   relay-remote HOST PORT   a `ws` WebSocket server on 127.0.0.1:0; each WebSocket is piped to a
 *                            new TCP connection to HOST:PORT (PostgreSQL). The gateway's place.
 *   relay-local WSURL        a TCP listener on 127.0.0.1:0; each connection is piped to a new
 *                            WebSocket to WSURL. `hoop connect`'s place.
 *   gateway                  hoop's gateway (startBenchGateway from lib.mjs) from the JSON in
 *                            BENCH_GATEWAY (with `postgres_listen` there: its native listener,
 *                            the one-hop path); prints the audit head's seq when it stops.
 *
 * The relay is the floor of hoop's topology: two Node processes, one WebSocket, `pipe` both ways,
 * no framing, no audit. Each role prints one JSON line on stdout when it is ready and stops on
 * SIGTERM or SIGINT (or when its parent goes away: stdin closes).
 */
import { createServer, connect } from 'node:net';
import { WebSocket, WebSocketServer, createWebSocketStream } from 'ws';
import { startBenchGateway } from './lib.mjs';

const [role, ...args] = process.argv.slice(2);
const say = (obj) => process.stdout.write(`${JSON.stringify(obj)}\n`);

/** Pipes a and b both ways; either end failing or closing ends the other. */
function join(a, b) {
  a.pipe(b).pipe(a);
  const end = () => {
    a.destroy();
    b.destroy();
  };
  a.once('error', end).once('close', end);
  b.once('error', end).once('close', end);
}

let stop = async () => {};
if (role === 'relay-remote') {
  const [host, port] = args;
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false, clientTracking: true });
  wss.on('connection', (ws) => {
    const upstream = connect({ host, port: Number(port), noDelay: true });
    join(createWebSocketStream(ws), upstream);
  });
  await new Promise((resolve) => wss.once('listening', resolve));
  say({ url: `ws://127.0.0.1:${wss.address().port}/` });
  stop = async () => {
    for (const ws of wss.clients) ws.terminate();
    await new Promise((resolve) => wss.close(resolve));
  };
} else if (role === 'relay-local') {
  const [url] = args;
  const sockets = new Set();
  const server = createServer({ noDelay: true }, (socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    const ws = new WebSocket(url, { perMessageDeflate: false });
    join(socket, createWebSocketStream(ws));
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  say({ host: '127.0.0.1', port: server.address().port });
  stop = async () => {
    for (const s of sockets) s.destroy();
    await new Promise((resolve) => server.close(resolve));
  };
} else if (role === 'gateway') {
  const { gateway, key } = await startBenchGateway(JSON.parse(process.env.BENCH_GATEWAY));
  say({ url: gateway.url, key, native: gateway.postgresListen });
  stop = async () => {
    const head = await gateway.store.head();
    await gateway.close();
    say({ auditEvents: head?.seq ?? 0 });
  };
} else {
  process.stderr.write(`cpu-child: unknown role ${role}\n`);
  process.exit(2);
}

let stopping = null;
const shutdown = () => {
  stopping ??= stop().then(
    () => process.exit(0),
    (err) => {
      process.stderr.write(`cpu-child ${role}: ${err?.stack ?? err}\n`);
      process.exit(1);
    },
  );
};
process.once('SIGTERM', shutdown);
process.once('SIGINT', shutdown);
process.stdin.on('end', shutdown).on('error', shutdown).resume();
