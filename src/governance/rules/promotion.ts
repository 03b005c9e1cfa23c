// Promotion controls (`canary` and `testedRollback`, `high` and up by default): rules that need what the host runs and
// what the lockfile recorded, so app/plan.ts evaluates them at plan time, after reading the host — unlike the rules
// in this folder that see the desired state only.
//
// A promotion is a plan that changes the release of a workload that already has one: the desired release identity
// (release.<workload>) differs from the lockfile's `workloads.<w>.release.identity` (C → N). First installs are not
// promotions. Only services with profiles are promoted through a canary; Tier-2 jobs boot each release fresh.
//
//   policy.canary-skipped          (control `canary`) the promotion would not go through the canary first:
//                                  - the canary profile's unit is not on the host, has no lockfile entry, or its
//                                    entry runs another release than C: the canary would be *created* with N, so
//                                    there is no soak against a running C and no applied unit to roll back to; or
//                                  - `canary.soakSeconds` is 0: nothing soaks.
//   policy.rollback-not-rehearsed  (control `testedRollback`) the lockfile has no passed rehearsal of exactly this
//                                  pair: the most recent rehearsal with fromIdentity = N (promoted to the canary) and
//                                  toIdentity = C (rolled back to) must have passed (`agentvm rehearse`).
//
// Severity: an error (the plan cannot be applied) when the workload's units run under a live service manager. When
// they are only rendered offline (a host root without a running manager: an image, a scratch root), nothing is
// promoted live and nothing can be soaked or rehearsed, so the same codes are warnings that say so.

import type { DesiredState } from '../../contracts/desired-state.js';
import { errorDiag, warningDiag, type Diagnostic } from '../../diagnostics/index.js';
import type { Lockfile } from '../../state/index.js';
import { at, list, record, specOf, text } from '../context.js';
import { effectiveTiers, isRiskTier } from '../tiers.js';

export interface PromotionInput {
  state: DesiredState;
  host: string;
  /** Desired release identity per workload of the host (the `release.<workload>` resources of the expanded state). */
  desiredReleases: ReadonlyMap<string, string>;
  lock: Pick<Lockfile, 'workloads' | 'resources'> | null;
  /** What the host has at a unit address: present at all, and run by a live service manager. */
  unit: (address: string) => { exists: boolean; online: boolean };
}

export function promotionRules(input: PromotionInput): Diagnostic[] {
  const { state, lock } = input;
  if (!lock) return [];
  const tiers = effectiveTiers(state.config);
  const out: Diagnostic[] = [];
  for (const [workload, next] of [...input.desiredReleases].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    const current = lock.workloads[workload]?.release;
    if (!current || current.identity === next) continue;
    const def = state.workloads.get(workload);
    const doc = def?.manifest;
    const tier = def?.contract?.value.spec?.riskTier;
    if (!doc || !isRiskTier(tier)) continue;
    const controls = tiers.controls[tier];
    if (!controls.canary && !controls.testedRollback) continue;
    const spec = specOf(doc);
    const profiles = list(spec.profiles)
      .map((p) => text(record(p)?.name))
      .filter((n): n is string => n !== undefined);
    if (text(specOf(def.contract).substrate) !== 'service' || profiles.length === 0) continue;

    const address = `release.${workload}`;
    const where = at(doc, ['spec', 'source']);
    const online = profiles.some((p) => input.unit(`unit.${workload}.${p}`).online);
    const report = online ? errorDiag : warningDiag;
    const offlineNote = online
      ? ''
      : ' The units on this host are rendered offline (no running service manager), so nothing is promoted live here and this is not enforced; it is an error where the units run.';
    const canary = record(spec.canary);
    const canaryProfile = text(canary?.profile);
    const hasCanary = canaryProfile !== undefined && profiles.includes(canaryProfile);
    const promotion = `${current.releaseId} → ${next}`;

    // `policy.canary-missing` / `policy.canary-unknown-profile` already refuse a high workload without a usable canary.
    if (controls.canary && hasCanary) {
      const canaryAddress = `unit.${workload}.${canaryProfile}`;
      const unit = input.unit(canaryAddress);
      const locked = lock.resources[canaryAddress];
      const lockedRelease = typeof locked?.attributes?.releaseId === 'string' ? locked.attributes.releaseId : undefined;
      const soak = canary?.soakSeconds;
      let why: string | undefined;
      if (!unit.exists || !locked)
        why = `its canary profile \`${canaryProfile}\` is not deployed on host \`${input.host}\``;
      else if (lockedRelease !== current.releaseId)
        why = `its canary profile \`${canaryProfile}\` runs release ${lockedRelease ?? 'unknown'}, not the current release ${current.releaseId}`;
      else if (soak === 0) why = 'its canary has `soakSeconds: 0`, so nothing soaks';
      if (why) {
        out.push(
          report(
            'policy.canary-skipped',
            `Promotion of \`${workload}\` (${promotion}) would skip the canary: ${why}.`,
            {
              detail: `\`${workload}\` is \`${tier}\`: a new release goes to the canary profile first, which must run the current release so the promotion can soak against it and be rolled back. Apply the commit that is live now first (\`agentvm apply --ref <that commit>\`: it deploys \`${canaryProfile}\` with ${current.releaseId}), keep \`soakSeconds\` above 0, then plan the promotion again.${offlineNote}`,
              ...where,
              address,
            },
          ),
        );
      }
    }

    if (controls.testedRollback) {
      const rehearsal = (lock.workloads[workload]?.rehearsals ?? []).find(
        (r) => r.fromIdentity === next && r.toIdentity === current.identity,
      );
      if (rehearsal?.result !== 'passed') {
        out.push(
          report(
            'policy.rollback-not-rehearsed',
            `Promotion of \`${workload}\` (${promotion}) needs a rehearsed rollback, and ${rehearsal ? `the last rehearsal of this pair failed (${rehearsal.rehearsedAt})` : 'none was recorded for this pair'}.`,
            {
              detail: `\`${workload}\` is \`${tier}\`: before promotion, rehearse the rollback on the canary: \`agentvm rehearse ${workload} --host ${input.host}\` points ${hasCanary ? `\`${canaryProfile}\`` : 'the canary profile'} at ${next}, checks its health, points it back at ${current.releaseId}, checks again, and records the result in the lockfile.${hasCanary ? '' : ' The workload needs a `canary` profile for that.'}${offlineNote}`,
              ...where,
              address,
            },
          ),
        );
      }
    }
  }
  return out;
}
