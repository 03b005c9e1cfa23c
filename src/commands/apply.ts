import { Args, Flags } from '@oclif/core';
import { AgentvmCommand, type Outcome } from '../cli/base-command.js';
import { hostFlags, repoFlags } from '../cli/flags.js';
import { exitCodeFor, runApply, type ApplyResult } from '../app/apply.js';
import { userError } from '../diagnostics/index.js';
import { renderApplyEvent, renderApplySummary } from '../ui/apply-text.js';
import { styleFor } from '../ui/style.js';

export default class ApplyCommand extends AgentvmCommand<ApplyResult> {
  static override summary = 'Carry out a plan on the host: a saved plan file, or a fresh plan with --auto-approve.';
  static override description = `Dry-run by default: apply needs a plan file made by \`agentvm plan --out\` (applied exactly as reviewed, refused if stale) or --auto-approve (plan and apply in one go). It holds the host's lease lock for the whole run, walks the dependency graph with bounded concurrency, records the rollback target before any release changes, persists the lockfile after every resource, and writes one audit event per action. An interrupted apply is resumed by the next one.

Exit codes: 0 applied (or nothing to do), 1 error (nothing changed: stale plan, lock held, policy errors), 3 partial failure (the lockfile records what succeeded; run apply again).`;
  static override examples = [
    { description: 'Apply a reviewed plan', command: '<%= config.bin %> apply edge-1.plan.json --root /tmp/agentvm-demo' },
    { description: 'Plan and apply in one go (CI, demos)', command: '<%= config.bin %> apply --repo examples/fleet --host edge-1 --root /tmp/agentvm-demo --auto-approve' },
  ];
  static override args = {
    planfile: Args.string({ required: false, description: 'Plan file written by `agentvm plan --out`.' }),
  };
  static override flags = {
    ...repoFlags,
    ...hostFlags,
    'auto-approve': Flags.boolean({ summary: 'Plan now and apply without a saved plan. Without it, a plan file is required.' }),
    concurrency: Flags.integer({ summary: 'Resources applied at once.', default: 4, min: 1, max: 64 }),
  };

  protected async execute(): Promise<Outcome<ApplyResult>> {
    const { args, flags } = await this.parse(ApplyCommand);
    if (!args.planfile && !flags['auto-approve']) {
      throw userError('apply.needs-approval', 'apply changes the host, so it needs a reviewed plan or explicit approval.', 'Run `agentvm plan --out plan.json`, review it, then `agentvm apply plan.json`; or pass --auto-approve to plan and apply in one step.');
    }
    if (args.planfile && flags['auto-approve']) {
      throw userError('apply.conflicting-flags', 'A plan file is already approved; --auto-approve would plan again.', 'Give either the plan file or --auto-approve.');
    }
    const style = styleFor(process.stdout);
    const json = this.jsonEnabled();
    const result = await runApply({
      root: flags.root,
      concurrency: flags.concurrency,
      ...(args.planfile ? { planFile: args.planfile } : { plan: { repo: flags.repo, ref: flags.ref, root: flags.root, ...(flags.host ? { host: flags.host } : {}) } }),
      onEvent: (e) => {
        if (json) return;
        const line = renderApplyEvent(e, style);
        if (line) process.stdout.write(`${line}\n`);
      },
    });
    return { result, text: renderApplySummary(result, style), exitCode: exitCodeFor(result) };
  }
}
