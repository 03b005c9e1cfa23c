import { Flags } from '@oclif/core';
import { AgentvmCommand, type Outcome } from '../../cli/base-command.js';
import { hostFlags, repoFlags, stateFlags } from '../../cli/flags.js';
import { fleetPlan, type FleetPlanResult } from '../../app/fleet.js';
import { chooseStateBackend } from '../../app/state-backend.js';

export default class FleetPlan extends AgentvmCommand<FleetPlanResult> {
  static override summary =
    'What one commit does across the fleet: which hosts change, the worst effect, where the rollout stands.';
  static override description =
    "Makes every host's remote plan (`agentvm plan --remote`) from the facts its agent published, without access to any host. Hosts that never published are listed as such.";
  static override flags = {
    ...repoFlags,
    root: hostFlags.root,
    ...stateFlags,
    exclude: Flags.string({
      summary: 'Leave this host out (repeatable).',
      multiple: true,
      default: [],
      helpValue: 'HOST',
    }),
  };
  static override examples = [
    '<%= config.bin %> fleet plan --ref origin/main --state-backend postgres',
    '<%= config.bin %> fleet plan --exclude edge-7 --json',
  ];

  protected async execute(): Promise<Outcome<FleetPlanResult>> {
    const { flags } = await this.parse(FleetPlan);
    await chooseStateBackend(
      { 'state-backend': flags['state-backend'] ?? 'postgres', 'state-url': flags['state-url'] },
      { repo: flags.repo, ref: flags.ref },
    );
    const r = await fleetPlan({ repo: flags.repo, ref: flags.ref, root: flags.root, exclude: flags.exclude });
    const lines = [
      `Commit ${r.commit ?? 'WORKTREE'}: ${r.changing.length} of ${r.hosts.length} host(s) change; worst action ${r.worstAction}, worst effect ${r.worstEffect}.`,
      ...r.hosts.map(
        (h) =>
          `  ${h.host}\twave ${h.wave}\t${h.published ? `${h.changes} change(s), ${h.worstAction}/${h.worstEffect}${h.errors ? `, ${h.errors} error(s)` : ''}, facts ${h.ageSeconds}s old` : 'never published'}\t${h.rollout}`,
      ),
    ];
    return { result: r, text: lines.join('\n') };
  }
}
