// Where credentials go (rules/credentials.ts, decisions/0023): vault: refused at validate, injection routes that can
// work, and HTTP credentials injected at critical (a warning at high).
import { describe, expect, it } from 'vitest';
import { evaluatePolicy } from './index.js';
import { BASELINE, edit, stateOf } from './policy.fixture.js';

const WEB_C = 'workloads/web/contract.yaml';
const LLM = 'ref: env-file:/etc/agentvm/web.env#LLM_KEY';
const codes = (files: Record<string, string>, code: string, path?: string) =>
  evaluatePolicy(stateOf(files)).filter((d) => d.code === code && (!path || d.path === path));
const LLM_PATH = '$.spec.secrets[1]';

describe('credential rules', () => {
  it('GIVEN a vault: reference WHEN validated THEN it is refused there, at the ref, with how to deliver it instead', () => {
    const d = codes(edit(BASELINE, WEB_C, LLM, 'ref: vault:kv/agents/web#api-key'), 'policy.secret-vault-unsupported');
    expect(d.map((x) => [x.severity, x.path])).toEqual([['error', '$.spec.secrets[1].ref']]);
    expect(d[0]!.detail).toContain('env-file:');
  });

  it('GIVEN an injected secret whose host is not allowed on a TLS port THEN policy.inject-host-not-allowed; allowed on 443 THEN nothing', () => {
    const injected = (host: string) =>
      edit(BASELINE, WEB_C, LLM, `${LLM}\n      inject:\n        host: ${host}\n        header: x-api-key`);
    expect(codes(injected('evil.example.com'), 'policy.inject-host-not-allowed').map((x) => x.path)).toEqual([
      '$.spec.secrets[1].inject.host',
    ]);
    expect(
      evaluatePolicy(stateOf(injected('api.example.com'))).filter((d) => d.code.startsWith('policy.inject')),
    ).toEqual([]);
  });

  it('GIVEN an HTTP credential handed to the workload THEN an error at critical, a warning at high, nothing at moderate; injected THEN nothing', () => {
    const named = (tier: string) =>
      edit(
        edit(BASELINE, WEB_C, '- name: llm-key', '- name: llm-api-key'),
        WEB_C,
        'riskTier: moderate',
        `riskTier: ${tier}`,
      );
    expect(codes(named('critical'), 'policy.credential-not-injected', LLM_PATH).map((d) => d.severity)).toEqual([
      'error',
    ]);
    expect(codes(named('high'), 'policy.credential-not-injected', LLM_PATH).map((d) => d.severity)).toEqual([
      'warning',
    ]);
    expect(codes(named('moderate'), 'policy.credential-not-injected')).toEqual([]);
    const injected = edit(
      named('critical'),
      WEB_C,
      LLM,
      `${LLM}\n      inject:\n        host: api.example.com\n        header: authorization\n        format: "Bearer {}"`,
    );
    expect(codes(injected, 'policy.credential-not-injected', LLM_PATH)).toEqual([]);
  });
});
