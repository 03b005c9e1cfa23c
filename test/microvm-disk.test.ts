// System test of `rootfs.format: disk` jobs: boots REAL QEMU microVMs (TCG) whose root filesystem is the read-only
// ext4 test disk that scripts/build-test-image.sh builds, with its initramfs as the boot image (it loads virtio_blk,
// mounts the disk and runs the job chrooted in it). Proves teardown by scanning /proc and the run directory.
// Needs qemu-system-x86, busybox-static and e2fsprogs; without them it fails under CI=true and skips otherwise.

import { spawnSync } from 'node:child_process';
import { copyFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runEphemeralVm } from '../src/providers/microvm/ephemeral-vm.js';
import { microvmRuns, testImage, type TestImage } from './support/test-image.js';

const HOW_TO = 'Install with: apt-get install qemu-system-x86 busybox-static e2fsprogs && scripts/build-test-image.sh';
const inCi = process.env.CI === 'true';
/** What scripts/build-test-image.sh writes into the test disk's /etc/agentvm-disk. */
const MARKER = 'agentvm test disk v1';

const image = testImage();
const missing = typeof image === 'string' ? image : undefined;
if (missing !== undefined && !inCi) console.warn(`microvm-disk: skipping: ${missing}. ${HOW_TO}`);

describe('microVM disk root: available in CI', () => {
  it.runIf(inCi)('qemu and the test disk are available on this machine', () => {
    expect(missing, `${missing ?? ''}. ${HOW_TO}`).toBeUndefined();
  });
});

describe.skipIf(missing !== undefined)('disk-root microVM job (real QEMU, TCG)', () => {
  const img = image as TestImage;
  const { request, expectTornDown, scratchDir } = microvmRuns(img, 'agentvm-microvm-disk-test-', { disk: true });

  it('GIVEN a disk job WHEN it runs THEN it runs in the disk root (reads its marker), prints, and returns its exit code and a result file', async () => {
    const req = request({
      input: { files: { 'in.txt': Buffer.from('input from the host\n') }, args: ['a1'] },
      command: [
        'echo "marker=[$(cat /etc/agentvm-disk)] pwd=[$(pwd)] arg=[$1] in=[$(cat in.txt)]"',
        // Only the disk root has /etc/agentvm-disk; the initramfs has /init, which the chroot must hide.
        'test -e /init && echo "initramfs visible"',
        'grep -q " / ext4 ro" /proc/mounts && echo "root is ro ext4"',
        'echo "scratch" > /tmp/scratch && cat /tmp/scratch',
        'cp /etc/agentvm-disk "$AGENTVM_OUT/marker.txt"',
        'exit 7',
      ].join('\n'),
    });

    const result = await runEphemeralVm(req);

    expect(result.diagnostics).toEqual([]);
    expect(result.exitCode).toBe(7);
    expect(result.console).toContain(`marker=[${MARKER}] pwd=[/job/in] arg=[a1] in=[input from the host]\n`);
    expect(result.console).not.toContain('initramfs visible');
    expect(result.console).toContain('root is ro ext4\n');
    expect(result.console).toContain('scratch\n');
    expect(Object.keys(result.resultFiles)).toEqual(['marker.txt']);
    expect(result.resultFiles['marker.txt']?.toString()).toBe(`${MARKER}\n`);
    expect(result.bootMs).toBeGreaterThan(0);
    expectTornDown(req.runDir);
  });

  it('GIVEN a disk job that writes to the disk root WHEN it runs THEN the write fails (read-only) and the image is unchanged', async () => {
    const req = request({
      command: [
        'if echo tampered > /etc/agentvm-disk; then echo "write to disk: ok"; else echo "write to disk: refused"; fi',
        'if touch /new-file; then echo "create on disk: ok"; else echo "create on disk: refused"; fi',
        'cat /etc/agentvm-disk',
      ].join('\n'),
    });

    const result = await runEphemeralVm(req);

    expect(result.diagnostics).toEqual([]);
    expect(result.exitCode).toBe(0);
    expect(result.console).toContain('write to disk: refused\n');
    expect(result.console).toContain('create on disk: refused\n');
    expect(result.console).toContain(`${MARKER}\n`);
    expect(result.console).toMatch(/Read-only file system/);
    const digest = spawnSync('sha256sum', [img.disk], { encoding: 'utf8' }).stdout.split(' ')[0];
    expect(digest).toBe(img.diskSha256);
    expectTornDown(req.runDir);
  });

  it('GIVEN a disk image that does not match its pin WHEN a run is asked for THEN nothing boots and the mismatch is reported', async () => {
    const altered = join(scratchDir(), 'altered.ext4');
    copyFileSync(img.disk, altered);
    writeFileSync(altered, Buffer.from('x'), { flag: 'r+' });
    const req = request({ disk: { path: altered, sha256: img.diskSha256 }, command: 'echo should not run' });

    const result = await runEphemeralVm(req);

    expect(result.exitCode).toBeNull();
    expect(result.bootMs).toBeNull();
    expect(result.diagnostics.map((d) => d.code)).toEqual(['microvm.image-digest-mismatch']);
    expect(result.diagnostics[0]?.summary).toContain('root disk');
    expect(result.console).toBe('');
    expectTornDown(req.runDir);
  });

  it('GIVEN a "disk" that is not an ext4 filesystem WHEN it runs THEN the guest reports an ERROR and a non-zero exit, not a hang', async () => {
    const junk = join(scratchDir(), 'junk.img');
    writeFileSync(junk, Buffer.alloc(1024 * 1024, 0x5a));
    const sha256 = spawnSync('sha256sum', [junk], { encoding: 'utf8' }).stdout.split(' ')[0] ?? '';
    const req = request({ disk: { path: junk, sha256 }, command: 'echo should not run' });

    const result = await runEphemeralVm(req);

    expect(result.exitCode).toBe(125);
    expect(result.console).not.toContain('should not run');
    expect(result.diagnostics.map((d) => d.summary).join('\n')).toMatch(/mount of the root disk/);
    expectTornDown(req.runDir);
  });
});
