// EphemeralVm: one Tier-2 job run in a fresh microVM — verify the pinned image, write the job overlay, boot,
// stream the console, enforce the time limits, collect the exit status and result files, tear down.
//
// Invariants:
// - Teardown is unconditional: whatever happens (timeout, crash, a throwing callback), the VMM's process group
//   is killed and awaited, then the run directory is removed, in `finally`. When runEphemeralVm settles, no
//   process and no file of the run remain. If Node exits mid-run, 'exit' hooks do the same synchronously;
//   only a SIGKILLed Node leaves a VMM behind: the job registry (job-registry.ts) names it, and the reaper
//   (teardown.ts) finds it by the run directory on its command line. An aborted `signal` kills the VM at once.
// - The VMM boots only bytes whose sha256 matched the caller's pins: kernel and initramfs are read once,
//   hashed, and the VMM is given the copies written into the run directory (no check-then-use race on the
//   cache files) — or, with `imageStore`, the store's private entries, trusted while their stat identity (ctime
//   included) is the one recorded when they hashed to the pin (image-store.ts, ADR 0028). A root disk is copied into the run directory first (copy_file_range, or a reflink where the
//   filesystem has them) and the copy is hashed: nothing but this process can write the 0700 run directory, so the
//   hashed bytes are the booted bytes, and a disk of any size never has to fit in memory. The guest attaches it
//   read-only.
// - A job without `network` has no network device at all.
// - Expected failures (digest mismatch, timeout, guest crash, rejected results) are diagnostics in the result;
//   it throws only for bugs, host I/O errors (run dir not creatable) and errors thrown by `onConsole` or
//   `onBooted` (after teardown).

