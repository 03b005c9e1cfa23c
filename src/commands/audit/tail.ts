import { Flags } from '@oclif/core';
import { AgentvmCommand, type Outcome } from '../../cli/base-command.js';
import { hostFlags } from '../../cli/flags.js';
import { tailAuditLog } from '../../app/state-info.js';
import type { AuditEvent } from '../../state/index.js';

export default class AuditTail extends AgentvmCommand<AuditEvent[]> {
  static override summary = 'Print the last audit records (who did what to which address, and the result).';
  static override flags = { root: hostFlags.root, lines: Flags.integer({ char: 'n', summary: 'How many records.', default: 20, min: 1 }) };
  static override examples = ['<%= config.bin %> audit tail -n 50 --root /tmp/agentvm-demo'];

  protected async execute(): Promise<Outcome<AuditEvent[]>> {
    const { flags } = await this.parse(AuditTail);
    const events = await tailAuditLog(flags.root, flags.lines);
    const text = events.length
      ? events.map((e) => `${e.seq}\t${e.time}\t${e.actor}\t${e.host}\t${e.event}\t${e.address ?? '-'}\t${e.action ?? ''}\t${e.result}${e.detail ? `\t${e.detail}` : ''}`).join('\n')
      : 'The audit log is empty.';
    return { result: events, text };
  }
}
