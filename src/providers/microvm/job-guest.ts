// What a job's guest gets besides its images (ADR 0024 "Jobs", ADR 0022 "Jobs"): read-only copies of the contract's
// data grants at the fixed mount point, the declared programs in /job/tools, and /job/entry (the command's program),
// which tells the guest init to confine the job (scripts/build-test-image.sh: every mount noexec except the entrypoint
// and /job/tools, data read-only, uid 1000 without capabilities). All of it travels in the initramfs overlay.
//
// Invariants:
// - Only declared grants are copied: the rest of the data root is absent from the guest. A grant whose host path goes
//   through a symlink (realpath ≠ <data root>/<path>) is refused, as for services (systemd.data-symlink); inside a
//   grant nothing is followed: a symlink is copied as a symlink (its target resolves in the guest's own tree, where
//   no host file is), every file is opened O_NOFOLLOW, and only regular files, directories and links are copied.
// - Read-write grants reach a job read-only, with a warning: no copy is collected back (the ADR says why).
// - A program reaches the guest only as the bytes that hashed to its pin: read once, hashed, and those bytes go into
//   the overlay (no check-then-use race). A mismatch, a missing program or one that cannot be copied is an error;
//   the run is refused before anything boots.
// - Bounded: data copies count against a quarter of the guest's memory (an initramfs lives in RAM) and a file count.

import { createHash } from 'node:crypto';
import { constants } from 'node:fs';
import { lstat, open, readdir, readlink, realpath } from 'node:fs/promises';
import path from 'node:path';
import { errorDiag, warningDiag, type Diagnostic } from '../../diagnostics/index.js';
import { DATA_MOUNT, normalizedGrants, type DataGrant } from '../systemd/data-mounts.js';
import { sha256Of, type ProgramPin } from '../systemd/exec-allowlist.js';
import { cpioPathProblem, type CpioEntry } from './cpio.js';
import type { JobConfig } from './job-definition.js';

/** Where the declared programs appear in the guest (AGENTVM_TOOLS; first on the job's PATH). */
export const GUEST_TOOLS = 'job/tools';
/** A tool name that is a plain file name in /job/tools. */
const TOOL_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
/** Largest declared program copied into a guest. */
const MAX_PROGRAM_BYTES = 256 * 1024 * 1024;
/** Most entries (files, directories, links) of a job's data copies. */
const MAX_DATA_ENTRIES = 100_000;

export type GuestConfig = Pick<JobConfig, 'command' | 'data' | 'dataRoot' | 'programs' | 'memoryMiB'>;

export interface GuestFiles {
  /** Overlay entries: job/entry, job/tools/*, srv/agentvm/data/*. */
  entries: CpioEntry[];
  /** Errors refuse the run; warnings travel with its result. */
  diagnostics: Diagnostic[];
  /** Bytes of data copied. */
  dataBytes: number;
}

/** Everything the run's overlay carries for the guest's confinement, its programs and its data. Reads the host. */
export async function jobGuestFiles(root: string, config: GuestConfig, address: string): Promise<GuestFiles> {
  const entries: CpioEntry[] = [{ path: 'job/entry', data: Buffer.from(config.command[0] ?? ''), mode: 0o444 }];
  const diagnostics: Diagnostic[] = [];
  for (const pin of config.programs) {
    const program = await programEntry(root, pin, address);
    if ('entry' in program) entries.push(program.entry);
    else diagnostics.push(program.diagnostic);
  }
  const data = await dataEntries(root, config, address);
  return {
    entries: [...entries, ...data.entries],
    diagnostics: [...diagnostics, ...data.diagnostics],
    dataBytes: data.bytes,
  };
}

/**
 * The plan-time view of the same checks, without copying: grants missing or through a symlink, programs whose bytes
 * no longer hash to their pin (the run refuses those). Streams program hashes; reads no data file.
 */
export async function jobGuestProblems(root: string, config: GuestConfig, address: string): Promise<Diagnostic[]> {
  const out: Diagnostic[] = [];
  for (const pin of config.programs) {
    if (!pin.path.startsWith('/')) {
      out.push(releaseRelative(pin, address));
      continue;
    }
    const file = hostProgramPath(root, pin);
    const seen = await sha256Of(file);
    if (seen !== pin.sha256) out.push(toolDigest(pin, file, seen, address, 'warning'));
  }
  for (const grant of normalizedGrants(config.data)) {
    const checked = await checkGrant(root, config.dataRoot, grant, address);
    out.push(...checked.diagnostics);
  }
  return out;
}

function hostProgramPath(root: string, pin: ProgramPin): string {
  return path.join(path.resolve(root), path.posix.normalize(pin.path));
}