import { createHash } from 'node:crypto';
import { constants as fsConstants, createReadStream, rmSync } from 'node:fs';
import { copyFile, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { errorDiag, hasErrors, type Diagnostic } from '../../diagnostics/index.js';
import type { VmHandle, VmmDriver, VmNetwork } from './driver.js';
import { storedImage } from './image-store.js';
import { QemuDriver } from './qemu.js';
import { writeCpio, type CpioEntry } from './cpio.js';
import {
  CmdlineKey,
  ConsoleParser,
  inputNameProblem,
  jobOverlay,
  networkPrelude,
  newNonce,
  type ConsoleReport,
  type GuestNetwork,
} from './protocol.js';

/** A file the caller trusts only at a known digest. */
export interface PinnedFile {
  path: string;
  /** Lowercase hex sha256. */
  sha256: string;
}

export interface JobInput {
  /** Files placed under /job/in (the job's working directory), by relative path. */
  files: Record<string, Buffer>;
  /** Positional parameters ($1, $2, …) of `command`. */
  args: string[];
}

export interface EphemeralVmRequest {
  kernel: PinnedFile;
  /** The base initramfs (scripts/build-test-image.sh); the job overlay is appended to a copy of it. */
  initrd: PinnedFile;
  /**
   * A raw ext4 disk image that becomes the job's root filesystem (`rootfs.format: disk`), attached read-only; the
   * initramfs then only boots: it loads virtio_blk, mounts the disk and runs the job chrooted in it.
   */
  disk?: PinnedFile;
  input: JobInput;
  /** A POSIX sh script run by the guest in /job/in; results are the regular files it leaves under $AGENTVM_OUT. */
  command: string;
  /**
   * More overlay entries (job-guest.ts): with `job/entry` among them the guest init confines the job — `command` is
   * then sourced by a root shell whose `exec "$AGENTVM_LAUNCH" …` line (argvCommand) starts the job unprivileged.
   */
  guestFiles?: CpioEntry[];
  vcpus: number;
  memoryMiB: number;
  /** The job's time limit, counted from the moment the guest starts it (READY), so slow boots do not eat it. */
  timeoutMs: number;
  /** Limit for boot (VMM start to READY), default 60 s: a guest that hangs while booting is killed too. */
  bootTimeoutMs?: number;
  /** Created by this call (its parent may exist; it must not) and always removed before it returns. */
  runDir: string;
  /** Each console line that is not protocol (kernel messages, job output), as it arrives. */
  onConsole?: (line: string) => void;
  /** Default: QEMU with TCG. Hosts with usable KVM pass `new QemuDriver({ accel: (await detectAccel(…)).accel })`. */
  driver?: VmmDriver;
  /** Default none: no network device. */
  network?: VmNetwork;
  /** With a tap: the guest's address and gateway, configured before the job starts (protocol.networkPrelude). */
  guestNetwork?: GuestNetwork;
  /** VM name (letters, digits, `-`), part of the VMM's process name; default `job-<nonce prefix>`. */
  name?: string;
  /** Called once the VMM runs, with its pid (= its process group), before the job can start; awaited. */
  onBooted?: (vmmPid: number) => void | Promise<void>;
  /** Aborting kills the VM at once (the run ends with `microvm.aborted`); teardown is the same as always. */
  signal?: AbortSignal;
  /**
   * A verified image store (image-store.ts): kernel and initramfs are taken from it when their stored bytes are
   * unchanged since they hashed to the pins, instead of being read and hashed every run. Default none.
   */
  imageStore?: string;
  /**
   * Work the VMM must wait for (the caller's network set-up), done meanwhile: awaited after the images are ready and
   * before the VMM starts. `false` means it failed (the caller reports why): nothing is booted. A rejection is thrown.
   */
  beforeBoot?: Promise<boolean>;
}

export interface EphemeralVmResult {
  /** The job's exit status as the guest reported it; null when none arrived (timeout, crash, refused boot). */
  exitCode: number | null;
  timedOut: boolean;
  /** Console text without protocol records (boot messages and job output), at most 1 MiB. */
  console: string;
  consoleTruncated: boolean;
  resultFiles: Record<string, Buffer>;
  /** From the call to the end of teardown (run dir removed). */
  durationMs: number;
  /** From asking the driver to boot to the guest starting the job; null if it never did. */
  bootMs: number | null;
  diagnostics: Diagnostic[];
}

const DEFAULT_BOOT_TIMEOUT_MS = 60_000;

// Run directories of runs in progress. If this Node process exits mid-run (process.exit, an uncaught error),
// `finally` never runs: the driver kills the VMM groups on 'exit', and this removes the directories.
const liveRunDirs = new Set<string>();
let exitHookInstalled = false;

function removeLiveRunDirs(): void {
  for (const dir of liveRunDirs) rmSync(dir, { recursive: true, force: true });
  liveRunDirs.clear();
}

export async function runEphemeralVm(request: EphemeralVmRequest): Promise<EphemeralVmResult> {
  const started = performance.now();
  const refused = validateRequest(request);
  if (hasErrors(refused)) return { ...notRun(refused), durationMs: performance.now() - started };

  await mkdir(dirname(request.runDir), { recursive: true });
  try {
    await mkdir(request.runDir, { mode: 0o700 });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    const diagnostic = errorDiag('microvm.run-dir-exists', `The run directory ${request.runDir} already exists.`, {
      detail:
        'Each run needs a fresh directory (it is removed afterwards); a leftover one may belong to a crashed run: reap it first.',
    });
    return { ...notRun([diagnostic]), durationMs: performance.now() - started };
  }
  liveRunDirs.add(request.runDir);
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.once('exit', removeLiveRunDirs);
  }

  let handle: VmHandle | undefined;
  const timers: { current?: NodeJS.Timeout; detach?: () => void } = {};
  let outcome: Omit<EphemeralVmResult, 'durationMs'>;
  try {
    outcome = await bootAndRun(request, (h) => (handle = h), timers);
  } finally {
    clearTimeout(timers.current);
    timers.detach?.();
    if (handle !== undefined) await handle.kill();
    await rm(request.runDir, { recursive: true, force: true });
    liveRunDirs.delete(request.runDir);
  }
  return { ...outcome, durationMs: performance.now() - started };
}

