// The renderers of agentvm's own service units (gate, egress proxy, MCP gateways) share one skeleton (service-unit.ts). The texts below were rendered
// by the code before the skeleton existed: a unit already on a host must keep its exact bytes (no drift, no restart).

import { describe, expect, it } from 'vitest';
import { renderGateUnit } from '../gate/unit.js';
import { renderEgressUnit } from '../providers/egress/unit.js';
import { renderMcpUnit } from '../providers/mcp/unit.js';
import { unsafeUnitValue } from './service-unit.js';

const BEFORE: Record<string, string> = {
  'gate-system':
    '# Rendered by agentvm: the preview gate (decisions/0008-preview-gate.md). Do not edit; apply re-renders it.\n[Unit]\nDescription=agentvm preview gate\nAfter=network.target\nX-AgentvmOwner=gate.server\n\n[Service]\nType=exec\nExecStart=/usr/bin/node /opt/agentvm/bin/run.js gate serve --root /srv/root/ --host web-1\nRestart=on-failure\nRestartSec=1\nKillSignal=SIGTERM\nNoNewPrivileges=yes\nProtectSystem=strict\nProtectHome=read-only\nReadWritePaths=-/srv/root/var/lib/agentvm/gate -/srv/root/var/log/agentvm\nRestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX\n\n[Install]\nWantedBy=multi-user.target\n',
  'gate-listen-system':
    '# Rendered by agentvm: the preview gate (decisions/0008-preview-gate.md). Do not edit; apply re-renders it.\n[Unit]\nDescription=agentvm preview gate\nAfter=network.target\n\n[Service]\nType=exec\nExecStart=/usr/bin/node "/opt/agent vm/bin/run.js" gate serve --root "/srv/my root" --host web-1 --address 127.0.0.1 --port 8443 --tls-cert /c.pem --tls-key /k.pem --public-url https://gate.example --routing path --domain gate.example\nRestart=on-failure\nRestartSec=1\nKillSignal=SIGTERM\nNoNewPrivileges=yes\nProtectSystem=strict\nProtectHome=read-only\nReadWritePaths="-/srv/my root/var/lib/agentvm/gate" "-/srv/my root/var/log/agentvm"\nRestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX\nStandardError=append:/tmp/x.log\n\n[Install]\nWantedBy=multi-user.target\n',
  'egress-system':
    '# Rendered by agentvm: the egress proxy (decisions/0016). Do not edit; apply re-renders it.\n[Unit]\nDescription=agentvm egress proxy\nAfter=network.target\nX-AgentvmOwner=egress.server\n\n[Service]\nType=exec\nExecStart=/usr/bin/node /opt/agentvm/bin/run.js egress serve --root /srv/root/ --host web-1\nExecReload=/bin/kill -HUP $MAINPID\nRestart=on-failure\nRestartSec=1\nNoNewPrivileges=yes\nProtectSystem=strict\nProtectHome=read-only\nPrivateTmp=no\nReadWritePaths=-/srv/root/var/lib/agentvm/egress -/srv/root/run/agentvm/egress -/srv/root/var/log/agentvm\nRestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX\nStandardError=append:/tmp/e.log\n\n[Install]\nWantedBy=multi-user.target\n',
  'gate-user':
    '# Rendered by agentvm: the preview gate (decisions/0008-preview-gate.md). Do not edit; apply re-renders it.\n[Unit]\nDescription=agentvm preview gate\nAfter=network.target\nX-AgentvmOwner=gate.server\n\n[Service]\nType=exec\nExecStart=/usr/bin/node /opt/agentvm/bin/run.js gate serve --root /srv/root/ --host web-1\nRestart=on-failure\nRestartSec=1\nKillSignal=SIGTERM\nNoNewPrivileges=yes\n\n[Install]\nWantedBy=default.target\n',
  'gate-listen-user':
    '# Rendered by agentvm: the preview gate (decisions/0008-preview-gate.md). Do not edit; apply re-renders it.\n[Unit]\nDescription=agentvm preview gate\nAfter=network.target\n\n[Service]\nType=exec\nExecStart=/usr/bin/node "/opt/agent vm/bin/run.js" gate serve --root "/srv/my root" --host web-1 --address 127.0.0.1 --port 8443 --tls-cert /c.pem --tls-key /k.pem --public-url https://gate.example --routing path --domain gate.example\nRestart=on-failure\nRestartSec=1\nKillSignal=SIGTERM\nNoNewPrivileges=yes\nStandardError=append:/tmp/x.log\n\n[Install]\nWantedBy=default.target\n',
  'egress-user':
    '# Rendered by agentvm: the egress proxy (decisions/0016). Do not edit; apply re-renders it.\n[Unit]\nDescription=agentvm egress proxy\nAfter=network.target\nX-AgentvmOwner=egress.server\n\n[Service]\nType=exec\nExecStart=/usr/bin/node /opt/agentvm/bin/run.js egress serve --root /srv/root/ --host web-1\nExecReload=/bin/kill -HUP $MAINPID\nRestart=on-failure\nRestartSec=1\nNoNewPrivileges=yes\nStandardError=append:/tmp/e.log\n\n[Install]\nWantedBy=default.target\n',
  'mcp-system':
    "# Rendered by agentvm: a profile's MCP gateway (decisions/0022). Do not edit; apply re-renders it.\n[Unit]\nDescription=agentvm MCP gateway mcp.w.p\nX-AgentvmOwner=mcp.w.p\n\n[Service]\nType=exec\nExecStart=/usr/bin/node /opt/agentvm/bin/run.js mcp serve --root /srv/root/ --address mcp.w.p\nRestart=on-failure\nRestartSec=1\nNoNewPrivileges=yes\nProtectSystem=strict\nProtectHome=read-only\nReadWritePaths=-/srv/root/var/lib/agentvm/mcp -/srv/root/run/agentvm/mcp -/srv/root/var/log/agentvm\n\n[Install]\nWantedBy=multi-user.target\n",
  'mcp-user':
    "# Rendered by agentvm: a profile's MCP gateway (decisions/0022). Do not edit; apply re-renders it.\n[Unit]\nDescription=agentvm MCP gateway mcp.w.p\nX-AgentvmOwner=mcp.w.p\n\n[Service]\nType=exec\nExecStart=/usr/bin/node /opt/agentvm/bin/run.js mcp serve --root /srv/root/ --address mcp.w.p\nRestart=on-failure\nRestartSec=1\nNoNewPrivileges=yes\n\n[Install]\nWantedBy=default.target\n",
};

