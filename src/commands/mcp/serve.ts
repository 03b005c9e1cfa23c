import { Flags } from '@oclif/core';
import path from 'node:path';
import { AgentvmCommand, type Outcome } from '../../cli/base-command.js';
import { hostFlags } from '../../cli/flags.js';
import { startHostGateway } from '../../mcp/host-gateway.js';

export interface McpServeResult {
  address: string;
  digest: string;
}

export default class McpServe extends AgentvmCommand<McpServeResult> {
  static override summary =
    "Run one profile's MCP gateway: its only way to its declared MCP servers, pinned and audited.";
  static override description =
    "Serves MCP on the profile's unix socket <root>/run/agentvm/mcp/mcp.<workload>.<profile>/mcp.sock (bound into the profile's unit, which finds it in $AGENTVM_MCP_SOCKET). Only the tools the contract allowlists are listed or callable, and only while the server's current description hashes to its pin (decisions/0022); every call, refusal and denial is an audit record (`agentvm audit tail`) with a digest of the arguments, never their values. Each stdio server runs in its own transient unit of the same systemd manager (systemd-run) with the workload's tier hardening, no network and an exec allowlist. The settings are <root>/var/lib/agentvm/mcp/<address>.json, written by `agentvm apply`, which installs this command as the unit agentvm-mcp-<workload>.<profile>.service; it runs until SIGTERM.";
  static override examples = [
    {
      description: 'Serve the gateway apply configured for workload agent, profile main',
      command: '<%= config.bin %> mcp serve --address mcp.agent.main',
    },
  ];
  static override flags = {
    root: hostFlags.root,
    address: Flags.string({
      required: true,
      summary: 'The gateway resource: mcp.<workload>.<profile>.',
      helpValue: 'ADDRESS',
    }),
  };

  protected async execute(): Promise<Outcome<McpServeResult>> {
    const { flags } = await this.parse(McpServe);
    const stopped = new Promise<void>((resolve) => {
      process.once('SIGTERM', () => resolve());
      process.once('SIGINT', () => resolve());
    });
    const gateway = await startHostGateway({
      root: path.resolve(flags.root),
      address: flags.address,
      onWarning: (m) => this.say(`agentvm mcp: warning: ${m}`, 'stderr'),
    });
    this.say(`agentvm mcp: ${flags.address} serving (${gateway.digest})`, 'stderr');
    await stopped;
    await gateway.close();
    return {
      result: { address: flags.address, digest: gateway.digest },
      text: `agentvm mcp: ${flags.address} stopped`,
    };
  }
}
