// The expansion contract the engine holds every provider to (expand.ts): providers are asked in order and see what
// the ones before them expanded; a provider may plan only its own type under its own prefix; an address belongs to
// one provider; a provider that throws is an error and contributes nothing. Fake providers: this is the layer above
// them (the built-in providers' own expansions are tested in their folders).

import { describe, expect, it } from 'vitest';
import { BASELINE, stateOf } from '../governance/policy.fixture.js';
import type { DesiredResource } from '../model/index.js';
import type { ExpandRequest } from '../providers/provider.js';
import { expandHost, type Expander } from './expand.js';

const state = stateOf(BASELINE);
const resource = (address: string, provider: string, dependsOn: string[] = []): DesiredResource => ({
  address,
  provider,
  workload: 'web',
  identity: address,
  config: {},
  dependsOn,
});

function expander(type: string, addressPrefix: string, make: (req: ExpandRequest) => DesiredResource[]): Expander {
  return { type, addressPrefix, expand: (req) => ({ resources: make(req), diagnostics: [] }) };
}

describe('expandHost: every resource comes from a provider that owns it', () => {
  it('GIVEN two providers THEN the second sees what the first expanded, and both are planned', () => {
    const seen: string[][] = [];
    const first = expander('motd', 'motd.', () => [resource('motd.web', 'motd')]);
    const second = expander('cron', 'cron.', (req) => {
      seen.push(req.expanded.map((r) => r.address));
      return req.workloads.map((w) => resource(`cron.${w.name}`, 'cron', ['motd.web']));
    });
    const out = expandHost(state, 'alpha', [first, second]);
    expect(seen).toEqual([['motd.web']]);
    expect(out.resources.map((r) => r.address)).toEqual(['motd.web', 'cron.web', 'cron.digest']);
    expect(out.diagnostics).toEqual([]);
  });

  it('GIVEN the request THEN it carries the host spec, the repository and the host’s workloads with both documents', () => {
    let request: ExpandRequest | undefined;
    expandHost(state, 'alpha', [expander('x', 'x.', (req) => ((request = req), []))]);
    expect(request?.host.name).toBe('alpha');
    expect(request?.host.spec.workloads).toEqual(['web', 'digest']);
    expect(request?.repo).toBe('/x');
    expect(request?.workloads.map((w) => [w.name, w.dir, w.contract.kind, w.manifest.kind])).toEqual([
      ['web', 'workloads/web', 'WorkloadContract', 'WorkloadManifest'],
      ['digest', 'workloads/digest', 'WorkloadContract', 'WorkloadManifest'],
    ]);
  });

  it('GIVEN a provider that plans another type or outside its prefix THEN that resource is refused with an error', () => {
    const rogue = expander('motd', 'motd.', () => [
      resource('unit.web.api', 'systemd'),
      resource('unit.web.x', 'motd'),
      resource('motd.ok', 'motd'),
    ]);
    const out = expandHost(state, 'alpha', [rogue]);
    expect(out.resources.map((r) => r.address)).toEqual(['motd.ok']);
    expect(out.diagnostics.map((d) => [d.code, d.address])).toEqual([
      ['provider.expand-foreign', 'unit.web.api'],
      ['provider.expand-foreign', 'unit.web.x'],
    ]);
  });

  it('GIVEN two providers claiming one address THEN the first keeps it and the second is an error naming both', () => {
    const a = expander('motd', 'm', () => [resource('m.web', 'motd')]);
    const b = expander('mail', 'm', () => [resource('m.web', 'mail')]);
    const out = expandHost(state, 'alpha', [a, b]);
    expect(out.resources.map((r) => r.provider)).toEqual(['motd']);
    expect(out.diagnostics).toEqual([
      expect.objectContaining({
        code: 'provider.expand-duplicate',
        severity: 'error',
        summary: 'm.web is planned by both `motd` and `mail`.',
      }),
    ]);
  });

  it('GIVEN a provider that throws THEN it is an error and the others still expand', () => {
    const broken: Expander = {
      type: 'broken',
      addressPrefix: 'b.',
      expand: () => {
        throw new Error('boom');
      },
    };
    const ok = expander('motd', 'motd.', () => [resource('motd.web', 'motd')]);
    const out = expandHost(state, 'alpha', [broken, ok]);
    expect(out.resources.map((r) => r.address)).toEqual(['motd.web']);
    expect(out.diagnostics.map((d) => d.code)).toEqual(['provider.expand-failed']);
    expect(out.diagnostics[0]?.summary).toContain('boom');
  });

  it('GIVEN an unknown host or providers without expand THEN nothing', () => {
    expect(expandHost(state, 'nope', [expander('x', 'x.', () => [resource('x.a', 'x')])]).resources).toEqual([]);
    expect(expandHost(state, 'alpha', [{ type: 'x', addressPrefix: 'x.' }]).resources).toEqual([]);
  });
});
