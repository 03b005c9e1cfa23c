// Where agentvm keeps its files on a host: every path derives from one root (`--root`, default `/`), so tests and the
// demo run against a temporary root with the same layout as production (DESIGN §4). Also the guard that keeps a host
// name from ever becoming anything but a single, safe file-name component.

import path from 'node:path';
import type { HostPaths } from '../providers/provider.js';
import { AgentvmError } from '../diagnostics/index.js';

export type { HostPaths };

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

export function isHostName(host: string): boolean {
  return HOST_NAME.test(host);
}

/** Host names become state file names: anything but a DNS label is refused before it can touch a path. */
export function assertHostName(host: string): void {
  if (!isHostName(host)) {
    throw new AgentvmError('state.invalid-host', `${JSON.stringify(host)} is not a valid host name.`, {
      detail: 'Host names are DNS labels: lowercase letters, digits and dashes, starting with a letter, at most 63 characters (the name of hosts/<host>.yaml).',
    });
  }
}