async function bootAndRun(
  request: EphemeralVmRequest,
  booted: (handle: VmHandle) => void,
  timers: { current?: NodeJS.Timeout; detach?: () => void },
): Promise<Omit<EphemeralVmResult, 'durationMs'>> {
  const [kernel, initrd] = await Promise.all([
    pinnedImage(request.kernel, 'kernel', request.imageStore),
    readPinned(request.initrd, 'initramfs', request.imageStore),
  ]);
  const diskPath = request.disk === undefined ? undefined : join(request.runDir, 'rootfs.img');
  const disk =
    request.disk === undefined || diskPath === undefined ? {} : await copyPinned(request.disk, diskPath, 'root disk');
  const mismatches = [kernel, initrd, disk].flatMap((f) => (f.diagnostic === undefined ? [] : [f.diagnostic]));
  if (mismatches.length > 0) return notRun(mismatches);

  // From the store, the kernel is booted in place (read-only to the VMM; see image-store.ts); otherwise a private copy.
  const kernelPath = kernel.storedPath ?? join(request.runDir, 'vmlinuz');
  const initrdPath = join(request.runDir, 'initrd.cpio');
  const overlay = jobOverlay(
    networkPrelude(request.guestNetwork) + request.command,
    request.input.args,
    request.input.files,
  );
  if (kernel.storedPath === undefined) await writeFile(kernelPath, kernel.bytes, { mode: 0o600 });
  // A second archive after the job overlay (each ends 4-byte aligned): the kernel unpacks them in order.
  const guest = request.guestFiles === undefined ? [] : [writeCpio(request.guestFiles)];
  await writeFile(
    initrdPath,
    Buffer.concat([initrd.bytes, Buffer.alloc((4 - (initrd.bytes.length % 4)) % 4), overlay, ...guest]),
    { mode: 0o600 },
  );

  if (request.beforeBoot !== undefined && !(await request.beforeBoot)) return notRun([]);

  const nonce = newNonce();
  const network = request.network ?? { kind: 'none' };
  let timedOut = false;
  let aborted = false;
  let bootMs: number | null = null;
  let callbackError: { error: unknown } | undefined;
  let handle: VmHandle | undefined;
  const mustConfine = request.guestFiles?.some((e) => e.path === 'job/entry') ?? false;
  let confined = false;
  let unconfined = false;
  const stop = (): void => {
    void handle?.kill();
  };
  const parser = new ConsoleParser(nonce, {
    onLine: (line) => {
      if (request.onConsole === undefined || callbackError !== undefined) return;
      try {
        request.onConsole(line);
      } catch (error) {
        callbackError = { error };
        stop();
      }
    },
    onRecord: (tag) => {
      if (tag === 'CONFINED') confined = true;
      // A job that should be confined starts only after the init said it is: an image whose init predates the
      // confinement (or skipped it) would run it as root with every program. Stopped before the job can do much.
      if (tag === 'READY' && mustConfine && !confined && !unconfined) {
        unconfined = true;
        stop();
      }
      if (tag === 'READY' && bootMs === null) {
        bootMs = performance.now() - bootStarted;
        clearTimeout(timers.current);
        timers.current = setTimeout(() => {
          timedOut = true;
          stop();
        }, request.timeoutMs);
      } else if (tag === 'EXIT') {
        // EXIT is the last record: everything the guest reports has arrived, so stop the VM now rather than wait
        // for its poweroff (which can cut off the serial tail). Not a timeout.
        clearTimeout(timers.current);
        stop();
      }
    },
  });

  const onAbort = (): void => {
    aborted = true;
    stop();
  };
  if (request.signal?.aborted) return notRun([abortedDiag()]);
  request.signal?.addEventListener('abort', onAbort, { once: true });
  timers.detach = () => request.signal?.removeEventListener('abort', onAbort);

  const driver = request.driver ?? new QemuDriver({ accel: 'tcg' });
  const bootStarted = performance.now();
  let bootTimedOut = false;
  timers.current = setTimeout(() => {
    bootTimedOut = true;
    timedOut = true;
    stop();
  }, request.bootTimeoutMs ?? DEFAULT_BOOT_TIMEOUT_MS);
  try {
    handle = await driver.boot({
      name: request.name ?? `job-${nonce.slice(0, 12)}`,
      kernelPath,
      initrdPaths: [initrdPath],
      // edd=off: the x86 setup code's BIOS disk probe prints to the console before printk settings apply.
      append: [
        `${CmdlineKey.nonce}=${nonce}`,
        'loglevel=1',
        'edd=off',
        ...(network.kind === 'tap' ? [`${CmdlineKey.net}=1`] : []),
        ...(diskPath === undefined ? [] : [`${CmdlineKey.disk}=1`]),
      ].join(' '),
      ...(diskPath === undefined ? {} : { rootDiskPath: diskPath }),
      vcpus: request.vcpus,
      memoryMiB: request.memoryMiB,
      network,
      runDir: request.runDir,
      onConsole: (chunk) => parser.push(chunk),
    });
  } catch (error) {
    return notRun([
      errorDiag(
        'microvm.vmm-start-failed',
        `The ${driver.name} VMM could not be started: ${(error as Error).message}.`,
        {
          detail:
            (error as NodeJS.ErrnoException).code === 'ENOENT'
              ? driver.name === 'qemu'
                ? 'Install QEMU: apt-get install qemu-system-x86.'
                : `Install ${driver.name}.`
              : /must not contain ","/.test((error as Error).message)
                ? 'QEMU reads "," in a -drive path as an option separator: use a --root (host root) whose path has no comma.'
                : undefined,
        },
      ),
    ]);
  }
  booted(handle);
  if (request.onBooted !== undefined) {
    try {
      await request.onBooted(handle.pid);
    } catch (error) {
      callbackError = { error };
      stop();
    }
  }
  // An abort that arrived while the VMM was starting had no handle to kill yet.
  if (aborted) stop();

  const exit = await handle.wait();
  clearTimeout(timers.current);
  if (callbackError !== undefined) throw callbackError.error;
  const report: ConsoleReport = parser.end();
  const diagnostics = [...report.diagnostics];
  if (aborted) {
    diagnostics.push(abortedDiag());
  } else if (unconfined) {
    diagnostics.push(notConfinedDiag());
  } else if (timedOut) {
    diagnostics.push(
      bootTimedOut
        ? errorDiag(
            'microvm.boot-timeout',
            `The microVM did not start the job within ${request.bootTimeoutMs ?? DEFAULT_BOOT_TIMEOUT_MS} ms; it was killed.`,
            {
              detail:
                'Check the console for where the boot stopped; under TCG on a busy host boots take several seconds.',
            },
          )
        : errorDiag('microvm.job-timeout', `The job ran longer than ${request.timeoutMs} ms; its VM was killed.`),
    );
  } else if (report.exitCode === null && callbackError === undefined) {
    const why = exit.stderr.trim().split('\n').slice(-3).join(' | ');
    diagnostics.push(
      errorDiag('microvm.no-exit-status', "The microVM stopped without reporting the job's exit status.", {
        detail: `VMM exit ${exit.code ?? exit.signal ?? '?'}${why === '' ? '' : `: ${why}`}. The console shows how far the guest got.`,
      }),
    );
  }
  const cut = timedOut || aborted || unconfined;
  return {
    exitCode: cut ? null : report.exitCode,
    timedOut,
    console: report.console,
    consoleTruncated: report.consoleTruncated,
    resultFiles: cut ? emptyFiles() : report.resultFiles,
    bootMs,
    diagnostics,
  };
}

