/**
 * Both ends of a tunnel (`hoop connect` and the gateway) see the WebSocket as a byte stream.
 * WebSocket messages (RFC 6455) carry no PostgreSQL meaning: what is written while the previous
 * message is still going out leaves as ONE binary message (fewer frames, masks, syscalls and
 * wakeups of the other side). Nothing ever waits for more data, so no latency is added; a
 * coalesced message holds at most the high-water mark plus the last write.
 */
import type { Duplex } from 'node:stream';
import { createWebSocketStream, type WebSocket } from 'ws';

/** Enough to keep a bulk result flowing; a stalled session holds about a megabyte at most. */
export const TUNNEL_HIGH_WATER_MARK = 256 * 1024;

/**
 * `onText`: text messages are the gateway's out-of-band events, not PostgreSQL bytes: they go
 * there and never into the stream (binary messages flow as before, with the same backpressure).
 */
export function webSocketStream(ws: WebSocket, options: { onText?: (text: string) => void } = {}): Duplex {
  const stream = createWebSocketStream(ws, { readableHighWaterMark: TUNNEL_HIGH_WATER_MARK, writableHighWaterMark: TUNNEL_HIGH_WATER_MARK });
  const { onText } = options;
  if (onText) {
    // createWebSocketStream's own listener, just added: it pushes (and pauses on a full buffer).
    const push = ws.listeners('message').at(-1) as (data: Buffer, isBinary: boolean) => void;
    ws.off('message', push);
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      if (isBinary) push.call(ws, data, isBinary);
      else onText(data.toString('utf8'));
    });
  }
  stream._writev = (chunks, callback) => {
    const data = chunks.length === 1 ? chunks[0]!.chunk : Buffer.concat(chunks.map((c) => c.chunk as Buffer));
    ws.send(data, callback); // as createWebSocketStream's _write once the socket is open
  };
  return stream;
}
