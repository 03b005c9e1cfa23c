// Default-deny egress for Tier-2 jobs, the pure half (ADR 0006): the contract's allowlist → the guest's addressing,
// the proxy listeners the job's network namespace gets, and the nftables ruleset of that namespace.
//
// The model: a job with egress gets its own network namespace holding one tap device and nothing else — no veth,
// no route out. The only way out of the namespace is an agentvm proxy whose listening socket lives in the
// namespace and whose upstream connection is made from the host's namespace, one listener per allowlisted
// destination. So:
// - an allowlisted host-loopback service (127.0.0.0/8, `localhost`) appears to the guest at the gateway address on
//   the same port (as QEMU's user network shows the host at 10.0.2.2);
// - any other allowlisted IPv4 destination keeps its address in the guest: the namespace DNATs ip:port to the
//   gateway listener that proxies exactly that destination; hostnames are resolved on the host when the job starts;
// - everything else — other ports, the host's other addresses, link-local and metadata addresses, other VMs —
//   has no path at all, and the ruleset drops it anyway (input and forward policies drop; defense in depth).
// DNS is an allowlist entry like any other (`{host: <resolver>, port: 53, protocol: udp}`); without one the guest
// can resolve nothing.
//
// Invariants: the ruleset accepts new connections only to the gateway on listener ports; the plan is a pure
// function of (rules, resolved addresses, slot); addresses and ports in the ruleset come from validated values only.

import { isIP } from 'node:net';
import { errorDiag, warningDiag, type Diagnostic } from '../../diagnostics/index.js';
import type { GuestNetwork } from './protocol.js';

export type EgressProtocol = 'tcp' | 'udp';

/** One allowlist entry of the workload contract (`spec.egress[]`). */
export interface EgressRule {
  host: string;
  port: number;
  protocol: EgressProtocol;
}

/** The tap device's name inside a job's namespace (each namespace has exactly one). */
export const JOB_TAP = 'avm0';

/** Job networks are /30s of 172.30.0.0/16: slot n is 172.30.(4n)/30 — 16,384 concurrent jobs per host. */
export const SLOT_COUNT = 16_384;

export function guestAddressing(slot: number): GuestNetwork {
  if (!Number.isInteger(slot) || slot < 0 || slot >= SLOT_COUNT)
    throw new Error(`network slot ${slot} is out of range`);
  const base = slot * 4;
  const at = (offset: number): string => `172.30.${Math.floor((base + offset) / 256)}.${(base + offset) % 256}`;
  return { gateway: at(1), address: at(2), prefixLength: 30 };
}

const HOSTNAME =
  /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$/;

/** Reads `config.egress` of a job resource; diagnostics say which entry is unusable and why. */
export function parseEgressRules(value: unknown, address?: string): { rules: EgressRule[]; diagnostics: Diagnostic[] } {
  const at = address === undefined ? {} : { address };
  const rules: EgressRule[] = [];
  const diagnostics: Diagnostic[] = [];
  if (value === undefined || value === null) return { rules, diagnostics };
  if (!Array.isArray(value))
    return {
      rules,
      diagnostics: [
        errorDiag('microvm.egress-invalid', 'The egress allowlist must be a list of {host, port, protocol}.', at),
      ],
    };
  value.forEach((entry: unknown, i) => {
    const path = `$.spec.egress[${i}]`;
    const e = (entry ?? {}) as Record<string, unknown>;
    const host = typeof e.host === 'string' ? e.host.trim() : '';
    const port = e.port;
    const protocol = e.protocol ?? 'tcp';
    if (host.includes('*')) {
      diagnostics.push(
        errorDiag(
          'microvm.egress-wildcard',
          `Egress entry ${JSON.stringify(host)} is a wildcard; a job's allowlist names exact destinations.`,
          { ...at, path, detail: 'A job namespace firewall allows exact addresses; list each host.' },
        ),
      );
    } else if (isIP(host) === 6 || host.includes(':')) {
      diagnostics.push(
        errorDiag(
          'microvm.egress-ipv6',
          `Egress entry ${JSON.stringify(host)} is IPv6, which job networks do not route yet.`,
          { ...at, path, detail: 'Use an IPv4 address or a hostname with an A record.' },
        ),
      );
    } else if (isIP(host) !== 4 && !HOSTNAME.test(host)) {
      diagnostics.push(
        errorDiag(
          'microvm.egress-invalid',
          `Egress entry host ${JSON.stringify(e.host)} is neither an IPv4 address nor a hostname.`,
          { ...at, path },
        ),
      );
    } else if (typeof port !== 'number' || !Number.isInteger(port) || port < 1 || port > 65535) {
      diagnostics.push(
        errorDiag('microvm.egress-invalid', `Egress entry ${host} has port ${JSON.stringify(port)}, not 1-65535.`, {
          ...at,
          path,
        }),
      );
    } else if (protocol !== 'tcp' && protocol !== 'udp') {
      diagnostics.push(
        errorDiag(
          'microvm.egress-invalid',
          `Egress entry ${host}:${port} has protocol ${JSON.stringify(protocol)}, not tcp or udp.`,
          { ...at, path },
        ),
      );
    } else {
      rules.push({ host: host.replace(/\.$/, '').toLowerCase(), port, protocol });
    }
  });
  return { rules, diagnostics };
}

/** True for destinations on the host's loopback: they appear to the guest at the gateway address. */
export function isLoopbackHost(host: string): boolean {
  return host === 'localhost' || host.endsWith('.localhost') || (isIP(host) === 4 && host.startsWith('127.'));
}

