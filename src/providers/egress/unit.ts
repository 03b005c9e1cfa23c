// agentvm-egress.service: the host's egress proxy as a unit of the host's systemd scope. ExecStart runs this very
// node binary and bin/run.js (`egress serve --root <root> --host <host>`); the rules are not on the command line but in
// rules.json, re-read on `systemctl reload` (ExecReload= sends SIGHUP), so an allowlist change never restarts it.
// Invariant: every value that reaches the unit file is checked, not escaped (as the gate's unit does).

import type { Diagnostic } from '../../diagnostics/index.js';
import { EGRESS_UNIT } from '../../egress/paths.js';
import { renderServiceUnit, USER_SCOPE_HARDENING } from '../../support/service-unit.js';
import { unsafeExecArgs } from '../systemd/own-unit.js';
import { EgressCode } from './codes.js';

export const EGRESS_SERVER_ADDRESS = 'egress.server';
export const OWNER_KEY = 'X-AgentvmOwner';

export interface EgressUnitInput {
  node: string;
  bin: string;
  root: string;
  host: string;
  scope: 'system' | 'user';
  /** Extra `Key=value` lines for [Service] (tests: StandardError=append:…, there is no journal). */
  extraService?: string[];
}

export function renderEgressUnit(input: EgressUnitInput): { text?: string; diagnostics: Diagnostic[] } {
  const args = [input.node, input.bin, 'egress', 'serve', '--root', input.root, '--host', input.host];
  const unsafe = unsafeExecArgs(args, EgressCode.unsafeUnitValue, EGRESS_UNIT, EGRESS_SERVER_ADDRESS);
  if (unsafe) return { diagnostics: [unsafe] };
  const r = input.root.replace(/\/$/, '');
  const hardening =
    input.scope === 'system'
      ? [
          'NoNewPrivileges=yes',
          'ProtectSystem=strict',
          'ProtectHome=read-only',
          'PrivateTmp=no',
          `ReadWritePaths=-${r}/var/lib/agentvm/egress -${r}/run/agentvm/egress -${r}/var/log/agentvm`,
          'RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX',
        ]
      : USER_SCOPE_HARDENING;
  const text = renderServiceUnit({
    comment: '# Rendered by agentvm: the egress proxy (decisions/0016). Do not edit; apply re-renders it.',
    description: 'agentvm egress proxy',
    unit: [`${OWNER_KEY}=${EGRESS_SERVER_ADDRESS}`],
    service: [
      `ExecStart=${args.join(' ')}`,
      'ExecReload=/bin/kill -HUP $MAINPID',
      'Restart=on-failure',
      'RestartSec=1',
      ...hardening,
      ...(input.extraService ?? []),
    ],
    scope: input.scope,
  });
  return { text, diagnostics: [] };
}
