// Diagnostic codes of the MCP gateway provider (`mcp.<workload>.<profile>`), for docs/diagnostic-codes.md.
export const McpCode = {
  invalidConfig: 'mcp.invalid-config',
  account: 'mcp.account',
  systemctl: 'mcp.systemctl',
  startFailed: 'mcp.start-failed',
  unsafeUnitValue: 'mcp.unsafe-unit-value',
} as const;
