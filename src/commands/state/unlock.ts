import { Args, Flags } from '@oclif/core';
import { AgentvmCommand, type Outcome } from '../../cli/base-command.js';
import { hostFlags, stateFlags } from '../../cli/flags.js';
import { chooseStateBackend } from '../../app/state-backend.js';
import { unlockState } from '../../app/state-info.js';
import type { LeaseRecord } from '../../state/index.js';

export default class StateUnlock extends AgentvmCommand<LeaseRecord> {
  static override summary = "Break a host's lease lock by its id, when you are sure its holder is gone.";
  static override description =
    "Leases whose holder is provably gone (same machine, same PID namespace, process gone), or whose lease expired, are taken over automatically. Use this only for a lease that is neither (e.g. a holder on another machine, or in another container, that died). The id is the one a `state.locked` error prints: without --host, whichever lease under --root has it is broken — a host's lease or the audit log's append lock. The id must match the current lease, so you cannot break a lease someone just took. The break is written to the audit log.";
  static override args = {
    id: Args.string({ required: true, description: 'Lease id, as printed in the "locked" error or by `state list`.' }),
  };
  static override flags = {
    host: Flags.string({
      summary:
        "Host whose lease to break (default: whichever lease under --root has this id, the audit log's append lock included).",
    }),
    root: hostFlags.root,
    ...stateFlags,
  };
  static override examples = [
    '<%= config.bin %> state unlock 3f0c…-…',
    '<%= config.bin %> state unlock 3f0c…-… --host edge-1',
  ];

  protected async execute(): Promise<Outcome<LeaseRecord>> {
    const { args, flags } = await this.parse(StateUnlock);
    await chooseStateBackend(flags);
    const { lock, ...record } = await unlockState(flags.root, flags.host, args.id);
    return {
      result: record,
      text: `Broke lease ${record.id} of ${record.who} (${record.operation}, pid ${record.pid}): ${lock}.`,
    };
  }
}
