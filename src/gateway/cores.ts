/**
 * The cores this process may use: the CPUs it may run on (affinity), and no more than a cgroup
 * CPU quota allows (a container's CPU limit: cgroup v2 `cpu.max`, v1 `cpu.cfs_quota_us` over
 * `cpu.cfs_period_us`). `workers: auto` forks one worker per such core: on a 64-core node, a pod
 * limited to 2 CPUs gets 2 workers, not 64.
 */
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';

export function usableCores(read: (path: string) => string | null = readOrNull): number {
  const affinity = availableParallelism();
  const quota = cgroupQuota(read);
  return quota === null ? affinity : Math.max(1, Math.min(affinity, Math.ceil(quota)));
}

/** CPUs' worth of time the cgroup allows, or null without a limit. */
export function cgroupQuota(read: (path: string) => string | null): number | null {
  const v2 = read('/sys/fs/cgroup/cpu.max')?.trim().split(/\s+/);
  if (v2 && v2.length === 2) return ratio(v2[0]!, v2[1]!);
  const quota = read('/sys/fs/cgroup/cpu/cpu.cfs_quota_us')?.trim();
  const period = read('/sys/fs/cgroup/cpu/cpu.cfs_period_us')?.trim();
  return quota !== undefined && period !== undefined ? ratio(quota, period) : null;
}

/** quota/period; null for `max` or -1 (no limit) or anything unreadable. */
function ratio(quota: string, period: string): number | null {
  const q = Number(quota);
  const p = Number(period);
  return Number.isFinite(q) && Number.isFinite(p) && q > 0 && p > 0 ? q / p : null;
}

function readOrNull(path: string): string | null {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return null;
  }
}
