// A Tier-2 job definition (`job.<workload>.<job>`): its desired configuration as the engine expands it, where its
// images live on the host, their digest verification, and the installed copy of the definition that apply writes
// (`<root>/var/lib/agentvm/jobs/<workload>/<job>.json`).
//
// Invariants:
// - Images are named by plain file name inside the host's image directory (`<root>/var/lib/agentvm/images/`) and
//   trusted only at the manifest's sha256: a definition is never installed over an image that does not match its
//   pin, and a job boots only the bytes that hashed to the pin (ephemeral-vm.ts reads them once).
// - The definition's digest is the fingerprint of its canonical desired config: same config, same digest.
// - A job has two images (kernel, rootfs) or, when its rootfs is a `disk`, three: the disk is the job's root and the
//   `initramfs` only boots it (loads virtio_blk, mounts the disk read-only, chroots). `initramfs` is required with
//   `format: disk` and refused otherwise; it is in the identity, verification and signature cover only when present,
//   so definitions without it keep the identity and digest they had.

import { BoundedReadError, readRegularFile } from '../../contracts/bounded-read.js';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { AgentvmError, errorDiag, type Diagnostic } from '../../diagnostics/index.js';
import { fingerprint } from '../../model/canonical-json.js';
import type { HostContext } from '../provider.js';
import { parseEgressRules, type EgressRule } from './egress.js';
import { parseDataGrants, parseDataRoot, type DataGrant } from '../systemd/data-mounts.js';
import { parsePrograms, type ProgramPin } from '../systemd/exec-allowlist.js';

export interface JobImage {
  /** Plain file name in the host's image directory. */
  file: string;
  sha256: string;
}

/** The desired config of a `job.<workload>.<job>` resource (engine/expand.ts), checked. */
export interface JobConfig {
  job: string;
  kernel: JobImage;
  rootfs: JobImage & { format: 'initramfs' | 'disk' };
  /** The boot initramfs of a `disk` job (guest init + virtio_blk); absent for `initramfs` jobs. */
  initramfs?: JobImage;
  /** argv: program and its fixed arguments. */
  command: string[];
  vcpus: number;
  memoryMiB: number;
  timeoutSeconds: number;
  riskTier: string;
  egress: EgressRule[];
  /** The host's microVM settings at apply time (Host spec.microvm). */
  microvm: MicrovmSettings;
  /** The contract's data grants (ADR 0024): copied into the guest read-only, under DATA_MOUNT. */
  data: DataGrant[];
  /** The host's data root (spec.data.root), under the host root. */
  dataRoot: string;
  /** The contract's `kind: program` tools (ADR 0022): copied into the guest's /job/tools after their pins check. */
  programs: ProgramPin[];
}

export interface MicrovmSettings {
  driver: 'qemu' | 'firecracker';
  accel: 'kvm' | 'tcg' | 'auto';
  maxConcurrentJobs: number;
  /** The resolvers the run's egress proxy asks (host spec spec.egress.resolvers); absent: the host's own. */
  resolvers?: string[];
}

export const DEFAULT_MICROVM_SETTINGS: MicrovmSettings = { driver: 'qemu', accel: 'auto', maxConcurrentJobs: 2 };

const FILE_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
const SHA256 = /^[0-9a-f]{64}$/;
const NAME = /^[a-z][a-z0-9-]{0,62}$/;

