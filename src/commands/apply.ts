import { Args, Flags } from '@oclif/core';
import { AgentvmCommand, type Outcome } from '../cli/base-command.js';
import { hostFlags, repoFlags, stateFlags } from '../cli/flags.js';
import { chooseStateBackend } from '../app/state-backend.js';
import { readPlanFile } from '../app/plan.js';
import { refuseRemotePlan } from '../app/remote-plan.js';
import {
  exitCodeFor,
  refuseInapplicable,
  runApply,
  type ApplyEvent,
  type ApplyOptions,
  type ApplyResult,
} from '../app/apply.js';
import { makePlan } from '../app/plan.js';
import { userError } from '../diagnostics/index.js';
import { hasChanges, type Plan } from '../engine/plan.js';
import { renderApplyEvent, renderApplySummary } from '../ui/apply-text.js';
import { isInteractive } from '../ui/interactive.js';
import { styleFor } from '../ui/style.js';
import { redactValue } from '../secrets/redaction.js';

export default class ApplyCommand extends AgentvmCommand<ApplyResult> {
  static override summary =
    'Carry out a plan on the host: a saved plan file, a plan approved at the terminal, or a fresh plan with --auto-approve.';
  static override description = `Dry-run by default: apply needs a plan file made by \`agentvm plan --out\` (applied exactly as reviewed: refused if stale, and re-derived from the commit it names — a file whose content differs is refused, naming the first differing address; with --require-signed-plan it must also carry the pipeline's signature) or --auto-approve (plan and apply in one go). On an interactive terminal, apply without either shows the plan and asks for \`yes\` (anything else cancels and changes nothing); pipes, CI, NO_COLOR and --json are never asked. It holds the host's lease lock for the whole run, walks the dependency graph with bounded concurrency, records the rollback target before any release changes, persists the lockfile after every resource, and writes one audit event per action. An interrupted apply is resumed by the next one.

Exit codes: 0 applied (or nothing to do), 1 error (nothing changed: stale or edited plan, lock held, policy errors, approval declined), 3 partial failure (resources changed: some failed, or a write failed midway — a full disk, a read-only state directory; the lockfile records what succeeded; fix the cause and run apply again).`;
  static override examples = [
    {
      description: 'Apply a reviewed plan',
      command: '<%= config.bin %> apply edge-1.plan.json --root /tmp/agentvm-demo',
    },
    {
      description: 'At a terminal: review the plan, then type yes',
      command: '<%= config.bin %> apply --repo examples/fleet --host edge-1 --root /tmp/agentvm-demo',
    },
    {
      description: 'Plan and apply in one go (CI, demos)',
      command: '<%= config.bin %> apply --repo examples/fleet --host edge-1 --root /tmp/agentvm-demo --auto-approve',
    },
  ];
  static override args = {
    // ignoreStdin: oclif would otherwise take piped input as the file name (`echo yes | agentvm apply` read a plan file "yes").
    planfile: Args.string({
      required: false,
      ignoreStdin: true,
      description: 'Plan file written by `agentvm plan --out`.',
    }),
  };
  static override flags = {
    ...repoFlags,
    ...hostFlags,
    ...stateFlags,
    'auto-approve': Flags.boolean({
      summary:
        'Plan now and apply without a saved plan or a question. Without it, a plan file (or, at a terminal, typing yes) is required.',
    }),
    concurrency: Flags.integer({ summary: 'Resources applied at once.', default: 4, min: 1, max: 64 }),
    'require-signed-plan': Flags.boolean({
      summary:
        'Apply only a plan file signed by your pipeline (`plan --out <file> --sign <key>`): its <file>.sigstore.json must verify with --plan-key. Unsigned, edited or re-signed plans are refused.',
      dependsOn: ['plan-key'],
    }),
    'plan-key': Flags.string({
      summary: 'PEM public key (ECDSA P-256) that must have signed the plan; used with --require-signed-plan.',
      helpValue: 'KEY.PUB',
      env: 'AGENTVM_PLAN_KEY',
    }),
  };

