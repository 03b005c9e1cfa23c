// Use case: `agentvm job run <workload>/<job>` — one Tier-2 job in an ephemeral microVM. Boots the job definition
// that apply installed on this host (ADR 0009: a run never reads the desired-state repository, so what runs is what
// was reviewed and applied), registers the run under the host root (owner record: this process), gives the VM a
// default-deny network namespace when the contract allowlists egress (none at all otherwise), boots it with the
// inputs, streams its console, collects its exit status and result files, and tears everything down — writing a
// receipt to the audit log.
//
// Invariants:
// - Teardown runs whatever happens after the run is registered (`finally`), and a receipt is appended for it. If
//   this process is SIGKILLed, the run's record names everything left behind: the next `plan` reports the run as
//   an orphan and `apply` reaps it (providers/microvm/provider.ts).
// - The core never prints: console lines go to `onConsole`; the command decides where they show.
// - Result files are written only into a fresh (absent or empty) --out directory, never over an existing file.
// - Only an intact definition runs: its content must still hash to the digest apply recorded. A job whose tier
//   requires signed images runs only pins whose signatures apply verified; the VM boots only bytes that hash to
//   those pins (ephemeral-vm.ts reads them once).
// - Start-up matters (issue 5 measures this path against a bare QEMU boot): nothing here imports the desired-state
//   loader, zod, git or the Sigstore libraries.

