// Egress is an explicit allowlist of host:port. From `moderate` up (control `egressAllowlist`) a wildcard host or
// an address range is an error; below it, a warning, because the allowlist is still the only way out.

import { errorDiag, warningDiag, type Diagnostic } from '../../diagnostics/index.js';
import { at, list, record, specOf, text, type WorkloadRule } from '../context.js';
import { quote } from '../../secrets/text-safety.js';

const ANY_ADDRESS = new Set(['0.0.0.0', '::', '[::]', 'any', '']);

/** A host entry that matches more than one named host or single address. */
export function isWildcardHost(host: string): boolean {
  const h = host.trim().toLowerCase();
  if (ANY_ADDRESS.has(h) || h.includes('*') || h.includes('?')) return true;
  const cidr = /\/(\d{1,3})$/.exec(h);
  if (cidr) {
    const bits = Number(cidr[1]);
    return h.includes(':') ? bits < 128 : bits < 32;
  }
  return false;
}

export const egressRules: WorkloadRule = (ctx) => {
  const doc = ctx.contract;
  if (!doc) return [];
  const strict = ctx.controls?.egressAllowlist !== false;
  const report = strict ? errorDiag : warningDiag;
  const out: Diagnostic[] = [];
  list(specOf(doc).egress).forEach((raw, i) => {
    const host = text(record(raw)?.host);
    if (host === undefined || !isWildcardHost(host)) return;
    out.push(
      report(
        'policy.egress-wildcard',
        `Egress rule #${i + 1} allows ${quote(host, 'a wildcard host')}, which matches more than one destination.`,
        {
          detail: strict
            ? `A \`${ctx.tier ?? 'moderate'}\` workload needs an explicit egress allowlist: list each host (e.g. \`api.example.com\`) or single address with its port, one rule per destination.`
            : 'Wildcards are tolerated at `low` but block promotion to `moderate`; list each destination host and port explicitly.',
          ...at(doc, ['spec', 'egress', i, 'host']),
          address: ctx.address,
        },
      ),
    );
  });
  return out;
};
