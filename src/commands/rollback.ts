import { Args, Flags } from '@oclif/core';
import { AgentvmCommand, type Outcome } from '../cli/base-command.js';
import { hostFlags, stateFlags } from '../cli/flags.js';
import { chooseStateBackend } from '../app/state-backend.js';
import { runRollback, type RollbackResult } from '../app/rollback.js';
import { ExitCode } from '../diagnostics/index.js';
import { renderDiagnostics } from '../ui/diagnostics-text.js';
import { short } from '../ui/plan-text.js';
import { styleFor } from '../ui/style.js';

export default class Rollback extends AgentvmCommand<RollbackResult> {
  static override summary = "Restore a workload's recorded rollback target (the release live before the last change).";
  static override description = `The lockfile records, per workload, the release that was live before agentvm last changed it (captured before anything changed — also when it had been installed by hand). rollback switches the workload back to it after verifying it byte for byte against the recorded digest; the release it replaces becomes the new rollback target.

Dry-run by default, like apply: without --auto-approve it shows what it would do. The desired-state repository still pins the newer release, so the next plan proposes it again: make the rollback permanent with \`agentvm promote <workload> --to <old>\`.

Exit codes: 0 rolled back (or shown), 1 error (no target, digest mismatch, lock held).`;
  static override examples = [
    {
      description: 'See what a rollback would restore',
      command: '<%= config.bin %> rollback research-orchestrator --host edge-1',
    },
    { description: 'Do it', command: '<%= config.bin %> rollback research-orchestrator --host edge-1 --auto-approve' },
  ];
  static override args = { workload: Args.string({ required: true, description: 'Workload name.' }) };
  static override flags = {
    host: hostFlags.host,
    root: hostFlags.root,
    ...stateFlags,
    'auto-approve': Flags.boolean({ summary: 'Carry out the rollback (without it, only show it).' }),
  };

  protected async execute(): Promise<Outcome<RollbackResult>> {
    const { args, flags } = await this.parse(Rollback);
    await chooseStateBackend(flags);
    const host = flags.host ?? (await defaultHost(flags.root));
    const style = styleFor(process.stdout);
    const result = await runRollback({
      host,
      workload: args.workload,
      root: flags.root,
      approve: flags['auto-approve'],
      progress: (m) => {
        if (!this.jsonEnabled()) this.say(style.dim(m));
      },
    });
    const line = `${result.address}: ${short(result.from?.identity)} → ${short(result.to.identity)} (release ${result.to.releaseId}${result.to.foreign ? ', installed outside agentvm' : ''}, ${short(result.to.digest)})`;
    let text: string;
    if (!flags['auto-approve'])
      text = `Rollback plan for host ${host}:\n  ~ ${line}\n\nDry run: nothing changed. Run again with --auto-approve to roll back.`;
    else if (result.applied)
      text =
        style.green(`✓ Rolled back ${line}.`) +
        `\nThe repository still pins the newer release: promote the old one to keep this, or the next apply restores it.`;
    else
      text = `${renderDiagnostics(result.diagnostics, style)}\n\n${style.red(`✗ Rollback of ${result.address} failed; nothing was switched.`)}`;
    return { result, text, exitCode: flags['auto-approve'] && !result.applied ? ExitCode.Error : ExitCode.Ok };
  }
}

async function defaultHost(root: string): Promise<string> {
  const { stateBackend } = await import('../app/plan.js');
  const hosts = await stateBackend(root).listHosts();
  if (hosts.length === 1) return hosts[0]!;
  const { userError } = await import('../diagnostics/index.js');
  throw userError(
    'host.ambiguous',
    hosts.length
      ? `State under ${root} holds ${hosts.length} hosts; say which with --host.`
      : `No state under ${root}: nothing was applied there.`,
    hosts.length ? `Hosts: ${hosts.join(', ')}.` : 'Check --root.',
  );
}
