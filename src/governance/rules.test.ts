// One GIVEN/WHEN/THEN case per governance rule: each breaks the clean baseline exactly once and asserts the code,
// the severity and the line the finding points at.

import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import type { DesiredState } from '../contracts/desired-state.js';
import type { Diagnostic } from '../diagnostics/index.js';
import { evaluatePolicy } from './index.js';
import { BASELINE, edit, lineIn, stateOf, type FileMap } from './policy.fixture.js';

const WEB_C = 'workloads/web/contract.yaml';
const WEB_M = 'workloads/web/manifest.yaml';
const DIG_C = 'workloads/digest/contract.yaml';
const DIG_M = 'workloads/digest/manifest.yaml';
const HOST = 'hosts/alpha.yaml';
const CONFIG = 'agentvm.yaml';

/** Builds the state, insists the edit kept every document schema-valid, and runs governance. */
function policyOf(files: FileMap, mutate?: (s: DesiredState) => void): Diagnostic[] {
  const state = stateOf(files);
  expect(state.diagnostics.filter((d) => d.severity === 'error')).toEqual([]);
  mutate?.(state);
  return evaluatePolicy(state);
}

/** THEN exactly one `code`, at `file` on the line of `needle` (its `nth` occurrence, 1-based). */
function expectOne(
  diags: Diagnostic[],
  code: string,
  file: string,
  files: FileMap,
  needle: string,
  severity: 'error' | 'warning' = 'error',
): Diagnostic {
  const hits = diags.filter((d) => d.code === code);
  expect(hits, JSON.stringify(diags, null, 1)).toHaveLength(1);
  const d = hits[0]!;
  expect(d.severity).toBe(severity);
  expect(d.location?.file).toBe(file);
  expect(d.location?.line).toBe(lineIn(files, file, needle));
  expect(d.summary.length).toBeGreaterThan(10);
  expect(d.detail?.length ?? 0).toBeGreaterThan(10);
  if (file.endsWith('.yaml')) expect(d.path).toMatch(/^\$/);
  return d;
}

/** A low-tier service workload to share host alpha with `web`. */
function withExtra(
  files: FileMap,
  opts: { profile?: string; port?: number; preview?: string } = {},
): Record<string, string> {
  const preview = opts.preview
    ? `  previews:\n    - name: ${opts.preview}\n      upstream:\n        port: ${opts.port ?? 8401}\n      maxTtl: 1h\n`
    : '';
  return {
    ...edit(files, HOST, 'workloads: [web, digest]', 'workloads: [web, digest, wiki]'),
    'workloads/wiki/contract.yaml': `apiVersion: agentvm.dev/v1alpha1
kind: WorkloadContract
metadata:
  name: wiki
spec:
  owner: docs@example.com
  riskTier: low
  substrate: service
`,
    'workloads/wiki/manifest.yaml': `apiVersion: agentvm.dev/v1alpha1
kind: WorkloadManifest
metadata:
  name: wiki
spec:
  archetype: git-release
  source:
    git:
      repo: https://git.example.com/agents/wiki.git
      commit: 89abcdef0123456789abcdef0123456789abcdef
  profiles:
    - name: ${opts.profile ?? 'wiki'}
      entrypoint: [node, wiki.js]
      listen:
        port: ${opts.port ?? 8401}
${preview}`,
  };
}

const SIGNATURE_BLOCK =
  '  signature:\n    bundle: web.sigstore.json\n    identity: https://github.com/example/web/.github/workflows/release.yml@refs/heads/main\n    issuer: https://token.actions.githubusercontent.com\n';

