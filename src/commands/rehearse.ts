import { Args } from '@oclif/core';
import { AgentvmCommand, type Outcome } from '../cli/base-command.js';
import { hostFlags, repoFlags, stateFlags } from '../cli/flags.js';
import { chooseStateBackend } from '../app/state-backend.js';
import { runRehearse, type RehearseResult } from '../app/rehearse.js';
import { ExitCode } from '../diagnostics/index.js';
import { renderDiagnostics } from '../ui/diagnostics-text.js';
import { styleFor } from '../ui/style.js';

export default class Rehearse extends AgentvmCommand<RehearseResult> {
  static override summary =
    "Rehearse a promotion's rollback on the canary profile and record the result (tested rollback).";
  static override description = `High and critical services may only be promoted after their rollback was rehearsed: plan refuses a release change C → N (policy.rollback-not-rehearsed) until the lockfile records a passed rehearsal of exactly N → C.

rehearse reads the release the repository pins at --ref (N) and the one live on the host (C, from the lockfile), then, on the workload's canary profile only: installs N next to C (signature-verified), points the canary at N and checks its health (with the canary soak), points it back at C and checks its health again, and puts the release link back at C. The other profiles are never touched. The result — passed or failed, with both identities — is recorded in the lockfile and the audit log.

Exit codes: 0 rehearsal passed, 1 rehearsal failed or refused (no live release, nothing to promote, no canary, lock held).`;
  static override examples = [
    {
      description: 'Rehearse the committed promotion of a workload',
      command: '<%= config.bin %> rehearse research-orchestrator --host edge-1',
    },
  ];
  static override args = { workload: Args.string({ required: true, description: 'Workload name.' }) };
  static override flags = { ...repoFlags, ...hostFlags, ...stateFlags };

  protected async execute(): Promise<Outcome<RehearseResult>> {
    const { args, flags } = await this.parse(Rehearse);
    await chooseStateBackend(flags, { repo: flags.repo, ref: flags.ref });
    const style = styleFor(process.stdout);
    const result = await runRehearse({
      repo: flags.repo,
      ref: flags.ref,
      root: flags.root,
      workload: args.workload,
      ...(flags.host ? { host: flags.host } : {}),
      progress: (m) => {
        if (!this.jsonEnabled()) this.say(style.dim(m));
      },
    });
    const pair = `${result.canary}: ${result.to.releaseId} → ${result.from.releaseId} → ${result.to.releaseId}`;
    const lines = result.steps.map(
      (s) => `  ${s.ok ? style.green('✓') : style.red('✗')} ${s.step.padEnd(8)} ${s.detail}`,
    );
    const errors = result.diagnostics.filter((d) => d.severity === 'error');
    const text = [
      `Rollback rehearsal on host ${result.host}, ${pair}`,
      ...lines,
      ...(errors.length ? ['', renderDiagnostics(errors, style)] : []),
      '',
      result.result === 'passed'
        ? style.green(
            `✓ Rehearsal passed and recorded: ${result.workload} may be promoted from ${result.to.releaseId} to ${result.from.releaseId}.`,
          )
        : style.red(
            `✗ Rehearsal failed and recorded: the promotion of ${result.workload} to ${result.from.releaseId} stays refused.`,
          ),
    ].join('\n');
    return { result, text, exitCode: result.result === 'passed' ? ExitCode.Ok : ExitCode.Error };
  }
}
