// Previews are gated, revocable access to one of the workload's OWN listeners. A preview whose upstream is not a
// listener of this workload would open a gate to something else on the host (another workload's port, a system
// service). Preview names are unique within a workload; across workloads on a host, see hosts.ts.

import { errorDiag, type Diagnostic } from '../../diagnostics/index.js';
import { at, lineOf, list, record, specOf, text, type WorkloadRule } from '../context.js';
import { quote } from '../text-safety.js';

export const previewRules: WorkloadRule = (ctx) => {
  const doc = ctx.manifest;
  if (!doc) return [];
  const spec = specOf(doc);
  const ports = new Set<number>();
  const sockets = new Set<string>();
  for (const p of list(spec.profiles)) {
    const listen = record(record(p)?.listen);
    if (typeof listen?.port === 'number') ports.add(listen.port);
    const socket = text(listen?.socket);
    if (socket !== undefined) sockets.add(socket);
  }

  const out: Diagnostic[] = [];
  const seen = new Map<string, number>();
  list(spec.previews).forEach((raw, i) => {
    const preview = record(raw);
    if (!preview) return;
    const name = text(preview.name);
    const shown = (): string => quote(name, `#${i + 1}`);
    if (name !== undefined) {
      const first = seen.get(name);
      if (first === undefined) seen.set(name, i);
      else {
        out.push(errorDiag('preview.duplicate', `Preview ${shown()} is defined twice in workload \`${ctx.name}\`.`, {
          detail: `The first definition is at ${lineOf(doc, ['spec', 'previews', first])}. Each preview is its own gate route; rename one.`,
          ...at(doc, ['spec', 'previews', i, 'name']),
          address: ctx.address,
        }));
      }
    }
    const upstream = record(preview.upstream);
    if (!upstream) return;
    const port = typeof upstream.port === 'number' ? upstream.port : undefined;
    const socket = text(upstream.socket);
    const owned = (port !== undefined && ports.has(port)) || (socket !== undefined && sockets.has(socket));
    if (owned || (port === undefined && socket === undefined)) return;
    out.push(errorDiag('preview.upstream-unknown', `Preview ${shown()} forwards to ${port !== undefined ? `port ${port}` : `socket ${quote(socket, '')}`}, which no profile of workload \`${ctx.name}\` listens on.`, {
      detail: 'A preview gates one of the workload\'s own listeners: set `upstream` to the `listen` of one of its profiles. Exposing anything else on the host through the gate is refused.',
      ...at(doc, ['spec', 'previews', i, 'upstream', port !== undefined ? 'port' : 'socket']),
      address: ctx.address,
    }));
  });
  return out;
};
