/**
 * Commands as small declarations (wrangler's `createCommand`, gh's `pkg/cmd/<noun>/<verb>`):
 * a name, a summary, arguments, options and an action over an injected context. `program.ts`
 * turns the tree into commander commands; `completion.ts` turns the same tree into shell
 * completions, so the two can never disagree.
 */
import type { CommandContext } from './context.js';

/** How a shell completes a value: fixed words, file paths, or names asked from the gateway. */
export type Completion = { choices: readonly string[] } | 'file' | 'connections';

export interface OptionSpec<T> {
  /** commander syntax: `--port <port>`, `-o, --output <path>`, `--no-browser`. */
  readonly flags: string;
  readonly description: string;
  readonly defaultValue?: T;
  /** Converts and validates the raw text; throws UsageError. */
  readonly parse?: (raw: string) => T;
  readonly required?: boolean;
  /** Allowed values: validated by commander, offered by completions. */
  readonly choices?: readonly string[];
  readonly complete?: Completion;
  /** May be given more than once: the value is every one, in order (`parse` reads each). */
  readonly repeatable?: boolean;
  /** Type carrier only. */
  readonly __value?: T;
}

export interface ArgSpec {
  readonly name: string;
  readonly description: string;
  readonly required: boolean;
  /** Takes every remaining operand (`[client...]`), e.g. everything after `--`. */
  readonly variadic?: boolean;
  readonly complete?: Completion;
}

export type OptionDefs = Record<string, OptionSpec<unknown>>;
export type OptionValues<O extends OptionDefs> = { [K in keyof O]: O[K] extends OptionSpec<infer T> ? T : never };

export interface CommandInput<O extends OptionDefs> {
  /** Positional arguments by name; a variadic one is a `string[]` (empty when none were given). */
  args: Record<string, string | string[] | undefined>;
  options: OptionValues<O>;
}

export interface CommandSpec<O extends OptionDefs = OptionDefs> {
  readonly name: string;
  /** One line, shown in lists and completions. */
  readonly summary: string;
  /** Longer help text, shown by `hoop <cmd> --help`. */
  readonly description?: string;
  readonly args?: readonly ArgSpec[];
  readonly options?: O;
  /** Shown under "Examples:" in help. */
  readonly examples?: readonly string[];
  readonly hidden?: boolean;
  readonly subcommands?: readonly AnyCommand[];
  /** Returns the exit code (default 0); throws HoopError for failures. */
  readonly run?: (ctx: CommandContext, input: CommandInput<O>) => Promise<number | void>;
}

export type AnyCommand = CommandSpec<any>;

/** What each `src/cli/commands/<group>.ts` module exports. */
export interface CommandGroup {
  readonly commands: readonly AnyCommand[];
}

export function defineCommand<O extends OptionDefs = Record<never, never>>(spec: CommandSpec<O>): CommandSpec<O> {
  return spec;
}

/** Option builders: the value type follows from the builder, so actions get typed options. */
export const opt = {
  flag(flags: string, description: string): OptionSpec<boolean> {
    return { flags, description, defaultValue: false };
  },
  text(flags: string, description: string, extra: { complete?: Completion } = {}): OptionSpec<string | undefined> {
    return { flags, description, ...extra };
  },
  requiredText(flags: string, description: string, extra: { complete?: Completion } = {}): OptionSpec<string> {
    return { flags, description, required: true, ...extra };
  },
  parsed<T>(flags: string, description: string, parse: (raw: string) => T, defaultValue: T): OptionSpec<T> {
    return { flags, description, parse, defaultValue };
  },
  optionalParsed<T>(flags: string, description: string, parse: (raw: string) => T): OptionSpec<T | undefined> {
    return { flags, description, parse };
  },
  /** `--allow <x>` given any number of times: every value, in order ([] when none). */
  list(flags: string, description: string, extra: { complete?: Completion } = {}): OptionSpec<string[]> {
    return { flags, description, repeatable: true, defaultValue: [], ...extra };
  },
  /** An option given any number of times (`--key A --key B`): the parsed values in order. */
  repeated<T>(flags: string, description: string, parse: (raw: string) => T, extra: { complete?: Completion } = {}): OptionSpec<T[]> {
    return { flags, description, parse: parse as unknown as (raw: string) => T[], defaultValue: [], repeatable: true, ...extra };
  },
  choice<const C extends string>(flags: string, description: string, choices: readonly C[], defaultValue: C): OptionSpec<C> {
    return { flags, description, defaultValue, choices };
  },
};

export function arg(name: string, description: string, extra: { optional?: boolean; variadic?: boolean; complete?: Completion } = {}): ArgSpec {
  return { name, description, required: !extra.optional, ...(extra.variadic ? { variadic: true } : {}), ...(extra.complete ? { complete: extra.complete } : {}) };
}
