/**
 * The syslog sink: RFC 5424 messages, octet-counted framing (RFC 6587 §3.4.1) over TCP, or over
 * TLS (RFC 5425, which frames the same way). One event per message:
 *
 *   <PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID [hoop@32473 seq="…" type="…" hash="…"] BOM MSG
 *
 * PRI is facility 13 (log audit) with the event type's severity (sink.ts severityOf); TIMESTAMP
 * the event's time; MSGID its type; MSG its canonical JSON in UTF-8, after the BOM that RFC 5424
 * §6.4 asks of a UTF-8 MSG. The structured data repeats seq, type and hash so that a SIEM can
 * index and drop repeats without parsing MSG. 32473 is the enterprise number RFC 5612 reserves
 * for documentation: hoop has none of its own.
 *
 * TCP carries no acknowledgement from a syslog receiver, so "delivered" here means: written on a
 * connection that drained up to it (the write's callback: the kernel has the bytes) and that then
 * stayed up, with no error, reset or close from the receiver, for `graceMs`. A receiver
 * that dies sooner resets or closes the connection within that time (on the same network), the
 * batch counts as failed, and the deliverer sends it again on a new connection, from its last
 * committed cursor: repeats are possible, gaps are not, except for bytes that the receiver's
 * kernel or process accepted and then lost itself (docs/audit-sinks.md says what that means).
 */
