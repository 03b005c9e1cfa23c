import { Args } from '@oclif/core';
import { AgentvmCommand, type Outcome } from '../../cli/base-command.js';
import { hostFlags, stateFlags } from '../../cli/flags.js';
import { chooseStateBackend } from '../../app/state-backend.js';
import { showState } from '../../app/state-info.js';
import type { Lockfile } from '../../state/index.js';

export default class StateShow extends AgentvmCommand<Lockfile> {
  static override summary =
    "Show a host's lockfile: what was applied, from which commit, and each workload's rollback target.";
  static override args = { host: Args.string({ required: true, description: 'Host name.' }) };
  static override flags = { root: hostFlags.root, ...stateFlags };
  static override examples = [
    '<%= config.bin %> state show edge-1 --root /tmp/agentvm-demo',
    '<%= config.bin %> state show edge-1 --json',
  ];

  protected async execute(): Promise<Outcome<Lockfile>> {
    const { args, flags } = await this.parse(StateShow);
    await chooseStateBackend(flags);
    const lock = await showState(flags.root, args.host);
    const lines = [
      `Host ${lock.host}: lineage ${lock.lineage}, serial ${lock.serial}, commit ${lock.commit ?? '-'}, updated ${lock.updatedAt}`,
    ];
    for (const [address, r] of Object.entries(lock.resources).sort())
      if (r) lines.push(`  ${address}\t${r.identity}\t${r.digest}\tfrom ${r.commit ?? '-'} at ${r.appliedAt}`);
    for (const [name, w] of Object.entries(lock.workloads).sort()) {
      if (!w) continue;
      lines.push(
        `  workload ${name}: release ${w.release?.releaseId ?? '-'}; rollback target ${w.rollback ? `${w.rollback.releaseId}${w.rollback.foreign ? ' (foreign)' : ''}` : '-'}; ${w.rehearsals?.length ?? 0} rehearsal(s)`,
      );
    }
    return { result: lock, text: lines.join('\n') };
  }
}
