// Third-party providers (issue 3): an npm package named in agentvm.yaml `spec.providers`, installed next to the
// desired-state repository, is loaded, plans its resources, and is called by apply. Here it replaces the built-in
// `gate` provider, which agentvm.yaml must say explicitly (`replaces: gate`); without it the package is refused.

import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { agentvm, assertBuilt } from './support/cli.js';
import { gitdir, type GitDir } from './support/gitdir.js';

const PROVIDER = `
import { appendFileSync, existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
const marker = (host, address) => join(host.paths.state, 'demo-gate', address);
export default () => ({
  type: 'gate',
  addressPrefix: 'gate.',
  validate: () => ({ diagnostics: [] }),
  async read({ host, address }) {
    const exists = existsSync(marker(host, address));
    return { live: { address, provider: 'gate', exists, ...(exists ? { identity: 'on', digest: 'demo' } : {}) }, diagnostics: [] };
  },
  plan({ desired, live }) {
    if (!desired) return { action: live.exists ? 'delete' : 'noop', effect: 'none', reasons: [{ code: 'removed', message: 'gone' }], drift: [], diagnostics: [] };
    if (!live.exists) return { action: 'create', effect: 'none', reasons: [{ code: 'new', message: 'demo gate route' }], drift: [], diagnostics: [] };
    return { action: 'noop', effect: 'none', reasons: [], drift: [], diagnostics: [] };
  },
  async apply({ host, change }) {
    mkdirSync(join(host.paths.state, 'demo-gate'), { recursive: true });
    appendFileSync(marker(host, change.address), 'applied\\n');
    return { locked: { address: change.address, provider: 'gate', workload: change.workload, identity: 'on', digest: 'demo' }, diagnostics: [] };
  },
  async list() { return { owned: [], diagnostics: [] }; },
});
`;

const FILES = {
  'agentvm.yaml':
    'apiVersion: agentvm.dev/v1alpha1\nkind: Config\nmetadata:\n  name: t\nspec:\n  providers:\n    - package: agentvm-provider-demo\n      version: 1.2.3\n      replaces: gate\n',
  'hosts/h.yaml': 'apiVersion: agentvm.dev/v1alpha1\nkind: Host\nmetadata:\n  name: h\nspec:\n  workloads: [web]\n',
  'workloads/web/contract.yaml':
    'apiVersion: agentvm.dev/v1alpha1\nkind: WorkloadContract\nmetadata:\n  name: web\nspec:\n  owner: t@example.com\n  riskTier: low\n  substrate: service\n',
  'workloads/web/manifest.yaml': `apiVersion: agentvm.dev/v1alpha1\nkind: WorkloadManifest\nmetadata:\n  name: web\nspec:\n  archetype: git-release\n  source:\n    git:\n      repo: REPO\n      commit: fe0645c4528837f2588a33651153f918d89da72d\n  profiles:\n    - name: web\n      entrypoint: [python3, -m, orchestrator]\n      listen:\n        port: 8301\n  previews:\n    - name: page\n      upstream:\n        port: 8301\n      maxTtl: 1h\n`,
};

let repo: GitDir;

describe('third-party providers from agentvm.yaml', () => {
  beforeAll(async () => {
    assertBuilt();
    const bundle = join(import.meta.dirname, '..', 'examples', 'artifacts', 'orchestrator.bundle');
    repo = await gitdir({
      ...FILES,
      'workloads/web/manifest.yaml': FILES['workloads/web/manifest.yaml'].replace('REPO', bundle),
    });
    const pkg = join(repo.dir, 'node_modules', 'agentvm-provider-demo');
    mkdirSync(pkg, { recursive: true });
    writeFileSync(
      join(pkg, 'package.json'),
      JSON.stringify({ name: 'agentvm-provider-demo', version: '1.2.3', type: 'module', main: 'index.js' }),
    );
    writeFileSync(join(pkg, 'index.js'), PROVIDER);
  });
  afterAll(async () => {
    // The host root sits beside the repository (a root inside it would be part of the desired state's worktree).
    if (repo) rmSync(`${repo.dir}-root`, { recursive: true, force: true });
    await repo?.cleanup();
  });

  it('GIVEN a provider package WHEN planning and applying THEN it plans and applies its resources', async () => {
    const root = `${repo.dir}-root`;
    const plan = await agentvm(['plan', '--repo', repo.dir, '--root', root, '--json']);
    const p = JSON.parse(plan.stdout) as {
      changes: Array<{ address: string; provider: string; action: string }>;
      diagnostics: Array<{ code: string; summary: string }>;
    };
    expect(p.changes).toContainEqual(
      expect.objectContaining({ address: 'gate.web.page', provider: 'gate', action: 'create' }),
    );
    expect(p.diagnostics.filter((d) => d.code === 'provider.unavailable' && d.summary.includes('`gate`'))).toEqual([]);
    // The replacement is visible on every plan, not just when it was reviewed.
    expect(p.diagnostics.filter((d) => d.code === 'provider.replaced').map((d) => d.summary)).toEqual([
      'The built-in `gate` provider is replaced by `agentvm-provider-demo`@1.2.3.',
    ]);
    const apply = await agentvm(['apply', '--repo', repo.dir, '--root', root, '--auto-approve']);
    expect(apply.code, apply.stdout + apply.stderr).toBe(0);
    expect(readFileSync(join(root, 'var/lib/agentvm/state/demo-gate/gate.web.page'), 'utf8')).toBe('applied\n');
    const again = await agentvm(['plan', '--repo', repo.dir, '--root', root, '--json']);
    const q = JSON.parse(again.stdout) as { changes: Array<{ address: string; action: string }> };
    expect(q.changes.find((c) => c.address === 'gate.web.page')?.action).toBe('noop');
  });

  it('GIVEN the package without `replaces:` THEN it may not take over the built-in type', async () => {
    await repo.commitFiles({ 'agentvm.yaml': FILES['agentvm.yaml'].replace('      replaces: gate\n', '') });
    const r = await agentvm(['plan', '--repo', repo.dir, '--root', join(repo.dir, 'r1'), '--json']);
    expect(r.code).toBe(1);
    const d = (JSON.parse(r.stdout) as { diagnostics: Array<{ code: string; detail?: string }> }).diagnostics.find(
      (x) => x.code === 'provider.duplicate',
    );
    expect(d?.detail).toContain('replaces: gate');
    await repo.commitFiles({ 'agentvm.yaml': FILES['agentvm.yaml'] });
  });

  it('a pinned version that does not match, or a missing package, is a clear error', async () => {
    await repo.commitFiles({ 'agentvm.yaml': FILES['agentvm.yaml'].replace('1.2.3', '9.9.9') });
    const r = await agentvm(['plan', '--repo', repo.dir, '--root', join(repo.dir, 'r2'), '--json']);
    expect(r.code).toBe(1);
    expect((JSON.parse(r.stdout) as { diagnostics: Array<{ code: string }> }).diagnostics.map((d) => d.code)).toContain(
      'provider.version-mismatch',
    );
    await repo.commitFiles({
      'agentvm.yaml': FILES['agentvm.yaml'].replace('agentvm-provider-demo', 'agentvm-provider-missing'),
    });
    const m = await agentvm(['plan', '--repo', repo.dir, '--root', join(repo.dir, 'r3'), '--json']);
    expect((JSON.parse(m.stdout) as { diagnostics: Array<{ code: string }> }).diagnostics.map((d) => d.code)).toContain(
      'provider.not-installed',
    );
  });
});
