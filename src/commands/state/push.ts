import { Flags } from '@oclif/core';
import { AgentvmCommand, type Outcome } from '../../cli/base-command.js';
import { hostFlags, stateFlags } from '../../cli/flags.js';
import { postgresSelection, transferState } from '../../app/state-remote.js';
import type { TransferResult } from '../../state/transfer.js';

export default class StatePush extends AgentvmCommand<TransferResult> {
  static override summary =
    "Move a host's state from the local files under --root into PostgreSQL, with its audit chain.";
  static override description =
    "The lockfile keeps its lineage and serial (saved plans stay valid) and the audit records are copied verbatim (same hashes), so `agentvm audit verify` checks the very history written locally. The target's chain must be empty or a prefix of the local one; nothing is ever rewritten. An interrupted apply must be finished first.";
  static override flags = {
    host: Flags.string({ required: true, summary: 'Host whose state to move.', helpValue: 'NAME' }),
    root: hostFlags.root,
    'state-url': stateFlags['state-url'],
  };
  static override examples = ['<%= config.bin %> state push --host edge-1 --root /'];

  protected async execute(): Promise<Outcome<TransferResult>> {
    const { flags } = await this.parse(StatePush);
    const r = await transferState('push', flags.root, flags.host, postgresSelection(flags));
    return {
      result: r,
      text: `push: host ${r.host} (lineage ${r.lineage ?? 'none'}, serial ${r.serial}) from ${r.from} to ${r.to}; ${r.auditRecordsCopied} of ${r.auditRecordsTotal} audit record(s) copied, the chain verifies.`,
    };
  }
}
