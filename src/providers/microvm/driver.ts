// The VMM driver contract: what agentvm needs from a virtual machine monitor to boot one ephemeral microVM
// and tear it down. Implementations: QEMU `-M microvm` (qemu.ts); Firecracker fits the same shape (one
// kernel, one initramfs, an optional read-only root drive, boot args, vcpus, memory, an optional tap, the serial
// console on stdout).
// Also owns the process side every driver shares: spawning the VMM in its own process group, streaming its
// console, and killing the whole group.
//
// Invariants:
// - A VM is one VMM process group. `kill()` SIGKILLs the group and resolves only once the VMM has exited,
//   so after it returns no process of the VM remains.
// - The driver writes only inside `VmBootSpec.runDir`; the caller owns that directory and removes it.
// - No network device exists unless `network.kind === 'tap'`: a job without egress has no NIC at all.

import { spawn } from 'node:child_process';
import { open } from 'node:fs/promises';

/** How the guest is connected. Firecracker and QEMU both take a host tap device by name. */
export type VmNetwork =
  | { kind: 'none' }
  | {
      kind: 'tap';
      /** Existing tap device on the host (or in `netns`), created and firewalled by the caller. */
      tapName: string;
      /** Guest MAC address, `52:54:00:xx:xx:xx` style; the VMM picks one when absent. */
      macAddress?: string;
      /** Network namespace holding the tap; the VMM is started inside it (`ip netns exec`). */
      netns?: string;
    };

export interface VmBootSpec {
  /** Short id (letters, digits, `-`), used in the VMM's process name so leftovers can be found and reaped. */
  name: string;
  kernelPath: string;
  /**
   * Initramfs archives, concatenated in order into the one file the VMM loads (newc cpio, each optionally
   * compressed; the kernel unpacks them one after another, later files overriding earlier ones).
   */
  initrdPaths: readonly string[];
  /**
   * A raw disk image attached READ-ONLY as the guest's first virtio block device (`/dev/vda`): the root filesystem
   * of a `rootfs.format: disk` job, which the initramfs mounts (Firecracker: the root drive, `is_read_only`).
   */
  rootDiskPath?: string;
  /** Kernel command line added after the driver's own (console, panic and timer settings). */
  append: string;
  vcpus: number;
  memoryMiB: number;
  network: VmNetwork;
  /** Scratch directory for the driver (combined initramfs, sockets, config files). Must exist. */
  runDir: string;
  /** Raw serial console output, in order, as it arrives. */
  onConsole?: (chunk: Buffer) => void;
}

export interface VmExit {
  /** The VMM's exit code, or null when a signal ended it. */
  code: number | null;
  signal: NodeJS.Signals | null;
  /** The VMM's own stderr (its errors, not the guest's), at most 64 KiB. */
  stderr: string;
}

export interface VmHandle {
  readonly pid: number;
  /** Resolves when the VMM has exited and its console output has all been delivered. */
  wait(): Promise<VmExit>;
  /** SIGKILLs the VMM's process group; resolves when it has exited. Safe to call at any time, repeatedly. */
  kill(): Promise<VmExit>;
}

export interface VmmDriver {
  /** `qemu`, `firecracker`, …: for messages and process names. */
  readonly name: string;
  /** Starts the VM. Rejects only when the VMM cannot be started at all (missing binary, bad spec). */
  boot(spec: VmBootSpec): Promise<VmHandle>;
}

const MAX_STDERR = 64 * 1024;

// VMM process groups still running. The VMM runs in its own process group (so a kill reaches all of it),
// which also means a terminal's Ctrl-C does not reach it: when this Node process exits, they are killed here.
// A process killed outright (SIGKILL) cannot do this; leftovers are found by their `agentvm-` process name.
const liveGroups = new Set<number>();
let exitHookInstalled = false;

function killLiveGroups(): void {
  for (const pid of liveGroups) {
    try {
      process.kill(-pid, 'SIGKILL');
    } catch {
      // Already gone.
    }
  }
  liveGroups.clear();
}

/** Writes `paths` one after another into `dest`, zero-padding each to 4 bytes as the kernel's unpacker needs. */
export async function combineInitrds(paths: readonly string[], dest: string): Promise<void> {
  const out = await open(dest, 'wx', 0o600);
  try {
    for (const path of paths) {
      const input = await open(path, 'r');
      let length = 0;
      try {
        for await (const chunk of input.createReadStream({ autoClose: false })) {
          const bytes = chunk as Buffer;
          await out.write(bytes);
          length += bytes.length;
        }
      } finally {
        await input.close();
      }
      const pad = (4 - (length % 4)) % 4;
      if (pad > 0) await out.write(Buffer.alloc(pad));
    }
  } finally {
    await out.close();
  }
}

/**
 * Spawns a VMM whose serial console is its stdout, in a new process group (so `kill` reaches everything it
 * started, including an `ip netns exec` wrapper). Rejects when the binary cannot be executed.
 */
export function spawnVmm(argv: readonly string[], onConsole?: (chunk: Buffer) => void): Promise<VmHandle> {
  const [command, ...args] = argv;
  if (command === undefined) return Promise.reject(new Error('empty VMM command line'));
  const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  let stderr = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (text: string) => {
    if (stderr.length < MAX_STDERR) stderr += text.slice(0, MAX_STDERR - stderr.length);
  });
  child.stdout.on('data', (chunk: Buffer) => onConsole?.(chunk));
  // 'close' (not 'exit') fires after stdout has drained: the console is complete when wait() resolves.
  const exited = new Promise<VmExit>((resolve) => {
    child.once('close', (code, signal) => resolve({ code, signal, stderr }));
  });
  return new Promise<VmHandle>((resolve, reject) => {
    child.once('error', reject);
    child.once('spawn', () => {
      const pid = child.pid;
      if (pid === undefined) {
        reject(new Error(`could not start ${command}`));
        return;
      }
      let done = false;
      liveGroups.add(pid);
      if (!exitHookInstalled) {
        exitHookInstalled = true;
        process.once('exit', killLiveGroups);
      }
      void exited.then(() => {
        done = true;
        liveGroups.delete(pid);
      });
      resolve({
        pid,
        wait: () => exited,
        kill: async () => {
          if (!done) {
            try {
              process.kill(-pid, 'SIGKILL');
            } catch (error) {
              // ESRCH: the group is already gone; the 'close' event is on its way.
              if ((error as NodeJS.ErrnoException).code !== 'ESRCH') throw error;
            }
          }
          return exited;
        },
      });
    });
  });
}
