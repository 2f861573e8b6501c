/**
 * Masking on the live connection: for every statement of a session on a connection with a
 * `masking` block, the decision of src/policy/masking/ (analyse the text, then refuse it or run
 * it with per-column transforms), fed with the connection's catalog (schema-cache.ts) and the
 * session's SQL-level prepared statements and cursors.
 *
 * - The current config is read per statement: a reload applies new rules to new statements.
 * - Exempt groups get clear values; the waiver is what query.start records.
 * - Analysis runs once per distinct statement text and catalog version (cached per connection),
 *   not per execution; a text whose meaning depends on the session's names (EXECUTE, FETCH) is
 *   analysed each time.
 * - Fails closed: a catalog that cannot be read, a text that does not parse, a statement the
 *   engine cannot name: refused.
 */
import type { Identity } from '../identity/identity.js';
import { RUN, type StatementEnd, type StatementPlan, type StatementStart, type UpstreamConfig } from '../protocols/engine.js';
import { createScrubber, type Scrubber } from '../policy/masking/detectors.js';
import { analyzeQuery } from '../policy/masking/lineage.js';
import { planMasking, SQLSTATE_REFUSED, type MaskingDecision } from '../policy/masking/plan.js';
import { compileFunctionTrust, compileRules } from '../policy/masking/rules.js';
import type { AnalysisEnv, MaskingConfig, OutputColumn, QueryAnalysis, SchemaView, SessionNames } from '../policy/masking/types.js';
import { upstreamConfigOf, type ConnectionConfig } from './config.js';
import type { LiveConnection } from './live-config.js';
import { SchemaCache } from './schema-cache.js';
import { errorMessage } from '../errors.js';
import type { Duplex } from 'node:stream';

/** Distinct statement texts whose analysis a connection keeps. */
const ANALYSIS_CACHE_ENTRIES = 2_000;
/** Texts longer than this are analysed every time rather than kept as cache keys. */
const CACHEABLE_TEXT = 64 * 1024;
/** Command tags after which the catalog may have changed. */
const CHANGES_CATALOG = /^(CREATE|ALTER|DROP|COMMENT|SECURITY LABEL|GRANT|REVOKE|REFRESH|IMPORT FOREIGN SCHEMA|TRUNCATE)\b/;

export interface MaskingDeps {
  /** The connection's config as it is now (reloads replace it; undefined once removed). */
  current(name: string): LiveConnection | undefined;
  /** Opens a byte stream to the connection's database (the same dial sessions use: directly or through its agent). */
  dial(connection: ConnectionConfig, upstream: UpstreamConfig): Promise<Duplex>;
}

/** What one connection's masking config compiles to, kept while that config object lives. */
interface Compiled {
  config: MaskingConfig;
  protection: AnalysisEnv['protection'];
  trusted: AnalysisEnv['trusted'];
  scrubber: Scrubber | null;
  /** text -> analysis, for one catalog version. */
  analyses: Map<string, QueryAnalysis>;
  /** text -> the decision planned from it (same catalog version; texts that need no session state). */
  decisions: Map<string, MaskingDecision>;
  version: number;
}

export class MaskingService {
  /** Per connection name: the catalog cache, the upstream it reads, and the config object last seen with it. */
  private readonly caches = new Map<string, { upstream: string; cache: SchemaCache; connection: ConnectionConfig }>();
  private readonly compiled = new WeakMap<MaskingConfig, Compiled>();

  constructor(private readonly deps: MaskingDeps) {}

  /** The planner and scrubber of one session. */
  session(connectionName: string, identity: Identity): SessionMasking {
    return new SessionMasking(this, connectionName, identity);
  }

  /** @internal */ connection(name: string): LiveConnection | undefined {
    return this.deps.current(name);
  }

  /** @internal */ compile(config: MaskingConfig): Compiled {
    let c = this.compiled.get(config);
    if (!c) {
      c = {
        config,
        protection: compileRules(config.columns),
        trusted: compileFunctionTrust(config.trustedFunctions),
        scrubber: createScrubber(config.detectors),
        analyses: new Map(),
        decisions: new Map(),
        version: -1,
      };
      this.compiled.set(config, c);
    }
    return c;
  }

  /** @internal */ schemaCache(connection: ConnectionConfig): SchemaCache {
    const known = this.caches.get(connection.name);
    if (known?.connection === connection) return known.cache; // every statement: the same config object until a reload
    const upstream = upstreamConfigOf(connection);
    const id = JSON.stringify([upstream.host, upstream.port, upstream.database, upstream.user, connection.agent]);
    if (known && known.upstream === id) {
      known.connection = connection;
      return known.cache;
    }
    const cache = new SchemaCache(upstream, () => this.deps.dial(connection, upstream));
    this.caches.set(connection.name, { upstream: id, cache, connection });
    return cache;
  }

