// Use case: `agentvm job run <workload>/<job>` — one Tier-2 job in an ephemeral microVM. Reads the job definition
// from the desired state at an exact commit (as plan does), refuses a workload with policy errors, registers the
// run under the host root (owner record: this process), gives the VM a default-deny network namespace when the
// contract allowlists egress (none at all otherwise), boots it with the inputs, streams its console, collects its
// exit status and result files, and tears everything down — writing a receipt to the audit log.
//
// Invariants:
// - Teardown runs whatever happens after the run is registered (`finally`), and a receipt is appended for it. If
//   this process is SIGKILLed, the run's record names everything left behind: the next `plan` reports the run as
//   an orphan and `apply` reaps it (providers/microvm/provider.ts).
// - The core never prints: console lines go to `onConsole`; the command decides where they show.
// - Result files are written only into a fresh (absent or empty) --out directory, never over an existing file.
// - Signed images (a `bundle` per image) are verified against their bundles before anything is registered or
//   booted, and only when their bytes hash to the pins — the same pins the VM checks again as it reads them.

import { spawnSync } from 'node:child_process';
import { lookup } from 'node:dns/promises';
import { readdirSync, rmSync, statSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { createHash } from 'node:crypto';
import { AgentvmError, errorDiag, hasErrors, userError, type Diagnostic } from '../diagnostics/index.js';
import { expandHost } from '../engine/expand.js';
import { resolveAccel, type AccelSetting } from '../providers/microvm/accel.js';
import { isLoopbackHost, planEgress, type EgressPlan } from '../providers/microvm/egress.js';
import { runEphemeralVm, type EphemeralVmResult } from '../providers/microvm/ephemeral-vm.js';
import { imagePath, parseJobConfig, pinnedImageBytes, verifyImages, type JobConfig } from '../providers/microvm/job-definition.js';
import { createJobNetwork, jobNetnsName, type JobNetwork } from '../providers/microvm/job-network.js';
import {
  claimSlot,
  createRunRecord,
  listRunRecords,
  newRunId,
  ownerAlive,
  processStartTicks,
  runDirOf,
  runState,
  updateRunRecord,
  vmDirOf,
  type JobRunRecord,
} from '../providers/microvm/job-registry.js';
import { argvCommand } from '../providers/microvm/protocol.js';
import type { HostContext } from '../providers/provider.js';
import { hostPaths, LocalStateBackend } from '../state/index.js';
import { QemuDriver } from '../providers/microvm/qemu.js';
import { receiptEntry } from '../providers/microvm/provider.js';
import { teardownRun, type TeardownReason, type TeardownReceipt } from '../providers/microvm/teardown.js';
import type { DesiredState } from '../contracts/desired-state.js';
import type { DesiredResource } from '../engine/types.js';
import { loadDesiredState, selectHost } from './desired.js';

export interface JobRunOptions {
  repo: string;
  ref: string;
  host?: string;
  /** Host root (`--root`). */
  root: string;
  /** `<workload>/<job>`. */
  target: string;
  /** Input files, placed read-only in the job's working directory under their base names. */
  inputs?: string[];
  /** Arguments appended to the job's command. */
  args?: string[];
  /** Directory for result files: created, or an existing empty directory. */
  out?: string;
  /** Each console line of the guest (job output and any kernel message), as it arrives. */
  onConsole?: (line: string) => void;
  /** Aborting kills the VM; the run is torn down as always and reported `interrupted`. */
  signal?: AbortSignal;
  /** Boot limit (VMM start → job start); default 60 s. */
  bootTimeoutMs?: number;
}

export type JobRunStatus = 'succeeded' | 'failed' | 'timed-out' | 'interrupted';

/** JSON result of `agentvm job run --json`. */
export interface JobRunResult {
  formatVersion: 1;
  runId: string;
  /** The job definition, `job.<workload>.<job>`. */
  address: string;
  host: string;
  commit: string | null;
  status: JobRunStatus;
  /** The job's exit status as the guest reported it; null when none arrived (timeout, crash, interrupted). */
  exitCode: number | null;
  accel: { accel: 'kvm' | 'tcg'; reason: string };
  /** Null: the job had no network device at all. */
  network: null | {
    netns: string;
    guestAddress: string;
    gateway: string;
    /** What the guest may connect to, and where each goes on the host side. */
    allowed: Array<{ protocol: 'tcp' | 'udp'; guest: string; upstream: string }>;
  };
  resultFiles: Array<{ name: string; size: number; sha256: string }>;
  outDir: string | null;
  /** Console text without protocol records, at most 1 MiB. */
  console: string;
  bootMs: number | null;
  durationMs: number;
  teardown: TeardownReceipt;
  diagnostics: Diagnostic[];
}

const NAME = /^[a-z][a-z0-9-]{0,62}$/;
const DEFAULT_BOOT_TIMEOUT_MS = 60_000;
/** Deadline slack beyond boot + job limits: power-off grace, teardown, a slow host. */
const DEADLINE_SLACK_MS = 60_000;

// Runs of this process in progress: if it exits abruptly (process.exit), 'exit' hooks cannot await anything, so
// the namespace and the run directory are removed synchronously here (the driver kills the VMM groups itself).
const liveRuns = new Map<string, { netns: string | null; runDir: string }>();
let exitHookInstalled = false;
function removeLiveRuns(): void {
  for (const run of liveRuns.values()) {
    if (run.netns !== null) spawnSync('ip', ['netns', 'delete', run.netns], { stdio: 'ignore' });
    rmSync(run.runDir, { recursive: true, force: true });
  }
  liveRuns.clear();
}

export async function runJob(opts: JobRunOptions): Promise<JobRunResult> {
  const started = performance.now();
  const { workload, job } = parseTarget(opts.target);
  const { state, diagnostics: loadDiags } = await loadDesiredState(opts.repo, opts.ref);
  const host = selectHost(state, opts.host);
  const address = `job.${workload}.${job}`;
  const resource = expandHost(state, host).find((r) => r.address === address);
  if (resource === undefined) {
    const jobs = expandHost(state, host).filter((r) => r.address.startsWith('job.')).map((r) => r.address.slice(4).replace('.', '/'));
    throw userError('job.not-found', `Host \`${host}\` has no job ${workload}/${job}.`, jobs.length > 0 ? `Jobs on ${host}: ${jobs.join(', ')}.` : `No workload on ${host} defines jobs (manifest spec.jobs), or ${workload} is not in hosts/${host}.yaml.`);
  }
  const concerns = (d: Diagnostic): boolean =>
    d.address === address ||
    d.location?.file.startsWith(`workloads/${workload}/`) === true ||
    d.location?.file === `hosts/${host}.yaml` ||
    d.location?.file === `hosts/${host}.yml` ||
    d.location?.file === 'agentvm.yaml';
  const parsed = parseJobConfig(resource.config, address);
  const refusals = [...loadDiags.filter((d) => d.severity === 'error' && concerns(d)), ...parsed.diagnostics.filter((d) => d.severity === 'error')];
  if (refusals.length > 0 || parsed.config === undefined) {
    throw new AgentvmError('job.refused', `The job ${workload}/${job} cannot run: its desired state has ${refusals.length} error(s).`, { diagnostics: refusals, detail: 'Fix them (agentvm validate shows them all), commit, and run again.' });
  }
  const config = parsed.config;
  const files = await readInputs(opts.inputs ?? []);
  const outDir = opts.out === undefined ? null : await prepareOutDir(opts.out);

  // Not app/plan.js's helpers: importing plan would load the signature verifier and every provider, for nothing.
  const context: HostContext = { host, root: resolve(opts.root), paths: hostPaths(resolve(opts.root)), repo: state.repo };
  await refuseUnsignedImages(state, resource, context, config);
  const backend = new LocalStateBackend(context.paths);
  const settings = state.hosts.get(host)?.value.spec.microvm ?? {};
  if (settings.driver === 'firecracker') throw userError('job.driver-unsupported', `Host \`${host}\` asks for the firecracker driver, which this build does not ship yet.`, 'Set microvm.driver: qemu (the default) in hosts/<host>.yaml.');
  await refuseOverCapacity(context.paths, settings.maxConcurrentJobs ?? 2);

  const kernel = { path: imagePath(context, config.kernel), sha256: config.kernel.sha256 };
  const initrd = { path: imagePath(context, config.rootfs), sha256: config.rootfs.sha256 };
  const accel = await chooseAccel((settings.accel ?? 'auto') as AccelSetting, context, config, kernel.path, initrd.path);

  const runId = newRunId();
  const bootTimeoutMs = opts.bootTimeoutMs ?? DEFAULT_BOOT_TIMEOUT_MS;
  const timeoutMs = config.timeoutSeconds * 1000;
  const now = new Date();
  let record: JobRunRecord = {
    formatVersion: 1,
    id: runId,
    address,
    host,
    workload,
    job,
    owner: { pid: process.pid, startTicks: processStartTicks(process.pid) },
    startedAt: now.toISOString(),
    deadline: new Date(now.getTime() + bootTimeoutMs + timeoutMs + DEADLINE_SLACK_MS).toISOString(),
    netns: config.egress.length > 0 ? jobNetnsName(runId) : null,
    slot: null,
    vmmPid: null,
  };
  await createRunRecord(context.paths, record);
  liveRuns.set(runId, { netns: record.netns, runDir: runDirOf(context.paths, runId) });
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.once('exit', removeLiveRuns);
  }

  const diagnostics: Diagnostic[] = [];
  let network: JobNetwork | undefined;
  let egress: EgressPlan | undefined;
  let vm: EphemeralVmResult | undefined;
  let written: JobRunResult['resultFiles'] = [];
  let reason: TeardownReason = 'failed';
  let receipt: TeardownReceipt;
  try {
    await backend.appendAudit({ host, operation: 'job run', event: 'job.start', result: 'started', address, detail: `run ${runId} of ${workload}/${job} at ${state.commit ?? 'WORKTREE'} (${accel.accel}, ${config.egress.length === 0 ? 'no network' : `${config.egress.length} egress rule(s)`})` });
    const netns = record.netns;
    if (netns !== null) {
      record = { ...record, slot: await claimSlot(context.paths) };
      await updateRunRecord(context.paths, record);
      egress = planEgress(config.egress, await resolveHostnames(config), record.slot ?? 0);
      diagnostics.push(...egress.diagnostics.map((d) => ({ ...d, address })));
      const created = await createJobNetwork({ netns, plan: egress, marker: runDirOf(context.paths, runId) });
      diagnostics.push(...created.diagnostics.map((d) => ({ ...d, address })));
      network = created.network;
    }
    if (!hasErrors(diagnostics)) {
      vm = await runEphemeralVm({
        kernel,
        initrd,
        input: { files, args: opts.args ?? [] },
        command: argvCommand(config.command),
        vcpus: config.vcpus,
        memoryMiB: config.memoryMiB,
        timeoutMs,
        bootTimeoutMs,
        runDir: vmDirOf(context.paths, runId),
        driver: new QemuDriver({ accel: accel.accel }),
        name: `job-${runId}`,
        ...(network === undefined || egress === undefined ? {} : { network: { kind: 'tap' as const, tapName: network.tap, netns: network.netns }, guestNetwork: egress.guest }),
        ...(opts.onConsole === undefined ? {} : { onConsole: opts.onConsole }),
        ...(opts.signal === undefined ? {} : { signal: opts.signal }),
        onBooted: async (vmmPid) => {
          record = { ...record, vmmPid };
          await updateRunRecord(context.paths, record);
        },
      });
      diagnostics.push(...vm.diagnostics.map((d) => ({ ...d, address })));
      if (outDir !== null) written = await writeResults(outDir, vm.resultFiles);
      else written = describeResults(vm.resultFiles);
    }
    reason = vm === undefined ? 'failed' : opts.signal?.aborted ? 'interrupted' : vm.timedOut ? 'timed-out' : vm.exitCode !== null ? 'finished' : 'failed';
  } finally {
    network?.close();
    receipt = await teardownRun(context.paths, record, reason);
    liveRuns.delete(runId);
    await backend.appendAudit(receiptEntry(host, 'job run', receipt));
  }
  if (!receipt.ok) diagnostics.push(errorDiag('microvm.teardown-incomplete', `Run ${runId} was not torn down completely: ${receipt.problems.join('; ')}.`, { address, detail: 'Its record is kept: `agentvm plan` lists it as an orphan and `agentvm apply` retries.' }));

  const status: JobRunStatus = reason === 'finished' && vm?.exitCode === 0 && !hasErrors(diagnostics) ? 'succeeded' : reason === 'timed-out' ? 'timed-out' : reason === 'interrupted' ? 'interrupted' : 'failed';
  return {
    formatVersion: 1,
    runId,
    address,
    host,
    commit: state.commit,
    status,
    exitCode: vm?.exitCode ?? null,
    accel: { accel: accel.accel, reason: accel.reason },
    network:
      network === undefined || egress === undefined
        ? null
        : {
            netns: network.netns,
            guestAddress: egress.guest.address,
            gateway: egress.guest.gateway,
            allowed: egress.listeners.map((l) => ({ protocol: l.protocol, guest: `${l.guestTarget.address}:${l.guestTarget.port}`, upstream: `${l.upstream.address}:${l.upstream.port}` })),
          },
    resultFiles: written,
    outDir,
    console: vm?.console ?? '',
    bootMs: vm?.bootMs === undefined || vm.bootMs === null ? null : Math.round(vm.bootMs),
    durationMs: Math.round(performance.now() - started),
    teardown: receipt,
    diagnostics,
  };
}

