// The quick start's `oidc` service: the embedded demo OpenID Provider of `hoop demo`
// (src/identity/demo-idp.ts: device flow, refresh tokens, a `groups` claim), NOT for production.
// It shares the gateway container's network namespace (network_mode: service:gateway), so its
// issuer http://127.0.0.1:8010 is the same URL for the gateway (fetching its keys) and for
// `hoop login` on the host (the port is published on the host's loopback only).
// The users are the demo's, with the passwords the `keys` service made; its signing keys live
// in memory: after a restart of this service, run `hoop login` again.
// HOOP_APP_DIR, HOOP_KEYS_DIR, HOOP_OIDC_PORT: other places, for test/deploy/deploy.test.ts.
import { readFileSync } from 'node:fs';

const APP = process.env.HOOP_APP_DIR ?? '/app';
const KEYS = process.env.HOOP_KEYS_DIR ?? '/keys';
const { startDemoIdp } = await import(`${APP}/dist/identity/demo-idp.js`);

const read = (path) => readFileSync(`${KEYS}/users/${path}`, 'utf8').trim();
const user = (username, name, groups) => ({ username, password: read(`${username}.password`), email: `${username}@bank.example`, name, groups });
const idp = await startDemoIdp({
  host: '0.0.0.0',
  issuerHost: '127.0.0.1',
  port: Number(process.env.HOOP_OIDC_PORT ?? 8010),
  users: [user('alice', 'Alice Analyst', ['analysts']), user('bob', 'Bob DBA', ['dba']), user('carol', 'Carol Auditor', ['audit'])],
  serviceClient: { clientId: 'hoop-service', clientSecret: read('hoop-service.secret'), groups: ['etl'] },
});
process.stderr.write(`oidc: demo identity provider at ${idp.issuer} (users: ${idp.users.map((u) => u.username).join(', ')})\n`);
for (const signal of ['SIGTERM', 'SIGINT']) process.once(signal, () => void idp.close().then(() => process.exit(0)));