/** Checks a desired job config; every unusable field is one diagnostic. */
export function parseJobConfig(
  config: Record<string, unknown>,
  address?: string,
): { config?: JobConfig; diagnostics: Diagnostic[] } {
  const at = address === undefined ? {} : { address };
  const diagnostics: Diagnostic[] = [];
  const bad = (path: string, summary: string, detail?: string): void => {
    diagnostics.push(
      errorDiag('microvm.job-invalid', summary, { ...at, path, ...(detail === undefined ? {} : { detail }) }),
    );
  };
  const image = (value: unknown, label: string): JobImage | undefined => {
    const v = (value ?? {}) as Record<string, unknown>;
    if (typeof v.file !== 'string' || !FILE_NAME.test(v.file))
      bad(
        `$.spec.jobs[].${label}.file`,
        `The ${label} file ${JSON.stringify(v.file)} is not a plain file name.`,
        "Images are files in the host's image directory (<root>/var/lib/agentvm/images), named without directories.",
      );
    if (typeof v.sha256 !== 'string' || !SHA256.test(v.sha256))
      bad(`$.spec.jobs[].${label}.sha256`, `The ${label} pin is not a lowercase hex sha256.`);
    return typeof v.file === 'string' && typeof v.sha256 === 'string' ? { file: v.file, sha256: v.sha256 } : undefined;
  };
  const job = config.job;
  if (typeof job !== 'string' || !NAME.test(job))
    bad('$.spec.jobs[].name', `Job name ${JSON.stringify(job)} is not a DNS label.`);
  const kernel = image(config.kernel, 'kernel');
  const rootfs = image(config.rootfs, 'rootfs');
  const format = ((config.rootfs ?? {}) as Record<string, unknown>).format ?? 'initramfs';
  let initramfs: JobImage | undefined;
  if (format === 'disk') {
    if (config.initramfs === undefined) {
      bad(
        '$.spec.jobs[].initramfs',
        'A job whose rootfs has `format: disk` needs an `initramfs` to boot it.',
        "Add `initramfs: {file, sha256}`: the boot initramfs with agentvm's guest init and the virtio_blk module (scripts/build-test-image.sh builds one), which mounts the disk read-only and runs the job in it.",
      );
    } else {
      initramfs = image(config.initramfs, 'initramfs');
      const bootFormat = ((config.initramfs ?? {}) as Record<string, unknown>).format;
      if (bootFormat !== undefined && bootFormat !== 'initramfs')
        bad(
          '$.spec.jobs[].initramfs.format',
          `The initramfs of a disk job cannot have format ${JSON.stringify(bootFormat)}.`,
          'It is the boot initramfs (newc cpio); leave `format` out.',
        );
    }
  } else if (format === 'initramfs') {
    if (config.initramfs !== undefined)
      bad(
        '$.spec.jobs[].initramfs',
        'Only a job whose rootfs has `format: disk` takes an `initramfs`; this rootfs is itself the initramfs.',
        'Remove `initramfs`, or set `rootfs.format: disk` if the rootfs is a disk image.',
      );
  } else bad('$.spec.jobs[].rootfs.format', `Root image format ${JSON.stringify(format)} is not initramfs or disk.`);
  const command = config.command;
  if (
    !Array.isArray(command) ||
    command.length === 0 ||
    command.some((a) => typeof a !== 'string' || a.includes('\0'))
  ) {
    bad('$.spec.jobs[].command', 'The job command must be a non-empty list of strings without NUL bytes.');
  }
  const int = (key: string, min: number, max: number): number => {
    const v = config[key];
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max)
      bad(`$.spec.jobs[].${key}`, `${key} ${JSON.stringify(v)} is not an integer from ${min} to ${max}.`);
    return typeof v === 'number' ? v : min;
  };
  const vcpus = int('vcpus', 1, 64);
  const memoryMiB = int('memoryMiB', 64, 1024 * 1024);
  const timeoutSeconds = int('timeoutSeconds', 1, 7 * 24 * 3600);
  const egress = parseEgressRules(config.egress, address);
  diagnostics.push(...egress.diagnostics);
  const vm = (config.microvm ?? DEFAULT_MICROVM_SETTINGS) as Partial<Record<keyof MicrovmSettings, unknown>>;
  const driver = vm.driver ?? DEFAULT_MICROVM_SETTINGS.driver;
  const accel = vm.accel ?? DEFAULT_MICROVM_SETTINGS.accel;
  const maxConcurrentJobs = vm.maxConcurrentJobs ?? DEFAULT_MICROVM_SETTINGS.maxConcurrentJobs;
  if (driver !== 'qemu' && driver !== 'firecracker')
    bad('$.spec.microvm.driver', `microVM driver ${JSON.stringify(driver)} is not qemu or firecracker.`);
  if (accel !== 'kvm' && accel !== 'tcg' && accel !== 'auto')
    bad('$.spec.microvm.accel', `accel ${JSON.stringify(accel)} is not kvm, tcg or auto.`);
  if (typeof maxConcurrentJobs !== 'number' || !Number.isInteger(maxConcurrentJobs) || maxConcurrentJobs < 1)
    bad(
      '$.spec.microvm.maxConcurrentJobs',
      `maxConcurrentJobs ${JSON.stringify(maxConcurrentJobs)} is not a positive integer.`,
    );
  const resolvers = vm.resolvers;
  if (
    resolvers !== undefined &&
    (!Array.isArray(resolvers) || !resolvers.every((r) => typeof r === 'string' && /^[0-9a-fA-F:.[\]]{2,60}$/.test(r)))
  )
    bad('$.spec.egress.resolvers', 'resolvers must be a list of ip or ip:port.');
  const data = parseDataGrants(config.data);
  if (data === undefined)
    bad('$.spec.data', 'The data grants are not a list of {path, access: read-only | read-write} with relative paths.');
  const dataRoot = parseDataRoot(config.dataRoot);
  if (dataRoot === undefined) bad('$.spec.data.root', 'The data root is not an absolute path without `.` or `..`.');
  const programs = parsePrograms(config.programs);
  if (programs === undefined)
    bad('$.spec.tools', 'The declared programs are not a list of {name, path, sha256} (lowercase hex sha256).');
  if (diagnostics.length > 0 || kernel === undefined || rootfs === undefined) return { diagnostics };
  return {
    config: {
      job: job as string,
      kernel,
      rootfs: { ...rootfs, format: format === 'disk' ? 'disk' : 'initramfs' },
      ...(initramfs === undefined ? {} : { initramfs }),
      command: command as string[],
      vcpus,
      memoryMiB,
      timeoutSeconds,
      riskTier: typeof config.riskTier === 'string' ? config.riskTier : 'unknown',
      egress: egress.rules,
      data: data ?? [],
      dataRoot: dataRoot ?? '',
      programs: programs ?? [],
      microvm: {
        driver,
        accel,
        maxConcurrentJobs,
        ...(Array.isArray(resolvers) && resolvers.length ? { resolvers: resolvers as string[] } : {}),
      } as MicrovmSettings,
    },
    diagnostics,
  };
}

