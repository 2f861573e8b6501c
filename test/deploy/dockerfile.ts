/**
 * A Dockerfile reader for the deploy test (no Docker engine here): instructions as the builder
 * splits them — parser directives, comments, `\` line continuations, JSON (exec) and shell
 * forms, `--flag=value` options — grouped into build stages. It refuses what it does not know
 * (an unknown instruction, a malformed JSON form), so a typo fails the test instead of passing it.
 */

export const INSTRUCTIONS = new Set([
  'FROM', 'RUN', 'CMD', 'LABEL', 'EXPOSE', 'ENV', 'ADD', 'COPY', 'ENTRYPOINT', 'VOLUME',
  'USER', 'WORKDIR', 'ARG', 'ONBUILD', 'STOPSIGNAL', 'HEALTHCHECK', 'SHELL',
]);

export interface Instruction {
  keyword: string;
  /** `--name=value` options before the arguments (COPY --from, HEALTHCHECK --interval, …). */
  flags: Record<string, string>;
  /** The arguments: a JSON array's items (exec form), or the words of the shell form. */
  args: string[];
  /** Exec form (a JSON array) or not. */
  json: boolean;
  /** The arguments as written, continuations joined. */
  raw: string;
  line: number;
}

export interface Stage {
  /** `FROM <base> [AS <name>]`. */
  base: string;
  name: string | null;
  index: number;
  instructions: Instruction[];
}

export interface Dockerfile {
  directives: Record<string, string>;
  stages: Stage[];
}

export function parseDockerfile(text: string): Dockerfile {
  const lines = text.split('\n');
  const directives: Record<string, string> = {};
  const instructions: Instruction[] = [];
  let i = 0;
  // Parser directives: `# key=value` lines before anything else.
  for (; i < lines.length; i++) {
    const m = /^#\s*([a-z]+)\s*=\s*(\S+)\s*$/i.exec(lines[i]!);
    if (!m) break;
    directives[m[1]!.toLowerCase()] = m[2]!;
  }
  while (i < lines.length) {
    const start = i;
    let line = lines[i++]!;
    if (/^\s*(#|$)/.test(line)) continue;
    // A trailing backslash continues the instruction; comment lines inside it are dropped.
    while (/\\\s*$/.test(line) && i < lines.length) {
      let next = lines[i++]!;
      while (/^\s*#/.test(next) && i < lines.length) next = lines[i++]!;
      line = line.replace(/\\\s*$/, ' ') + next;
    }
    const m = /^\s*([A-Za-z]+)(?:\s+(.*))?$/.exec(line);
    if (!m) throw new Error(`line ${start + 1}: not an instruction: ${line.slice(0, 60)}`);
    const keyword = m[1]!.toUpperCase();
    if (!INSTRUCTIONS.has(keyword)) throw new Error(`line ${start + 1}: unknown instruction ${m[1]}`);
    let rest = (m[2] ?? '').trim();
    const flags: Record<string, string> = {};
    for (let f = /^--([a-z-]+)=(\S+)\s*/.exec(rest); f; f = /^--([a-z-]+)=(\S+)\s*/.exec(rest)) {
      flags[f[1]!] = f[2]!;
      rest = rest.slice(f[0].length);
    }
    let args: string[];
    let json = false;
    if (rest.startsWith('[')) {
      let parsed: unknown;
      try {
        parsed = JSON.parse(rest);
      } catch {
        throw new Error(`line ${start + 1}: ${keyword}: malformed JSON array: ${rest.slice(0, 60)}`);
      }
      if (!Array.isArray(parsed) || !parsed.every((a) => typeof a === 'string')) throw new Error(`line ${start + 1}: ${keyword}: expected a JSON array of strings`);
      args = parsed;
      json = true;
    } else {
      args = rest.split(/\s+/).filter(Boolean);
    }
    instructions.push({ keyword, flags, args, json, raw: rest, line: start + 1 });
  }
  const stages: Stage[] = [];
  for (const ins of instructions) {
    if (ins.keyword === 'FROM') {
      const [base, as, name, ...extra] = ins.args;
      if (!base || (as !== undefined && (as.toUpperCase() !== 'AS' || !name)) || extra.length > 0) throw new Error(`line ${ins.line}: FROM <image> [AS <name>], got ${ins.raw}`);
      stages.push({ base, name: name ?? null, index: stages.length, instructions: [] });
    } else if (stages.length === 0) {
      if (ins.keyword !== 'ARG') throw new Error(`line ${ins.line}: ${ins.keyword} before the first FROM`);
    } else {
      stages.at(-1)!.instructions.push(ins);
    }
  }
  if (stages.length === 0) throw new Error('no FROM');
  return { directives, stages };
}

/** A stage by name or index, as `COPY --from=` and `FROM <stage>` name it. */
export function stageNamed(file: Dockerfile, ref: string): Stage | undefined {
  return file.stages.find((s) => s.name === ref) ?? (/^\d+$/.test(ref) ? file.stages[Number(ref)] : undefined);
}

/** The WORKDIR in force at instruction `at` of a stage (absolute; `/` when none). */
export function workdirAt(stage: Stage, at: Instruction): string {
  let dir = '/';
  for (const ins of stage.instructions) {
    if (ins === at) break;
    if (ins.keyword === 'WORKDIR') dir = ins.args[0]!.startsWith('/') ? ins.args[0]! : `${dir.replace(/\/$/, '')}/${ins.args[0]}`;
  }
  return dir;
}

/**
 * Whether `path` (relative to the build context, no leading `./`) is sent to the builder under
 * the .dockerignore `patterns`: the last pattern that matches wins, `!` re-includes; `*` matches
 * within one path segment, `**` across segments. A pattern matching a parent directory matches
 * everything under it.
 */
export function includedByDockerignore(path: string, patterns: string[]): boolean {
  let included = true;
  for (const raw of patterns) {
    const negate = raw.startsWith('!');
    const pattern = (negate ? raw.slice(1) : raw).replace(/^\.?\//, '').replace(/\/$/, '');
    const re = new RegExp(`^${pattern.split('**').map((part) => part.split('*').map(escape).join('[^/]*')).join('.*')}(/.*)?$`);
    if (re.test(path)) included = negate;
  }
  return included;
}

function escape(s: string): string {
  return s.replace(/[.+?^${}()|[\]\\]/g, '\\$&');
}