import { spawnSync } from 'node:child_process';
import { lookup } from 'node:dns/promises';
import { readdirSync, rmSync, statSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { createHash } from 'node:crypto';
import { isIP } from 'node:net';
import { AgentvmError, errorDiag, hasErrors, userError, type Diagnostic } from '../diagnostics/index.js';
import { resolveAccel, type AccelSetting } from '../providers/microvm/accel.js';
import { isLoopbackHost, JOB_TAP, planEgress, type EgressPlan } from '../providers/microvm/egress.js';
import { runEphemeralVm, type EphemeralVmResult } from '../providers/microvm/ephemeral-vm.js';
import {
  imagePath,
  jobDefinitionDigest,
  listInstalledDefinitions,
  parseJobConfig,
  readInstalledDefinition,
  signaturesCoverPins,
  verifyImages,
  type JobConfig,
} from '../providers/microvm/job-definition.js';
import { jobGuestFiles } from '../providers/microvm/job-guest.js';
import { createJobNetwork, JOB_PROXY_PORT, jobNetnsName, type JobNetwork } from '../providers/microvm/job-network.js';
import type { EgressProxy } from '../egress/proxy.js';
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
// The audit log and the host paths only: the state backend (lockfile, write-ahead log, leases) is not on the run path.
import { hostPaths, type HostPaths } from '../model/index.js';
import { openStateBackend } from './state-backend.js';
import { QemuDriver } from '../providers/microvm/qemu.js';
import {
  receiptDetail,
  teardownRun,
  type TeardownReason,
  type TeardownReceipt,
} from '../providers/microvm/teardown.js';
import type { JobRunResultDocument } from '../generated/job-run-result.js';

export interface JobRunOptions {
  /** When given, the installed definition must have been applied for this host. */
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

/** The --json result; its type is generated from the schema (schemas/ are the source of truth). */
export type JobRunResult = JobRunResultDocument;

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
  const address = `job.${workload}.${job}`;
  const root = resolve(opts.root);
  const paths = hostPaths(root);
  const { installed, host, config } = await installedJob(root, workload, job, opts.host);
  // Declared programs (pins checked now, before anything boots), read-only data copies, and the confinement marker.
  const guest = await jobGuestFiles(root, config, address);
  if (hasErrors(guest.diagnostics))
    throw new AgentvmError(
      'job.refused',
      `The job ${workload}/${job} cannot run: its declared programs or data do not check out.`,
      {
        diagnostics: guest.diagnostics,
        detail: 'Nothing was booted. Each problem below says how to fix it.',
      },
    );
  const files = await readInputs(opts.inputs ?? []);
  const outDir = opts.out === undefined ? null : await prepareOutDir(opts.out);

  // The run's records go where the host's state lives (local audit file, or PostgreSQL under a fleet backend).
  const backend = openStateBackend(root);
  const settings = config.microvm;
  if (settings.driver === 'firecracker')
    throw userError(
      'job.driver-unsupported',
      `Host \`${host}\` asks for the firecracker driver, which this build does not ship yet.`,
      'Set microvm.driver: qemu (the default) in hosts/<host>.yaml, then apply.',
    );
  await refuseOverCapacity(paths, settings.maxConcurrentJobs);

  const kernel = { path: imagePath({ root }, config.kernel), sha256: config.kernel.sha256 };
  // A disk job boots its initramfs, which mounts the rootfs disk (attached read-only) and runs the job in it.
  const bootImage =
    config.rootfs.format === 'disk' && config.initramfs !== undefined ? config.initramfs : config.rootfs;
  const initrd = { path: imagePath({ root }, bootImage), sha256: bootImage.sha256 };
  const disk =
    bootImage === config.rootfs
      ? undefined
      : { path: imagePath({ root }, config.rootfs), sha256: config.rootfs.sha256 };
  const accel = await chooseAccel(settings.accel, paths, kernel, initrd);

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
  await createRunRecord(paths, record);
  liveRuns.set(runId, { netns: record.netns, runDir: runDirOf(paths, runId) });
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.once('exit', removeLiveRuns);
  }

  const diagnostics: Diagnostic[] = [...guest.diagnostics];
  let network: JobNetwork | undefined;
  let egress: EgressPlan | undefined;
  let proxy: EgressProxy | undefined;
  let vm: EphemeralVmResult | undefined;
  let written: JobRunResult['resultFiles'] = [];
  let reason: TeardownReason = 'failed';
  let receipt: TeardownReceipt;
  // Work that must be done before the guest runs goes side by side with the image preparation in runEphemeralVm
  // (ADR 0028): the start record, and the network (namespace, tap, ruleset, proxies). The VMM is started only once
  // both have succeeded (`beforeBoot`), so the guest never runs before its network is fully enforced.
  let creating: Promise<boolean> | undefined;
  let auditStarted: Promise<unknown> | undefined;
  try {
    const netns = record.netns;
    if (netns !== null) {
      record = { ...record, slot: await claimSlot(paths) };
      await updateRunRecord(paths, record);
      // TCP destinations by name go through the egress proxy only (resolved per request, by the host's resolvers, and
      // screened); address literals, host-loopback services and UDP keep their per-destination relays (ADR 0006).
      const relayed = config.egress.filter((e) => e.protocol === 'udp' || isIP(e.host) !== 0 || isLoopbackHost(e.host));
      const plan = planEgress(relayed, await resolveHostnames({ ...config, egress: relayed }), record.slot ?? 0);
      egress = plan;
      diagnostics.push(...plan.diagnostics.map((d) => ({ ...d, address })));
      // The run's way out by name: the same proxy logic as the services' (rules, resolver, rebinding screen, SNI,
      // audited refusals), served in this process on the run's own listener — the run is the caller. Loaded only
      // for a run with egress: a run without network does not pay for the proxy's modules (TLS, resolver).
      const [{ EgressProxy }, { hostAddresses }, { egressPaths }] = await Promise.all([
        import('../egress/proxy.js'),
        import('../egress/address-class.js'),
        import('../egress/paths.js'),
      ]);
      const runProxy = new EgressProxy({ host, auditFile: egressPaths(root).audit, ownAddresses: hostAddresses() });
      proxy = runProxy;
      const caller = {
        id: `${address}.${runId}`,
        workload,
        entries: config.egress.filter((e) => e.protocol === 'tcp').map((e) => ({ host: e.host, port: e.port })),
      };
      // The proxy serves only connections that arrive after the boot: its rules load while the network is made.
      // `creating` settles only once the network's creation has (teardown must not race it).
      const reloaded = runProxy.reload({ resolvers: config.microvm.resolvers ?? [], callers: [] });
      reloaded.catch(() => undefined);
      creating = createJobNetwork({
        netns,
        plan,
        marker: runDirOf(paths, runId),
        egressProxy: { proxy: runProxy, caller },
      }).then(async (created) => {
        diagnostics.push(...created.diagnostics.map((d) => ({ ...d, address })));
        network = created.network;
        await reloaded;
        return created.network !== undefined;
      });
      creating.catch(() => undefined);
    }
    // Appended while the network's commands run (a local append fsyncs on this thread).
    const startRecord = backend.appendAudit({
      host,
      operation: 'job run',
      event: 'job.start',
      result: 'started',
      address,
      detail: `run ${runId} of ${workload}/${job} as applied from ${installed.commit ?? 'an uncommitted worktree'} (${accel.accel}, ${config.egress.length === 0 ? 'no network' : `${config.egress.length} egress rule(s)`})`,
    });
    auditStarted = startRecord;
    // Awaited below (a failed start record fails the run as before); this only keeps it from being unhandled meanwhile.
    startRecord.catch(() => undefined);
    const beforeBoot = Promise.all([startRecord, creating ?? true]).then(([, networkUp]) => networkUp);
    if (!hasErrors(diagnostics)) {
      vm = await runEphemeralVm({
        kernel,
        initrd,
        ...(disk === undefined ? {} : { disk }),
        input: { files, args: opts.args ?? [] },
        command: argvCommand(config.command),
        guestFiles: guest.entries,
        vcpus: config.vcpus,
        memoryMiB: config.memoryMiB,
        timeoutMs,
        bootTimeoutMs,
        runDir: vmDirOf(paths, runId),
        driver: new QemuDriver({ accel: accel.accel }),
        // Images that already hashed to their pins are not read and hashed again while unchanged (ADR 0028).
        imageStore: join(paths.cache, 'microvm-images'),
        name: `job-${runId}`,
        beforeBoot,
        ...(netns === null || egress === undefined
          ? {}
          : {
              network: { kind: 'tap' as const, tapName: JOB_TAP, netns },
              guestNetwork: { ...egress.guest, proxyPort: JOB_PROXY_PORT },
            }),
        ...(opts.onConsole === undefined ? {} : { onConsole: opts.onConsole }),
        ...(opts.signal === undefined ? {} : { signal: opts.signal }),
        onBooted: async (vmmPid) => {
          record = { ...record, vmmPid };
          await updateRunRecord(paths, record);
        },
      });
      diagnostics.push(...vm.diagnostics.map((d) => ({ ...d, address })));
      if (outDir !== null) written = await writeResults(outDir, vm.resultFiles);
      else written = describeResults(vm.resultFiles);
    }
    reason =
      vm === undefined
        ? 'failed'
        : opts.signal?.aborted
          ? 'interrupted'
          : vm.timedOut
            ? 'timed-out'
            : vm.exitCode !== null
              ? 'finished'
              : 'failed';
    await startRecord;
  } finally {
    // Work still in flight (the run failed before its boot) is finished first: teardown must find all of the network,
    // and the audit log must show the start record before the teardown record.
    await Promise.all([creating?.catch(() => false), auditStarted?.catch(() => undefined)]);
    network?.close();
    await proxy?.close();
    receipt = await teardownRun(paths, record, reason);
    liveRuns.delete(runId);
    await backend.appendAudit({
      host,
      operation: 'job run',
      event: 'job.teardown',
      result: receipt.ok ? 'ok' : 'failed',
      address: receipt.address,
      detail: receiptDetail(receipt),
    });
  }
  if (!receipt.ok)
    diagnostics.push(
      errorDiag(
        'microvm.teardown-incomplete',
        `Run ${runId} was not torn down completely: ${receipt.problems.join('; ')}.`,
        { address, detail: 'Its record is kept: `agentvm plan` lists it as an orphan and `agentvm apply` retries.' },
      ),
    );

  const status: JobRunStatus =
    reason === 'finished' && vm?.exitCode === 0 && !hasErrors(diagnostics)
      ? 'succeeded'
      : reason === 'timed-out'
        ? 'timed-out'
        : reason === 'interrupted'
          ? 'interrupted'
          : 'failed';
  return {
    formatVersion: 1,
    runId,
    address,
    host,
    commit: installed.commit ?? null,
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
            allowed: egress.listeners.map((l) => ({
              protocol: l.protocol,
              guest: `${l.guestTarget.address}:${l.guestTarget.port}`,
              upstream: `${l.upstream.address}:${l.upstream.port}`,
            })),
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
 * The definition apply installed for `<workload>/<job>` under the host root, checked: present, applied for this host,
 * intact (its content hashes to its digest), well-formed, and — when its tier requires signed images — with both
 * pins verified by apply. Anything else is refused before a run is registered.
 */
async function installedJob(root: string, workload: string, job: string, wantHost: string | undefined) {
  const address = `job.${workload}.${job}`;
  const installed = await readInstalledDefinition({ root }, workload, job);
  if (installed === undefined) {
    const jobs = (await listInstalledDefinitions({ root })).map((a) => a.slice('job.'.length).replace('.', '/'));
    throw userError(
      'job.not-installed',
      `No job ${workload}/${job} is installed under ${root}.`,
      `A run boots the definition \`agentvm apply\` installed (<root>/var/lib/agentvm/jobs): apply the desired state that defines it first. ${jobs.length > 0 ? `Installed here: ${jobs.join(', ')}.` : 'No job is installed here yet.'}`,
    );
  }
  const host = installed.host ?? wantHost;
  if (host === undefined)
    throw userError(
      'job.definition-outdated',
      `The installed definition of ${workload}/${job} does not say which host it was applied for.`,
      'It was installed by an older agentvm: run `agentvm apply` again, or pass --host.',
    );
  if (wantHost !== undefined && installed.host !== undefined && installed.host !== wantHost) {
    throw userError(
      'job.host-mismatch',
      `The job ${workload}/${job} under this root was applied for host \`${installed.host}\`, not \`${wantHost}\`.`,
      `Pass --host ${installed.host}, or give the --root of host ${wantHost}.`,
    );
  }
  if (jobDefinitionDigest(installed.config) !== installed.digest) {
    throw new AgentvmError(
      'job.definition-modified',
      `The installed definition of ${workload}/${job} was changed outside agentvm: its content no longer matches the digest apply recorded.`,
      {
        detail:
          'Nothing was booted. `agentvm plan` shows it as drift; `agentvm apply` reinstalls the reviewed definition.',
      },
    );
  }
  const parsed = parseJobConfig(installed.config, address);
  if (parsed.config === undefined) {
    throw new AgentvmError(
      'job.refused',
      `The job ${workload}/${job} cannot run: its installed definition has ${parsed.diagnostics.length} error(s).`,
      {
        diagnostics: parsed.diagnostics,
        detail: 'Fix the manifest (agentvm validate shows every problem), commit, and apply.',
      },
    );
  }
  if (!signaturesCoverPins(installed, parsed.config)) {
    const images = await verifyImages({ root }, parsed.config, address);
    throw new AgentvmError(
      'job.images-unverified',
      `The job ${workload}/${job} cannot run: its tier requires signed images, and apply has not verified the signatures of the pinned ones.`,
      {
        diagnostics: images.diagnostics,
        detail:
          images.status === 'verified'
            ? 'Nothing was booted. The images arrived after apply: `agentvm plan` shows the update, and `agentvm apply` verifies their signatures.'
            : 'Nothing was booted. Put the pinned images in place (see below), then `agentvm plan` shows the update and `agentvm apply` verifies their signatures.',
      },
    );
  }
  return { installed, host, config: parsed.config };
}

function parseTarget(target: string): { workload: string; job: string } {
  const [workload = '', job = '', ...rest] = target.split('/');
  if (rest.length > 0 || !NAME.test(workload) || !NAME.test(job)) {
    throw userError(
      'job.target-invalid',
      `${JSON.stringify(target)} is not <workload>/<job>.`,
      'Name the workload and one of its jobs (manifest spec.jobs[].name), e.g. `agentvm job run transcript-summarizer/summarize`.',
    );
  }
  return { workload, job };
}

async function readInputs(paths: readonly string[]): Promise<Record<string, Buffer>> {
  const files = Object.create(null) as Record<string, Buffer>;
  for (const path of paths) {
    const name = basename(path);
    if (Object.hasOwn(files, name))
      throw userError(
        'job.input-duplicate',
        `Two inputs are named ${JSON.stringify(name)}.`,
        "Inputs are placed in the job's working directory by base name; rename one.",
      );
    let stat;
    try {
      stat = statSync(path);
    } catch (error) {
      throw userError(
        'job.input-unreadable',
        `Input ${path} cannot be read (${(error as NodeJS.ErrnoException).code ?? 'error'}).`,
      );
    }
    if (!stat.isFile())
      throw userError(
        'job.input-not-file',
        `Input ${path} is not a regular file.`,
        'Pass files; for a directory, archive it first (tar) and pass the archive.',
      );
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
    if (code !== 'ENOENT')
      throw userError(
        'job.out-unusable',
        `--out ${out} cannot be used (${code ?? 'error'}).`,
        'Give a directory that does not exist yet, or an empty one.',
      );
  }
  if (entries !== undefined && entries.length > 0)
    throw userError(
      'job.out-not-empty',
      `--out ${out} is not empty.`,
      'Results are never written over existing files: give a new or empty directory.',
    );
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
    throw userError(
      'job.capacity',
      `This host already runs ${running} job(s), its limit (microvm.maxConcurrentJobs: ${max}).`,
      'Wait for a run to finish, or raise microvm.maxConcurrentJobs in hosts/<host>.yaml.',
    );
  }
}

async function chooseAccel(
  setting: AccelSetting,
  paths: HostPaths,
  kernel: { path: string; sha256: string },
  initrd: { path: string; sha256: string },
) {
  return resolveAccel({
    setting,
    kernelPath: kernel.path,
    initrdPath: initrd.path,
    cacheFile: join(paths.cache, 'microvm-accel.json'),
    // The probe boots private copies of the bytes that hashed to the pins, like the job itself (ephemeral-vm.ts):
    // never the image files, which could change between the check and the boot. Only on a cache miss.
    prepareProbe: async () => {
      const dir = await mkdtemp(join(tmpdir(), 'agentvm-accel-probe-'));
      const dispose = (): Promise<void> => rm(dir, { recursive: true, force: true });
      try {
        const copies: string[] = [];
        for (const [name, pin] of [
          ['vmlinuz', kernel],
          ['initrd', initrd],
        ] as const) {
          const bytes = await readFile(pin.path);
          if (createHash('sha256').update(bytes).digest('hex') !== pin.sha256) {
            await dispose();
            return undefined;
          }
          await writeFile(join(dir, name), bytes, { mode: 0o600 });
          copies.push(join(dir, name));
        }
        return { kernelPath: copies[0]!, initrdPath: copies[1]!, dispose };
      } catch {
        await dispose();
        return undefined;
      }
    },
  });
}

/** Hostname rules resolved on the host, now (IPv4 only); loopback names and literals need no lookup. */
async function resolveHostnames(config: JobConfig): Promise<Map<string, string[]>> {
  const out = new Map<string, string[]>();
  for (const rule of config.egress) {
    if (out.has(rule.host) || isLoopbackHost(rule.host) || /^[0-9.]+$/.test(rule.host)) continue;
    try {
      out.set(
        rule.host,
        (await lookup(rule.host, { all: true, family: 4 })).map((a) => a.address),
      );
    } catch {
      out.set(rule.host, []);
    }
  }
  return out;
}
