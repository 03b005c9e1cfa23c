// The egress server process (`agentvm egress serve`, the unit agentvm-egress.service): loads rules.json into an
// EgressProxy, reloads it on request (SIGHUP from `systemctl reload`), and records what it serves in status.json.
// A rules file that cannot be read keeps the rules already loaded (and says so): a bad write never opens anything.

import { hostAddresses } from './address-class.js';
import { storeReader } from './injection.js';
import { egressPaths } from './paths.js';
import { EgressProxy } from './proxy.js';
import { readRulesFile, rulesDigest, writeStatusFile, type RulesFile } from './settings.js';

export interface EgressServer {
  proxy: EgressProxy;
  /** Re-reads rules.json; resolves with the digest now served. */
  reload(): Promise<string>;
  close(): Promise<void>;
}

export async function startEgressServer(opts: {
  root: string;
  host: string;
  auditWindowMs?: number;
  onWarning?: (m: string) => void;
}): Promise<EgressServer> {
  const paths = egressPaths(opts.root);
  const proxy = new EgressProxy({
    host: opts.host,
    auditFile: paths.audit,
    ownAddresses: hostAddresses(),
    injection: { credentials: storeReader(paths), leaf: paths.leaf },
    ...(opts.auditWindowMs ? { auditWindowMs: opts.auditWindowMs } : {}),
    ...(opts.onWarning ? { onWarning: opts.onWarning } : {}),
  });
  let digest = 'none';
  let chain: Promise<unknown> = Promise.resolve();
  const load = async (): Promise<string> => {
    let rules: RulesFile | undefined;
    try {
      rules = readRulesFile(paths.rules);
    } catch (error) {
      opts.onWarning?.(`${(error as Error).message}; keeping the rules already loaded`);
      return digest;
    }
    rules ??= { version: 1, host: opts.host, resolvers: [], callers: [] };
    await proxy.reload(rules);
    digest = rulesDigest(rules);
    writeStatusFile(paths.status, {
      version: 1,
      pid: process.pid,
      digest,
      callers: rules.callers.length,
      time: new Date().toISOString(),
      inboundFailures: proxy.inboundFailures,
    });
    return digest;
  };
  // Reloads never overlap: each waits for the previous one (listeners are opened and closed in order).
  const reload = (): Promise<string> => {
    const next = chain.then(load, load);
    chain = next.catch(() => undefined);
    return next;
  };
  await reload();
  return { proxy, reload, close: () => proxy.close() };
}
