/**
 * `workers: N`: what any worker answers from every worker's reports (cluster.ts gather).
 * - /metrics (mergeWorkerMetrics): valid text exposition, each family's HELP and TYPE once, each
 *   sample labelled with its worker.
 * - the connections' agents (mergeAgentReports): online only when every worker holds a link, and
 *   what `hoop connections` says of a gateway where only some do.
 */
import { expect, test } from 'vitest';
import type { ConnectionInfo } from '../../src/api/types.js';
import { agentSummary } from '../../src/cli/commands/connections.js';
import { mergeAgentReports } from '../../src/gateway/agents.js';
import { GatewayMetrics, mergeWorkerMetrics } from '../../src/gateway/metrics.js';

test('every worker\'s samples under one HELP/TYPE per family, labelled worker="k"; counts of workers', () => {
  const one = new GatewayMetrics(() => 2);
  const two = new GatewayMetrics(() => 5);
  one.statements.inc('ok', 3);
  two.statements.inc('ok', 4);
  two.statements.inc('error');
  one.auditBatchSize.observe(3);
  const text = mergeWorkerMetrics([{ worker: '1', text: one.render() }, { worker: '2', text: two.render() }], 3);
  const lines = text.split('\n');
  expect(lines.filter((l) => l === '# TYPE hoop_statements_total counter')).toHaveLength(1);
  expect(lines).toContain('hoop_statements_total{worker="1",outcome="ok"} 3');
  expect(lines).toContain('hoop_statements_total{worker="2",outcome="ok"} 4');
  expect(lines).toContain('hoop_statements_total{worker="2",outcome="error"} 1');
  expect(lines).toContain('hoop_sessions_active{worker="1"} 2');
  expect(lines).toContain('hoop_sessions_active{worker="2"} 5');
  expect(lines).toContain('hoop_audit_batch_size_bucket{worker="1",le="4"} 1');
  expect(lines).toContain('hoop_audit_batch_size_count{worker="2"} 0');
  expect(lines).toContain('hoop_gateway_workers 3');
  expect(lines).toContain('hoop_gateway_workers_reporting 2');
  // A family's samples follow its own HELP/TYPE, never another family's.
  const type = lines.indexOf('# TYPE hoop_sessions_active gauge');
  expect(lines.slice(type + 1, type + 3)).toEqual(['hoop_sessions_active{worker="1"} 2', 'hoop_sessions_active{worker="2"} 5']);
  expect(text.endsWith('\n')).toBe(true);
});

test('an agent is online only when every worker holds a link; links add up; a silent worker counts as unlinked', () => {
  const all = mergeAgentReports([{ worker: 1, value: { dc1: 1, dc2: 0 } }, { worker: 2, value: { dc1: 2, dc2: 1 } }], 2);
  expect(all.status('dc1')).toEqual({ name: 'dc1', online: true, links: 3, workers: { count: 2, linked: 2 } });
  expect(all.status('dc2')).toEqual({ name: 'dc2', online: false, links: 1, workers: { count: 2, linked: 1 } });
  expect(all.status('dc3')).toEqual({ name: 'dc3', online: false, links: 0, workers: { count: 2, linked: 0 } });
  const oneSilent = mergeAgentReports([{ worker: 1, value: { dc1: 1 } }], 2);
  expect(oneSilent.status('dc1')).toMatchObject({ online: false, links: 1, workers: { count: 2, linked: 1 } });

  const info = (agent: ConnectionInfo['agent']) => ({ agent }) as ConnectionInfo;
  expect(agentSummary(info(all.status('dc1')))).toBe('dc1 online (3 links)');
  expect(agentSummary(info(all.status('dc2')))).toBe('dc2 on 1 of 2 workers');
  expect(agentSummary(info(all.status('dc3')))).toBe('dc3 offline');
  expect(agentSummary(info({ name: 'dc1', online: false, links: 0 }))).toBe('dc1 offline'); // one process
  expect(agentSummary(info(null))).toBe('direct');
});
