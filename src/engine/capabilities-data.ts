// The data lines of the plan's capabilities block (ADR 0024): which project paths a workload may read or change
// after the plan that it could not before — `data +projects/research read-write (new path: …)`, or a grant widened
// from read-only to read-write. Pure: the contract's grants as recorded at the last apply (a unit's or job's
// `recorded.config.data`) against the desired ones, merged over the workload's resources (read-write wins).

import type { PlannedChange } from '../model/resources.js';
import type { CapabilityChange } from './capabilities.js';

export type Access = 'read-only' | 'read-write';

export interface DataCapability {
  change: CapabilityChange | 'widened' | 'narrowed';
  path: string;
  /** Access after the plan (before it, for a removed grant). */
  access: Access;
  /** Access before the plan when it changed, else null. */
  was: Access | null;
  /** Why a reviewer should look (added and widened grants), or null. */
  risk: string | null;
}

function grantsOf(config: Record<string, unknown> | undefined): Map<string, Access> | undefined {
  const data = config?.data;
  if (!Array.isArray(data)) return undefined;
  const out = new Map<string, Access>();
  for (const g of data) {
    if (typeof g !== 'object' || g === null || typeof (g as { path?: unknown }).path !== 'string') continue;
    const access: Access = (g as { access?: unknown }).access === 'read-write' ? 'read-write' : 'read-only';
    const p = (g as { path: string }).path.replace(/\/+$/, '');
    if (out.get(p) !== 'read-write') out.set(p, access);
  }
  return out;
}

function merge(into: Map<string, Access>, from: Map<string, Access>): void {
  for (const [p, a] of from) if (into.get(p) !== 'read-write') into.set(p, a);
}

/** Per workload whose units or jobs carry data grants before or after this plan: every grant, marked. */
export function planDataCapabilities(changes: readonly PlannedChange[]): Map<string, DataCapability[]> {
  const by = new Map<string, { before: Map<string, Access>; after: Map<string, Access> }>();
  for (const c of changes) {
    if (!c.address.startsWith('unit.') && !c.address.startsWith('job.')) continue;
    const slot = by.get(c.workload) ?? { before: new Map(), after: new Map() };
    const before = grantsOf(c.recorded?.config);
    // A noop change keeps what was applied: its desired grants are its "after" too.
    const after = c.action === 'delete' ? undefined : grantsOf(c.desired?.config);
    if (before) merge(slot.before, before);
    if (after) merge(slot.after, after);
    by.set(c.workload, slot);
  }
  const out = new Map<string, DataCapability[]>();
  for (const [workload, { before, after }] of by) {
    const caps: DataCapability[] = [];
    for (const [p, access] of after) {
      const was = before.get(p);
      if (was === undefined)
        caps.push({
          change: 'added',
          path: p,
          access,
          was: null,
          risk:
            access === 'read-write'
              ? 'new path: the agent may read, change and delete these files'
              : 'new path: the agent may read these files',
        });
      else if (was === access) caps.push({ change: 'unchanged', path: p, access, was: null, risk: null });
      else if (access === 'read-write')
        caps.push({
          change: 'widened',
          path: p,
          access,
          was,
          risk: 'widened: the agent may now change and delete these files',
        });
      else caps.push({ change: 'narrowed', path: p, access, was, risk: null });
    }
    for (const [p, access] of before)
      if (!after.has(p)) caps.push({ change: 'removed', path: p, access, was: null, risk: null });
    if (caps.length)
      out.set(
        workload,
        caps.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0)),
      );
  }
  return out;
}

/** `data +projects/research read-write (new path: …)`, one line per grant that changes. */
export function dataCapabilityLines(data: readonly DataCapability[] | undefined): string[] {
  return (data ?? []).flatMap((d) => {
    switch (d.change) {
      case 'added':
        return [`data +${d.path} ${d.access} (${d.risk})`];
      case 'widened':
        return [`data +${d.path} ${d.was} → ${d.access} (${d.risk})`];
      case 'narrowed':
        return [`data -${d.path} ${d.was} → ${d.access}`];
      case 'removed':
        return [`data -${d.path} ${d.access}`];
      default:
        return [];
    }
  });
}
