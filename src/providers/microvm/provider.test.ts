// MicrovmProvider against a temporary host root: the pure plan of job definitions and orphan runs, installing a
// definition only when its images verify, and reaping an orphan run (a real stand-in process whose owner is dead)
// with a receipt. Real VMs and namespaces: test/job-run.test.ts.

import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { DesiredResource, LiveResource, PlannedChange } from '../../model/resources.js';
import { hostPaths } from '../../model/index.js';
import type { AuditEntry } from '../../state/index.js';
import type { HostContext } from '../provider.js';
import { jobDefinitionDigest } from './job-definition.js';
import {
  createRunRecord,
  newRunId,
  processStartTicks,
  runAddress,
  runDirOf,
  vmDirOf,
  type JobRunRecord,
} from './job-registry.js';
import { MicrovmProvider } from './provider.js';
import { processesMentioning } from './teardown.js';

const sha = (text: string): string => createHash('sha256').update(text).digest('hex');

let root = '';
let host: HostContext;
let receipts: AuditEntry[] = [];
let provider: MicrovmProvider;

beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), 'agentvm-microvm-provider-'));
  host = { host: 'edge-1', root, paths: hostPaths(root), repo: root };
  receipts = [];
  provider = new MicrovmProvider({ receipts: async (_host, entry) => void receipts.push(entry) });
  mkdirSync(join(root, 'var/lib/agentvm/images'), { recursive: true });
  writeFileSync(join(root, 'var/lib/agentvm/images/vmlinuz'), 'kernel bytes');
  writeFileSync(join(root, 'var/lib/agentvm/images/root.cpio.gz'), 'rootfs bytes');
});
afterEach(() => rmSync(root, { recursive: true, force: true }));

function desired(overrides: Record<string, unknown> = {}): DesiredResource {
  const config = {
    job: 'summarize',
    kernel: { file: 'vmlinuz', sha256: sha('kernel bytes') },
    rootfs: { file: 'root.cpio.gz', sha256: sha('rootfs bytes'), format: 'initramfs' },
    command: ['/bin/summarize', '--input', '/input'],
    vcpus: 1,
    memoryMiB: 256,
    timeoutSeconds: 120,
    riskTier: 'critical',
    egress: [],
    ...overrides,
  };
  return {
    address: 'job.summarizer.summarize',
    provider: 'microvm',
    workload: 'summarizer',
    identity: `${config.kernel.sha256}/${config.rootfs.sha256}`,
    config,
    dependsOn: [],
  };
}

function change(d: DesiredResource, action: PlannedChange['action']): PlannedChange {
  return {
    address: d.address,
    provider: 'microvm',
    workload: d.workload,
    action,
    effect: 'none',
    reasons: [],
    desired: d,
    dependsOn: [],
  };
}

describe('validate', () => {
  it('GIVEN a disk rootfs without an initramfs, a path as file name and an egress wildcard THEN each is an error at the address', () => {
    const d = desired({
      rootfs: { file: '../etc/passwd', sha256: sha('x'), format: 'disk' },
      egress: [{ host: '*', port: 443 }],
    });

    const codes = provider.validate({ resource: d }).diagnostics.map((x) => `${x.code}@${x.address}`);

    expect(codes).toEqual([
      'microvm.job-invalid@job.summarizer.summarize',
      'microvm.job-invalid@job.summarizer.summarize',
      'microvm.egress-wildcard@job.summarizer.summarize',
    ]);
  });

  it('GIVEN the example job THEN it is valid', () => {
    expect(provider.validate({ resource: desired() }).diagnostics).toEqual([]);
  });
});

