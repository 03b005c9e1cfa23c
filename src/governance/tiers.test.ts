import { describe, expect, it } from 'vitest';
import { evaluatePolicy } from './index.js';
import { BASELINE, edit, lineIn, stateOf } from './policy.fixture.js';
import { effectiveTiers, RISK_TIERS, TIER_TABLE } from './tiers.js';

const CONFIG = 'agentvm.yaml';
const withPolicy = (policyYaml: string) =>
  edit(BASELINE, CONFIG, '  policy:\n    minimumTier: low\n', `  policy:\n${policyYaml}`);

describe('the risk-tier table', () => {
  it('is DESIGN §2, row by row', () => {
    const row = (control: keyof (typeof TIER_TABLE)['low']) => RISK_TIERS.map((t) => TIER_TABLE[t][control]);
    expect(row('toolsAllowlist')).toEqual([true, true, true, true]);
    expect(row('secretsByReference')).toEqual([true, true, true, true]);
    expect(row('egressAllowlist')).toEqual([false, true, true, true]);
    expect(row('signedRelease')).toEqual([false, true, true, true]);
    expect(row('audit')).toEqual([true, true, true, true]);
    expect(row('canary')).toEqual([false, false, true, true]);
    expect(row('testedRollback')).toEqual([false, false, true, true]);
    expect(row('untrustedInput')).toEqual(['deny', 'deny', 'job-or-egress-allowlist', 'job-only']);
  });

  it('is the effective table when agentvm.yaml has no overrides', () => {
    const tiers = effectiveTiers(stateOf(BASELINE).config);
    expect(tiers.controls).toEqual(TIER_TABLE);
    expect(tiers.minimumTier).toBe('low');
    expect(tiers.diagnostics).toEqual([]);
    expect(effectiveTiers().controls).toEqual(TIER_TABLE);
  });
});

describe('agentvm.yaml tier overrides', () => {
  it('GIVEN an override that tightens WHEN merged THEN the tier and every tier above it require the control', () => {
    const files = withPolicy(
      '    tiers:\n      low:\n        canary: true\n      moderate:\n        untrustedInput: deny\n',
    );
    const tiers = effectiveTiers(stateOf(files).config);
    expect(tiers.diagnostics).toEqual([]);
    expect(RISK_TIERS.map((t) => tiers.controls[t].canary)).toEqual([true, true, true, true]);
    expect(tiers.controls.low.egressAllowlist).toBe(false);
  });

  it('GIVEN untrusted input tightened at high WHEN merged THEN critical is at least as strict, and lower tiers are untouched', () => {
    const files = withPolicy('    tiers:\n      high:\n        untrustedInput: deny\n');
    const tiers = effectiveTiers(stateOf(files).config);
    expect(tiers.diagnostics).toEqual([]);
    expect(RISK_TIERS.map((t) => tiers.controls[t].untrustedInput)).toEqual(['deny', 'deny', 'deny', 'deny']);
  });

  it('GIVEN a boolean override that loosens WHEN merged THEN policy.loosening at that key, and the table still applies', () => {
    const files = withPolicy('    tiers:\n      moderate:\n        signedRelease: false\n');
    const state = stateOf(files);
    const tiers = effectiveTiers(state.config);
    expect(tiers.diagnostics).toHaveLength(1);
    const d = tiers.diagnostics[0]!;
    expect(d).toMatchObject({
      code: 'policy.loosening',
      severity: 'error',
      path: '$.spec.policy.tiers.moderate.signedRelease',
    });
    expect(d.location).toEqual({ file: CONFIG, line: lineIn(files, CONFIG, 'signedRelease'), column: 9 });
    expect(tiers.controls.moderate.signedRelease).toBe(true);

    // The ignored override does not let an unsigned moderate workload through.
    const unsigned = edit(
      files,
      'workloads/web/manifest.yaml',
      '  signature:\n    bundle: web.sigstore.json\n    identity: https://github.com/example/web/.github/workflows/release.yml@refs/heads/main\n    issuer: https://token.actions.githubusercontent.com\n',
      '',
    );
    const codes = evaluatePolicy(stateOf(unsigned)).map((x) => x.code);
    expect(codes).toContain('policy.loosening');
    expect(codes).toContain('policy.unsigned-release');
  });

  it('GIVEN a weaker untrustedInput WHEN merged THEN policy.loosening, and the built-in rule stays', () => {
    const files = withPolicy('    tiers:\n      critical:\n        untrustedInput: job-or-egress-allowlist\n');
    const tiers = effectiveTiers(stateOf(files).config);
    expect(tiers.diagnostics.map((d) => [d.code, d.location?.line])).toEqual([
      ['policy.loosening', lineIn(files, CONFIG, 'untrustedInput')],
    ]);
    expect(tiers.controls.critical.untrustedInput).toBe('job-only');
  });

  it('GIVEN overrides that restate the table WHEN merged THEN nothing changes and nothing is reported', () => {
    const files = withPolicy(
      '    tiers:\n      low:\n        egressAllowlist: false\n        audit: true\n        untrustedInput: deny\n      high:\n        untrustedInput: job-or-egress-allowlist\n',
    );
    const tiers = effectiveTiers(stateOf(files).config);
    expect(tiers.diagnostics).toEqual([]);
    expect(tiers.controls).toEqual(TIER_TABLE);
  });
});
