/**
 * Prometheus metrics in the text exposition format (version 0.0.4), hand-rolled: a handful of
 * counters, a few gauges and two histograms do not need a client library. Label values come from
 * fixed sets chosen by the gateway (outcomes, reasons, statuses) or from the config (audit sink
 * ids, at most 32), never from client input, so the series count stays bounded.
 */
import type { AuditEvent, UnsealedEvent } from '../audit/event.js';
import type { SinkMetrics } from '../audit/sinks/deliverer.js';
import type { Store } from '../store/store.js';

/** Values by label value (one unlabelled value when the metric has no label). */
class Labelled {
  protected readonly values = new Map<string, number>();
  constructor(readonly name: string, readonly help: string, private readonly type: 'counter' | 'gauge', readonly label?: string) {}
  protected addTo(labelValue: string, by: number): void {
    this.values.set(labelValue, (this.values.get(labelValue) ?? 0) + by);
  }
  get(labelValue = ''): number {
    return this.values.get(labelValue) ?? 0;
  }
  render(): string {
    const lines = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} ${this.type}`];
    if (!this.label && this.values.size === 0) lines.push(`${this.name} 0`);
    for (const [v, n] of this.values) lines.push(this.label ? `${this.name}{${this.label}="${escapeLabel(v)}"} ${n}` : `${this.name} ${n}`);
    return lines.join('\n');
  }
}

class Counter extends Labelled {
  constructor(name: string, help: string, label?: string) {
    super(name, help, 'counter', label);
  }
  inc(labelValue = '', by = 1): void {
    this.addTo(labelValue, by);
  }
}

/** A value that goes up and down. */
class Gauge extends Labelled {
  constructor(name: string, help: string, label?: string) {
    super(name, help, 'gauge', label);
  }
  add(delta: number, labelValue = ''): void {
    this.addTo(labelValue, delta);
  }
}

/** A gauge per label value (set, not counted). */
class LabeledGauge {
  private readonly values = new Map<string, number>();
  constructor(readonly name: string, readonly help: string, readonly label: string) {}
  set(labelValue: string, v: number): void {
    this.values.set(labelValue, v);
  }
  get(labelValue: string): number | undefined {
    return this.values.get(labelValue);
  }
  render(): string {
    const lines = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} gauge`];
    for (const [k, v] of this.values) lines.push(`${this.name}{${this.label}="${escapeLabel(k)}"} ${v}`);
    return lines.join('\n');
  }
}