describe('job definitions', () => {
  it('GIVEN a new job WHEN planned, applied and read THEN create, then installed with verified images, then noop', async () => {
    const d = desired();
    const absent = (await provider.read({ host, address: d.address, desired: d })).live;
    expect(provider.plan({ address: d.address, desired: d, live: absent }).action).toBe('create');

    const applied = await provider.apply({ host, change: change(d, 'create') });

    expect(applied.diagnostics).toEqual([]);
    expect(applied.locked).toEqual({
      address: d.address,
      provider: 'microvm',
      workload: 'summarizer',
      identity: d.identity,
      digest: jobDefinitionDigest(d.config),
      attributes: { config: d.config },
    });
    const live = (await provider.read({ host, address: d.address, desired: d })).live;
    expect(live).toMatchObject({
      exists: true,
      identity: d.identity,
      digest: jobDefinitionDigest(d.config),
      attributes: { images: 'verified' },
    });
    const locked = { ...applied.locked!, commit: null, appliedAt: 'x' };
    expect(provider.plan({ address: d.address, desired: d, live, locked })).toMatchObject({
      action: 'noop',
      drift: [],
    });
    expect((await provider.list({ host })).owned).toEqual([{ address: d.address }]);
  });

  it('GIVEN an image that does not match its pin WHEN applied THEN nothing is installed and the mismatch is the error', async () => {
    writeFileSync(join(root, 'var/lib/agentvm/images/vmlinuz'), 'tampered kernel');
    const d = desired();

    const applied = await provider.apply({ host, change: change(d, 'create') });

    expect(applied.locked).toBeUndefined();
    expect(applied.diagnostics.map((x) => x.code)).toEqual(['microvm.image-digest-mismatch']);
    expect((await provider.read({ host, address: d.address })).live.exists).toBe(false);
  });

  it('GIVEN an image not delivered yet WHEN applied THEN the definition is installed with a warning, and the next plan is a noop', async () => {
    rmSync(join(root, 'var/lib/agentvm/images/root.cpio.gz'));
    const d = desired();

    const applied = await provider.apply({ host, change: change(d, 'create') });
    const read = await provider.read({ host, address: d.address, desired: d });

    expect(applied.locked?.digest).toBe(jobDefinitionDigest(d.config));
    expect(applied.diagnostics.map((x) => `${x.severity} ${x.code}`)).toEqual(['warning microvm.image-missing']);
    expect(read.live.attributes).toEqual({ images: 'missing', signatures: 'not-required' });
    expect(read.diagnostics.map((x) => `${x.severity} ${x.code}`)).toEqual(['warning microvm.image-missing']);
    expect(
      provider.plan({
        address: d.address,
        desired: d,
        live: read.live,
        locked: { ...applied.locked!, commit: null, appliedAt: 'x' },
      }),
    ).toMatchObject({ action: 'noop', drift: [] });
  });

  it('GIVEN an installed job whose image changed on the host THEN plan shows drift and an update', async () => {
    const d = desired();
    const applied = await provider.apply({ host, change: change(d, 'create') });
    writeFileSync(join(root, 'var/lib/agentvm/images/root.cpio.gz'), 'swapped rootfs');

    const read = await provider.read({ host, address: d.address, desired: d });
    const res = provider.plan({
      address: d.address,
      desired: d,
      live: read.live,
      locked: { ...applied.locked!, commit: null, appliedAt: 'x' },
    });

    expect(read.diagnostics.map((x) => `${x.severity} ${x.code}`)).toEqual(['warning microvm.image-digest-mismatch']);
    expect(res.action).toBe('update');
    expect(res.drift.map((r) => r.code)).toEqual(['live-modified']);
  });

  it('GIVEN a changed command THEN update (config-changed); other images THEN update (source-changed); gone from desired THEN delete', async () => {
    const d = desired();
    await provider.apply({ host, change: change(d, 'create') });
    const live = (await provider.read({ host, address: d.address })).live;

    expect(
      provider
        .plan({ address: d.address, desired: desired({ command: ['/bin/other'] }), live })
        .reasons.map((r) => r.code),
    ).toEqual(['config-changed']);
    const other = {
      ...desired({ kernel: { file: 'vmlinuz', sha256: sha('new kernel') } }),
      identity: `${sha('new kernel')}/${sha('rootfs bytes')}`,
    };
    expect(provider.plan({ address: d.address, desired: other, live }).reasons.map((r) => r.code)).toEqual([
      'source-changed',
    ]);
    expect(provider.plan({ address: d.address, live }).action).toBe('delete');

    await provider.apply({ host, change: { ...change(d, 'delete'), desired: undefined } });
    expect((await provider.read({ host, address: d.address })).live.exists).toBe(false);
  });
});

