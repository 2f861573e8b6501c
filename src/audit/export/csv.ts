/**
 * `csv`: one row per statement (summary.ts: a query.start joined with its query.end), RFC 4180
 * with the header first. The rows are those of the filtered events; approval events are always
 * fed too, so a statement's approvers are named even when the filter is another user.
 */
import type { AuditEvent } from '../event.js';
import { StatementSummarizer, SUMMARY_CSV_HEADER, summaryCsvLine } from '../summary.js';

export class CsvExport {
  private readonly summarizer = new StatementSummarizer();
  readonly header = SUMMARY_CSV_HEADER;
  /** Rows written so far. */
  statements = 0;

  /** Lines completed by this event (in range and, unless it is an approval event, matching the filters). */
  add(e: AuditEvent, matches: boolean): string {
    if (!matches && !e.type.startsWith('approval.')) return '';
    let out = '';
    for (const row of this.summarizer.add(e)) {
      out += summaryCsvLine(row);
      this.statements++;
    }
    return out;
  }

  /** Statements whose query.end is not in the range (outcome unknown). */
  finish(): string {
    const rows = this.summarizer.finish();
    this.statements += rows.length;
    return rows.map(summaryCsvLine).join('');
  }
}