/**
 * Refuses to boot images whose signature does not verify (issue 6). The verifier is loaded only for a job that signs
 * its images: it pulls in the Sigstore libraries. Fail closed: a signed job whose image is missing or does not match
 * its pin is refused here too, so no image can be swapped in after the check. The VM then boots only bytes that hash
 * to the pins, which are the digests the signatures were checked over.
 */
async function refuseUnsignedImages(state: DesiredState, resource: DesiredResource, context: HostContext, config: JobConfig): Promise<void> {
  const signs = (['kernel', 'rootfs'] as const).some((name) => typeof (resource.config[name] as { bundle?: unknown } | undefined)?.bundle === 'string');
  if (!signs) return;
  const { verifierFor } = await import('./signatures.js');
  const verify = verifierFor(state, resource);
  if (verify === undefined) return;
  const refusals: Diagnostic[] = [];
  const images = await pinnedImageBytes(context, config);
  if (images.length < 2) {
    const pins = (await verifyImages(context, config, resource.address)).diagnostics;
    refusals.push(...(pins.length > 0 ? pins : [errorDiag('microvm.image-digest-mismatch', 'An image of the job changed while it was being verified.', { address: resource.address, detail: 'Run the job again once the images are stable.' })]));
  }
  for (const image of images) refusals.push(...(await verify(image.bytes, image.name)).diagnostics.filter((d) => d.severity === 'error'));
  if (refusals.length > 0) {
    throw new AgentvmError('job.refused', `The job ${resource.address.slice('job.'.length).replace('.', '/')} cannot run: its images are not the signed ones.`, {
      diagnostics: refusals,
      detail: 'Nothing was booted. Put the signed images in place, or sign these images with the manifest\'s signer and commit their bundles.',
    });
  }
}

