// System test of what a Tier-2 job's guest may read and execute (ADR 0024 "Jobs", ADR 0022 "Jobs"): REAL QEMU
// microVMs (TCG) started by the built CLI (`agentvm job run`), against a desired-state repository whose contract grants
// project data and declares a program. A hostile job, from inside its guest, tries to write its read-only data, to reach
// an undeclared sibling project (directly and through symlinks planted in the data tree on the host), to execute the
// image's shell and binaries and copies of its own program, to remount and to make a user namespace — and fails; its
// entrypoint and its declared program run. A program whose bytes change, and a grant swapped for a symlink on the host,
// are refused before anything boots.
// Needs root, qemu-system-x86, busybox-static, gcc + libc6-dev (the guest launcher) and `npm run build`; without them
// it fails under CI=true and skips otherwise.

import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  appendFileSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  realpathSync,
  renameSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { JobRunResult } from '../src/app/job-run.js';
import { writeCpio } from '../src/providers/microvm/cpio.js';
import { agentvm, assertBuilt } from './support/cli.js';
import { gitdir, type GitDir } from './support/gitdir.js';
import { processesMentioning } from './support/processes.js';
import { testImage, type TestImage } from './support/test-image.js';

const HOW_TO =
  'Needs root and: apt-get install qemu-system-x86 busybox-static e2fsprogs gcc libc6-dev && scripts/build-test-image.sh && npm run build';
const inCi = process.env.CI === 'true';

function prerequisites(): TestImage | string {
  if (process.getuid?.() !== 0) return 'job runs need root';
  if (!existsSync('/bin/busybox')) return 'busybox-static is not installed';
  if (spawnSync('gcc', ['--version']).status !== 0) return 'gcc is not installed';
  if (!existsSync('/usr/bin/dash')) return 'dash is not installed';
  return testImage();
}

// A declared tool that tries the one way to execute that no mount option covers: an anonymous memfd copy of the job's
// own program, run with fexecve. Prints what stopped it.
const MEMFD_C = `#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>
int main(void) {
  int fd = memfd_create("x", 0);
  if (fd < 0) { perror("memfd_create"); return 3; }
  int src = open("/app/busybox", O_RDONLY);
  char buf[65536]; ssize_t n;
  while ((n = read(src, buf, sizeof buf)) > 0) if (write(fd, buf, (size_t)n) != n) return 5;
  char *argv[] = {"busybox", "echo", "pwned-memfd", 0}; char *envp[] = {0};
  fexecve(fd, argv, envp);
  perror("fexecve");
  return 4;
}
`;

// An init that knows nothing of confinement (as images built before it): READY, then the job as root.
const LEGACY_INIT =
  '#!/bin/sh\nexport PATH=/bin\nmount -t devtmpfs dev /dev\nexec </dev/null >/dev/console 2>&1\nmount -t proc proc /proc\n' +
  'for w in $(cat /proc/cmdline); do case $w in agentvm.nonce=*) n=${w#agentvm.nonce=} ;; esac; done\n' +
  'echo "AGENTVM-READY $n"\ncd /job/in && sh /job/run\necho "AGENTVM-EXIT $n $?"\nsleep 3\npoweroff -f\n';

// A job whose program is dynamically linked (the host's dash, with its loader and libc in its image): it runs; the
// loader it may map cannot be used to run anything else.
const DYNAMIC_JOB = [
  'o=$AGENTVM_OUT; echo dash-ran >$o/dash.out;',
  '/bin/busybox echo pwned >$o/bb.out 2>&1; echo $? >$o/bb.rc;',
  '/lib64/ld-linux-x86-64.so.2 /bin/busybox echo pwned >$o/ldso.out 2>&1; echo $? >$o/ldso.rc',
].join(' ');

