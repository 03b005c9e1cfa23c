// `spec.policy.minimumTier` of agentvm.yaml: a repository may refuse workloads below a tier (e.g. a production
// fleet where everything is at least `moderate`, so everything is signed).

import { errorDiag, type Diagnostic } from '../../diagnostics/index.js';
import { at, lineOf, type WorkloadRule } from '../context.js';
import { tierRank } from '../tiers.js';

export const minimumTierRules: WorkloadRule = (ctx) => {
  const minimum = ctx.tiers.minimumTier;
  const doc = ctx.contract;
  if (!doc || !minimum || !ctx.tier || tierRank(ctx.tier) >= tierRank(minimum)) return [];
  const where = ctx.state.config ? ` (${lineOf(ctx.state.config, ['spec', 'policy', 'minimumTier'])})` : '';
  const out: Diagnostic[] = [
    errorDiag(
      'policy.tier-below-minimum',
      `Workload \`${ctx.name}\` is \`${ctx.tier}\`, below this repository's minimum tier \`${minimum}\`.`,
      {
        detail: `agentvm.yaml sets spec.policy.minimumTier: ${minimum}${where}. Raise \`riskTier\` to \`${minimum}\` or higher and meet that tier's controls.`,
        ...at(doc, ['spec', 'riskTier']),
        address: ctx.address,
      },
    ),
  ];
  return out;
};