  protected async execute(): Promise<Outcome<ApplyResult>> {
    const { args, flags } = await this.parse(ApplyCommand);
    if (args.planfile && flags['auto-approve']) {
      throw userError(
        'apply.conflicting-flags',
        'A plan file is already approved; --auto-approve would plan again.',
        'Give either the plan file or --auto-approve.',
      );
    }
    const interactive = isInteractive({ json: this.jsonEnabled() });
    if (!args.planfile && !flags['auto-approve'] && !interactive) {
      throw userError(
        'apply.needs-approval',
        'apply changes the host, so it needs a reviewed plan or explicit approval.',
        'Run `agentvm plan --out plan.json`, review it, then `agentvm apply plan.json`; or pass --auto-approve to plan and apply in one step.',
      );
    }
    // The state backend: flags, else the repository's agentvm.yaml at the commit being applied (ADR 0017).
    const saved = args.planfile ? readPlanFile(args.planfile) : undefined;
    if (saved) refuseRemotePlan(saved);
    await chooseStateBackend(
      flags,
      saved
        ? { repo: saved.source.repo, ref: saved.source.commit ?? 'WORKTREE' }
        : { repo: flags.repo, ref: flags.ref },
    );
    const planOptions = {
      repo: flags.repo,
      ref: flags.ref,
      root: flags.root,
      ...(flags.host ? { host: flags.host } : {}),
    };
    if (flags['require-signed-plan'] && !args.planfile) {
      throw userError(
        'apply.plan-unsigned',
        '--require-signed-plan needs a signed plan file; --auto-approve and interactive approval make unsigned plans.',
        'Run `agentvm apply <plan.json> --require-signed-plan --plan-key <key.pub>` with a plan made by `agentvm plan --out <plan.json> --sign <key.pem>`.',
      );
    }
    const base: Omit<ApplyOptions, 'onEvent'> = {
      root: flags.root,
      concurrency: flags.concurrency,
      ...(flags['require-signed-plan'] && flags['plan-key'] ? { requireSignedPlanKey: flags['plan-key'] } : {}),
      ...(args.planfile ? { planFile: args.planfile } : { plan: planOptions }),
    };

    if (!interactive) {
      const style = styleFor(process.stdout);
      const json = this.jsonEnabled();
      const onEvent = (e: ApplyEvent): void => {
        if (json) return;
        const line = renderApplyEvent(e, style);
        if (line) this.say(line);
      };
      const result = await runApply({ ...base, onEvent });
      return { result, text: renderApplySummary(result, style), exitCode: exitCodeFor(result) };
    }

    // An interactive terminal: ink is loaded here only (pipes, CI and --json never import it).
    const tty = await import('../ui/tty/index.js');
    let options: Omit<ApplyOptions, 'onEvent'> = base;
    if (!args.planfile && !flags['auto-approve']) {
      const started = Date.now();
      const { plan } = await makePlan(planOptions);
      if (!hasChanges(plan)) {
        await tty.showPlan(redactValue(plan), ['Nothing to apply.']);
        return { result: unapplied(plan, started) };
      }
      await tty.showPlan(redactValue(plan));
      // Never ask about a plan that cannot be applied: say why instead (the findings are already on screen).
      const errors = plan.diagnostics.filter((d) => d.severity === 'error').length;
      if (errors)
        throw userError(
          'apply.plan-has-errors',
          `The plan has ${errors} error(s), shown above; nothing was applied.`,
          'Fix the errors in the desired state, then run apply again.',
        );
      refuseInapplicable(plan);
      const approved = await tty.askApproval(`Apply these changes to ${plan.host}? Only 'yes' is accepted:`);
      if (!approved) {
        throw userError(
          'apply.cancelled',
          'Apply cancelled; nothing changed.',
          'Only the answer `yes` applies. Run apply again to review a fresh plan, or save one with `agentvm plan --out plan.json`.',
        );
      }
      // Exactly the plan shown, not a re-plan: it is still refused if the commit, lockfile or live host moved meanwhile.
      options = { root: flags.root, concurrency: flags.concurrency, approvedPlan: plan };
    }
    // The terminal view shows what providers report while they work: it passes the redaction boundary too.
    const result = await tty.applyWithProgress((onEvent) =>
      runApply({ ...options, onEvent: (e) => onEvent(redactValue(e)) }),
    );
    return { result, exitCode: exitCodeFor(result) };
  }
}

/** What apply reports when the approved plan had nothing to do, so nothing ran (no lease, no audit, no lockfile write). */
function unapplied(plan: Plan, started: number): ApplyResult {
  return {
    formatVersion: 1,
    applyId: '',
    host: plan.host,
    planId: plan.id,
    commit: plan.source.commit,
    status: 'no-changes',
    applied: [],
    failed: [],
    skipped: [],
    lock: { lineage: plan.lock.lineage ?? '', serial: plan.lock.serial },
    durationMs: Date.now() - started,
  };
}
