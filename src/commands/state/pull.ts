import { Flags } from '@oclif/core';
import { AgentvmCommand, type Outcome } from '../../cli/base-command.js';
import { hostFlags, stateFlags } from '../../cli/flags.js';
import { postgresSelection, transferState } from '../../app/state-remote.js';
import type { TransferResult } from '../../state/transfer.js';

export default class StatePull extends AgentvmCommand<TransferResult> {
  static override summary =
    "Copy a host's state from PostgreSQL into the local files under --root, with its audit chain.";
  static override description =
    "The reverse of `state push`: for a host leaving the fleet, or a local copy to inspect. The local audit log must be empty or a prefix of the host's chain; only the missing records are appended.";
  static override flags = {
    host: Flags.string({ required: true, summary: 'Host whose state to move.', helpValue: 'NAME' }),
    root: hostFlags.root,
    'state-url': stateFlags['state-url'],
  };
  static override examples = ['<%= config.bin %> state pull --host edge-1 --root /'];

  protected async execute(): Promise<Outcome<TransferResult>> {
    const { flags } = await this.parse(StatePull);
    const r = await transferState('pull', flags.root, flags.host, postgresSelection(flags));
    return {
      result: r,
      text: `pull: host ${r.host} (lineage ${r.lineage ?? 'none'}, serial ${r.serial}) from ${r.from} to ${r.to}; ${r.auditRecordsCopied} of ${r.auditRecordsTotal} audit record(s) copied, the chain verifies.`,
    };
  }
}
