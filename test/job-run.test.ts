// System test of `agentvm job run` and job reconciliation: REAL QEMU microVMs (TCG), real network namespaces, taps
// and nftables rulesets, real host services on loopback, and the built CLI, against a desired-state repository built
// with gitdir() and a temporary host root holding the test image. After every test it asserts that no VMM or helper
// process, no namespace, no tap device, and no run or scratch directory is left.
// Needs root, qemu-system-x86, busybox-static, iproute2 and nftables, and `npm run build`; without them it fails
// under CI=true and skips otherwise.

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import { networkInterfaces, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { JobRunResult } from '../src/app/job-run.js';
import type { Plan } from '../src/engine/plan.js';
import { resolveAccel } from '../src/providers/microvm/accel.js';
import { guestAddressing } from '../src/providers/microvm/egress.js';
import { agentvm, assertBuilt, BIN, ROOT } from './support/cli.js';
import { gitdir, type GitDir } from './support/gitdir.js';
import { processesMentioning } from './support/processes.js';
import { jobRunPrerequisites, netnsNames, type TestImage } from './support/test-image.js';

const HOW_TO =
  'Needs root and: apt-get install qemu-system-x86 busybox-static e2fsprogs iproute2 nftables && scripts/build-test-image.sh && npm run build';
const inCi = process.env.CI === 'true';

const image = jobRunPrerequisites();
const missing = typeof image === 'string' ? image : undefined;
if (missing !== undefined && !inCi) console.warn(`job-run: skipping: ${missing}. ${HOW_TO}`);

describe('job run: available in CI', () => {
  it.runIf(inCi)('root, qemu, iproute2, nftables and the test image are available on this machine', () => {
    expect(missing, `${missing ?? ''}. ${HOW_TO}`).toBeUndefined();
  });
});

/** A host service on all addresses that answers every connection with `reply` and closes. */
async function service(reply: string): Promise<{ port: number; close: () => Promise<void> }> {
  const server = net.createServer((socket) => socket.end(reply));
  await new Promise<void>((resolve) => server.listen({ host: '0.0.0.0', port: 0 }, resolve));
  const port = (server.address() as net.AddressInfo).port;
  return { port, close: () => new Promise((resolve) => server.close(() => resolve())) };
}

/** One of the host's own non-loopback IPv4 addresses (a destination the guest must not reach). */
function hostAddress(): string {
  for (const addresses of Object.values(networkInterfaces())) {
    for (const a of addresses ?? []) if (a.family === 'IPv4' && !a.internal) return a.address;
  }
  return '192.0.2.123';
}

function hostTaps(): string[] {
  return spawnSync('ip', ['-o', 'link', 'show', 'type', 'tun'], { encoding: 'utf8' })
    .stdout.split('\n')
    .filter((l) => l.includes('avm'));
}

/** The CLI as a child we can signal, with a promise for a line of its stdout. */
function startCli(args: string[]): {
  child: ChildProcess;
  output: () => string;
  waitFor: (text: string, ms?: number) => Promise<void>;
  done: Promise<number | null>;
} {
  const child = spawn(process.execPath, [BIN, ...args], {
    cwd: ROOT,
    env: { ...process.env, NO_COLOR: '1' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  const waiters: Array<{ text: string; resolve: () => void }> = [];
  child.stdout?.setEncoding('utf8').on('data', (d: string) => {
    out += d;
    for (const w of waiters) if (out.includes(w.text)) w.resolve();
  });
  child.stderr?.setEncoding('utf8').on('data', (d: string) => (out += d));
  const done = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  return {
    child,
    output: () => out,
    done,
    waitFor: (text, ms = 60_000) =>
      new Promise<void>((resolve, reject) => {
        if (out.includes(text)) return resolve();
        const timer = setTimeout(() => reject(new Error(`no "${text}" within ${ms} ms; output so far:\n${out}`)), ms);
        waiters.push({ text, resolve: () => (clearTimeout(timer), resolve()) });
        void done.then(() =>
          setTimeout(() => reject(new Error(`the CLI exited before printing "${text}":\n${out}`)), 10),
        );
      }),
  };
}

describe.skipIf(missing !== undefined)('agentvm job run (real microVMs, namespaces and nftables)', () => {
  const img = image as TestImage;
  let base = '';
  let root = '';
  let repo: GitDir;
  let source: GitDir;
  let allowed: Awaited<ReturnType<typeof service>>;
  let forbidden: Awaited<ReturnType<typeof service>>;
  const seenRuns = new Set<string>();

  // plan and apply read the repository; a run boots only what apply installed under the root (ADR 0009).
  const repoArgs = (): string[] => ['--repo', repo.dir, '--root', root, '--host', 'h1'];
  const runArgs = (): string[] => ['--root', root, '--host', 'h1'];
  const jobsDir = (): string => join(root, 'run/agentvm/jobs');
  const runIds = (): string[] =>
    existsSync(jobsDir()) ? readdirSync(jobsDir()).filter((n) => /^[0-9a-f]{12}$/.test(n)) : [];

  beforeAll(async () => {
    assertBuilt();
    base = mkdtempSync(join(tmpdir(), 'agentvm-job-run-'));
    root = join(base, 'root');
    const images = join(root, 'var/lib/agentvm/images');
    mkdirSync(images, { recursive: true });
    copyFileSync(img.kernel, join(images, 'vmlinuz'));
    copyFileSync(img.initrd, join(images, 'initramfs.cpio.gz'));
    copyFileSync(img.disk, join(images, 'rootfs.ext4'));
    allowed = await service('allowed-service-data\n');
    forbidden = await service('forbidden-service-data\n');
    source = await gitdir({ 'README.md': "the job workloads' release\n" });

    const images_ = `      kernel: { file: vmlinuz, sha256: ${img.kernelSha256} }\n      rootfs: { file: initramfs.cpio.gz, sha256: ${img.initrdSha256}, format: initramfs }\n`;
    const job = (name: string, script: string, timeoutSeconds = 60): string =>
      `    - name: ${name}\n${images_}      command: [sh, -c, ${JSON.stringify(script)}, ${name}]\n      timeoutSeconds: ${timeoutSeconds}\n`;
    const contract = (name: string, egress: string): string =>
      `apiVersion: agentvm.dev/v1alpha1\nkind: WorkloadContract\nmetadata:\n  name: ${name}\nspec:\n  owner: jobs@example.com\n  riskTier: low\n  substrate: job\n  tools: []\n${egress}`;
    const manifest = (name: string, jobs: string): string =>
      `apiVersion: agentvm.dev/v1alpha1\nkind: WorkloadManifest\nmetadata:\n  name: ${name}\nspec:\n  archetype: git-release\n  source:\n    git:\n      repo: ${source.dir}\n      commit: ${source.commit}\n  jobs:\n${jobs}`;
    const probe = (name: string, host: string, port: string): string =>
      `(nc -w 10 ${host} ${port} </dev/null >"$AGENTVM_OUT/${name}.out" 2>/dev/null; echo $? >"$AGENTVM_OUT/${name}.rc") &`;

    repo = await gitdir({
      'hosts/h1.yaml':
        'apiVersion: agentvm.dev/v1alpha1\nkind: Host\nmetadata:\n  name: h1\nspec:\n  workloads: [plain, net]\n  microvm:\n    accel: tcg\n    maxConcurrentJobs: 4\n',
      'workloads/plain/contract.yaml': contract('plain', ''),
      'workloads/plain/manifest.yaml': manifest(
        'plain',
        job(
          'echo',
          'echo "job says: $(cat greeting.txt)"; echo "args=[$1][$2]"; mkdir -p "$AGENTVM_OUT/sub"; echo done >"$AGENTVM_OUT/sub/report.txt"; exit "$3"',
        ) +
          job('sleeper', 'echo sleeping now; sleep 60; echo woke up', 3) +
          // A disk job: the test disk is its root, the initramfs only boots it.
          `    - name: ondisk\n      kernel: { file: vmlinuz, sha256: ${img.kernelSha256} }\n      rootfs: { file: rootfs.ext4, sha256: ${img.diskSha256}, format: disk }\n      initramfs: { file: initramfs.cpio.gz, sha256: ${img.initrdSha256} }\n` +
          `      command: [sh, -c, ${JSON.stringify('echo "marker=[$(cat /etc/agentvm-disk)] in=[$(cat greeting.txt)]"; cp /etc/agentvm-disk "$AGENTVM_OUT/marker.txt"; touch /etc/x 2>/dev/null || echo "disk is read-only"; exit 4')}, ondisk]\n      timeoutSeconds: 60\n` +
          job(
            'nics',
            'for m in $(cat /lib/agentvm/modules); do insmod /lib/modules/$m.ko 2>/dev/null && echo "loaded $m"; done; ls /sys/class/net >"$AGENTVM_OUT/nics"',
          ),
      ),
      'workloads/net/contract.yaml': contract('net', `  egress:\n    - host: 127.0.0.1\n      port: ${allowed.port}\n`),
      'workloads/net/manifest.yaml': manifest(
        'net',
        job(
          'probe',
          [
            'ls /sys/class/net >"$AGENTVM_OUT/nics";',
            probe('allowed', '"$AGENTVM_GATEWAY"', String(allowed.port)),
            probe('gateway-other-port', '"$AGENTVM_GATEWAY"', String(forbidden.port)),
            probe('host-address-allowed-port', '"$1"', String(allowed.port)),
            probe('host-address-other-port', '"$1"', String(forbidden.port)),
            probe('metadata', '169.254.169.254', '80'),
            probe('peer-vm', '"$2"', '9000'),
            probe('peer-vm-gateway', '"$3"', '9000'),
            'wait',
            // One line: governance refuses line breaks in command arguments.
          ].join(' '),
        ) +
          job('listen', 'echo peer-secret | nc -l -p 9000 & echo listening; sleep 50') +
          job('hold', 'echo holding; sleep 100', 120),
      ),
    });
    // Runs boot the definitions apply installs.
    const applied = await agentvm(['apply', '--auto-approve', ...repoArgs()], { timeoutMs: 60_000 });
    expect(applied.code, applied.stdout + applied.stderr).toBe(0);
  }, 120_000);

  afterAll(async () => {
    await allowed?.close();
    await forbidden?.close();
    await repo?.cleanup();
    await source?.cleanup();
    if (base !== '') rmSync(base, { recursive: true, force: true });
  });

  afterEach(() => {
    for (const id of runIds()) seenRuns.add(id);
    // Nothing of any run may outlive the test: no process, namespace, tap, run or scratch directory.
    expect(processesMentioning(`${root}/`)).toEqual([]);
    expect(netnsNames().filter((n) => [...seenRuns].some((id) => n === `agentvm-${id}`))).toEqual([]);
    expect(hostTaps()).toEqual([]);
    expect(existsSync(jobsDir()) ? readdirSync(jobsDir()) : []).toEqual([]);
  });

  async function runJson(
    args: string[],
    timeoutMs = 90_000,
  ): Promise<{ code: number | null; result: JobRunResult; stderr: string }> {
    const res = await agentvm(['job', 'run', ...args, ...runArgs(), '--json'], { timeoutMs });
    let result: JobRunResult;
    try {
      result = JSON.parse(res.stdout) as JobRunResult;
    } catch {
      throw new Error(`job run printed no JSON result (exit ${res.code}):\n${res.stdout}\n${res.stderr}`);
    }
    seenRuns.add(result.runId);
    return { code: res.code, result, stderr: res.stderr };
  }

  it('GIVEN a job with inputs and arguments WHEN run THEN it prints, returns its exit code and result file, and is torn down with a receipt', async () => {
    const input = join(base, 'greeting.txt');
    spawnSync('sh', ['-c', `printf 'hello from the host' > ${input}`]);
    const out = join(base, 'out-echo');

    const { code, result } = await runJson([
      'plain/echo',
      '--input',
      input,
      '--arg',
      'first arg',
      '--arg',
      "it's $HOME",
      '--arg',
      '3',
      '--out',
      out,
    ]);

    expect(result.diagnostics).toEqual([]);
    expect(result.status).toBe('failed');
    expect(result.exitCode).toBe(3);
    expect(code).toBe(1);
    expect(result.console).toContain('job says: hello from the host\n');
    expect(result.console).toContain("args=[first arg][it's $HOME]\n");
    expect(result.network).toBeNull();
    expect(result.resultFiles.map((f) => f.name)).toEqual(['sub/report.txt']);
    expect(readFileSync(join(out, 'sub/report.txt'), 'utf8')).toBe('done\n');
    expect(result.teardown).toMatchObject({ ok: true, reason: 'finished', netns: null, scratchRemoved: true });
    const audit = readFileSync(join(root, 'var/log/agentvm/audit.jsonl'), 'utf8');
    expect(audit).toContain(`"event":"job.teardown","address":"job.plain.echo.${result.runId}","result":"ok"`);
  }, 120_000);

  it('GIVEN a job whose rootfs is a disk WHEN run THEN it runs in the disk root, read-only, and returns its exit code and result file', async () => {
    const input = join(base, 'greeting.txt');
    spawnSync('sh', ['-c', `printf 'hello from the host' > ${input}`]);
    const out = join(base, 'out-ondisk');

    const { code, result } = await runJson(['plain/ondisk', '--input', input, '--out', out]);

    expect(result.diagnostics).toEqual([]);
    expect(result.exitCode).toBe(4);
    expect(code).toBe(1);
    expect(result.console).toContain('marker=[agentvm test disk v1] in=[hello from the host]\n');
    expect(result.console).toContain('disk is read-only\n');
    expect(readFileSync(join(out, 'marker.txt'), 'utf8')).toBe('agentvm test disk v1\n');
    expect(result.teardown).toMatchObject({ ok: true, reason: 'finished', scratchRemoved: true });
    const installed = JSON.parse(readFileSync(join(root, 'var/lib/agentvm/jobs/plain/ondisk.json'), 'utf8')) as {
      identity: string;
    };
    expect(installed.identity).toBe(`${img.kernelSha256}/${img.diskSha256}/${img.initrdSha256}`);
  }, 120_000);

  it('GIVEN a job that exits 0 THEN the CLI exits 0 and streams the job output as it runs', async () => {
    const cli = startCli([
      'job',
      'run',
      'plain/echo',
      '--input',
      join(base, 'greeting.txt'),
      '--arg',
      'a',
      '--arg',
      'b',
      '--arg',
      '0',
      ...runArgs(),
    ]);

    const code = await cli.done;

    expect(code).toBe(0);
    expect(cli.output()).toContain('job says: hello from the host');
    expect(cli.output()).toMatch(/✓ job\.plain\.echo run [0-9a-f]{12} exited 0/);
  }, 120_000);

  it('GIVEN a job that sleeps past its 3 s timeout THEN its VM is killed at the limit and everything is torn down', async () => {
    const { code, result } = await runJson(['plain/sleeper']);

    expect(code).toBe(1);
    expect(result.status).toBe('timed-out');
    expect(result.exitCode).toBeNull();
    expect(result.console).toContain('sleeping now');
    expect(result.console).not.toContain('woke up');
    expect(result.diagnostics.map((d) => d.code)).toEqual(['microvm.job-timeout']);
    expect(result.durationMs).toBeLessThan((result.bootMs ?? 0) + 3_000 + 6_000);
    expect(result.teardown).toMatchObject({ ok: true, reason: 'timed-out' });
  }, 120_000);

  // The job runs unprivileged (ADR 0022 "Jobs"), so it cannot load a driver either; that the VM has no NIC device
  // even when the drivers are loaded is shown by test/microvm-boot.test.ts, whose harness job runs as root.
  it('GIVEN a job without an egress allowlist WHEN it tries to load the NIC drivers THEN it may not, and it has no interface but lo', async () => {
    const { result } = await runJson(['plain/nics', '--out', join(base, 'out-nics')]);

    expect(result.exitCode).toBe(0);
    expect(result.console).not.toContain('loaded ');
    expect(result.network).toBeNull();
    expect(
      readFileSync(join(base, 'out-nics', 'nics'), 'utf8')
        .trim()
        .split('\n'),
    ).toEqual(['lo']);
    expect(result.teardown.ok).toBe(true);
  }, 120_000);

  it('GIVEN an allowlist of one loopback service THEN the guest reaches exactly it; other ports, host addresses, metadata and another VM are unreachable', async () => {
    // VM B: another job with its own namespace, listening on its guest address.
    const peer = startCli(['job', 'run', 'net/listen', ...runArgs()]);
    await peer.waitFor('listening');
    const [peerId] = runIds();
    const record = JSON.parse(readFileSync(join(jobsDir(), peerId ?? '', 'owner.json'), 'utf8')) as {
      slot: number;
      netns: string;
    };
    const peerNet = guestAddressing(record.slot);
    seenRuns.add(peerId ?? '');

    // B's namespace holds only lo and the tap, no route beyond its /30, and a ruleset that drops by default.
    const links = spawnSync('ip', ['-n', record.netns, '-o', 'link'], { encoding: 'utf8' })
      .stdout.split('\n')
      .filter(Boolean)
      .map((l) => l.split(':')[1]?.trim().split('@')[0]);
    expect(links).toEqual(['lo', 'avm0']);
    const routes = spawnSync('ip', ['-n', record.netns, 'route'], { encoding: 'utf8' }).stdout.trim().split('\n');
    expect(routes).toHaveLength(1);
    expect(routes[0]).toMatch(/^172\.30\.\d+\.\d+\/30 dev avm0/);
    const rules = spawnSync('ip', ['netns', 'exec', record.netns, 'nft', 'list', 'ruleset'], {
      encoding: 'utf8',
    }).stdout;
    expect(rules).toContain('policy drop');

    // VM A probes everything in parallel (10 s limit each: a TCG guest on a loaded 2-core machine is slow, and a
    // refused probe must not pass just because an allowed one timed out).
    const out = join(base, 'out-probe');
    const { result } = await runJson([
      'net/probe',
      '--arg',
      hostAddress(),
      '--arg',
      peerNet.address,
      '--arg',
      peerNet.gateway,
      '--out',
      out,
    ]);
    const read = (name: string): string =>
      existsSync(join(out, name)) ? readFileSync(join(out, name), 'utf8') : '<missing>';

    peer.child.kill('SIGINT');
    expect(await peer.done).toBe(1);
    expect(peer.output()).toContain('was interrupted');

    expect(result.exitCode).toBe(0);
    expect(result.network).toMatchObject({
      allowed: [
        { protocol: 'tcp', guest: `${result.network?.gateway}:${allowed.port}`, upstream: `127.0.0.1:${allowed.port}` },
      ],
    });
    expect(result.network?.guestAddress).not.toBe(peerNet.address);
    expect(read('nics').trim().split('\n').sort()).toEqual(['eth0', 'lo']);
    expect({ rc: read('allowed.rc').trim(), out: read('allowed.out') }).toEqual({
      rc: '0',
      out: 'allowed-service-data\n',
    });
    for (const name of [
      'gateway-other-port',
      'host-address-allowed-port',
      'host-address-other-port',
      'metadata',
      'peer-vm',
      'peer-vm-gateway',
    ]) {
      expect({
        name,
        rc: read(`${name}.rc`).trim() === '0' ? 'connected' : 'refused',
        out: read(`${name}.out`),
      }).toEqual({ name, rc: 'refused', out: '' });
    }
    expect(result.teardown).toMatchObject({ ok: true, netnsDeleted: true, tapDeleted: true });
  }, 180_000);

  it('GIVEN agentvm SIGKILLed mid-run THEN the orphan is left, `plan` reports it as drift and `apply` reaps it with a receipt', async () => {
    const cli = startCli(['job', 'run', 'net/hold', ...runArgs()]);
    await cli.waitFor('holding');
    cli.child.kill('SIGKILL');
    await cli.done;
    const [runId = ''] = runIds();
    seenRuns.add(runId);
    const runDir = join(jobsDir(), runId);

    // The orphan: its VMM still runs and its namespace still exists.
    expect(processesMentioning(`${runDir}/`).length).toBeGreaterThan(0);
    expect(netnsNames()).toContain(`agentvm-${runId}`);

    const planned = await agentvm(['plan', ...repoArgs(), '--format', 'json', '--detailed-exitcode']);
    expect(planned.code).toBe(2);
    const plan = JSON.parse(planned.stdout) as Plan;
    const address = `job.net.hold.${runId}`;
    expect(plan.drift.find((d) => d.address === address)?.reasons.map((r) => r.code)).toEqual(['orphan']);
    expect(plan.changes.find((c) => c.address === address)?.action).toBe('delete');

    const applied = await agentvm(['apply', '--auto-approve', ...repoArgs()]);
    expect(applied.stderr).toBe('');
    expect(applied.code).toBe(0);

    expect(processesMentioning(`${runDir}/`)).toEqual([]);
    expect(netnsNames()).not.toContain(`agentvm-${runId}`);
    const records = readFileSync(join(root, 'var/log/agentvm/audit.jsonl'), 'utf8')
      .split('\n')
      .filter((l) => l.includes(`"address":"${address}"`));
    // The reaper's receipt, then apply's own record of the delete.
    expect(records.map((l) => (JSON.parse(l) as { event: string; result: string }).event)).toEqual([
      'job.teardown',
      'resource.apply',
    ]);
    expect(records[0]).toContain('"result":"ok"');
    expect(records[0]).toContain('(owner-gone)');
    expect(records[0]).toMatch(/killed pid \d+/);
    expect(records[0]).toContain(`netns agentvm-${runId} deleted with tap avm0`);
    expect((await agentvm(['audit', 'verify', '--root', root])).code).toBe(0);
    const after = await agentvm(['plan', ...repoArgs(), '--format', 'json', '--detailed-exitcode']);
    expect(after.code).toBe(0);
  }, 180_000);

  it('GIVEN accel auto WHEN resolved twice THEN the first answer comes within the probe limit and the second from the cache', async () => {
    const cacheFile = join(base, 'accel.json');
    const request = {
      setting: 'auto' as const,
      kernelPath: img.kernel,
      initrdPath: img.initrd,
      cacheFile,
      probeTimeoutMs: 3_000,
    };

    const t0 = performance.now();
    const first = await resolveAccel(request);
    const probeMs = performance.now() - t0;
    const second = await resolveAccel(request);

    expect(['kvm', 'tcg']).toContain(first.accel);
    expect(first.cached).toBe(false);
    expect(probeMs).toBeLessThan(3_000 + 2_000);
    // From the cache: no probe VM was booted for the second answer.
    expect(second).toMatchObject({ accel: first.accel, cached: true });
    expect(processesMentioning('agentvm-probe-')).toEqual([]);
  }, 30_000);
});
