// A saved plan is bound to the commit it names (issue 21): apply re-derives the plan from that commit, the lockfile
// and the live host, and refuses a plan file whose content differs from the derivation — so what is applied is what
// the commit says, not what a file on a CI runner says. Only `createdAt` (when it was made), `id` (recomputed from
// the content, so an editor could forge it) and `source.ref` (a name; apply checks separately that it still resolves
// to the commit) may differ.
// Invariant: the comparison is over canonical JSON (key order never matters) and reports the FIRST difference in plan
// order — the first change (by position, with its address) whose content differs, and the field inside it.

import { AgentvmError } from '../diagnostics/index.js';
import type { Plan } from '../engine/plan.js';
import { canonicalJson } from '../model/index.js';

/** Where two plans first differ: `changes[3] unit.web.core: .desired.config.entrypoint`, or null when they agree. */
export function firstPlanDifference(saved: Plan, derived: Plan): { where: string; address?: string } | null {
  const top: Array<keyof Plan> = ['formatVersion', 'host', 'mode', 'lock', 'liveFingerprint'];
  for (const key of top) {
    if (canonicalJson(saved[key]) !== canonicalJson(derived[key])) return { where: `.${key}` };
  }
  const { ref: _savedRef, ...savedSource } = saved.source;
  const { ref: _derivedRef, ...derivedSource } = derived.source;
  if (canonicalJson(savedSource) !== canonicalJson(derivedSource))
    return { where: `.source${firstPath(savedSource, derivedSource)}` };
  const count = Math.max(saved.changes.length, derived.changes.length);
  for (let i = 0; i < count; i++) {
    const a = saved.changes[i];
    const b = derived.changes[i];
    if (canonicalJson(a) === canonicalJson(b)) continue;
    const address = b?.address ?? a?.address;
    if (!a || !b || a.address !== b.address) {
      return {
        where: `.changes[${i}] (the plan file has ${a ? a.address : 'no change'} where the commit derives ${b ? b.address : 'none'})`,
        ...(address ? { address } : {}),
      };
    }
    return { where: `.changes[${i}]${firstPath(a, b)}`, address: b.address };
  }
  for (const key of ['drift', 'capabilities', 'diagnostics', 'summary', 'applicable'] as const) {
    if (canonicalJson(saved[key]) !== canonicalJson(derived[key]))
      return { where: `.${key}${firstPath(saved[key], derived[key])}` };
  }
  // Anything else in the file (a field this version does not know) is an edit too.
  // `remote` is compared by absence: apply refuses a remote plan before it gets here (apply.remote-plan).
  const known = new Set([
    'formatVersion',
    'id',
    'createdAt',
    'host',
    'mode',
    'source',
    'lock',
    'liveFingerprint',
    'changes',
    'drift',
    'capabilities',
    'diagnostics',
    'summary',
    'applicable',
  ]);
  const extra = Object.keys(saved).find((k) => !known.has(k));
  return extra ? { where: `.${extra}` } : null;
}

/** Throws `apply.plan-mismatch` unless the saved plan is exactly what its commit derives. */
export function assertPlanBound(saved: Plan, derived: Plan, file: string): void {
  const diff = firstPlanDifference(saved, derived);
  if (!diff) return;
  const at = diff.address ? `${diff.address} (${diff.where})` : diff.where;
  throw new AgentvmError(
    'apply.plan-mismatch',
    `The plan file ${file} does not match what commit ${saved.source.commit ?? '(none)'} derives for host ${saved.host}: first difference at ${at}.`,
    {
      detail:
        'Nothing was applied. The file was changed after `agentvm plan --out` wrote it (or was written by another agentvm version): apply carries out what the commit says, never what a file says. ' +
        'Make a new plan from the commit with `agentvm plan --out <file>`, review it, and apply that.',
    },
  );
}

/** The path (`.a.b[2].c`) of the first place two JSON values differ. */
function firstPath(a: unknown, b: unknown): string {
  if (canonicalJson(a) === canonicalJson(b)) return '';
  if (Array.isArray(a) && Array.isArray(b)) {
    for (let i = 0; i < Math.max(a.length, b.length); i++) {
      if (canonicalJson(a[i]) !== canonicalJson(b[i]))
        return `[${i}]${a[i] === undefined || b[i] === undefined ? '' : firstPath(a[i], b[i])}`;
    }
    return '';
  }
  if (a && b && typeof a === 'object' && typeof b === 'object' && !Array.isArray(a) && !Array.isArray(b)) {
    const ra = a as Record<string, unknown>;
    const rb = b as Record<string, unknown>;
    for (const k of [...new Set([...Object.keys(ra), ...Object.keys(rb)])].sort()) {
      if (canonicalJson(ra[k]) !== canonicalJson(rb[k]))
        return `.${k}${ra[k] === undefined || rb[k] === undefined ? '' : firstPath(ra[k], rb[k])}`;
    }
  }
  return '';
}
