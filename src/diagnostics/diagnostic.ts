// Diagnostic: the one shape every layer uses to report an expected problem (bad input, policy violation,
// stale plan). Layers return diagnostics; they throw only for bugs and aborts (see errors.ts).
// Invariant: a diagnostic never carries a secret value — summaries quote field paths, not field values
// that could be secrets.

export type Severity = 'error' | 'warning';

/** A position in a desired-state file. Lines and columns are 1-based, as editors show them. */
export interface SourceLocation {
  /** Path relative to the desired-state repository root, e.g. `workloads/web/contract.yaml`. */
  file: string;
  line: number;
  column: number;
}

export interface Diagnostic {
  /** Stable, documented code, e.g. `yaml.duplicate-key`, `policy.egress-wildcard`. Tests and bots match on it. */
  code: string;
  severity: Severity;
  /** What is wrong, one sentence. */
  summary: string;
  /** What to do about it. */
  detail?: string;
  /** Where in the repository, when the problem comes from a file. */
  location?: SourceLocation;
  /** JSON path inside the document, e.g. `$.spec.tools[0].version`. */
  path?: string;
  /** Resource address, when the problem belongs to one (e.g. `release.research`). */
  address?: string;
}

export function errorDiag(
  code: string,
  summary: string,
  extra: Omit<Diagnostic, 'code' | 'severity' | 'summary'> = {},
): Diagnostic {
  return { code, severity: 'error', summary, ...extra };
}

export function warningDiag(
  code: string,
  summary: string,
  extra: Omit<Diagnostic, 'code' | 'severity' | 'summary'> = {},
): Diagnostic {
  return { code, severity: 'warning', summary, ...extra };
}

export function hasErrors(diagnostics: readonly Diagnostic[]): boolean {
  return diagnostics.some((d) => d.severity === 'error');
}

/** `file:line:column`, or the address, or nothing: the "where" of a diagnostic as users read it. */
export function formatWhere(d: Diagnostic): string {
  if (d.location) return `${d.location.file}:${d.location.line}:${d.location.column}`;
  return d.address ?? '';
}

/** Sort for stable output: by file, line, column, then code. */
export function compareDiagnostics(a: Diagnostic, b: Diagnostic): number {
  const fa = a.location?.file ?? '\uffff';
  const fb = b.location?.file ?? '\uffff';
  if (fa !== fb) return fa < fb ? -1 : 1;
  const la = a.location?.line ?? 0;
  const lb = b.location?.line ?? 0;
  if (la !== lb) return la - lb;
  const ca = a.location?.column ?? 0;
  const cb = b.location?.column ?? 0;
  if (ca !== cb) return ca - cb;
  return a.code < b.code ? -1 : a.code > b.code ? 1 : 0;
}

/** How many errors and warnings: what a summary line and an exit code are decided by. */
export function countBySeverity(diags: readonly Diagnostic[]): { errors: number; warnings: number } {
  let errors = 0;
  let warnings = 0;
  for (const d of diags) {
    if (d.severity === 'error') errors++;
    else warnings++;
  }
  return { errors, warnings };
}
