// Where agentvm keeps its files on a host: every path derives from one root (`--root`, default `/`), so tests and the
// demo run against a temporary root with the same layout as production (DESIGN §4).

import path from 'node:path';

/** The directories of one host root. Providers, state and the gate all derive their files from these. */
export interface HostPaths {
  state: string;
  releases: string;
  audit: string;
  run: string;
  cache: string;
}

/** The FHS-style layout under `root`. */
export function hostPaths(root: string): HostPaths {
  const r = path.resolve(root);
  return {
    state: path.join(r, 'var/lib/agentvm/state'),
    releases: path.join(r, 'var/lib/agentvm/releases'),
    audit: path.join(r, 'var/log/agentvm'),
    run: path.join(r, 'run/agentvm'),
    cache: path.join(r, 'var/cache/agentvm'),
  };
}

const HOST_NAME = /^[a-z][a-z0-9-]{0,62}$/;

/** Host names become file names: only a DNS label is one. */
export function isHostName(host: string): boolean {
  return HOST_NAME.test(host);
}
