// The egress proxy `agentvm tools pin` reaches HTTP MCP servers through (decisions/0022 §7): the host's proxy code
// (egress/proxy.ts — the same rule engine, resolver, answer screening and denial audit), run in this process with ONE
// caller, `tools-pin.<workload>`, whose allowlist is what the workload's MCP gateway gets at run time
// (egress/mcp-destinations.ts) — computed from the contract under review, because pin runs before that contract is
// applied. The caller socket lives in a fresh 0700 directory, so only this process can use it; refusals are audited
// into the host's hash-chained audit log (<root>/var/log/agentvm), as the host's proxy audits them.
// Invariant: pin has no other way to an HTTP server — its fetch is proxiedFetch on this socket, never the global fetch.

import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { hostAddresses } from '../egress/address-class.js';
import { mcpGatewayEntries, mcpUrlDestinations } from '../egress/mcp-destinations.js';
import { egressPaths } from '../egress/paths.js';
import { EgressProxy } from '../egress/proxy.js';
import type { EgressEntry } from '../egress/rules.js';
import { proxiedFetch } from '../mcp/proxied-fetch.js';

export interface PinProxy {
  /** The caller id the proxy's decisions and audit records name. */
  caller: string;
  /** The host's audit log the refusals go to. */
  auditFile: string;
  fetch: ReturnType<typeof proxiedFetch>;
  /** Stops the proxy and writes its pending audit records; resolves with what kept a record from being written.
   * Idempotent. */
  close(): Promise<string[]>;
}

export async function startPinProxy(opts: {
  root: string;
  workload: string;
  egress: readonly EgressEntry[];
  servers: ReadonlyArray<{ url?: string }>;
}): Promise<PinProxy> {
  const caller = `tools-pin.${opts.workload}`;
  const auditFile = egressPaths(opts.root).audit;
  const problems: string[] = [];
  const dir = mkdtempSync(path.join(os.tmpdir(), 'agentvm-tools-pin-'));
  const socket = path.join(dir, 'proxy.sock');
  const proxy = new EgressProxy({
    host: os.hostname(),
    auditFile,
    ownAddresses: hostAddresses(),
    onWarning: (m) => problems.push(m),
  });
  try {
    await proxy.reload({
      resolvers: [],
      callers: [
        {
          id: caller,
          workload: opts.workload,
          entries: mcpGatewayEntries(opts.egress, mcpUrlDestinations(opts.servers)),
          socket,
        },
      ],
    });
  } catch (error) {
    await proxy.close();
    rmSync(dir, { recursive: true, force: true });
    throw error;
  }
  let closed: Promise<string[]> | undefined;
  const close = async (): Promise<string[]> => {
    await proxy.close();
    rmSync(dir, { recursive: true, force: true });
    if (proxy.audit.written < proxy.audit.records)
      problems.push(
        `audit: ${proxy.audit.records - proxy.audit.written} refusal record(s) not written to ${auditFile}`,
      );
    return problems.filter((p) => p.startsWith('audit'));
  };
  return { caller, auditFile, fetch: proxiedFetch(socket), close: () => (closed ??= close()) };
}
