import { AgentvmCommand, type Outcome } from '../cli/base-command.js';
import { repoFlags } from '../cli/flags.js';
import { runValidate, type ValidateResult } from '../app/validate.js';
import { ExitCode } from '../diagnostics/index.js';
import { renderValidate } from '../ui/validate-text.js';
import { styleFor } from '../ui/style.js';

export default class Validate extends AgentvmCommand<ValidateResult> {
  static override summary = 'Check the desired-state repository at a commit: YAML, schemas and governance policy.';
  static override description = `Reads agentvm.yaml, hosts/*.yaml and workloads/*/{contract,manifest}.yaml from the exact commit that --ref resolves to (no checkout), validates each document against its JSON Schema, and applies the risk-tier policy. Every problem is reported in one run, each with file:line:column, the JSON path, and how to fix it.

Exit codes: 0 valid (warnings allowed), 1 invalid or unreadable.`;
  static override examples = [
    { description: 'Validate the current repository at HEAD', command: '<%= config.bin %> validate' },
    {
      description: 'Validate a pull request branch',
      command: '<%= config.bin %> validate --repo ../fleet --ref origin/feature',
    },
    { description: 'Validate uncommitted edits', command: '<%= config.bin %> validate --ref WORKTREE' },
    {
      description: 'Machine-readable result (schemas/validate-result.schema.json)',
      command: '<%= config.bin %> validate --json',
    },
  ];
  static override flags = { ...repoFlags };

  protected async execute(): Promise<Outcome<ValidateResult>> {
    const { flags } = await this.parse(Validate);
    const result = await runValidate({ repo: flags.repo, ref: flags.ref });
    return {
      result,
      text: renderValidate(result, styleFor(process.stdout)),
      exitCode: result.valid ? ExitCode.Ok : ExitCode.Error,
    };
  }
}