function parseTarget(target: string): { workload: string; job: string } {
  const [workload = '', job = '', ...rest] = target.split('/');
  if (rest.length > 0 || !NAME.test(workload) || !NAME.test(job)) {
    throw userError('job.target-invalid', `${JSON.stringify(target)} is not <workload>/<job>.`, 'Name the workload and one of its jobs (manifest spec.jobs[].name), e.g. `agentvm job run transcript-summarizer/summarize`.');
  }
  return { workload, job };
}

async function readInputs(paths: readonly string[]): Promise<Record<string, Buffer>> {
  const files = Object.create(null) as Record<string, Buffer>;
  for (const path of paths) {
    const name = basename(path);
    if (Object.hasOwn(files, name)) throw userError('job.input-duplicate', `Two inputs are named ${JSON.stringify(name)}.`, 'Inputs are placed in the job\'s working directory by base name; rename one.');
    let stat;
    try {
      stat = statSync(path);
    } catch (error) {
      throw userError('job.input-unreadable', `Input ${path} cannot be read (${(error as NodeJS.ErrnoException).code ?? 'error'}).`);
    }
    if (!stat.isFile()) throw userError('job.input-not-file', `Input ${path} is not a regular file.`, 'Pass files; for a directory, archive it first (tar) and pass the archive.');
    files[name] = await readFile(path);
  }
  return files;
}

