// What a plan changes in each workload's capabilities, as a reviewer must see it (DESIGN §7, issue 13): not a unit-file
// diff but "this workload may now reach api.new.example.com:443 — a new destination, a possible exfiltration
// channel". Pure: computed from the plan's changes — the contract's egress as recorded at the last apply (a unit's or
// job's `recorded.config.egress`) against the desired one — so every view (text, markdown, JSON) shows the same thing.

import { isIP } from 'node:net';
import type { PlannedChange } from '../model/resources.js';
import { dataCapabilityLines, planDataCapabilities, type DataCapability } from './capabilities-data.js';

export type CapabilityChange = 'added' | 'removed' | 'unchanged';

export interface EgressCapability {
  change: CapabilityChange;
  host: string;
  port: number;
  protocol: 'tcp' | 'udp';
  /** Why a reviewer should look (added entries only), or null. */
  risk: string | null;
}

export interface WorkloadCapabilities {
  workload: string;
  egress: EgressCapability[];
  /** Project data grants (capabilities-data.ts); absent when the workload has none before or after. */
  data?: DataCapability[];
}

interface Entry {
  host: string;
  port: number;
  protocol: 'tcp' | 'udp';
}

const ANY = new Set(['*', '0.0.0.0', '::', '0.0.0.0/0', '::/0']);
const PRIVATE_LITERAL = /^(127\.|10\.|192\.168\.|169\.254\.|172\.(1[6-9]|2\d|3[01])\.|100\.(6[4-9]|[7-9]\d|1[01]\d|12[0-7])\.|::1$|f[cd]|fe[89ab])/i;

function entriesOf(config: Record<string, unknown> | undefined): Entry[] | undefined {
  const egress = config?.egress;
  if (!Array.isArray(egress)) return undefined;
  return egress
    .filter((e): e is { host: string; port: number; protocol?: string } => typeof e === 'object' && e !== null && typeof (e as Entry).host === 'string' && typeof (e as Entry).port === 'number')
    .map((e) => ({ host: e.host.toLowerCase(), port: e.port, protocol: e.protocol === 'udp' ? 'udp' : 'tcp' }));
}

const keyOf = (e: Entry): string => `${e.host}:${e.port}/${e.protocol}`;

/** Why an added destination deserves a reviewer's attention. */
export function egressRisk(e: Entry): string {
  const host = e.host.replace(/^\[(.*)\]$/, '$1');
  if (ANY.has(host)) return 'any destination: unrestricted egress';
  if (host.startsWith('*.')) return 'wildcard: every subdomain, possible exfiltration channel';
  const ip = host.split('/')[0] ?? '';
  if (isIP(ip) !== 0 && PRIVATE_LITERAL.test(ip)) return 'private or host address: reaches internal services';
  if (host.includes('/')) return 'address range: many destinations, possible exfiltration channel';
  return 'new destination: possible exfiltration channel';
}

/**
 * Per workload with egress before or after this plan: every entry, marked added, removed or unchanged. A workload the
 * plan does not touch (no unit or job change carries a config) is left out.
 */
export function planCapabilities(changes: readonly PlannedChange[]): WorkloadCapabilities[] {
  const by = new Map<string, { before?: Map<string, Entry>; after?: Map<string, Entry> }>();
  for (const c of changes) {
    if (!c.address.startsWith('unit.') && !c.address.startsWith('job.')) continue;
    const slot = by.get(c.workload) ?? {};
    const before = entriesOf(c.recorded?.config);
    // A noop change keeps what was applied: its desired egress is its "after" too.
    const after = c.action === 'delete' ? [] : entriesOf(c.desired?.config);
    if (before) for (const e of before) (slot.before ??= new Map()).set(keyOf(e), e);
    if (after) for (const e of after) (slot.after ??= new Map()).set(keyOf(e), e);
    by.set(c.workload, slot);
  }
  const out: WorkloadCapabilities[] = [];
  const data = planDataCapabilities(changes);
  for (const [workload, { before, after }] of [...by].sort(([a], [b]) => (a < b ? -1 : 1))) {
    const was = before ?? new Map<string, Entry>();
    const now = after ?? new Map<string, Entry>();
    const egress: EgressCapability[] = [];
    // No record of a previous apply (first plan, or a lockfile from before records): everything desired is new.
    for (const [k, e] of now) egress.push({ change: was.has(k) ? 'unchanged' : 'added', ...e, risk: was.has(k) ? null : egressRisk(e) });
    for (const [k, e] of was) if (!now.has(k)) egress.push({ change: 'removed', ...e, risk: null });
    const grants = data.get(workload);
    if (egress.length || grants) out.push({ workload, egress: egress.sort((a, b) => (keyOf(a) < keyOf(b) ? -1 : 1)), ...(grants ? { data: grants } : {}) });
  }
  return out;
}

/** `egress +api.new.example.com:443 (new destination: possible exfiltration channel)`, one line per added/removed entry. */
export function capabilityLines(caps: WorkloadCapabilities | undefined): string[] {
  if (!caps) return [];
  const egress = caps.egress
    .filter((e) => e.change !== 'unchanged')
    .map((e) => `egress ${e.change === 'added' ? '+' : '-'}${e.host}:${e.port}${e.protocol === 'udp' ? '/udp' : ''}${e.risk ? ` (${e.risk})` : ''}`);
  return [...egress, ...dataCapabilityLines(caps.data)];
}
