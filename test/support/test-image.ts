// The guest image the microVM system tests boot: scripts/build-test-image.sh builds it from Debian packages (cached
// outside the clone) and prints its paths and digests. One place reads that output for every suite, and one place
// finds QEMU processes a suite started and did not reap.

import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect } from 'vitest';
import type { EphemeralVmRequest } from '../../src/providers/microvm/ephemeral-vm.js';
import { QemuDriver } from '../../src/providers/microvm/qemu.js';
import { ROOT } from './cli.js';
import { processesMentioning } from './processes.js';

export interface TestImage {
  kernel: string;
  kernelSha256: string;
  /** The busybox initramfs: the root of an initramfs job, the boot image of a disk job. */
  initrd: string;
  initrdSha256: string;
  /** The read-only ext4 test disk for `rootfs.format: disk` jobs. */
  disk: string;
  diskSha256: string;
}

/** Builds (or finds cached) the guest image; a reason string when this machine cannot. */
export function testImage(): TestImage | string {
  if (spawnSync('qemu-system-x86_64', ['--version']).status !== 0) return 'qemu-system-x86_64 is not installed';
  const built = spawnSync('scripts/build-test-image.sh', [], { cwd: ROOT, encoding: 'utf8', timeout: 300_000 });
  if (built.status !== 0)
    return `scripts/build-test-image.sh failed: ${(built.stderr || built.stdout || String(built.error)).trim()}`;
  const values = new Map(
    built.stdout
      .split('\n')
      .filter((l) => l.includes('='))
      .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
  );
  const get = (key: string): string => values.get(key) ?? '';
  const image: TestImage = {
    kernel: get('AGENTVM_KERNEL'),
    kernelSha256: get('AGENTVM_KERNEL_SHA256'),
    initrd: get('AGENTVM_INITRD'),
    initrdSha256: get('AGENTVM_INITRD_SHA256'),
    disk: get('AGENTVM_DISK'),
    diskSha256: get('AGENTVM_DISK_SHA256'),
  };
  if (Object.values(image).some((v) => v === ''))
    return `scripts/build-test-image.sh printed no complete image: ${built.stdout}`;
  return image;
}

/** QEMU processes that are children of this test process. */
export function childQemus(): string[] {
  const found: string[] = [];
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === process.pid && readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('qemu')) found.push(pid);
    } catch {
      // gone
    }
  }
  return found;
}

/**
 * Per-suite scratch space and helpers for booting `img` (call inside a describe): `request` builds a run request with
 * test defaults (TCG, 1 vCPU, 256 MiB, 30 s, a fresh run dir; `disk` adds the test disk as the root), and
 * `expectTornDown` proves a run left no directory and no process behind. The scratch dir is made in beforeAll, so a
 * skipped describe leaves nothing behind.
 */
export function microvmRuns(
  img: TestImage,
  prefix: string,
  options: { disk?: boolean } = {},
): {
  request(overrides: Partial<EphemeralVmRequest>): EphemeralVmRequest;
  expectTornDown(runDir: string): void;
  /** The suite's scratch directory (valid from beforeAll on). */
  scratchDir(): string;
} {
  let scratch = '';
  let runs = 0;
  beforeAll(() => {
    scratch = mkdtempSync(join(tmpdir(), prefix));
  });
  afterAll(() => rmSync(scratch, { recursive: true, force: true }));
  return {
    request: (overrides) => {
      runs += 1;
      return {
        kernel: { path: img.kernel, sha256: img.kernelSha256 },
        initrd: { path: img.initrd, sha256: img.initrdSha256 },
        ...(options.disk ? { disk: { path: img.disk, sha256: img.diskSha256 } } : {}),
        input: { files: {}, args: [] },
        command: 'true',
        vcpus: 1,
        memoryMiB: 256,
        timeoutMs: 30_000,
        runDir: join(scratch, `run-${runs}`),
        driver: new QemuDriver({ accel: 'tcg' }),
        ...overrides,
      };
    },
    scratchDir: () => scratch,
    expectTornDown: (runDir) => {
      expect(existsSync(runDir), `run dir ${runDir} left behind`).toBe(false);
      expect(processesMentioning(runDir)).toEqual([]);
      expect(childQemus()).toEqual([]);
    },
  };
}

/**
 * What the `job run` system suites need, checked: root (namespaces, taps), QEMU, iproute2, nftables and the guest
 * image. The image, or why this machine cannot run them.
 */
export function jobRunPrerequisites(): TestImage | string {
  if (process.getuid?.() !== 0) return 'job runs need root (network namespaces and tap devices)';
  for (const [command, flag] of [
    ['qemu-system-x86_64', '--version'],
    ['ip', '-V'],
    ['nft', '--version'],
  ] as const) {
    if (spawnSync(command, [flag]).status !== 0) return `${command} is not installed`;
  }
  return testImage();
}

/** The network namespaces `ip netns` knows. */
export function netnsNames(): string[] {
  return spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' })
    .stdout.split('\n')
    .map((l) => l.split(' ')[0] ?? '')
    .filter((n) => n !== '');
}