// The disk job: reads its data, cannot write it, cannot execute a copy of the disk's busybox, sees no sibling.
const DISK_JOB = [
  'o=$AGENTVM_OUT; D=/srv/agentvm/data/projects;',
  'cat $D/shared/notes.txt >$o/read.out;',
  '(echo x >$D/shared/notes.txt) 2>$o/write.out; echo $? >$o/write.rc;',
  'ls $D >$o/projects.ls;',
  'cp /bin/busybox /tmp/bb; chmod 755 /tmp/bb; /tmp/bb echo pwned >$o/copy.out 2>&1; echo $? >$o/copy.rc;',
  'id -u >$o/uid',
].join(' ');

const image = prerequisites();
const missing = typeof image === 'string' ? image : undefined;
if (missing !== undefined && !inCi) console.warn(`job-guest: skipping: ${missing}. ${HOW_TO}`);

describe('job guest: available in CI', () => {
  it.runIf(inCi)('root, qemu and the test image are available on this machine', () => {
    expect(missing, `${missing ?? ''}. ${HOW_TO}`).toBeUndefined();
  });
});

const sha256 = (bytes: Buffer): string => createHash('sha256').update(bytes).digest('hex');
const SECRET = 'sibling-secret-7d1c';

// The hostile job, run by its own program (/app/busybox, a copy of busybox in its image that is not the image's
// /bin/busybox). Each probe's exit status goes to $AGENTVM_OUT/<name>.rc, its output to <name>.out. One line: governance
// refuses line breaks in command arguments.
const HOSTILE = [
  'o=$AGENTVM_OUT; D=/srv/agentvm/data/projects;',
  'p() { n=$1; shift; "$@" >"$o/$n.out" 2>&1; echo $? >"$o/$n.rc"; };',
  'id -u >"$o/uid";',
  'p read cat $D/shared/notes.txt;',
  'p write-ro eval "echo x >$D/shared/notes.txt";',
  'p create-ro eval "echo x >$D/shared/new.txt";',
  'p write-rw eval "echo x >$D/research/draft.txt";',
  'p read-rw cat $D/research/draft.txt;',
  'ls -a $D >"$o/projects.ls";',
  'p sibling cat $D/secret-sibling/secret.txt;',
  'p link-rel cat $D/shared/to-sibling;',
  'p link-abs cat $D/shared/abs-sibling;',
  'p remount mount -o remount,rw /srv/agentvm/data;',
  'p remount-exec mount -o remount,exec /;',
  'p userns unshare -r -m true;',
  'p bin-sh /bin/sh -c "echo pwned";',
  'p bin-busybox /bin/busybox echo pwned;',
  'p launcher /lib/agentvm/launch /bin/sh -c "echo pwned";',
  'cp /app/busybox /tmp/bb; chmod 755 /tmp/bb; p tmp-copy /tmp/bb echo pwned;',
  'cp /app/busybox $o/bb; chmod 755 $o/bb; p out-copy $o/bb echo pwned; rm -f $o/bb;',
  'p tool /job/tools/busybox echo tool-ran;',
  'p own /app/busybox echo own-ran;',
  'p memfd /job/tools/memfd;',
  'true',
].join(' ');

