// The MCP gateway of one profile as a host service (`agentvm mcp serve`, run by its unit agentvm-mcp-<w>.<p>.service):
// reads the settings apply wrote, starts McpGateway on the profile's socket with every stdio server in its own
// transient unit of the same manager (systemd-run, the settings' sandbox properties) and every HTTP server reached
// through the host's egress proxy on the gateway's own caller socket (proxied-fetch.ts), audits into the host's
// hash-chained audit log, and writes status.json (pid, settings digest) once it serves — apply waits for that.
// Invariants: the socket is 0666 in a directory of its own, like the egress proxy's caller sockets: who may connect
// is decided by which unit sees the directory (the profile's own unit, by BindReadOnlyPaths=), not by uid — in system
// scope the profile runs as a dynamic user this gateway cannot know in advance.

import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { userError } from '../diagnostics/index.js';
import { McpAuditLog } from './audit.js';
import { McpGateway } from './gateway.js';
import { mcpPaths, readSettings, settingsDigest } from './paths.js';
import { proxiedFetch } from './proxied-fetch.js';
import { systemdRunSandbox } from './sandbox.js';

export interface HostGateway {
  digest: string;
  close(): Promise<void>;
}

/** The environment of the sandboxing systemd-run: enough to find the manager, nothing of the gateway's own. */
function runnerEnv(): Record<string, string> {
  const env: Record<string, string> = { PATH: '/usr/local/bin:/usr/bin:/bin' };
  for (const k of ['XDG_RUNTIME_DIR', 'DBUS_SESSION_BUS_ADDRESS']) if (process.env[k]) env[k] = process.env[k]!;
  return env;
}

export async function startHostGateway(opts: {
  root: string;
  address: string;
  onWarning?: (m: string) => void;
}): Promise<HostGateway> {
  const paths = mcpPaths(opts.root);
  if (!/^mcp\.[a-z][a-z0-9-]{0,62}\.[a-z][a-z0-9-]{0,62}$/.test(opts.address))
    throw userError(
      'mcp.invalid-config',
      `${JSON.stringify(opts.address)} is not an MCP gateway address.`,
      'Pass --address mcp.<workload>.<profile>, as the unit agentvm-mcp-<workload>.<profile>.service does.',
    );
  let settings;
  try {
    settings = readSettings(paths.settings(opts.address));
  } catch (error) {
    throw userError(
      'mcp.invalid-config',
      (error as Error).message,
      'Apply again: apply rewrites the settings from the contract.',
    );
  }
  if (!settings)
    throw userError(
      'mcp.invalid-config',
      `${paths.settings(opts.address)} does not exist.`,
      "Run `agentvm apply`: it writes the gateway's settings before it starts the gateway.",
    );
  const digest = settingsDigest(settings);
  const audit = new McpAuditLog(paths.audit, settings.host, {
    onError: (e) => opts.onWarning?.(`audit: ${(e as Error).message}`),
  });
  // Fail closed: an HTTP server is reached through the egress proxy or not at all.
  if (settings.servers.some((s) => s.url !== undefined) && !settings.egressSocket)
    throw userError(
      'mcp.invalid-config',
      `${opts.address}: HTTP MCP servers are reached only through the egress proxy, and the settings name no proxy socket.`,
      "Apply again: apply writes the gateway's proxy socket into its settings.",
    );
  mkdirSync(path.dirname(settings.socket), { recursive: true, mode: 0o755 });
  const gateway = new McpGateway({
    workload: settings.workload,
    profile: settings.profile,
    servers: settings.servers.map((s) => ({ ...s, ...(s.command ? { cwd: settings.releaseDir } : {}) })),
    socketPath: settings.socket,
    socketMode: 0o666,
    audit: audit.record,
    sandbox: systemdRunSandbox({
      properties: settings.sandbox,
      workingDirectory: settings.releaseDir,
      scope: settings.scope,
      env: { PATH: '/usr/local/bin:/usr/bin:/bin' },
    }),
    env: runnerEnv(),
    ...(settings.egressSocket ? { fetch: proxiedFetch(settings.egressSocket) } : {}),
  });
  await gateway.start();
  const status = paths.status(opts.address);
  writeFileSync(`${status}.tmp`, JSON.stringify({ pid: process.pid, digest }));
  renameSync(`${status}.tmp`, status);
  return {
    digest,
    close: async () => {
      await gateway.close();
      audit.flush();
    },
  };
}
