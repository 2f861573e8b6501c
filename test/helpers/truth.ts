/**
 * The setup the "record is the truth" tests share: a PostgreSQL cluster of their own with the
 * statement log on (server-log.ts), a gateway in front of it with one `bank` connection, raw
 * protocol clients through the tunnel and straight to the server (raw-client.ts), and the record
 * read back from the gateway's store (record.ts).
 *
 * Every session gets a unique application_name: the server log is read per application, and the
 * gateway's record per tunnel session id (X-Hoop-Session).
 */
import { bankConnection, startTestGateway, type TestGateway, type TestGatewayOptions } from './gateway.js';
import { rawDirect, rawTunnel, type RawClient, type RawClientOptions } from './raw-client.js';
import { recordOf, type SessionRecord } from './record.js';
import { LOGGED_DATABASE, LOGGED_USER, startLoggedCluster, type LoggedCluster, type LoggedStatement } from './server-log.js';

export interface Truth {
  pg: LoggedCluster;
  gw: TestGateway;
  /** A raw client through the gateway's tunnel (as bob, group dba). */
  open(application: string, opts?: Partial<RawClientOptions>): Promise<RawClient>;
  /** A raw client straight to PostgreSQL, without hoop. */
  direct(application: string, opts?: Partial<RawClientOptions>): Promise<RawClient>;
  /** The gateway's record of a tunnel client's session (waits for session.end unless told). */
  record(client: RawClient, opts?: { ended?: boolean }): Promise<SessionRecord>;
  /** What the server log shows the sessions of `application` ran (after a log barrier). */
  logged(application: string): Promise<LoggedStatement[]>;
  stop(): Promise<void>;
}

export async function startTruth(name: string, gateway: Partial<TestGatewayOptions> = {}): Promise<Truth> {
  const pg = await startLoggedCluster(name);
  let gw: TestGateway;
  try {
    gw = await startTestGateway({ upstream: pg.info, connections: [bankConnection(pg.info)], ...gateway });
  } catch (err) {
    await pg.stop();
    throw err;
  }
  const clients = new Set<RawClient>();
  const track = (c: RawClient) => {
    clients.add(c);
    void c.closed.then(() => clients.delete(c));
    return c;
  };
  return {
    pg,
    gw,
    open: async (application, opts = {}) => track(await rawTunnel(gw.url, gw.keys['bob']!, { application, ...opts })),
    direct: async (application, opts = {}) =>
      track(await rawDirect(pg.info.host, pg.info.port, { application, user: LOGGED_USER, database: LOGGED_DATABASE, ...opts })),
    record: (client, opts = {}) => {
      if (!client.sessionId) throw new Error(`${client.options.application}: no X-Hoop-Session (not a tunnel client?)`);
      return recordOf(gw.store, client.sessionId, opts);
    },
    logged: async (application) => {
      await pg.flushLog();
      return pg.log.statements(application);
    },
    async stop() {
      for (const c of clients) c.destroy();
      try {
        await gw.close();
      } finally {
        await pg.stop();
      }
    },
  };
}
