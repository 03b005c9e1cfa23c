// Secret detection: what is recognised, what is not (paths, digests, URLs, identities), and the invariant that
// no diagnostic ever carries a secret value.

import { describe, expect, it } from 'vitest';
import { evaluatePolicy } from './index.js';
import { BASELINE, edit, lineIn, stateOf } from './policy.fixture.js';
import {
  findSecret,
  isSecretEnvName,
  isSecretEnvReference,
  parseSecretReference,
  shannonEntropy,
} from '../secrets/secret-detectors.js';
import { quote } from '../secrets/text-safety.js';

// Fabricated test values in the shapes real credentials have. None of them is a live credential.
const SECRETS = {
  aws: 'AKIAQ3EGRVXL2TNW7HZK',
  awsSecret: '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',
  github: 'ghp_R2d9KfW3mXq7LpV8zN4bT6yH1sJ5cA0eGuQx',
  githubPat: 'github_pat_11ABCDEFG0aBcDeFgHiJkL_mNoPqRsTuVwXyZ0123456789abcdefGHIJKLMNOP',
  slack: 'xoxb-2048813925-7310582271-Qx7Rb2Lm9Kd4Nw8Vt3Zp',
  anthropic: 'sk-ant-api03-Zk8Qw2Rt6Yp1Lm4Nb7Vc9Xs3Dg5Hj0KfPq-TestOnly_x2',
  openai: 'sk-proj-Hq2Wm8Zr4Tk7Lp1Nx5Bv9Cs3Dg6Fj0Yt',
  google: 'AIzaSyD8k2Lq9Wm3Rt7Vx1Zb5Nc4Hj6Pf0Gs2Ye',
  jwt: 'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhZ2VudCIsImlhdCI6MTcwMDAwMDAwMH0.c2lnbmF0dXJlLW5vdC1yZWFs',
  urlPassword: 'Tr0ub4dor-and-3',
  literalRef: 'correct-horse-battery-staple',
  privateKeyBody: 'MHcCAQEEIBkg4LVWM9nuwNSk3yByxZpYRTBnVJk5oAUYVMYnSuFRoAoGCCqGSM49',
} as const;

describe('findSecret', () => {
  it.each([
    ['aws-access-key', SECRETS.aws],
    ['high-entropy', SECRETS.awsSecret],
    ['github-token', SECRETS.github],
    ['github-token', SECRETS.githubPat],
    ['slack-token', SECRETS.slack],
    ['api-key', SECRETS.anthropic],
    ['api-key', SECRETS.openai],
    ['google-api-key', SECRETS.google],
    ['jwt', `Bearer ${SECRETS.jwt}`],
    ['private-key', '-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n'],
    ['url-credentials', `https://deploy:${SECRETS.urlPassword}@git.example.com/a.git`],
  ])('recognises %s', (kind, value) => {
    expect(findSecret(value)?.kind).toBe(kind);
  });

  it.each([
    '/etc/agentvm/credstore/orchestrator-chat-token.cred',
    'systemd-creds:/etc/agentvm/credstore/web-chat-token.cred',
    '/srv/Projects2024/AgentPool/releases/current/bin/server',
    'https://github.com/example/agentvm/.github/workflows/release.yml@refs/heads/main',
    'https://token.actions.githubusercontent.com',
    'ssh://git@github.com/example/agent.git',
    'git@github.com:example/agent.git',
    'platform-team@example.com',
    'Answers questions about the shared project files, with a task-runner and desk-lookup skill.',
    'sha256:a3f1c9d24b7e8a0f5c6d1e2b3a4f5e6d7c8b9a0f1e2d3c4b5a69788796a5b4c3',
    'https://github.com/example/agent/commit/0123456789abcdef0123456789abcdef01234567',
    'PYTHONDONTWRITEBYTECODE',
    '${CREDENTIALS_DIRECTORY}/chat-token',
  ])('does not flag %j', (value) => {
    expect(findSecret(value)).toBeUndefined();
  });

  it('reads a bare 40/64-hex value by its field: a pin under sha256/commit, a token anywhere else', () => {
    const pin = 'a3f1c9d24b7e8a0f5c6d1e2b3a4f5e6d7c8b9a0f1e2d3c4b5a69788796a5b4c3';
    expect(findSecret(pin, { field: 'sha256' })).toBeUndefined();
    expect(findSecret('0123456789abcdef0123456789abcdef01234567', { field: 'commit' })).toBeUndefined();
    expect(findSecret(pin, { field: 'AGENT_SESSION' })?.kind).toBe('high-entropy-hex');
    expect(findSecret(pin)?.kind).toBe('high-entropy-hex');
  });

  it('accepts a well-formed digest in a digest field but not elsewhere', () => {
    const integrity = 'sha512-VEiJktoY/9sTyEKbUHL/a4klMl0vr8wAELnC6kEDDNq/CWW1JclfXCax+S8yRqx+3YfAB10AOiLwW7Dxp2gAyA==';
    expect(findSecret(integrity, { digestField: true })).toBeUndefined();
    expect(findSecret(integrity)?.kind).toBe('high-entropy');
    expect(findSecret(SECRETS.github, { digestField: true })?.kind).toBe('github-token');
  });

  it('measures entropy in bits per character', () => {
    expect(shannonEntropy('aaaa')).toBe(0);
    expect(shannonEntropy('abcd')).toBe(2);
  });
});

