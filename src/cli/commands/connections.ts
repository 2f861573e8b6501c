/** `hoop connections`: what this identity may connect to, and on what terms. */
import type { ConnectionInfo } from '../../api/types.js';
import { defineCommand, type CommandGroup } from '../command.js';
import type { CommandContext } from '../context.js';
import { printJson, printTable } from '../output.js';

export const connectionsCommand = defineCommand({
  name: 'connections',
  summary: 'List the connections this identity may use',
  description:
    'List the gateway\'s connections: type, database, whether you may connect (and which groups may;\n' +
    '"by grant" where you may connect only inside an approved access grant — ask with\n' +
    '`hoop request <name> --duration 1h --reason …` — and "grant until <time>" while one is open),\n' +
    'whether statements may be held for approval (APPROVAL: how many access rules apply to you, and\n' +
    '"may hold" when one of them requires approval), and whether results are masked for you: MASKING is "on"\n' +
    '(protected columns and content detectors apply), "exempt" (the connection masks, but one of\n' +
    'your groups sees clear values; that is recorded) or "off". Where a connection is reached through a\n' +
    '`hoop agent`, AGENT says whether one is connected to this gateway: "dc1 online (2 links)" or "dc1 offline".',
  examples: ['hoop connections', 'hoop connections --json | jq -r \'.[] | select(.allowed) | .name\''],
  async run(ctx) {
    const list = await ctx.api().connections();
    if (ctx.globals.json) return printJson(ctx.io, list);
    renderConnections(ctx, list);
  },
});

export function renderConnections(ctx: CommandContext, list: ConnectionInfo[]): void {
  const { io } = ctx;
  if (list.length === 0) {
    io.info(`No connections on ${ctx.gateway()} for this identity.`);
    return;
  }
  const cs = io.out;
  // The column only where some connection is reached through an agent.
  const agents = list.some((c) => c.agent);
  printTable(
    io,
    ['NAME', 'TYPE', 'DATABASE', 'ACCESS', 'GROUPS', 'APPROVAL', 'MASKING', ...(agents ? ['AGENT'] : [])],
    list.map((c) => [
      { text: c.name, style: cs.bold },
      c.type,
      c.database,
      accessCell(c, cs),
      c.access.join(','),
      approvalCell(c, cs),
      maskingCell(c, cs),
      ...(agents ? [agentCell(c, cs)] : []),
    ]),
  );
}

/**
 * "dc1 online (2 links)", "dc1 offline", "direct" for a connection reached without an agent, or
 * with `workers: N` "dc1 on 1 of 2 workers" while only some workers hold a link (sessions that
 * land on the others fail).
 */
export function agentSummary(c: ConnectionInfo): string {
  if (!c.agent) return 'direct';
  const { name, online, links, workers } = c.agent;
  if (online) return `${name} online (${links} link${links === 1 ? '' : 's'})`;
  return workers && workers.linked > 0 ? `${name} on ${workers.linked} of ${workers.count} workers` : `${name} offline`;
}

function agentCell(c: ConnectionInfo, cs: CommandContext['io']['out']) {
  const text = agentSummary(c);
  if (!c.agent) return text;
  if (c.agent.online) return { text, style: cs.green };
  return (c.agent.workers?.linked ?? 0) > 0 ? { text, style: cs.yellow } : { text, style: cs.red };
}

/**
 * "allowed", "denied", or for a connection open to you only by grant: "by grant" (none open now:
 * `hoop request <name> --duration …`) or "grant until <time>".
 */
export function accessSummary(c: ConnectionInfo): string {
  if (c.grant?.required) return c.grant.active_until ? `grant until ${c.grant.active_until}` : 'by grant';
  return c.allowed ? 'allowed' : 'denied';
}

function accessCell(c: ConnectionInfo, cs: CommandContext['io']['out']) {
  const text = accessSummary(c);
  if (c.grant?.required) return { text, style: cs.yellow };
  return c.allowed ? { text, style: cs.green } : { text, style: cs.red };
}

/** "3 rules, may hold", "1 rule" or "none". A gateway too old to list rules says only whether statements may be held. */
export function approvalSummary(c: ConnectionInfo): string {
  if (!c.approval) return c.requires_approval ? 'may hold' : 'none';
  const n = c.approval.rules.length;
  if (n === 0) return 'none';
  return `${n} rule${n === 1 ? '' : 's'}${c.approval.holds ? ', may hold' : ''}`;
}

function approvalCell(c: ConnectionInfo, cs: CommandContext['io']['out']) {
  const text = approvalSummary(c);
  return c.approval?.holds ?? c.requires_approval ? { text, style: cs.yellow } : text;
}

/** "on", "exempt" or "off". A gateway too old to say has no masking (it refused the config key). */
export function maskingState(c: ConnectionInfo): 'on' | 'exempt' | 'off' {
  if (!c.masking?.enabled) return 'off';
  return c.masking.exempt ? 'exempt' : 'on';
}

function maskingCell(c: ConnectionInfo, cs: CommandContext['io']['out']) {
  const state = maskingState(c);
  if (state === 'on') return { text: state, style: cs.green };
  if (state === 'exempt') return { text: state, style: cs.yellow };
  return state;
}

export const commands: CommandGroup['commands'] = [connectionsCommand];
