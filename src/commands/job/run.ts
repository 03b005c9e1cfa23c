import { Args, Flags } from '@oclif/core';
import { AgentvmCommand, type Outcome } from '../../cli/base-command.js';
import { hostFlags, stateFlags } from '../../cli/flags.js';
import { chooseStateBackend } from '../../app/state-backend.js';
import { runJob, type JobRunResult } from '../../app/job-run.js';
import { ExitCode } from '../../diagnostics/index.js';
import { renderDiagnostics } from '../../ui/diagnostics-text.js';
import { styleFor } from '../../ui/style.js';

export default class JobRun extends AgentvmCommand<JobRunResult> {
  static override summary = 'Run a Tier-2 job once in an ephemeral microVM, then tear everything down.';
  static override description = `Boots the job definition that \`agentvm apply\` installed on this host (<root>/var/lib/agentvm/jobs/<workload>/<job>.json: kernel and root image by sha256, command, vCPUs, memory, timeout, the contract's egress allowlist and the host's microVM settings). A run never reads the desired-state repository: what runs is what was reviewed and applied, and a definition changed by hand is refused. A job whose tier requires signed images runs only the pins whose signatures apply verified.

The VM boots from the pinned images in <root>/var/lib/agentvm/images and gets the --input files (read-only, in its working directory) and --arg arguments; its console streams to stdout, the timeout is enforced, its result files go to --out, and then the VM, its network namespace and tap device, and its scratch files are torn down. A job without an egress allowlist has no network device at all; with one, it reaches exactly the allowlisted destinations (see decisions/0006-job-egress.md). Every run and every teardown is recorded in the audit log.

If agentvm is killed during a run, the run is left as an orphan: \`agentvm plan\` shows it as drift and \`agentvm apply\` reaps it.

Exit codes: 0 the job exited 0; 1 the job failed (non-zero exit, timeout, interrupted) or could not run. The job's own exit status is in the --json result (exitCode).`;
  static override examples = [
    {
      description: 'Install the job definitions, then summarise a transcript',
      command:
        '<%= config.bin %> apply --repo examples/fleet --host edge-1 --root /tmp/agentvm-demo --auto-approve && <%= config.bin %> job run transcript-summarizer/summarize --input meeting.txt --out ./summary --root /tmp/agentvm-demo',
    },
    {
      description: 'Pass arguments to the job',
      command: '<%= config.bin %> job run reports/build --arg --since --arg 2026-01-01 --out ./report',
    },
  ];
  static override args = {
    target: Args.string({
      required: true,
      description: '<workload>/<job>: the workload and one of its manifest jobs.',
    }),
  };
  static override flags = {
    host: Flags.string({
      summary: 'Check that the job was applied for this host (the root knows which host it is).',
      helpValue: 'NAME',
    }),
    root: hostFlags.root,
    ...stateFlags,
    input: Flags.string({
      summary: 'An input file for the job (repeatable); placed read-only in its working directory by base name.',
      multiple: true,
      helpValue: 'FILE',
    }),
    arg: Flags.string({
      summary: "An argument appended to the job's command (repeatable, in order).",
      multiple: true,
      helpValue: 'VALUE',
    }),
    out: Flags.string({
      summary: "Directory for the job's result files (created; must be empty if it exists).",
      helpValue: 'DIR',
    }),
  };

  protected async execute(): Promise<Outcome<JobRunResult>> {
    const { args, flags } = await this.parse(JobRun);
    await chooseStateBackend(flags);
    const json = this.jsonEnabled();
    // Ctrl-C and SIGTERM end the run in order (VM killed, everything torn down, receipt written), then exit.
    const controller = new AbortController();
    const abort = (): void => controller.abort();
    process.once('SIGINT', abort);
    process.once('SIGTERM', abort);
    let result: JobRunResult;
    try {
      result = await runJob({
        ...(flags.host ? { host: flags.host } : {}),
        root: flags.root,
        target: args.target,
        inputs: flags.input ?? [],
        args: flags.arg ?? [],
        ...(flags.out === undefined ? {} : { out: flags.out }),
        // Under --json stdout carries one JSON document; the console is in the result instead.
        ...(json ? {} : { onConsole: (line: string) => this.say(line) }),
        signal: controller.signal,
      });
    } finally {
      process.off('SIGINT', abort);
      process.off('SIGTERM', abort);
    }
    const style = styleFor(process.stdout);
    const seconds = (ms: number | null): string => (ms === null ? '–' : `${(ms / 1000).toFixed(2)} s`);
    const lines: string[] = [];
    if (result.diagnostics.length > 0) lines.push(renderDiagnostics(result.diagnostics, style), '');
    const outcome =
      result.status === 'succeeded'
        ? style.green(`✓ ${result.address} run ${result.runId} exited 0`)
        : style.red(
            `✗ ${result.address} run ${result.runId} ${result.status === 'timed-out' ? 'timed out' : result.status === 'interrupted' ? 'was interrupted' : result.exitCode === null ? 'failed' : `exited ${result.exitCode}`}`,
          );
    lines.push(
      `${outcome} (boot ${seconds(result.bootMs)}, total ${seconds(result.durationMs)}, ${result.accel.accel}).`,
    );
    if (result.resultFiles.length > 0) {
      lines.push(
        `Results${result.outDir === null ? ' (not saved: no --out)' : ` in ${result.outDir}`}: ${result.resultFiles.map((f) => `${f.name} (${f.size} B)`).join(', ')}.`,
      );
    }
    lines.push(
      `Torn down: ${result.teardown.ok ? 'VM, ' : ''}${result.network === null ? 'no network' : `namespace ${result.network.netns}`}, scratch ${result.teardown.scratchRemoved ? 'removed' : 'NOT removed'}; receipt in the audit log.`,
    );
    return { result, text: lines.join('\n'), exitCode: result.status === 'succeeded' ? ExitCode.Ok : ExitCode.Error };
  }
}
