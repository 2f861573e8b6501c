import { parseConfig } from '../dist/gateway/config.js';
import { startGateway } from '../dist/gateway/gateway.js';
import { openLocalTunnel } from '../dist/client/tunnel.js';
import { apiKeyHash } from '../dist/identity/api-keys.js';
import { mkdtempSync, writeFileSync } from 'node:fs';
import pino from 'pino';
const work = mkdtempSync('/tmp/updown-');
const key = 'k_test_123456789';
const config = parseConfig({ listen: '127.0.0.1:0', store: 'sqlite::memory:', identity: { api_keys: [{ name: 'a', sha256: apiKeyHash(key), groups: ['g'] }] },
  connections: [{ name: 'bank', type: 'postgres', upstream: { host: '127.0.0.1', port: 1, database: 'x', user: 'u', password: 'p', sslmode: 'disable', connect_timeout: '2s' }, access: ['g'] },
   { name: 'blackhole', type: 'postgres', upstream: { host: '10.255.255.1', port: 5432, database: 'x', user: 'u', password: 'p', sslmode: 'disable', connect_timeout: '2s' }, access: ['g'] }] }, 'x', work);
const gw = await startGateway(config, { logger: pino({ level: 'info' }) });
const uris = [];
for (const c of ['bank', 'blackhole']) {
  const t = await openLocalTunnel({ gateway: gw.url, connection: c, token: async () => key, port: 0, user: 'a', database: 'x' });
  uris.push(t.uri);
}
writeFileSync('/tmp/uris', uris.join('\n'));
setTimeout(() => process.exit(0), 40000);