function notConfinedDiag(): Diagnostic {
  return errorDiag(
    'microvm.not-confined',
    "The guest's init started the job without confining it; its VM was stopped.",
    {
      detail:
        'The boot image\'s init predates job confinement (ADR 0022 "Jobs"): rebuild it with scripts/build-test-image.sh, pin the new sha256 in the manifest, and apply.',
    },
  );
}

function abortedDiag(): Diagnostic {
  return errorDiag('microvm.aborted', 'The job run was interrupted; its VM was killed.');
}

function validateRequest(request: EphemeralVmRequest): Diagnostic[] {
  const diagnostics: Diagnostic[] = [];
  for (const name of Object.keys(request.input.files)) {
    const problem = inputNameProblem(name);
    if (problem !== undefined)
      diagnostics.push(
        errorDiag('microvm.input-name', `Input file name ${JSON.stringify(name)} ${problem}.`, {
          detail: 'Input files are relative paths under /job/in.',
        }),
      );
  }
  if (request.input.args.some((a) => a.includes('\0')))
    diagnostics.push(
      errorDiag('microvm.input-arg', 'A job argument contains a NUL byte, which no shell argument can carry.'),
    );
  for (const [label, pin] of [
    ['kernel', request.kernel],
    ['initrd', request.initrd],
    ...(request.disk === undefined ? [] : [['disk', request.disk] as const]),
  ] as const) {
    if (!/^[0-9a-f]{64}$/.test(pin.sha256))
      diagnostics.push(errorDiag('microvm.image-pin', `The ${label} pin is not a lowercase hex sha256.`));
  }
  if (!(request.timeoutMs > 0)) diagnostics.push(errorDiag('microvm.timeout-invalid', 'timeoutMs must be positive.'));
  return diagnostics;
}

