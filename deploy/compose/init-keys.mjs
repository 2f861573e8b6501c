// The quick start's one-shot `keys` service (runs as root in the hoop image): creates, once,
// every secret the other services read from the `hoop-keys` volume, each readable only by the
// uid that needs it (10001: hoop's image user; 999: postgres in the official postgres image).
//
//   docker compose run --rm keys print          the demo users' API keys and login passwords
//   docker compose run --rm -T keys print alice alice's API key alone (HOOP_TOKEN=$(…); -T: no CR)
//
// Layout (the services' mounts and deploy/compose/hoop.yaml name these paths):
//   /keys/gateway/   store-db.password, bank-db.password, agent-dc1.sha256, <user>.sha256
//   /keys/agent/     agent.key                 (HOOP_AGENT_KEY of `hoop agent`)
//   /keys/users/     <user>.key, <user>.password, hoop-service.secret
//   /keys/store-db/  password                  (POSTGRES_PASSWORD_FILE of the store)
//   /keys/bank-db/   postgres.password, hoop_svc.password
import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, chownSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

// HOOP_KEYS_DIR: another directory, for test/deploy/deploy.test.ts.
const ROOT = process.env.HOOP_KEYS_DIR ?? '/keys';
const HOOP = 10001;
const POSTGRES = 999;
const USERS = ['alice', 'bob', 'carol'];

const secret = () => randomBytes(24).toString('hex'); // hex: safe inside a postgres:// URL
const apiKey = () => `hoop_${randomBytes(32).toString('base64url')}`;
const sha256 = (s) => createHash('sha256').update(s, 'utf8').digest('hex');

// Owners are set when running as root (the service always is); a test run as another user keeps its own.
const own = (path, uid) => {
  if (process.getuid?.() === 0) chownSync(path, uid, uid);
};

function dir(name, uid) {
  const path = join(ROOT, name);
  mkdirSync(path, { recursive: true });
  own(path, uid);
  chmodSync(path, 0o700);
  return path;
}

function put(path, value, uid) {
  writeFileSync(path, `${value}\n`, { mode: 0o600 });
  own(path, uid);
}

function create() {
  const gateway = dir('gateway', HOOP);
  const agent = dir('agent', HOOP);
  const users = dir('users', HOOP);
  const storeDb = dir('store-db', POSTGRES);
  const bankDb = dir('bank-db', POSTGRES);
  const storePassword = secret();
  put(join(storeDb, 'password'), storePassword, POSTGRES);
  put(join(gateway, 'store-db.password'), storePassword, HOOP);
  const svcPassword = secret();
  put(join(bankDb, 'postgres.password'), secret(), POSTGRES);
  put(join(bankDb, 'hoop_svc.password'), svcPassword, POSTGRES);
  put(join(gateway, 'bank-db.password'), svcPassword, HOOP);
  const agentKey = `hoop_agent_${randomBytes(32).toString('base64url')}`;
  put(join(agent, 'agent.key'), agentKey, HOOP);
  put(join(gateway, 'agent-dc1.sha256'), sha256(agentKey), HOOP);
  for (const user of USERS) {
    const key = apiKey();
    put(join(users, `${user}.key`), key, HOOP);
    put(join(users, `${user}.password`), randomBytes(9).toString('base64url'), HOOP);
    put(join(gateway, `${user}.sha256`), sha256(key), HOOP);
  }
  put(join(users, 'hoop-service.secret'), randomBytes(18).toString('base64url'), HOOP);
  put(join(ROOT, '.created'), new Date().toISOString(), 0);
}

const read = (path) => readFileSync(join(ROOT, path), 'utf8').trim();

function print(only) {
  if (only) {
    if (!USERS.includes(only)) throw new Error(`no demo user ${only}; one of ${USERS.join(', ')}`);
    process.stdout.write(`${read(`users/${only}.key`)}\n`);
    return;
  }
  const lines = ['user   API key (HOOP_TOKEN)                                   login password'];
  for (const user of USERS) lines.push(`${user.padEnd(6)} ${read(`users/${user}.key`).padEnd(54)} ${read(`users/${user}.password`)}`);
  lines.push('', `service client hoop-service, secret ${read('users/hoop-service.secret')} (hoop login --client-credentials)`);
  process.stdout.write(`${lines.join('\n')}\n`);
}

const [command, arg] = process.argv.slice(2);
if (command === 'print') {
  print(arg);
} else if (existsSync(join(ROOT, '.created'))) {
  process.stderr.write('keys: already created; keeping them\n');
} else {
  create();
  process.stderr.write('keys: created (docker compose run --rm keys print shows the demo users\' keys)\n');
}
