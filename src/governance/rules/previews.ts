// Previews are gated, revocable access to one of the workload's OWN listeners. A preview whose upstream is not a
// listener of this workload would open a gate to something else on the host (another workload's port, a system
// service). Preview names are unique within a workload; across workloads on a host, see hosts.ts.

import { errorDiag, type Diagnostic } from '../../diagnostics/index.js';
import { at, lineOf, list, record, specOf, text, type WorkloadRule } from '../context.js';
import { quote } from '../../secrets/text-safety.js';
import { formatDuration, parseDuration } from '../../gate/duration.js';

/**
 * The longest grant a preview may allow: 30 days. A preview is a temporary, revocable look at a workload; a grant
 * that outlives a month is standing access, which belongs in the workload's own listener and contract (ADR 0013).
 */
export const MAX_PREVIEW_TTL_MS = 30 * 86_400_000;

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
        out.push(
          errorDiag('preview.duplicate', `Preview ${shown()} is defined twice in workload \`${ctx.name}\`.`, {
            detail: `The first definition is at ${lineOf(doc, ['spec', 'previews', first])}. Each preview is its own gate route; rename one.`,
            ...at(doc, ['spec', 'previews', i, 'name']),
            address: ctx.address,
          }),
        );
      }
    }
    const maxTtl = text(preview.maxTtl);
    const ttl = maxTtl === undefined ? undefined : parseDuration(maxTtl);
    if (ttl !== undefined && ttl > MAX_PREVIEW_TTL_MS) {
      out.push(
        errorDiag(
          'preview.max-ttl',
          `Preview ${shown()} allows grants of ${quote(maxTtl, 'more than 30 days')}, longer than the ${formatDuration(MAX_PREVIEW_TTL_MS)} a preview may last.`,
          {
            detail: `Set \`maxTtl\` to at most ${formatDuration(MAX_PREVIEW_TTL_MS)} (e.g. \`8h\` or \`7d\`); grant again when it expires. Standing access is not a preview.`,
            ...at(doc, ['spec', 'previews', i, 'maxTtl']),
            address: ctx.address,
          },
        ),
      );
    }
    const upstream = record(preview.upstream);
    if (!upstream) return;
    const port = typeof upstream.port === 'number' ? upstream.port : undefined;
    const socket = text(upstream.socket);
    const owned = (port !== undefined && ports.has(port)) || (socket !== undefined && sockets.has(socket));
    if (owned || (port === undefined && socket === undefined)) return;
    out.push(
      errorDiag(
        'preview.upstream-unknown',
        `Preview ${shown()} forwards to ${port !== undefined ? `port ${port}` : `socket ${quote(socket, '')}`}, which no profile of workload \`${ctx.name}\` listens on.`,
        {
          detail:
            "A preview gates one of the workload's own listeners: set `upstream` to the `listen` of one of its profiles. Exposing anything else on the host through the gate is refused.",
          ...at(doc, ['spec', 'previews', i, 'upstream', port !== undefined ? 'port' : 'socket']),
          address: ctx.address,
        },
      ),
    );
  });
  return out;
};
