// The host's `microvm.accel` setting (`kvm | tcg | auto`) → the accelerator a job boots with. `auto` trusts KVM only
// after a probe boot answers (qemu.detectAccel, hard 3 s limit, the probe always killed) and remembers the answer
// per boot of the host, so only the first job after a reboot pays for the probe.
//
// Invariants: a cached answer is used only for the same host boot (/proc/sys/kernel/random/boot_id), the same
// /dev/kvm presence and the same QEMU binary; a corrupt or foreign cache file is ignored and rewritten.

import { existsSync, readFileSync } from 'node:fs';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { detectAccel, type AccelChoice, type QemuAccel } from './qemu.js';

export type AccelSetting = 'kvm' | 'tcg' | 'auto';

export interface AccelRequest {
  setting: AccelSetting;
  /** Image to probe with; its /init answers `agentvm.probe=1` (scripts/build-test-image.sh). */
  kernelPath: string;
  initrdPath: string;
  /**
   * Called only when a probe will boot (no cached answer, /dev/kvm present): the images to boot instead of the paths
   * above, e.g. verified private copies; undefined means "none may be booted" and the answer is TCG. `dispose` runs
   * after the probe.
   */
  prepareProbe?: () => Promise<{ kernelPath: string; initrdPath: string; dispose: () => Promise<void> } | undefined>;
  /** Where `auto` remembers its answer, e.g. `<root>/var/cache/agentvm/microvm-accel.json`. */
  cacheFile: string;
  binary?: string;
  probeTimeoutMs?: number;
}

export interface AccelResolution extends AccelChoice {
  /** True when the answer came from the cache (no probe this time). */
  cached: boolean;
}

function cacheKey(binary: string): string {
  let boot = 'unknown';
  try {
    boot = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
  } catch {
    // No procfs: every key is "unknown", the probe answer still holds for this binary.
  }
  return `${boot}|kvm=${existsSync('/dev/kvm') ? 1 : 0}|${binary}`;
}

export async function resolveAccel(request: AccelRequest): Promise<AccelResolution> {
  if (request.setting === 'kvm') return { accel: 'kvm', reason: 'the host sets microvm.accel: kvm.', cached: false };
  if (request.setting === 'tcg') return { accel: 'tcg', reason: 'the host sets microvm.accel: tcg.', cached: false };
  const binary = request.binary ?? 'qemu-system-x86_64';
  const key = cacheKey(binary);
  try {
    const cached = JSON.parse(await readFile(request.cacheFile, 'utf8')) as {
      key?: string;
      accel?: QemuAccel;
      reason?: string;
    };
    if (cached.key === key && (cached.accel === 'kvm' || cached.accel === 'tcg'))
      return {
        accel: cached.accel,
        reason: `${cached.reason ?? ''} (remembered since this host booted)`.trim(),
        cached: true,
      };
  } catch {
    // No cache yet, or unreadable: probe.
  }
  let images: { kernelPath: string; initrdPath: string; dispose: () => Promise<void> } | undefined = {
    kernelPath: request.kernelPath,
    initrdPath: request.initrdPath,
    dispose: async () => {},
  };
  if (request.prepareProbe !== undefined) {
    // Without /dev/kvm there is nothing to probe: detectAccel answers TCG before booting anything.
    images = existsSync('/dev/kvm') ? await request.prepareProbe() : images;
    if (images === undefined)
      return {
        accel: 'tcg',
        reason: 'the images did not match their pins, so no KVM probe was booted.',
        cached: false,
      };
  }
  let choice: AccelChoice;
  try {
    choice = await detectAccel({
      kernelPath: images.kernelPath,
      initrdPath: images.initrdPath,
      binary,
      ...(request.probeTimeoutMs === undefined ? {} : { timeoutMs: request.probeTimeoutMs }),
    });
  } finally {
    await images.dispose();
  }
  // A QEMU that could not start says nothing about KVM: not remembered.
  if (!choice.reason.startsWith('QEMU could not be started')) {
    await mkdir(dirname(request.cacheFile), { recursive: true });
    const temporary = `${request.cacheFile}.${process.pid}.tmp`;
    await writeFile(
      temporary,
      `${JSON.stringify({ key, accel: choice.accel, reason: choice.reason, probedAt: new Date().toISOString() })}\n`,
    );
    await rename(temporary, request.cacheFile);
  }
  return { ...choice, cached: false };
}