class Histogram {
  private readonly counts: number[];
  private sum = 0;
  private count = 0;
  constructor(readonly name: string, readonly help: string, readonly buckets: readonly number[]) {
    this.counts = buckets.map(() => 0);
  }
  observe(v: number): void {
    this.sum += v;
    this.count += 1;
    this.buckets.forEach((b, i) => {
      if (v <= b) this.counts[i]! += 1;
    });
  }
  render(): string {
    const lines = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} histogram`];
    this.buckets.forEach((b, i) => lines.push(`${this.name}_bucket{le="${b}"} ${this.counts[i]}`));
    lines.push(`${this.name}_bucket{le="+Inf"} ${this.count}`, `${this.name}_sum ${this.sum}`, `${this.name}_count ${this.count}`);
    return lines.join('\n');
  }
}

function escapeLabel(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
}

export class GatewayMetrics {
  readonly statements = new Counter('hoop_statements_total', 'Statements finished, by outcome (ok, error, cancelled, refused, rolled_back).', 'outcome');
  readonly sessions = new Counter('hoop_sessions_total', 'Tunnel sessions accepted.');
  readonly authFailures = new Counter('hoop_auth_failures_total', 'Failed authentications, by reason code.', 'code');
  readonly tunnelRefusals = new Counter('hoop_tunnel_refusals_total', 'Tunnel upgrades refused, by HTTP status.', 'status');
  readonly protocolErrors = new Counter('hoop_protocol_errors_total', 'Malformed or oversized client frames.');
  readonly auditAppendFailures = new Counter('hoop_audit_append_failures_total', 'Audit appends the store refused (statements refused: fail closed).');
  readonly httpRequests = new Counter('hoop_http_requests_total', 'HTTP API responses, by status code.', 'status');
  readonly notifications = new Counter('hoop_notifications_total', 'Approver notification delivery attempts, by outcome (delivered, failed: retried later, gave_up).', 'outcome');
  // Audit sinks (src/audit/sinks/deliverer.ts): the label is the sink id, from the config.
  readonly sinkLagEvents = new LabeledGauge('hoop_audit_sink_lag_events', 'Audit events not yet delivered to the sink: the head seq minus the sink\'s delivered seq.', 'sink');
  readonly sinkDeliveredTotal = new Counter('hoop_audit_sink_delivered_total', 'Audit events delivered to the sink by this gateway (repeats after a failure count again).', 'sink');
  readonly sinkErrorsTotal = new Counter('hoop_audit_sink_errors_total', 'Failed delivery attempts to the sink (each retried from its cursor).', 'sink');
  readonly sinkLastDelivery = new LabeledGauge('hoop_audit_sink_last_delivery_timestamp_seconds', 'Unix time of the last delivery to the sink by this gateway.', 'sink');
  /** Label: the agent name from the config (a bounded set), never what an agent sends. */
  readonly agentLinks = new Gauge('hoop_agent_links', 'Agent links up now, by agent name.', 'agent');
  readonly agentStreams = new Gauge('hoop_agent_streams', 'Upstream streams open through agents now.');
  readonly agentStreamBytes = new Counter('hoop_agent_stream_bytes_total', 'Stream bytes over agent links, by direction (to_agent: toward the database, from_agent: from it).', 'direction');
  readonly auditAppendSeconds = new Histogram('hoop_audit_append_seconds', 'Latency of one durable audit append (one group commit).',
    [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5]);
  readonly auditBatchSize = new Histogram('hoop_audit_batch_size', 'Events per durable audit append (group commit size).',
    [1, 2, 4, 8, 16, 32, 64, 128, 256]);

  constructor(private readonly activeSessions: () => number) {}

  render(): string {
    const active = [
      '# HELP hoop_sessions_active Tunnel sessions open now.',
      '# TYPE hoop_sessions_active gauge',
      `hoop_sessions_active ${this.activeSessions()}`,
    ].join('\n');
    return [active, this.sessions, this.statements, this.authFailures, this.tunnelRefusals, this.protocolErrors,
      this.auditAppendFailures, this.auditAppendSeconds, this.auditBatchSize, this.httpRequests, this.notifications,
      this.sinkLagEvents, this.sinkDeliveredTotal, this.sinkErrorsTotal, this.sinkLastDelivery,
      this.agentLinks, this.agentStreams, this.agentStreamBytes]
      .map((m) => (typeof m === 'string' ? m : m.render())).join('\n') + '\n';
  }

  /** What the audit sinks report (SinkMetrics in src/audit/sinks/deliverer.ts). */
  readonly sinks: SinkMetrics = {
    sinkDelivered: (sink, events, atMs) => {
      this.sinkDeliveredTotal.inc(sink, events);
      this.sinkLastDelivery.set(sink, atMs / 1000);
    },
    sinkError: (sink) => this.sinkErrorsTotal.inc(sink),
    sinkLag: (sink, events) => this.sinkLagEvents.set(sink, events),
  };

  /** Every sink appears in /metrics from the start, at zero. */
  registerSinks(ids: readonly string[]): void {
    for (const id of ids) {
      this.sinkDeliveredTotal.inc(id, 0);
      this.sinkErrorsTotal.inc(id, 0);
    }
  }

  /** The store, observed: every appendEvents call is one durable batch from the recorder. */
  instrument(store: Store): Store {
    const append = async (events: UnsealedEvent[]): Promise<AuditEvent[]> => {
      const started = process.hrtime.bigint();
      try {
        const out = await store.appendEvents(events);
        this.auditAppendSeconds.observe(Number(process.hrtime.bigint() - started) / 1e9);
        this.auditBatchSize.observe(events.length);
        return out;
      } catch (err) {
        this.auditAppendFailures.inc();
        throw err;
      }
    };
    return {
      migrate: () => store.migrate(),
      appendEvents: append,
      head: () => store.head(),
      readEvents: (f) => store.readEvents(f),
      listSessions: (f) => store.listSessions(f),
      getSession: (id) => store.getSession(id),
      readSessionEvents: (id, page) => store.readSessionEvents(id, page),
      readPayloads: (seqs) => store.readPayloads(seqs),
      readEventPage: (page) => store.readEventPage(page),
      readSinkCursor: (sink) => store.readSinkCursor(sink),
      claimSinkLease: (c) => store.claimSinkLease(c),
      advanceSinkCursor: (a) => store.advanceSinkCursor(a),
      releaseSinkLease: (sink, owner) => store.releaseSinkLease(sink, owner),
      prunePayloads: (r) => store.prunePayloads(r),
      pruneEvents: (r) => store.pruneEvents(r),
      newestCheckpointBefore: (before) => store.newestCheckpointBefore(before),
      checkpointKeys: (afterSeq) => store.checkpointKeys(afterSeq),
      requestKill: (k) => store.requestKill(k),
      killsFor: (ids) => store.killsFor(ids),
      watchKills: (wake) => store.watchKills(wake),
      enqueueNotification: (n) => store.enqueueNotification(n),
      claimNotifications: (c) => store.claimNotifications(c),
      markNotificationDelivered: (id, at) => store.markNotificationDelivered(id, at),
      markNotificationFailed: (id, f) => store.markNotificationFailed(id, f),
      markNotificationDead: (id, f) => store.markNotificationDead(id, f),
      getNotification: (id) => store.getNotification(id),
      createApprovalRequest: (r) => store.createApprovalRequest(r),
      getApprovalRequest: (id) => store.getApprovalRequest(id),
      listApprovalRequests: (f) => store.listApprovalRequests(f),
      recordApprovalDecision: (d) => store.recordApprovalDecision(d),
      markApprovalUsed: (id, at) => store.markApprovalUsed(id, at),
      expireApprovalRequests: (now) => store.expireApprovalRequests(now),
      cancelApprovalRequest: (id, at) => store.cancelApprovalRequest(id, at),
      activeGrant: (subject, connection, now) => store.activeGrant(subject, connection, now),
      watchApprovals: (wake) => store.watchApprovals(wake),
      close: () => store.close(),
    };
  }
}

/**
 * The metrics of `workers: N` (cluster.ts): each worker's series with a `worker` label added (so
 * `sum without (worker)` gives the gateway's), every family's HELP and TYPE once, in the order the
 * workers render them; then how many workers there are and how many answered.
 */
export function mergeWorkerMetrics(texts: readonly { worker: string; text: string }[], configured: number): string {
  const families = new Map<string, { head: string[]; samples: string[] }>();
  for (const { worker, text } of texts) {
    let family: { head: string[]; samples: string[] } | null = null;
    for (const line of text.split('\n')) {
      const head = /^# (HELP|TYPE) (\S+)/.exec(line);
      if (head) {
        const name = head[2]!;
        family = families.get(name) ?? { head: [], samples: [] };
        if (!families.has(name)) families.set(name, family);
        if (!family.head.some((h) => h.startsWith(`# ${head[1]} `))) family.head.push(line);
      } else if (family && line !== '') {
        family.samples.push(withWorkerLabel(line, worker));
      }
    }
  }
  const merged = [...families.values()].map((f) => [...f.head, ...f.samples].join('\n'));
  merged.push(
    '# HELP hoop_gateway_workers Gateway worker processes configured (workers).\n# TYPE hoop_gateway_workers gauge\n' + `hoop_gateway_workers ${configured}`,
    '# HELP hoop_gateway_workers_reporting Workers whose series this scrape holds (a worker that did not answer in time is left out).\n# TYPE hoop_gateway_workers_reporting gauge\n' + `hoop_gateway_workers_reporting ${texts.length}`,
  );
  return merged.join('\n') + '\n';
}

function withWorkerLabel(sample: string, worker: string): string {
  const label = `worker="${escapeLabel(worker)}"`;
  const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{)?/.exec(sample)!;
  const rest = sample.slice(m[0].length);
  return m[2] ? `${m[1]}{${label},${rest}` : `${m[1]}{${label}}${rest}`;
}
