// Dependency graph of resources: a stable topological order, and cycles reported with their path
// (`a -> b -> c -> a`). Dependencies on addresses outside the graph are ignored (they are not part of this plan).

import { errorDiag, type Diagnostic } from '../diagnostics/index.js';
import type { Address } from '../model/resources.js';

export interface GraphNode {
  address: Address;
  dependsOn: readonly Address[];
}

export interface OrderedGraph {
  /** Addresses in an order where every node comes after its dependencies; ties broken by address. */
  order: Address[];
  /** Per address, its dependencies that are in the graph. */
  deps: Map<Address, Address[]>;
  /** Per address, the nodes that depend on it. */
  dependents: Map<Address, Address[]>;
  diagnostics: Diagnostic[];
}

export function orderGraph(nodes: readonly GraphNode[]): OrderedGraph {
  const present = new Set(nodes.map((n) => n.address));
  const deps = new Map<Address, Address[]>();
  const dependents = new Map<Address, Address[]>();
  for (const n of nodes) {
    deps.set(n.address, [...new Set(n.dependsOn.filter((d) => present.has(d) && d !== n.address))].sort());
    dependents.set(n.address, []);
  }
  for (const [a, ds] of deps) for (const d of ds) dependents.get(d)!.push(a);

  const diagnostics: Diagnostic[] = [];
  const state = new Map<Address, 'visiting' | 'done'>();
  const order: Address[] = [];
  const stack: Address[] = [];
  const visit = (a: Address): void => {
    const s = state.get(a);
    if (s === 'done') return;
    if (s === 'visiting') {
      const cycle = [...stack.slice(stack.indexOf(a)), a];
      diagnostics.push(
        errorDiag('graph.cycle', `Dependency cycle: ${cycle.join(' -> ')}.`, {
          detail: 'Resources cannot depend on each other in a loop; remove one of the dependencies.',
          address: a,
        }),
      );
      return;
    }
    state.set(a, 'visiting');
    stack.push(a);
    for (const d of deps.get(a) ?? []) visit(d);
    stack.pop();
    state.set(a, 'done');
    order.push(a);
  };
  for (const a of [...present].sort()) visit(a);
  return { order, deps, dependents, diagnostics };
}
