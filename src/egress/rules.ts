// The egress rule engine: pure data in, a decision out. Each caller (a profile's unit or a job run) has the egress
// allowlist of its workload's contract; the proxy (proxy.ts) asks two questions per request:
//   1. decideDestination — may this caller name this destination at all? By exact name (or, at the low tier, a
//      `*.suffix` wildcard the contract validation let through), or by an IP / CIDR entry for an address literal.
//   2. screenAnswers — of the addresses the proxy's own resolver returned for an allowed name, which may it connect
//      to? An answer that is loopback, private, link-local/metadata, CGNAT, ULA, unspecified, multicast or one of
//      the host's own addresses is refused unless an IP entry names it (DNS rebinding).
// Every refusal carries one line an agent can read: what was refused, and which contract to change.
// Invariants: rules are data (reloaded by the proxy without a restart); nothing the caller sends selects its rules.

import { BlockList, isIP } from 'node:net';
import { classifyAddress, unmapped } from './address-class.js';

export interface EgressEntry {
  host: string;
  port: number;
  protocol?: 'tcp' | 'udp';
}

/** Who is asking, as the proxy knows it from the channel the request arrived on. */
export interface EgressCaller {
  /** The resource address: `unit.<workload>.<profile>` or `job.<workload>.<job>.<runId>`. */
  id: string;
  workload: string;
  entries: EgressEntry[];
}

export type DenialCode =
  | 'not-allowed'
  | 'bad-destination'
  | 'resolve-failed'
  | 'rebinding'
  | 'sni-mismatch'
  | 'sni-missing'
  | 'not-tls'
  | 'upstream-failed';

export interface Denial {
  ok: false;
  code: DenialCode;
  /** `host:port` as the caller asked for it. */
  destination: string;
  /** One line: what was refused and what to change. */
  reason: string;
}

export type Decision = { ok: true; host: string; port: number; literal: boolean } | Denial;

/** Entries that mean "any public destination": never a literal listing of a private or host address. */
const ANY = new Set(['*', '0.0.0.0/0', '::/0', '0.0.0.0', '::']);
const HOST_NAME = /^(?=.{1,253}$)([a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?)(\.[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?)*$/;

/** Lowercase, without brackets around an IPv6 literal and without a trailing dot. */
export function normaliseHost(host: string): string {
  return host
    .trim()
    .replace(/^\[(.*)\]$/, '$1')
    .replace(/\.$/, '')
    .toLowerCase();
}

export function formatDestination(host: string, port: number): string {
  return `${isIP(host) === 6 ? `[${host}]` : host}:${port}`;
}

function contractHint(caller: EgressCaller, host: string, port: number): string {
  return `add {host: ${host}, port: ${port}} to spec.egress in workloads/${caller.workload}/contract.yaml and apply`;
}

export function deny(
  caller: EgressCaller,
  code: DenialCode,
  host: string,
  port: number,
  why: string,
  fix?: string,
): Denial {
  const destination = formatDestination(host, port);
  return {
    ok: false,
    code,
    destination,
    reason: `agentvm egress: ${destination} refused for ${caller.id}: ${why}${fix ? `; ${fix}` : ''}.`,
  };
}

/** The IP/CIDR entries of an allowlist as a BlockList per port (literal listings; the any-range excluded). */
function addressEntries(entries: readonly EgressEntry[], port: number): BlockList | undefined {
  let list: BlockList | undefined;
  for (const e of entries) {
    if ((e.protocol ?? 'tcp') !== 'tcp' || e.port !== port) continue;
    const host = normaliseHost(e.host);
    if (ANY.has(host)) continue;
    const [ip = '', prefix] = host.split('/');
    const family = isIP(ip);
    if (family === 0) continue;
    list ??= new BlockList();
    const type = family === 4 ? 'ipv4' : 'ipv6';
    if (prefix === undefined) list.addAddress(unmapped(ip), isIP(unmapped(ip)) === 4 ? 'ipv4' : type);
    else list.addSubnet(ip, Number(prefix), type);
  }
  return list;
}

function listsAddress(entries: readonly EgressEntry[], ip: string, port: number): boolean {
  const list = addressEntries(entries, port);
  const a = unmapped(ip);
  return list?.check(a, isIP(a) === 4 ? 'ipv4' : 'ipv6') ?? false;
}

function allowsAny(entries: readonly EgressEntry[], port: number): boolean {
  return entries.some((e) => (e.protocol ?? 'tcp') === 'tcp' && e.port === port && ANY.has(normaliseHost(e.host)));
}

function nameMatches(pattern: string, host: string): boolean {
  if (pattern.startsWith('*.')) return host.endsWith(pattern.slice(1)) && host.length > pattern.length - 1;
  return pattern === host;
}

/** May `caller` ask for `host:port`? (Question 1; an allowed name still goes through screenAnswers.) */
export function decideDestination(caller: EgressCaller, rawHost: string, port: number): Decision {
  const host = normaliseHost(rawHost);
  if (!Number.isInteger(port) || port < 1 || port > 65535)
    return deny(caller, 'bad-destination', host, port, 'not a valid port');
  if (isIP(unmapped(host)) !== 0) {
    const ip = unmapped(host);
    if (listsAddress(caller.entries, ip, port)) return { ok: true, host: ip, port, literal: true };
    if (allowsAny(caller.entries, port) && classifyAddress(ip) === 'public')
      return { ok: true, host: ip, port, literal: false };
    return deny(
      caller,
      'not-allowed',
      ip,
      port,
      'this address is not in the egress allowlist',
      contractHint(caller, ip, port),
    );
  }
  if (!HOST_NAME.test(host)) return deny(caller, 'bad-destination', host.slice(0, 253), port, 'not a host name');
  const listed = caller.entries.some(
    (e) => (e.protocol ?? 'tcp') === 'tcp' && e.port === port && nameMatches(normaliseHost(e.host), host),
  );
  if (listed || allowsAny(caller.entries, port)) return { ok: true, host, port, literal: false };
  return deny(
    caller,
    'not-allowed',
    host,
    port,
    'this name is not in the egress allowlist',
    contractHint(caller, host, port),
  );
}

/**
 * Question 2: the addresses an allowed name resolved to that the caller may connect to, in the resolver's order.
 * None: a denial naming the first refused answer and why.
 */
export function screenAnswers(
  caller: EgressCaller,
  host: string,
  port: number,
  answers: readonly string[],
  ownAddresses: ReadonlySet<string>,
): { ok: true; addresses: string[] } | Denial {
  const addresses: string[] = [];
  let refused: { ip: string; why: string } | undefined;
  for (const raw of answers) {
    const ip = unmapped(raw);
    const cls = classifyAddress(ip);
    const own = ownAddresses.has(ip);
    if ((cls === 'public' && !own) || listsAddress(caller.entries, ip, port)) addresses.push(ip);
    else refused ??= { ip, why: cls !== 'public' ? `a ${cls} address` : 'an address of this host' };
  }
  if (addresses.length > 0) return { ok: true, addresses };
  if (!refused) return deny(caller, 'resolve-failed', host, port, 'the name has no address');
  return deny(
    caller,
    'rebinding',
    host,
    port,
    `the name resolves to ${refused.ip}, ${refused.why}`,
    `list {host: ${refused.ip}, port: ${port}} in workloads/${caller.workload}/contract.yaml if that is really meant`,
  );
}