describe('the clean baseline', () => {
  it('GIVEN a moderate signed service and a high Tier-2 job fed untrusted email WHEN evaluated THEN there are no findings', () => {
    expect(policyOf(BASELINE)).toEqual([]);
  });

  it('GIVEN the two reference workloads on one host WHEN evaluated THEN there are no findings', () => {
    const ref = (p: string) => readFileSync(new URL(`../../reference-workloads/${p}`, import.meta.url), 'utf8');
    const files = {
      'hosts/alpha.yaml':
        'apiVersion: agentvm.dev/v1alpha1\nkind: Host\nmetadata:\n  name: alpha\nspec:\n  workloads: [orchestrator, agent-pool]\n',
      'workloads/orchestrator/contract.yaml': ref('orchestrator-py/agentvm/contract.yaml'),
      'workloads/orchestrator/manifest.yaml': ref('orchestrator-py/agentvm/manifest.yaml'),
      'workloads/orchestrator/orchestrator.sigstore.json': '{}',
      'workloads/agent-pool/contract.yaml': ref('agent-pool-node/agentvm/contract.yaml'),
      'workloads/agent-pool/manifest.yaml': ref('agent-pool-node/agentvm/manifest.yaml'),
      'workloads/agent-pool/agent-pool-1.0.0.sigstore.json': '{}',
      'workloads/agent-pool/release-signing.pub.pem': '-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n',
    };
    // The high orchestrator still holds its raw API keys: a warning at high (an error at critical), decisions/0023.
    expect(policyOf(files).map((d) => [d.code, d.severity, d.path])).toEqual([
      ['policy.credential-not-injected', 'warning', '$.spec.secrets[0]'],
      ['policy.credential-not-injected', 'warning', '$.spec.secrets[1]'],
    ]);
  });

  it('GIVEN several violations in several workloads WHEN evaluated THEN all of them are reported, sorted, with addresses', () => {
    let files = edit(BASELINE, WEB_C, 'version: 14.1.0', 'version: latest');
    files = edit(files, DIG_M, 'version: 2.3.0', 'version: ~2.3.0');
    files = edit(files, WEB_M, 'path: /healthz', 'path: /../admin');
    const diags = policyOf(files);
    expect(diags.map((d) => [d.code, d.address])).toEqual([
      ['source.version-not-pinned', 'workload.digest'],
      ['policy.tool-unpinned', 'workload.web'],
      ['name.path-traversal', 'workload.web'],
    ]);
  });
});

describe('tools fail closed', () => {
  it('GIVEN a version range WHEN evaluated THEN policy.tool-unpinned at the version', () => {
    const files = edit(BASELINE, WEB_C, 'version: 14.1.0', "version: '^14.1'");
    const d = expectOne(policyOf(files), 'policy.tool-unpinned', WEB_C, files, "version: '^14.1'");
    expect(d.path).toBe('$.spec.tools[0].version');
    expect(d.address).toBe('workload.web');
  });

  it.each(['*', '1.x', '>=1.2.0', 'latest', '1.2 || 1.3', '~1.2.3', '14.X.0'])(
    'GIVEN version %j WHEN evaluated THEN it is unpinned',
    (v) => {
      const files = edit(BASELINE, WEB_C, 'version: 14.1.0', `version: ${JSON.stringify(v)}`);
      expectOne(policyOf(files), 'policy.tool-unpinned', WEB_C, files, 'version: "');
    },
  );

  it('GIVEN a tool with neither version nor sha256 WHEN evaluated THEN policy.tool-unpinned at the entry', () => {
    const files = edit(BASELINE, WEB_C, '    - name: ripgrep\n      version: 14.1.0\n', '    - name: ripgrep\n');
    expectOne(policyOf(files), 'policy.tool-unpinned', WEB_C, files, 'name: ripgrep');
  });

  it('GIVEN a wildcard tool name (schema bypassed) WHEN evaluated THEN policy.tool-wildcard at the name', () => {
    const diags = policyOf(BASELINE, (s) => {
      s.workloads.get('web')!.contract!.value.spec.tools![0]!.name = 'rip*';
    });
    expectOne(diags, 'policy.tool-wildcard', WEB_C, BASELINE, 'name: ripgrep');
  });

  it('GIVEN a tool listed twice WHEN evaluated THEN policy.tool-duplicate at the second', () => {
    const files = edit(BASELINE, WEB_C, '- name: jq', '- name: ripgrep');
    expectOne(policyOf(files), 'policy.tool-duplicate', WEB_C, files, 'name: ripgrep\n      sha256');
  });
});

