import { Flags } from '@oclif/core';
import { AgentvmCommand, type Outcome } from '../cli/base-command.js';
import { hostFlags, repoFlags, stateFlags } from '../cli/flags.js';
import { chooseStateBackend } from '../app/state-backend.js';
import { makeRemotePlan } from '../app/remote-plan.js';
import { userError } from '../diagnostics/index.js';
import { makePlan, planSaveRefusal, writePlanFile } from '../app/plan.js';
import { redactValue } from '../secrets/redaction.js';
import { signPlanFile } from '../app/plan-signature.js';
import { ExitCode } from '../diagnostics/index.js';
import { hasChanges, type Plan } from '../engine/plan.js';
import { renderPlanMarkdown } from '../ui/plan-markdown.js';
import { renderPlanText } from '../ui/plan-text.js';
import { isInteractive } from '../ui/interactive.js';
import { styleFor } from '../ui/style.js';

export default class PlanCommand extends AgentvmCommand<Plan> {
  static override summary =
    'Show what apply would change on a host: a dry run of desired state vs live state vs lockfile.';
  static override description = `Reads the desired state at the exact commit --ref resolves to, the host's lockfile, and the live host (through the providers), and prints the changes (create, update, replace, delete, each with its effect on the running workload and its reasons), drift (live differs from the lockfile: changed outside agentvm), and policy findings. Planning never changes anything.

Save the plan with --out and apply exactly it with \`agentvm apply <file>\`; apply refuses it if the commit, the lockfile or the live host changed in between, and re-derives it from its commit, refusing a file whose content was edited. With --sign <key.pem> the file is also signed (<file>.sigstore.json), for hosts that run \`apply --require-signed-plan\`.

Exit codes: 0 success (with --detailed-exitcode: no changes), 1 error, 2 changes or drift present (with --detailed-exitcode).`;
  static override examples = [
    {
      description: 'Plan the bundled example against a scratch root',
      command: '<%= config.bin %> plan --repo examples/fleet --host edge-1 --root /tmp/agentvm-demo',
    },
    { description: 'Save the plan for apply', command: '<%= config.bin %> plan --host edge-1 --out edge-1.plan.json' },
    { description: 'A pull-request comment', command: '<%= config.bin %> plan --host edge-1 --format markdown' },
    {
      description: 'Only check for drift',
      command: '<%= config.bin %> plan --host edge-1 --refresh-only --detailed-exitcode',
    },
  ];
  static override flags = {
    ...repoFlags,
    ...hostFlags,
    ...stateFlags,
    out: Flags.string({ summary: 'Write the plan to this file for `agentvm apply <file>`.', helpValue: 'FILE' }),
    format: Flags.string({ summary: 'Output format.', options: ['text', 'markdown', 'json'], default: 'text' }),
    'detailed-exitcode': Flags.boolean({ summary: 'Exit 2 when there are changes or drift, 0 when there are none.' }),
    remote: Flags.boolean({
      summary:
        'Plan --host from the live state its agent last published (PostgreSQL backend), without access to the host.',
      description:
        "For pull-request bots and laptops: the lockfile comes from the shared backend and the live state from the host's published provider reads; the plan says how old they are and can never be applied (the host's own agent applies).",
    }),
    'refresh-only': Flags.boolean({
      summary: 'Only compare the live host with the lockfile (drift); plan no changes.',
    }),
    sign: Flags.string({
      summary:
        'Sign the saved plan with this ECDSA P-256 private key (PEM) into <out>.sigstore.json, for `apply --require-signed-plan`.',
      helpValue: 'KEY.PEM',
      dependsOn: ['out'],
    }),
  };

  protected async execute(): Promise<Outcome<Plan>> {
    const { flags } = await this.parse(PlanCommand);
    await chooseStateBackend(flags, { repo: flags.repo, ref: flags.ref });
    if (flags.remote && !flags.host)
      throw userError(
        'plan.remote-needs-host',
        '--remote plans one host from its published facts: name it with --host.',
        'Add `--host <name>`; `agentvm fleet status` lists the hosts that publish.',
      );
    const options = {
      repo: flags.repo,
      ref: flags.ref,
      ...(flags.host ? { host: flags.host } : {}),
      root: flags.root,
      mode: flags['refresh-only'] ? ('refresh-only' as const) : ('normal' as const),
    };
    const { plan } = flags.remote ? await makeRemotePlan({ ...options, host: flags.host! }) : await makePlan(options);
    // A plan that found a committed secret is never saved (its file would be one more copy of the secret).
    const refusal = flags.out ? planSaveRefusal(plan) : undefined;
    if (flags.out && !refusal) writePlanFile(flags.out, plan);
    const signed = flags.out && flags.sign && !refusal ? signPlanFile(flags.out, flags.sign) : undefined;
    const changed = hasChanges(plan) || plan.drift.length > 0;
    let exitCode: ExitCode = ExitCode.Ok;
    if (plan.summary.errors > 0) exitCode = ExitCode.Error;
    else if (flags['detailed-exitcode'] && changed) exitCode = ExitCode.Changes;
    const saved =
      refusal ??
      (flags.out
        ? `Saved the plan to ${flags.out}${signed ? ` and its signature to ${signed}` : ''}. Apply exactly this plan with: agentvm apply ${flags.out}${flags.root !== '/' ? ` --root ${flags.root}` : ''}${signed ? ' --require-signed-plan --plan-key <public key>' : ''}`
        : undefined);
    if (flags.format === 'text' && isInteractive({ json: this.jsonEnabled() })) {
      // ink is loaded here only: pipes, CI and --json never import it.
      const { showPlan } = await import('../ui/tty/index.js');
      // The TTY view prints by itself, so it gets the plan through the redaction boundary here.
      await showPlan(redactValue(plan), saved ? [saved] : []);
      return { result: plan, exitCode };
    }
    let text: string;
    const remote = plan.remote
      ? `Remote plan of ${plan.host}: made from the live state it published at ${plan.remote.publishedAt} (${plan.remote.ageSeconds} s ago; it had applied ${plan.remote.appliedCommit?.slice(0, 12) ?? 'nothing'}), not by reading the host. Only ${plan.host} applies it.`
      : undefined;
    if (flags.format === 'json') text = `${JSON.stringify(plan, null, 2)}`;
    else if (flags.format === 'markdown')
      text = `${remote ? `> ${remote}\n\n` : ''}${renderPlanMarkdown(plan)}` + (refusal ? `\n\n${refusal}\n` : '');
    else {
      text = `${remote ? `${remote}\n\n` : ''}${renderPlanText(plan, styleFor(process.stdout))}`;
      if (saved) text += `\n\n${saved}`;
    }
    return { result: plan, text, exitCode };
  }
}
