// agentvm-mcp-<workload>.<profile>.service: one profile's MCP gateway as a unit of the host's systemd scope.
// ExecStart runs this very node binary and bin/run.js (`mcp serve --root <root> --address <address>`); what it serves
// is in the settings file apply writes, so the command line carries names only.
// Invariant: every value that reaches the unit file is checked, not escaped (as the egress proxy's unit does).

import { errorDiag, type Diagnostic } from '../../diagnostics/index.js';
import { McpCode } from './codes.js';

export const OWNER_KEY = 'X-AgentvmOwner';

export interface McpUnitInput {
  node: string;
  bin: string;
  root: string;
  address: string;
  scope: 'system' | 'user';
}

const UNSAFE = /[%$"'\\\s]/;
const unsafe = (v: string): boolean =>
  UNSAFE.test(v) || [...v].some((c) => c.charCodeAt(0) < 0x20 || c.charCodeAt(0) === 0x7f);

export function renderMcpUnit(input: McpUnitInput): { text?: string; diagnostics: Diagnostic[] } {
  const args = [input.node, input.bin, 'mcp', 'serve', '--root', input.root, '--address', input.address];
  const bad = args.filter((a) => a === '' || unsafe(a));
  if (bad.length) {
    return {
      diagnostics: [
        errorDiag(
          McpCode.unsafeUnitValue,
          `A value for the MCP gateway unit of ${input.address} cannot be written into a unit file safely: ${JSON.stringify(bad[0])}.`,
          {
            address: input.address,
            detail:
              'Unit lines must not contain whitespace, line breaks, %, $, quotes or backslashes. Use paths without them.',
          },
        ),
      ],
    };
  }
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
      : ['NoNewPrivileges=yes'];
  const lines = [
    "# Rendered by agentvm: a profile's MCP gateway (decisions/0022). Do not edit; apply re-renders it.",
    '[Unit]',
    `Description=agentvm MCP gateway ${input.address}`,
    `${OWNER_KEY}=${input.address}`,
    '',
    '[Service]',
    'Type=exec',
    `ExecStart=${args.join(' ')}`,
    'Restart=on-failure',
    'RestartSec=1',
    ...hardening,
    '',
    '[Install]',
    `WantedBy=${input.scope === 'system' ? 'multi-user.target' : 'default.target'}`,
    '',
  ];
  return { text: lines.join('\n'), diagnostics: [] };
}