describe('tool kinds (decisions/0022)', () => {
  const TOOLS = `    - name: ripgrep\n      version: 14.1.0\n    - name: jq\n      sha256: ${'a'.repeat(64)}\n`;
  const withTools = (yaml: string): FileMap => {
    const files = { ...BASELINE };
    const text = files[WEB_C]!;
    const start = text.indexOf('    - name: ripgrep');
    const end = text.indexOf('  egress:');
    files[WEB_C] = text.slice(0, start) + yaml + text.slice(end);
    return files;
  };
  const SHA = 'b'.repeat(64);

  it('GIVEN a program and an HTTP MCP server whose url is an egress destination THEN there are no findings', () => {
    const files = withTools(
      `    - kind: program\n      name: rg\n      path: /usr/bin/rg\n      sha256: ${SHA}\n    - kind: mcp\n      name: search\n      url: https://api.example.com/mcp\n      tools:\n        - name: find\n          sha256: ${SHA}\n    - kind: mcp\n      name: local\n      command: [node, mcp/server.js]\n      tools: []\n`,
    );
    expect(policyOf(files).filter((d) => d.address === 'workload.web')).toEqual([]);
  });

  it('GIVEN kindless entries (the v1alpha1 form) THEN they are still read and checked, and say nothing more', () => {
    expect(BASELINE[WEB_C]).toContain(TOOLS.split('\n')[0]);
    expect(policyOf(BASELINE).filter((d) => d.address === 'workload.web')).toEqual([]);
  });

  it('GIVEN a program without sha256 THEN policy.tool-incomplete at the entry', () => {
    const files = withTools('    - kind: program\n      name: rg\n      path: /usr/bin/rg\n');
    const d = expectOne(policyOf(files), 'policy.tool-incomplete', WEB_C, files, 'kind: program');
    expect(d.summary).toContain('`sha256`');
  });

  it('GIVEN a program with a version THEN policy.tool-field at the version', () => {
    const files = withTools(
      `    - kind: program\n      name: rg\n      path: /usr/bin/rg\n      sha256: ${SHA}\n      version: 14.1.0\n`,
    );
    expectOne(policyOf(files), 'policy.tool-field', WEB_C, files, 'version: 14.1.0');
  });

  it('GIVEN a kindless entry with a path THEN policy.tool-field says to add a kind', () => {
    const files = withTools(`    - name: rg\n      path: /usr/bin/rg\n      sha256: ${SHA}\n`);
    const d = expectOne(policyOf(files), 'policy.tool-field', WEB_C, files, 'path: /usr/bin/rg');
    expect(d.detail).toContain('kind: program');
  });

  it.each(['../../bin/sh', 'bin/./x', 'bin//x'])('GIVEN program path %j THEN policy.tool-path', (p) => {
    const files = withTools(`    - kind: program\n      name: rg\n      path: ${p}\n      sha256: ${SHA}\n`);
    expectOne(policyOf(files), 'policy.tool-path', WEB_C, files, `path: ${p}`);
  });

  it('GIVEN an MCP server with both command and url THEN policy.mcp-transport', () => {
    const files = withTools(
      '    - kind: mcp\n      name: s\n      command: [node, s.js]\n      url: https://api.example.com/mcp\n      tools: []\n',
    );
    expectOne(policyOf(files), 'policy.mcp-transport', WEB_C, files, 'kind: mcp');
  });

  it('GIVEN an HTTP MCP server that is not an egress destination THEN policy.mcp-url-egress names the host and port to add', () => {
    const files = withTools(
      '    - kind: mcp\n      name: s\n      url: http://tools.example.com:8080/mcp\n      tools: []\n',
    );
    const d = expectOne(policyOf(files), 'policy.mcp-url-egress', WEB_C, files, 'url: http://tools.example.com');
    expect(d.detail).toContain('{host: tools.example.com, port: 8080}');
  });

  it('GIVEN an MCP tool listed twice THEN policy.mcp-tool-duplicate at the second', () => {
    const files = withTools(
      `    - kind: mcp\n      name: s\n      command: [node, s.js]\n      tools:\n        - name: find\n          sha256: ${SHA}\n        - name: find\n          sha256: ${'c'.repeat(64)}\n`,
    );
    expectOne(
      policyOf(files),
      'policy.mcp-tool-duplicate',
      WEB_C,
      files,
      `name: find\n          sha256: ${'c'.repeat(64)}`,
    );
  });
});

