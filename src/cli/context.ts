/**
 * What a command's action receives instead of reaching for globals: IO streams, environment,
 * clock, shutdown signal, the global flags, and lazily built gateway clients. `main.ts` builds
 * the real one; tests build one over in-memory streams (`testRuntime` in test/cli/helpers.ts).
 */
import { GatewayApi } from '../client/api.js';
import { resolveCredential, resolveGateway } from './credentials.js';
import type { Env, IOStreams } from './iostreams.js';

export interface GlobalOptions {
  /** The last --gateway given. */
  gateway?: string | undefined;
  /** Every --gateway given, in order (`hoop agent` links to each). */
  gateways?: string[];
  json: boolean;
  color: boolean;
}

export interface Runtime {
  io: IOStreams;
  env: Env;
  now(): Date;
  /** Resolves with the signal's name at the first SIGINT or SIGTERM. */
  shutdownSignal(): Promise<string>;
  version: string;
  /** How the user invoked the CLI, for commands to type next: `hoop`, or `node bin/hoop.js` from a checkout. */
  cliName?: string;
}

export interface CommandContext extends Runtime {
  globals: GlobalOptions;
  /** The gateway base URL (--gateway, HOOP_GATEWAY, saved default) or HOOP_NOT_LOGGED_IN. */
  gateway(): string;
  /** An authenticated API client for `gateway()`; closed when the command ends. */
  api(): GatewayApi;
  /** Runs after the action, in reverse order, whether it failed or not. */
  defer(cleanup: () => Promise<void> | void): void;
}

export function createContext(runtime: Runtime, globals: GlobalOptions): CommandContext & { cleanup(): Promise<void> } {
  const cleanups: (() => Promise<void> | void)[] = [];
  let api: GatewayApi | undefined;
  const ctx = {
    ...runtime,
    globals,
    gateway: () => resolveGateway(globals, runtime.env),
    api(): GatewayApi {
      if (api) return api;
      const gateway = ctx.gateway();
      api = new GatewayApi({
        gateway,
        // resolveCredential prefers HOOP_TOKEN, so its presence says where the token comes from.
        tokenSource: runtime.env.HOOP_TOKEN?.trim() ? 'HOOP_TOKEN' : 'stored',
        userAgent: `hoop-cli/${runtime.version}`,
        token: async () => (await resolveCredential(gateway, runtime.env)).token,
      });
      const created = api;
      cleanups.push(() => created.close());
      return api;
    },
    defer(cleanup: () => Promise<void> | void): void {
      cleanups.push(cleanup);
    },
    async cleanup(): Promise<void> {
      for (const fn of cleanups.reverse()) {
        try {
          await fn();
        } catch {
          // Cleanup must not mask the command's own outcome.
        }
      }
      cleanups.length = 0;
    },
  };
  return ctx;
}
