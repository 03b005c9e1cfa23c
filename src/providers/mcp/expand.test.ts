import { describe, expect, it } from 'vitest';
import { BASELINE, edit, stateOf } from '../../governance/policy.fixture.js';
import { builtInRegistry } from '../../app/registry.js';
import { expandHost } from '../../engine/expand.js';
import { renderMcpUnit } from './unit.js';

const C = 'workloads/web/contract.yaml';
const A = 'a'.repeat(64);
const MCP = `    - kind: mcp\n      name: search\n      url: https://api.example.com/mcp\n      tools:\n        - name: find\n          sha256: ${A}\n    - kind: mcp\n      name: local\n      command: [node, tools/server.mjs]\n      tools:\n        - name: grep\n          sha256: ${A}\n  egress:\n`;
const withMcp = edit(BASELINE, C, '  egress:\n', MCP);
const expand = (files: Record<string, string>) => expandHost(stateOf(files), 'alpha', builtInRegistry().expanders());

describe('the MCP provider expands one gateway per profile that declares MCP servers', () => {
  it('GIVEN a contract with MCP servers THEN mcp.<w>.<p> per profile, after the release and the egress proxy, and each unit waits for its gateway', () => {
    const { resources, diagnostics } = expand(withMcp);
    expect(diagnostics.filter((d) => d.severity === 'error')).toEqual([]);
    const gateways = resources.filter((r) => r.provider === 'mcp');
    expect(gateways.map((g) => g.address)).toEqual(['mcp.web.web-core', 'mcp.web.web-research']);
    expect(gateways[0]).toMatchObject({
      identity: 'agentvm-mcp-web.web-core.service',
      config: {
        workload: 'web',
        profile: 'web-core',
        riskTier: 'moderate',
        servers: [
          { name: 'search', url: 'https://api.example.com/mcp', tools: [{ name: 'find', sha256: A }] },
          { name: 'local', command: ['node', 'tools/server.mjs'], tools: [{ name: 'grep', sha256: A }] },
        ],
      },
      dependsOn: ['release.web', 'egress.server'],
    });
    expect(resources.find((r) => r.address === 'unit.web.web-core')?.dependsOn).toContain('mcp.web.web-core');
  });

  it("GIVEN an HTTP MCP server THEN its destination is the gateway's egress allowlist and not the profile's", () => {
    const egress = expand(withMcp).resources.find((r) => r.address === 'egress.server')!;
    const callers = egress.config.callers as Array<{ id: string; entries: Array<{ host: string; port: number }> }>;
    expect(callers.find((c) => c.id === 'mcp.web.web-core')?.entries).toEqual([{ host: 'api.example.com', port: 443 }]);
    expect(callers.find((c) => c.id === 'unit.web.web-core')?.entries.map((e) => `${e.host}:${e.port}`)).not.toContain(
      'api.example.com:443',
    );
  });

  it('GIVEN no MCP servers THEN no gateway, and the units do not wait for one', () => {
    const { resources } = expand(BASELINE);
    expect(resources.filter((r) => r.provider === 'mcp')).toEqual([]);
    expect(resources.filter((r) => r.dependsOn.some((d) => d.startsWith('mcp.')))).toEqual([]);
  });
});

describe('the MCP gateway unit', () => {
  it('GIVEN system scope THEN a hardened unit that may write only its own state and the audit log', () => {
    const text = renderMcpUnit({
      node: '/usr/bin/node',
      bin: '/opt/agentvm/bin/run.js',
      root: '/',
      address: 'mcp.web.web-core',
      scope: 'system',
    }).text!;
    expect(text).toContain(
      'ExecStart=/usr/bin/node /opt/agentvm/bin/run.js mcp serve --root / --address mcp.web.web-core',
    );
    expect(text).toContain('X-AgentvmOwner=mcp.web.web-core');
    expect(text).toContain('ProtectSystem=strict');
    expect(text).toContain('ReadWritePaths=-/var/lib/agentvm/mcp -/run/agentvm/mcp -/var/log/agentvm');
    expect(text).toContain('WantedBy=multi-user.target');
  });

  it('GIVEN a root with a space THEN refused with mcp.unsafe-unit-value, nothing rendered', () => {
    const r = renderMcpUnit({
      node: '/usr/bin/node',
      bin: '/opt/agentvm/bin/run.js',
      root: '/srv/my root',
      address: 'mcp.web.web-core',
      scope: 'user',
    });
    expect(r.text).toBeUndefined();
    expect(r.diagnostics.map((d) => d.code)).toEqual(['mcp.unsafe-unit-value']);
  });
});
