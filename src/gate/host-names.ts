// The host name of each preview under host routing: `<preview>--<workload>.<domain>`, and on a `localhost` domain
// `<preview>--<workload>--<tag>.<domain>`, where the tag is an HMAC of the route under a key only the gate's state holds.
// Why the tag (ADR 0014): browsers send a host's cookies to every port of that host, and every port of `*.localhost` is
// this machine, where an agent can listen. Knowing B's host name, preview A's page could navigate to
// `http://<B's name>:<A's port>/` and read B's session from the Cookie header of a same-origin fetch there. With an
// unguessable name it cannot address B's host at all. On a real domain behind TLS the `__Host-`/Secure cookie is never
// sent to an http port and no other port can present the certificate, so names stay plain there.
// Invariants:
// - The key is created once (link(2) of a complete file: concurrent creators agree on one) and never changes, so links
//   stay valid across restarts; it is not a credential (a name alone grants nothing).
// - Two routes whose names collide are reachable by neither (routeByHost drops both).

import { createHmac, randomBytes } from 'node:crypto';
import { linkSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { unlinkQuietly } from '../state/atomic-file.js';
import { routeKey, type RouteTable } from './routes.js';

const TAG_LENGTH = 10;
const BASE32 = 'abcdefghijklmnopqrstuvwxyz234567';

export function isLocalhostDomain(domain: string): boolean {
  return domain === 'localhost' || domain.endsWith('.localhost');
}

function base32(bytes: Buffer): string {
  let out = '';
  for (const b of bytes) out += BASE32[b & 31];
  return out;
}

/** The gate's host-name key (`<gate dir>/host-names.key`), created on first use. */
export function hostNameKey(dir: string): Buffer {
  const file = path.join(dir, 'host-names.key');
  try {
    return readFileSync(file);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
  const temp = `${file}.${process.pid}.${randomBytes(4).toString('hex')}`;
  writeFileSync(temp, randomBytes(32), { mode: 0o640 });
  try {
    linkSync(temp, file);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
  } finally {
    unlinkQuietly(temp);
  }
  return readFileSync(file);
}

export interface HostNames {
  domain: string;
  /** The DNS label of a route, or undefined when it does not fit one label (63 characters). */
  label(workload: string, preview: string): string | undefined;
}

export function hostNames(dir: string, domain: string): HostNames {
  const key = isLocalhostDomain(domain) ? hostNameKey(dir) : undefined;
  return {
    domain,
    label(workload, preview) {
      const tag = key
        ? `--${base32(createHmac('sha256', key).update(routeKey(workload, preview)).digest()).slice(0, TAG_LENGTH)}`
        : '';
      const label = `${preview}--${workload}${tag}`;
      return label.length <= 63 ? label : undefined;
    },
  };
}

/** Label → route key for a table; colliding labels map to nothing. */
export function labelIndex(names: HostNames, table: RouteTable): Map<string, string> {
  const index = new Map<string, string>();
  const collided = new Set<string>();
  for (const r of Object.values(table.routes)) {
    const label = names.label(r.workload, r.preview);
    if (label === undefined) continue;
    if (index.has(label)) collided.add(label);
    index.set(label, routeKey(r.workload, r.preview));
  }
  for (const label of collided) index.delete(label);
  return index;
}

/** The route key a Host header names (`<label>.<domain>[:port]`, any case), and the host as the browser sent it (lowercase). */
export function routeByHost(
  hostHeader: string | undefined,
  domain: string,
  index: Map<string, string>,
): { key: string; host: string } | undefined {
  if (hostHeader === undefined) return undefined;
  const host = hostHeader.trim().toLowerCase();
  const m = /^([a-z0-9-]{1,63})\.([a-z0-9.-]+?)(?::(\d{1,5}))?$/.exec(host);
  if (!m || m[2] !== domain) return undefined;
  const key = index.get(m[1]!);
  return key === undefined ? undefined : { key, host };
}