function rendered(): Record<string, string | undefined> {
  const out: Record<string, string | undefined> = {};
  for (const scope of ['system', 'user'] as const) {
    out[`gate-${scope}`] = renderGateUnit({
      node: '/usr/bin/node',
      bin: '/opt/agentvm/bin/run.js',
      root: '/srv/root/',
      host: 'web-1',
      scope,
      owner: 'gate.server',
    }).text;
    out[`gate-listen-${scope}`] = renderGateUnit({
      node: '/usr/bin/node',
      bin: '/opt/agent vm/bin/run.js',
      root: '/srv/my root',
      host: 'web-1',
      scope,
      listen: {
        address: '127.0.0.1',
        port: 8443,
        tls: { cert: '/c.pem', key: '/k.pem' },
        publicUrl: 'https://gate.example',
        routing: 'path',
        domain: 'gate.example',
      },
      extraService: ['StandardError=append:/tmp/x.log'],
    }).text;
    out[`egress-${scope}`] = renderEgressUnit({
      node: '/usr/bin/node',
      bin: '/opt/agentvm/bin/run.js',
      root: '/srv/root/',
      host: 'web-1',
      scope,
      extraService: ['StandardError=append:/tmp/e.log'],
    }).text;
    out[`mcp-${scope}`] = renderMcpUnit({
      node: '/usr/bin/node',
      bin: '/opt/agentvm/bin/run.js',
      root: '/srv/root/',
      address: 'mcp.w.p',
      scope,
    }).text;
  }
  return out;
}

describe('agentvm service units', () => {
  it('GIVEN the gate, egress and MCP renderers on one skeleton WHEN rendering every scope and option THEN the text is byte-identical to before', () => {
    expect(rendered()).toEqual(BEFORE);
  });

  it('GIVEN a value a unit line cannot carry WHEN rendering THEN each renderer refuses it with its own code and writes no text', () => {
    const gate = renderGateUnit({
      node: '/usr/bin/node',
      bin: '/opt/run.js',
      root: '/srv/%h',
      host: 'web-1',
      scope: 'user',
    });
    expect(gate.text).toBeUndefined();
    expect(gate.diagnostics.map((d) => d.code)).toEqual(['gate.unsafe-unit-value']);
    // The egress unit does not quote: white space is refused there, and quoted by the gate.
    const egress = renderEgressUnit({
      node: '/usr/bin/node',
      bin: '/opt/run.js',
      root: '/srv/my root',
      host: 'web-1',
      scope: 'user',
    });
    expect(egress.text).toBeUndefined();
    expect(egress.diagnostics[0]?.severity).toBe('error');
    expect(
      renderGateUnit({ node: '/usr/bin/node', bin: '/opt/run.js', root: '/srv/my root', host: 'web-1', scope: 'user' })
        .text,
    ).toContain('"/srv/my root"');
    const mcp = renderMcpUnit({
      node: '/usr/bin/node',
      bin: '/opt/run.js',
      root: '/srv/%h',
      address: 'mcp.w.p',
      scope: 'user',
    });
    expect(mcp.text).toBeUndefined();
    expect(mcp.diagnostics).toEqual([
      {
        code: 'mcp.unsafe-unit-value',
        severity: 'error',
        summary: 'A value for the MCP gateway unit of mcp.w.p cannot be written into a unit file safely: "/srv/%h".',
        address: 'mcp.w.p',
        detail:
          'Unit lines must not contain whitespace, line breaks, %, $, quotes or backslashes. Use paths without them.',
      },
    ]);
  });

  it('GIVEN each character class WHEN checked THEN specifiers, expansions, quotes, backslashes and controls are unsafe, white space only when asked', () => {
    for (const v of ['a%b', 'a$b', 'a"b', "a'b", 'a\\b', 'a\nb', 'a\u007fb', 'a\u0001b'])
      expect(unsafeUnitValue(v)).toBe(true);
    expect(unsafeUnitValue('a b')).toBe(false);
    expect(unsafeUnitValue('a b', { whitespace: true })).toBe(true);
    expect(unsafeUnitValue('/usr/bin/node', { whitespace: true })).toBe(false);
  });
});