describe('secrets by reference only', () => {
  it('GIVEN a secret ref that is a value WHEN evaluated THEN policy.secret-literal at the ref, without the value', () => {
    const files = edit(BASELINE, WEB_C, 'ref: env-file:/etc/agentvm/web.env#LLM_KEY', 'ref: hunter2-correct-horse');
    const d = expectOne(policyOf(files), 'policy.secret-literal', WEB_C, files, 'hunter2');
    expect(JSON.stringify(d)).not.toContain('hunter2');
  });

  it('GIVEN a reference missing its #VAR WHEN evaluated THEN policy.secret-literal (malformed reference)', () => {
    const files = edit(BASELINE, DIG_C, 'digest.env#MAIL_PASSWORD', 'digest.env');
    const d = expectOne(policyOf(files), 'policy.secret-literal', DIG_C, files, 'env-file:');
    expect(d.summary).toContain('malformed `env-file:` reference');
  });

  it('GIVEN an env variable named *_TOKEN with a literal value WHEN evaluated THEN policy.secret-literal at it', () => {
    const files = edit(
      BASELINE,
      WEB_M,
      '        AGENT_PROFILE: core\n',
      '        AGENT_PROFILE: core\n        DEPLOY_TOKEN: changeme\n',
    );
    const d = expectOne(policyOf(files), 'policy.secret-literal', WEB_M, files, 'DEPLOY_TOKEN');
    expect(d.path).toBe('$.spec.profiles[0].env.DEPLOY_TOKEN');
  });

  it('GIVEN an AWS access key in a description WHEN evaluated THEN policy.secret-literal at the description', () => {
    const files = edit(
      BASELINE,
      WEB_C,
      'description: Answers questions',
      'description: key AKIAIOSFODNN7EXAMPLE answers questions',
    );
    const d = expectOne(policyOf(files), 'policy.secret-literal', WEB_C, files, 'description:');
    expect(d.summary).toContain('AWS access key');
  });

  it('GIVEN a git URL with a password WHEN evaluated THEN policy.secret-literal at the repo', () => {
    const files = edit(BASELINE, WEB_M, 'https://git.example.com', 'https://deploy:s3cr3t-pass@git.example.com');
    expectOne(policyOf(files), 'policy.secret-literal', WEB_M, files, 'repo:');
  });

  it('GIVEN a private key committed next to a manifest WHEN evaluated THEN policy.secret-literal at the key block', () => {
    const files = {
      ...BASELINE,
      'workloads/web/signing.key':
        '# do not commit\n-----BEGIN EC PRIVATE KEY-----\nMHcCAQEE\n-----END EC PRIVATE KEY-----\n',
    };
    const d = expectOne(policyOf(files), 'policy.secret-literal', 'workloads/web/signing.key', files, '-----BEGIN');
    expect(d.address).toBe('workload.web');
  });

  it('GIVEN a gate TLS key given inline WHEN evaluated THEN policy.secret-literal at the key', () => {
    const files = edit(
      BASELINE,
      HOST,
      '    port: 8443\n',
      '    port: 8443\n    tls:\n      cert: file:/etc/agentvm/gate.crt\n      key: not-a-reference\n',
    );
    expectOne(policyOf(files), 'policy.secret-literal', HOST, files, 'key: not-a-reference');
  });

  it('GIVEN two secrets with the same name WHEN evaluated THEN policy.secret-duplicate at the second', () => {
    const files = edit(BASELINE, WEB_C, '- name: llm-key', '- name: chat-token');
    expectOne(policyOf(files), 'policy.secret-duplicate', WEB_C, files, 'name: chat-token\n      ref: env-file');
  });
});

describe('egress', () => {
  it('GIVEN a wildcard host at moderate WHEN evaluated THEN policy.egress-wildcard error at the host', () => {
    const files = edit(BASELINE, WEB_C, 'host: api.example.com', "host: '*.example.com'");
    expectOne(policyOf(files), 'policy.egress-wildcard', WEB_C, files, "host: '*");
  });

  it('GIVEN 0.0.0.0/0 at low WHEN evaluated THEN policy.egress-wildcard is only a warning', () => {
    let files = edit(BASELINE, WEB_C, 'host: api.example.com', 'host: 0.0.0.0/0');
    files = edit(files, WEB_C, 'riskTier: moderate', 'riskTier: low');
    expectOne(policyOf(files), 'policy.egress-wildcard', WEB_C, files, 'host: 0.0.0.0/0', 'warning');
  });
});

describe('untrusted input', () => {
  it('GIVEN untrusted input at moderate WHEN evaluated THEN policy.untrusted-input-tier at riskTier', () => {
    const files = edit(BASELINE, WEB_C, '  data:\n', '  untrustedInputs: [web]\n  data:\n');
    const d = expectOne(policyOf(files), 'policy.untrusted-input-tier', WEB_C, files, 'riskTier:');
    expect(d.detail).toContain('riskTier: high');
  });

  it('GIVEN a high service with untrusted input and no egress allowlist WHEN evaluated THEN policy.untrusted-input-substrate', () => {
    let files = edit(BASELINE, WEB_C, 'riskTier: moderate', 'riskTier: high');
    files = edit(
      files,
      WEB_C,
      '  egress:\n    - host: api.example.com\n      port: 443\n',
      '  untrustedInputs: [transcripts]\n',
    );
    expectOne(policyOf(files), 'policy.untrusted-input-substrate', WEB_C, files, 'substrate:');
  });

  it('GIVEN a critical service with untrusted input, even with an egress allowlist, WHEN evaluated THEN policy.untrusted-input-substrate', () => {
    let files = edit(BASELINE, WEB_C, 'riskTier: moderate', 'riskTier: critical');
    files = edit(files, WEB_C, '  data:\n', '  untrustedInputs: [chat]\n  data:\n');
    const d = expectOne(policyOf(files), 'policy.untrusted-input-substrate', WEB_C, files, 'substrate:');
    expect(d.summary).toContain('only in a Tier-2 job');
  });
});

