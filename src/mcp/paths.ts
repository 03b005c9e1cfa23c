// Where a host's MCP gateways keep their files (one gateway per profile that declares MCP servers, decisions/0022):
//   <root>/var/lib/agentvm/mcp/<address>.json         the gateway's settings (servers, pins, sandbox), written by apply
//   <root>/var/lib/agentvm/mcp/<address>.status.json  what the running gateway serves: its pid and the settings digest
//   <root>/run/agentvm/mcp/<address>/mcp.sock          the profile's socket, in a directory of its own so that the
//                                                       profile's unit is given exactly its own (TemporaryFileSystem=
//                                                       over the rest, as for the egress proxy's caller sockets)
// `<address>` is `mcp.<workload>.<profile>`.

import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { hostPaths } from '../model/index.js';
import { AUDIT_FILE_NAME } from '../state/audit-log.js';

export const MCP_SOCKET = 'mcp.sock';
/** The variable a profile finds its gateway socket in. */
export const MCP_SOCKET_ENV = 'AGENTVM_MCP_SOCKET';

export const mcpAddress = (workload: string, profile: string): string => `mcp.${workload}.${profile}`;
/** `agentvm-mcp-<workload>.<profile>.service`: names are [a-z0-9-], so the dot keeps the unit name unambiguous. */
export const mcpUnitName = (workload: string, profile: string): string => `agentvm-mcp-${workload}.${profile}.service`;

export interface McpPaths {
  dir: string;
  sockets: string;
  audit: string;
  settings(address: string): string;
  status(address: string): string;
  socketDir(address: string): string;
  socket(address: string): string;
}

export function mcpPaths(root: string): McpPaths {
  const host = hostPaths(root);
  const dir = path.join(path.resolve(root), 'var/lib/agentvm/mcp');
  const sockets = path.join(host.run, 'mcp');
  return {
    dir,
    sockets,
    audit: path.join(host.audit, AUDIT_FILE_NAME),
    settings: (a) => path.join(dir, `${a}.json`),
    status: (a) => path.join(dir, `${a}.status.json`),
    socketDir: (a) => path.join(sockets, a),
    socket: (a) => path.join(sockets, a, MCP_SOCKET),
  };
}

/** What apply writes and the gateway serves. Paths are as the gateway's manager sees them. */
export interface McpSettings {
  version: 1;
  host: string;
  workload: string;
  profile: string;
  scope: 'system' | 'user';
  /** Digest of the resource config these settings were made from: plan compares it with the desired config's. */
  configDigest: string;
  /** The workload's release, where stdio servers start (bound read-only into their sandbox). */
  releaseDir: string;
  socket: string;
  /** The gateway's own caller socket of the egress proxy: its only way to HTTP servers (null: it has none). */
  egressSocket: string | null;
  servers: Array<{ name: string; command?: string[]; url?: string; tools: Array<{ name: string; sha256: string }> }>;
  /** Unit properties of every stdio server's transient unit: the tier's hardening, no network, its exec allowlist. */
  sandbox: Array<[string, string]>;
}

export const settingsDigest = (s: McpSettings): string =>
  `sha256:${createHash('sha256').update(JSON.stringify(s)).digest('hex')}`;

export function readSettings(file: string): McpSettings | undefined {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
  const s = JSON.parse(text) as McpSettings;
  if (s?.version !== 1 || !Array.isArray(s.servers) || !Array.isArray(s.sandbox))
    throw new Error(`${file} is not an MCP gateway settings file (version 1)`);
  return s;
}

export function readStatus(file: string): { pid: number; digest: string } | undefined {
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as { pid: number; digest: string };
  } catch {
    return undefined;
  }
}
