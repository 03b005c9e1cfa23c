// The risk-tier table of DESIGN §2 as data, and the effective table after agentvm.yaml's overrides.
// Invariants: overrides may only TIGHTEN (a loosening override is reported as `policy.loosening` and ignored),
// and tightening is monotone — a control an override requires at a tier is required at every higher tier too, so
// no workload can shed a control by declaring itself riskier.

import { errorDiag, type Diagnostic } from '../diagnostics/index.js';
import type { LoadedDocument } from '../contracts/desired-state.js';
import { formatJsonPath } from '../contracts/yaml-document.js';
import type { RepoConfig } from '../generated/config.js';
import type { RiskTier } from '../generated/workload-contract.js';

export type { RiskTier };

/**
 * Where untrusted input (email, transcripts, web …) may enter, strictest first:
 * `deny` — nowhere; `job-only` — only a Tier-2 job (ephemeral microVM, default-deny egress);
 * `job-or-egress-allowlist` — a job, or a service whose egress is an explicit non-empty allowlist.
 */
export type UntrustedInputRule = 'deny' | 'job-only' | 'job-or-egress-allowlist';

/** The controls a tier requires. `true` means required; the engine and the rules read nothing else. */
export interface TierControls {
  /** Tools are an explicit allowlist, each pinned; unknown tools are denied. */
  toolsAllowlist: boolean;
  /** Secrets appear only as references (file:, systemd-creds:, …), never as values. */
  secretsByReference: boolean;
  /** Egress is an explicit allowlist without wildcards. */
  egressAllowlist: boolean;
  /** The release is signed (Sigstore bundle + identity/issuer or key) and digest-pinned. */
  signedRelease: boolean;
  /** Every action writes an audit record. */
  audit: boolean;
  /** A canary profile is promoted and health-gated before the others. */
  canary: boolean;
  /** A rollback was rehearsed and recorded before promotion (checked at plan/apply time from the lockfile). */
  testedRollback: boolean;
  untrustedInput: UntrustedInputRule;
}

export type BooleanControl = Exclude<keyof TierControls, 'untrustedInput'>;

/** Ordered from least to most risky; the index is the tier's rank. */
export const RISK_TIERS: readonly RiskTier[] = ['low', 'moderate', 'high', 'critical'];

export const BOOLEAN_CONTROLS: readonly BooleanControl[] = [
  'toolsAllowlist',
  'secretsByReference',
  'egressAllowlist',
  'signedRelease',
  'audit',
  'canary',
  'testedRollback',
];

/** Strictest first; a rule's rank is its strictness (higher is stricter). */
const UNTRUSTED_INPUT_STRICTNESS: Record<UntrustedInputRule, number> = {
  'job-or-egress-allowlist': 0,
  'job-only': 1,
  deny: 2,
};

/** DESIGN §2, row by row. */
export const TIER_TABLE: Readonly<Record<RiskTier, Readonly<TierControls>>> = Object.freeze({
  low: Object.freeze({
    toolsAllowlist: true,
    secretsByReference: true,
    egressAllowlist: false,
    signedRelease: false,
    audit: true,
    canary: false,
    testedRollback: false,
    untrustedInput: 'deny',
  }),
  moderate: Object.freeze({
    toolsAllowlist: true,
    secretsByReference: true,
    egressAllowlist: true,
    signedRelease: true,
    audit: true,
    canary: false,
    testedRollback: false,
    untrustedInput: 'deny',
  }),
  high: Object.freeze({
    toolsAllowlist: true,
    secretsByReference: true,
    egressAllowlist: true,
    signedRelease: true,
    audit: true,
    canary: true,
    testedRollback: true,
    untrustedInput: 'job-or-egress-allowlist',
  }),
  critical: Object.freeze({
    toolsAllowlist: true,
    secretsByReference: true,
    egressAllowlist: true,
    signedRelease: true,
    audit: true,
    canary: true,
    testedRollback: true,
    untrustedInput: 'job-only',
  }),
});

export interface EffectiveTiers {
  controls: Readonly<Record<RiskTier, Readonly<TierControls>>>;
  /** Workloads below this tier are refused (`policy.tier-below-minimum`). */
  minimumTier?: RiskTier;
  /** `policy.loosening` for every override that tried to relax the table. */
  diagnostics: Diagnostic[];
}

export function tierRank(tier: RiskTier): number {
  return RISK_TIERS.indexOf(tier);
}