describe('signed releases', () => {
  it('GIVEN a moderate workload without signature WHEN evaluated THEN policy.unsigned-release at spec', () => {
    const files = edit(BASELINE, WEB_M, SIGNATURE_BLOCK, '');
    expectOne(policyOf(files), 'policy.unsigned-release', WEB_M, files, 'archetype:');
  });

  it('GIVEN a low workload without signature WHEN evaluated THEN nothing is required', () => {
    let files = edit(BASELINE, WEB_M, SIGNATURE_BLOCK, '');
    files = edit(files, WEB_C, 'riskTier: moderate', 'riskTier: low');
    expect(policyOf(files)).toEqual([]);
  });

  it('GIVEN a bundle that is not in the workload directory WHEN evaluated THEN policy.signature-file-missing', () => {
    const files = edit(BASELINE, WEB_M, 'bundle: web.sigstore.json', 'bundle: web-1.2.sigstore.json');
    expectOne(policyOf(files), 'policy.signature-file-missing', WEB_M, files, 'bundle:');
  });

  it('GIVEN an identity without issuer WHEN evaluated THEN policy.signature-policy', () => {
    const files = edit(BASELINE, WEB_M, '    issuer: https://token.actions.githubusercontent.com\n', '');
    expectOne(policyOf(files), 'policy.signature-policy', WEB_M, files, 'identity:');
  });

  it('GIVEN a high job whose kernel names no bundle WHEN evaluated THEN policy.unsigned-image at the kernel', () => {
    const files = edit(BASELINE, DIG_M, '        bundle: vmlinuz-6.1.sigstore.json\n', '');
    const d = expectOne(policyOf(files), 'policy.unsigned-image', DIG_M, files, 'kernel:');
    expect(d.summary).toContain('kernel image of job `summarize`');
  });

  it('GIVEN a low job without image bundles WHEN evaluated THEN nothing is required', () => {
    let files = edit(BASELINE, DIG_M, '        bundle: vmlinuz-6.1.sigstore.json\n', '');
    files = edit(files, DIG_M, '        bundle: digest-rootfs.sigstore.json\n', '');
    files = edit(files, DIG_C, 'riskTier: high', 'riskTier: low');
    files = edit(files, DIG_C, '  untrustedInputs: [email, external-files]\n', '');
    expect(policyOf(files)).toEqual([]);
  });

  it('GIVEN a low job with an image bundle but no signer in the manifest WHEN evaluated THEN policy.signature-policy at the bundle', () => {
    let files = edit(
      BASELINE,
      DIG_M,
      '  signature:\n    bundle: digest-2.3.0.sigstore.json\n    key: release-signing.pub.pem\n',
      '',
    );
    files = edit(files, DIG_M, '        bundle: vmlinuz-6.1.sigstore.json\n', '');
    files = edit(files, DIG_C, 'riskTier: high', 'riskTier: low');
    files = edit(files, DIG_C, '  untrustedInputs: [email, external-files]\n', '');
    expectOne(policyOf(files), 'policy.signature-policy', DIG_M, files, 'bundle: digest-rootfs');
  });

  it('GIVEN an image bundle that is not in the workload directory WHEN evaluated THEN policy.signature-file-missing at the bundle', () => {
    const files = edit(BASELINE, DIG_M, 'bundle: digest-rootfs.sigstore.json', 'bundle: rootfs-2.sigstore.json');
    const d = expectOne(policyOf(files), 'policy.signature-file-missing', DIG_M, files, 'bundle: rootfs-2');
    expect(d.summary).toContain('jobs[0].rootfs.bundle');
  });

  it('GIVEN an image bundle outside the workload directory WHEN evaluated THEN name.path-traversal', () => {
    const files = edit(BASELINE, DIG_M, 'bundle: digest-rootfs.sigstore.json', 'bundle: ../web/web.sigstore.json');
    expectOne(policyOf(files), 'name.path-traversal', DIG_M, files, 'bundle: ../web');
  });

  it('GIVEN both a key and an identity WHEN evaluated THEN policy.signature-policy at the key', () => {
    const files = edit(
      BASELINE,
      DIG_M,
      '    key: release-signing.pub.pem\n',
      '    key: release-signing.pub.pem\n    identity: ops@example.com\n',
    );
    expectOne(policyOf(files), 'policy.signature-policy', DIG_M, files, 'key:');
  });
});

