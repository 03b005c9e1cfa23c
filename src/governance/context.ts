// What a policy rule sees, and the small vocabulary every rule uses to report: `at()` for the JSON path and
// file:line:column of a finding, `list()`/`text()` to read documents defensively.
// Invariant: rules never throw on odd input. Documents normally passed schema validation, but governance must not
// rely on that (a mutated or partly valid document only yields fewer findings, never a crash).

import type { DesiredState, LoadedDocument, WorkloadDefinition } from '../contracts/desired-state.js';
import { formatJsonPath, type JsonPath } from '../contracts/yaml-document.js';
import type { Diagnostic, SourceLocation } from '../diagnostics/index.js';
import type { WorkloadContract } from '../generated/workload-contract.js';
import type { WorkloadManifest } from '../generated/workload-manifest.js';
import { isRiskTier, type EffectiveTiers, type RiskTier, type TierControls } from './tiers.js';

/** The whole desired state and the effective tier table: for rules that look across workloads and hosts. */
export interface PolicyContext {
  state: DesiredState;
  tiers: EffectiveTiers;
}

/** One workload. `tier`/`controls` are absent when the contract is missing (buildDesiredState reported that). */
export interface WorkloadContext extends PolicyContext {
  name: string;
  /** `workload.<name>`: the address every finding about this workload carries. */
  address: string;
  def: WorkloadDefinition;
  contract?: LoadedDocument<WorkloadContract>;
  manifest?: LoadedDocument<WorkloadManifest>;
  tier?: RiskTier;
  controls?: Readonly<TierControls>;
}

export type PolicyRule = (ctx: PolicyContext) => Diagnostic[];
export type WorkloadRule = (ctx: WorkloadContext) => Diagnostic[];

export function workloadContext(base: PolicyContext, def: WorkloadDefinition): WorkloadContext {
  const raw = def.contract?.value.spec?.riskTier;
  const tier = isRiskTier(raw) ? raw : undefined;
  // One object literal with every field present: all contexts share a shape, which keeps the rules' property
  // reads monomorphic (this runs once per workload per evaluation).
  return {
    state: base.state,
    tiers: base.tiers,
    name: def.name,
    address: `workload.${def.name}`,
    def,
    contract: def.contract,
    manifest: def.manifest,
    tier,
    controls: tier ? base.tiers.controls[tier] : undefined,
  };
}

/** The `path` and `location` fields of a diagnostic about `path` in `doc`. */
export function at(
  doc: { locate(path: JsonPath, opts?: { key?: boolean }): SourceLocation },
  path: JsonPath,
  opts?: { key?: boolean },
): { path: string; location: SourceLocation } {
  return { path: formatJsonPath(path), location: doc.locate(path, opts) };
}

/** `file:line` of a path, for details that point at a second place ("the first one is at …"). */
export function lineOf(doc: LoadedDocument<unknown>, path: JsonPath): string {
  const l = doc.locate(path);
  return `${l.file}:${l.line}`;
}

/** The array at `v`, or an empty one. */
export function list(v: unknown): unknown[] {
  return Array.isArray(v) ? v : [];
}

/** The plain object at `v`, or undefined. */
export function record(v: unknown): Record<string, unknown> | undefined {
  return v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
}

/** The string at `v`, or undefined. */
export function text(v: unknown): string | undefined {
  return typeof v === 'string' ? v : undefined;
}

/** `spec` of a loaded document as a plain object (empty when missing or mangled). */
export function specOf(doc: LoadedDocument<unknown> | undefined): Record<string, unknown> {
  return record(record(doc?.value)?.spec) ?? {};
}
