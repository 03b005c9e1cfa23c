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
    const cached = JSON.parse(await readFile(request.cacheFile, 'utf8')) as { key?: string; accel?: QemuAccel; reason?: string };
    if (cached.key === key && (cached.accel === 'kvm' || cached.accel === 'tcg')) return { accel: cached.accel, reason: `${cached.reason ?? ''} (remembered since this host booted)`.trim(), cached: true };
  } catch {
    // No cache yet, or unreadable: probe.
  }
  const choice = await detectAccel({ kernelPath: request.kernelPath, initrdPath: request.initrdPath, binary, ...(request.probeTimeoutMs === undefined ? {} : { timeoutMs: request.probeTimeoutMs }) });
  // A QEMU that could not start says nothing about KVM: not remembered.
  if (!choice.reason.startsWith('QEMU could not be started')) {
    await mkdir(dirname(request.cacheFile), { recursive: true });
    const temporary = `${request.cacheFile}.${process.pid}.tmp`;
    await writeFile(temporary, `${JSON.stringify({ key, accel: choice.accel, reason: choice.reason, probedAt: new Date().toISOString() })}\n`);
    await rename(temporary, request.cacheFile);
  }
  return { ...choice, cached: false };
}