describe('source pinning', () => {
  it('GIVEN a branch name as commit WHEN evaluated THEN source.commit-not-pinned says how to resolve it', () => {
    const files = edit(BASELINE, WEB_M, 'commit: 0123456789abcdef0123456789abcdef01234567', 'commit: main');
    const d = expectOne(policyOf(files), 'source.commit-not-pinned', WEB_M, files, 'commit: main');
    expect(d.summary).toContain('branch or tag');
    expect(d.detail).toContain('git rev-parse main^{commit}');
  });

  it('GIVEN an abbreviated commit WHEN evaluated THEN source.commit-not-pinned', () => {
    const files = edit(BASELINE, WEB_M, 'commit: 0123456789abcdef0123456789abcdef01234567', "commit: '0123abc'");
    const d = expectOne(policyOf(files), 'source.commit-not-pinned', WEB_M, files, 'commit:');
    expect(d.summary).toContain('abbreviated');
  });

  it('GIVEN a version range for a package WHEN evaluated THEN source.version-not-pinned', () => {
    const files = edit(BASELINE, DIG_M, 'version: 2.3.0', "version: '^2.3.0'");
    expectOne(policyOf(files), 'source.version-not-pinned', DIG_M, files, 'version:');
  });

  it('GIVEN a git-release archetype with a package source WHEN evaluated THEN source.archetype-mismatch', () => {
    const files = edit(BASELINE, DIG_M, 'archetype: package-install', 'archetype: git-release');
    expectOne(policyOf(files), 'source.archetype-mismatch', DIG_M, files, 'archetype:');
  });

  it('GIVEN a subdir with .. WHEN evaluated THEN name.path-traversal', () => {
    const files = edit(BASELINE, WEB_M, 'subdir: services/web', 'subdir: services/../../etc');
    expectOne(policyOf(files), 'name.path-traversal', WEB_M, files, 'subdir:');
  });
});

describe('canary', () => {
  it('GIVEN a high service with profiles and no canary WHEN evaluated THEN policy.canary-missing', () => {
    const files = edit(BASELINE, WEB_C, 'riskTier: moderate', 'riskTier: high');
    expectOne(policyOf(files), 'policy.canary-missing', WEB_M, files, 'archetype:');
  });

  it('GIVEN a canary naming no profile WHEN evaluated THEN policy.canary-unknown-profile with a suggestion', () => {
    const files = edit(BASELINE, WEB_M, '  previews:\n', '  canary:\n    profile: web-cor\n  previews:\n');
    const d = expectOne(policyOf(files), 'policy.canary-unknown-profile', WEB_M, files, 'profile: web-cor');
    expect(d.summary).toContain('did you mean `web-core`');
  });
});

describe('substrate', () => {
  it('GIVEN a service that also defines jobs WHEN evaluated THEN workload.substrate-mismatch at jobs', () => {
    const jobs = DIG_M.length > 0 ? (BASELINE[DIG_M]!.split('  jobs:\n')[1] ?? '') : '';
    const files = edit(BASELINE, WEB_M, '  previews:\n', `  jobs:\n${jobs}  previews:\n`);
    const d = expectOne(policyOf(files), 'workload.substrate-mismatch', WEB_M, files, '- name: summarize');
    expect(d.detail).toContain(`${WEB_C}:`);
  });

  it('GIVEN a job workload with gateway profiles WHEN evaluated THEN workload.substrate-mismatch at profiles', () => {
    const files = edit(
      BASELINE,
      DIG_M,
      '  jobs:\n',
      '  profiles:\n    - name: digest-ui\n      entrypoint: [node, ui.js]\n  jobs:\n',
    );
    expectOne(policyOf(files), 'workload.substrate-mismatch', DIG_M, files, '- name: digest-ui');
  });

  it('GIVEN two jobs with one name WHEN evaluated THEN job.duplicate at the second', () => {
    const jobs = BASELINE[DIG_M]!.split('  jobs:\n')[1]!;
    const files = { ...BASELINE, [DIG_M]: BASELINE[DIG_M]! + jobs };
    const d = policyOf(files).filter((x) => x.code === 'job.duplicate');
    expect(d).toHaveLength(1);
    expect(d[0]!.location?.line).toBe(files[DIG_M]!.split('\n').lastIndexOf('    - name: summarize') + 1);
  });
});

