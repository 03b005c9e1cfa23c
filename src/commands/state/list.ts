import { AgentvmCommand, type Outcome } from '../../cli/base-command.js';
import { hostFlags, stateFlags } from '../../cli/flags.js';
import { chooseStateBackend } from '../../app/state-backend.js';
import { listState, type StateListResult } from '../../app/state-info.js';

export default class StateList extends AgentvmCommand<StateListResult> {
  static override summary =
    'List the hosts that have state under the root: lineage, serial, last commit, lease holder.';
  static override flags = { root: hostFlags.root, ...stateFlags };
  static override examples = ['<%= config.bin %> state list --root /tmp/agentvm-demo'];

  protected async execute(): Promise<Outcome<StateListResult>> {
    const { flags } = await this.parse(StateList);
    await chooseStateBackend(flags);
    const result = await listState(flags.root);
    const lines = result.hosts.length
      ? result.hosts.map(
          (h) =>
            `${h.host}\tserial ${h.serial}\tlineage ${h.lineage ?? '-'}\tcommit ${h.commit ?? '-'}\t${h.resources} resource(s)\t${h.lease ? `LOCKED by ${h.lease.who} (${h.lease.operation}, pid ${h.lease.pid}, lease ${h.lease.id}, until ${h.lease.expires})` : 'unlocked'}`,
        )
      : [`No state under ${flags.root}.`];
    return { result, text: lines.join('\n') };
  }
}