  /** Every connection's catalog may have changed (a config reload): each is read again before it is next used. */
  catalogsChanged(): void {
    for (const { cache } of this.caches.values()) cache.invalidate();
  }

  /** A statement that may have changed the catalog completed on this connection. */
  catalogChanged(connectionName: string): void {
    this.caches.get(connectionName)?.cache.invalidate();
  }
}

type Named = OutputColumn[] | null;

export class SessionMasking {
  private readonly prepared = new Map<string, Named>();
  private readonly cursors = new Map<string, Named>();
  /** The session's names as the analysis reads them (a cached analysis never did). */
  private readonly names: SessionNames = { prepared: (n) => this.prepared.get(n), cursor: (n) => this.cursors.get(n) };

  constructor(private readonly service: MaskingService, private readonly connectionName: string, private readonly identity: Identity) {}

  /** The masking config in force for this caller now, or why none applies. */
  private inForce(): { config: MaskingConfig; connection: LiveConnection } | { waived: string } | { removed: true } | null {
    const connection = this.service.connection(this.connectionName);
    if (!connection) return { removed: true };
    const config = connection.masking;
    if (!config) return null;
    const exempt = config.exempt.find((g) => this.identity.groups.includes(g));
    return exempt !== undefined ? { waived: exempt } : { config, connection };
  }

  plan(start: StatementStart): StatementPlan | Promise<StatementPlan> {
    const state = this.inForce();
    if (state === null) return RUN;
    if ('removed' in state) return { action: 'refuse', code: SQLSTATE_REFUSED, message: `hoop: statement refused: connection ${this.connectionName} is no longer configured on this gateway` };
    if ('waived' in state) return { action: 'run', summary: { masking: { waived_for: state.waived } } };
    if (start.protocol === 'fastpath') return { action: 'run', summary: { masking: { columns: [], note: 'function call: large-object data is not masked' } } };
    if (start.unknown) {
      return { action: 'refuse', code: SQLSTATE_REFUSED, message: `hoop: statement refused: connection ${state.connection.name} masks protected data and hoop cannot name what this statement runs (${start.statement.replace(/^-- /, '')})`, summary: { masking: { refused: 'unknown statement' } } };
    }
    if (start.statementTruncated) {
      return { action: 'refuse', code: SQLSTATE_REFUSED, message: `hoop: statement refused: connection ${state.connection.name} masks protected data and this statement is longer than hoop analyses`, summary: { masking: { refused: 'statement too long' } } };
    }
    // The hot path: a text decided before, against the catalog in force, is decided again at once.
    const compiled = this.service.compile(state.config);
    const ready = this.service.schemaCache(state.connection).ready();
    if (ready && ready.version === compiled.version) {
      const known = compiled.decisions.get(start.statement);
      if (known) {
        const analysis = compiled.analyses.get(start.statement);
        if (analysis) this.follow(analysis);
        return known;
      }
    }
    return this.planWithCatalog(start.statement, state.config, state.connection);
  }

  private async planWithCatalog(text: string, config: MaskingConfig, connection: LiveConnection): Promise<StatementPlan> {
    const compiled = this.service.compile(config);
    let result: { analysis: QueryAnalysis; env: AnalysisEnv };
    try {
      result = await this.analysisOf(text, compiled, connection);
    } catch (err) {
      return { action: 'refuse', code: SQLSTATE_REFUSED, message: `hoop: statement refused: connection ${connection.name} masks protected data and hoop could not read its catalog (${errorMessage(err)})`, summary: { masking: { refused: 'catalog unavailable' } } };
    }
    const decision = planMasking({ analysis: result.analysis, config, env: result.env, key: connection.maskingKey, scrubber: compiled.scrubber, connection: connection.name });
    if (decision.action === 'run') this.follow(result.analysis);
    // Kept when its analysis was (it depends on nothing of this session's); refusals are planned again.
    if (decision.action === 'run' && compiled.analyses.get(text) === result.analysis) {
      if (compiled.decisions.size >= ANALYSIS_CACHE_ENTRIES) compiled.decisions.delete(compiled.decisions.keys().next().value!);
      compiled.decisions.set(text, decision);
    }
    return decision;
  }

  /**
   * The protected columns each statement of a text reads, by masking's rules, whoever asks (an
   * exemption changes what a caller sees, not what a statement touches): what access rules'
   * `protected_columns` condition looks at. [] without masking rules; rejects when the catalog
   * cannot be read.
   */
  async protectedColumns(text: string): Promise<string[][]> {
    const connection = this.service.connection(this.connectionName);
    if (!connection?.masking) return [];
    const { analysis } = await this.analysisOf(text, this.service.compile(connection.masking), connection);
    return analysis.statements.map((s) => [...new Set([
      ...(s.result ?? []).flatMap((c) => c.taint.sources.map((src) => src.column)),
      ...s.predicates.map((p) => p.column),
    ])]);
  }

