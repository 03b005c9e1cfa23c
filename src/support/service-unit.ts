// The skeleton of agentvm's own long-running services as systemd units (the preview gate, the egress proxy, the MCP
// gateways): one
// header comment, [Unit] with the owner mark, [Service] as `Type=exec` plus the caller's lines, [Install] by scope.
// Invariant: the text is byte-for-byte what the renderers wrote before they shared this skeleton — units already on
// hosts must not show drift (src/support/service-unit.test.ts pins both renderers' output).
// Values are checked, not escaped: `unsafeUnitValue` refuses what a unit line cannot carry literally.

export interface ServiceUnit {
  /** The first line: `# Rendered by agentvm: … Do not edit; apply re-renders it.` */
  comment: string;
  description: string;
  /** The `After=` line's value; default `network.target`, null for none (the MCP gateway's unit has none). */
  after?: string | null;
  /** `Key=value` lines of [Unit] after the `After=` line (the owner mark). */
  unit: string[];
  /** Lines of [Service] after `Type=exec`: ExecStart and the rest, in order. */
  service: string[];
  scope: 'system' | 'user';
}

export function renderServiceUnit(u: ServiceUnit): string {
  const lines = [
    u.comment,
    '[Unit]',
    `Description=${u.description}`,
    ...(u.after === null ? [] : [`After=${u.after ?? 'network.target'}`]),
    ...u.unit,
    '',
    '[Service]',
    'Type=exec',
    ...u.service,
    '',
    '[Install]',
    `WantedBy=${u.scope === 'system' ? 'multi-user.target' : 'default.target'}`,
    '',
  ];
  return lines.join('\n');
}

/** The hardening of a user-scope service: a user manager cannot sandbox the file system further. */
export const USER_SCOPE_HARDENING = ['NoNewPrivileges=yes'];

// Control characters are checked by code point (a regex with control characters trips the linter).
const SPECIAL = /[%$"'\\]/;

/**
 * Whether a value cannot be written into a unit line literally: `%` (specifier), `$` (variable expansion), a quote, a
 * backslash or a control character (a line break ends the line); with `whitespace`, any white space too (an
 * unquoted argument).
 */
export function unsafeUnitValue(v: string, opts: { whitespace?: boolean } = {}): boolean {
  if (SPECIAL.test(v) || (opts.whitespace === true && /\s/.test(v))) return true;
  return [...v].some((c) => c.charCodeAt(0) < 0x20 || c.charCodeAt(0) === 0x7f);
}
