// The QEMU `-M microvm` implementation of VmmDriver, and accelerator detection for `accel: auto`.
//
// Invariants and reasons:
// - No `-netdev user`: a VM has no network device unless the spec attaches a tap (egress is allowed by the
//   tap's firewall, never by QEMU's user-mode stack).
// - `-no-reboot` + `panic=-1`: a guest whose init dies or panics makes QEMU exit instead of rebooting.
// - Under TCG the kernel's TSC calibration against the emulated PIT fails when the host is busy, and the
//   guest then hangs before init (seen at load ≈10 on 2 cores). TCG's guest TSC runs at the host TSC rate,
//   so the driver passes `tsc_early_khz=<host TSC kHz>` and calibration is skipped.
// - `-accel kvm` hangs (nested PVM) or aborts on some hosts although /dev/kvm opens, so `detectAccel` trusts
//   KVM only after a probe boot answers within a hard timeout, and always SIGKILLs the probe.

import { readFile, open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { combineInitrds, spawnVmm, type VmBootSpec, type VmHandle, type VmmDriver } from './driver.js';
import { CmdlineKey, ConsoleParser, newNonce } from './protocol.js';

export type QemuAccel = 'kvm' | 'tcg';

export interface QemuDriverOptions {
  accel: QemuAccel;
  /** Default `qemu-system-x86_64` (from PATH). */
  binary?: string;
  /** `-cpu` model; QEMU's default when absent (`-cpu host` aborts under nested PVM). */
  cpu?: string;
  /** Host TSC rate for TCG guests; read from /proc/cpuinfo when undefined; null passes none. */
  tscKhz?: number | null;
}

export class QemuDriver implements VmmDriver {
  readonly name = 'qemu';
  private readonly options: QemuDriverOptions;

  constructor(options: QemuDriverOptions) {
    this.options = options;
  }

  async boot(spec: VmBootSpec): Promise<VmHandle> {
    const initrd = await singleInitrd(spec);
    const tscKhz =
      this.options.accel === 'tcg'
        ? this.options.tscKhz === undefined
          ? await hostTscKhz()
          : this.options.tscKhz
        : null;
    const argv = qemuArgv(spec, { ...this.options, initrdPath: initrd, tscKhz });
    return spawnVmm(argv, spec.onConsole);
  }
}

/** The full command line (including an `ip netns exec` prefix when the tap lives in a namespace). Pure. */
export function qemuArgv(
  spec: VmBootSpec,
  options: QemuDriverOptions & { initrdPath: string; tscKhz: number | null },
): string[] {
  if (!/^[A-Za-z0-9-]{1,64}$/.test(spec.name))
    throw new Error(`VM name ${JSON.stringify(spec.name)} must be 1-64 letters, digits or "-"`);
  if (!Number.isInteger(spec.vcpus) || spec.vcpus < 1) throw new Error('vcpus must be a positive integer');
  if (!Number.isInteger(spec.memoryMiB) || spec.memoryMiB < 16)
    throw new Error('memoryMiB must be an integer of at least 16');
  const append = ['console=ttyS0', 'panic=-1'];
  if (options.accel === 'tcg' && options.tscKhz !== null) append.push(`tsc_early_khz=${options.tscKhz}`);
  if (spec.append.trim() !== '') append.push(spec.append.trim());
  const argv = [
    options.binary ?? 'qemu-system-x86_64',
    '-name',
    `agentvm-${spec.name},process=agentvm-${spec.name}`,
    '-M',
    'microvm,x-option-roms=off,isa-serial=on,rtc=on',
    '-accel',
    options.accel,
    ...(options.cpu === undefined ? [] : ['-cpu', options.cpu]),
    '-m',
    String(spec.memoryMiB),
    '-smp',
    String(spec.vcpus),
    '-nodefaults',
    '-no-user-config',
    '-nographic',
    '-serial',
    'stdio',
    '-kernel',
    spec.kernelPath,
    '-initrd',
    options.initrdPath,
    '-append',
    append.join(' '),
    '-no-reboot',
  ];
  if (spec.rootDiskPath !== undefined) {
    // QEMU's -drive option syntax treats ',' as a separator: a path holding one would inject options.
    if (spec.rootDiskPath.includes(','))
      throw new Error(`root disk path ${JSON.stringify(spec.rootDiskPath)} must not contain ","`);
    argv.push(
      '-drive',
      `id=rootfs,file=${spec.rootDiskPath},format=raw,if=none,readonly=on`,
      '-device',
      'virtio-blk-device,drive=rootfs',
    );
  }
  if (spec.network.kind === 'none') return argv;
  const { tapName, macAddress, netns } = spec.network;
  if (!/^[A-Za-z0-9_.-]{1,15}$/.test(tapName))
    throw new Error(`tap name ${JSON.stringify(tapName)} is not a valid interface name`);
  if (macAddress !== undefined && !/^([0-9a-f]{2}:){5}[0-9a-f]{2}$/.test(macAddress))
    throw new Error(`MAC address ${JSON.stringify(macAddress)} is malformed`);
  argv.push(
    '-netdev',
    `tap,id=net0,ifname=${tapName},script=no,downscript=no`,
    '-device',
    `virtio-net-device,netdev=net0${macAddress === undefined ? '' : `,mac=${macAddress}`}`,
  );
  return netns === undefined ? argv : ['ip', 'netns', 'exec', netns, ...argv];
}

/** QEMU takes one -initrd: a single path is used as is, several are combined into the run dir. */
async function singleInitrd(spec: VmBootSpec): Promise<string> {
  const [first, ...rest] = spec.initrdPaths;
  if (first === undefined) throw new Error('a microVM boot needs at least one initramfs');
  if (rest.length === 0) return first;
  const combined = join(spec.runDir, 'initrd.combined.cpio');
  await combineInitrds(spec.initrdPaths, combined);
  return combined;
}

/**
 * The host TSC rate in kHz, when the CPU's TSC is constant (`constant_tsc`): from /proc/cpuinfo's `cpu MHz`.
 * On hosts with frequency scaling that field can show the current clock rather than the TSC rate; the guest's
 * clock then runs off by that ratio, which TCG (a development fallback) tolerates.
 */
export async function hostTscKhz(cpuinfoPath = '/proc/cpuinfo'): Promise<number | null> {
  let text: string;
  try {
    text = await readFile(cpuinfoPath, 'utf8');
  } catch {
    return null;
  }
  const first = text.split('\n\n')[0] ?? '';
  const flags = /^flags\s*:\s*(.*)$/m.exec(first)?.[1]?.split(' ') ?? [];
  const mhz = Number(/^cpu MHz\s*:\s*([0-9.]+)$/m.exec(first)?.[1]);
  if (!flags.includes('constant_tsc') || !Number.isFinite(mhz) || mhz <= 0) return null;
  return Math.round(mhz * 1000);
}

export interface AccelProbeRequest {
  /** The image to probe with (the /init answers `agentvm.probe=1` at once). */
  kernelPath: string;
  initrdPath: string;
  binary?: string;
  /** Hard limit for the probe boot (default 3000 ms; a KVM microVM answers in well under a second). */
  timeoutMs?: number;
  /** Default /dev/kvm. */
  kvmDevice?: string;
}

export interface AccelChoice {
  accel: QemuAccel;
  /** Why, in one sentence, for `agentvm` to show. */
  reason: string;
  probeMs?: number;
}

/** `accel: auto`: KVM when /dev/kvm opens read-write AND a probe boot under KVM answers in time; else TCG. */
export async function detectAccel(request: AccelProbeRequest): Promise<AccelChoice> {
  const device = request.kvmDevice ?? '/dev/kvm';
  try {
    const handle = await open(device, 'r+');
    await handle.close();
  } catch (error) {
    return {
      accel: 'tcg',
      reason: `${device} cannot be opened (${(error as NodeJS.ErrnoException).code ?? 'error'}).`,
    };
  }
  const timeoutMs = request.timeoutMs ?? 3000;
  const nonce = newNonce();
  const started = performance.now();
  let answered: () => void = () => {};
  const answer = new Promise<void>((resolve) => {
    answered = resolve;
  });
  const parse = new ConsoleParser(nonce, { onRecord: (tag) => tag === 'PROBE-OK' && answered() });
  let handle: VmHandle;
  try {
    handle = await spawnVmm(
      qemuArgv(
        {
          name: `probe-${nonce.slice(0, 8)}`,
          kernelPath: request.kernelPath,
          initrdPaths: [request.initrdPath],
          append: `${CmdlineKey.nonce}=${nonce} ${CmdlineKey.probe}=1`,
          vcpus: 1,
          memoryMiB: 128,
          network: { kind: 'none' },
          // One initramfs, so nothing is written: the probe needs no scratch directory.
          runDir: tmpdir(),
        },
        { accel: 'kvm', binary: request.binary, initrdPath: request.initrdPath, tscKhz: null },
      ),
      (chunk) => parse.push(chunk),
    );
  } catch (error) {
    return { accel: 'tcg', reason: `QEMU could not be started for the KVM probe (${(error as Error).message}).` };
  }
  let timer: NodeJS.Timeout | undefined;
  const outcome = await Promise.race([
    answer.then(() => 'answered' as const),
    handle.wait().then(() => 'exited' as const),
    new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), timeoutMs);
    }),
  ]);
  clearTimeout(timer);
  const probeMs = Math.round(performance.now() - started);
  const exit = await handle.kill();
  if (outcome === 'answered' || parse.end().probeOk)
    return { accel: 'kvm', reason: `a KVM probe boot answered in ${probeMs} ms.`, probeMs };
  if (outcome === 'timeout')
    return {
      accel: 'tcg',
      reason: `a KVM probe boot did not answer within ${timeoutMs} ms (nested virtualization?); it was killed.`,
      probeMs,
    };
  const why = exit.stderr.trim().split('\n').pop() ?? '';
  return { accel: 'tcg', reason: `a KVM probe boot exited without answering${why === '' ? '' : `: ${why}`}.`, probeMs };
}
