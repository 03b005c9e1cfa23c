// The guest image the microVM system tests boot: scripts/build-test-image.sh builds it from Debian packages (cached
// outside the clone) and prints its paths and digests. One place reads that output for every suite, and one place
// finds QEMU processes a suite started and did not reap.

import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { ROOT } from './cli.js';

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
  if (built.status !== 0) return `scripts/build-test-image.sh failed: ${(built.stderr || built.stdout || String(built.error)).trim()}`;
  const values = new Map(built.stdout.split('\n').filter((l) => l.includes('=')).map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
  const get = (key: string): string => values.get(key) ?? '';
  const image: TestImage = {
    kernel: get('AGENTVM_KERNEL'),
    kernelSha256: get('AGENTVM_KERNEL_SHA256'),
    initrd: get('AGENTVM_INITRD'),
    initrdSha256: get('AGENTVM_INITRD_SHA256'),
    disk: get('AGENTVM_DISK'),
    diskSha256: get('AGENTVM_DISK_SHA256'),
  };
  if (Object.values(image).some((v) => v === '')) return `scripts/build-test-image.sh printed no complete image: ${built.stdout}`;
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