async function programEntry(
  root: string,
  pin: ProgramPin,
  address: string,
): Promise<{ entry: CpioEntry } | { diagnostic: Diagnostic }> {
  if (!TOOL_NAME.test(pin.name))
    return {
      diagnostic: errorDiag(
        'microvm.tool-name',
        `${address}: program name ${JSON.stringify(pin.name)} is not a plain file name.`,
        {
          address,
          detail: `A job's programs appear as /${GUEST_TOOLS}/<name>: use letters, digits, '.', '_' and '-'.`,
        },
      ),
    };
  if (!pin.path.startsWith('/')) return { diagnostic: releaseRelative(pin, address) };
  const file = hostProgramPath(root, pin);
  let bytes: Buffer | null;
  try {
    bytes = await readNoFollow(file, MAX_PROGRAM_BYTES);
  } catch {
    bytes = null;
  }
  const seen = bytes === null ? null : createHash('sha256').update(bytes).digest('hex');
  if (bytes === null || seen !== pin.sha256) return { diagnostic: toolDigest(pin, file, seen, address, 'error') };
  return { entry: { path: `${GUEST_TOOLS}/${pin.name}`, data: bytes, mode: 0o555 } };
}

function releaseRelative(pin: ProgramPin, address: string): Diagnostic {
  return warningDiag(
    'microvm.tool-release-relative',
    `${address}: program ${pin.name} (${pin.path}) is relative to the release, which a job's guest does not get; it is not in the guest.`,
    {
      address,
      detail:
        'A job receives programs by absolute host path (copied into /job/tools after their sha256 checks). Give the path on the host, or leave the program to the services of the workload.',
    },
  );
}

function toolDigest(
  pin: ProgramPin,
  file: string,
  seen: string | null,
  address: string,
  severity: 'error' | 'warning',
): Diagnostic {
  const make = severity === 'error' ? errorDiag : warningDiag;
  return make(
    'microvm.tool-digest',
    `${address}: program ${pin.name} (${file}) ${seen === null ? 'is missing, unreadable, not a regular file or a symlink' : `hashes to sha256:${seen}, not its pin sha256:${pin.sha256}`}; the job ${severity === 'error' ? 'was not booted' : 'is refused when it runs'}.`,
    {
      address,
      detail:
        'A declared program reaches the guest only with the bytes the contract pins. If the change is intended, review it and set `sha256:` of the tool in the contract to the new digest (`sha256sum <file>`), commit and apply; otherwise restore the file.',
    },
  );
}

/** A grant's host path, checked like a service's (ADR 0024): missing → warning, through a symlink → error. */
async function checkGrant(
  root: string,
  dataRoot: string,
  grant: DataGrant,
  address: string,
): Promise<{ hostPath?: string; diagnostics: Diagnostic[] }> {
  const hostRoot = path.join(path.resolve(root), dataRoot);
  const hostPath = path.join(hostRoot, grant.path);
  const diagnostics: Diagnostic[] = [];
  try {
    await lstat(hostPath);
  } catch {
    diagnostics.push(
      warningDiag(
        'microvm.data-missing',
        `${address}: data path \`${grant.path}\` (${grant.access}) does not exist under the host's data root ${hostRoot}; the job runs without it.`,
        {
          address,
          detail: `Create ${hostPath}, set spec.data.root in the host file if the data lives elsewhere, or remove the entry from the contract's spec.data.`,
        },
      ),
    );
    return { diagnostics };
  }
  const realRoot = await realpath(hostRoot).catch(() => hostRoot);
  const real = await realpath(hostPath).catch(() => '');
  if (real !== path.join(realRoot, grant.path)) {
    diagnostics.push(
      errorDiag(
        'microvm.data-symlink',
        `${address}: data path \`${grant.path}\` (${grant.access}) is a symlink or goes through one on the host (it resolves to ${real || '(unresolvable)'}); the job does not get it.`,
        {
          address,
          detail: `Following it would copy whatever it points at into the guest. Replace ${hostPath} with a real directory, and check which workload wrote the link (one with read-write access to a parent can).`,
        },
      ),
    );
    return { diagnostics };
  }
  if (grant.access === 'read-write')
    diagnostics.push(
      warningDiag(
        'microvm.data-read-write',
        `${address}: data path \`${grant.path}\` is granted read-write, but a job gets its data read-only; nothing it writes there comes back.`,
        {
          address,
          detail:
            'Jobs return their output as result files ($AGENTVM_OUT, `agentvm job run --out`), reviewed before they land anywhere (ADR 0024). Grant the path read-only to silence this, or have a service write it.',
        },
      ),
    );
  return { hostPath, diagnostics };
}