describe.skipIf(missing !== undefined)(
  'a job guest: only its data, read-only; only its programs execute (real microVMs)',
  () => {
    const img = image as TestImage;
    let base = '';
    let root = '';
    let repo: GitDir;
    let source: GitDir;
    let programPath = '';

    const repoArgs = (): string[] => ['--repo', repo.dir, '--root', root, '--host', 'h1'];
    const runArgs = (): string[] => ['--root', root, '--host', 'h1'];
    const jobsDir = (): string => join(root, 'run/agentvm/jobs');
    const dataDir = (): string => join(root, 'srv/agentvm/data/projects');

    beforeAll(async () => {
      assertBuilt();
      base = mkdtempSync(join(tmpdir(), 'agentvm-job-guest-'));
      root = join(base, 'root');
      const images = join(root, 'var/lib/agentvm/images');
      mkdirSync(images, { recursive: true });
      copyFileSync(img.kernel, join(images, 'vmlinuz'));
      // The job's own image: the test initramfs plus its program, /app/busybox (a copy, so a file of its own).
      const busybox = readFileSync('/bin/busybox');
      const appLayer = gzipSync(writeCpio([{ path: 'app/busybox', data: busybox, mode: 0o755 }]));
      const baseInitrd = readFileSync(img.initrd);
      const appImage = Buffer.concat([baseInitrd, Buffer.alloc((4 - (baseInitrd.length % 4)) % 4), appLayer]);
      writeFileSync(join(images, 'app.cpio.gz'), appImage);
      // The declared program: another busybox copy on the host (absolute path, under the host root).
      programPath = join(root, 'opt/tools/busybox');
      mkdirSync(join(root, 'opt/tools'), { recursive: true });
      writeFileSync(programPath, busybox, { mode: 0o755 });
      writeFileSync(join(base, 'memfd.c'), MEMFD_C);
      const cc = spawnSync('gcc', ['-static', '-O', '-o', join(root, 'opt/tools/memfd'), join(base, 'memfd.c')], {
        encoding: 'utf8',
      });
      expect(cc.status, cc.stderr).toBe(0);
      const memfd = readFileSync(join(root, 'opt/tools/memfd'));
      // An image whose init does not confine: the job must not run in it.
      const legacyLayer = gzipSync(writeCpio([{ path: 'init', data: Buffer.from(LEGACY_INIT), mode: 0o755 }]));
      const legacyImage = Buffer.concat([appImage, legacyLayer]);
      writeFileSync(join(images, 'legacy.cpio.gz'), legacyImage);
      copyFileSync(img.disk, join(images, 'rootfs.ext4'));
      const dynLayer = gzipSync(
        writeCpio(
          ['/usr/bin/dash', '/lib/x86_64-linux-gnu/libc.so.6', '/lib64/ld-linux-x86-64.so.2'].map((p) => ({
            path: p.slice(1),
            data: readFileSync(realpathSync(p)),
            mode: 0o755,
          })),
        ),
      );
      const dynImage = Buffer.concat([baseInitrd, Buffer.alloc((4 - (baseInitrd.length % 4)) % 4), dynLayer]);
      writeFileSync(join(images, 'dyn.cpio.gz'), dynImage);
      copyFileSync(img.initrd, join(images, 'initramfs.cpio.gz'));

      // The data root: two granted projects, an undeclared sibling with a secret, and symlinks planted in the granted
      // tree pointing at the sibling (relative and absolute host paths).
      mkdirSync(join(dataDir(), 'shared/sub'), { recursive: true });
      mkdirSync(join(dataDir(), 'research'), { recursive: true });
      mkdirSync(join(dataDir(), 'secret-sibling'), { recursive: true });
      writeFileSync(join(dataDir(), 'shared/notes.txt'), 'shared notes v1\n');
      writeFileSync(join(dataDir(), 'shared/sub/deep.txt'), 'deep\n');
      writeFileSync(join(dataDir(), 'research/draft.txt'), 'draft v1\n');
      writeFileSync(join(dataDir(), 'secret-sibling/secret.txt'), `${SECRET}\n`);
      symlinkSync('../secret-sibling/secret.txt', join(dataDir(), 'shared/to-sibling'));
      symlinkSync(join(dataDir(), 'secret-sibling/secret.txt'), join(dataDir(), 'shared/abs-sibling'));

      source = await gitdir({ 'README.md': 'the job workload release\n' });
      repo = await gitdir({
        'hosts/h1.yaml':
          'apiVersion: agentvm.dev/v1alpha1\nkind: Host\nmetadata:\n  name: h1\nspec:\n  workloads: [prober]\n  microvm:\n    accel: tcg\n',
        'workloads/prober/contract.yaml':
          'apiVersion: agentvm.dev/v1alpha1\nkind: WorkloadContract\nmetadata:\n  name: prober\nspec:\n  owner: jobs@example.com\n  riskTier: low\n  substrate: job\n' +
          `  tools:\n    - kind: program\n      name: busybox\n      path: /opt/tools/busybox\n      sha256: ${sha256(busybox)}\n` +
          `    - kind: program\n      name: memfd\n      path: /opt/tools/memfd\n      sha256: ${sha256(memfd)}\n` +
          '  data:\n    - path: projects/shared\n      access: read-only\n    - path: projects/research\n      access: read-write\n    - path: projects/absent\n      access: read-only\n',
        'workloads/prober/manifest.yaml':
          `apiVersion: agentvm.dev/v1alpha1\nkind: WorkloadManifest\nmetadata:\n  name: prober\nspec:\n  archetype: git-release\n  source:\n    git:\n      repo: ${source.dir}\n      commit: ${source.commit}\n  jobs:\n` +
          `    - name: probe\n      kernel: { file: vmlinuz, sha256: ${img.kernelSha256} }\n      rootfs: { file: app.cpio.gz, sha256: ${sha256(appImage)}, format: initramfs }\n` +
          `      command: [/app/busybox, sh, -c, ${JSON.stringify(HOSTILE)}]\n      timeoutSeconds: 120\n` +
          `    - name: legacy\n      kernel: { file: vmlinuz, sha256: ${img.kernelSha256} }\n      rootfs: { file: legacy.cpio.gz, sha256: ${sha256(legacyImage)}, format: initramfs }\n` +
          `      command: [sh, -c, "echo ran-unconfined; sleep 20"]\n      timeoutSeconds: 60\n` +
          `    - name: dynamic\n      kernel: { file: vmlinuz, sha256: ${img.kernelSha256} }\n      rootfs: { file: dyn.cpio.gz, sha256: ${sha256(dynImage)}, format: initramfs }\n` +
          `      command: [/usr/bin/dash, -c, ${JSON.stringify(DYNAMIC_JOB)}]\n      timeoutSeconds: 120\n` +
          // A disk job: its root is the test disk, its data the same read-only copies.
          `    - name: ondisk\n      kernel: { file: vmlinuz, sha256: ${img.kernelSha256} }\n      rootfs: { file: rootfs.ext4, sha256: ${img.diskSha256}, format: disk }\n      initramfs: { file: initramfs.cpio.gz, sha256: ${img.initrdSha256} }\n` +
          `      command: [sh, -c, ${JSON.stringify(DISK_JOB)}]\n      timeoutSeconds: 120\n`,
      });
      const plan = await agentvm(['plan', ...repoArgs()], { timeoutMs: 60_000 });
      // A missing grant is a plan diagnostic (as for services), not a silent empty copy.
      expect(plan.stdout + plan.stderr).toMatch(/microvm\.data-missing[\s\S]*projects\/absent/);
      expect(plan.stdout + plan.stderr).toMatch(/microvm\.data-read-write[\s\S]*projects\/research/);
      const applied = await agentvm(['apply', '--auto-approve', ...repoArgs()], { timeoutMs: 60_000 });
      expect(applied.code, applied.stdout + applied.stderr).toBe(0);
    }, 180_000);

    afterAll(async () => {
      await repo?.cleanup();
      await source?.cleanup();
      if (base !== '') rmSync(base, { recursive: true, force: true });
    });

    afterEach(() => {
      expect(processesMentioning(`${root}/`)).toEqual([]);
      expect(existsSync(jobsDir()) ? readdirSync(jobsDir()) : []).toEqual([]);
    });

    async function run(
      out: string,
    ): Promise<{ code: number | null; result?: JobRunResult; stdout: string; stderr: string }> {
      const res = await agentvm(['job', 'run', 'prober/probe', '--out', out, ...runArgs(), '--json'], {
        timeoutMs: 150_000,
      });
      let result: JobRunResult | undefined;
      try {
        result = JSON.parse(res.stdout) as JobRunResult;
      } catch {
        result = undefined;
      }
      return { code: res.code, result, stdout: res.stdout, stderr: res.stderr };
    }

    it('GIVEN a hostile job WHEN it runs THEN it reads its read-only data, cannot write it or reach a sibling, and executes only its program and its declared tool', async () => {
      const out = join(base, 'out-probe');
      const { code, result, stdout, stderr } = await run(out);
      expect(result, stdout + stderr).toBeDefined();
      const r = result as JobRunResult;
      const file = (name: string): string =>
        existsSync(join(out, name)) ? readFileSync(join(out, name), 'utf8') : `<no ${name}>`;
      const rc = (name: string): string => file(`${name}.rc`).trim();
      expect(r.exitCode, r.console).toBe(0);
      expect(code).toBe(0);
      expect(r.diagnostics.map((d) => d.code).sort()).toEqual(['microvm.data-missing', 'microvm.data-read-write']);

      // The job runs unprivileged.
      expect(file('uid').trim()).toBe('1000');
      // Data: the read-only grant is readable and not writable; the read-write grant arrives read-only; only granted
      // paths exist; symlinks planted on the host resolve inside the guest, where the sibling is absent.
      expect(rc('read')).toBe('0');
      expect(file('read.out')).toBe('shared notes v1\n');
      for (const probe of ['write-ro', 'create-ro', 'write-rw']) {
        expect(rc(probe), `${probe}: ${file(`${probe}.out`)}`).not.toBe('0');
        expect(file(`${probe}.out`)).toContain('Read-only file system');
      }
      expect(file('read-rw.out')).toBe('draft v1\n');
      expect(
        file('projects.ls')
          .split('\n')
          .filter((l) => l !== ''),
      ).toEqual(['.', '..', 'research', 'shared']);
      for (const probe of ['sibling', 'link-rel', 'link-abs']) {
        expect(rc(probe), probe).not.toBe('0');
        expect(file(`${probe}.out`)).not.toContain(SECRET);
      }
      // No way to undo the confinement: no remount, no user namespace.
      for (const probe of ['remount', 'remount-exec', 'userns'])
        expect(rc(probe), `${probe}: ${file(`${probe}.out`)}`).not.toBe('0');
      // Exec: the image's shell and busybox, the launcher, and copies of its own program in writable places fail with
      // EACCES (126); its own program and its declared tool run.
      for (const probe of ['bin-sh', 'bin-busybox', 'launcher', 'tmp-copy', 'out-copy']) {
        expect(rc(probe), `${probe}: ${file(`${probe}.out`)}`).toBe('126');
        expect(file(`${probe}.out`)).not.toContain('pwned');
      }
      expect(rc('tool'), file('tool.out')).toBe('0');
      expect(file('tool.out')).toBe('tool-ran\n');
      expect(file('own.out')).toBe('own-ran\n');
      // The anonymous-file route is closed too: memfd_create is denied.
      expect(rc('memfd'), file('memfd.out')).toBe('3');
      expect(file('memfd.out')).toContain('memfd_create: Operation not permitted');
      // The host's data is untouched.
      expect(readFileSync(join(dataDir(), 'shared/notes.txt'), 'utf8')).toBe('shared notes v1\n');
      expect(readFileSync(join(dataDir(), 'research/draft.txt'), 'utf8')).toBe('draft v1\n');
      expect(existsSync(join(dataDir(), 'shared/new.txt'))).toBe(false);
    }, 180_000);

    /** Runs one job of `prober` with --out; its result and a reader of its result files. */
    async function runJob(job: string): Promise<{ result: JobRunResult; file: (name: string) => string }> {
      const out = join(base, `out-${job}`);
      const res = await agentvm(['job', 'run', `prober/${job}`, '--out', out, ...runArgs(), '--json'], {
        timeoutMs: 150_000,
      });
      return {
        result: JSON.parse(res.stdout) as JobRunResult,
        file: (name) => readFileSync(join(out, name), 'utf8'),
      };
    }

    it('GIVEN a disk job WHEN it runs THEN it reads its data read-only at the same place and executes nothing it copied', async () => {
      const { result, file } = await runJob('ondisk');
      expect(result.exitCode, result.console).toBe(0);
      expect(file('uid').trim()).toBe('1000');
      expect(file('read.out')).toBe('shared notes v1\n');
      expect(file('write.rc').trim()).not.toBe('0');
      expect(file('write.out')).toContain('Read-only file system');
      expect(
        file('projects.ls')
          .split('\n')
          .filter((l) => l !== ''),
      ).toEqual(['research', 'shared']);
      expect(file('copy.rc').trim()).toBe('126');
      expect(file('copy.out')).not.toContain('pwned');
    }, 180_000);

    it('GIVEN a dynamically linked program WHEN it runs THEN its loader and libraries map, and the loader runs nothing else', async () => {
      const { result, file } = await runJob('dynamic');
      expect(result.exitCode, result.console).toBe(0);
      expect(file('dash.out')).toBe('dash-ran\n');
      expect(file('bb.rc').trim()).toBe('126');
      expect(file('ldso.rc').trim()).not.toBe('0');
      expect(file('bb.out') + file('ldso.out')).not.toContain('pwned');
    }, 180_000);

    it('GIVEN an image whose init does not confine jobs WHEN the job is run THEN its VM is stopped at READY and the run fails', async () => {
      const res = await agentvm(['job', 'run', 'prober/legacy', ...runArgs(), '--json'], { timeoutMs: 150_000 });
      const result = JSON.parse(res.stdout) as JobRunResult;
      expect(res.code).toBe(1);
      expect(result.status).toBe('failed');
      expect(result.exitCode).toBeNull();
      expect(result.diagnostics.map((d) => d.code)).toContain('microvm.not-confined');
    }, 180_000);

    it('GIVEN the declared program changed on the host WHEN the job is run THEN it is refused before anything boots', async () => {
      const pristine = readFileSync(programPath);
      appendFileSync(programPath, Buffer.from([0]));
      try {
        const { code, stdout, stderr } = await run(join(base, 'out-changed'));
        expect(code).toBe(1);
        expect(stdout + stderr).toContain('microvm.tool-digest');
        expect(stdout + stderr).toContain(`not its pin sha256:${sha256(pristine)}`);
        expect(stdout + stderr).not.toContain('AGENTVM-READY');
        expect(existsSync(join(base, 'out-changed')) ? readdirSync(join(base, 'out-changed')) : []).toEqual([]);
      } finally {
        writeFileSync(programPath, pristine, { mode: 0o755 });
      }
      // The plan says it too.
      appendFileSync(programPath, Buffer.from([0]));
      try {
        const plan = await agentvm(['plan', ...repoArgs()], { timeoutMs: 60_000 });
        expect(plan.stdout + plan.stderr).toContain('microvm.tool-digest');
      } finally {
        writeFileSync(programPath, pristine, { mode: 0o755 });
      }
    }, 120_000);

    it('GIVEN a granted directory swapped for a symlink to a sibling on the host WHEN the job is run THEN it is refused before anything boots', async () => {
      const shared = join(dataDir(), 'shared');
      renameSync(shared, join(dataDir(), 'shared.real'));
      symlinkSync('secret-sibling', shared);
      try {
        const { code, stdout, stderr } = await run(join(base, 'out-swapped'));
        expect(code).toBe(1);
        expect(stdout + stderr).toContain('microvm.data-symlink');
        expect(stdout + stderr).not.toContain(SECRET);
      } finally {
        rmSync(shared);
        renameSync(join(dataDir(), 'shared.real'), shared);
      }
    }, 120_000);
  },
);
