// Where the egress proxy keeps its files on a host:
//   <root>/var/lib/agentvm/egress/rules.json   the proxy's settings (callers, allowlists, resolvers), written by apply
//   <root>/var/lib/agentvm/egress/status.json  what the running proxy serves: its pid and the rules digest it loaded
//   <root>/run/agentvm/egress/<caller>/proxy.sock   one socket per caller, in a directory of its own so that a unit
//                                              can be given exactly its own directory (TemporaryFileSystem= over the
//                                              rest)
// A caller's directory name is its address with `.` kept (`unit.<workload>.<profile>`, `job.<workload>.<job>.<run>`).
// Injected credentials (decisions/0023):
//   <root>/var/lib/agentvm/credstore/<caller>/<name>.value        the real value (0600, the proxy's account), read by
//                                                                 the proxy per request; env-file: values too
//   <root>/var/lib/agentvm/credstore/<caller>/<name>.placeholder  what the workload gets as its credential
//   <root>/var/lib/agentvm/credstore/.tls/<host>.{pem,key}        the leaf the proxy presents for an injected host
//   <root>/var/lib/agentvm/egress-ca/{ca.pem,bundle.pem}          the host's agentvm CA (and system CAs + it), public
//   <root>/var/lib/agentvm/egress-ca/ca.key                       its key: root only, used by apply to issue leaves

import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { AUDIT_FILE_NAME } from '../state/audit-log.js';
import { hostPaths } from '../model/index.js';

export const EGRESS_UNIT = 'agentvm-egress.service';
export const PROXY_SOCKET = 'proxy.sock';
/** The socket the unit shim serves inside the unit's RuntimeDirectory for the inbound bridge. */
export const INBOUND_SOCKET = '.agentvm-inbound.sock';

export interface EgressPaths {
  dir: string;
  rules: string;
  status: string;
  sockets: string;
  audit: string;
  /** The root-only credential store (hidden from every confined unit). */
  credstore: string;
  /** The agentvm CA of this host: ca.pem, bundle.pem (world-readable), ca.key (root only). */
  caDir: string;
  credential(caller: string, name: string, kind: 'value' | 'placeholder'): string;
  leaf(host: string): { cert: string; key: string };
  callerDir(id: string): string;
  callerSocket(id: string): string;
}

export function egressPaths(root: string): EgressPaths {
  const host = hostPaths(root);
  const dir = path.join(path.resolve(root), 'var/lib/agentvm/egress');
  const sockets = path.join(host.run, 'egress');
  return {
    dir,
    rules: path.join(dir, 'rules.json'),
    status: path.join(dir, 'status.json'),
    sockets,
    audit: path.join(host.audit, AUDIT_FILE_NAME),
    credstore: path.join(path.resolve(root), 'var/lib/agentvm/credstore'),
    caDir: path.join(path.resolve(root), 'var/lib/agentvm/egress-ca'),
    credential: (caller, name, kind) =>
      path.join(path.resolve(root), 'var/lib/agentvm/credstore', caller, `${name}.${kind}`),
    leaf: (h) => ({
      cert: path.join(path.resolve(root), 'var/lib/agentvm/credstore/.tls', `${h}.pem`),
      key: path.join(path.resolve(root), 'var/lib/agentvm/credstore/.tls', `${h}.key`),
    }),
    callerDir: (id) => path.join(sockets, id),
    callerSocket: (id) => path.join(sockets, id, PROXY_SOCKET),
  };
}

/** dist/egress/unit-shim.js of this agentvm (src/egress and dist/egress are both two levels below the package root). */
export function unitShimPath(): string {
  return path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../dist/egress/unit-shim.js');
}
