// planRelease: the pure planning rule shared by `release.git` and `release.package` (desired × live × locked → change).
// Drift is judged against the lockfile only: live identity or digest differing from what agentvm last applied.
//
//   desired  locked  live                                  action   effect   reasons            drift
//   -        any     any (something live or locked)        delete   none     removed            (as found)
//   yes      -       missing                               create   restart  new                -
//   yes      -       present                               update   restart  captured (+source) -
//   yes      yes     missing                               replace  restart  live-missing (+source)  live-missing
//   yes      yes     other release or digest ≠ locked      replace  restart  live-modified (+source) live-modified
//   yes      yes     = locked, identity = desired          noop     none     -                  -
//   yes      yes     = locked, identity ≠ desired          update   restart  source-changed     -
//
// The release's effect is `restart`: the profiles served from it must restart to run the new files (the unit provider
// owns the restart itself). A delete has no effect of its own: removing the units stops the workload.

import type { Reason } from '../../model/resources.js';
import type { PlanRequest, PlanResponse } from '../provider.js';

function describe(identity: string | undefined, releaseId: unknown): string {
  if (identity !== undefined) return identity;
  if (typeof releaseId === 'string') return releaseId;
  return 'an unnamed directory';
}

export function planRelease(req: PlanRequest): PlanResponse {
  const { address, desired, live, locked } = req;
  const liveName = describe(live.identity, live.attributes?.releaseId);

  const drift: Reason[] = [];
  if (locked) {
    if (!live.exists) {
      drift.push({
        code: 'live-missing',
        message: `${address}: the applied release ${locked.identity} is no longer live on the host`,
      });
    } else if (live.identity !== locked.identity) {
      drift.push({
        code: 'live-modified',
        message: `${address}: ${liveName} is live, but agentvm applied ${locked.identity} (switched outside agentvm)`,
      });
    } else if (live.digest !== locked.digest) {
      drift.push({
        code: 'live-modified',
        message: `${address}: the files of ${locked.identity} were changed on the host (digest ${live.digest ?? 'unreadable'}, applied ${locked.digest})`,
      });
    }
  }

  if (!desired) {
    if (!live.exists && !locked) return { action: 'noop', effect: 'none', reasons: [], drift, diagnostics: [] };
    return {
      action: 'delete',
      effect: 'none',
      reasons: [{ code: 'removed', message: `${address} is no longer in the desired state` }],
      drift,
      diagnostics: [],
    };
  }

  const sourceChanged: Reason[] =
    locked && locked.identity !== desired.identity
      ? [{ code: 'source-changed', message: `${address}: ${locked.identity} → ${desired.identity}` }]
      : [];

  if (!locked) {
    if (!live.exists) {
      return {
        action: 'create',
        effect: 'restart',
        reasons: [{ code: 'new', message: `${address}: install ${desired.identity}` }],
        drift,
        diagnostics: [],
      };
    }
    const reasons: Reason[] = [
      {
        code: 'captured',
        message: `${address}: ${liveName} is live but was not applied by agentvm; it is captured as the rollback target before the change`,
      },
    ];
    if (live.identity !== desired.identity)
      reasons.push({ code: 'source-changed', message: `${address}: ${liveName} → ${desired.identity}` });
    return { action: 'update', effect: 'restart', reasons, drift, diagnostics: [] };
  }

  if (drift.length > 0)
    return { action: 'replace', effect: 'restart', reasons: [...drift, ...sourceChanged], drift, diagnostics: [] };
  if (live.identity === desired.identity)
    return { action: 'noop', effect: 'none', reasons: [], drift, diagnostics: [] };
  // No drift: live is the locked release, so the identities differ exactly when the source changed.
  return { action: 'update', effect: 'restart', reasons: sourceChanged, drift, diagnostics: [] };
}