async function prepareOutDir(out: string): Promise<string> {
  const dir = resolve(out);
  let entries: string[] | undefined;
  try {
    entries = readdirSync(dir);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code !== 'ENOENT') throw userError('job.out-unusable', `--out ${out} cannot be used (${code ?? 'error'}).`, 'Give a directory that does not exist yet, or an empty one.');
  }
  if (entries !== undefined && entries.length > 0) throw userError('job.out-not-empty', `--out ${out} is not empty.`, 'Results are never written over existing files: give a new or empty directory.');
  await mkdir(dir, { recursive: true });
  return dir;
}

function describeResults(files: Record<string, Buffer>): JobRunResult['resultFiles'] {
  return Object.keys(files)
    .sort()
    .map((name) => {
      const data = files[name] ?? Buffer.alloc(0);
      return { name, size: data.length, sha256: createHash('sha256').update(data).digest('hex') };
    });
}

/** Names are safe relative paths (the console parser rejects others); `wx` never overwrites. */
async function writeResults(dir: string, files: Record<string, Buffer>): Promise<JobRunResult['resultFiles']> {
  for (const name of Object.keys(files).sort()) {
    const path = join(dir, name);
    await mkdir(dirname(path), { recursive: true });
    await writeFile(path, files[name] ?? Buffer.alloc(0), { flag: 'wx', mode: 0o644 });
  }
  return describeResults(files);
}

