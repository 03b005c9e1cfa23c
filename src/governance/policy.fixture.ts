// Test data for governance: a clean desired-state repository as an inline file map (one `moderate` service with
// a keyless signature, one `high` Tier-2 job fed untrusted email, its release and both images key-signed), and the helpers tests use to break it exactly
// once. No git: the map goes straight into buildDesiredState.

import { buildDesiredState, type DesiredState } from '../contracts/desired-state.js';

export type FileMap = Readonly<Record<string, string>>;

const HEX64_A = 'a3f1c9d24b7e8a0f5c6d1e2b3a4f5e6d7c8b9a0f1e2d3c4b5a69788796a5b4c3';
const HEX64_B = '5d41402abc4b2a76b9719d911017c5925d41402abc4b2a76b9719d911017c592';
const HEX64_C = '9e107d9d372bb6826bd81d3542a419d69e107d9d372bb6826bd81d3542a419d6';
const INTEGRITY = 'sha512-VEiJktoY/9sTyEKbUHL/a4klMl0vr8wAELnC6kEDDNq/CWW1JclfXCax+S8yRqx+3YfAB10AOiLwW7Dxp2gAyA==';

export const BASELINE: FileMap = {
  'agentvm.yaml': `apiVersion: agentvm.dev/v1alpha1
kind: Config
metadata:
  name: fleet
spec:
  policy:
    minimumTier: low
`,
  'hosts/alpha.yaml': `apiVersion: agentvm.dev/v1alpha1
kind: Host
metadata:
  name: alpha
spec:
  workloads: [web, digest]
  systemd:
    scope: user
  gate:
    address: 127.0.0.1
    port: 8443
`,
  'workloads/web/contract.yaml': `apiVersion: agentvm.dev/v1alpha1
kind: WorkloadContract
metadata:
  name: web
  description: Answers questions about the shared project files.
  labels:
    team: platform
spec:
  owner: platform-team@example.com
  riskTier: moderate
  substrate: service
  tools:
    - name: ripgrep
      version: 14.1.0
    - name: jq
      sha256: ${HEX64_A}
  egress:
    - host: api.example.com
      port: 443
  secrets:
    - name: chat-token
      ref: systemd-creds:/etc/agentvm/credstore/web-chat-token.cred
    - name: llm-key
      ref: env-file:/etc/agentvm/web.env#LLM_KEY
  data:
    - path: projects/shared
      access: read-only
`,
  'workloads/web/manifest.yaml': `apiVersion: agentvm.dev/v1alpha1
kind: WorkloadManifest
metadata:
  name: web
spec:
  archetype: git-release
  source:
    git:
      repo: https://git.example.com/agents/web.git
      commit: 0123456789abcdef0123456789abcdef01234567
      subdir: services/web
  signature:
    bundle: web.sigstore.json
    identity: https://github.com/example/web/.github/workflows/release.yml@refs/heads/main
    issuer: https://token.actions.githubusercontent.com
  profiles:
    - name: web-core
      entrypoint: [python3, -m, web]
      env:
        AGENT_PROFILE: core
        CHAT_TOKEN_FILE: \${CREDENTIALS_DIRECTORY}/chat-token
        LLM_API_KEY: \${CREDENTIALS_DIRECTORY}/llm-key
      listen:
        port: 8301
      health:
        path: /healthz
    - name: web-research
      entrypoint: [python3, -m, web, --mode, research]
      listen:
        port: 8302
  previews:
    - name: web-ui
      upstream:
        port: 8301
      maxTtl: 30m
      grantees: [dev@example.com]
`,
  'workloads/web/web.sigstore.json': '{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json"}\n',
  'workloads/digest/contract.yaml': `apiVersion: agentvm.dev/v1alpha1
kind: WorkloadContract
metadata:
  name: digest
spec:
  owner: ops@example.com
  riskTier: high
  substrate: job
  tools:
    - name: pandoc
      version: 3.1.11
  untrustedInputs: [email, external-files]
  secrets:
    - name: mail-password
      ref: env-file:/etc/agentvm/digest.env#MAIL_PASSWORD
  data:
    - path: projects/inbox
      access: read-write
`,
  'workloads/digest/manifest.yaml': `apiVersion: agentvm.dev/v1alpha1
kind: WorkloadManifest
metadata:
  name: digest
spec:
  archetype: package-install
  source:
    package:
      name: '@example/digest'
      version: 2.3.0
      integrity: ${INTEGRITY}
      tarball: /srv/agentvm/packages/digest-2.3.0.tgz
  signature:
    bundle: digest-2.3.0.sigstore.json
    key: release-signing.pub.pem
  jobs:
    - name: summarize
      kernel:
        file: vmlinuz-6.1
        sha256: ${HEX64_B}
        bundle: vmlinuz-6.1.sigstore.json
      rootfs:
        file: digest-rootfs.cpio
        sha256: ${HEX64_C}
        format: initramfs
        bundle: digest-rootfs.sigstore.json
      command: [/usr/bin/digest, --inbox, /data/inbox]
      timeoutSeconds: 600
`,
  'workloads/digest/digest-2.3.0.sigstore.json': '{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json"}\n',
  'workloads/digest/vmlinuz-6.1.sigstore.json': '{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json"}\n',
  'workloads/digest/digest-rootfs.sigstore.json': '{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json"}\n',
  'workloads/digest/release-signing.pub.pem':
    '-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEdemoKeyOnlyForTestsNotARealKeyAAAA\n-----END PUBLIC KEY-----\n',
};

export function stateOf(files: FileMap): DesiredState {
  return buildDesiredState({
    repo: '/x',
    ref: 'HEAD',
    commit: '0'.repeat(40),
    uncommitted: false,
    files: Object.entries(files)
      .map(([path, text]) => ({ path, text }))
      .sort((a, b) => (a.path < b.path ? -1 : 1)),
    diagnostics: [],
  });
}

/** `files` with `from` replaced by `to` in `path`; `from` must occur exactly once, so a test breaks one thing. */
export function edit(files: FileMap, path: string, from: string, to: string): Record<string, string> {
  const text = files[path];
  if (text === undefined) throw new Error(`fixture has no ${path}`);
  const at = text.indexOf(from);
  if (at < 0 || text.indexOf(from, at + 1) >= 0)
    throw new Error(`${JSON.stringify(from)} must occur exactly once in ${path}`);
  return { ...files, [path]: text.slice(0, at) + to + text.slice(at + from.length) };
}

/** 1-based line of the first occurrence of `needle` in `files[path]`. */
export function lineIn(files: FileMap, path: string, needle: string): number {
  const text = files[path] ?? '';
  const at = text.indexOf(needle);
  if (at < 0) throw new Error(`${JSON.stringify(needle)} not in ${path}`);
  return text.slice(0, at).split('\n').length;
}
