// Tools fail closed (every tier): each allowlisted tool is pinned by an exact version or a sha256 content hash,
// named without wildcards, and listed once. Anything not on the list is denied at run time, so a loose entry is
// the only way a tool could drift.

import { errorDiag, warningDiag, type Diagnostic } from '../../diagnostics/index.js';
import { at, lineOf, list, record, specOf, text, type WorkloadRule } from '../context.js';
import { quote } from '../../secrets/text-safety.js';

/** A version string that names one release: no ranges, wildcards, tags or spaces, and at least one digit. */
const VERSION_CHARS = /^[A-Za-z0-9][A-Za-z0-9._+-]*$/;
const SHA256 = /^[0-9a-f]{64}$/;

/** `v4`, `4`, `1.2`, `v1.2`: a major or minor line that moves with every release (like a GitHub Actions `@v4`). */
const FLOATING_LINE = /^v?[0-9]+(?:\.[0-9]+)?$/i;
/** Build or channel words that name a moving target: `1.0-SNAPSHOT`, `2-latest`, `nightly-2`, `3.1-dev`. */
const FLOATING_WORD =
  /(?:^|[._+-])(?:snapshot|latest|stable|nightly|edge|dev|main|master|head|lts|current|canary|beta-latest)(?:$|[._+-])/i;

export function isExactToolVersion(v: string): boolean {
  if (!VERSION_CHARS.test(v) || !/[0-9]/.test(v)) return false;
  for (const part of v.split('.')) if (part === 'x' || part === 'X') return false;
  if (FLOATING_LINE.test(v) || FLOATING_WORD.test(v)) return false;
  return true;
}

export const toolRules: WorkloadRule = (ctx) => {
  const doc = ctx.contract;
  if (!doc) return [];
  const report = ctx.controls?.toolsAllowlist === false ? warningDiag : errorDiag;
  const out: Diagnostic[] = [];
  const seen = new Map<string, number>();
  list(specOf(doc).tools).forEach((raw, i) => {
    const tool = record(raw);
    if (!tool) return;
    const name = text(tool.name);
    const shown = (): string => quote(name, `#${i + 1}`);
    if (name !== undefined && /[*?[\]]/.test(name)) {
      out.push(
        report('policy.tool-wildcard', `Tool ${shown()} is a wildcard; the tool allowlist names each tool exactly.`, {
          detail:
            'List every tool the workload may call by its exact name, each with its own pinned version or sha256. Unlisted tools are denied.',
          ...at(doc, ['spec', 'tools', i, 'name']),
          address: ctx.address,
        }),
      );
    } else if (name !== undefined) {
      const first = seen.get(name);
      if (first === undefined) seen.set(name, i);
      else {
        out.push(
          report('policy.tool-duplicate', `Tool ${shown()} is listed twice.`, {
            detail: `The first entry is at ${lineOf(doc, ['spec', 'tools', first])}. Keep one entry per tool, so exactly one pin applies.`,
            ...at(doc, ['spec', 'tools', i, 'name']),
            address: ctx.address,
          }),
        );
      }
    }

    // Kinds are checked in tool-kinds.ts; the version/sha256 pin below is the kindless (v1alpha1) form's.
    if (tool.kind !== undefined) return;
    const version = text(tool.version);
    const sha = text(tool.sha256);
    const pinnedBySha = sha !== undefined && SHA256.test(sha);
    if (version !== undefined && !isExactToolVersion(version)) {
      out.push(
        report(
          'policy.tool-unpinned',
          `Tool ${shown()} has version ${quote(version, 'that is not exact')}, which is a range, tag or wildcard.`,
          {
            detail:
              'Pin the exact release (e.g. `version: 1.4.2`), or pin the content with `sha256: <64 hex>`. Ranges such as `^1`, `~1.2`, `1.x`, `>=1`, `*`, release lines such as `v4` or `1.2`, and tags such as `latest` or `1.0-SNAPSHOT` let the tool change under the contract.',
            ...at(doc, ['spec', 'tools', i, 'version']),
            address: ctx.address,
          },
        ),
      );
    } else if (version === undefined && !pinnedBySha) {
      out.push(
        report('policy.tool-unpinned', `Tool ${shown()} is not pinned: it has neither \`version\` nor \`sha256\`.`, {
          detail:
            'Add `version: <exact version>` or `sha256: <64 hex of the tool>` to the entry. Tools fail closed: an unpinned tool is refused.',
          ...at(doc, ['spec', 'tools', i]),
          address: ctx.address,
        }),
      );
    }
  });
  return out;
};
