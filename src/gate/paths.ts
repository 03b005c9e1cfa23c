// Where the preview gate keeps its runtime state on a host: `<root>/var/lib/agentvm/gate/`. Runtime state only —
// routes and listener settings (written by apply from the manifests and the host spec) and grants (written by
// `gate grant`); none of it ever goes to git.

import path from 'node:path';
import { AUDIT_FILE_NAME } from '../state/audit-log.js';
import { hostPaths } from '../model/index.js';

export interface GatePaths {
  dir: string;
  /** The route table the gate provider writes in apply and the server re-reads when it changes. */
  routes: string;
  /** The listener settings (host spec `spec.gate`) the gate provider writes in apply and `gate serve` reads at start. */
  server: string;
  /** One file per grant plus its markers (see grants.ts). */
  grants: string;
  /** Where the running server says it listens (so `gate grant` prints a link that works). */
  listener: string;
  /** The hash-chained audit log every gate event goes to. */
  audit: string;
  /** Directory of a workload's unix-socket upstreams: `<root>/run/agentvm/previews/<workload>/<socket>`. */
  socketDir(workload: string): string;
}

export function gatePaths(root: string): GatePaths {
  const host = hostPaths(root);
  const dir = path.join(path.resolve(root), 'var/lib/agentvm/gate');
  return {
    dir,
    routes: path.join(dir, 'routes.json'),
    server: path.join(dir, 'server.json'),
    grants: path.join(dir, 'grants'),
    listener: path.join(dir, 'listener.json'),
    audit: path.join(host.audit, AUDIT_FILE_NAME),
    socketDir: (workload) => path.join(host.run, 'previews', workload),
  };
}
