#!/usr/bin/env node
// Benchmark of `agentvm job run` on the BUILT CLI (run `npm run build` first): boot-to-teardown time of a job that
// does nothing (`true`), against a bare `qemu-system-x86_64` boot of the same kernel and initramfs, stopped when the
// guest reports EXIT (exactly when agentvm stops it)
// with the same job on the kernel command line, measured in the same run, interleaved so that load from other
// processes hits both alike. A third figure runs the job with an egress allowlist (network namespace, tap,
// nftables, proxy). Targets (issues 5 and 20): agentvm's overhead under 25% of the bare boot, under 35% with egress,
// with one core kept busy by another process.
//
//   node bench/job-run.js [--runs 7] [--busy N] [--json]
//
// --busy N: N extra processes spin on a core each for the whole measured run; default 1, the condition issue 20's
//   targets are stated for ("with another process keeping one core busy"); --busy 0 for a quiet-machine figure.
//   Spinners and both VMMs run in sessions of their own: with autogroup scheduling (Linux's default for desktops and
//   many servers) a session is a scheduling group, and a bare QEMU sharing this script's group with a spinner would
//   be slowed down where agentvm's VMM (its own session) is not.
//   Every figure also reports the 1-minute load average at its first and last run.
//
// Needs root, qemu-system-x86, busybox-static, iproute2 and nftables (as test/job-run.test.ts). TCG unless the
// host sets otherwise; the bare boot uses the same accelerator and the same tsc_early_khz as the QEMU driver.

import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { BIN, ROOT, git } from './lib.js';

function parseArgs(argv) {
  const opts = { runs: 7, json: false, busy: 1 };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--runs') opts.runs = Number(argv[++i]);
    else if (a === '--json') opts.json = true;
    else if (a === '--busy') opts.busy = Number(argv[++i]);
    else throw new Error(`unknown argument ${a}`);
  }
  if (!Number.isSafeInteger(opts.runs) || opts.runs < 1) throw new Error('--runs must be >= 1');
  if (!Number.isSafeInteger(opts.busy) || opts.busy < 0) throw new Error('--busy must be >= 0');
  return opts;
}

function testImage() {
  const out = execFileSync(join(ROOT, 'scripts/build-test-image.sh'), [], { encoding: 'utf8' });
  const values = Object.fromEntries(
    out
      .split('\n')
      .filter((l) => l.includes('='))
      .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
  );
  return {
    kernel: values.AGENTVM_KERNEL,
    kernelSha256: values.AGENTVM_KERNEL_SHA256,
    initrd: values.AGENTVM_INITRD,
    initrdSha256: values.AGENTVM_INITRD_SHA256,
  };
}

/** A desired-state repo with one host and two job workloads (no network; one loopback egress rule), and a root. */
function fixture(base, image) {
  const source = join(base, 'source');
  mkdirSync(source);
  writeFileSync(join(source, 'README.md'), 'bench\n');
  git(source, 'init', '-q', '-b', 'main');
  git(source, 'add', '-A');
  git(source, 'commit', '-q', '-m', 'source');
  const commit = git(source, 'rev-parse', 'HEAD').trim();
  const repo = join(base, 'repo');
  const files = {
    'hosts/bench.yaml':
      'apiVersion: agentvm.dev/v1alpha1\nkind: Host\nmetadata:\n  name: bench\nspec:\n  workloads: [noop, noop-net]\n  microvm:\n    accel: tcg\n',
  };
  for (const [name, egress] of [
    ['noop', ''],
    ['noop-net', '  egress:\n    - host: 127.0.0.1\n      port: 9\n'],
  ]) {
    files[`workloads/${name}/contract.yaml`] =
      `apiVersion: agentvm.dev/v1alpha1\nkind: WorkloadContract\nmetadata:\n  name: ${name}\nspec:\n  owner: bench@example.com\n  riskTier: low\n  substrate: job\n  tools: []\n${egress}`;
    files[`workloads/${name}/manifest.yaml`] =
      `apiVersion: agentvm.dev/v1alpha1\nkind: WorkloadManifest\nmetadata:\n  name: ${name}\nspec:\n  archetype: git-release\n  source:\n    git:\n      repo: ../source\n      commit: ${commit}\n  jobs:\n    - name: run\n` +
      `      kernel: { file: vmlinuz, sha256: ${image.kernelSha256} }\n      rootfs: { file: initramfs.cpio.gz, sha256: ${image.initrdSha256}, format: initramfs }\n      command: [sh, -c, 'true']\n      timeoutSeconds: 60\n`;
  }
  for (const [path, text] of Object.entries(files)) {
    mkdirSync(join(repo, path, '..'), { recursive: true });
    writeFileSync(join(repo, path), text);
  }
  git(repo, 'init', '-q', '-b', 'main');
  git(repo, 'add', '-A');
  git(repo, 'commit', '-q', '-m', 'bench jobs');
  const root = join(base, 'root');
  mkdirSync(join(root, 'var/lib/agentvm/images'), { recursive: true });
  copyFileSync(image.kernel, join(root, 'var/lib/agentvm/images/vmlinuz'));
  copyFileSync(image.initrd, join(root, 'var/lib/agentvm/images/initramfs.cpio.gz'));
  return { repo, root };
}