/** A pinned image from the verified store (its path, no bytes read), or else read and hashed here. */
async function pinnedImage(
  pin: PinnedFile,
  label: string,
  store: string | undefined,
): Promise<{ bytes: Buffer; storedPath?: string; diagnostic?: Diagnostic }> {
  if (store === undefined) return readPinned(pin, label);
  const stored = await storedImage(store, pin.path, pin.sha256);
  if (stored.ok) return { bytes: Buffer.alloc(0), storedPath: stored.path };
  return {
    bytes: Buffer.alloc(0),
    diagnostic:
      stored.reason === 'unreadable' ? missingDiag(pin, label, stored.code) : mismatchDiag(pin, label, stored.actual),
  };
}

async function readPinned(
  pin: PinnedFile,
  label: string,
  store?: string,
): Promise<{ bytes: Buffer; diagnostic?: Diagnostic }> {
  if (store !== undefined) {
    const image = await pinnedImage(pin, label, store);
    return image.storedPath === undefined ? image : { bytes: await readFile(image.storedPath) };
  }
  let bytes: Buffer;
  try {
    bytes = await readFile(pin.path);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? 'error';
    return { bytes: Buffer.alloc(0), diagnostic: missingDiag(pin, label, code) };
  }
  const actual = createHash('sha256').update(bytes).digest('hex');
  if (actual === pin.sha256) return { bytes };
  return { bytes, diagnostic: mismatchDiag(pin, label, actual) };
}

function missingDiag(pin: PinnedFile, label: string, code: string): Diagnostic {
  return errorDiag('microvm.image-missing', `The ${label} ${pin.path} cannot be read (${code}).`, {
    detail: 'Build the image with scripts/build-test-image.sh, which prints the paths and digests to pin.',
  });
}

function mismatchDiag(pin: PinnedFile, label: string, actual: string): Diagnostic {
  return errorDiag(
    'microvm.image-digest-mismatch',
    `The ${label} ${pin.path} has sha256 ${actual}, not the pinned ${pin.sha256}.`,
    {
      detail:
        'The VM was not booted. Rebuild the image (scripts/build-test-image.sh prints its digests) and update the pin, or find out who changed the file.',
    },
  );
}

/** Copies a pinned file to `dest` (in the private run dir) and hashes the copy: the bytes the VMM will be given. */
async function copyPinned(pin: PinnedFile, dest: string, label: string): Promise<{ diagnostic?: Diagnostic }> {
  try {
    await copyFile(pin.path, dest, fsConstants.COPYFILE_EXCL | fsConstants.COPYFILE_FICLONE);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? 'error';
    if (code === 'EEXIST') throw error;
    return { diagnostic: missingDiag(pin, label, code) };
  }
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(dest)) hash.update(chunk as Buffer);
  const actual = hash.digest('hex');
  if (actual === pin.sha256) return {};
  return { diagnostic: mismatchDiag(pin, label, actual) };
}

function notRun(diagnostics: Diagnostic[]): Omit<EphemeralVmResult, 'durationMs'> {
  return {
    exitCode: null,
    timedOut: false,
    console: '',
    consoleTruncated: false,
    resultFiles: emptyFiles(),
    bootMs: null,
    diagnostics,
  };
}

function emptyFiles(): Record<string, Buffer> {
  return Object.create(null) as Record<string, Buffer>;
}
