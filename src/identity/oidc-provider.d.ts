/**
 * The slice of `oidc-provider` 9 that the demo identity provider uses. The package ships no
 * types and `@types/oidc-provider` trails its majors; this keeps the demo type-checked.
 */
declare module 'oidc-provider' {
  import type { IncomingMessage, ServerResponse } from 'node:http';

  /* eslint-disable @typescript-eslint/no-explicit-any */
  export interface KoaContextish {
    body: unknown;
    type: string;
    [key: string]: any;
  }

  export interface InteractionDetails {
    uid: string;
    prompt: { name: string; reasons: string[]; details: Record<string, unknown> };
    params: Record<string, unknown>;
    session?: { accountId: string } | undefined;
    grantId?: string | undefined;
  }

  export class Grant {
    constructor(init: { accountId: string; clientId: string });
    addOIDCScope(scope: string): void;
    addOIDCClaims(claims: string[]): void;
    addResourceScope(indicator: string, scope: string): void;
    save(): Promise<string>;
    static find(id: string): Promise<Grant | undefined>;
  }

  export interface TokenLike {
    kind: string;
    clientId?: string;
    accountId?: string;
    scopes: Set<string>;
  }
  export interface ClientLike {
    clientId: string;
    grantTypeAllowed(type: string): boolean;
  }
  export interface AccountLike {
    accountId: string;
    claims(): Record<string, unknown> | Promise<Record<string, unknown>>;
  }
  export interface Configuration {
    findAccount?: (ctx: KoaContextish, id: string) => AccountLike | undefined | Promise<AccountLike | undefined>;
    features?: {
      deviceFlow?: {
        enabled: boolean;
        userCodeInputSource?: (ctx: KoaContextish, form: string, out: unknown, err: unknown) => void | Promise<void>;
        userCodeConfirmSource?: (
          ctx: KoaContextish,
          form: string,
          client: ClientLike,
          deviceInfo: unknown,
          userCode: string,
        ) => void | Promise<void>;
        successSource?: (ctx: KoaContextish) => void | Promise<void>;
      };
      revocation?: {
        enabled: boolean;
        allowedPolicy?: (ctx: KoaContextish, client: ClientLike, token: TokenLike) => Promise<boolean>;
      };
      resourceIndicators?: {
        enabled: boolean;
        defaultResource?: (ctx: KoaContextish, client: ClientLike, oneOf?: string[]) => Promise<string | string[] | undefined>;
        useGrantedResource?: (ctx: KoaContextish, model: unknown) => Promise<boolean>;
        getResourceServerInfo?: (ctx: KoaContextish, resource: string, client: ClientLike) => Promise<Record<string, unknown>>;
      };
      [feature: string]: unknown;
    };
    extraTokenClaims?: (ctx: KoaContextish, token: TokenLike) => Promise<Record<string, unknown> | undefined>;
    issueRefreshToken?: (ctx: KoaContextish, client: ClientLike, code: TokenLike) => Promise<boolean>;
    renderError?: (ctx: KoaContextish, out: Record<string, unknown>, error: unknown) => void | Promise<void>;
    interactions?: { url: (ctx: KoaContextish, interaction: { uid: string }) => string };
    pkce?: { required: (ctx: KoaContextish, client: ClientLike) => boolean };
    ttl?: Record<string, (ctx: KoaContextish, token: unknown, client: ClientLike) => number>;
    clientBasedCORS?: (ctx: KoaContextish, origin: string, client: ClientLike) => boolean;
    [key: string]: unknown;
  }

  export default class Provider {
    constructor(issuer: string, configuration: Configuration);
    callback(): (req: IncomingMessage, res: ServerResponse) => void;
    interactionDetails(req: IncomingMessage, res: ServerResponse): Promise<InteractionDetails>;
    interactionFinished(
      req: IncomingMessage,
      res: ServerResponse,
      result: Record<string, unknown>,
      options?: { mergeWithLastSubmission?: boolean },
    ): Promise<void>;
    Grant: typeof Grant;
    use(middleware: (ctx: KoaContextish, next: () => Promise<void>) => Promise<void>): void;
  }

  export const errors: {
    InvalidTarget: new (description?: string) => Error;
    [name: string]: new (description?: string) => Error;
  };
}
