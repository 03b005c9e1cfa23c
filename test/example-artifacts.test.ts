// The bundled example fleet's release artifacts (scripts/example-artifacts.js, examples/artifacts, examples/keys):
// they are up to date with their sources (`--check`), reproducible (a rebuild of a pristine copy changes no byte),
// and every signed workload of examples/fleet deploys what its manifest pins: the pinned commit is a ref of the
// git bundle, the tarball matches the pinned integrity, and the committed Sigstore bundle verifies with agentvm's
// verifyArtifact (key policy from the committed public key, zero thresholds) against exactly the artifact it
// describes — and not against that artifact with one byte changed. Real git, real npm, real node, no mocks.

import { execFile, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cpSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { verifyArtifact } from '../src/providers/image/verify.js';

const REPO = fileURLToPath(new URL('..', import.meta.url));
const SCRIPT = join(REPO, 'scripts/example-artifacts.js');
const FLEET = join(REPO, 'examples/fleet');
const ARTIFACTS = join(REPO, 'examples/artifacts');
const KEY_THRESHOLDS = { tlog: 0, ctlog: 0, tsa: 0 };

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

function runScript(args: string[]): Promise<Result> {
  return new Promise((done) => {
    execFile(process.execPath, [SCRIPT, ...args], { maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
      done({ code, stdout, stderr });
    });
  });
}

/** git with no user or system config and none of the caller's GIT_* variables: what agentvm's release.git sees. */
function git(args: string[], cwd: string): Buffer {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('GIT_')) env[k] = v;
  Object.assign(env, { GIT_CONFIG_NOSYSTEM: '1', GIT_CONFIG_GLOBAL: '/dev/null', LC_ALL: 'C' });
  const res = spawnSync('git', args, { cwd, env, maxBuffer: 256 << 20 });
  if (res.status !== 0) throw new Error(`git ${args.join(' ')} failed: ${res.stderr.toString()}`);
  return res.stdout;
}

const sha256 = (bytes: Uint8Array): string => createHash('sha256').update(bytes).digest('hex');

function flipOneByte(bytes: Buffer): Buffer {
  const copy = Buffer.from(bytes);
  const at = Math.floor(copy.length / 2);
  copy[at] = (copy[at] ?? 0) ^ 0x01;
  return copy;
}

interface GitSource {
  repo: string;
  commit: string;
  subdir?: string;
}
interface PackageSource {
  name: string;
  version: string;
  integrity: string;
  tarball: string;
}
interface Manifest {
  spec: {
    source: { git?: GitSource; package?: PackageSource };
    signature?: { bundle: string; key?: string };
  };
}

/** A desired-state repository path: relative ones (./, ../) resolve against the repository root, as agentvm does. */
function fromFleet(path: string): string {
  return path.startsWith('./') || path.startsWith('../') ? resolve(FLEET, path) : path;
}

/** The bundle's commit ids by ref, from `git bundle list-heads`. */
function bundleHeads(bundle: string, cwd: string): Map<string, string> {
  const heads = new Map<string, string>();
  for (const line of git(['bundle', 'list-heads', bundle], cwd).toString().split('\n').filter(Boolean)) {
    const [commit, ref] = line.split(' ');
    if (commit && ref) heads.set(ref, commit);
  }
  return heads;
}

/** The signed artifact of a git release, fetched by commit from the bundle into a fresh repository. */
function gitReleaseArtifact(source: GitSource, work: string): Buffer {
  const dir = mkdtempSync(join(work, 'fetch-'));
  git(['init', '-q', '--bare', dir], work);
  git(['fetch', '-q', fromFleet(source.repo), source.commit], dir);
  const treeish = source.subdir ? `${source.commit}:${source.subdir}` : source.commit;
  return git(['archive', '--format=tar', treeish], dir);
}

function workloads(): { name: string; dir: string; manifest: Manifest }[] {
  return readdirSync(join(FLEET, 'workloads'))
    .sort()
    .map((name) => {
      const dir = join(FLEET, 'workloads', name);
      return { name, dir, manifest: parseYaml(readFileSync(join(dir, 'manifest.yaml'), 'utf8')) as Manifest };
    });
}