async function dataEntries(
  root: string,
  config: GuestConfig,
  address: string,
): Promise<{ entries: CpioEntry[]; diagnostics: Diagnostic[]; bytes: number }> {
  const walk = {
    entries: [] as CpioEntry[],
    seen: new Set<string>(),
    bytes: 0,
    limit: (config.memoryMiB * 1024 * 1024) / 4,
    over: false,
    skipped: [] as string[],
  };
  const diagnostics: Diagnostic[] = [];
  for (const grant of normalizedGrants(config.data)) {
    const checked = await checkGrant(root, config.dataRoot, grant, address);
    diagnostics.push(...checked.diagnostics);
    const guest = path.posix.join(DATA_MOUNT, grant.path).slice(1);
    // A grant inside another one was copied with it.
    if (checked.hostPath === undefined || walk.seen.has(guest)) continue;
    await copyTree(checked.hostPath, guest, walk);
    if (walk.over) break;
  }
  if (walk.over)
    diagnostics.push(
      errorDiag(
        'microvm.data-too-large',
        `${address}: the job's data grants hold more than ${Math.floor(walk.limit / 1024 / 1024)} MiB or ${MAX_DATA_ENTRIES} entries; they are copied into the guest's memory, which they would not fit.`,
        {
          address,
          detail: `Grant the job a narrower path, or raise the job's memoryMiB (data may use a quarter of it; now ${config.memoryMiB}).`,
        },
      ),
    );
  if (walk.skipped.length > 0)
    diagnostics.push(
      warningDiag(
        'microvm.data-special',
        `${address}: ${walk.skipped.length} entr${walk.skipped.length === 1 ? 'y' : 'ies'} of the job's data (${walk.skipped.slice(0, 3).join(', ')}${walk.skipped.length > 3 ? ', …' : ''}) are neither files, directories nor links, could not be read, or have a path too long for the guest; they are not copied.`,
        { address },
      ),
    );
  return { entries: walk.entries, diagnostics, bytes: walk.bytes };
}

async function copyTree(
  host: string,
  guest: string,
  walk: { entries: CpioEntry[]; seen: Set<string>; bytes: number; limit: number; over: boolean; skipped: string[] },
): Promise<void> {
  if (walk.over) return;
  if (walk.seen.size >= MAX_DATA_ENTRIES) {
    walk.over = true;
    return;
  }
  // A name the archive cannot carry (a path over 4095 bytes) is left out like a FIFO, never a crash.
  if (cpioPathProblem(guest) !== undefined) {
    walk.skipped.push(guest.slice(0, 80));
    return;
  }
  walk.seen.add(guest);
  // An entry that vanished or cannot be read (a path longer than the host allows) is left out with the others.
  const st = await lstat(host).catch(() => undefined);
  if (st === undefined) {
    walk.skipped.push(guest.slice(0, 80));
    return;
  }
  if (st.isSymbolicLink()) {
    const target = await readlink(host).catch(() => '');
    if (target === '') walk.skipped.push(guest.slice(0, 80));
    else walk.entries.push({ path: guest, symlink: target });
  } else if (st.isDirectory()) {
    walk.entries.push({ path: guest, mode: 0o555 });
    const names = await readdir(host).catch(() => undefined);
    if (names === undefined) walk.skipped.push(guest.slice(0, 80));
    for (const name of (names ?? []).sort()) await copyTree(path.join(host, name), `${guest}/${name}`, walk);
  } else if (st.isFile()) {
    if (st.size > walk.limit - walk.bytes) {
      walk.over = true;
      return;
    }
    // Null: swapped for a link or a FIFO since lstat, grown past the budget, or unreadable.
    const data = await readNoFollow(host, walk.limit - walk.bytes).catch(() => null);
    if (data === null) {
      walk.skipped.push(guest.slice(0, 80));
      return;
    }
    walk.bytes += data.length;
    walk.entries.push({ path: guest, data, mode: 0o444 });
  } else walk.skipped.push(guest);
}

/**
 * A regular file's bytes, at most `limit`; the open never follows a symlink (a link swapped in after lstat) and never
 * blocks (a FIFO). Throws when it is not a regular file or is larger.
 */
async function readNoFollow(file: string, limit: number): Promise<Buffer> {
  const handle = await open(
    file,
    constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK | constants.O_NOCTTY,
  );
  try {
    const st = await handle.stat();
    if (!st.isFile() || st.size > limit) throw new Error(`${file}: not a regular file, or larger than ${limit} bytes`);
    const buf = Buffer.alloc(st.size);
    let length = 0;
    while (length < buf.length) {
      const { bytesRead } = await handle.read(buf, length, buf.length - length, length);
      if (bytesRead === 0) break;
      length += bytesRead;
    }
    return buf.subarray(0, length);
  } finally {
    await handle.close();
  }
}
