import { Args, Flags } from '@oclif/core';
import { AgentvmCommand, type Outcome } from '../../cli/base-command.js';
import path from 'node:path';
import { pinSandbox, pinTools, type PinSandbox } from '../../app/tools-pin.js';
import { ExitCode } from '../../diagnostics/index.js';
import { hostFlags } from '../../cli/flags.js';
import type { ToolsPinResult } from '../../generated/tools-pin-result.js';

export default class ToolsPin extends AgentvmCommand<ToolsPinResult> {
  static override summary =
    "Compare the description digests a workload's MCP servers offer now with the contract's pins, and print the contract diff that re-pins them (never written).";
  static override description = `Connects to every \`kind: mcp\` server of the workload's contract (workloads/<workload>/contract.yaml in the working tree), computes each tool's description digest (sha256 of the canonical JSON of {name, description, inputSchema}, decisions/0022) and compares it with the pin. Prints the unified diff that sets each changed pin to what the server offers now — review the new description, then apply the diff yourself (e.g. with \`git apply\`): a changed description is what a rug pull looks like, so accepting it is never automatic. Tools the server offers but the contract does not list are reported, never added.

A stdio server is started in a sandbox — a transient unit (systemd-run) with no network, a read-only system, no home and an unprivileged identity: of the user manager of $AGENTVM_SYSTEMD_USER (or your own, when not root), else of the system manager as a dynamic user. Without a manager it refuses (tools.no-sandbox) unless --no-sandbox says the servers are trusted. An HTTP server is reached only through an egress proxy (the host's proxy code, run by this command) with the rules the workload's MCP gateway gets: its URL's host:port must be listed exactly in the contract's spec.egress, else it is refused (tools.egress-refused) and the refusal is audited in the host's audit log under --root.

Exit codes: 0 every pin matches, 2 a pin changed, a pinned tool is missing, or a tool is offered but unlisted, 1 error.`;
  static override examples = [
    { description: 'Review what changed', command: '<%= config.bin %> tools pin research-agent --repo /srv/fleet' },
    {
      description: 'Apply the reviewed diff',
      command: '<%= config.bin %> tools pin research-agent --repo /srv/fleet | git -C /srv/fleet apply',
    },
  ];
  static override args = {
    workload: Args.string({ required: true, description: 'The workload whose MCP tool pins to check.' }),
  };
  static override flags = {
    root: hostFlags.root,
    repo: Flags.string({
      summary: 'Path of the desired-state repository (its working tree is read).',
      default: '.',
      helpValue: 'PATH',
    }),
    'no-sandbox': Flags.boolean({
      summary:
        "Start stdio servers as yourself, without a sandbox: only for servers you trust (default: a transient unit with no network, via AGENTVM_SYSTEMD_USER's user manager or the system manager; refused when there is none).",
      default: false,
    }),
    'release-dir': Flags.string({
      summary:
        "Directory a stdio server's command runs in (its release); default workloads/<workload>/ of the repository.",
      helpValue: 'DIR',
    }),
  };

  protected async execute(): Promise<Outcome<ToolsPinResult>> {
    const { args, flags } = await this.parse(ToolsPin);
    const releaseDir = path.resolve(flags['release-dir'] ?? path.join(flags.repo, 'workloads', args.workload));
    const sandbox: PinSandbox | 'none' | undefined = flags['no-sandbox'] ? 'none' : pinSandbox(releaseDir);
    const result = await pinTools({ repo: flags.repo, root: flags.root, workload: args.workload, releaseDir, sandbox });
    const pending = result.tools.some((t) => t.status !== 'unchanged');
    return { result, text: renderPinText(result), exitCode: pending ? ExitCode.Changes : ExitCode.Ok };
  }
}

function renderPinText(r: ToolsPinResult): string {
  const notes = r.tools
    .filter((t) => t.status !== 'unchanged')
    .map((t) => {
      if (t.status === 'changed')
        return `# ${t.server}/${t.tool}: description changed since last review (pinned sha256:${t.pinned}, seen sha256:${t.seen})`;
      if (t.status === 'missing') return `# ${t.server}/${t.tool}: pinned, but the server no longer offers it`;
      return `# ${t.server}/${t.tool}: offered, not allowlisted (to admit it after review: {name: ${t.tool}, sha256: ${t.seen}})`;
    });
  if (notes.length === 0) return `# ${r.contract}: every MCP tool pin matches what its server offers.`;
  return `${notes.join('\n')}\n${r.diff}`;
}
