/**
 * Row estimates for `estimated_rows` access rules (estimate.ts reads them with EXPLAIN) on one
 * gateway-owned upstream connection per hoop connection, opened when first needed and opened
 * again after it fails. A statement whose estimate cannot be had gets null: the rules count it as
 * matching (fail closed).
 */
import type { Duplex } from 'node:stream';
import type { UpstreamConfig } from '../protocols/engine.js';
import { openAdminConnection, type AdminConnection } from '../protocols/postgres/admin-query.js';
import { upstreamConfigOf, type ConnectionConfig } from './config.js';
import { defaultSearchPath, estimateRows } from './estimate.js';
import type { LiveConnection } from './live-config.js';

export class Estimator {
  private readonly open = new Map<string, { upstream: string; admin: Promise<AdminConnection>; searchPath: Promise<string[] | undefined> }>();

  /** `dial`: the connection's upstream dial (directly, or through its agent). */
  constructor(private readonly dial: (connection: ConnectionConfig, upstream: UpstreamConfig) => Promise<Duplex>) {}

  async estimate(connection: LiveConnection, text: string, role: string | null, parameters: readonly unknown[] = []): Promise<number | null> {
    let admin: AdminConnection;
    let searchPath: string[] | undefined;
    try {
      admin = await this.connectionFor(connection);
      // Unqualified names resolve as in a client's session of the same login (estimate.ts).
      searchPath = await this.open.get(connection.name)!.searchPath;
    } catch {
      this.open.delete(connection.name);
      return null;
    }
    return estimateRows(admin, text, { role, searchPath, parameters });
  }

  private connectionFor(connection: LiveConnection): Promise<AdminConnection> {
    const upstream = upstreamConfigOf(connection);
    const id = JSON.stringify([upstream.host, upstream.port, upstream.database, upstream.user, connection.agent]);
    const known = this.open.get(connection.name);
    if (known && known.upstream === id) {
      // A connection that broke since (the server restarted, a timeout, its agent link dropped) is replaced.
      return known.admin.then((a) => (a.isBroken ? this.reopen(connection, upstream, id) : a));
    }
    if (known) void known.admin.then((a) => a.close(), () => {});
    return this.reopen(connection, upstream, id);
  }

  private reopen(connection: ConnectionConfig, upstream: UpstreamConfig, id: string): Promise<AdminConnection> {
    const admin = openAdminConnection(upstream, () => this.dial(connection, upstream));
    // Read once per connection opened: a setting changed later is seen after the next reconnect.
    const searchPath = admin.then(defaultSearchPath, () => undefined).catch(() => undefined);
    this.open.set(connection.name, { upstream: id, admin, searchPath });
    return admin;
  }

  async close(): Promise<void> {
    const all = [...this.open.values()];
    this.open.clear();
    await Promise.all(all.map((o) => o.admin.then((a) => a.close(), () => {})));
  }
}
