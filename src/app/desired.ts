// Shared first step of validate, plan, apply and drift: the desired state at one commit, with every reading,
// schema and policy diagnostic attached.

import { buildDesiredState, type DesiredState } from '../contracts/desired-state.js';
import { didYouMean } from '../contracts/did-you-mean.js';
import { readDesiredState } from '../contracts/git-source.js';
import { compareDiagnostics, userError, type Diagnostic } from '../diagnostics/index.js';
import { evaluatePolicy } from '../governance/index.js';

export interface LoadedDesiredState {
  state: DesiredState;
  diagnostics: Diagnostic[];
}

export async function loadDesiredState(repo: string, ref: string): Promise<LoadedDesiredState> {
  const source = await readDesiredState({ repo, ref });
  const state = buildDesiredState(source);
  const diagnostics = [...state.diagnostics, ...evaluatePolicy(state)].sort(compareDiagnostics);
  return { state, diagnostics };
}

/** `--host`, or the only host of the repository. */
export function selectHost(state: DesiredState, requested: string | undefined): string {
  const hosts = [...state.hosts.keys()].sort();
  if (requested) {
    if (state.hosts.has(requested)) return requested;
    const guess = didYouMean(requested, hosts);
    throw userError(
      'host.not-found',
      `Host \`${requested}\` is not defined in ${state.repo}${guess ? ` — did you mean \`${guess}\`?` : '.'}`,
      hosts.length ? `Defined hosts: ${hosts.join(', ')} (hosts/<name>.yaml).` : 'Add hosts/<name>.yaml (kind: Host).',
    );
  }
  if (hosts.length === 1) return hosts[0]!;
  if (hosts.length === 0)
    throw userError(
      'host.none',
      `The repository defines no hosts, so there is nothing to plan.`,
      'Add hosts/<name>.yaml (kind: Host) listing its workloads.',
    );
  throw userError(
    'host.ambiguous',
    `The repository defines ${hosts.length} hosts; say which one with --host.`,
    `Defined hosts: ${hosts.join(', ')}.`,
  );
}
