// Plain-text view of diagnostics, in the compiler style users already read:
//   error[policy.tool-unpinned]: Tool `x` is not pinned to a version or hash.
//     --> workloads/web/contract.yaml:12:9  $.spec.tools[0]
//     = fix: Pin it: `version: 1.4.2` or `sha256: <64 hex>`.

import type { Diagnostic } from '../diagnostics/index.js';
import { plainStyle, type Style } from './style.js';

export function renderDiagnostic(d: Diagnostic, style: Style = plainStyle): string {
  const label = d.severity === 'error' ? style.red(style.bold('error')) : style.yellow(style.bold('warning'));
  const lines = [`${label}${style.dim(`[${d.code}]`)}: ${d.summary}`];
  const where: string[] = [];
  if (d.location) where.push(`${d.location.file}:${d.location.line}:${d.location.column}`);
  if (d.path) where.push(d.path);
  if (d.address) where.push(d.address);
  if (where.length) lines.push(`  ${style.cyan('-->')} ${where.join('  ')}`);
  if (d.detail) lines.push(`  ${style.dim('= fix:')} ${d.detail}`);
  return lines.join('\n');
}

export function renderDiagnostics(diags: readonly Diagnostic[], style: Style = plainStyle): string {
  return diags.map((d) => renderDiagnostic(d, style)).join('\n\n');
}