describe('profiles: one runtime source each', () => {
  it('GIVEN two profiles with one name WHEN evaluated THEN profile.duplicate at the second', () => {
    const files = edit(BASELINE, WEB_M, '- name: web-research', '- name: web-core');
    expectOne(
      policyOf(files),
      'profile.duplicate',
      WEB_M,
      files,
      'name: web-core\n      entrypoint: [python3, -m, web, --mode',
    );
  });

  it('GIVEN an absolute entrypoint outside the release WHEN evaluated THEN profile.runtime-source', () => {
    const files = edit(
      BASELINE,
      WEB_M,
      'entrypoint: [python3, -m, web]',
      'entrypoint: [/opt/other/bin/python3, -m, web]',
    );
    expectOne(policyOf(files), 'profile.runtime-source', WEB_M, files, 'entrypoint: [/opt');
  });

  it('GIVEN an entrypoint argument with .. WHEN evaluated THEN profile.runtime-source', () => {
    const files = edit(BASELINE, WEB_M, '--mode, research]', '--mode, research, --plugins=../shared/plugins]');
    expectOne(policyOf(files), 'profile.runtime-source', WEB_M, files, '--plugins');
  });

  it('GIVEN LD_PRELOAD in env WHEN evaluated THEN profile.runtime-source at the key', () => {
    const files = edit(
      BASELINE,
      WEB_M,
      '        AGENT_PROFILE: core\n',
      '        AGENT_PROFILE: core\n        LD_PRELOAD: /tmp/hook.so\n',
    );
    const d = expectOne(policyOf(files), 'profile.runtime-source', WEB_M, files, 'LD_PRELOAD');
    expect(d.location?.column).toBe(9);
  });
});

describe('per-host uniqueness', () => {
  it('GIVEN two workloads with one profile name on a host WHEN evaluated THEN host.profile-collision names both', () => {
    const files = withExtra(BASELINE, { profile: 'web-core' });
    const d = expectOne(
      policyOf(files),
      'host.profile-collision',
      'workloads/wiki/manifest.yaml',
      files,
      '- name: web-core',
    );
    expect(d.summary).toContain('`web`');
    expect(d.summary).toContain('`wiki`');
    expect(d.detail).toContain(`${WEB_M}:${lineIn(files, WEB_M, 'name: web-core')}`);
  });

  it('GIVEN two workloads listening on one port on a host WHEN evaluated THEN host.port-collision', () => {
    const files = withExtra(BASELINE, { port: 8302 });
    expectOne(policyOf(files), 'host.port-collision', 'workloads/wiki/manifest.yaml', files, 'port: 8302');
  });

  it('GIVEN a profile on the gate port WHEN evaluated THEN host.port-collision', () => {
    const files = edit(BASELINE, WEB_M, 'port: 8302', 'port: 8443');
    const d = expectOne(policyOf(files), 'host.port-collision', WEB_M, files, 'port: 8443');
    expect(d.summary).toContain('preview gate');
  });

  it('GIVEN two workloads with one preview name on a host WHEN evaluated THEN host.preview-collision', () => {
    const files = withExtra(BASELINE, { preview: 'web-ui' });
    expectOne(policyOf(files), 'host.preview-collision', 'workloads/wiki/manifest.yaml', files, '- name: web-ui');
  });

  it('GIVEN a gate on 0.0.0.0 without TLS WHEN evaluated THEN host.gate-exposed', () => {
    const files = edit(BASELINE, HOST, 'address: 127.0.0.1', 'address: 0.0.0.0');
    expectOne(policyOf(files), 'host.gate-exposed', HOST, files, 'address:');
  });
});

describe('previews', () => {
  it('GIVEN a preview of a port the workload does not listen on WHEN evaluated THEN preview.upstream-unknown', () => {
    const files = edit(BASELINE, WEB_M, '        port: 8301\n      maxTtl', '        port: 5432\n      maxTtl');
    expectOne(policyOf(files), 'preview.upstream-unknown', WEB_M, files, 'port: 5432');
  });

  it('GIVEN two previews with one name WHEN evaluated THEN preview.duplicate', () => {
    const files = {
      ...BASELINE,
      [WEB_M]: `${BASELINE[WEB_M]!}    - name: web-ui\n      upstream:\n        port: 8302\n      maxTtl: 1h\n`,
    };
    const d = policyOf(files).filter((x) => x.code === 'preview.duplicate');
    expect(d).toHaveLength(1);
    expect(d[0]!.location?.line).toBe(files[WEB_M]!.split('\n').lastIndexOf('    - name: web-ui') + 1);
  });
});

