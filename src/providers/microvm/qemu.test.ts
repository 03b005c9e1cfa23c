// The QEMU command line (pure) and the host TSC reading; real boots are in test/microvm-boot.test.ts.

import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { VmBootSpec } from './driver.js';
import { hostTscKhz, qemuArgv } from './qemu.js';

const spec: VmBootSpec = {
  name: 'job-abc',
  kernelPath: '/run/x/vmlinuz',
  initrdPaths: ['/run/x/initrd.cpio'],
  append: 'agentvm.nonce=00112233 loglevel=1',
  vcpus: 2,
  memoryMiB: 256,
  network: { kind: 'none' },
  runDir: '/run/x',
};

function flag(argv: string[], name: string): string[] {
  return argv.flatMap((a, i) => (a === name ? [argv[i + 1] ?? ''] : []));
}

describe('qemuArgv', () => {
  it('GIVEN no network THEN there is no network device at all, and the machine is a microvm that cannot reboot', () => {
    const argv = qemuArgv(spec, { accel: 'tcg', initrdPath: '/run/x/initrd.cpio', tscKhz: 2596152 });

    expect(argv[0]).toBe('qemu-system-x86_64');
    expect(argv.join(' ')).not.toMatch(/-netdev|-nic|-net |virtio-net|user,/);
    expect(argv).toContain('-nodefaults');
    expect(argv).toContain('-no-reboot');
    expect(flag(argv, '-M')).toEqual(['microvm,x-option-roms=off,isa-serial=on,rtc=on']);
    expect(flag(argv, '-accel')).toEqual(['tcg']);
    expect(flag(argv, '-smp')).toEqual(['2']);
    expect(flag(argv, '-m')).toEqual(['256']);
    expect(flag(argv, '-serial')).toEqual(['stdio']);
    expect(flag(argv, '-append')).toEqual([
      'console=ttyS0 panic=-1 tsc_early_khz=2596152 agentvm.nonce=00112233 loglevel=1',
    ]);
    expect(flag(argv, '-name')).toEqual(['agentvm-job-abc,process=agentvm-job-abc']);
  });

  it('GIVEN no root disk THEN no block device is attached', () => {
    const argv = qemuArgv(spec, { accel: 'tcg', initrdPath: '/i', tscKhz: null });
    expect(argv).not.toContain('-drive');
    expect(argv.join(' ')).not.toContain('virtio-blk');
  });

  it('GIVEN a root disk THEN it is attached read-only as a raw virtio-blk device', () => {
    const argv = qemuArgv(
      { ...spec, rootDiskPath: '/run/x/rootfs.img' },
      { accel: 'tcg', initrdPath: '/i', tscKhz: null },
    );
    expect(flag(argv, '-drive')).toEqual(['id=rootfs,file=/run/x/rootfs.img,format=raw,if=none,readonly=on']);
    expect(flag(argv, '-device')).toEqual(['virtio-blk-device,drive=rootfs']);
    // The kernel and initramfs still boot the guest; the disk is only mounted by its init.
    expect(flag(argv, '-kernel')).toEqual(['/run/x/vmlinuz']);
    expect(flag(argv, '-initrd')).toEqual(['/i']);
  });

  it('GIVEN a root disk path holding a comma THEN it is refused (it would inject -drive options)', () => {
    expect(() =>
      qemuArgv(
        { ...spec, rootDiskPath: '/run/x,snapshot=off/rootfs.img' },
        { accel: 'tcg', initrdPath: '/i', tscKhz: null },
      ),
    ).toThrow(/must not contain ","/);
  });

  it('GIVEN KVM THEN no TSC override is passed', () => {
    const argv = qemuArgv(spec, { accel: 'kvm', initrdPath: '/i', tscKhz: 2596152 });
    expect(flag(argv, '-append')[0]).not.toContain('tsc_early_khz');
  });

  it('GIVEN a tap in a namespace THEN one virtio-net device is attached to it and QEMU runs inside the namespace', () => {
    const argv = qemuArgv(
      { ...spec, network: { kind: 'tap', tapName: 'avm-tap0', macAddress: '52:54:00:12:34:56', netns: 'avm-job' } },
      { accel: 'kvm', initrdPath: '/i', tscKhz: null },
    );

    expect(argv.slice(0, 4)).toEqual(['ip', 'netns', 'exec', 'avm-job']);
    expect(flag(argv, '-netdev')).toEqual(['tap,id=net0,ifname=avm-tap0,script=no,downscript=no']);
    expect(flag(argv, '-device')).toEqual(['virtio-net-device,netdev=net0,mac=52:54:00:12:34:56']);
  });

  it.each([
    [{ ...spec, name: 'bad name' }, 'VM name'],
    [{ ...spec, vcpus: 0 }, 'vcpus'],
    [{ ...spec, memoryMiB: 8 }, 'memoryMiB'],
    [{ ...spec, network: { kind: 'tap' as const, tapName: 'tap0,script=/bin/evil' } }, 'tap name'],
  ])('rejects an unsafe or impossible spec (%#)', (bad, message) => {
    expect(() => qemuArgv(bad, { accel: 'tcg', initrdPath: '/i', tscKhz: null })).toThrow(message);
  });
});

describe('hostTscKhz', () => {
  it('reads cpu MHz only when the TSC is constant', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'agentvm-cpuinfo-'));
    try {
      const constant = join(dir, 'constant');
      const variable = join(dir, 'variable');
      writeFileSync(
        constant,
        'processor\t: 0\ncpu MHz\t\t: 2596.152\nflags\t\t: fpu tsc constant_tsc nonstop_tsc\n\nprocessor\t: 1\n',
      );
      writeFileSync(variable, 'processor\t: 0\ncpu MHz\t\t: 2596.152\nflags\t\t: fpu tsc\n');

      expect(await hostTscKhz(constant)).toBe(2596152);
      expect(await hostTscKhz(variable)).toBeNull();
      expect(await hostTscKhz(join(dir, 'absent'))).toBeNull();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
