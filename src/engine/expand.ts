// Expands the desired state of one host into addressed resources (DESIGN §3) by asking every provider, in registry
// order, for the resources it owns (Provider.expand). The engine names no resource kind: the built-in providers
// plan releases, units, jobs and gate routes the same way a third-party package plans a kind of its own.
// What the engine keeps for itself is the contract every expansion must honour:
//   - a provider returns only resources of its own type, under its own address prefix;
//   - an address is expanded once on a host (a second claim is an error naming both providers);
//   - a provider that throws is reported as an error and contributes nothing, so one bad package cannot stop a plan.
// Pure: no I/O. Workloads whose documents failed to load are skipped (their diagnostics already exist).

import type { DesiredState } from '../contracts/desired-state.js';
import { errorDiag, type Diagnostic } from '../diagnostics/index.js';
import { HOST_WORKLOAD, type DesiredResource } from '../model/index.js';
import type { ExpandWorkload, Provider } from '../providers/provider.js';

export { HOST_WORKLOAD };

/** A provider as expansion needs it: its type, its address prefix and (if it plans any) its expand method. */
export type Expander = Pick<Provider, 'type' | 'addressPrefix' | 'expand'>;

export interface Expansion {
  resources: DesiredResource[];
  diagnostics: Diagnostic[];
}

/** The host's workloads whose contract and manifest both loaded, in the host file's order. */
export function hostWorkloads(state: DesiredState, host: string): ExpandWorkload[] {
  const out: ExpandWorkload[] = [];
  for (const name of state.hosts.get(host)?.value.spec.workloads ?? []) {
    const def = state.workloads.get(name);
    const contract = def?.contract?.value;
    const manifest = def?.manifest?.value;
    if (def && contract && manifest) out.push({ name, dir: def.dir, contract, manifest });
  }
  return out;
}

export function expandHost(state: DesiredState, host: string, providers: Iterable<Expander>): Expansion {
  const hostDoc = state.hosts.get(host);
  if (!hostDoc) return { resources: [], diagnostics: [] };
  const workloads = hostWorkloads(state, host);
  const resources: DesiredResource[] = [];
  const diagnostics: Diagnostic[] = [];
  const claimedBy = new Map<string, string>();
  for (const provider of providers) {
    if (!provider.expand) continue;
    let response;
    try {
      response = provider.expand({
        host: { name: host, spec: hostDoc.value.spec },
        repo: state.repo,
        workloads,
        expanded: resources.slice(),
      });
    } catch (err) {
      diagnostics.push(
        errorDiag(
          'provider.expand-failed',
          `Provider \`${provider.type}\` failed to expand the desired state of ${host}: ${err instanceof Error ? err.message : String(err)}.`,
          {
            detail:
              'Its resources are left out of this plan. Fix or remove the provider package (agentvm.yaml spec.providers).',
          },
        ),
      );
      continue;
    }
    diagnostics.push(...response.diagnostics);
    for (const r of response.resources) {
      const problem = expansionProblem(provider, r, claimedBy.get(r.address));
      if (problem) {
        diagnostics.push(problem);
        continue;
      }
      claimedBy.set(r.address, provider.type);
      resources.push(r);
    }
  }
  return { resources, diagnostics };
}

function expansionProblem(
  provider: Expander,
  r: DesiredResource,
  claimant: string | undefined,
): Diagnostic | undefined {
  if (r.provider !== provider.type || !r.address.startsWith(provider.addressPrefix)) {
    return errorDiag(
      'provider.expand-foreign',
      `Provider \`${provider.type}\` expanded ${JSON.stringify(r.address)} of type \`${r.provider}\`: a provider may plan only its own type, under its prefix \`${provider.addressPrefix}\`.`,
      {
        address: r.address,
        detail: 'The resource is left out of this plan. This is a bug in the provider package.',
      },
    );
  }
  if (claimant !== undefined) {
    return errorDiag(
      'provider.expand-duplicate',
      `${r.address} is planned by both \`${claimant}\` and \`${provider.type}\`.`,
      {
        address: r.address,
        detail:
          'An address belongs to one provider. Rename the resource, or remove one of the providers from agentvm.yaml.',
      },
    );
  }
  return undefined;
}
