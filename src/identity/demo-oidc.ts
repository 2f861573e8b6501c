/**
 * What `hoop demo` needs from identity: the embedded OpenID Provider started next to the gateway,
 * the `identity.oidc` lines for the demo's hoop.yaml (so the gateway trusts it), and the banner
 * section telling the user how to `hoop login` and as whom.
 */
import { startDemoIdp, type DemoIdp, type DemoUser } from './demo-idp.js';

export interface DemoOidc {
  idp: DemoIdp;
  /** YAML lines for `identity:` (indented by two spaces): the `oidc:` entry. */
  configLines: string[];
  /** A banner section: title and lines. */
  banner(gatewayUrl: string, cli?: string): { title: string; lines: string[] };
  close(): Promise<void>;
}

/** The demo users; the same names and groups as the demo's API key identities. */
export const DEMO_OIDC_GROUPS: Record<string, string[]> = { alice: ['analysts'], bob: ['dba'], carol: ['audit'] };

export async function startDemoOidc(options: { port?: number; users?: DemoUser[] } = {}): Promise<DemoOidc> {
  const idp = await startDemoIdp({ port: options.port ?? 0, ...(options.users ? { users: options.users } : {}) });
  const q = (s: string) => JSON.stringify(s);
  return {
    idp,
    configLines: [
      `  oidc: {issuer: ${q(idp.issuer)}, client_id: ${q(idp.clientId)}, audience: ${q(idp.audience)}, groups_claim: groups,`,
      '         scopes: [openid, email, profile, groups, offline_access]}   # the embedded demo provider',
    ],
    banner(gatewayUrl, cli = 'hoop') {
      const width = Math.max(...idp.users.map((u) => u.username.length));
      const login = `${cli} login --gateway ${gatewayUrl}`;
      const whoami = `${cli} whoami`;
      const col = Math.max(login.length, whoami.length) + 2;
      return {
        title: `Or sign in with OIDC (embedded identity provider at ${idp.issuer}):`,
        lines: [
          `${login.padEnd(col)}# then sign in in the browser as one of:`,
          ...idp.users.map((u) => `  ${u.username.padEnd(width)}  password ${u.password}  (groups: ${u.groups.join(', ')})`),
          `${whoami.padEnd(col)}# who the gateway sees, token expiry, where the token is kept`,
          'HOOP_TOKEN, when set, wins over the login: unset it to use your login.',
          `A service identity (client credentials grant, groups: ${idp.serviceClient.groups.join(', ')}), as a nightly job would sign in:`,
          `  HOOP_CLIENT_ID=${idp.serviceClient.clientId} HOOP_CLIENT_SECRET=${idp.serviceClient.clientSecret} ${cli} login --client-credentials --gateway ${gatewayUrl}`,
        ],
      };
    },
    close: () => idp.close(),
  };
}
