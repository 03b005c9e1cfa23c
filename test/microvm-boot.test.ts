// System test of Tier-2 ephemeral microVMs: boots REAL QEMU microVMs (TCG) from the image that
// scripts/build-test-image.sh builds (cached outside the clone), and proves teardown by scanning /proc and the
// run directory after every run.
// Needs qemu-system-x86 and busybox-static; without them it fails under CI=true and skips otherwise.

import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { QemuDriver, detectAccel } from '../src/providers/microvm/qemu.js';
import { runEphemeralVm } from '../src/providers/microvm/ephemeral-vm.js';
import { ConsoleParser, newNonce, CmdlineKey } from '../src/providers/microvm/protocol.js';
import { writeCpio } from '../src/providers/microvm/cpio.js';
import { processesMentioning } from './support/processes.js';
import { childQemus, microvmRuns, testImage, type TestImage } from './support/test-image.js';

const HOW_TO = 'Install with: apt-get install qemu-system-x86 busybox-static e2fsprogs && scripts/build-test-image.sh';
const inCi = process.env.CI === 'true';

const image = testImage();
const missing = typeof image === 'string' ? image : undefined;
if (missing !== undefined && !inCi) console.warn(`microvm-boot: skipping: ${missing}. ${HOW_TO}`);

describe('microVM boot: available in CI', () => {
  it.runIf(inCi)('qemu and the test image are available on this machine', () => {
    expect(missing, `${missing ?? ''}. ${HOW_TO}`).toBeUndefined();
  });
});

