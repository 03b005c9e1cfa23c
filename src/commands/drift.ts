import { AgentvmCommand, type Outcome } from '../cli/base-command.js';
import { hostFlags, repoFlags, stateFlags } from '../cli/flags.js';
import { chooseStateBackend } from '../app/state-backend.js';
import { makePlan } from '../app/plan.js';
import { ExitCode } from '../diagnostics/index.js';
import type { Plan } from '../engine/plan.js';
import { renderPlanText } from '../ui/plan-text.js';
import { styleFor } from '../ui/style.js';

export default class Drift extends AgentvmCommand<Plan> {
  static override summary = 'Check whether the live host still matches what agentvm last applied (exit 2 on drift).';
  static override description = `A refresh-only plan: reads the live host through the providers and compares it with the lockfile. Anything changed outside agentvm — a hand-edited release, a removed release directory, an unknown release agentvm owns — is reported with its address. Nothing is changed; \`agentvm apply\` repairs drift.

Made for scheduled jobs (examples/drift has a systemd timer): --json prints the plan document (schemas/plan.schema.json).

Exit codes: 0 no drift, 2 drift found, 1 error.`;
  static override examples = [
    { description: 'Check a host', command: '<%= config.bin %> drift --repo /srv/fleet --host edge-1' },
    { description: 'For a timer or monitoring', command: '<%= config.bin %> drift --host edge-1 --json' },
  ];
  static override flags = { ...repoFlags, ...hostFlags, ...stateFlags };

  protected async execute(): Promise<Outcome<Plan>> {
    const { flags } = await this.parse(Drift);
    await chooseStateBackend(flags, { repo: flags.repo, ref: flags.ref });
    const { plan } = await makePlan({
      repo: flags.repo,
      ref: flags.ref,
      root: flags.root,
      mode: 'refresh-only',
      ...(flags.host ? { host: flags.host } : {}),
    });
    const exitCode = plan.drift.length > 0 ? ExitCode.Changes : plan.summary.errors > 0 ? ExitCode.Error : ExitCode.Ok;
    return { result: plan, text: renderPlanText(plan, styleFor(process.stdout)), exitCode };
  }
}
