import { describe, expect, it } from 'vitest';
import { BASELINE, edit, stateOf } from '../../governance/policy.fixture.js';
import { builtInRegistry } from '../../app/registry.js';
import { expandHost, HOST_WORKLOAD } from '../../engine/expand.js';
import type { DesiredState } from '../../contracts/desired-state.js';
import { GATE_SERVER_ADDRESS } from './server-unit.js';

const expand = (state: DesiredState, host: string) => expandHost(state, host, builtInRegistry().expanders()).resources;

const HOST = 'hosts/alpha.yaml';
const WEB = 'workloads/web/manifest.yaml';
const PREVIEWS =
  '  previews:\n    - name: web-ui\n      upstream:\n        port: 8301\n      maxTtl: 30m\n      grantees: [dev@example.com]\n';

describe('the gate provider expands routes and the preview gate server (gate.server)', () => {
  it('GIVEN a host with a preview THEN one gate.server with the host listener and scope, and every route depends on it', () => {
    const desired = expand(stateOf(BASELINE), 'alpha');
    const server = desired.filter((r) => r.address === GATE_SERVER_ADDRESS);
    expect(server).toEqual([
      {
        address: 'gate.server',
        provider: 'gate',
        workload: HOST_WORKLOAD,
        identity: 'agentvm-gate.service',
        config: { address: '127.0.0.1', port: 8443, tls: null, scope: 'user' },
        dependsOn: [],
      },
    ]);
    const route = desired.find((r) => r.address === 'gate.web.web-ui');
    // Its existing dependencies (the workload's units) stay; the server comes on top.
    expect(route?.dependsOn).toEqual([
      ...desired.filter((r) => r.address.startsWith('unit.web.')).map((r) => r.address),
      'gate.server',
    ]);
    expect(route?.dependsOn.length).toBeGreaterThan(1);
  });

  it('GIVEN the host sets port and TLS by reference THEN the config carries them (references, never contents)', () => {
    const files = edit(
      BASELINE,
      HOST,
      '    port: 8443\n',
      '    port: 9443\n    tls:\n      cert: file:/etc/agentvm/gate.crt\n      key: file:/etc/agentvm/gate.key\n',
    );
    const server = expand(stateOf(files), 'alpha').find((r) => r.address === GATE_SERVER_ADDRESS);
    expect(server?.config).toEqual({
      address: '127.0.0.1',
      port: 9443,
      tls: { cert: 'file:/etc/agentvm/gate.crt', key: 'file:/etc/agentvm/gate.key' },
      scope: 'user',
    });
  });

  it('GIVEN no spec.gate THEN the schema defaults (127.0.0.1:8443, no TLS) and the system scope default', () => {
    const files = edit(
      edit(BASELINE, HOST, '  gate:\n    address: 127.0.0.1\n    port: 8443\n', ''),
      HOST,
      '  systemd:\n    scope: user\n',
      '',
    );
    expect(expand(stateOf(files), 'alpha').find((r) => r.address === GATE_SERVER_ADDRESS)?.config).toEqual({
      address: '127.0.0.1',
      port: 8443,
      tls: null,
      scope: 'system',
    });
  });

  it('GIVEN no workload of the host declares a preview THEN no gate.server and no route', () => {
    const files = edit(BASELINE, WEB, PREVIEWS, '');
    const desired = expand(stateOf(files), 'alpha');
    expect(desired.length).toBeGreaterThan(0);
    expect(desired.filter((r) => r.address.startsWith('gate.'))).toEqual([]);
  });

  it('the reserved workload cannot be a workload name and the address cannot be a route address', () => {
    expect(HOST_WORKLOAD).not.toMatch(/^[a-z][a-z0-9-]{0,62}$/);
    expect(GATE_SERVER_ADDRESS.split('.')).toHaveLength(2);
    // Views sort workload groups by name: the host's group comes first.
    expect([HOST_WORKLOAD, 'a', 'web'].sort()[0]).toBe(HOST_WORKLOAD);
  });
});
