// Job definitions with a disk root (`rootfs.format: disk` + `initramfs`): the config check, identity, image
// verification and signature cover over three images, and the provider installing one. Real boots of disk jobs:
// test/microvm-disk.test.ts and test/job-run.test.ts.

import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { PlannedChange } from '../../model/resources.js';
import { hostPaths } from '../../model/index.js';
import type { HostContext } from '../provider.js';
import {
  jobIdentity,
  parseJobConfig,
  pinnedImageBytes,
  signaturesCoverPins,
  verifyImages,
  type JobConfig,
} from './job-definition.js';
import { MicrovmProvider } from './provider.js';

const sha = (text: string): string => createHash('sha256').update(text).digest('hex');

function diskJob(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    job: 'summarize',
    kernel: { file: 'vmlinuz', sha256: sha('kernel bytes') },
    rootfs: { file: 'root.ext4', sha256: sha('disk bytes'), format: 'disk' },
    initramfs: { file: 'boot.cpio.gz', sha256: sha('initramfs bytes') },
    command: ['/bin/summarize'],
    vcpus: 1,
    memoryMiB: 256,
    timeoutSeconds: 120,
    riskTier: 'low',
    egress: [],
    ...overrides,
  };
}

describe('parseJobConfig with a disk root', () => {
  it('GIVEN format disk with an initramfs THEN the config carries the disk rootfs and the initramfs', () => {
    const { config, diagnostics } = parseJobConfig(diskJob());

    expect(diagnostics).toEqual([]);
    expect(config?.rootfs).toEqual({ file: 'root.ext4', sha256: sha('disk bytes'), format: 'disk' });
    expect(config?.initramfs).toEqual({ file: 'boot.cpio.gz', sha256: sha('initramfs bytes') });
  });

  it('GIVEN format disk without an initramfs THEN it is refused at $.spec.jobs[].initramfs', () => {
    const { config, diagnostics } = parseJobConfig(diskJob({ initramfs: undefined }), 'job.w.summarize');

    expect(config).toBeUndefined();
    expect(diagnostics.map((d) => [d.code, d.path, d.address])).toEqual([
      ['microvm.job-invalid', '$.spec.jobs[].initramfs', 'job.w.summarize'],
    ]);
    expect(diagnostics[0]?.summary).toMatch(/format: disk.*needs an `initramfs`/);
  });

  it('GIVEN an initramfs rootfs that also names an initramfs THEN it is refused at $.spec.jobs[].initramfs', () => {
    const { config, diagnostics } = parseJobConfig(
      diskJob({ rootfs: { file: 'root.cpio.gz', sha256: sha('r'), format: 'initramfs' } }),
    );

    expect(config).toBeUndefined();
    expect(diagnostics.map((d) => [d.code, d.path])).toEqual([['microvm.job-invalid', '$.spec.jobs[].initramfs']]);
  });

  it('GIVEN no format and no initramfs THEN it is an initramfs job as before, with no initramfs key', () => {
    const { config, diagnostics } = parseJobConfig(
      diskJob({ rootfs: { file: 'root.cpio.gz', sha256: sha('r') }, initramfs: undefined }),
    );

    expect(diagnostics).toEqual([]);
    expect(config?.rootfs.format).toBe('initramfs');
    expect(config !== undefined && 'initramfs' in config).toBe(false);
  });

  it('GIVEN a disk job whose initramfs says it is a disk THEN that is refused at its format', () => {
    const { diagnostics } = parseJobConfig(
      diskJob({ initramfs: { file: 'boot.cpio.gz', sha256: sha('i'), format: 'disk' } }),
    );

    expect(diagnostics.map((d) => d.path)).toEqual(['$.spec.jobs[].initramfs.format']);
  });

  it('GIVEN a disk job whose initramfs is a path with a bad pin THEN both fields are errors', () => {
    const { diagnostics } = parseJobConfig(diskJob({ initramfs: { file: '../boot', sha256: 'nope' } }));

    expect(diagnostics.map((d) => d.path)).toEqual(['$.spec.jobs[].initramfs.file', '$.spec.jobs[].initramfs.sha256']);
  });
});

describe('identity and signature cover', () => {
  const config = parseJobConfig(diskJob()).config as JobConfig;

  it('GIVEN a disk job THEN its identity names all three images; an initramfs job keeps the two-image identity', () => {
    expect(jobIdentity(config)).toBe(`${sha('kernel bytes')}/${sha('disk bytes')}/${sha('initramfs bytes')}`);
    expect(jobIdentity({ kernel: config.kernel, rootfs: { ...config.rootfs, format: 'initramfs' } })).toBe(
      `${sha('kernel bytes')}/${sha('disk bytes')}`,
    );
  });

  it('GIVEN verified signatures of kernel and rootfs only THEN a disk job is not covered; with the initramfs too THEN it is', () => {
    const two = { kernel: config.kernel.sha256, rootfs: config.rootfs.sha256 };
    const unsigned = diskJob() as Record<string, unknown>;
    expect(signaturesCoverPins({ config: unsigned, signaturesVerified: two }, config)).toBe(false);
    expect(
      signaturesCoverPins({ config: unsigned, signaturesVerified: { ...two, initramfs: sha('other') } }, config),
    ).toBe(false);
    expect(
      signaturesCoverPins(
        { config: unsigned, signaturesVerified: { ...two, initramfs: config.initramfs?.sha256 ?? '' } },
        config,
      ),
    ).toBe(true);
    // No record: covered only when the job signs none of its images (a record deleted by hand is not "not required").
    expect(signaturesCoverPins({ config: unsigned }, config)).toBe(true);
    const signed = { ...unsigned, kernel: { ...(unsigned.kernel as object), bundle: 'kernel.sigstore.json' } };
    expect(signaturesCoverPins({ config: signed }, config)).toBe(false);
  });
});