/** Identity of a job definition: what it boots. Must equal engine/expand.ts's `identity`. */
export function jobIdentity(config: Pick<JobConfig, 'kernel' | 'rootfs' | 'initramfs'>): string {
  return `${config.kernel.sha256}/${config.rootfs.sha256}${config.initramfs === undefined ? '' : `/${config.initramfs.sha256}`}`;
}

/** The images a job boots, by name: kernel, rootfs, and the initramfs of a disk job. */
export type JobImageName = 'kernel' | 'rootfs' | 'initramfs';

export function jobImages(config: Pick<JobConfig, 'kernel' | 'rootfs' | 'initramfs'>): Array<[JobImageName, JobImage]> {
  return [
    ['kernel', config.kernel],
    ['rootfs', config.rootfs],
    ...(config.initramfs === undefined ? [] : [['initramfs', config.initramfs] as [JobImageName, JobImage]]),
  ];
}

/** Digest of a job definition: the fingerprint of its whole desired config. */
export function jobDefinitionDigest(config: Record<string, unknown>): string {
  return fingerprint(config);
}

export function imagesDir(host: Pick<HostContext, 'root'>): string {
  return join(host.root, 'var/lib/agentvm/images');
}

/** The largest image read whole for a signature check: Node's largest buffer (2 GiB − 1). */
const MAX_IMAGE_BYTES = 2 ** 31 - 1;

