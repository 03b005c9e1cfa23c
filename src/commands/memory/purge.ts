import { Args, Flags } from '@oclif/core';
import { AgentvmCommand, type Outcome } from '../../cli/base-command.js';
import { hostFlags, stateFlags } from '../../cli/flags.js';
import { chooseStateBackend } from '../../app/state-backend.js';
import { purgeMemory, type MemoryPurgeResult } from '../../app/memory-purge.js';

export default class MemoryPurge extends AgentvmCommand<MemoryPurgeResult> {
  static override summary = 'Delete the persistent memory of a workload that is no longer on the host.';
  static override description = `Every profile of a service workload keeps its memory in a persistent state directory (StateDirectory=agentvm-memory/<workload>/<profile>: $STATE_DIRECTORY in the unit) that survives restarts, new releases and rollbacks. Removing the workload from a host never deletes it: the plan says "its memory is kept at …". This command deletes it, for every profile and scope, and writes the deletion to the audit log.

It refuses while the host's lockfile still holds a unit or job of the workload: remove the workload from the host file's spec.workloads and apply first. The gateways' account in user scope is AGENTVM_SYSTEMD_USER, else the invoking account.`;
  static override args = {
    workload: Args.string({ required: true, description: 'The removed workload whose memory to delete.' }),
  };
  static override flags = {
    host: Flags.string({
      summary: 'Host the workload was removed from (its lockfile must no longer list it).',
      required: true,
      helpValue: 'NAME',
    }),
    root: hostFlags.root,
    ...stateFlags,
  };
  static override examples = ['<%= config.bin %> memory purge research-agent --host edge-1'];

  protected async execute(): Promise<Outcome<MemoryPurgeResult>> {
    const { args, flags } = await this.parse(MemoryPurge);
    await chooseStateBackend(flags);
    const result = await purgeMemory({ root: flags.root, host: flags.host, workload: args.workload });
    const text =
      result.removed.length > 0
        ? `Deleted the memory of ${result.workload}:\n${result.removed.map((d) => `  ${d}`).join('\n')}`
        : `Workload ${result.workload} has no memory on this host; nothing deleted.`;
    return { result, text };
  }
}