async function refuseOverCapacity(paths: Parameters<typeof listRunRecords>[0], max: number): Promise<void> {
  const { records } = await listRunRecords(paths);
  const now = new Date();
  const running = records.filter((r) => runState(r, now, ownerAlive(r)) === 'running').length;
  if (running >= max) {
    throw userError('job.capacity', `This host already runs ${running} job(s), its limit (microvm.maxConcurrentJobs: ${max}).`, 'Wait for a run to finish, or raise microvm.maxConcurrentJobs in hosts/<host>.yaml.');
  }
}

async function chooseAccel(setting: AccelSetting, context: HostContext, config: JobConfig, kernelPath: string, initrdPath: string) {
  if (setting === 'auto') {
    // The probe boots the image files directly: only when they are the pinned ones.
    const images = await verifyImages(context, config);
    if (images.status !== 'verified') return { accel: 'tcg' as const, reason: 'the images did not verify, so no KVM probe was booted.', cached: false };
  }
  return resolveAccel({ setting, kernelPath, initrdPath, cacheFile: join(context.paths.cache, 'microvm-accel.json') });
}

/** Hostname rules resolved on the host, now (IPv4 only); loopback names and literals need no lookup. */
async function resolveHostnames(config: JobConfig): Promise<Map<string, string[]>> {
  const out = new Map<string, string[]>();
  for (const rule of config.egress) {
    if (out.has(rule.host) || isLoopbackHost(rule.host) || /^[0-9.]+$/.test(rule.host)) continue;
    try {
      out.set(rule.host, (await lookup(rule.host, { all: true, family: 4 })).map((a) => a.address));
    } catch {
      out.set(rule.host, []);
    }
  }
  return out;
}