describe('secret references', () => {
  it.each([
    'file:/etc/agentvm/secrets/x',
    'systemd-creds:/etc/agentvm/credstore/x.cred',
    'credstore:web.token',
    'env-file:/etc/agentvm/web.env#API_TOKEN',
    'vault:kv/agents/web#api-key',
  ])('parses %j', (ref) => {
    expect(parseSecretReference(ref)).toBeDefined();
  });

  it.each([
    'file:relative/x',
    'file:/',
    'systemd-creds:',
    'credstore:',
    'credstore:a/b',
    'env-file:/etc/x.env',
    'env-file:/etc/x.env#1BAD',
    'vault:#f',
    'vault:kv/x',
    'https://vault/x',
    'hunter2',
  ])('refuses %j', (ref) => {
    expect(parseSecretReference(ref)).toBeUndefined();
  });

  it('knows which env names announce secrets and which values are references', () => {
    expect(['GITHUB_TOKEN', 'DB_PASSWORD', 'OPENAI_API_KEY', 'CLIENT_SECRET', 'TOKEN'].every(isSecretEnvName)).toBe(
      true,
    );
    expect(['MAX_TOKENS', 'TOKEN_LIMIT', 'CHAT_TOKEN_FILE', 'AGENT_PROFILE', 'SECRETS_DIR'].some(isSecretEnvName)).toBe(
      false,
    );
    expect(isSecretEnvReference('${CREDENTIALS_DIRECTORY}/chat-token')).toBe(true);
    expect(isSecretEnvReference('file:/etc/agentvm/x')).toBe(true);
    expect(isSecretEnvReference('changeme')).toBe(false);
  });

  it('never quotes anything secret-looking back', () => {
    // Passwords and literal refs are secrets only by where they stand; rules never pass those fields to quote().
    const byShape = Object.entries(SECRETS).filter(([k]) => k !== 'urlPassword' && k !== 'literalRef');
    for (const [k, v] of byShape) expect(quote(v), k).toBe('the value');
    expect(quote('Xk9fQ2mZ7pL4vB8nR3tW')).toBe('the value');
    expect(quote('14.1.0')).toBe('`14.1.0`');
  });
});