  /** The analysis of a text against the catalog, read again once if it names relations the snapshot lacks. */
  private async analysisOf(text: string, compiled: Compiled, connection: LiveConnection): Promise<{ analysis: QueryAnalysis; env: AnalysisEnv }> {
    const cache = this.service.schemaCache(connection);
    let schema = await cache.snapshot();
    let result = this.analyse(text, compiled, schema);
    if (result.missing.length > 0) {
      // Named relations the catalog did not have: perhaps created since it was read.
      const fresh = await cache.refreshFor(result.missing);
      if (fresh.version !== schema.version) {
        schema = fresh;
        result = this.analyse(text, compiled, schema);
      }
    }
    return result;
  }

  /** Analyses a text (from the cache when its meaning does not depend on this session). */
  private analyse(text: string, compiled: Compiled, schema: SchemaView & { version: number }): { analysis: QueryAnalysis; env: AnalysisEnv; missing: { schema: string | null; name: string }[] } {
    if (compiled.version !== schema.version) {
      compiled.analyses.clear();
      compiled.decisions.clear();
      compiled.version = schema.version;
    }
    const cached = compiled.analyses.get(text);
    if (cached) return { analysis: cached, env: { schema, protection: compiled.protection, names: this.names, trusted: compiled.trusted }, missing: [] };
    const missing: { schema: string | null; name: string }[] = [];
    let usedNames = false;
    const view: SchemaView = {
      relations: (s, n) => {
        const found = schema.relations(s, n);
        if (found.length === 0) missing.push({ schema: s, name: n });
        return found;
      },
      relationByOid: (oid) => schema.relationByOid(oid),
      functionKind: (s, n) => schema.functionKind(s, n),
      returnsSet: (s, n) => schema.returnsSet(s, n),
      userFunctionSchemas: (n) => schema.userFunctionSchemas(n),
      typeShadowed: (n) => schema.typeShadowed(n),
    };
    const names: SessionNames = {
      prepared: (n) => {
        usedNames = true;
        return this.prepared.get(n);
      },
      cursor: (n) => {
        usedNames = true;
        return this.cursors.get(n);
      },
    };
    const env: AnalysisEnv = { schema: view, protection: compiled.protection, names, trusted: compiled.trusted };
    const planEnv = { ...env, schema };
    const analysis = analyzeQuery(text, env);
    if (!usedNames && missing.length === 0 && text.length <= CACHEABLE_TEXT) {
      if (compiled.analyses.size >= ANALYSIS_CACHE_ENTRIES) compiled.analyses.delete(compiled.analyses.keys().next().value!);
      compiled.analyses.set(text, analysis);
    }
    return { analysis, env: planEnv, missing };
  }

  /**
   * Follows the SQL-level names a statement defines, in order. A name defined again while hoop
   * still holds a definition for it becomes unknown: the server keeps the first if the second
   * fails (PREPARE of an existing name), and hoop does not wait for the answer.
   */
  private follow(analysis: QueryAnalysis): void {
    for (const s of analysis.statements) {
      for (const e of s.effects) {
        switch (e.kind) {
          case 'prepare':
            this.prepared.set(e.name, this.prepared.has(e.name) ? null : e.result);
            break;
          case 'declare':
            this.cursors.set(e.name, this.cursors.has(e.name) ? null : e.result);
            break;
          case 'deallocate':
            if (e.name === null) this.prepared.clear();
            else this.prepared.delete(e.name);
            break;
          case 'close':
            if (e.name === null) this.cursors.clear();
            else this.cursors.delete(e.name);
            break;
          case 'discard':
            this.prepared.clear();
            this.cursors.clear();
            break;
        }
      }
    }
  }

  /** A statement ended: DDL may have changed the catalog the analysis reads. */
  queryEnded(end: StatementEnd): void {
    if (end.commandTags.some((t) => CHANGES_CATALOG.test(t))) this.service.catalogChanged(this.connectionName);
  }

  /** The content net over notices, errors, notifications and ParameterStatus values. */
  readonly scrubText = (text: string, tally: (label: string) => void): string => {
    const state = this.inForce();
    if (state === null || !('config' in state)) return text;
    const scrubber = this.service.compile(state.config).scrubber;
    if (!scrubber) return text;
    const found = scrubber.text(text);
    for (const hit of found.hits) tally(`detector:${hit}`);
    return found.text;
  };
}