describe('images of a disk job on the host', () => {
  let root = '';
  let host: HostContext;
  const images = (): string => join(root, 'var/lib/agentvm/images');
  beforeEach(() => {
    root = mkdtempSync(join(tmpdir(), 'agentvm-job-definition-'));
    host = { host: 'edge-1', root, paths: hostPaths(root), repo: root };
    mkdirSync(images(), { recursive: true });
    writeFileSync(join(images(), 'vmlinuz'), 'kernel bytes');
    writeFileSync(join(images(), 'root.ext4'), 'disk bytes');
    writeFileSync(join(images(), 'boot.cpio.gz'), 'initramfs bytes');
  });
  afterEach(() => rmSync(root, { recursive: true, force: true }));

  it('GIVEN an altered initramfs THEN verification names it, and only the other two images are signature material', async () => {
    writeFileSync(join(images(), 'boot.cpio.gz'), 'tampered');
    const config = parseJobConfig(diskJob()).config as JobConfig;

    const verified = await verifyImages(host, config);
    const pinned = await pinnedImageBytes(host, config);

    expect(verified.status).toBe('mismatch');
    expect(verified.diagnostics.map((d) => d.summary)).toEqual([
      expect.stringMatching(/^The initramfs image .*boot\.cpio\.gz has sha256/),
    ]);
    expect(pinned.map((p) => p.name)).toEqual(['kernel', 'rootfs']);
  });

  it('GIVEN a signed disk job WHEN applied THEN all three images go to the signature check and are recorded as verified', async () => {
    const config = diskJob();
    const provider = new MicrovmProvider({ receipts: async () => {} });
    const address = 'job.summarizer.summarize';
    const resource = { address, provider: 'microvm', workload: 'summarizer', identity: '', config, dependsOn: [] };
    const change: PlannedChange = {
      address,
      provider: 'microvm',
      workload: 'summarizer',
      action: 'create',
      effect: 'none',
      reasons: [],
      desired: resource,
      dependsOn: [],
    };
    const checked: Array<[string | undefined, string]> = [];

    const applied = await provider.apply({
      host,
      change,
      verifyArtifact: async (bytes, artifact) => {
        checked.push([artifact, Buffer.from(bytes).toString()]);
        return [];
      },
    });

    expect(applied.diagnostics).toEqual([]);
    expect(checked).toEqual([
      ['kernel', 'kernel bytes'],
      ['rootfs', 'disk bytes'],
      ['initramfs', 'initramfs bytes'],
    ]);
    const installed = JSON.parse(
      readFileSync(join(root, 'var/lib/agentvm/jobs/summarizer/summarize.json'), 'utf8'),
    ) as { identity: string; signaturesVerified: Record<string, string> };
    expect(installed.signaturesVerified).toEqual({
      kernel: sha('kernel bytes'),
      rootfs: sha('disk bytes'),
      initramfs: sha('initramfs bytes'),
    });
    expect(installed.identity).toBe(`${sha('kernel bytes')}/${sha('disk bytes')}/${sha('initramfs bytes')}`);
  });
});

describe('parseJobConfig with data grants and declared programs (ADR 0024, 0022 "Jobs")', () => {
  it('GIVEN none THEN the job has no grants and no programs, under the default data root', () => {
    const { config } = parseJobConfig(diskJob());

    expect(config).toMatchObject({ data: [], dataRoot: '/srv/agentvm/data', programs: [] });
  });

  it('GIVEN grants, a data root and a program THEN the config carries them', () => {
    const program = { name: 'jq', path: '/usr/bin/jq', sha256: sha('jq') };
    const { config, diagnostics } = parseJobConfig(
      diskJob({ data: [{ path: 'p/shared', access: 'read-only' }], dataRoot: '/data', programs: [program] }),
    );

    expect(diagnostics).toEqual([]);
    expect(config).toMatchObject({
      data: [{ path: 'p/shared', access: 'read-only' }],
      dataRoot: '/data',
      programs: [program],
    });
  });

  it.each([
    [{ data: [{ path: '../etc', access: 'read-only' }] }, '$.spec.data'],
    [{ data: [{ path: 'p', access: 'write' }] }, '$.spec.data'],
    [{ dataRoot: 'relative' }, '$.spec.data.root'],
    [{ programs: [{ name: 'x', path: '/x', sha256: 'nope' }] }, '$.spec.tools'],
  ])('GIVEN %j THEN it is refused at %s', (over, path) => {
    const { config, diagnostics } = parseJobConfig(diskJob(over));

    expect(config).toBeUndefined();
    expect(diagnostics.map((d) => [d.code, d.path])).toEqual([['microvm.job-invalid', path]]);
  });
});
