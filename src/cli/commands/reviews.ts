/**
 * Approvals from the command line: reviewers list and decide requests (`hoop reviews`,
 * `hoop review approve|deny`); requesters ask ahead of time (`hoop request`) and wait.
 *
 * Exit codes (exit-codes.ts): 5 when the gateway refuses a decision (your own request, not an
 * approver); 6 when a request ends denied, expired or cancelled; 8 when it is still pending
 * (`--no-wait`, or Ctrl-C while waiting: the request stays).
 */
import { APPROVAL_REQUEST_ID, type ApprovalRequest } from '../../api/types.js';
import { HoopError, UsageError } from '../../errors.js';
import { formatDuration } from '../../units.js';
import { arg, defineCommand, opt, type CommandGroup } from '../command.js';
import type { CommandContext } from '../context.js';
import { ExitCode } from '../exit-codes.js';
import type { ColorScheme } from '../iostreams.js';
import { printJson, printTable, sanitize } from '../output.js';
import { startSpinner } from '../spinner.js';
import { formatRelative, formatTimestamp } from '../time.js';

/** How often `hoop request` asks the gateway whether its request was decided. */
const REQUEST_POLL_MS = 1_000;

function parseRequestId(raw: string): string {
  const id = raw.trim().toLowerCase();
  if (!APPROVAL_REQUEST_ID.test(id)) throw new UsageError(`invalid request id '${raw.slice(0, 40)}': expected r- and 8 hex digits, e.g. r-7f3a09c1`);
  return id;
}

export const reviewsCommand = defineCommand({
  name: 'reviews',
  summary: 'List approval requests you may decide',
  description:
    'List the pending approval requests you may decide (you are in one of their approver groups, or an\n' +
    'admin), newest first: held statements and requests made ahead of time. Your own requests are\n' +
    'never listed for you to decide. --all lists every request you may see, in any status:\n' +
    'pending, approved, denied, expired, cancelled or used.',
  options: {
    all: opt.flag('--all', 'every request you may see, decided ones too'),
  },
  examples: ['hoop reviews', 'hoop reviews --all --json | jq \'.[] | select(.status == "pending") | .id\''],
  async run(ctx, { options }) {
    const list = await ctx.api().reviews({ all: options.all });
    if (ctx.globals.json) return printJson(ctx.io, list);
    renderReviews(ctx, list, options.all);
  },
});

export function renderReviews(ctx: CommandContext, list: ApprovalRequest[], all: boolean): void {
  const { io } = ctx;
  if (list.length === 0) {
    io.info(all ? 'No requests.' : 'No requests wait for your decision.');
    return;
  }
  const cs = io.out;
  const now = ctx.now();
  const tty = io.isStdoutTTY;
  printTable(
    io,
    [{ title: 'ID', keep: true }, 'AGE', 'CONNECTION', 'REQUESTER', 'RULE', 'STATEMENT', 'STATUS', { title: 'REASON', optional: true }],
    list.map((r) => [
      { text: r.id, style: cs.cyan },
      tty ? formatRelative(r.created_at, now) : r.created_at,
      r.connection,
      r.requester.email ?? r.requester.subject,
      r.rule ?? (r.session_id ? '' : 'ahead of time'),
      oneLine(r),
      statusCell(r, cs),
      r.reason ?? '',
    ]),
  );
  if (!all) io.info(io.err.dim('Decide with `hoop review approve <id>` or `hoop review deny <id> --comment "…"`.'));
}

/** The statement on one line (whitespace runs collapsed), or what a grant asks for. */
function oneLine(r: ApprovalRequest): string {
  if (r.kind === 'grant') return `access for ${r.duration_ms !== null ? formatDuration(r.duration_ms) : '?'}`;
  const params = r.parameters.length ? ` [${r.parameters.map((p) => JSON.stringify(p)).join(', ')}]` : '';
  return `${(r.statement ?? '').replace(/\s+/g, ' ').trim()}${params}`;
}

