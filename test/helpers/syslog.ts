/**
 * Real syslog receivers for the audit sink tests: rsyslogd (imtcp on a free port, writing each
 * message as received to a file in a temp dir, unprivileged: `-n -f conf -i pidfile`), and a
 * small TLS receiver (rsyslog here has no TLS driver) that reads RFC 6587 octet-counted frames.
 * Plus a strict reader of RFC 5424 messages, to check what arrived.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer as createTlsServer, type Server as TlsServer, type TLSSocket } from 'node:tls';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { listening } from './clients.js';
import { until } from './poll.js';

export const RSYSLOGD = process.env['HOOP_TEST_RSYSLOGD'] ?? '/usr/sbin/rsyslogd';

export interface Rsyslog {
  port: number;
  /** The file every received message is appended to (the raw message, one per line). */
  output: string;
  /** The messages received so far, read from the output file. */
  messages(): SyslogMessage[];
  /** Kills it with `signal` and waits until it is gone. */
  kill(signal?: NodeJS.Signals): Promise<void>;
  /** Starts it again on the same port, appending to the same file. */
  restart(): Promise<void>;
  /** Stops it and removes its directory. */
  close(): Promise<void>;
}

/** rsyslogd listening on a free port (the OS picks it; rsyslog writes it to a file). */
export async function startRsyslog(): Promise<Rsyslog> {
  if (!existsSync(RSYSLOGD)) {
    throw new Error(`rsyslogd not found at ${RSYSLOGD}: the syslog sink tests need it (apt-get install rsyslog, or set HOOP_TEST_RSYSLOGD)`);
  }
  const dir = mkdtempSync(join(tmpdir(), 'hoop-rsyslog-'));
  const output = join(dir, 'received.log');
  let child: ChildProcess | null = null;
  let port = 0;
  let starts = 0;
  const launch = async () => {
    const portFile = join(dir, `port-${++starts}`);
    const conf = join(dir, `rsyslog-${starts}.conf`);
    // Direct main queue: a message is written to the file by the thread that read it, not held
    // in a memory queue that a SIGKILL would lose after TCP delivered it.
    writeFileSync(conf, [
      `global(workDirectory="${dir}" maxMessageSize="4m")`,
      'main_queue(queue.type="Direct")',
      'module(load="imtcp")',
      'template(name="raw" type="string" string="%rawmsg%\\n")',
      // Port 0 the first time (rsyslog names the port it got in the file; only then), the same one after.
      `input(type="imtcp" address="127.0.0.1" port="${port}"${port === 0 ? ` listenPortFileName="${portFile}"` : ''})`,
      `action(type="omfile" file="${output}" template="raw")`,
      '',
    ].join('\n'));
    const stderr: Buffer[] = [];
    const proc = spawn(RSYSLOGD, ['-n', '-f', conf, '-i', join(dir, `pid-${starts}`)], { stdio: ['ignore', 'ignore', 'pipe'] });
    proc.stderr!.on('data', (c: Buffer) => stderr.push(c));
    child = proc;
    const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
    const known = port;
    const ready = known === 0
      ? until(() => existsSync(portFile) && Number(readFileSync(portFile, 'utf8').trim()) > 0, { timeoutMs: 10_000, what: 'rsyslogd listening' })
      : until(() => listening(known), { timeoutMs: 10_000, what: `rsyslogd accepting on ${known}` });
    const outcome = await Promise.race([ready.then(() => 'ready' as const), exited.then((code) => code)]);
    if (outcome !== 'ready') throw new Error(`rsyslogd could not start (exit ${outcome}): ${Buffer.concat(stderr).toString('utf8').trim().slice(0, 500)}`);
    if (known === 0) port = Number(readFileSync(portFile, 'utf8').trim());
    await until(() => listening(port), { timeoutMs: 10_000, what: `rsyslogd accepting on ${port}` });
  };
  const kill = async (signal: NodeJS.Signals = 'SIGTERM') => {
    const proc = child;
    child = null;
    await stopChild(proc, signal);
  };
  try {
    await launch();
  } catch (err) {
    await kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  return {
    get port() {
      return port;
    },
    output,
    messages: () => (existsSync(output) ? readFileSync(output, 'utf8').split('\n').filter((l) => l !== '').map(parseSyslogMessage) : []),
    kill,
    restart: launch,
    async close() {
      await kill('SIGTERM');
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export interface SyslogMessage {
  pri: number;
  timestamp: string;
  hostname: string;
  appName: string;
  procId: string;
  msgId: string;
  /** SD-ID -> its params, values unescaped. */
  sd: Record<string, Record<string, string>>;
  /** MSG after the BOM. */
  msg: string;
  bom: boolean;
}

/** A strict reader of one RFC 5424 message (§6): throws on anything it does not expect. */
export function parseSyslogMessage(text: string): SyslogMessage {
  const head = /^<(\d{1,3})>1 (\S+) (\S+) (\S+) (\S+) (\S+) /.exec(text);
  if (!head) throw new Error(`not an RFC 5424 message: ${text.slice(0, 120)}`);
  let i = head[0].length;
  const sd: SyslogMessage['sd'] = {};
  if (text[i] === '-') i += 1;
  else {
    while (text[i] === '[') {
      const id = /^\[([^\s=\]"]+)/.exec(text.slice(i));
      if (!id) throw new Error(`bad SD-ID at ${i}: ${text.slice(i, i + 40)}`);
      i += id[0].length;
      const params: Record<string, string> = {};
      while (text[i] === ' ') {
        const name = /^ ([^\s=\]"]+)="/.exec(text.slice(i));
        if (!name) throw new Error(`bad SD-PARAM at ${i}`);
        i += name[0].length;
        let value = '';
        for (;;) {
          const c = text[i++];
          if (c === undefined) throw new Error('unterminated SD-PARAM value');
          if (c === '\\' && (text[i] === '"' || text[i] === '\\' || text[i] === ']')) value += text[i++];
          else if (c === '"') break;
          else if (c === ']') throw new Error('unescaped ] in an SD-PARAM value');
          else value += c;
        }
        params[name[1]!] = value;
      }
      if (text[i++] !== ']') throw new Error(`SD-ELEMENT not closed at ${i - 1}`);
      sd[id[1]!] = params;
    }
  }
  let msg = '';
  if (i < text.length) {
    if (text[i] !== ' ') throw new Error(`expected a space before MSG at ${i}`);
    msg = text.slice(i + 1);
  }
  const bom = msg.startsWith('\uFEFF');
  return { pri: Number(head[1]), timestamp: head[2]!, hostname: head[3]!, appName: head[4]!, procId: head[5]!, msgId: head[6]!, sd, msg: bom ? msg.slice(1) : msg, bom };
}

/** Splits RFC 6587 octet-counted frames (MSG-LEN SP SYSLOG-MSG) out of a byte stream. */
export class OctetCountedReader {
  private buf = Buffer.alloc(0);
  push(chunk: Buffer): string[] {
    this.buf = Buffer.concat([this.buf, chunk]);
    const out: string[] = [];
    for (;;) {
      const sp = this.buf.indexOf(0x20);
      if (sp < 0) break;
      const len = Number(this.buf.subarray(0, sp).toString('ascii'));
      if (!/^[1-9]\d*$/.test(this.buf.subarray(0, sp).toString('ascii'))) throw new Error('bad MSG-LEN');
      if (this.buf.length < sp + 1 + len) break;
      out.push(this.buf.subarray(sp + 1, sp + 1 + len).toString('utf8'));
      this.buf = this.buf.subarray(sp + 1 + len);
    }
    return out;
  }
}

/** A TLS syslog receiver (RFC 5425 framing) with the given certificate: the messages it got. */
export async function startTlsSyslog(cert: { cert: string; key: string }): Promise<{ port: number; messages: SyslogMessage[]; close(): Promise<void> }> {
  const messages: SyslogMessage[] = [];
  const sockets = new Set<TLSSocket>();
  const server: TlsServer = createTlsServer({ cert: cert.cert, key: cert.key, minVersion: 'TLSv1.2' }, (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    const reader = new OctetCountedReader();
    socket.on('data', (c: Buffer) => {
      for (const m of reader.push(c)) messages.push(parseSyslogMessage(m));
    });
    socket.on('error', () => socket.destroy());
  });
  server.on('tlsClientError', () => {});
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  return {
    port: (server.address() as AddressInfo).port,
    messages,
    close: () => new Promise<void>((resolve) => {
      server.close(() => resolve());
      for (const s of sockets) s.destroy();
    }),
  };
}

/**
 * An HTTP collector in a process of its own, so a test can SIGKILL it: it appends each request
 * body (one line per batch, with the time it came) to a file, synchronously, before answering 204.
 * Started again on the same port after a kill.
 */
export interface HttpCollector {
  port: number;
  /** Every body received, in order (across restarts). */
  bodies(): string[];
  kill(signal?: NodeJS.Signals): Promise<void>;
  restart(): Promise<void>;
  close(): Promise<void>;
}

const COLLECTOR = `
const http = require('node:http');
const fs = require('node:fs');
const [out, port] = process.argv.slice(1);
const server = http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    fs.appendFileSync(out, JSON.stringify(Buffer.concat(chunks).toString('utf8')) + '\\n');
    res.writeHead(204).end();
  });
});
server.listen(Number(port), '127.0.0.1', () => process.stdout.write(String(server.address().port) + '\\n'));
`;

export async function startHttpCollector(): Promise<HttpCollector> {
  const dir = mkdtempSync(join(tmpdir(), 'hoop-collector-'));
  const out = join(dir, 'bodies.jsonl');
  let child: ChildProcess | null = null;
  let port = 0;
  const launch = async () => {
    const proc = spawn(process.execPath, ['-e', COLLECTOR, out, String(port)], { stdio: ['ignore', 'pipe', 'inherit'] });
    child = proc;
    const got = await new Promise<number>((resolve, reject) => {
      let text = '';
      proc.stdout!.on('data', (c: Buffer) => {
        text += c.toString('utf8');
        if (text.includes('\n')) resolve(Number(text.trim()));
      });
      proc.once('exit', (code) => reject(new Error(`the HTTP collector exited (${code}) before listening`)));
    });
    port = got;
  };
  const kill = async (signal: NodeJS.Signals = 'SIGTERM') => {
    const proc = child;
    child = null;
    await stopChild(proc, signal);
  };
  await launch();
  return {
    get port() {
      return port;
    },
    bodies: () => (existsSync(out) ? readFileSync(out, 'utf8').split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as string) : []),
    kill,
    restart: launch,
    async close() {
      await kill('SIGTERM');
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Sends `signal` to a child that is still running and waits for it to exit. */
async function stopChild(proc: ChildProcess | null, signal: NodeJS.Signals): Promise<void> {
  if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
  const gone = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  proc.kill(signal);
  await gone;
}
