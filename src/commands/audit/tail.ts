import { Flags } from '@oclif/core';
import { AgentvmCommand, type Outcome } from '../../cli/base-command.js';
import { hostFlags, stateFlags } from '../../cli/flags.js';
import { chooseStateBackend } from '../../app/state-backend.js';
import { tailAuditLog } from '../../app/state-info.js';
import type { AuditEvent } from '../../state/index.js';

export default class AuditTail extends AgentvmCommand<AuditEvent[]> {
  static override summary = 'Print the last audit records (who did what to which address, and the result).';
  static override flags = {
    root: hostFlags.root,
    ...stateFlags,
    lines: Flags.integer({ char: 'n', summary: 'How many records.', default: 20, min: 1 }),
  };
  static override examples = ['<%= config.bin %> audit tail -n 50 --root /tmp/agentvm-demo'];

  protected async execute(): Promise<Outcome<AuditEvent[]>> {
    const { flags } = await this.parse(AuditTail);
    await chooseStateBackend(flags);
    const events = await tailAuditLog(flags.root, flags.lines);
    const text = events.length
      ? events
          .map(
            (e) =>
              `${e.seq}\t${e.time}\t${e.actor}\t${e.host}\t${e.event}\t${e.address ?? e.gate?.preview ?? '-'}\t${e.action ?? ''}\t${e.result}${describe(e) ? `\t${describe(e)}` : ''}`,
          )
          .join('\n')
      : 'The audit log is empty.';
    return { result: events, text };
  }
}

/** The human part of a record: its detail, and for gate events who, which grant, from where, what, and why. */
function describe(e: AuditEvent): string {
  const g = e.gate;
  const gate = g
    ? [
        g.identity,
        g.grantId,
        g.source ? `from ${g.source}` : undefined,
        g.method && g.path ? `${g.method} ${g.path}` : undefined,
        g.status === undefined ? undefined : String(g.status),
        g.reason,
      ]
        .filter((x): x is string => x !== undefined && x !== '')
        .join(' ')
    : '';
  return [gate, e.detail ?? ''].filter((x) => x !== '').join(' — ');
}