describe('no diagnostic carries a secret', () => {
  it('GIVEN secrets planted across every kind of document WHEN evaluated THEN each is found and none is echoed', () => {
    const WEB_C = 'workloads/web/contract.yaml';
    const WEB_M = 'workloads/web/manifest.yaml';
    const DIG_C = 'workloads/digest/contract.yaml';
    const DIG_M = 'workloads/digest/manifest.yaml';
    const HOST = 'hosts/alpha.yaml';
    let files = edit(
      BASELINE,
      WEB_C,
      'description: Answers questions',
      `description: uses ${SECRETS.aws} to answer questions`,
    );
    files = edit(files, WEB_C, 'team: platform', `team: ${SECRETS.google}`);
    files = edit(files, WEB_C, 'version: 14.1.0', `version: ${SECRETS.github}`);
    files = edit(files, WEB_C, 'ref: env-file:/etc/agentvm/web.env#LLM_KEY', `ref: ${SECRETS.literalRef}`);
    files = edit(files, WEB_C, 'host: api.example.com', `host: '*.${SECRETS.openai}'`);
    files = edit(
      files,
      WEB_M,
      'AGENT_PROFILE: core',
      `AGENT_PROFILE: core\n        GITHUB_TOKEN: ${SECRETS.githubPat}\n        AWS_SECRET: ${SECRETS.awsSecret}\n        NOTIFY: ${SECRETS.slack}`,
    );
    files = edit(files, WEB_M, '--mode, research]', `--mode, research, '--api-key=${SECRETS.anthropic}']`);
    files = edit(
      files,
      WEB_M,
      'repo: https://git.example.com',
      `repo: https://deploy:${SECRETS.urlPassword}@git.example.com`,
    );
    files = edit(files, WEB_M, 'commit: 0123456789abcdef0123456789abcdef01234567', `commit: ${SECRETS.jwt}`);
    files = edit(files, DIG_C, 'path: projects/inbox', `path: /home/${SECRETS.openai}`);
    files = edit(files, DIG_M, 'version: 2.3.0', `version: ${SECRETS.awsSecret}`);
    files = edit(
      files,
      HOST,
      '    port: 8443\n',
      `    port: 8443\n    tls:\n      cert: file:/etc/agentvm/gate.crt\n      key: |\n        -----BEGIN PRIVATE KEY-----\n        ${SECRETS.privateKeyBody}\n        -----END PRIVATE KEY-----\n`,
    );
    files = {
      ...files,
      'workloads/digest/signing.key': `-----BEGIN EC PRIVATE KEY-----\n${SECRETS.privateKeyBody}\n-----END EC PRIVATE KEY-----\n`,
    };

    const state = stateOf(files);
    expect(state.diagnostics.filter((d) => d.severity === 'error')).toEqual([]);
    const diags = evaluatePolicy(state);
    const literals = diags.filter((d) => d.code === 'policy.secret-literal');
    const at = (file: string, needle: string) =>
      literals.some((d) => d.location?.file === file && d.location.line === lineIn(files, file, needle));
    expect(at(WEB_C, 'description:')).toBe(true);
    expect(at(WEB_C, 'team:')).toBe(true);
    expect(at(WEB_C, `version: ${SECRETS.github}`)).toBe(true);
    expect(at(WEB_C, `ref: ${SECRETS.literalRef}`)).toBe(true);
    expect(at(WEB_C, 'host:')).toBe(true);
    expect(at(WEB_M, 'GITHUB_TOKEN')).toBe(true);
    expect(at(WEB_M, 'AWS_SECRET')).toBe(true);
    expect(at(WEB_M, 'NOTIFY')).toBe(true);
    expect(at(WEB_M, '--api-key')).toBe(true);
    expect(at(WEB_M, 'repo:')).toBe(true);
    expect(at(WEB_M, 'commit:')).toBe(true);
    expect(at(DIG_C, 'path:')).toBe(true);
    expect(at(DIG_M, 'version:')).toBe(true);
    expect(at(HOST, 'key: |')).toBe(true);
    expect(at('workloads/digest/signing.key', '-----BEGIN')).toBe(true);
    // Other rules fire on the same values (unpinned commit, wildcard egress, absolute data path) and must not echo either.
    expect(diags.map((d) => d.code)).toEqual(
      expect.arrayContaining([
        'source.commit-not-pinned',
        'policy.egress-wildcard',
        'name.path-traversal',
        'source.version-not-pinned',
      ]),
    );

    const text = JSON.stringify(diags);
    for (const [name, secret] of Object.entries(SECRETS)) {
      expect(text, name).not.toContain(secret);
      const middle = secret.slice(Math.floor(secret.length / 2) - 6, Math.floor(secret.length / 2) + 6);
      expect(text, `${name} (part)`).not.toContain(middle);
    }
  });
});