describe.skipIf(missing !== undefined)('ephemeral microVM (real QEMU, TCG)', () => {
  const img = image as TestImage;
  const { request, expectTornDown, scratchDir } = microvmRuns(img, 'agentvm-microvm-test-');

  it('GIVEN a job that prints, writes results and exits 3 WHEN it runs THEN its output, exit code and files come back', async () => {
    const streamed: string[] = [];
    const binary = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
    const req = request({
      input: {
        files: { 'greeting.txt': Buffer.from('hello from the host\n'), 'data/blob.bin': binary },
        args: ['first arg', "it's $HOME"],
      },
      command: [
        'echo "job says: $(cat greeting.txt)"',
        'echo "arg1=[$1] arg2=[$2] argc=$#"',
        'echo "to stderr" >&2',
        'mkdir -p "$AGENTVM_OUT/nested"',
        'echo done > "$AGENTVM_OUT/report.txt"',
        'cp data/blob.bin "$AGENTVM_OUT/nested/blob.bin"',
        // A background writer that outlives the job must not corrupt the result block: init kills it first.
        '(while :; do echo background-noise; done) &',
        'printf "no trailing newline"',
        'exit 3',
      ].join('\n'),
      onConsole: (line) => streamed.push(line),
    });

    const result = await runEphemeralVm(req);

    expect(result.diagnostics).toEqual([]);
    expect(result.timedOut).toBe(false);
    expect(result.exitCode).toBe(3);
    expect(result.console).toContain('job says: hello from the host\n');
    expect(result.console).toContain("arg1=[first arg] arg2=[it's $HOME] argc=2\n");
    expect(result.console).toContain('to stderr\n');
    // Not necessarily followed by a newline: the background writer may still append to that line before init kills it.
    expect(result.console).toContain('no trailing newline');
    expect(result.console).not.toContain('AGENTVM-');
    expect(streamed).toContain('job says: hello from the host');
    expect(Object.keys(result.resultFiles).sort()).toEqual(['nested/blob.bin', 'report.txt']);
    expect(result.resultFiles['report.txt']?.toString()).toBe('done\n');
    expect(result.resultFiles['nested/blob.bin']?.equals(binary)).toBe(true);
    expect(result.bootMs).toBeGreaterThan(0);
    expect(result.durationMs).toBeGreaterThanOrEqual(result.bootMs ?? 0);
    expectTornDown(req.runDir);
  });

  it('GIVEN a job that sleeps past a 3 s timeout WHEN it runs THEN the VM is killed and timedOut is true', async () => {
    const req = request({ command: 'echo sleeping now; sleep 60; echo woke up', timeoutMs: 3_000 });

    const result = await runEphemeralVm(req);

    expect(result.timedOut).toBe(true);
    expect(result.exitCode).toBeNull();
    expect(result.console).toContain('sleeping now');
    expect(result.console).not.toContain('woke up');
    expect(result.diagnostics.map((d) => d.code)).toEqual(['microvm.job-timeout']);
    // Killed at the limit: boot + 3 s + teardown, far from the 60 s sleep.
    expect(result.durationMs).toBeLessThan((result.bootMs ?? 0) + 3_000 + 5_000);
    expectTornDown(req.runDir);
  });

  it('GIVEN a job without network WHEN it loads the virtio modules THEN they load in order and no NIC exists', async () => {
    const req = request({
      command:
        'for m in $(cat /lib/agentvm/modules); do insmod /lib/modules/$m.ko || exit 10; done; ls /sys/class/net > "$AGENTVM_OUT/nics"; lsmod > "$AGENTVM_OUT/lsmod"',
    });

    const result = await runEphemeralVm(req);

    expect(result.diagnostics).toEqual([]);
    expect(result.exitCode).toBe(0);
    expect(result.resultFiles['nics']?.toString().trim().split('\n')).toEqual(['lo']);
    expect(result.resultFiles['lsmod']?.toString()).toContain('virtio_net');
    expectTornDown(req.runDir);
  });

  it('GIVEN an onConsole callback that throws WHEN the job prints THEN the error surfaces after full teardown', async () => {
    const req = request({
      command: 'echo boom-trigger; sleep 60',
      timeoutMs: 50_000,
      onConsole: (line) => {
        if (line === 'boom-trigger') throw new Error('callback failed');
      },
    });
    const started = performance.now();

    await expect(runEphemeralVm(req)).rejects.toThrow('callback failed');

    // Promptly: the VM is killed when the callback throws, not when the job's time runs out.
    expect(performance.now() - started).toBeLessThan(20_000);
    expectTornDown(req.runDir);
  });

  it('GIVEN an abort signal WHEN it fires mid-job THEN the VM is killed at once, the run reports microvm.aborted and is torn down', async () => {
    const controller = new AbortController();
    const pids: number[] = [];
    const req = request({
      command: 'echo about-to-sleep; sleep 60',
      timeoutMs: 50_000,
      name: 'abort-test',
      signal: controller.signal,
      onBooted: (pid) => void pids.push(pid),
      onConsole: (line) => line === 'about-to-sleep' && controller.abort(),
    });
    const started = performance.now();

    const result = await runEphemeralVm(req);

    expect(performance.now() - started).toBeLessThan(20_000);
    expect(result.diagnostics.map((d) => d.code)).toEqual(['microvm.aborted']);
    expect(result.exitCode).toBeNull();
    expect(result.timedOut).toBe(false);
    expect(pids).toHaveLength(1);
    expect(existsSync(`/proc/${pids[0]}/cmdline`) && readFileSync(`/proc/${pids[0]}/cmdline`, 'utf8') !== '').toBe(
      false,
    );
    expectTornDown(req.runDir);
  });

  it('GIVEN an initramfs that does not match its pin WHEN asked to run THEN nothing boots and the mismatch is reported', async () => {
    const req = request({ initrd: { path: img.initrd, sha256: '0'.repeat(64) } });

    const result = await runEphemeralVm(req);

    expect(result.exitCode).toBeNull();
    expect(result.diagnostics.map((d) => d.code)).toEqual(['microvm.image-digest-mismatch']);
    expectTornDown(req.runDir);
  });

  it('GIVEN the driver with two initramfs files and the job on the kernel command line THEN the guest sees both', async () => {
    // The second archive carries only an input file; the script comes from agentvm.job (no /job/run).
    const runDir = mkdtempSync(join(scratchDir(), 'driver-'));
    const overlay = join(runDir, 'overlay.cpio');
    writeFileSync(overlay, writeCpio([{ path: 'job/in/extra.txt', data: Buffer.from('from the second archive\n') }]));
    const nonce = newNonce();
    const lines: string[] = [];
    const parser = new ConsoleParser(nonce, { onLine: (l) => lines.push(l) });
    const script = Buffer.from('cat extra.txt; exit 7\n').toString('base64');

    const handle = await new QemuDriver({ accel: 'tcg' }).boot({
      name: 'cmdline-job',
      kernelPath: img.kernel,
      initrdPaths: [img.initrd, overlay],
      append: `${CmdlineKey.nonce}=${nonce} ${CmdlineKey.job}=${script} loglevel=1`,
      vcpus: 1,
      memoryMiB: 256,
      network: { kind: 'none' },
      runDir,
      onConsole: (chunk) => parser.push(chunk),
    });
    const exit = await Promise.race([
      handle.wait(),
      new Promise<never>((_, reject) => setTimeout(() => reject(new Error('boot took over 50 s')), 50_000)),
    ]).finally(() => handle.kill());
    const report = parser.end();

    expect(exit.code).toBe(0);
    expect(report.exitCode).toBe(7);
    expect(lines).toContain('from the second archive');
    expect(processesMentioning(runDir)).toEqual([]);
    rmSync(runDir, { recursive: true, force: true });
  });

  it('GIVEN accel auto WHEN KVM is detected THEN the answer comes within the probe limit and the probe process is gone', async () => {
    const started = performance.now();
    const choice = await detectAccel({ kernelPath: img.kernel, initrdPath: img.initrd, timeoutMs: 3_000 });
    const elapsed = performance.now() - started;

    expect(['kvm', 'tcg']).toContain(choice.accel);
    expect(choice.reason).not.toBe('');
    expect(elapsed).toBeLessThan(3_000 + 2_000);
    expect(processesMentioning('agentvm-probe-')).toEqual([]);
    expect(childQemus()).toEqual([]);
  });
});
