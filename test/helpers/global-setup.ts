/**
 * Starts the shared upstream PostgreSQL once for the whole run and stops it at the end.
 * Tests read it with `inject('upstream')`.
 */
import type { TestProject } from 'vitest/node';
import { startUpstream, type UpstreamInfo } from './postgres.js';

declare module 'vitest' {
  export interface ProvidedContext {
    upstream: UpstreamInfo;
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const { cluster, info } = await startUpstream();
  project.provide('upstream', info);
  return async () => {
    await cluster.stop();
  };
}
