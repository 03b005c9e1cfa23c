import { describe, expect, it } from 'vitest';
import { capabilityLines, planCapabilities } from './capabilities.js';
import type { PlannedChange } from '../model/resources.js';
import { capabilityChange } from './capability-change.fixture.js';

const unitChange = (
  workload: string,
  action: PlannedChange['action'],
  before: unknown[] | undefined,
  after: unknown[] | undefined,
): PlannedChange => capabilityChange({ workload, action, field: 'egress', before, after });

describe('planCapabilities', () => {
  it('GIVEN an allowlist that widens on a noop unit WHEN planned THEN the new destination is flagged as an exfiltration channel', () => {
    const caps = planCapabilities([
      unitChange(
        'w',
        'noop',
        [{ host: 'a.example.com', port: 443 }],
        [
          { host: 'a.example.com', port: 443 },
          { host: 'api.new.example.com', port: 443 },
        ],
      ),
    ]);
    expect(caps).toEqual([
      {
        workload: 'w',
        egress: [
          { change: 'unchanged', host: 'a.example.com', port: 443, protocol: 'tcp', risk: null },
          {
            change: 'added',
            host: 'api.new.example.com',
            port: 443,
            protocol: 'tcp',
            risk: 'new destination: possible exfiltration channel',
          },
        ],
      },
    ]);
    expect(capabilityLines(caps[0])).toEqual([
      'egress +api.new.example.com:443 (new destination: possible exfiltration channel)',
    ]);
  });

  it('flags wildcards, any-destination and private literals by what they open; removals carry no risk', () => {
    const caps = planCapabilities([
      unitChange(
        'w',
        'update',
        [{ host: 'old.example.com', port: 80 }],
        [
          { host: '*.example.com', port: 443 },
          { host: '*', port: 443 },
          { host: '10.0.0.5', port: 5432 },
          { host: '203.0.113.0/24', port: 443 },
        ],
      ),
    ]);
    expect(capabilityLines(caps[0])).toEqual([
      'egress +*.example.com:443 (wildcard: every subdomain, possible exfiltration channel)',
      'egress +*:443 (any destination: unrestricted egress)',
      'egress +10.0.0.5:5432 (private or host address: reaches internal services)',
      'egress +203.0.113.0/24:443 (address range: many destinations, possible exfiltration channel)',
      'egress -old.example.com:80',
    ]);
  });

  it('a deleted workload loses every destination; a workload without egress or untouched resources is left out', () => {
    expect(planCapabilities([unitChange('gone', 'delete', [{ host: 'a.example.com', port: 443 }], undefined)])).toEqual(
      [
        {
          workload: 'gone',
          egress: [{ change: 'removed', host: 'a.example.com', port: 443, protocol: 'tcp', risk: null }],
        },
      ],
    );
    expect(planCapabilities([unitChange('none', 'create', undefined, [])])).toEqual([]);
    expect(
      planCapabilities([
        { ...unitChange('g', 'create', undefined, [{ host: 'x.example', port: 1 }]), address: 'gate.g.web' },
      ]),
    ).toEqual([]);
  });
});

describe('credential capabilities (decisions/0023)', () => {
  const withSecrets = (
    workload: string,
    action: PlannedChange['action'],
    before: unknown[] | undefined,
    after: unknown[] | undefined,
  ): PlannedChange => capabilityChange({ workload, action, field: 'secrets', before, after, base: { egress: [] } });

  const inj = (name: string, host: string) => ({
    name,
    ref: `file:/etc/${name}`,
    inject: { host, header: 'x-api-key' },
  });

  it('GIVEN secrets added, removed, un-injected and injected THEN each is one line, raw ones flagged, no reference shown', () => {
    const caps = planCapabilities([
      withSecrets(
        'w',
        'update',
        [
          { name: 'gone', ref: 'file:/etc/gone' },
          inj('was-injected', 'api.example.com'),
          { name: 'now-injected', ref: 'file:/etc/n' },
          inj('same', 'a.example.com'),
        ],
        [
          { name: 'raw-token', ref: 'env-file:/etc/x.env#T' },
          inj('new-key', 'api.example.com'),
          { name: 'was-injected', ref: 'file:/etc/was-injected' },
          inj('now-injected', 'b.example.com'),
          inj('same', 'a.example.com'),
        ],
      ),
    ]);
    expect(caps).toHaveLength(1);
    expect(capabilityLines(caps[0])).toEqual([
      'credential -gone',
      'credential +new-key (injected for api.example.com: the workload holds a placeholder)',
      'credential ~now-injected (now injected for b.example.com: the workload holds a placeholder)',
      'credential +raw-token (held by the workload: it can send the value anywhere it reaches)',
      'credential +was-injected (no longer injected; held by the workload: it can send the value anywhere it reaches)',
    ]);
    expect(JSON.stringify(caps)).not.toContain('file:/etc');
    expect(caps[0]!.credentials!.find((c) => c.name === 'same')).toEqual({
      change: 'unchanged',
      name: 'same',
      injected: true,
      host: 'a.example.com',
      risk: null,
    });
  });

  it('GIVEN a workload without egress but with a new credential THEN it still appears', () => {
    expect(
      planCapabilities([withSecrets('solo', 'create', undefined, [{ name: 'k', ref: 'file:/k' }])]).map((c) => [
        c.workload,
        c.egress.length,
        c.credentials?.length,
      ]),
    ).toEqual([['solo', 0, 1]]);
  });
});
