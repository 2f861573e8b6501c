/**
 * `workers: N`: /metrics on any worker holds every worker's series (mergeWorkerMetrics, cluster.ts),
 * as valid text exposition: each family's HELP and TYPE once, each sample labelled with its worker.
 */
import { expect, test } from 'vitest';
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