/** One proxy listener in the job namespace, on the gateway address. */
export interface ProxyListener {
  protocol: EgressProtocol;
  /** Port on the gateway address inside the namespace. */
  listenPort: number;
  /** Where the proxy connects, from the host's namespace. */
  upstream: { address: string; port: number };
  /** What the guest connects to. For loopback destinations the gateway; otherwise the destination itself (DNAT). */
  guestTarget: { address: string; port: number };
  /** The allowlist entry this listener serves. */
  rule: EgressRule;
}

export interface EgressPlan {
  guest: GuestNetwork;
  listeners: ProxyListener[];
  /** `nft -f` input for the job namespace. */
  ruleset: string;
  /** Entries that could not be served this run (unresolvable hostnames, clashes); never widen anything. */
  diagnostics: Diagnostic[];
}

/** First port for DNAT listeners; loopback destinations keep their own port on the gateway. */
const DNAT_PORT_BASE = 40_000;

/**
 * The egress plan of one run. `resolved` maps each hostname rule's host to its IPv4 addresses (resolved on the host
 * at job start); IPv4 literals need no entry. Pure.
 */
export function planEgress(
  rules: readonly EgressRule[],
  resolved: ReadonlyMap<string, readonly string[]>,
  slot: number,
): EgressPlan {
  const guest = guestAddressing(slot);
  const diagnostics: Diagnostic[] = [];
  const listeners: ProxyListener[] = [];
  const gatewayPorts = new Set<string>();
  const destinations = new Set<string>();

  // Loopback destinations first: they claim their own port on the gateway, DNAT listeners take the rest.
  const ordered = [...rules].sort((a, b) => Number(isLoopbackHost(b.host)) - Number(isLoopbackHost(a.host)));
  let nextPort = DNAT_PORT_BASE;
  const freePort = (protocol: EgressProtocol): number => {
    while (gatewayPorts.has(`${protocol}/${nextPort}`)) nextPort += 1;
    return nextPort++;
  };
  for (const rule of ordered) {
    if (isLoopbackHost(rule.host)) {
      const key = `${rule.protocol}/${rule.port}`;
      const upstream = isIP(rule.host) === 4 ? rule.host : '127.0.0.1';
      if (gatewayPorts.has(key)) {
        if (!destinations.has(`${rule.protocol}/${upstream}:${rule.port}`)) {
          diagnostics.push(
            warningDiag(
              'microvm.egress-clash',
              `Egress to ${rule.host}:${rule.port}/${rule.protocol} is not available: another loopback destination already uses gateway port ${rule.port}.`,
            ),
          );
        }
        continue;
      }
      gatewayPorts.add(key);
      destinations.add(`${rule.protocol}/${upstream}:${rule.port}`);
      listeners.push({
        protocol: rule.protocol,
        listenPort: rule.port,
        upstream: { address: upstream, port: rule.port },
        guestTarget: { address: guest.gateway, port: rule.port },
        rule,
      });
      continue;
    }
    const addresses = isIP(rule.host) === 4 ? [rule.host] : (resolved.get(rule.host) ?? []);
    if (addresses.length === 0) {
      diagnostics.push(
        warningDiag(
          'microvm.egress-unresolved',
          `Egress to ${rule.host}:${rule.port} is not available this run: the host could not resolve ${rule.host} to an IPv4 address.`,
        ),
      );
      continue;
    }
    for (const address of addresses) {
      if (isIP(address) !== 4) continue;
      const key = `${rule.protocol}/${address}:${rule.port}`;
      if (destinations.has(key)) continue;
      destinations.add(key);
      const listenPort = freePort(rule.protocol);
      gatewayPorts.add(`${rule.protocol}/${listenPort}`);
      listeners.push({
        protocol: rule.protocol,
        listenPort,
        upstream: { address, port: rule.port },
        guestTarget: { address, port: rule.port },
        rule,
      });
    }
  }
  return { guest, listeners, ruleset: nftRuleset(guest, listeners), diagnostics };
}

/** The namespace's whole ruleset: DNAT of allowlisted destinations to their listeners, and drop everything else. */
export function nftRuleset(guest: GuestNetwork, listeners: readonly ProxyListener[]): string {
  const dnat = listeners
    .filter((l) => l.guestTarget.address !== guest.gateway)
    .map(
      (l) =>
        `    iifname "${JOB_TAP}" ip saddr ${guest.address} ip daddr ${l.guestTarget.address} ${l.protocol} dport ${l.guestTarget.port} dnat ip to ${guest.gateway}:${l.listenPort}`,
    );
  const accept = (['tcp', 'udp'] as const).flatMap((protocol) => {
    const ports = [...new Set(listeners.filter((l) => l.protocol === protocol).map((l) => l.listenPort))].sort(
      (a, b) => a - b,
    );
    return ports.length === 0
      ? []
      : [
          `    iifname "${JOB_TAP}" ip saddr ${guest.address} ip daddr ${guest.gateway} ${protocol} dport { ${ports.join(', ')} } ct state new accept`,
        ];
  });
  return [
    'table inet agentvm {',
    '  chain prerouting {',
    '    type nat hook prerouting priority dstnat; policy accept;',
    ...dnat,
    '  }',
    '  chain input {',
    '    type filter hook input priority filter; policy drop;',
    '    ct state established,related accept',
    ...accept,
    '    counter drop',
    '  }',
    '  chain forward {',
    '    type filter hook forward priority filter; policy drop;',
    '    counter drop',
    '  }',
    '}',
    '',
  ].join('\n');
}
