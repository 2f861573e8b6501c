/**
 * What an approver notification says: the request body of one webhook delivery, rendered once
 * when it is queued (notify.ts), so every retry sends the same bytes and a receiver that drops
 * repeats by X-Hoop-Delivery sees nothing change.
 *
 *   format json   the request as hoop reviews --json shows it, plus the event and the commands
 *   format slack  Slack's incoming-webhook message, `{text, blocks}` (Block Kit), saying who asks
 *                 for what on which connection, and the commands to decide
 *
 * The event is the approval request as ApprovalService (approvals.ts) holds it. Its type is
 * spelled out here, field for field a subset of that one, so this module depends on no other part.
 */
import { formatDuration } from '../units.js';

export type NotifyEventType = 'approval.requested' | 'approval.decided';

/** An approval request (approvals.ts ApprovalRequest) and the event that made it worth telling. */
export interface NotifyEvent {
  event: NotifyEventType;
  id: string;
  kind: 'statement' | 'grant';
  connection: string;
  requester: { subject: string; email: string | null; groups: string[] };
  statement: string | null;
  parameters: unknown[];
  reason: string | null;
  rule: string | null;
  estimate: number | null;
  duration_ms: number | null;
  status: string;
  created_at: string;
  expires_at: string;
  approvals: { approver: string; decision: 'approve' | 'deny'; comment: string | null; at: string }[];
  min_approvals: number;
}

export function approveCommand(id: string): string {
  return `hoop review approve ${id}`;
}

export function denyCommand(id: string): string {
  return `hoop review deny ${id} --comment "<why>"`;
}

export function renderJsonBody(e: NotifyEvent): string {
  return JSON.stringify({
    event: e.event,
    id: e.id,
    kind: e.kind,
    connection: e.connection,
    requester: e.requester,
    statement: e.statement,
    parameters: e.parameters,
    rule: e.rule,
    estimate: e.estimate,
    duration_ms: e.duration_ms,
    reason: e.reason,
    status: e.status,
    created_at: e.created_at,
    expires_at: e.expires_at,
    approvals: e.approvals,
    min_approvals: e.min_approvals,
    approve: approveCommand(e.id),
    deny: denyCommand(e.id),
  });
}

/** Slack refuses a section text over 3000 characters; keep the statement well inside it. */
const SLACK_STATEMENT_MAX = 2_500;
const SLACK_FIELD_MAX = 1_900;

/** https://api.slack.com/messaging/webhooks — `text` is the fallback (notifications), `blocks` the message. */
export function renderSlackBody(e: NotifyEvent): string {
  const who = mrkdwn(e.requester.email ?? e.requester.subject);
  const on = mrkdwn(e.connection);
  const what = (bold: (s: string) => string): string => e.kind === 'grant'
    ? `access to ${bold(on)}${e.duration_ms !== null ? ` for ${formatDuration(e.duration_ms)}` : ''}`
    : `to run a statement on ${bold(on)}`;
  const b = (s: string): string => `*${s}*`;
  const headline = e.event === 'approval.requested'
    ? `${b(who)} asks ${what(b)}${e.rule ? ` (rule \`${code(e.rule)}\`)` : ''}: request \`${e.id}\``
    : `Request \`${e.id}\` by ${b(who)} on ${b(on)} is ${b(mrkdwn(e.status))}${decidedBy(e)}`;
  // The fallback shown in notifications and by clients without blocks: one plain line.
  const text = oneLine(e.event === 'approval.requested'
    ? `${who} asks ${what((s) => s)}: approve with ${approveCommand(e.id)}`
    : `Request ${e.id} by ${who} on ${on} is ${e.status}`);

  const blocks: unknown[] = [{ type: 'section', text: { type: 'mrkdwn', text: headline } }];
  if (e.statement !== null) blocks.push({ type: 'section', text: { type: 'mrkdwn', text: `\`\`\`${codeBlock(cut(e.statement, SLACK_STATEMENT_MAX))}\`\`\`` } });
  const fields = [
    ['Reason', e.reason === null ? null : mrkdwn(e.reason)],
    ['Parameters', e.parameters.length ? `\`${code(JSON.stringify(e.parameters))}\`` : null],
    ['Estimated rows', e.estimate === null ? null : String(e.estimate)],
    ['Approvals', `${e.approvals.filter((a) => a.decision === 'approve').length} of ${e.min_approvals}`],
    ['Expires', e.expires_at],
  ].filter((f): f is [string, string] => f[1] !== null);
  blocks.push({ type: 'section', fields: fields.map(([k, v]) => ({ type: 'mrkdwn', text: cut(`*${k}*\n${v}`, SLACK_FIELD_MAX) })) });
  if (e.event === 'approval.requested') {
    blocks.push({ type: 'section', text: { type: 'mrkdwn', text: `Approve: \`${approveCommand(e.id)}\`\nDeny: \`${denyCommand(e.id)}\`` } });
  }
  return JSON.stringify({ text, blocks });
}

function decidedBy(e: NotifyEvent): string {
  const last = e.approvals[e.approvals.length - 1];
  if (!last) return '';
  return ` (${last.decision === 'approve' ? 'approved' : 'denied'} by ${mrkdwn(last.approver)}${last.comment ? `: ${mrkdwn(last.comment)}` : ''})`;
}

/** Slack's mrkdwn gives &, < and > meaning (links, mentions): escape them in anything a user wrote. */
function mrkdwn(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

/** Inside `inline code`, a backtick would end it. */
function code(s: string): string {
  return mrkdwn(s).replace(/`/g, 'ˋ');
}

/** Inside a ``` block, only a triple backtick ends it: break those up with zero-width spaces. */
function codeBlock(s: string): string {
  return mrkdwn(s).replace(/```/g, '`\u200b`\u200b`');
}

function oneLine(s: string): string {
  return s.replace(/[\r\n]+/g, ' ');
}

function cut(s: string, max: number): string {
  return s.length <= max ? s : `${s.slice(0, max - 1)}…`;
}
