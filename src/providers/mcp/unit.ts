// agentvm-mcp-<workload>.<profile>.service: one profile's MCP gateway as a unit of the host's systemd scope.
// ExecStart runs this very node binary and bin/run.js (`mcp serve --root <root> --address <address>`); what it serves
// is in the settings file apply writes, so the command line carries names only.
// Invariant: every value that reaches the unit file is checked, not escaped (as the egress proxy's unit does).

import type { Diagnostic } from '../../diagnostics/index.js';
import { renderServiceUnit, USER_SCOPE_HARDENING } from '../../support/service-unit.js';
import { unsafeExecArgs } from '../systemd/own-unit.js';
import { McpCode } from './codes.js';

export const OWNER_KEY = 'X-AgentvmOwner';

export interface McpUnitInput {
  node: string;
  bin: string;
  root: string;
  address: string;
  scope: 'system' | 'user';
}

export function renderMcpUnit(input: McpUnitInput): { text?: string; diagnostics: Diagnostic[] } {
  const args = [input.node, input.bin, 'mcp', 'serve', '--root', input.root, '--address', input.address];
  const unsafe = unsafeExecArgs(
    args,
    McpCode.unsafeUnitValue,
    `the MCP gateway unit of ${input.address}`,
    input.address,
  );
  if (unsafe) return { diagnostics: [unsafe] };
  const r = input.root.replace(/\/$/, '');
  // The gateway itself holds no secret and runs no server in its own process tree (systemd-run asks the manager).
  const hardening =
    input.scope === 'system'
      ? [
          'NoNewPrivileges=yes',
          'ProtectSystem=strict',
          'ProtectHome=read-only',
          `ReadWritePaths=-${r}/var/lib/agentvm/mcp -${r}/run/agentvm/mcp -${r}/var/log/agentvm`,
        ]
      : USER_SCOPE_HARDENING;
  const text = renderServiceUnit({
    comment: "# Rendered by agentvm: a profile's MCP gateway (decisions/0022). Do not edit; apply re-renders it.",
    description: `agentvm MCP gateway ${input.address}`,
    after: null,
    unit: [`${OWNER_KEY}=${input.address}`],
    service: [`ExecStart=${args.join(' ')}`, 'Restart=on-failure', 'RestartSec=1', ...hardening],
    scope: input.scope,
  });
  return { text, diagnostics: [] };
}
