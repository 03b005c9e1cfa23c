// Use case: validate the desired state at one commit — read it from git, parse and schema-check every document,
// run the governance policy — and report every diagnostic in one pass.

import { buildDesiredState } from '../contracts/desired-state.js';
import { readDesiredState } from '../contracts/git-source.js';
import { compareDiagnostics, countBySeverity } from '../diagnostics/index.js';
import { evaluatePolicy } from '../governance/index.js';
import type { ValidateResultDocument } from '../generated/validate-result.js';

/** The --json result; its type is generated from the schema (schemas/ are the source of truth). */
export type ValidateResult = ValidateResultDocument;

export async function runValidate(opts: { repo: string; ref: string }): Promise<ValidateResult> {
  const source = await readDesiredState({ repo: opts.repo, ref: opts.ref });
  const state = buildDesiredState(source);
  const diagnostics = [...state.diagnostics, ...evaluatePolicy(state)].sort(compareDiagnostics);
  const { errors, warnings } = countBySeverity(diagnostics);
  return {
    formatVersion: 1,
    valid: errors === 0,
    repo: state.repo,
    ref: state.ref,
    commit: state.commit,
    uncommitted: state.uncommitted,
    summary: { errors, warnings, hosts: state.hosts.size, workloads: state.workloads.size },
    diagnostics,
  };
}
