// Governance: runs every policy rule over the whole desired state and returns every finding — never stops at the
// first, never throws for bad input. The risk-tier table (tiers.ts) decides which controls apply to a workload;
// the rules (rules/*.ts, one file per family) turn violations into diagnostics with stable codes, documented in
// docs/diagnostic-codes.md.
// Invariant: the result is deterministic (sorted like every other diagnostic list) and holds one finding per
// (code, file, JSON path), so two sweeps that see the same bad value report it once.

import type { DesiredState, LoadedDocument, WorkloadDefinition } from '../contracts/desired-state.js';
import type { Host } from '../generated/host.js';
import type { WorkloadContract } from '../generated/workload-contract.js';
import type { WorkloadManifest } from '../generated/workload-manifest.js';
import { compareDiagnostics, type Diagnostic } from '../diagnostics/index.js';
import { workloadContext, type PolicyContext, type PolicyRule, type WorkloadRule } from './context.js';
import { canaryRules } from './rules/canary.js';
import { credentialRules } from './rules/credentials.js';
import { dataRules } from './rules/data.js';
import { egressRules } from './rules/egress.js';
import { hostRules } from './rules/hosts.js';
import { hostInjectionRules, injectionRules } from './rules/injection.js';
import { minimumTierRules } from './rules/minimum-tier.js';
import { previewRules } from './rules/previews.js';
import { profileRules } from './rules/profiles.js';
import { hostSecretRules, secretReferenceRules, secretScanRules } from './rules/secrets.js';
import { signatureRules } from './rules/signature.js';
import { sourceRules } from './rules/source.js';
import { substrateRules } from './rules/substrate.js';
import { toolKindRules } from './rules/tool-kinds.js';
import { toolRules } from './rules/tools.js';
import { trustedRootRules } from './rules/trusted-root.js';
import { untrustedInputRules } from './rules/untrusted-input.js';
import { effectiveTiers, type EffectiveTiers } from './tiers.js';

export {
  effectiveTiers,
  RISK_TIERS,
  TIER_TABLE,
  tierRank,
  type EffectiveTiers,
  type RiskTier,
  type TierControls,
  type UntrustedInputRule,
} from './tiers.js';
export type { PolicyContext, PolicyRule, WorkloadContext, WorkloadRule } from './context.js';
export {
  findSecret,
  parseSecretReference,
  type SecretFinding,
  type SecretReference,
} from '../secrets/secret-detectors.js';
/** Promotion controls (canary, tested rollback): they need the lockfile and the live host, so plan evaluates them. */
export { promotionRules, type PromotionInput } from './rules/promotion.js';

/** Rules about one workload, in the order their findings read best (specific before the generic secret scan). */
export const WORKLOAD_RULES: readonly WorkloadRule[] = [
  minimumTierRules,
  untrustedInputRules,
  substrateRules,
  toolRules,
  toolKindRules,
  secretReferenceRules,
  credentialRules,
  egressRules,
  dataRules,
  sourceRules,
  signatureRules,
  profileRules,
  canaryRules,
  previewRules,
  injectionRules,
];

/** Rules that look across documents: hosts, the repository-wide secret scan. */
export const POLICY_RULES: readonly PolicyRule[] = [
  hostRules,
  hostSecretRules,
  hostInjectionRules,
  secretScanRules,
  trustedRootRules,
];

export interface PolicyResult {
  diagnostics: Diagnostic[];
  /** The effective tier table, for the engine's plan/apply-time controls (tested rollback, audit). */
  tiers: EffectiveTiers;
}

/** Every governance finding for `state`, sorted. */
export function evaluatePolicy(state: DesiredState): Diagnostic[] {
  return evaluatePolicyWithTiers(state).diagnostics;
}

/** `evaluatePolicy` plus the effective tier table it used. */
export function evaluatePolicyWithTiers(loaded: DesiredState): PolicyResult {
  const state = withRejectedDocuments(loaded);
  const tiers = effectiveTiers(state.config);
  const base: PolicyContext = { state, tiers };
  const found: Diagnostic[] = [...tiers.diagnostics];
  for (const def of state.workloads.values()) {
    const ctx = workloadContext(base, def);
    for (const rule of WORKLOAD_RULES) found.push(...rule(ctx));
  }
  for (const rule of POLICY_RULES) found.push(...rule(base));

  const seen = new Set<string>();
  const diagnostics = found.filter((d) => {
    const key = `${d.code}\u0000${d.location?.file ?? ''}\u0000${d.path ?? d.location?.line ?? ''}`;
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
  diagnostics.sort(compareDiagnostics);
  return { diagnostics, tiers };
}

const REJECTED_WORKLOAD_DOC = /^workloads\/([^/]+)\/(contract|manifest)\.yaml$/;
const REJECTED_HOST_DOC = /^hosts\/([^/]+)\.ya?ml$/;

/**
 * The state policy evaluates: the loaded one plus the documents that failed their schema, each where it belongs.
 * A schema error in one document must not hide policy errors in it or in the others (validate reports every
 * problem in one run); the rules read documents defensively, so a partly valid one only yields fewer findings.
 * Nothing else sees this view: plan and apply never deploy a rejected document.
 */
function withRejectedDocuments(state: DesiredState): DesiredState {
  if (!state.rejected || state.rejected.length === 0) return state;
  const workloads = new Map<string, WorkloadDefinition>([...state.workloads].map(([k, v]) => [k, { ...v }]));
  const hosts = new Map(state.hosts);
  for (const doc of state.rejected) {
    const wl = REJECTED_WORKLOAD_DOC.exec(doc.file);
    if (wl) {
      const def = workloads.get(wl[1]!);
      if (!def) continue;
      if (wl[2] === 'contract' && !def.contract) def.contract = doc as LoadedDocument<WorkloadContract>;
      if (wl[2] === 'manifest' && !def.manifest) def.manifest = doc as LoadedDocument<WorkloadManifest>;
      continue;
    }
    const host = REJECTED_HOST_DOC.exec(doc.file);
    if (host && !hosts.has(host[1]!)) hosts.set(host[1]!, doc as LoadedDocument<Host>);
  }
  return { ...state, workloads, hosts };
}