function statusCell(r: ApprovalRequest, cs: ColorScheme) {
  const approvals = r.approvals.filter((a) => a.decision === 'approve').length;
  const text = r.status === 'pending' && r.min_approvals > 1 ? `pending ${approvals}/${r.min_approvals}` : r.status;
  const style = { pending: cs.yellow, approved: cs.green, used: cs.green, denied: cs.red, expired: cs.dim, cancelled: cs.dim }[r.status];
  return { text, style };
}

const decideOptions = (required: boolean) => ({
  comment: opt.text('--comment <text>', required ? 'why (required to deny); the requester sees it and it is recorded' : 'a note for the requester; recorded'),
});

function decideCommand(decision: 'approve' | 'deny') {
  return defineCommand({
    name: decision,
    summary: decision === 'approve' ? 'Approve a pending request: the held statement runs' : 'Deny a pending request (with --comment saying why)',
    description:
      (decision === 'approve'
        ? 'Approve a request. With enough approvals (min_approvals distinct approvers) the held statement\nruns on whichever gateway holds it, once; a request made ahead of time may then be used once.\n'
        : 'Deny a request: one deny denies, and the requester gets your comment.\n') +
      'You must be in one of its approver groups (or an admin), and never its requester: the gateway\nrefuses otherwise (exit 5). Decisions are final and recorded with your identity and comment.',
    args: [arg('id', 'request id, e.g. r-7f3a09c1 (from `hoop reviews` or the NOTICE)')],
    options: decideOptions(decision === 'deny'),
    examples: decision === 'approve' ? ['hoop review approve r-7f3a09c1', 'hoop review approve r-7f3a09c1 --comment "ok for INC-42"'] : ['hoop review deny r-7f3a09c1 --comment "add a WHERE clause"'],
    async run(ctx, { args, options }) {
      const id = parseRequestId(String(args.id));
      const comment = options.comment?.trim() || undefined;
      if (decision === 'deny' && !comment) throw new UsageError('a deny needs --comment saying why', { hint: `hoop review deny ${id} --comment "…"` });
      const r = await ctx.api().decide(id, decision, comment);
      if (ctx.globals.json) return printJson(ctx.io, r);
      const { io } = ctx;
      const cs = io.err;
      if (r.status === 'approved' || r.status === 'used') io.info(`${cs.green('✓')} Approved ${id}: ${describe(r)}.`);
      else if (r.status === 'denied') io.info(`${cs.red('✗')} Denied ${id}: ${describe(r)}.`);
      else {
        const n = r.approvals.filter((a) => a.decision === 'approve').length;
        io.info(`${cs.green('✓')} Approval recorded for ${id} (${n} of ${r.min_approvals}); it waits for another approver.`);
      }
    },
  });
}

function describe(r: ApprovalRequest): string {
  return `${sanitize(r.requester.email ?? r.requester.subject)} on ${r.connection}: ${sanitize(oneLine(r)).slice(0, 120)}`;
}

export const reviewCommand = defineCommand({
  name: 'review',
  summary: 'Approve or deny an approval request',
  subcommands: [decideCommand('approve'), decideCommand('deny')],
});

