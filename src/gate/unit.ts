// The gate server as its own systemd unit, `agentvm-gate.service`. ExecStart runs this very node binary and
// bin/run.js (`gate serve --root <root> --host <host>`), so the unit serves with the agentvm that rendered it. Applied
// by the gate provider (`gate.server`), the listener settings are NOT on the command line: the server reads them from
// `<gate dir>/server.json` (routes.ts); `gate serve --print-unit` renders them as flags instead (`listen`).
// Invariant: every value that reaches the unit file is checked, not escaped: a value with a line break, `%`
// (specifier), `$` (variable expansion), a quote, a backslash or a control character is refused with gate.unsafe-unit-value.

import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { errorDiag, type Diagnostic } from '../diagnostics/index.js';
import { renderServiceUnit, unsafeUnitValue, USER_SCOPE_HARDENING } from '../support/service-unit.js';
import { GateCode } from './codes.js';

export const GATE_UNIT = 'agentvm-gate.service';
/** The [Unit] key that marks agentvm's own gate unit (the systemd provider marks its drop-ins the same way). */
export const GATE_OWNER_KEY = 'X-AgentvmOwner';

/** This package's bin/run.js (src/gate/unit.ts and dist/gate/unit.js are both two levels below the package root). */
export function agentvmBin(): string {
  return path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../bin/run.js');
}

export interface GateUnitInput {
  /** Absolute path of the node binary (process.execPath). */
  node: string;
  /** Absolute path of agentvm's bin/run.js. */
  bin: string;
  /** The host root as the service manager sees it. */
  root: string;
  host: string;
  /** Listener flags on the command line (`gate serve --print-unit`); absent: the server reads server.json. */
  listen?: {
    address: string;
    port: number;
    tls?: { cert: string; key: string };
    publicUrl?: string;
    routing?: 'path';
    domain?: string;
  };
  scope: 'system' | 'user';
  /** The address that owns the unit (`gate.server`), written as X-AgentvmOwner= so list/delete touch only ours. */
  owner?: string;
  /** Extra `Key=value` lines for [Service] (tests add StandardOutput=append:… because there is no journal). */
  extraService?: string[];
}

/** The unit text, or diagnostics when a value cannot be written safely. */
export function renderGateUnit(input: GateUnitInput): { text?: string; diagnostics: Diagnostic[] } {
  const args = [input.node, input.bin, 'gate', 'serve', '--root', input.root, '--host', input.host];
  if (input.listen) args.push('--address', input.listen.address, '--port', String(input.listen.port));
  if (input.listen?.tls) args.push('--tls-cert', input.listen.tls.cert, '--tls-key', input.listen.tls.key);
  if (input.listen?.publicUrl) args.push('--public-url', input.listen.publicUrl);
  if (input.listen?.routing) args.push('--routing', input.listen.routing);
  if (input.listen?.domain) args.push('--domain', input.listen.domain);
  const bad = [...args, ...(input.extraService ?? []), ...(input.owner !== undefined ? [input.owner] : [])].filter(
    (a) => unsafeUnitValue(a) || a === '',
  );
  if (bad.length) {
    return {
      diagnostics: [
        errorDiag(
          GateCode.unsafeUnitValue,
          `A value for ${GATE_UNIT} cannot be written into a unit file safely: ${JSON.stringify(bad[0])}.`,
          {
            detail:
              'Unit lines must not contain line breaks, %, $, quotes, backslashes or control characters. Use paths without them.',
          },
        ),
      ],
    };
  }
  const quote = (a: string): string => (/\s/.test(a) ? `"${a}"` : a);
  const hardening =
    input.scope === 'system'
      ? // ReadWritePaths entries start with `-` so a not-yet-created directory does not fail the start.
        [
          'NoNewPrivileges=yes',
          'ProtectSystem=strict',
          'ProtectHome=read-only',
          `ReadWritePaths=${quote(`-${input.root.replace(/\/$/, '')}/var/lib/agentvm/gate`)} ${quote(`-${input.root.replace(/\/$/, '')}/var/log/agentvm`)}`,
          'RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX',
        ]
      : USER_SCOPE_HARDENING;
  const text = renderServiceUnit({
    comment: `# Rendered by agentvm: the preview gate (decisions/0008-preview-gate.md). Do not edit; apply re-renders it.`,
    description: 'agentvm preview gate',
    unit: input.owner !== undefined ? [`${GATE_OWNER_KEY}=${input.owner}`] : [],
    service: [
      `ExecStart=${args.map(quote).join(' ')}`,
      'Restart=on-failure',
      'RestartSec=1',
      'KillSignal=SIGTERM',
      ...hardening,
      ...(input.extraService ?? []),
    ],
    scope: input.scope,
  });
  return { text, diagnostics: [] };
}