export function imagePath(host: Pick<HostContext, 'root'>, image: JobImage): string {
  return join(imagesDir(host), image.file);
}

export function definitionsDir(host: Pick<HostContext, 'root'>): string {
  return join(host.root, 'var/lib/agentvm/jobs');
}

function definitionPath(host: Pick<HostContext, 'root'>, workload: string, job: string): string {
  return join(definitionsDir(host), workload, `${job}.json`);
}

export type ImageStatus = 'verified' | 'missing' | 'mismatch';

async function sha256File(path: string): Promise<string | undefined> {
  try {
    const hash = createHash('sha256');
    for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
    return hash.digest('hex');
  } catch {
    return undefined;
  }
}

/** Hashes the job's images in the host's image directory; diagnostics say which is missing or altered. */
export async function verifyImages(
  host: Pick<HostContext, 'root'>,
  config: Pick<JobConfig, 'kernel' | 'rootfs' | 'initramfs'>,
  address?: string,
): Promise<{ status: ImageStatus; diagnostics: Diagnostic[] }> {
  const diagnostics: Diagnostic[] = [];
  let status: ImageStatus = 'verified';
  for (const [label, image] of jobImages(config)) {
    const path = imagePath(host, image);
    const actual = await sha256File(path);
    if (actual === undefined) {
      // A present image that does not match its pin outweighs a missing one: that is what apply must refuse.
      if (status === 'verified') status = 'missing';
      diagnostics.push(
        errorDiag('microvm.image-missing', `The ${label} image ${path} does not exist or cannot be read.`, {
          ...(address === undefined ? {} : { address }),
          detail: `Copy the image named in the manifest into ${imagesDir(host)} (its sha256 must be ${image.sha256}).`,
        }),
      );
    } else if (actual !== image.sha256) {
      status = 'mismatch';
      diagnostics.push(
        errorDiag(
          'microvm.image-digest-mismatch',
          `The ${label} image ${path} has sha256 ${actual}, not the pinned ${image.sha256}.`,
          {
            ...(address === undefined ? {} : { address }),
            detail:
              'Nothing boots from it. Put the pinned image in place, or pin the new digest in the manifest if the change is intended.',
          },
        ),
      );
    }
  }
  return { status, diagnostics };
}

/**
 * The bytes of each image that is on the host and matches its pin, by name (`kernel`, `rootfs`, `initramfs`): what a
 * signature check covers. An image that is missing or altered is left out; `verifyImages` reports it, and nothing
 * boots it. (A disk image is read whole here: signature checks take bytes.)
 */
export async function pinnedImageBytes(
  host: Pick<HostContext, 'root'>,
  config: Pick<JobConfig, 'kernel' | 'rootfs' | 'initramfs'>,
): Promise<Array<{ name: JobImageName; bytes: Uint8Array }>> {
  const out: Array<{ name: JobImageName; bytes: Uint8Array }> = [];
  for (const [name, image] of jobImages(config)) {
    let bytes: Buffer;
    try {
      // A regular file under Node's buffer limit, checked before reading: an image path that is a device or FIFO is refused.
      bytes = await readRegularFile(imagePath(host, image), MAX_IMAGE_BYTES);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') continue;
      // Not silently skipped: an image present but unreadable (or over Node's 2 GiB readFile limit) would otherwise
      // never be signature-checked, and the job could never run, with no word why.
      throw new AgentvmError(
        'microvm.image-unreadable',
        `The ${name} image ${imagePath(host, image)} cannot be read for its signature check (${code ?? (error instanceof BoundedReadError ? error.reason : 'error')}).`,
        {
          detail:
            code === 'ERR_FS_FILE_TOO_LARGE'
              ? 'Images over 2 GiB cannot be signature-checked by this version; keep signed images under 2 GiB.'
              : "Check the file's permissions and that it is a regular file.",
        },
      );
    }
    if (createHash('sha256').update(bytes).digest('hex') === image.sha256) out.push({ name, bytes });
  }
  return out;
}