import { hostname as osHostname } from 'node:os';
import { isIP, connect as tcpConnect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { severityOf, type SinkRecord, type SinkTransport, type SyslogSinkConfig } from './sink.js';

/** RFC 5424 §6.2.1 facility 13: log audit. */
export const SYSLOG_FACILITY = 13;
export const HOOP_SD_ID = 'hoop@32473';
/** How long a connection must stay healthy after a batch drained before the batch counts as delivered. */
export const SYSLOG_GRACE_MS = 500;
const CONNECT_TIMEOUT_MS = 10_000;
/** Batches in flight on one connection at most. */
const SYSLOG_WINDOW = 8;
const BOM = '\uFEFF';

export interface SyslogHeader {
  hostname: string;
  appName: string;
  procId: string;
}

/** A header field (RFC 5424 §6.2): printable US-ASCII without spaces, at most `max` characters; '-' when empty. */
export function headerField(value: string, max: number): string {
  const v = value.replace(/[^\x21-\x7e]/g, '').slice(0, max);
  return v === '' ? '-' : v;
}

/** An SD-PARAM value (RFC 5424 §6.3.3): '"', '\' and ']' escaped with a backslash. */
export function sdParamValue(value: string): string {
  return value.replace(/["\\\]]/g, (c) => `\\${c}`);
}

/** One RFC 5424 message for one event. */
export function syslogMessage(r: SinkRecord, h: SyslogHeader): string {
  const pri = SYSLOG_FACILITY * 8 + severityOf(r.type);
  const sd = `[${HOOP_SD_ID} seq="${r.seq}" type="${sdParamValue(r.type)}" hash="${sdParamValue(r.hash)}"]`;
  return `<${pri}>1 ${r.time} ${headerField(h.hostname, 255)} ${headerField(h.appName, 48)} ${headerField(h.procId, 128)} ${headerField(r.type, 32)} ${sd} ${BOM}${r.json}`;
}

/** RFC 6587 §3.4.1: MSG-LEN SP SYSLOG-MSG, MSG-LEN in octets. */
export function octetCounted(message: string): Buffer {
  const body = Buffer.from(message, 'utf8');
  return Buffer.concat([Buffer.from(`${body.length} `, 'ascii'), body]);
}

export interface SyslogOptions {
  graceMs?: number;
  connectTimeoutMs?: number;
  hostname?: string;
}

/** One connection, and why it broke once it has. */
class Connection {
  broken: Error | null = null;
  private readonly waiters = new Set<(err: Error) => void>();

  constructor(readonly socket: Socket) {
    const breakWith = (err: Error) => {
      if (this.broken) return;
      this.broken = err;
      for (const w of this.waiters) w(err);
      this.waiters.clear();
      socket.destroy();
    };
    // A receiver has nothing to say; reading keeps a close or reset from it visible at once.
    socket.on('data', () => {});
    socket.on('end', () => breakWith(new Error('the receiver closed the connection')));
    socket.on('error', (err) => breakWith(err));
    socket.on('close', () => breakWith(new Error('the connection closed')));
  }

  /** Rejects as soon as the connection breaks (at once if it has). */
  whenBroken(): { promise: Promise<never>; cancel(): void } {
    let cancel = () => {};
    const promise = new Promise<never>((_, reject) => {
      if (this.broken) return reject(this.broken);
      this.waiters.add(reject);
      cancel = () => this.waiters.delete(reject);
    });
    promise.catch(() => {});
    return { promise, cancel };
  }

  destroy(): void {
    this.socket.destroy();
  }
}

export class SyslogTransport implements SinkTransport {
  /**
   * Batches written one after another on the one connection while earlier ones wait out their
   * grace period: throughput is not one batch per grace period. They settle in order (each
   * waits the same time after its own write), and a broken connection fails them all.
   */
  readonly window = SYSLOG_WINDOW;
  private conn: Connection | null = null;
  /** The connection being opened: batches started meanwhile wait for it, so they share it, in order. */
  private connecting: Promise<Connection> | null = null;
  private readonly graceMs: number;
  private readonly connectTimeoutMs: number;
  private readonly header: SyslogHeader;

  constructor(private readonly cfg: SyslogSinkConfig, o: SyslogOptions = {}) {
    this.graceMs = o.graceMs ?? SYSLOG_GRACE_MS;
    this.connectTimeoutMs = o.connectTimeoutMs ?? CONNECT_TIMEOUT_MS;
    this.header = { hostname: o.hostname ?? osHostname(), appName: cfg.appName, procId: String(process.pid) };
  }

  async deliver(records: readonly SinkRecord[], signal: AbortSignal): Promise<void> {
    const conn = await this.connection(signal);
    const broken = conn.whenBroken();
    const aborted = abortPromise(signal);
    try {
      const bytes = Buffer.concat(records.map((r) => octetCounted(syslogMessage(r, this.header))));
      await Promise.race([
        broken.promise,
        aborted.promise,
        (async () => {
          // The callback runs once this chunk (and so everything written before it) is in the
          // kernel's hands: the stream has drained up to it.
          await new Promise<void>((resolve, reject) => conn.socket.write(bytes, (err) => (err ? reject(err) : resolve())));
          await new Promise((resolve) => setTimeout(resolve, this.graceMs));
        })(),
      ]);
      if (conn.broken) throw conn.broken;
    } catch (err) {
      // Whatever was written on it is sent again on a new connection.
      conn.destroy();
      if (this.conn === conn) this.conn = null;
      throw err;
    } finally {
      broken.cancel();
      aborted.cancel();
    }
  }

  /** Still connecting, or bytes of earlier batches not yet handed to the kernel (a slow receiver). */
  busy(): boolean {
    return this.connecting !== null || (this.conn !== null && this.conn.socket.writableLength > 0);
  }

  async close(): Promise<void> {
    const conn = this.conn;
    this.conn = null;
    if (!conn || conn.broken) return;
    await new Promise<void>((resolve) => {
      conn.socket.once('close', () => resolve());
      conn.socket.end();
      setTimeout(() => (conn.destroy(), resolve()), 1_000).unref();
    });
  }

  private connection(signal: AbortSignal): Promise<Connection> {
    if (this.conn && !this.conn.broken) return Promise.resolve(this.conn);
    this.conn = null;
    this.connecting ??= this.open(signal).finally(() => (this.connecting = null));
    return this.connecting;
  }

  private async open(signal: AbortSignal): Promise<Connection> {
    const { host, port, tls, ca } = this.cfg;
    const socket = tls
      ? tlsConnect({ host, port, ...(isIP(host) ? {} : { servername: host }), ...(ca ? { ca } : {}), rejectUnauthorized: true, minVersion: 'TLSv1.2' })
      : tcpConnect({ host, port });
    const ready = tls ? 'secureConnect' : 'connect';
    const aborted = abortPromise(signal);
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        aborted.promise,
        new Promise<void>((resolve, reject) => {
          socket.once(ready, () => resolve());
          socket.once('error', reject);
          socket.once('close', () => reject(new Error('the connection closed before it was ready')));
          timer = setTimeout(() => reject(new Error(`no connection within ${this.connectTimeoutMs} ms`)), this.connectTimeoutMs);
        }),
      ]);
    } catch (err) {
      socket.destroy();
      throw err;
    } finally {
      clearTimeout(timer);
      aborted.cancel();
      socket.removeAllListeners('error');
      socket.removeAllListeners('close');
      socket.removeAllListeners(ready);
    }
    socket.setNoDelay(true);
    socket.setKeepAlive(true, 30_000);
    this.conn = new Connection(socket);
    return this.conn;
  }
}

/** A promise that rejects when `signal` aborts, and a way to stop listening. */
export function abortPromise(signal: AbortSignal): { promise: Promise<never>; cancel(): void } {
  let cancel = () => {};
  const promise = new Promise<never>((_, reject) => {
    if (signal.aborted) return reject(signal.reason as Error);
    const on = () => reject(signal.reason as Error);
    signal.addEventListener('abort', on, { once: true });
    cancel = () => signal.removeEventListener('abort', on);
  });
  promise.catch(() => {});
  return { promise, cancel };
}
