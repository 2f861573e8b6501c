import type { SessionDetail, SessionSummary } from '../api/types.js';
import type { AuditEvent, UnsealedEvent } from '../audit/event.js';

// The store answers session queries in the API's own shapes: the routes send them as they are.
export type { SessionDetail, SessionSummary };

export interface SessionFilter {
  subject?: string;
  /** A subject, an email (case-insensitive) or an API key name (`alice` for `apikey:alice`). */
  user?: string;
  connection?: string;
  since?: string; // RFC 3339; sessions started at or after
  until?: string; // RFC 3339; sessions started before
  /** Sessions whose id starts with this (lowercase hex and dashes), as `hoop sessions show 1f3a9c2e` types it. */
  idPrefix?: string;
  limit?: number;
}

export interface EventFilter {
  afterSeq?: number;
  since?: string;
  until?: string;
  limit?: number;
  /** Only events of these types; `auth.*` names every type that starts with `auth.`. */
  types?: readonly string[];
  /** Newest first (with `limit`: the last N); default oldest first. */
  newestFirst?: boolean;
}

/**
 * Persistence for everything the gateway keeps. SQLite (one gateway) and PostgreSQL (replicas)
 * implement it and pass one shared test suite (`test/store/store-suite.ts`).
 */
export interface Store {
  /** Creates or upgrades the schema; idempotent. */
  migrate(): Promise<void>;

  /**
   * Appends events atomically at the chain head: assigns `seq`, `prev_hash` and `hash`
   * (see `src/audit/chain.ts`) under a lock, so concurrent appenders — in this process or in
   * other gateway replicas — always produce one linear chain. Resolves only once the events are
   * durable (fsynced). Rejects with `StoreError` and writes nothing on failure.
   */
  appendEvents(events: UnsealedEvent[]): Promise<AuditEvent[]>;

  /** The chain head, or null for an empty log. */
  head(): Promise<{ seq: number; hash: string } | null>;

  /** Events in `seq` order. */
  readEvents(filter: EventFilter): Promise<AuditEvent[]>;

  listSessions(filter: SessionFilter): Promise<SessionSummary[]>;

  /** The session and all of its events in `seq` order, or null. */
  getSession(id: string): Promise<SessionDetail | null>;

  close(): Promise<void>;
}
