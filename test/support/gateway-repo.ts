// A desired-state repository for the gateway system tests (gateway-e2e, canary, rehearse): real git commits of
// workloads built from the bundled artifacts — archetype A (`orchestrator`, examples/artifacts/orchestrator.bundle,
// v1 and v2, each with its signature) and archetype B (`agent-pool`, the npm tarball) — on one host `gw` whose units
// run in user scope, plus a host root whose secrets belong to the account of a real user manager (systemd-user.ts).
// The CLI runs as root on behalf of that account (AGENTVM_SYSTEMD_USER), the way an operator drives a service
// account's gateways.
// Paths are `<tmpdir>/agentvm-<name>-<pid>`, not mkdtemp names: the contracts carry the secrets' paths, and a
// mixed-case random suffix there trips policy.secret-literal's high-entropy check.

import { chmodSync, chownSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { get } from 'node:http';
import { createServer } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { verifyUnits } from '../../src/providers/systemd/index.js';
import { agentvm, ROOT, type CliResult } from './cli.js';
import { gitdir, type FileMap, type GitDir } from './gitdir.js';
import type { UserManager } from './systemd-user.js';

export const ARTIFACTS = path.join(ROOT, 'examples/artifacts');
export const V1 = 'fe0645c4528837f2588a33651153f918d89da72d';
export const V2 = '7e6cab4322ce8353d0750de9a4b10ceba66bf3ac';
export const POOL_INTEGRITY =
  'sha512-ScissILtjOHpRN92+5y6NhmYVLbCwwaGOvKjZvykyhYPuq1+vfR76qiCHFxtsYNtoPEnpuaS/n3332GlFw6yxQ==';
const KEY = readFileSync(path.join(ROOT, 'examples/keys/example-signing.pub.pem'), 'utf8');

export type Tier = 'low' | 'moderate' | 'high' | 'critical';

export interface ProfileSpec {
  name: string;
  port: number;
  env?: Record<string, string>;
  timeoutSeconds?: number;
}

export interface WorkloadSpec {
  tier: Tier;
  profiles: ProfileSpec[];
  canary?: { profile: string; soakSeconds: number };
}

export interface OrchestratorSpec extends WorkloadSpec {
  commit: typeof V1 | typeof V2;
}

export interface GatewayRepo {
  base: string;
  root: string;
  repo: GitDir;
  secretsDir: string;
  /** Environment for the CLI: act on the harness account's user manager. */
  env: Record<string, string>;
  /** Runs `agentvm <args>` with --root (and --repo/--host where the command takes them). */
  cli(args: string[], opts?: { timeoutMs?: number }): Promise<CliResult>;
  cleanup(): Promise<void>;
}

function yamlEnv(env: Record<string, string>): string {
  return Object.entries(env)
    .map(([k, v]) => `        ${k}: ${JSON.stringify(v)}\n`)
    .join('');
}

function profilesYaml(
  profiles: ProfileSpec[],
  base: (p: ProfileSpec) => Record<string, string>,
  entrypoint: string,
): string {
  return profiles
    .map(
      (p) =>
        `    - name: ${p.name}\n      entrypoint: ${entrypoint}\n      env:\n${yamlEnv({ ...base(p), ...p.env })}      listen:\n        port: ${p.port}\n      health:\n        path: /healthz\n        timeoutSeconds: ${p.timeoutSeconds ?? 20}\n`,
    )
    .join('');
}

function canaryYaml(spec: WorkloadSpec): string {
  return spec.canary
    ? `  canary:\n    profile: ${spec.canary.profile}\n    soakSeconds: ${spec.canary.soakSeconds}\n`
    : '';
}

/** workloads/orchestrator/*: archetype A at `commit`, signed (v1 or v2 bundle), one secret. */
export function orchestratorFiles(spec: OrchestratorSpec, secretsDir: string): FileMap {
  const bundle = spec.commit === V1 ? 'orchestrator-v1.sigstore.json' : 'orchestrator-v2.sigstore.json';
  return {
    'workloads/orchestrator/contract.yaml': `apiVersion: agentvm.dev/v1alpha1\nkind: WorkloadContract\nmetadata:\n  name: orchestrator\nspec:\n  owner: research-team@example.com\n  riskTier: ${spec.tier}\n  substrate: service\n  secrets:\n    - name: llm-api-key\n      ref: file:${secretsDir}/llm-api-key\n`,
    'workloads/orchestrator/manifest.yaml': `apiVersion: agentvm.dev/v1alpha1\nkind: WorkloadManifest\nmetadata:\n  name: orchestrator\nspec:\n  archetype: git-release\n  source:\n    git:\n      repo: ${ARTIFACTS}/orchestrator.bundle\n      commit: ${spec.commit}\n  signature:\n    bundle: release.sigstore.json\n    key: release-signing.pub.pem\n  profiles:\n${profilesYaml(spec.profiles, (p) => ({ AGENT_PROFILE: p.name, AGENT_LISTEN_PORT: String(p.port), AGENT_REQUIRED_CREDENTIALS: 'llm-api-key', PYTHONDONTWRITEBYTECODE: '1' }), '[python3, -m, orchestrator]')}${canaryYaml(spec)}`,
    'workloads/orchestrator/release.sigstore.json': readFileSync(path.join(ARTIFACTS, bundle), 'utf8'),
    'workloads/orchestrator/release-signing.pub.pem': KEY,
  };
}

/** workloads/agent-pool/*: archetype B, the signed agent-pool 1.0.0 tarball, one secret. */
export function poolFiles(spec: WorkloadSpec, secretsDir: string): FileMap {
  return {
    'workloads/agent-pool/contract.yaml': `apiVersion: agentvm.dev/v1alpha1\nkind: WorkloadContract\nmetadata:\n  name: agent-pool\nspec:\n  owner: platform-team@example.com\n  riskTier: ${spec.tier}\n  substrate: service\n  tools:\n    - name: wordcount\n      version: 1.0.0\n  secrets:\n    - name: pool-token\n      ref: file:${secretsDir}/pool-token\n`,
    'workloads/agent-pool/manifest.yaml': `apiVersion: agentvm.dev/v1alpha1\nkind: WorkloadManifest\nmetadata:\n  name: agent-pool\nspec:\n  archetype: package-install\n  source:\n    package:\n      name: agent-pool\n      version: 1.0.0\n      integrity: ${POOL_INTEGRITY}\n      tarball: ${ARTIFACTS}/agent-pool-1.0.0.tgz\n  signature:\n    bundle: release.sigstore.json\n    key: release-signing.pub.pem\n  profiles:\n${profilesYaml(spec.profiles, (p) => ({ AGENT_PROFILE: p.name, AGENT_LISTEN_PORT: String(p.port), AGENT_POOL_SIZE: '1', AGENT_REQUIRED_CREDENTIALS: 'pool-token' }), '[node, server.js]')}${canaryYaml(spec)}`,
    'workloads/agent-pool/release.sigstore.json': readFileSync(
      path.join(ARTIFACTS, 'agent-pool-1.0.0.sigstore.json'),
      'utf8',
    ),
    'workloads/agent-pool/release-signing.pub.pem': KEY,
  };
}

export function hostFile(workloads: string[]): FileMap {
  return {
    'hosts/gw.yaml': `apiVersion: agentvm.dev/v1alpha1\nkind: Host\nmetadata:\n  name: gw\nspec:\n  workloads:\n${workloads.map((w) => `    - ${w}\n`).join('')}  systemd:\n    scope: user\n`,
  };
}

/** `agentvm.yaml` that tightens the tier table (e.g. `{ moderate: { canary: true } }`). */
export function configFile(tiers: Record<string, Record<string, boolean>>): FileMap {
  const body = Object.entries(tiers)
    .map(
      ([t, c]) =>
        `      ${t}:\n${Object.entries(c)
          .map(([k, v]) => `        ${k}: ${v}\n`)
          .join('')}`,
    )
    .join('');
  return {
    'agentvm.yaml': `apiVersion: agentvm.dev/v1alpha1\nkind: Config\nmetadata:\n  name: gateway-tests\nspec:\n  policy:\n    tiers:\n${body}`,
  };
}

/**
 * A host root under `<tmpdir>/agentvm-<name>-<pid>` (reachable by the manager's account: the units read their
 * release dirs there), the account's secrets in it, and the repository from `files(secretsDir)`.
 */
export async function gatewayRepo(
  name: string,
  m: UserManager,
  files: (secretsDir: string) => FileMap,
): Promise<GatewayRepo> {
  const base = path.join(os.tmpdir(), `agentvm-${name}-${process.pid}`);
  rmSync(base, { recursive: true, force: true });
  mkdirSync(base, { mode: 0o755 });
  chmodSync(base, 0o755);
  const root = path.join(base, 'root');
  const secretsDir = path.join(root, 'etc/agentvm/secrets');
  mkdirSync(secretsDir, { recursive: true, mode: 0o755 });
  for (const [secret, value] of [
    ['llm-api-key', 'llm-secret-1'],
    ['pool-token', 'pool-secret-1'],
  ] as const) {
    const file = path.join(secretsDir, secret);
    writeFileSync(file, value, { mode: 0o400 });
    chownSync(file, m.uid, m.gid);
  }
  const repo = await gitdir(files(secretsDir));
  const env = { AGENTVM_SYSTEMD_USER: m.user };
  const withRepo = new Set(['plan', 'apply', 'drift', 'validate', 'rehearse']);
  return {
    base,
    root,
    repo,
    secretsDir,
    env,
    cli: (args, opts = {}) => {
      const extra = ['--root', root, ...(withRepo.has(args[0]!) ? ['--repo', repo.dir, '--host', 'gw'] : [])];
      return agentvm([...args, ...extra], { env, timeoutMs: opts.timeoutMs ?? 120_000 });
    },
    cleanup: async () => {
      rmSync(base, { recursive: true, force: true });
      await repo.cleanup();
    },
  };
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

export function getJson(
  port: number,
  urlPath = '/healthz',
): Promise<{ status: number; body: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const req = get({ host: '127.0.0.1', port, path: urlPath, timeout: 5_000 }, (res) => {
      let data = '';
      res.setEncoding('utf8').on('data', (d: string) => {
        data += d;
      });
      res.on('end', () =>
        resolve({ status: res.statusCode ?? 0, body: JSON.parse(data || '{}') as Record<string, unknown> }),
      );
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
  });
}

/** MainPID once the process has exec'd (Type=simple: until exec the main process is systemd's `(prog)` child). */
export async function execdPid(m: UserManager, unit: string): Promise<number> {
  for (let i = 0; i < 500; i++) {
    const pid = await m.mainPid(unit);
    let cmdline = '';
    try {
      cmdline = pid > 0 ? readFileSync(`/proc/${pid}/cmdline`, 'utf8') : '';
    } catch {
      cmdline = '';
    }
    if (cmdline !== '' && !cmdline.startsWith('(')) return pid;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`${unit} has no exec'd main process`);
}

/** `systemd-analyze verify` of every gateway file in the manager's unit dir (user scope); [] when all pass. */
export async function verifyUnitDir(m: UserManager): Promise<unknown[]> {
  const files = [
    { name: 'agent-gateway@.service', text: readFileSync(path.join(m.unitDir, 'agent-gateway@.service'), 'utf8') },
  ];
  for (const e of readdirSync(m.unitDir).filter((d) => /^agent-gateway@.+\.service\.d$/.test(d))) {
    for (const f of readdirSync(path.join(m.unitDir, e)))
      files.push({ name: `${e}/${f}`, text: readFileSync(path.join(m.unitDir, e, f), 'utf8') });
  }
  return verifyUnits(files, { scope: 'user' });
}

export function json<T>(text: string): T {
  return JSON.parse(text) as T;
}
