// Which addresses a name may resolve to. The egress proxy resolves every name itself and refuses an answer in a range
// that reaches the host or its private networks (DNS rebinding: a public name pointed at 127.0.0.1, 10.0.0.1 or the
// cloud metadata address 169.254.169.254) unless the allowlist names that address literally (rules.ts).
// Invariant: IPv4-mapped IPv6 (::ffff:a.b.c.d) is judged as the IPv4 address it carries, so no notation slips past.

import { BlockList, isIP } from 'node:net';
import os from 'node:os';

export type AddressClass =
  'loopback' | 'private' | 'link-local' | 'cgnat' | 'ula' | 'unspecified' | 'multicast' | 'public';

const RANGES: ReadonlyArray<[cls: AddressClass, net: string, prefix: number, family: 'ipv4' | 'ipv6']> = [
  ['loopback', '127.0.0.0', 8, 'ipv4'],
  ['unspecified', '0.0.0.0', 8, 'ipv4'],
  ['private', '10.0.0.0', 8, 'ipv4'],
  ['private', '172.16.0.0', 12, 'ipv4'],
  ['private', '192.168.0.0', 16, 'ipv4'],
  ['link-local', '169.254.0.0', 16, 'ipv4'],
  ['cgnat', '100.64.0.0', 10, 'ipv4'],
  ['multicast', '224.0.0.0', 4, 'ipv4'],
  ['multicast', '240.0.0.0', 4, 'ipv4'],
  ['loopback', '::1', 128, 'ipv6'],
  ['unspecified', '::', 128, 'ipv6'],
  ['ula', 'fc00::', 7, 'ipv6'],
  ['link-local', 'fe80::', 10, 'ipv6'],
  ['multicast', 'ff00::', 8, 'ipv6'],
];

const lists = new Map<AddressClass, BlockList>();
for (const [cls, net, prefix, family] of RANGES) {
  let list = lists.get(cls);
  if (!list) lists.set(cls, (list = new BlockList()));
  list.addSubnet(net, prefix, family);
}

/** The IPv4 address inside an IPv4-mapped IPv6 address, or the address itself. */
export function unmapped(ip: string): string {
  const m = /^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/i.exec(ip);
  return m ? m[1]! : ip.toLowerCase();
}

/** The class of an IP address (throws on a non-address: callers check isIP first). */
export function classifyAddress(address: string): AddressClass {
  const ip = unmapped(address);
  const family = isIP(ip);
  if (family === 0) throw new Error(`not an IP address: ${address}`);
  for (const [cls, list] of lists) if (list.check(ip, family === 4 ? 'ipv4' : 'ipv6')) return cls;
  return 'public';
}

/** Addresses of this host's own interfaces (a name resolving to one of them reaches the host itself). */
export function hostAddresses(): string[] {
  const out = new Set<string>();
  for (const list of Object.values(os.networkInterfaces()))
    for (const a of list ?? []) out.add(unmapped(a.address.replace(/%.*$/, '')));
  return [...out];
}
