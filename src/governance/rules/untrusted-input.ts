// Untrusted input (email, transcripts, web, …) can redirect an agent, so where it may enter is a tier control:
// below `high` nowhere; at `high` only a Tier-2 job or a service fenced by an egress allowlist; at `critical`
// only a Tier-2 job. The effective table (agentvm.yaml may tighten it) decides, not the tier name.

import { errorDiag, type Diagnostic } from '../../diagnostics/index.js';
import { at, list, record, specOf, text, type WorkloadRule } from '../context.js';
import { RISK_TIERS, type EffectiveTiers } from '../tiers.js';
import { quote } from '../../secrets/text-safety.js';

export const untrustedInputRules: WorkloadRule = (ctx) => {
  const doc = ctx.contract;
  if (!doc || !ctx.controls || !ctx.tier) return [];
  const spec = specOf(doc);
  const inputs = list(spec.untrustedInputs).filter((v): v is string => typeof v === 'string');
  if (inputs.length === 0) return [];
  const which = (): string => inputs.map((v) => quote(v, 'an input')).join(', ');
  const out: Diagnostic[] = [];
  const rule = ctx.controls.untrustedInput;
  const substrate = text(spec.substrate);
  const egress = list(spec.egress).filter((e) => record(e) !== undefined);

  if (rule === 'deny') {
    const lowest = lowestTierAllowingUntrustedInput(ctx.tiers);
    out.push(
      errorDiag(
        'policy.untrusted-input-tier',
        `Workload \`${ctx.name}\` ingests untrusted input (${which()}) at riskTier \`${ctx.tier}\`, which does not allow it.`,
        {
          detail: lowest
            ? `A workload with untrusted input is at least \`${lowest}\`: set \`riskTier: ${lowest}\` (which also requires a canary, a rehearsed rollback and a Tier-2 job or an egress allowlist), or stop ingesting it.`
            : "This repository's policy allows untrusted input at no tier; stop ingesting it, or relax spec.policy.tiers in agentvm.yaml through review.",
          ...at(doc, ['spec', 'riskTier']),
          address: ctx.address,
        },
      ),
    );
  } else if (substrate === 'service' && (rule === 'job-only' || egress.length === 0)) {
    out.push(
      errorDiag(
        'policy.untrusted-input-substrate',
        `Workload \`${ctx.name}\` is a \`service\` that ingests untrusted input (${which()}); at \`${ctx.tier}\` that is allowed only ${rule === 'job-only' ? 'in a Tier-2 job' : 'in a Tier-2 job or a service with an egress allowlist'}.`,
        {
          detail:
            rule === 'job-only'
              ? 'Run the part that reads untrusted input as `substrate: job` (an ephemeral microVM with default-deny egress), or stop ingesting it.'
              : 'Either list the exact destinations under `egress` (host and port), so an injected instruction cannot send data anywhere else, or run it as `substrate: job`.',
          ...at(doc, ['spec', 'substrate']),
          address: ctx.address,
        },
      ),
    );
  }
  return out;
};

function lowestTierAllowingUntrustedInput(tiers: EffectiveTiers): string | undefined {
  return RISK_TIERS.find((t) => tiers.controls[t].untrustedInput !== 'deny');
}
