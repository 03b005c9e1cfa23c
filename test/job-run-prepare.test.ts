// System test of how `agentvm job run` prepares a run side by side (ADR 0028): the network (namespace, tap, ruleset,
// proxies) is made while the images are prepared, and the VMM starts only once it is complete. REAL QEMU (TCG), real
// namespaces, nftables and the built CLI.
//
// The earliest moment a guest could send anything is when its VMM starts. A stand-in `qemu-system-x86_64` first on
// the CLI's PATH records, at that moment and from inside the job's namespace, the ruleset and the listening sockets,
// then execs the real QEMU; the hostile guest itself connects as the very first thing its job does, once, without
// retrying. Failures part-way (a ruleset that cannot load, images missing while the network is being made) must
// leave nothing behind: no namespace, tap, helper, VMM or run directory.
// Needs root, qemu-system-x86, busybox-static, iproute2 and nftables, and `npm run build`; without them it fails
// under CI=true and skips otherwise.

import { spawnSync } from 'node:child_process';
import {
  chmodSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { JobRunResult } from '../src/app/job-run.js';
import { agentvm, assertBuilt } from './support/cli.js';
import { gitdir, type GitDir } from './support/gitdir.js';
import { processesMentioning } from './support/processes.js';
import { jobRunPrerequisites, netnsNames, type TestImage } from './support/test-image.js';

const HOW_TO =
  'Needs root and: apt-get install qemu-system-x86 busybox-static e2fsprogs iproute2 nftables && scripts/build-test-image.sh && npm run build';
const inCi = process.env.CI === 'true';

const image = jobRunPrerequisites();
const missing = typeof image === 'string' ? image : undefined;
if (missing !== undefined && !inCi) console.warn(`job-run-prepare: skipping: ${missing}. ${HOW_TO}`);

describe('job run preparation: available in CI', () => {
  it.runIf(inCi)('root, qemu, iproute2, nftables and the test image are available on this machine', () => {
    expect(missing, `${missing ?? ''}. ${HOW_TO}`).toBeUndefined();
  });
});

const which = (command: string): string =>
  spawnSync('sh', ['-c', `command -v ${command}`], { encoding: 'utf8' }).stdout.trim();

/** /proc/net/tcp's local address of a listener, `AABBCCDD:PPPP` (little-endian IPv4, hex port). */
function procNetAddress(address: string, port: number): string {
  const hex = address
    .split('.')
    .reverse()
    .map((o) => Number(o).toString(16).padStart(2, '0'))
    .join('')
    .toUpperCase();
  return `${hex}:${port.toString(16).padStart(4, '0').toUpperCase()}`;
}

describe.skipIf(missing !== undefined)('agentvm job run: network complete before the VMM starts', () => {
  const img = image as TestImage;
  let base = '';
  let root = '';
  let wrappers = '';
  let seen = '';
  let repo: GitDir;
  let source: GitDir;
  let allowed: { port: number; close: () => Promise<void> };
  const runIds = new Set<string>();

  const jobsDir = (): string => join(root, 'run/agentvm/jobs');

  beforeAll(async () => {
    assertBuilt();
    base = mkdtempSync(join(tmpdir(), 'agentvm-job-prepare-'));
    root = join(base, 'root');
    wrappers = join(base, 'bin');
    seen = join(base, 'seen');
    mkdirSync(wrappers);
    mkdirSync(seen);
    const images = join(root, 'var/lib/agentvm/images');
    mkdirSync(images, { recursive: true });
    copyFileSync(img.kernel, join(images, 'vmlinuz'));
    copyFileSync(img.initrd, join(images, 'initramfs.cpio.gz'));
    // The stand-in VMM: runs where the VMM runs (inside the job's namespace, via `ip netns exec`), records what the
    // namespace holds at that instant, then becomes the real QEMU (same pid, same command line).
    writeFileSync(
      join(wrappers, 'qemu-system-x86_64'),
      `#!/bin/sh\n{ echo "== nft"; ${which('nft')} list ruleset; echo "== tcp"; cat /proc/net/tcp; } >"${seen}/$$.txt" 2>&1\nexec ${which('qemu-system-x86_64')} "$@"\n`,
    );
    chmodSync(join(wrappers, 'qemu-system-x86_64'), 0o755);
    const server = net.createServer((socket) => socket.end('allowed-service-data\n'));
    await new Promise<void>((resolve) => server.listen({ host: '127.0.0.1', port: 0 }, resolve));
    allowed = {
      port: (server.address() as net.AddressInfo).port,
      close: () => new Promise((resolve) => server.close(() => resolve())),
    };
    source = await gitdir({ 'README.md': 'release\n' });
    const images_ = `      kernel: { file: vmlinuz, sha256: ${img.kernelSha256} }\n      rootfs: { file: initramfs.cpio.gz, sha256: ${img.initrdSha256}, format: initramfs }\n`;
    // The hostile guest's first act: one connection to the allowlisted service and one to a port it may not use,
    // each tried once (no retry: a network not yet complete would show here).
    const first = [
      `nc -w 5 "$AGENTVM_GATEWAY" ${allowed.port} </dev/null >"$AGENTVM_OUT/allowed.out" 2>&1; echo $? >"$AGENTVM_OUT/allowed.rc";`,
      'nc -w 5 "$AGENTVM_GATEWAY" 22 </dev/null >"$AGENTVM_OUT/other.out" 2>&1; echo $? >"$AGENTVM_OUT/other.rc"',
    ].join(' ');
    repo = await gitdir({
      'hosts/h1.yaml':
        'apiVersion: agentvm.dev/v1alpha1\nkind: Host\nmetadata:\n  name: h1\nspec:\n  workloads: [early]\n  microvm:\n    accel: tcg\n',
      'workloads/early/contract.yaml': `apiVersion: agentvm.dev/v1alpha1\nkind: WorkloadContract\nmetadata:\n  name: early\nspec:\n  owner: jobs@example.com\n  riskTier: low\n  substrate: job\n  tools: []\n  egress:\n    - host: 127.0.0.1\n      port: ${allowed.port}\n`,
      'workloads/early/manifest.yaml': `apiVersion: agentvm.dev/v1alpha1\nkind: WorkloadManifest\nmetadata:\n  name: early\nspec:\n  archetype: git-release\n  source:\n    git:\n      repo: ${source.dir}\n      commit: ${source.commit}\n  jobs:\n    - name: first\n${images_}      command: [sh, -c, ${JSON.stringify(first)}]\n      timeoutSeconds: 60\n`,
    });
    const applied = await agentvm(['apply', '--auto-approve', '--repo', repo.dir, '--root', root, '--host', 'h1'], {
      timeoutMs: 60_000,
    });
    expect(applied.code, applied.stdout + applied.stderr).toBe(0);
  }, 120_000);

  afterAll(async () => {
    await allowed?.close();
    await repo?.cleanup();
    await source?.cleanup();
    if (base !== '') rmSync(base, { recursive: true, force: true });
  });

  afterEach(() => {
    // Nothing of any run may outlive it: no process, namespace, tap, run or scratch directory.
    expect(processesMentioning(`${root}/`)).toEqual([]);
    expect(netnsNames().filter((n) => [...runIds].some((id) => n === `agentvm-${id}`))).toEqual([]);
    expect(existsSync(jobsDir()) ? readdirSync(jobsDir()) : []).toEqual([]);
    for (const f of readdirSync(seen)) rmSync(join(seen, f));
  });

  async function run(
    env: NodeJS.ProcessEnv = {},
    out?: string,
  ): Promise<{ code: number | null; result: JobRunResult }> {
    const res = await agentvm(['job', 'run', 'early/first', '--root', root, '--json', ...(out ? ['--out', out] : [])], {
      timeoutMs: 120_000,
      env: { PATH: `${wrappers}:${process.env.PATH ?? ''}`, ...env },
    });
    let result: JobRunResult;
    try {
      result = JSON.parse(res.stdout) as JobRunResult;
    } catch {
      throw new Error(`job run printed no JSON result (exit ${res.code}):\n${res.stdout}\n${res.stderr}`);
    }
    runIds.add(result.runId);
    return { code: res.code, result };
  }

  it('GIVEN a guest whose first act is to connect WHEN its VMM starts THEN the ruleset and every proxy listener are already in its namespace, and its first, unretried connection is served', async () => {
    const outDir = join(base, 'out-first');
    const { code, result } = await run({}, outDir);
    expect(result.diagnostics).toEqual([]);
    expect(code).toBe(0);
    const gateway = result.network?.gateway ?? '';
    expect(gateway).not.toBe('');

    const records = readdirSync(seen);
    expect(records).toHaveLength(1);
    const atStart = readFileSync(join(seen, records[0] ?? ''), 'utf8');
    const [ruleset = '', tcp = ''] = atStart.split('== tcp');
    // The whole default-deny ruleset is loaded...
    expect(ruleset).toContain('table inet agentvm');
    expect(ruleset).toMatch(/chain input \{[^}]*policy drop;/);
    expect(ruleset).toMatch(/chain forward \{[^}]*policy drop;/);
    // ...and both listeners (the allowlisted service's relay and the egress proxy) listen on the gateway (state 0A).
    const listening = tcp
      .split('\n')
      .map((l) => l.trim().split(/\s+/))
      .filter((f) => f[3] === '0A')
      .map((f) => f[1]);
    expect(listening).toEqual(
      expect.arrayContaining([procNetAddress(gateway, allowed.port), procNetAddress(gateway, 3128)]),
    );

    const out = (name: string): string => readFileSync(join(outDir, name), 'utf8');
    expect(out('allowed.rc').trim()).toBe('0');
    expect(out('allowed.out')).toContain('allowed-service-data');
    expect(out('other.rc').trim()).not.toBe('0');
  }, 180_000);

  it('GIVEN a ruleset that cannot be loaded WHEN run THEN no VMM starts and the namespace, tap and proxy helper made meanwhile are gone', async () => {
    const failing = join(base, 'failing-nft');
    mkdirSync(failing, { recursive: true });
    writeFileSync(join(failing, 'nft'), '#!/bin/sh\necho "nft: refused by the test" >&2\nexit 1\n');
    chmodSync(join(failing, 'nft'), 0o755);
    const { code, result } = await run({ PATH: `${failing}:${wrappers}:${process.env.PATH ?? ''}` });
    expect(code).toBe(1);
    expect(result.diagnostics.map((d) => d.code)).toContain('microvm.network-setup-failed');
    expect(readdirSync(seen)).toEqual([]);
    expect(result.teardown.ok).toBe(true);
  }, 120_000);

  it('GIVEN images that are missing WHILE the network is being made THEN nothing boots and everything made is torn down', async () => {
    const store = join(root, 'var/cache/agentvm/microvm-images');
    const kernel = join(root, 'var/lib/agentvm/images/vmlinuz');
    const kept = join(base, 'vmlinuz.kept');
    rmSync(store, { recursive: true, force: true });
    copyFileSync(kernel, kept);
    rmSync(kernel);
    try {
      const { code, result } = await run();
      expect(code).toBe(1);
      expect(result.diagnostics.map((d) => d.code)).toContain('microvm.image-missing');
      expect(readdirSync(seen)).toEqual([]);
      expect(result.teardown).toMatchObject({ ok: true, netnsDeleted: true });
    } finally {
      copyFileSync(kept, kernel);
    }
  }, 120_000);

  it('GIVEN the stored kernel overwritten with same-size garbage and its mtime restored WHEN run THEN the pinned kernel boots, never the garbage', async () => {
    expect((await run()).code).toBe(0);
    const store = join(root, 'var/cache/agentvm/microvm-images');
    const entry = join(store, img.kernelSha256);
    const size = readFileSync(entry).length;
    const mtime = spawnSync('stat', ['-c', '%y', entry], { encoding: 'utf8' }).stdout.trim();
    chmodSync(entry, 0o600);
    writeFileSync(entry, Buffer.alloc(size, 0xcc));
    chmodSync(entry, 0o400);
    expect(spawnSync('touch', ['-m', '-d', mtime, entry]).status).toBe(0);

    const { code, result } = await run();
    expect(result.diagnostics).toEqual([]);
    expect(code).toBe(0);
    const digest = spawnSync('sha256sum', [entry], { encoding: 'utf8' }).stdout.split(' ')[0];
    expect(digest).toBe(img.kernelSha256);
  }, 240_000);
});
