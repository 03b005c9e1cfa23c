// Canary before promotion (control `canary`, `high` and up): a service with profiles names one of them as the
// canary, promoted and health-gated before the rest. A canary that is present must name a real profile at any
// tier. Tested rollback is the other `high` control; it needs the lockfile, so the engine checks it at plan time.

import { didYouMean } from '../../contracts/did-you-mean.js';
import { errorDiag, type Diagnostic } from '../../diagnostics/index.js';
import { at, list, record, specOf, text, type WorkloadRule } from '../context.js';
import { quote } from '../../secrets/text-safety.js';

export const canaryRules: WorkloadRule = (ctx) => {
  const doc = ctx.manifest;
  if (!doc) return [];
  const spec = specOf(doc);
  const profiles = list(spec.profiles)
    .map((p) => text(record(p)?.name))
    .filter((n): n is string => n !== undefined);
  const canary = record(spec.canary);
  const out: Diagnostic[] = [];

  if (canary) {
    const profile = text(canary.profile);
    if (profile !== undefined && !profiles.includes(profile)) {
      const guess = didYouMean(profile, profiles);
      out.push(
        errorDiag(
          'policy.canary-unknown-profile',
          `The canary profile ${quote(profile, 'named')} is not one of this workload's profiles${guess ? ` — did you mean \`${guess}\`?` : '.'}`,
          {
            detail:
              profiles.length > 0
                ? `Set \`canary.profile\` to one of: ${profiles.map((p) => quote(p, '?')).join(', ')}.`
                : 'The workload has no profiles, so nothing can be promoted as a canary; add profiles or remove `canary`.',
            ...at(doc, ['spec', 'canary', 'profile']),
            address: ctx.address,
          },
        ),
      );
    }
    return out;
  }

  const substrate = text(specOf(ctx.contract).substrate);
  if (ctx.controls?.canary && substrate === 'service' && profiles.length > 0) {
    out.push(
      errorDiag('policy.canary-missing', `Workload \`${ctx.name}\` is \`${ctx.tier}\` and has no canary.`, {
        detail: `Add \`canary: { profile: <one of ${profiles.map((p) => quote(p, '?')).join(', ')}>, soakSeconds: 60 }\`: that profile is promoted and must stay healthy for the soak time before the others follow.`,
        ...at(doc, ['spec', 'canary']),
        address: ctx.address,
      }),
    );
  }
  return out;
};