describe('example artifacts', () => {
  let work: string;
  beforeAll(() => {
    work = mkdtempSync(join(tmpdir(), 'agentvm-example-artifacts-test-'));
  });
  afterAll(() => {
    rmSync(work, { recursive: true, force: true });
  });

  it('GIVEN the committed examples WHEN rebuilt with --check THEN nothing would change', async () => {
    const res = await runScript(['--check']);
    expect(res.stderr).toBe('');
    expect(res.code).toBe(0);
    expect(res.stdout).toContain('example artifacts are up to date');
  });

  it('every workload pins an artifact of examples/artifacts by a path relative to the repository', () => {
    const pins = Object.fromEntries(
      workloads().map(({ name, manifest }) => [
        name,
        manifest.spec.source.git?.repo ?? manifest.spec.source.package?.tarball,
      ]),
    );
    expect(pins).toEqual({
      'agent-pool': '../artifacts/agent-pool-1.0.0.tgz',
      'docs-helper': '../artifacts/orchestrator.bundle',
      'research-orchestrator': '../artifacts/orchestrator.bundle',
      'transcript-summarizer': '../artifacts/transcript-summarizer.bundle',
    });
  });

  it('GIVEN each workload WHEN its pinned release is fetched THEN the commit is a ref of the bundle or the tarball matches the integrity', () => {
    for (const { name, manifest } of workloads()) {
      const { git: gitSource, package: pkg } = manifest.spec.source;
      if (gitSource) {
        const heads = [...bundleHeads(fromFleet(gitSource.repo), work).values()];
        expect(heads, name).toContain(gitSource.commit);
        expect(gitReleaseArtifact(gitSource, work).length, name).toBeGreaterThan(1024);
      } else {
        const tarball = readFileSync(fromFleet(pkg!.tarball));
        expect(`sha512-${createHash('sha512').update(tarball).digest('base64')}`, name).toBe(pkg!.integrity);
      }
    }
  });

  it('GIVEN each signed workload WHEN its bundle is verified against the pinned artifact THEN it passes; one flipped byte is refused', async () => {
    const signed: string[] = [];
    for (const { name, dir, manifest } of workloads()) {
      const signature = manifest.spec.signature;
      if (!signature) continue;
      signed.push(name);
      const { git: gitSource, package: pkg } = manifest.spec.source;
      const artifact = gitSource ? gitReleaseArtifact(gitSource, work) : readFileSync(fromFleet(pkg!.tarball));
      const bundle = JSON.parse(readFileSync(join(dir, signature.bundle), 'utf8')) as {
        messageSignature: { messageDigest: { digest: string } };
      };
      const publicKeyPem = readFileSync(join(dir, signature.key!), 'utf8');
      const request = {
        bundle,
        artifactSha256: sha256(artifact),
        artifact,
        policy: { kind: 'key' as const, publicKeyPem },
        thresholds: KEY_THRESHOLDS,
      };

      const res = await verifyArtifact(request);
      expect(res.diagnostics, name).toEqual([]);
      expect(res.ok, name).toBe(true);

      // The changed artifact under the original pin: refused before the signature is even looked at.
      const tampered = flipOneByte(artifact);
      const mismatch = await verifyArtifact({ ...request, artifact: tampered });
      expect(
        mismatch.diagnostics.map((d) => d.code),
        name,
      ).toEqual(['signature.digest-mismatch']);

      // The changed artifact, re-pinned, with the bundle's digest rewritten to match: only the signature stands in the way.
      const forged = structuredClone(bundle);
      forged.messageSignature.messageDigest.digest = createHash('sha256').update(tampered).digest('base64');
      const invalid = await verifyArtifact({
        ...request,
        bundle: forged,
        artifactSha256: sha256(tampered),
        artifact: tampered,
      });
      expect(
        invalid.diagnostics.map((d) => d.code),
        name,
      ).toEqual(['signature.invalid']);
    }
    // Moderate and above need a signed release: everything but the low-risk docs-helper.
    expect(signed).toEqual(['agent-pool', 'research-orchestrator', 'transcript-summarizer']);
  });

  it('GIVEN releases.json WHEN each release is rebuilt from its file THEN its digest matches and its bundle verifies (v2 included, for promotion)', async () => {
    const index = JSON.parse(readFileSync(join(ARTIFACTS, 'releases.json'), 'utf8')) as {
      signingKey: string;
      releases: {
        id: string;
        kind: string;
        repo?: string;
        ref?: string;
        commit?: string;
        tarball?: string;
        sha256: string;
        bundle: string;
      }[];
    };
    const publicKeyPem = readFileSync(resolve(ARTIFACTS, index.signingKey), 'utf8');
    expect(publicKeyPem).toMatch(/^-----BEGIN PUBLIC KEY-----/);
    expect(index.releases.map((r) => r.id)).toEqual([
      'orchestrator-v1',
      'orchestrator-v2',
      'transcript-summarizer-v1',
      'agent-pool-1.0.0',
    ]);
    for (const release of index.releases) {
      let artifact: Buffer;
      if (release.kind === 'git') {
        const bundleFile = join(ARTIFACTS, release.repo!);
        expect(bundleHeads(bundleFile, work).get(release.ref!), release.id).toBe(release.commit);
        artifact = gitReleaseArtifact({ repo: bundleFile, commit: release.commit! }, work);
      } else {
        artifact = readFileSync(join(ARTIFACTS, release.tarball!));
      }
      expect(sha256(artifact), release.id).toBe(release.sha256);
      const bundle = JSON.parse(readFileSync(join(ARTIFACTS, release.bundle), 'utf8')) as unknown;
      const res = await verifyArtifact({
        bundle,
        artifactSha256: release.sha256,
        artifact,
        policy: { kind: 'key', publicKeyPem },
        thresholds: KEY_THRESHOLDS,
      });
      expect(res.diagnostics, release.id).toEqual([]);
    }
  });

  it('orchestrator v2 is v1 plus a RELEASE file, so a promotion and a rollback can be shown', () => {
    const bundle = join(ARTIFACTS, 'orchestrator.bundle');
    const heads = bundleHeads(bundle, work);
    const v1 = heads.get('refs/heads/v1')!;
    const v2 = heads.get('refs/heads/main')!;
    const dir = mkdtempSync(join(work, 'orchestrator-'));
    git(['init', '-q', '--bare', dir], work);
    git(['fetch', '-q', bundle, 'refs/heads/*:refs/heads/*'], dir);
    expect(
      git(['rev-parse', `${v2}^`], dir)
        .toString()
        .trim(),
    ).toBe(v1);
    expect(git(['diff', '--name-status', v1, v2], dir).toString()).toBe('A\tRELEASE\n');
    expect(git(['show', `${v2}:RELEASE`], dir).toString()).toBe('v2\n');
    const files = git(['ls-tree', '-r', '--name-only', v1], dir).toString().split('\n').filter(Boolean);
    expect(files).toEqual(['README.md', 'orchestrator/__init__.py', 'orchestrator/__main__.py']);
  });

  describe('the transcript summarizer job script', () => {
    const hasBusybox = spawnSync('busybox', ['true']).status === 0;
    if (!hasBusybox && process.env.CI === 'true') {
      it('busybox is installed', () => {
        expect.fail('busybox is required in CI: apt-get install busybox-static');
      });
    }
    it.skipIf(!hasBusybox)(
      'runs under busybox sh: first line and word count of each input file, control characters removed',
      async () => {
        const manifest = workloads().find((w) => w.name === 'transcript-summarizer')!.manifest;
        const release = join(work, 'summarizer-release');
        await mkdir(release);
        writeFileSync(join(release, 'release.tar'), gitReleaseArtifact(manifest.spec.source.git!, work));
        expect(spawnSync('tar', ['-xf', 'release.tar'], { cwd: release }).status).toBe(0);
        const input = join(work, 'input');
        await mkdir(input);
        writeFileSync(join(input, 'a.txt'), 'Kickoff\x1b]0;pwned\x07 meeting\nsecond line has five words\n');
        writeFileSync(join(input, 'b.txt'), 'one two');
        const res = spawnSync('busybox', ['sh', join(release, 'summarize'), '--input', input], { encoding: 'utf8' });
        expect(res.stderr).toBe('');
        expect(res.status).toBe(0);
        expect(res.stdout).toBe(
          'a.txt: 7 words: Kickoff]0;pwned meeting\nb.txt: 2 words: one two\ntotal: 2 files, 9 words\n',
        );
        const missing = spawnSync('busybox', ['sh', join(release, 'summarize'), '--input', join(work, 'nope')], {
          encoding: 'utf8',
        });
        expect(missing.status).toBe(1);
      },
    );
    if (!hasBusybox && process.env.CI !== 'true') {
      it.skip('busybox not installed: apt-get install busybox-static to run the summarizer under busybox sh', () => {});
    }
  });

  describe('on a copy of the checkout', () => {
    let root: string;
    beforeAll(() => {
      root = join(work, 'checkout');
      for (const dir of ['examples', 'reference-workloads'])
        cpSync(join(REPO, dir), join(root, dir), { recursive: true });
    });

    it('GIVEN a pristine copy WHEN the artifacts are rebuilt and written THEN no byte changes (reproducible, signatures kept)', async () => {
      const before = snapshot(join(root, 'examples'));
      const res = await runScript(['--root', root]);
      expect(res.stderr).toBe('');
      expect(res.code).toBe(0);
      expect(res.stdout).toContain('nothing written');
      expect(snapshot(join(root, 'examples'))).toEqual(before);
    });

    it('GIVEN a changed source WHEN checked THEN it fails naming what is stale; rebuilt THEN the check passes with a new pinned commit', async () => {
      const main = join(root, 'reference-workloads/orchestrator-py/orchestrator/__main__.py');
      writeFileSync(main, `${readFileSync(main, 'utf8')}\n# changed\n`);
      const stale = await runScript(['--check', '--root', root]);
      expect(stale.code).toBe(1);
      expect(stale.stderr).toContain('out of date: examples/artifacts/orchestrator.bundle');
      expect(stale.stderr).toContain('out of date: examples/fleet/workloads/research-orchestrator/manifest.yaml');
      expect(stale.stderr).toContain(
        'out of date: examples/fleet/workloads/research-orchestrator/release.sigstore.json',
      );
      expect(stale.stderr).not.toContain('agent-pool');
      expect(stale.stderr).not.toContain('transcript-summarizer');

      const rebuilt = await runScript(['--root', root]);
      expect(rebuilt.code).toBe(0);
      const fresh = await runScript(['--check', '--root', root]);
      expect(fresh.stderr).toBe('');
      expect(fresh.code).toBe(0);
      const pinned = (file: string) => (parseYaml(readFileSync(file, 'utf8')) as Manifest).spec.source.git!.commit;
      const manifest = 'examples/fleet/workloads/research-orchestrator/manifest.yaml';
      expect(pinned(join(root, manifest))).not.toBe(pinned(join(REPO, manifest)));
      expect(pinned(join(root, manifest))).toMatch(/^[0-9a-f]{40}$/);
    });

    it('GIVEN a workload bundle whose signature was altered WHEN checked THEN it fails', async () => {
      const bundle = join(root, 'examples/fleet/workloads/agent-pool/release.sigstore.json');
      const json = JSON.parse(readFileSync(bundle, 'utf8')) as { messageSignature: { signature: string } };
      const signature = Buffer.from(json.messageSignature.signature, 'base64');
      json.messageSignature.signature = flipOneByte(signature).toString('base64');
      writeFileSync(bundle, JSON.stringify(json));
      const res = await runScript(['--check', '--root', root]);
      expect(res.code).toBe(1);
      expect(res.stderr).toContain('out of date: examples/fleet/workloads/agent-pool/release.sigstore.json');
    });
  });
});

/** Every file under `dir` with its sha256, relative paths sorted. */
function snapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const entry of readdirSync(dir, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile()) continue;
    const file = join(entry.parentPath, entry.name);
    out[file.slice(dir.length + 1)] = sha256(readFileSync(file));
  }
  return Object.fromEntries(Object.entries(out).sort(([a], [b]) => a.localeCompare(b)));
}