function timed(command, args) {
  const t = process.hrtime.bigint();
  const r = spawnSync(command, args, { encoding: 'utf8', maxBuffer: 1 << 26 });
  const seconds = Number(process.hrtime.bigint() - t) / 1e9;
  return { seconds, status: r.status, output: `${r.stdout}${r.stderr}` };
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  if (process.getuid?.() !== 0) throw new Error('job runs need root (namespaces, taps)');
  const image = testImage();
  const { hostTscKhz } = await import(pathToFileURL(join(ROOT, 'dist/providers/microvm/qemu.js')).href);
  const tsc = await hostTscKhz();
  const base = mkdtempSync(join(tmpdir(), 'agentvm-bench-job-'));
  const cleanup = () => rmSync(base, { recursive: true, force: true });
  process.on('SIGINT', () => {
    cleanup();
    process.exit(130);
  });
  try {
    const { repo, root } = fixture(base, image);
    // A run boots the definition apply installed (ADR 0009); installing it is not part of the measured path.
    const applied = spawnSync(
      process.execPath,
      [BIN, 'apply', '--auto-approve', '--repo', repo, '--root', root, '--host', 'bench'],
      { encoding: 'utf8' },
    );
    if (applied.status !== 0)
      throw new Error(`agentvm apply failed (exit ${applied.status}):\n${applied.stdout}${applied.stderr}`);
    // The bare boot stops the way agentvm does: the moment the guest's EXIT record arrives, QEMU is killed (the
    // image's own poweroff comes only 3 s later, as a fallback). Same kernel, initramfs, accelerator and cmdline.
    const bare = () =>
      new Promise((resolve, reject) => {
        const nonce = randomBytes(16).toString('hex');
        const append = [
          'console=ttyS0',
          'panic=-1',
          ...(tsc === null ? [] : [`tsc_early_khz=${tsc}`]),
          `agentvm.nonce=${nonce}`,
          `agentvm.job=${Buffer.from('true\n').toString('base64')}`,
          'loglevel=1',
          'edd=off',
        ];
        const t = process.hrtime.bigint();
        const child = spawn(
          'qemu-system-x86_64',
          [
            '-M',
            'microvm,x-option-roms=off,isa-serial=on,rtc=on',
            '-accel',
            'tcg',
            '-m',
            '256',
            '-smp',
            '1',
            '-nodefaults',
            '-no-user-config',
            '-nographic',
            '-serial',
            'stdio',
            '-kernel',
            image.kernel,
            '-initrd',
            image.initrd,
            '-append',
            append.join(' '),
            '-no-reboot',
          ],
          // Its own session, as agentvm's driver starts the VMM (driver.spawnVmm): with the kernel's autogroup
          // scheduling a session is a scheduling group, so both VMMs compete for the CPU on the same terms.
          { stdio: ['ignore', 'pipe', 'pipe'], detached: true },
        );
        let out = '';
        let sawExit = false;
        child.stdout.setEncoding('utf8').on('data', (d) => {
          out += d;
          if (!sawExit && out.includes(`AGENTVM-EXIT ${nonce} 0`)) {
            sawExit = true;
            child.kill('SIGKILL');
          }
        });
        child.stderr.on('data', () => {});
        child.on('close', () => {
          const seconds = Number(process.hrtime.bigint() - t) / 1e9;
          if (!sawExit) reject(new Error(`bare boot failed:\n${out.slice(-2000)}`));
          else resolve(seconds);
        });
      });
    // Wall time of the whole CLI process, and the run as agentvm measures it (desired state read → teardown done).
    const inProcess = { job: [], jobNet: [] };
    const agentvm = (target, key) => {
      const r = timed(process.execPath, [BIN, 'job', 'run', target, '--root', root, '--json']);
      if (r.status !== 0)
        throw new Error(`agentvm job run ${target} failed (exit ${r.status}):\n${r.output.slice(-2000)}`);
      if (key !== undefined) inProcess[key].push(JSON.parse(r.output).durationMs / 1000);
      return r.seconds;
    };
    // Warm-up: page cache, the CLI's first start.
    await bare();
    agentvm('noop/run');
    const times = { bare: [], job: [], jobNet: [] };
    const loads = { bare: [], job: [], jobNet: [] };
    // Spinners: each keeps one core busy until killed (a plain busy loop, no I/O), in its own session like any other
    // program on the machine (not in this script's scheduling group, where it would slow down only the bare boot's
    // parent and the CLI). Killed on any exit of this script.
    const spinners = Array.from({ length: opts.busy }, () =>
      spawn(process.execPath, ['-e', 'for (;;) {}'], { stdio: 'ignore', detached: true }),
    );
    const stopSpinners = () => {
      for (const s of spinners) s.kill('SIGKILL');
    };
    process.once('exit', stopSpinners);
    try {
      for (let i = 0; i < opts.runs; i++) {
        loads.bare.push(loadavg()[0]);
        times.bare.push(await bare());
        loads.job.push(loadavg()[0]);
        times.job.push(agentvm('noop/run', 'job'));
        loads.jobNet.push(loadavg()[0]);
        times.jobNet.push(agentvm('noop-net/run', 'jobNet'));
      }
    } finally {
      stopSpinners();
    }
    const loadOf = (key) => `load ${loads[key][0].toFixed(1)}→${loads[key].at(-1).toFixed(1)}`;
    const m = {
      bare: median(times.bare),
      job: median(times.job),
      jobNet: median(times.jobNet),
      runJob: median(inProcess.job),
      runJobNet: median(inProcess.jobNet),
    };
    const overhead = (x) => (x / m.bare - 1) * 100;
    const result = {
      runs: opts.runs,
      bareQemuSeconds: m.bare,
      jobRunSeconds: m.job,
      jobRunWithEgressSeconds: m.jobNet,
      overheadPercent: overhead(m.job),
      overheadWithEgressPercent: overhead(m.jobNet),
      inProcessSeconds: m.runJob,
      inProcessWithEgressSeconds: m.runJobNet,
      targetMet: overhead(m.job) < 25,
      egressTargetMet: overhead(m.jobNet) < 35,
      busyProcesses: opts.busy,
      loadAverage: loads,
      samples: { ...times, inProcess: inProcess.job, inProcessWithEgress: inProcess.jobNet },
    };
    if (opts.json) console.log(JSON.stringify(result, null, 2));
    else {
      console.log(
        `bare qemu-system-x86_64 boot → job EXIT, killed ${m.bare.toFixed(3)} s  (median of ${opts.runs}; ${Math.min(...times.bare).toFixed(3)}–${Math.max(...times.bare).toFixed(3)}; ${loadOf('bare')}; ${opts.busy} busy-loop process(es))`,
      );
      console.log(
        `agentvm job run (no network) boot → teardown     ${m.job.toFixed(3)} s  ${overhead(m.job) >= 0 ? '+' : ''}${overhead(m.job).toFixed(1)}%  (${Math.min(...times.job).toFixed(3)}–${Math.max(...times.job).toFixed(3)}; ${loadOf('job')})`,
      );
      console.log(
        `agentvm job run (egress: netns+tap+nft+proxy)    ${m.jobNet.toFixed(3)} s  ${overhead(m.jobNet) >= 0 ? '+' : ''}${overhead(m.jobNet).toFixed(1)}%  (${Math.min(...times.jobNet).toFixed(3)}–${Math.max(...times.jobNet).toFixed(3)}; ${loadOf('jobNet')})`,
      );
      console.log(
        `… of which inside agentvm (definition read → teardown): ${m.runJob.toFixed(3)} s (${overhead(m.runJob) >= 0 ? '+' : ''}${overhead(m.runJob).toFixed(1)}%); with egress ${m.runJobNet.toFixed(3)} s; the rest is Node + CLI start`,
      );
      console.log(
        `target (CLI overhead under 25%; under 35% with egress): ${result.targetMet ? 'met' : 'NOT met'}; with egress ${result.egressTargetMet ? 'met' : 'NOT met'}`,
      );
    }
  } finally {
    cleanup();
  }
}

main().catch((error) => {
  console.error(error.message ?? error);
  process.exit(1);
});
