/**
 * A test stand-in for the gateway: a plain TCP server whose connections go straight into
 * `engine.serve(socket, ctx)`, with hooks that record into an array.
 */
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import pg from 'pg';
import { PostgresEngine, type SessionContext, type SessionHooks, type StatementEnd, type StatementStart, type UpstreamConfig } from '../../../src/protocols/postgres/engine.js';
import { RUN, type FinalPlan, type StatementPlan } from '../../../src/protocols/engine.js';
import { tcpDial } from '../../../src/protocols/postgres/upstream.js';
import { passwordOf, type UpstreamInfo } from '../../helpers/postgres.js';

export type HookEvent =
  | { type: 'sessionStart'; data: unknown }
  | { type: 'queryStart'; data: StatementStart; decision: FinalPlan }
  | { type: 'queryEnd'; data: StatementEnd }
  | { type: 'sessionEnd'; data: { reason: string; error: string | null } }
  | { type: 'protocolError'; data: { message: string } }
  | { type: 'unattributed'; data: Record<string, unknown> };

export interface Harness {
  port: number;
  engine: PostgresEngine;
  events: HookEvent[];
  /** Replace to change behaviour (e.g. reject to simulate the audit store being down). */
  queryStart: (s: StatementStart) => Promise<void>;
  /** Replace to decide statements (refuse, hold, transform, cap). */
  plan: (s: StatementStart) => Promise<StatementPlan>;
  /** Upstream connections opened so far (sessions and cancel requests). */
  dials: number;
  /** Each session's AbortController, to end it from the gateway's side. */
  controllers: AbortController[];
  sessionStart: () => Promise<void>;
  starts(): StatementStart[];
  ends(): StatementEnd[];
  sessionEnds(): { reason: string; error: string | null; detail?: string }[];
  /** Whether `engine.serve()` has returned for the connection a client made from local port `port`: that session is over, teardown and all. */
  served(port: number): boolean;
  /** The gateway side of the connection a client made from local port `port`, once accepted. */
  accepted(port: number): Socket | undefined;
  client(extra?: Partial<pg.ClientConfig>): Promise<pg.Client>;
  close(): Promise<void>;
}

export function upstreamConfig(info: UpstreamInfo, user: string = info.users.scram, over: Partial<UpstreamConfig> = {}): UpstreamConfig {
  return { host: info.host, port: info.port, database: info.database, user, password: passwordOf(user), sslmode: 'disable', ...over };
}

export async function startHarness(opts: {
  upstream: UpstreamConfig;
  owner?: string;
  payloadLimit?: number;
  engine?: PostgresEngine;
  /** SessionContext.scrubText for every session. */
  scrubText?: SessionContext['scrubText'];
  /** SessionContext.keyCancel for every session and cancel stream (the native listener's). */
  keyCancel?: boolean;
}): Promise<Harness> {
  const engine = opts.engine ?? new PostgresEngine();
  const events: HookEvent[] = [];
  const sockets = new Set<Socket>();
  const clients = new Set<pg.Client>();
  const served = new Set<number>(); // client ports whose serve() returned
  const h: Harness = {
    port: 0,
    engine,
    events,
    queryStart: async () => {},
    plan: async () => RUN,
    dials: 0,
    controllers: [],
    sessionStart: async () => {},
    starts: () => events.filter((e) => e.type === 'queryStart').map((e) => e.data as StatementStart),
    ends: () => events.filter((e) => e.type === 'queryEnd').map((e) => e.data as StatementEnd),
    sessionEnds: () => events.filter((e) => e.type === 'sessionEnd').map((e) => e.data as { reason: string; error: string | null; detail?: string }),
    served: (port) => served.has(port),
    accepted: (port) => [...sockets].find((s) => s.remotePort === port),
    client: async (extra = {}) => {
      const c = new pg.Client({ host: '127.0.0.1', port: h.port, user: 'someone', database: 'anything', ...extra });
      c.on('error', () => {});
      clients.add(c);
      await c.connect();
      return c;
    },
    close: async () => {
      await Promise.all([...clients].map((c) => c.end().catch(() => {})));
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
  const hooks: SessionHooks = {
    sessionStart: async (info) => {
      events.push({ type: 'sessionStart', data: info });
      await h.sessionStart();
    },
    plan: (s) => h.plan(s),
    queryStart: async (s, decision) => {
      events.push({ type: 'queryStart', data: s, decision });
      await h.queryStart(s);
    },
    queryEnd: (e) => void events.push({ type: 'queryEnd', data: e }),
    sessionEnd: (e) => void events.push({ type: 'sessionEnd', data: e }),
    protocolError: (e) => void events.push({ type: 'protocolError', data: e }),
    unattributed: (m) => void events.push({ type: 'unattributed', data: m }),
  };
  const ctx: SessionContext = { upstream: opts.upstream, dial: () => (h.dials++, tcpDial(opts.upstream)), hooks, payloadLimit: opts.payloadLimit ?? 1024 * 1024, owner: opts.owner ?? 'alice', ...(opts.scrubText ? { scrubText: opts.scrubText } : {}), ...(opts.keyCancel ? { keyCancel: true } : {}) };
  const server: Server = createServer({ noDelay: true }, (socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    const port = socket.remotePort!;
    const controller = new AbortController();
    h.controllers.push(controller);
    void engine.serve(socket, { ...ctx, signal: controller.signal }).finally(() => served.add(port));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  h.port = (server.address() as AddressInfo).port;
  return h;
}

/** Polls until `check` returns truthy (for fire-and-forget hooks): the shared helper. */
export { until } from '../../helpers/poll.js';