describe('injection', () => {
  it('GIVEN an env value with a newline WHEN evaluated THEN name.unit-injection', () => {
    const files = edit(BASELINE, WEB_M, 'AGENT_PROFILE: core', 'AGENT_PROFILE: "core\\nExecStartPre=/bin/sh -c evil"');
    const d = expectOne(policyOf(files), 'name.unit-injection', WEB_M, files, 'AGENT_PROFILE');
    expect(d.summary).toContain('line break');
  });

  it('GIVEN a systemd specifier in an entrypoint argument WHEN evaluated THEN name.unit-injection', () => {
    const files = edit(BASELINE, WEB_M, '--mode, research]', "--mode, '%h/research']");
    expectOne(policyOf(files), 'name.unit-injection', WEB_M, files, '%h');
  });

  it('GIVEN a backslash in a secret reference WHEN evaluated THEN name.unit-injection', () => {
    const files = edit(BASELINE, WEB_C, 'web-chat-token.cred', 'web\\chat-token.cred');
    expectOne(policyOf(files), 'name.unit-injection', WEB_C, files, 'systemd-creds:');
  });

  it('GIVEN a repo that git would read as an option WHEN evaluated THEN name.unit-injection', () => {
    const files = edit(
      BASELINE,
      WEB_M,
      'repo: https://git.example.com/agents/web.git',
      "repo: '--upload-pack=touch /tmp/pwned'",
    );
    expectOne(policyOf(files), 'name.unit-injection', WEB_M, files, 'repo:');
  });

  it('GIVEN a newline in a job command WHEN evaluated THEN name.unit-injection', () => {
    const files = edit(
      BASELINE,
      DIG_M,
      'command: [/usr/bin/digest, --inbox, /data/inbox]',
      'command: [/usr/bin/digest, "--inbox\\n/data/inbox"]',
    );
    expectOne(policyOf(files), 'name.unit-injection', DIG_M, files, 'command:');
  });

  it('GIVEN a data grant with .. WHEN evaluated THEN name.path-traversal', () => {
    const files = edit(BASELINE, WEB_C, 'path: projects/shared', 'path: projects/../../etc');
    expectOne(policyOf(files), 'name.path-traversal', WEB_C, files, 'path: projects/..');
  });

  it('GIVEN an absolute data grant WHEN evaluated THEN name.path-traversal', () => {
    const files = edit(BASELINE, DIG_C, 'path: projects/inbox', 'path: /var/mail');
    expectOne(policyOf(files), 'name.path-traversal', DIG_C, files, 'path: /var/mail');
  });

  it('GIVEN a secret file reference with .. WHEN evaluated THEN name.path-traversal', () => {
    const files = edit(BASELINE, DIG_C, 'env-file:/etc/agentvm/digest.env', 'env-file:/etc/agentvm/../shadow');
    expectOne(policyOf(files), 'name.path-traversal', DIG_C, files, 'env-file:');
  });

  it('GIVEN a health path with .. WHEN evaluated THEN name.path-traversal', () => {
    const files = edit(BASELINE, WEB_M, 'path: /healthz', 'path: /../admin');
    expectOne(policyOf(files), 'name.path-traversal', WEB_M, files, 'path: /../admin');
  });

  it('GIVEN a signature bundle outside the workload directory WHEN evaluated THEN name.path-traversal, not file-missing', () => {
    const files = edit(BASELINE, WEB_M, 'bundle: web.sigstore.json', 'bundle: ../digest/digest-2.3.0.sigstore.json');
    const diags = policyOf(files);
    expectOne(diags, 'name.path-traversal', WEB_M, files, 'bundle:');
    expect(diags.map((d) => d.code)).not.toContain('policy.signature-file-missing');
  });
});

describe('minimum tier', () => {
  it('GIVEN minimumTier high WHEN evaluated THEN policy.tier-below-minimum for the moderate workload only', () => {
    const files = edit(BASELINE, CONFIG, 'minimumTier: low', 'minimumTier: high');
    const d = expectOne(policyOf(files), 'policy.tier-below-minimum', WEB_C, files, 'riskTier:');
    expect(d.detail).toContain(`agentvm.yaml:${lineIn(files, CONFIG, 'minimumTier')}`);
  });
});
