// The example provider package (examples/provider-motd) adds a resource kind of its own — motd.<workload> — that
// agentvm's engine has never heard of: it plans, applies, shows in drift, is repaired and is removed, through the real
// CLI on a real git repository. Its source is type-checked against the types agentvm publishes (`agentvm/provider`,
// package.json exports), so the contract a stranger codes against is the one the built-ins obey.

import { execFile } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { agentvm, assertBuilt, ROOT } from './support/cli.js';
import { gitdir, type GitDir } from './support/gitdir.js';

const run = promisify(execFile);
const EXAMPLE = join(ROOT, 'examples', 'provider-motd');
const TEXT = 'web: ask #research before restarting';

const MANIFEST = (extensions: string) =>
  `apiVersion: agentvm.dev/v1alpha1\nkind: WorkloadManifest\nmetadata:\n  name: web\nspec:\n  archetype: git-release\n  source:\n    git:\n      repo: REPO\n      commit: fe0645c4528837f2588a33651153f918d89da72d\n  profiles:\n    - name: web\n      entrypoint: [python3, -m, orchestrator]\n${extensions}`;
const WITH_MOTD = `  extensions:\n    motd:\n      text: "${TEXT}"\n`;

const FILES = {
  '.gitignore': 'node_modules\n',
  'agentvm.yaml':
    'apiVersion: agentvm.dev/v1alpha1\nkind: Config\nmetadata:\n  name: t\nspec:\n  providers:\n    - package: agentvm-provider-motd\n      version: 1.0.0\n',
  'hosts/h.yaml': 'apiVersion: agentvm.dev/v1alpha1\nkind: Host\nmetadata:\n  name: h\nspec:\n  workloads: [web]\n',
  'workloads/web/contract.yaml':
    'apiVersion: agentvm.dev/v1alpha1\nkind: WorkloadContract\nmetadata:\n  name: web\nspec:\n  owner: t@example.com\n  riskTier: low\n  substrate: service\n',
};

interface PlanJson {
  changes: Array<{ address: string; provider: string; action: string; reasons: Array<{ code: string }> }>;
  drift: Array<{ address: string; reasons: Array<{ code: string }> }>;
  diagnostics: Array<{ code: string; severity: string; summary: string }>;
}

let repo: GitDir;
let root: string;
let bundle: string;

const plan = async (): Promise<PlanJson> => {
  const r = await agentvm(['plan', '--repo', repo.dir, '--root', root, '--json']);
  return JSON.parse(r.stdout) as PlanJson;
};
const motd = (p: PlanJson) => p.changes.find((c) => c.address === 'motd.web');
const motdFile = () => join(root, 'etc/motd.d/agentvm-web');

describe('a third-party provider package adds a resource kind (examples/provider-motd)', () => {
  beforeAll(async () => {
    assertBuilt();
    bundle = join(ROOT, 'examples', 'artifacts', 'orchestrator.bundle');
    repo = await gitdir({ ...FILES, 'workloads/web/manifest.yaml': MANIFEST(WITH_MOTD).replace('REPO', bundle) });
    root = `${repo.dir}-root`;
    cpSync(EXAMPLE, join(repo.dir, 'node_modules', 'agentvm-provider-motd'), { recursive: true });
  });
  afterAll(async () => {
    if (root) rmSync(root, { recursive: true, force: true });
    await repo?.cleanup();
  });

  it('GIVEN the example source WHEN type-checked against the published agentvm/provider types THEN it compiles clean', async () => {
    const work = mkdtempSync(join(os.tmpdir(), 'agentvm-provider-types-'));
    try {
      cpSync(join(EXAMPLE, 'index.js'), join(work, 'index.js'));
      writeFileSync(join(work, 'package.json'), JSON.stringify({ name: 'x', type: 'module' }));
      mkdirSync(join(work, 'node_modules', '@types'), { recursive: true });
      symlinkSync(ROOT, join(work, 'node_modules', 'agentvm'));
      symlinkSync(join(ROOT, 'node_modules', '@types', 'node'), join(work, 'node_modules', '@types', 'node'));
      const tsc = join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
      const flags = [
        '--noEmit',
        '--allowJs',
        '--checkJs',
        '--strict',
        '--module',
        'nodenext',
        '--moduleResolution',
        'nodenext',
        '--target',
        'es2022',
        '--types',
        'node',
        'index.js',
      ];
      const r = await run(process.execPath, [tsc, ...flags], { cwd: work }).catch(
        (err: { stdout?: string; stderr?: string }) => ({
          stdout: `${err.stdout ?? ''}${err.stderr ?? ''}`,
          failed: true,
        }),
      );
      expect(r.stdout, 'tsc output').toBe('');
      // The check has teeth: an expand that plans a non-string address is a type error.
      writeFileSync(
        join(work, 'index.js'),
        readFileSync(join(EXAMPLE, 'index.js'), 'utf8').replace('address: `${PREFIX}${w.name}`', 'address: 42'),
      );
      const broken = await run(process.execPath, [tsc, ...flags], { cwd: work }).then(
        () => '',
        (err: { stdout?: string }) => err.stdout ?? '',
      );
      expect(broken).toMatch(/index\.js\(\d+,\d+\): error TS2322/);
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
  });

  it('GIVEN a manifest block for the new kind WHEN planned THEN motd.web is a create by the package, next to the built-ins', async () => {
    const p = await plan();
    expect(p.diagnostics.filter((d) => d.severity === 'error')).toEqual([]);
    expect(motd(p)).toMatchObject({ provider: 'motd', action: 'create', reasons: [{ code: 'new' }] });
    expect(p.changes.find((c) => c.address === 'release.web')?.action).toBe('create');
    expect(p.diagnostics.filter((d) => d.code.startsWith('provider.'))).toEqual([]);
  });

  it('WHEN applied THEN the file holds the text; a second plan is a no-op', async () => {
    const a = await agentvm(['apply', '--repo', repo.dir, '--root', root, '--auto-approve']);
    expect(a.code, a.stdout + a.stderr).toBe(0);
    expect(readFileSync(motdFile(), 'utf8')).toBe(TEXT);
    expect(motd(await plan())?.action).toBe('noop');
  });

  it('WHEN the file is edited by hand THEN drift exits 2 naming motd.web, and the next apply repairs it', async () => {
    writeFileSync(motdFile(), 'tampered');
    const d = await agentvm(['drift', '--repo', repo.dir, '--root', root, '--json']);
    expect(d.code).toBe(2);
    expect((JSON.parse(d.stdout) as PlanJson).drift).toEqual([
      expect.objectContaining({ address: 'motd.web', reasons: [expect.objectContaining({ code: 'live-modified' })] }),
    ]);
    const a = await agentvm(['apply', '--repo', repo.dir, '--root', root, '--auto-approve']);
    expect(a.code, a.stdout + a.stderr).toBe(0);
    expect(readFileSync(motdFile(), 'utf8')).toBe(TEXT);
  });

  it('WHEN the block is removed from the manifest THEN plan deletes motd.web and apply removes the file', async () => {
    await repo.commitFiles({ 'workloads/web/manifest.yaml': MANIFEST('').replace('REPO', bundle) });
    expect(motd(await plan())?.action).toBe('delete');
    const a = await agentvm(['apply', '--repo', repo.dir, '--root', root, '--auto-approve']);
    expect(a.code, a.stdout + a.stderr).toBe(0);
    expect(existsSync(motdFile())).toBe(false);
    expect(motd(await plan())).toBeUndefined();
  });
});