describe('orphan runs', () => {
  async function orphan(
    ownerPid: number,
    ownerTicks: number | null,
    deadline = '2999-01-01T00:00:00.000Z',
  ): Promise<{ record: JobRunRecord; marker: number }> {
    const id = newRunId();
    const record: JobRunRecord = {
      formatVersion: 1,
      id,
      address: 'job.summarizer.summarize',
      host: 'edge-1',
      workload: 'summarizer',
      job: 'summarize',
      owner: { pid: ownerPid, startTicks: ownerTicks },
      startedAt: new Date().toISOString(),
      deadline,
      netns: null,
      slot: null,
      vmmPid: null,
    };
    await createRunRecord(host.paths, record);
    mkdirSync(vmDirOf(host.paths, id));
    writeFileSync(join(vmDirOf(host.paths, id), 'vmlinuz'), 'scratch');
    // A stand-in VMM: its own process group, its command line mentions the run directory, as QEMU's does.
    const vmm = spawn('sh', ['-c', 'sleep 60', join(vmDirOf(host.paths, id), 'vmlinuz')], {
      detached: true,
      stdio: 'ignore',
    });
    await new Promise((resolve) => vmm.once('spawn', resolve));
    return { record, marker: vmm.pid ?? 0 };
  }

  async function deadOwner(): Promise<number> {
    const child = spawn('true');
    await new Promise((resolve) => child.on('close', resolve));
    return child.pid ?? 0;
  }

  it('GIVEN a run whose owner died WHEN planned and applied THEN it is orphan drift, a delete, and apply kills and removes it with a receipt', async () => {
    const { record, marker } = await orphan(await deadOwner(), 12345);
    const address = runAddress(record);

    const owned = (await provider.list({ host })).owned.map((o) => o.address);
    const live: LiveResource = (await provider.read({ host, address })).live;
    const planned = provider.plan({ address, live });

    expect(owned).toEqual([address]);
    expect(live).toMatchObject({ exists: true, identity: record.id, attributes: { state: 'owner-gone' } });
    expect(planned.action).toBe('delete');
    expect(planned.drift.map((r) => r.code)).toEqual(['orphan']);

    const applied = await provider.apply({
      host,
      change: {
        address,
        provider: 'microvm',
        workload: 'summarizer',
        action: 'delete',
        effect: 'none',
        reasons: planned.reasons,
        dependsOn: [],
      },
    });

    expect(applied.diagnostics).toEqual([]);
    expect(processesMentioning(runDirOf(host.paths, record.id))).toEqual([]);
    expect(existsSync(runDirOf(host.paths, record.id))).toBe(false);
    expect(receipts).toEqual([
      expect.objectContaining({ event: 'job.teardown', result: 'ok', address, host: 'edge-1' }),
    ]);
    expect(receipts[0]?.detail).toContain(`killed pid ${marker}`);
    expect(receipts[0]?.detail).toContain('(owner-gone)');
    expect((await provider.list({ host })).owned).toEqual([]);

    // Idempotent: reaping again finds nothing to do.
    expect(
      (
        await provider.apply({
          host,
          change: {
            address,
            provider: 'microvm',
            workload: 'summarizer',
            action: 'delete',
            effect: 'none',
            reasons: [],
            dependsOn: [],
          },
        })
      ).diagnostics,
    ).toEqual([]);
  });

  it('GIVEN a run with a live owner THEN it is not listed; past its deadline THEN it is an orphan', async () => {
    const running = await orphan(process.pid, processStartTicks(process.pid));
    const late = await orphan(process.pid, processStartTicks(process.pid), '2000-01-01T00:00:00.000Z');
    try {
      const owned = (await provider.list({ host })).owned.map((o) => o.address);
      expect(owned).toEqual([runAddress(late.record)]);
      const live = (await provider.read({ host, address: runAddress(late.record) })).live;
      expect(provider.plan({ address: runAddress(late.record), live }).reasons[0]?.message).toContain(
        'past its deadline',
      );
    } finally {
      for (const pid of [running.marker, late.marker]) process.kill(-pid, 'SIGKILL');
    }
  });

  it("GIVEN the audit receipt sink by default THEN the receipt lands in the host root's audit log", async () => {
    const { record } = await orphan(await deadOwner(), 1);
    const real = new MicrovmProvider();

    await real.apply({
      host,
      change: {
        address: runAddress(record),
        provider: 'microvm',
        workload: 'summarizer',
        action: 'delete',
        effect: 'none',
        reasons: [],
        dependsOn: [],
      },
    });

    const lines = readFileSync(join(host.paths.audit, 'audit.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { event: string; address: string });
    expect(lines.map((l) => `${l.event} ${l.address}`)).toEqual([`job.teardown ${runAddress(record)}`]);
  });
});
