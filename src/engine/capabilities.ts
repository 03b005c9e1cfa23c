// What a plan changes in each workload's capabilities, as a reviewer must see it (DESIGN §7, issue 13): not a unit-file
// diff but "this workload may now reach api.new.example.com:443 — a new destination, a possible exfiltration
// channel". Pure: computed from the plan's changes — the contract's egress as recorded at the last apply (a unit's or
// job's `recorded.config.egress`) against the desired one — so every view (text, markdown, JSON) shows the same thing.
// Credentials (decisions/0023) the same way from the units' `secrets`: by name, injected or held, never a reference.

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
  /** Secrets of the workload's units (credentialCapabilities); absent when it has none. */
  credentials?: CredentialCapability[];
  /** Project data grants (capabilities-data.ts); absent when the workload has none before or after. */
  data?: DataCapability[];
}

export interface CredentialCapability {
  change: CapabilityChange | 'changed';
  name: string;
  /** True: the workload holds a placeholder and the egress proxy injects the value for `host` (decisions/0023). */
  injected: boolean;
  host: string | null;
  risk: string | null;
}

interface Entry {
  host: string;
  port: number;
  protocol: 'tcp' | 'udp';
}

const ANY = new Set(['*', '0.0.0.0', '::', '0.0.0.0/0', '::/0']);
const PRIVATE_LITERAL =
  /^(127\.|10\.|192\.168\.|169\.254\.|172\.(1[6-9]|2\d|3[01])\.|100\.(6[4-9]|[7-9]\d|1[01]\d|12[0-7])\.|::1$|f[cd]|fe[89ab])/i;

function entriesOf(config: Record<string, unknown> | undefined): Entry[] | undefined {
  const egress = config?.egress;
  if (!Array.isArray(egress)) return undefined;
  return egress
    .filter(
      (e): e is { host: string; port: number; protocol?: string } =>
        typeof e === 'object' &&
        e !== null &&
        typeof (e as Entry).host === 'string' &&
        typeof (e as Entry).port === 'number',
    )
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
    for (const [k, e] of now)
      egress.push({ change: was.has(k) ? 'unchanged' : 'added', ...e, risk: was.has(k) ? null : egressRisk(e) });
    for (const [k, e] of was) if (!now.has(k)) egress.push({ change: 'removed', ...e, risk: null });
    const grants = data.get(workload);
    if (egress.length || grants)
      out.push({
        workload,
        egress: egress.sort((a, b) => (keyOf(a) < keyOf(b) ? -1 : 1)),
        ...(grants ? { data: grants } : {}),
      });
  }
  return withCredentials(out, credentialCapabilities(changes));
}

// ---------------------------------------------------------------------------------------------------------
// Credentials: which secrets a workload's units get, and whether the workload holds the value or a placeholder.

type SecretView = { name: string; host: string | null };

function secretsOf(config: Record<string, unknown> | undefined): SecretView[] | undefined {
  const secrets = config?.secrets;
  if (!Array.isArray(secrets)) return undefined;
  return secrets
    .filter(
      (s): s is { name: string; inject?: { host?: unknown } } =>
        typeof s === 'object' && s !== null && typeof (s as { name?: unknown }).name === 'string',
    )
    .map((s) => ({ name: s.name, host: typeof s.inject?.host === 'string' ? s.inject.host : null }));
}

const HELD = 'held by the workload: it can send the value anywhere it reaches';

/** Per workload, each secret of its units (by name) before and after this plan. Names only: never a ref or a value. */
export function credentialCapabilities(changes: readonly PlannedChange[]): Map<string, CredentialCapability[]> {
  const by = new Map<string, { before: Map<string, SecretView>; after: Map<string, SecretView> }>();
  for (const c of changes) {
    if (!c.address.startsWith('unit.')) continue;
    const slot = by.get(c.workload) ?? { before: new Map(), after: new Map() };
    for (const s of secretsOf(c.recorded?.config) ?? []) slot.before.set(s.name, s);
    if (c.action !== 'delete') for (const s of secretsOf(c.desired?.config) ?? []) slot.after.set(s.name, s);
    by.set(c.workload, slot);
  }
  const out = new Map<string, CredentialCapability[]>();
  for (const [workload, { before, after }] of by) {
    const list: CredentialCapability[] = [];
    for (const [name, s] of after) {
      const was = before.get(name);
      const change = !was ? 'added' : was.host === s.host ? 'unchanged' : 'changed';
      const risk = s.host === null && change !== 'unchanged' ? HELD : null;
      list.push({ change, name, injected: s.host !== null, host: s.host, risk });
    }
    for (const [name, s] of before)
      if (!after.has(name)) list.push({ change: 'removed', name, injected: s.host !== null, host: s.host, risk: null });
    if (list.length)
      out.set(
        workload,
        list.sort((a, b) => (a.name < b.name ? -1 : 1)),
      );
  }
  return out;
}

function withCredentials(
  caps: WorkloadCapabilities[],
  credentials: Map<string, CredentialCapability[]>,
): WorkloadCapabilities[] {
  const out = caps.map((c) => (credentials.has(c.workload) ? { ...c, credentials: credentials.get(c.workload)! } : c));
  for (const [workload, list] of credentials)
    if (!caps.some((c) => c.workload === workload)) out.push({ workload, egress: [], credentials: list });
  return out.sort((a, b) => (a.workload < b.workload ? -1 : 1));
}

/** `credential +llm-api-key (injected for api.example.com: the workload holds a placeholder)`, per changed secret. */
export function credentialLines(caps: WorkloadCapabilities | undefined): string[] {
  return (caps?.credentials ?? [])
    .filter((c) => c.change !== 'unchanged')
    .map((c) => {
      const how = c.injected ? `injected for ${c.host}: the workload holds a placeholder` : HELD;
      if (c.change === 'removed') return `credential -${c.name}`;
      // A credential that stops being injected is a new capability of the workload (+, flagged); the reverse narrows it.
      if (c.change === 'changed')
        return c.injected ? `credential ~${c.name} (now ${how})` : `credential +${c.name} (no longer injected; ${how})`;
      return `credential +${c.name} (${how})`;
    });
}

/** `egress +api.new.example.com:443 (new destination: possible exfiltration channel)`, one line per added/removed entry. */
export function capabilityLines(caps: WorkloadCapabilities | undefined): string[] {
  if (!caps) return [];
  const egress = caps.egress
    .filter((e) => e.change !== 'unchanged')
    .map(
      (e) =>
        `egress ${e.change === 'added' ? '+' : '-'}${e.host}:${e.port}${e.protocol === 'udp' ? '/udp' : ''}${e.risk ? ` (${e.risk})` : ''}`,
    )
    .concat(credentialLines(caps));
  return [...egress, ...dataCapabilityLines(caps.data)];
}