export const requestCommand = defineCommand({
  name: 'request',
  summary: 'Ask ahead of time for a statement (or time-bound access) that needs approval',
  description:
    'Ask the connection\'s approvers ahead of time. With --query, once approved exactly that statement\n' +
    '(the same text up to whitespace, comments and keyword case) runs once, without a hold, in a session\n' +
    'of yours on that connection, within the approval\'s window. With --duration, ask for time-bound\n' +
    'access (e.g. 2h, at most the connection\'s grant_max).\n\n' +
    'Waits for the decision (a spinner on a terminal): exit 0 approved, 6 denied or expired. With\n' +
    '--no-wait it prints the request id on stdout and exits 8; Ctrl-C while waiting exits 8 too (the\n' +
    'request stays pending).',
  args: [arg('connection', 'connection name (see `hoop connections`)', { complete: 'connections' })],
  options: {
    query: opt.text('--query <sql>', 'the statement to have approved'),
    duration: opt.text('--duration <span>', 'time-bound access instead, e.g. 2h'),
    reason: opt.requiredText('--reason <text>', 'why; approvers see it and it is recorded'),
    wait: { flags: '--no-wait', description: 'print the request id and exit 8 instead of waiting', defaultValue: true },
  },
  examples: [
    'hoop request bank --query "DELETE FROM accounts WHERE closed_at < now() - interval \'7 years\'" --reason "INC-42"',
    'id=$(hoop request bank --query "SELECT * FROM customers" --reason "audit export" --no-wait)',
    'hoop request bank --duration 2h --reason "on call"',
  ],
  async run(ctx, { args, options }) {
    if ((options.query === undefined) === (options.duration === undefined)) throw new UsageError('give either --query SQL or --duration SPAN');
    const api = ctx.api();
    const connection = String(args.connection);
    const created = await api.createRequest(connection, {
      reason: options.reason,
      ...(options.query !== undefined ? { query: options.query } : { duration: String(options.duration) }),
    });
    const { io } = ctx;
    if (!options.wait) {
      if (ctx.globals.json) printJson(io, created);
      else io.print(created.id);
      io.info(io.err.dim(`Request ${created.id} waits for ${created.approvers.join(', ') || 'an admin'} until ${formatTimestamp(created.expires_at)}.`));
      return ExitCode.APPROVAL_PENDING;
    }
    const final = await waitForDecision(ctx, created);
    if (final === null) {
      io.info(`Request ${created.id} is still pending; it stays until ${formatTimestamp(created.expires_at)}.`);
      return ExitCode.APPROVAL_PENDING;
    }
    if (ctx.globals.json) printJson(io, final);
    const by = final.approvals.filter((a) => a.decision === (final.status === 'denied' ? 'deny' : 'approve'));
    const names = by.map((a) => `${sanitize(a.approver)}${a.comment ? ` (${sanitize(a.comment)})` : ''}`).join(', ');
    if (final.status === 'approved' || final.status === 'used') {
      const use = final.kind === 'grant' ? `access to ${final.connection} until` : `run it once on ${final.connection} before`;
      io.info(`${io.err.green('✓')} Request ${final.id} approved by ${names}; ${use} ${formatTimestamp(final.expires_at)}.`);
      return ExitCode.OK;
    }
    const why = final.status === 'denied' ? `denied by ${names}` : final.status === 'expired' ? 'expired: nobody decided in time' : final.status;
    throw new HoopError('HOOP_APPROVAL_DENIED', `request ${final.id} was ${why}`);
  },
});

/** Polls the request until it is decided; null if interrupted (SIGINT/SIGTERM) first. */
async function waitForDecision(ctx: CommandContext, created: ApprovalRequest): Promise<ApprovalRequest | null> {
  const started = Date.now();
  const text = () => `Waiting for approval of ${created.id} by ${created.approvers.join(', ') || 'an admin'} (${Math.floor((Date.now() - started) / 1_000)}s; Ctrl-C to stop waiting)`;
  // Listen for Ctrl-C before saying it stops the wait: a signal in between would kill the process.
  let interrupted = false;
  const signal = ctx.shutdownSignal().then(() => {
    interrupted = true;
  });
  const spinner = startSpinner(ctx.io, text());
  try {
    for (;;) {
      const r = await ctx.api().request(created.id);
      if (r.status !== 'pending') return r;
      spinner.update(text());
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([new Promise<void>((resolve) => (timer = setTimeout(resolve, REQUEST_POLL_MS))), signal]);
      clearTimeout(timer);
      if (interrupted) return null;
    }
  } finally {
    spinner.stop();
  }
}

export const commands: CommandGroup['commands'] = [reviewsCommand, reviewCommand, requestCommand];