export function isRiskTier(value: unknown): value is RiskTier {
  return typeof value === 'string' && (RISK_TIERS as readonly string[]).includes(value);
}

/** True when `a` is at least as strict as `b`. */
export function untrustedInputAtLeast(a: UntrustedInputRule, b: UntrustedInputRule): boolean {
  return UNTRUSTED_INPUT_STRICTNESS[a] >= UNTRUSTED_INPUT_STRICTNESS[b];
}

const UNTRUSTED_INPUT_RULES = Object.keys(UNTRUSTED_INPUT_STRICTNESS) as UntrustedInputRule[];

/** The built-in table merged with `spec.policy` of agentvm.yaml. Never throws; bad overrides become diagnostics. */
export function effectiveTiers(config?: LoadedDocument<RepoConfig>): EffectiveTiers {
  const diagnostics: Diagnostic[] = [];
  const merged = {} as Record<RiskTier, TierControls>;
  for (const tier of RISK_TIERS) merged[tier] = { ...TIER_TABLE[tier] };

  const policy = asObject(asObject(config?.value.spec)?.policy);
  const overrides = asObject(policy?.tiers);
  if (config && overrides) {
    for (const tier of RISK_TIERS) {
      const o = asObject(overrides[tier]);
      if (!o) continue;
      const base = TIER_TABLE[tier];
      for (const control of BOOLEAN_CONTROLS) {
        const v = o[control];
        if (typeof v !== 'boolean') continue;
        if (v) merged[tier][control] = true;
        else if (base[control]) diagnostics.push(loosening(config, tier, control, `requires \`${control}\``, 'true'));
      }
      const u = o.untrustedInput;
      if (typeof u === 'string' && (UNTRUSTED_INPUT_RULES as string[]).includes(u)) {
        const rule = u as UntrustedInputRule;
        if (untrustedInputAtLeast(rule, base.untrustedInput)) merged[tier].untrustedInput = rule;
        else
          diagnostics.push(
            loosening(
              config,
              tier,
              'untrustedInput',
              `allows untrusted input only as \`${base.untrustedInput}\``,
              base.untrustedInput,
            ),
          );
      }
    }
  }

  // Monotone: carry every requirement of a tier up to the tiers above it. For untrusted input the built-in table
  // deliberately allows MORE at higher tiers (they carry more controls), so only what agentvm.yaml tightened
  // beyond the table is carried up: a repository that forbids untrusted input at `high` forbids it at `critical`.
  let carried: UntrustedInputRule | undefined;
  for (let i = 0; i < RISK_TIERS.length; i++) {
    const tier = RISK_TIERS[i]!;
    const here = merged[tier];
    if (i > 0) {
      const below = merged[RISK_TIERS[i - 1]!];
      for (const control of BOOLEAN_CONTROLS) if (below[control]) here[control] = true;
    }
    if (carried && !untrustedInputAtLeast(here.untrustedInput, carried)) here.untrustedInput = carried;
    if (!untrustedInputAtLeast(TIER_TABLE[tier].untrustedInput, here.untrustedInput)) carried = here.untrustedInput;
  }

  const controls = Object.freeze(Object.fromEntries(RISK_TIERS.map((t) => [t, Object.freeze(merged[t])]))) as Record<
    RiskTier,
    Readonly<TierControls>
  >;
  const minimumTier = isRiskTier(policy?.minimumTier) ? policy.minimumTier : undefined;
  return minimumTier ? { controls, minimumTier, diagnostics } : { controls, diagnostics };
}

function loosening(
  config: LoadedDocument<RepoConfig>,
  tier: RiskTier,
  control: keyof TierControls,
  what: string,
  fix: string,
): Diagnostic {
  const path = ['spec', 'policy', 'tiers', tier, control];
  return errorDiag(
    'policy.loosening',
    `agentvm.yaml tries to loosen the \`${tier}\` tier: the built-in table ${what}, and overrides may only tighten.`,
    {
      detail: `Remove \`${control}\` from spec.policy.tiers.${tier}, or set it to \`${fix}\`. The override is ignored; the built-in control stays in force. To relax a workload's controls, change its riskTier instead, with review.`,
      path: formatJsonPath(path),
      location: config.locate(path, { key: true }),
    },
  );
}

function asObject(v: unknown): Record<string, unknown> | undefined {
  return v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
}
