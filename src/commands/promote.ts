import { Args, Flags } from '@oclif/core';
import { AgentvmCommand, type Outcome } from '../cli/base-command.js';
import { runPromote, type PromoteResult } from '../app/promote.js';
import { styleFor } from '../ui/style.js';

export default class Promote extends AgentvmCommand<PromoteResult> {
  static override summary =
    'Promote a workload to a new release by committing the new pin to the desired-state repository.';
  static override description = `Promotion is a commit, never a live change: promote rewrites the workload's manifest pin — the exact git commit (archetype A) or the exact package version, integrity and tarball (archetype B) — shows the diff, and with --yes commits it. Then \`agentvm plan\` / \`apply\` carry it out, with canary and policy checks.

--to takes a 40-hex commit, or a branch/tag that is resolved to its commit in the source repository (the manifest always pins the commit). For packages it takes an exact version plus --tarball (its sha512 is computed) or --integrity.

Crash-safe: the commit is made first (one compare-and-swap of the branch, journaled in .git/agentvm-promote.json), then the index and working tree follow. A promote that was killed is finished (or, if it had not committed, dropped) by the next promote, which says so in a note; agentvm never leaves .git/index.lock behind, and never overwrites a hand edit.

Exit codes: 0 shown or committed, 1 error (dirty manifest, unresolvable ref, version range, another promote running).`;
  static override examples = [
    {
      description: 'Show the change',
      command: '<%= config.bin %> promote research-orchestrator --to 7e6cab4322ce8353d0750de9a4b10ceba66bf3ac',
    },
    {
      description: 'Commit it with the new signature bundle',
      command:
        '<%= config.bin %> promote research-orchestrator --to main --bundle ../artifacts/orchestrator-v2.sigstore.json --yes',
    },
    {
      description: 'A package release',
      command:
        '<%= config.bin %> promote agent-pool --to 1.1.0 --tarball ../artifacts/agent-pool-1.1.0.tgz --bundle agent-pool-1.1.0.sigstore.json --yes',
    },
  ];
  static override args = { workload: Args.string({ required: true, description: 'Workload name.' }) };
  static override flags = {
    repo: Flags.string({ summary: 'Desired-state repository (a working tree).', default: '.', helpValue: 'PATH' }),
    to: Flags.string({
      required: true,
      summary: 'New commit (or ref to resolve) / exact package version.',
      helpValue: 'COMMIT|VERSION',
    }),
    tarball: Flags.string({
      summary: 'Package tarball for the new version (path relative to the repository, absolute, or URL).',
      helpValue: 'FILE',
    }),
    integrity: Flags.string({ summary: 'sha512-… integrity of the new tarball.', helpValue: 'SRI' }),
    bundle: Flags.string({
      summary: "Sigstore bundle of the new release, copied over the manifest's signature.bundle.",
      helpValue: 'FILE',
    }),
    message: Flags.string({ char: 'm', summary: 'Commit message.' }),
    yes: Flags.boolean({ summary: 'Write and commit the change (without it, only show the diff).' }),
  };

  protected async execute(): Promise<Outcome<PromoteResult>> {
    const { args, flags } = await this.parse(Promote);
    const result = await runPromote({
      repo: flags.repo,
      workload: args.workload,
      to: flags.to,
      approve: flags.yes,
      ...(flags.tarball ? { tarball: flags.tarball } : {}),
      ...(flags.integrity ? { integrity: flags.integrity } : {}),
      ...(flags.bundle ? { bundle: flags.bundle } : {}),
      ...(flags.message ? { message: flags.message } : {}),
    });
    const style = styleFor(process.stdout);
    const lines = [result.diff.trimEnd(), '', ...result.notes.map((n) => style.yellow(`note: ${n}`))];
    if (result.committed)
      lines.push(
        style.green(
          `✓ Committed ${result.commit}: ${result.workload} ${result.from} → ${result.to}. Next: agentvm plan, then apply.`,
        ),
      );
    else if (result.from !== result.to)
      lines.push('Dry run: nothing was written. Run again with --yes to commit this change.');
    return { result, text: lines.join('\n') };
  }
}
