import { Flags } from '@oclif/core';
import { AgentvmCommand, type Outcome } from '../cli/base-command.js';
import { hostFlags, stateFlags } from '../cli/flags.js';
import { runAgent, type AgentReport } from '../app/agent.js';
import { chooseStateBackend } from '../app/state-backend.js';
import { ExitCode } from '../diagnostics/index.js';

export default class AgentCommand extends AgentvmCommand<AgentReport> {
  static override summary =
    'Pull mode: fetch the desired repository, plan this host, apply when the rollout allows, publish the outcome.';
  static override description = `One run; the shipped agentvm-agent.timer repeats it. Needs the PostgreSQL state backend (--state-backend postgres, or spec.state in agentvm.yaml): the host's lockfile, lease and audit chain live there, and after every run the agent publishes the applied commit, the plan summary, drift, health, its live fingerprint and the provider reads a remote plan (\`agentvm plan --remote\`) needs — never a secret value.

It applies only when the plan has no policy errors and the rollout (spec.rollout.waves) lets this host's wave go: the waves before it must have applied the commit and be healthy. A run killed mid-apply resumes on the next run.

Exit codes: 0 applied, nothing to do, or waiting for the rollout (the next run tries again); 1 error, or the plan has policy errors (nothing applied); 3 the apply failed or the host is unhealthy.`;
  static override examples = [
    '<%= config.bin %> agent --repo https://git.example.com/fleet.git --ref main --host edge-1',
    '<%= config.bin %> agent --repo /srv/fleet --host edge-1 --root /tmp/sim/edge-1 --health-check "curl -fsS http://127.0.0.1:8080/healthz"',
  ];
  static override flags = {
    repo: Flags.string({
      summary: "URL or path of the desired-state repository (fetched into the host's cache).",
      required: true,
      helpValue: 'URL',
    }),
    ref: Flags.string({ summary: 'Branch, tag or commit to converge to.', default: 'main', helpValue: 'REF' }),
    host: Flags.string({
      summary: "This host's name (hosts/<name>.yaml).",
      required: true,
      env: 'AGENTVM_HOST',
      helpValue: 'NAME',
    }),
    root: hostFlags.root,
    ...stateFlags,
    'health-check': Flags.string({
      summary:
        'Shell command run after applying: exit 0 = healthy; otherwise its last output line is published as the reason.',
      helpValue: 'CMD',
    }),
    concurrency: Flags.integer({ summary: 'Resources applied at once.', default: 4, min: 1, max: 64 }),
  };

  protected async execute(): Promise<Outcome<AgentReport>> {
    const { flags } = await this.parse(AgentCommand);
    await chooseStateBackend(flags, /^[a-z]+:\/\//.test(flags.repo) ? undefined : { repo: flags.repo, ref: flags.ref });
    const r = await runAgent({
      repo: flags.repo,
      ref: flags.ref,
      host: flags.host,
      root: flags.root,
      concurrency: flags.concurrency,
      ...(flags['health-check'] ? { healthCheck: flags['health-check'] } : {}),
    });
    const exitCode =
      r.status === 'blocked'
        ? ExitCode.Error
        : r.status === 'failed' || !r.health.ok
          ? ExitCode.PartialApply
          : ExitCode.Ok;
    const text = `${r.host}: ${r.status}${r.reason ? ` (${r.reason})` : ''}; applied ${r.commit?.slice(0, 12) ?? 'nothing'}, target ${r.target?.slice(0, 12) ?? '-'}; health ${r.health.ok ? 'ok' : `FAILING: ${r.health.reason}`}; drift ${r.drift.length}. Published.`;
    return { result: r, text, exitCode };
  }
}