/**
 * What apply installed for a job definition: everything `agentvm job run` needs, so a run never reads the
 * desired-state repository (ADR 0009). `digest` must equal the fingerprint of `config`; a copy edited by hand is
 * drift (`read` recomputes it) and is refused by `job run`.
 */
export interface InstalledJobDefinition {
  formatVersion: 1;
  address: string;
  workload: string;
  identity: string;
  digest: string;
  config: Record<string, unknown>;
  /** The host it was applied for, and the desired-state commit it came from (null: an uncommitted worktree). */
  host?: string;
  commit?: string | null;
  /**
   * Present when the job's tier requires signed images: those whose signature apply verified, by name, each at the
   * sha256 it verified (an image still missing at apply is absent). Such a job runs only when all its images (two, or
   * three with a disk job's initramfs) are here at the pinned digests; the plan shows an update once a missing image
   * arrives, and that apply verifies it.
   */
  signaturesVerified?: Partial<Record<JobImageName, string>>;
}

/**
 * Whether a run may boot these pins as far as signatures go: true when the job signs none of its images (no image
 * names a `bundle`, so apply verifies nothing and records no `signaturesVerified`), or when apply verified every image
 * the job boots at exactly the pinned digest. A signed job without the record (deleted by hand, or an older install)
 * is not covered: its images were never checked.
 */
export function signaturesCoverPins(
  installed: Pick<InstalledJobDefinition, 'signaturesVerified' | 'config'>,
  config: Pick<JobConfig, 'kernel' | 'rootfs' | 'initramfs'>,
): boolean {
  const verified = installed.signaturesVerified;
  if (verified === undefined) return !signsImages(installed.config);
  return jobImages(config).every(([name, image]) => verified[name] === image.sha256);
}

/** True when any image of a job's config names a signature bundle. */
export function signsImages(config: Record<string, unknown>): boolean {
  return (['kernel', 'rootfs', 'initramfs'] as const).some(
    (name) => typeof (config[name] as { bundle?: unknown } | undefined)?.bundle === 'string',
  );
}

export async function readInstalledDefinition(
  host: Pick<HostContext, 'root'>,
  workload: string,
  job: string,
): Promise<InstalledJobDefinition | undefined> {
  try {
    const value = JSON.parse(await readFile(definitionPath(host, workload, job), 'utf8')) as InstalledJobDefinition;
    return value.formatVersion === 1 && typeof value.digest === 'string' && typeof value.identity === 'string'
      ? value
      : undefined;
  } catch {
    return undefined;
  }
}

export async function writeInstalledDefinition(
  host: Pick<HostContext, 'root'>,
  job: string,
  definition: InstalledJobDefinition,
): Promise<void> {
  const path = definitionPath(host, definition.workload, job);
  await mkdir(join(definitionsDir(host), definition.workload), { recursive: true, mode: 0o755 });
  const temporary = `${path}.${process.pid}.tmp`;
  await writeFile(temporary, `${JSON.stringify(definition, null, 2)}\n`, { mode: 0o644 });
  await rename(temporary, path);
}

export async function removeInstalledDefinition(
  host: Pick<HostContext, 'root'>,
  workload: string,
  job: string,
): Promise<void> {
  await rm(definitionPath(host, workload, job), { force: true });
}

/** Addresses of every installed definition (`job.<workload>.<job>`). */
export async function listInstalledDefinitions(host: Pick<HostContext, 'root'>): Promise<string[]> {
  const out: string[] = [];
  let workloads: string[];
  try {
    workloads = await readdir(definitionsDir(host));
  } catch {
    return out;
  }
  for (const workload of workloads.filter((w) => NAME.test(w)).sort()) {
    let files: string[];
    try {
      files = await readdir(join(definitionsDir(host), workload));
    } catch {
      continue;
    }
    for (const file of files.sort()) {
      const job = file.endsWith('.json') ? file.slice(0, -5) : '';
      if (NAME.test(job)) out.push(`job.${workload}.${job}`);
    }
  }
  return out;
}
