/** `hoop completion bash|zsh|fish`, and the hidden `hoop __complete` that scripts call for names. */
import { GatewayApi } from '../../client/api.js';
import { arg, defineCommand, type CommandGroup } from '../command.js';
import { resolveToken } from '../credentials.js';
import { SHELLS, completionModel, generateCompletion, type Shell } from '../completion.js';

export const completionCommand = defineCommand({
  name: 'completion',
  summary: 'Print the shell completion script',
  description:
    'Print the completion script for bash, zsh or fish. The scripts complete commands, flags,\n' +
    'flag values and connection names (asked from the gateway, quietly, when you press Tab).',
  args: [arg('shell', 'bash, zsh or fish', { complete: { choices: SHELLS } })],
  examples: [
    'hoop completion bash > ~/.local/share/bash-completion/completions/hoop',
    'hoop completion zsh > "${fpath[1]}/_hoop"',
    'hoop completion fish > ~/.config/fish/completions/hoop.fish',
    'source <(hoop completion bash)',
  ],
  async run(ctx, { args }) {
    const { commandTree, GLOBAL_OPTIONS, VERSION_FLAGS } = await import('../program.js');
    const model = completionModel(await commandTree(), GLOBAL_OPTIONS, VERSION_FLAGS);
    ctx.io.stdout.write(generateCompletion(args.shell as Shell, model));
  },
});

/** Values for completion scripts: one per line, nothing on stderr, exit 0 even when the gateway is away. */
export const completeCommand = defineCommand({
  name: '__complete',
  summary: 'values for shell completion',
  hidden: true,
  args: [arg('kind', 'what to list', { complete: { choices: ['connections'] } })],
  async run(ctx) {
    // A short timeout: a Tab press must not hang on an unreachable gateway.
    let api: GatewayApi | undefined;
    try {
      const gateway = ctx.gateway();
      api = new GatewayApi({ gateway, timeoutMs: 3_000, token: () => resolveToken(gateway, ctx.env) });
      const list = await api.connections();
      for (const c of list) if (c.allowed) ctx.io.print(c.name);
    } catch {
      // Completion must never print errors into the user's command line.
    } finally {
      await api?.close();
    }
  },
});

export const commands: CommandGroup['commands'] = [completionCommand, completeCommand];
