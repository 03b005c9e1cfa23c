#!/usr/bin/env node
// example-artifacts: builds the release artifacts the bundled example fleet (examples/fleet) deploys from, so the
// demo and the tests deploy for real, offline, on a fresh machine; signs them with the EXAMPLE key
// (examples/keys/, examples only) and pins them in the workload manifests.
//
//   node scripts/example-artifacts.js            rebuild; write what changed; print commits and digests
//   node scripts/example-artifacts.js --check    rebuild in a temp dir; exit 1 if anything committed would change
//   --root <dir>                                 act on another checkout (a dir holding examples/ and reference-workloads/)
//
// Invariants:
//   - Reproducible: the source repositories are built with git plumbing from a fixed file list (sorted paths,
//     modes decided by content: `#!` → 100755, else 100644), fixed author, committer, dates and messages, SHA-1
//     object format and no user or system git config, so the commit ids are the same on every machine. The
//     package tarball is packed from a copy with normalised modes, with no user npm config and a private cache.
//   - The signed artifact of a git release is `git archive --format=tar <commit>` (tar.umask 0002, git's default);
//     of a package release, the tarball bytes. A bundle is a message signature over that artifact (sha256).
//   - Job images: the example fleet has no bootable kernel or initramfs to ship (they are megabytes and built per
//     machine, scripts/build-test-image.sh), so examples/artifacts/images/ holds small text STAND-INS that are real
//     files: pinned by sha256 in the job's manifest and signed with the example key (a bundle per image in the
//     workload directory), so plan and apply verify them like real images. QEMU cannot boot them.
//   - Idempotent: ECDSA signatures are randomized, so a committed bundle that still verifies against the rebuilt
//     artifact with the example key is kept, never re-signed; a committed git bundle with the same refs, or a
//     tarball with the same uncompressed content (gzip bytes may differ with another zlib), is kept too. A run
//     over an up-to-date checkout changes no byte, and `--check` compares by verifying, not by byte equality.
// Exit codes: 0 ok (or up to date), 1 error or (with --check) out of date, 2 usage.

import { execFile } from 'node:child_process';
import { createHash, createPublicKey, verify as verifySignature } from 'node:crypto';
import { chmod, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gunzipSync } from 'node:zlib';
import { parseDocument } from 'yaml';

const SCRIPTS = dirname(fileURLToPath(import.meta.url));
const SIGN_LOCAL = join(SCRIPTS, 'sign-local.js');

const USAGE = 'usage: node scripts/example-artifacts.js [--check] [--root <dir>]';

/** Fixed identity and clock of every example commit: the commit ids depend on nothing else than the files. */
const AUTHOR = { name: 'agentvm examples', email: 'examples@agentvm.invalid' };
const EPOCH = 1_735_689_600; // 2025-01-01T00:00:00Z

const KEY_DIR = 'examples/keys';
const PRIVATE_KEY = `${KEY_DIR}/example-signing.key.pem`;
const PUBLIC_KEY = `${KEY_DIR}/example-signing.pub.pem`;
const ARTIFACTS = 'examples/artifacts';
const FLEET = 'examples/fleet';

/** Which release each example workload pins. The manifest's `signature` (if any) says where its bundle and key go. */
const WORKLOAD_RELEASES = [
  { workload: 'research-orchestrator', release: 'orchestrator-v1' },
  { workload: 'docs-helper', release: 'orchestrator-v1' },
  { workload: 'transcript-summarizer', release: 'transcript-summarizer-v1' },
  { workload: 'agent-pool', release: 'agent-pool-1.0.0' },
];

/**
 * The job images each example workload pins: stand-ins (see the header), one file per image under
 * examples/artifacts/images/, and the bundle the manifest names for it (default `<image>.sigstore.json`).
 */
const JOB_IMAGES = [
  { workload: 'transcript-summarizer', job: 'summarize', image: 'kernel', file: 'summarizer-vmlinuz.stand-in' },
  { workload: 'transcript-summarizer', job: 'summarize', image: 'rootfs', file: 'summarizer-initramfs.stand-in' },
];

function standInImage({ workload, job, image, file }) {
  return Buffer.from(`agentvm example STAND-IN for the ${image} image of job ${workload}/${job} (${file}).
This file is not a ${image === 'kernel' ? 'kernel' : 'root filesystem'}: QEMU cannot boot it, so \`agentvm job run\` fails at boot.
It exists so the example fleet pins (sha256) and signs (examples/keys, EXAMPLE key) a real file that plan and
apply verify like a real image. To run the job, build real images (scripts/build-test-image.sh), copy them into
<root>/var/lib/agentvm/images/, pin their sha256 in the manifest and sign each with your own key
(node scripts/sign-local.js sign --key <private key> <image> > <image>.sigstore.json).
Generated by scripts/example-artifacts.js; do not edit.
`);
}

const SUMMARIZE = `#!/bin/sh
# summarize: for every regular file in the input directory, prints its name, its word count and its first line;
# then the totals. POSIX sh (busybox compatible). The input is untrusted: control characters are removed from
# what is echoed, lines are cut at 200 characters, and nothing read is ever evaluated.
# Usage: summarize [--input <dir>]   (default: /input)
set -eu
dir=/input
while [ $# -gt 0 ]; do
  case "$1" in
    --input)
      [ $# -ge 2 ] || { echo "summarize: --input needs a directory" >&2; exit 2; }
      dir=$2
      shift 2
      ;;
    --input=*)
      dir=\${1#--input=}
      shift
      ;;
    *)
      echo "summarize: unknown argument: $1" >&2
      exit 2
      ;;
  esac
done
[ -d "$dir" ] || { echo "summarize: $dir is not a directory" >&2; exit 1; }
files=0
total=0
for f in "$dir"/*; do
  [ -f "$f" ] || continue
  name=$(printf '%s' "\${f##*/}" | tr -d '\\000-\\037\\177' | cut -c 1-200)
  first=$(head -n 1 < "$f" | tr -d '\\000-\\037\\177' | cut -c 1-200)
  words=$(wc -w < "$f")
  words=$((words + 0))
  printf '%s: %d words: %s\\n' "$name" "$words" "$first"
  files=$((files + 1))
  total=$((total + words))
done
printf 'total: %d files, %d words\\n' "$files" "$total"
`;

const SUMMARIZER_README = `# transcript-summarizer

Example Tier-2 job of the agentvm example fleet. \`summarize [--input <dir>]\` prints, for every file in the
input directory (default \`/input\`), its word count and first line, then the totals. POSIX sh, runs under busybox.
Generated by agentvm's scripts/example-artifacts.js; do not edit the bundle by hand.
`;

class UsageError extends Error {}

function parseArgs(argv) {
  const options = { check: false, root: resolve(SCRIPTS, '..') };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--check') options.check = true;
    else if (arg === '--root') {
      const dir = argv[++i];
      if (!dir) throw new UsageError('--root needs a directory');
      options.root = resolve(dir);
    } else if (arg.startsWith('--root=')) options.root = resolve(arg.slice('--root='.length));
    else throw new UsageError(`unknown argument "${arg}"`);
  }
  return options;
}

// ---------------------------------------------------------------------------------------------------------------
// processes

/** Runs a command; resolves to stdout bytes; rejects with the command's stderr in the message. */
function run(command, args, { env, cwd, input } = {}) {
  return new Promise((resolvePromise, reject) => {
    const child = execFile(
      command,
      args,
      { env, cwd, encoding: 'buffer', maxBuffer: 512 * 1024 * 1024 },
      (err, stdout, stderr) => {
        if (err) {
          const why = stderr.toString('utf8').trim() || err.message;
          reject(new Error(`${command} ${args.join(' ')} failed: ${why}`));
        } else resolvePromise(stdout);
      },
    );
    if (input !== undefined) child.stdin.end(input);
  });
}

/**
 * The environment every git call runs in: none of the caller's GIT_* variables (a GIT_DIR or GIT_INDEX_FILE
 * from a hook would redirect us), no system or global config (a user's tar.umask or core.autocrlf would change
 * bytes), a fixed author, committer, time zone and locale.
 */
function gitEnv(extra = {}) {
  const env = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('GIT_')) env[k] = v;
  return {
    ...env,
    GIT_CONFIG_NOSYSTEM: '1',
    GIT_CONFIG_GLOBAL: '/dev/null',
    GIT_TERMINAL_PROMPT: '0',
    GIT_AUTHOR_NAME: AUTHOR.name,
    GIT_AUTHOR_EMAIL: AUTHOR.email,
    GIT_COMMITTER_NAME: AUTHOR.name,
    GIT_COMMITTER_EMAIL: AUTHOR.email,
    TZ: 'UTC',
    LC_ALL: 'C',
    ...extra,
  };
}

function git(gitDir, args, options = {}) {
  return run('git', args, { ...options, env: gitEnv({ GIT_DIR: gitDir, ...options.env }) });
}

// ---------------------------------------------------------------------------------------------------------------
// source repositories

/** Mode decided by content, not by the checkout's file system (which may have lost or added exec bits). */
function modeOf(bytes) {
  return bytes.subarray(0, 2).toString('latin1') === '#!' ? '100755' : '100644';
}

/** Regular files under `dir` as repository paths ('/'-separated), sorted bytewise; `skip(relPath)` prunes. */
async function collectFiles(dir, skip) {
  const files = [];
  async function walk(sub) {
    for (const entry of await readdir(join(dir, sub), { withFileTypes: true })) {
      const rel = sub ? `${sub}/${entry.name}` : entry.name;
      if (skip(rel, entry)) continue;
      if (entry.isDirectory()) await walk(rel);
      else if (entry.isFile()) files.push({ path: rel, bytes: await readFile(join(dir, rel)) });
      else throw new Error(`${join(dir, rel)}: only regular files and directories can go into an example release`);
    }
  }
  await walk('');
  return files.sort((a, b) => Buffer.compare(Buffer.from(a.path), Buffer.from(b.path)));
}

/**
 * Builds a bare repository holding a linear history: one commit per entry of `commits` ({ref, message, files}),
 * each a complete tree, each a second later than its parent. Returns { ref: commit id }.
 */
async function buildRepository(gitDir, commits) {
  await run('git', ['init', '-q', '--bare', '--object-format=sha1', gitDir], { env: gitEnv() });
  const index = `${gitDir}.index`;
  const ids = {};
  let parent;
  for (const [i, commit] of commits.entries()) {
    await rm(index, { force: true });
    const lines = [];
    for (const file of commit.files) {
      const blob = (await git(gitDir, ['hash-object', '-w', '--no-filters', '--stdin'], { input: file.bytes }))
        .toString()
        .trim();
      lines.push(`${modeOf(file.bytes)} ${blob}\t${file.path}\n`);
    }
    const env = { GIT_INDEX_FILE: index };
    await git(gitDir, ['update-index', '--index-info'], { env, input: lines.join('') });
    const tree = (await git(gitDir, ['write-tree'], { env })).toString().trim();
    const date = `${EPOCH + i} +0000`;
    const args = ['commit-tree', tree, ...(parent ? ['-p', parent] : []), '-m', commit.message];
    const id = (await git(gitDir, args, { env: { GIT_AUTHOR_DATE: date, GIT_COMMITTER_DATE: date } }))
      .toString()
      .trim();
    await git(gitDir, ['update-ref', commit.ref, id]);
    ids[commit.ref] = id;
    parent = id;
  }
  await rm(index, { force: true });
  await git(gitDir, ['symbolic-ref', 'HEAD', commits.at(-1).ref]);
  return ids;
}

/** The signed artifact of a git release. tar.umask is git's default, pinned so no config can change the bytes. */
function gitArchive(gitDir, commit) {
  return git(gitDir, ['-c', 'tar.umask=0002', 'archive', '--format=tar', commit]);
}

async function gitBundle(gitDir, file) {
  await git(gitDir, ['bundle', 'create', file, '--all']);
  return readFile(file);
}

/** `git bundle list-heads` as a sorted "commit ref" text: what a bundle promises, independent of pack bytes. */
async function bundleHeads(file, work) {
  const heads = await run('git', ['bundle', 'list-heads', file], { env: gitEnv(), cwd: work });
  return heads.toString().split('\n').filter(Boolean).sort().join('\n');
}

// ---------------------------------------------------------------------------------------------------------------
// package

/** npm pack of a copy of the package with normalised modes; returns the tarball bytes and npm's file name. */
async function npmPack(packageDir, work) {
  const copy = join(work, 'agent-pool-src');
  const files = await collectFiles(packageDir, (rel, entry) => entry.isDirectory() && rel === 'node_modules');
  for (const file of files) {
    const target = join(copy, ...file.path.split('/'));
    await mkdir(dirname(target), { recursive: true });
    await writeFile(target, file.bytes);
    await chmod(target, modeOf(file.bytes) === '100755' ? 0o755 : 0o644);
  }
  const dest = join(work, 'pack');
  await mkdir(dest);
  const env = { ...process.env };
  for (const k of Object.keys(env)) if (k.toLowerCase().startsWith('npm_')) delete env[k];
  Object.assign(env, {
    npm_config_cache: join(work, 'npm-cache'),
    npm_config_userconfig: join(work, 'no-npmrc'),
    npm_config_globalconfig: join(work, 'no-global-npmrc'),
    npm_config_offline: 'true',
    npm_config_update_notifier: 'false',
    npm_config_fund: 'false',
    npm_config_audit: 'false',
  });
  const out = await run('npm', ['pack', '--json', '--ignore-scripts', '--pack-destination', dest], { cwd: copy, env });
  const [report] = JSON.parse(out.toString());
  const bytes = await readFile(join(dest, report.filename));
  if (report.integrity !== sriSha512(bytes))
    throw new Error(`npm pack reported ${report.integrity}, the tarball hashes to ${sriSha512(bytes)}`);
  return { filename: report.filename, bytes };
}

function sriSha512(bytes) {
  return `sha512-${createHash('sha512').update(bytes).digest('base64')}`;
}

function sha256(bytes) {
  return createHash('sha256').update(bytes).digest('hex');
}

// ---------------------------------------------------------------------------------------------------------------
// build

/**
 * Builds every example release in `work`. Returns { files: {name: bytes} for examples/artifacts, releases }.
 * A release: { id, kind: 'git'|'package', artifactFile, ref?, commit?, subdir?, package?, artifact (signed bytes) }.
 */
async function buildReleases(root, work) {
  const releases = [];
  const files = {};

  const orchestratorFiles = await collectFiles(
    join(root, 'reference-workloads/orchestrator-py'),
    (rel, entry) =>
      (entry.isDirectory() && (rel === 'agentvm' || entry.name === '__pycache__')) ||
      (entry.isFile() && entry.name.endsWith('.pyc')),
  );
  const orchestrator = join(work, 'orchestrator.git');
  const orchestratorIds = await buildRepository(orchestrator, [
    { ref: 'refs/heads/v1', message: 'orchestrator v1', files: orchestratorFiles },
    {
      ref: 'refs/heads/main',
      message: 'orchestrator v2: add RELEASE',
      files: [...orchestratorFiles, { path: 'RELEASE', bytes: Buffer.from('v2\n') }].sort((a, b) =>
        Buffer.compare(Buffer.from(a.path), Buffer.from(b.path)),
      ),
    },
  ]);
  files['orchestrator.bundle'] = await gitBundle(orchestrator, join(work, 'orchestrator.bundle'));
  for (const [id, ref] of [
    ['orchestrator-v1', 'refs/heads/v1'],
    ['orchestrator-v2', 'refs/heads/main'],
  ]) {
    const commit = orchestratorIds[ref];
    releases.push({
      id,
      kind: 'git',
      artifactFile: 'orchestrator.bundle',
      ref,
      commit,
      artifact: await gitArchive(orchestrator, commit),
    });
  }

  const summarizer = join(work, 'transcript-summarizer.git');
  const summarizerIds = await buildRepository(summarizer, [
    {
      ref: 'refs/heads/main',
      message: 'transcript-summarizer v1',
      files: [
        { path: 'README.md', bytes: Buffer.from(SUMMARIZER_README) },
        { path: 'summarize', bytes: Buffer.from(SUMMARIZE) },
      ],
    },
  ]);
  files['transcript-summarizer.bundle'] = await gitBundle(summarizer, join(work, 'transcript-summarizer.bundle'));
  const summarizerCommit = summarizerIds['refs/heads/main'];
  releases.push({
    id: 'transcript-summarizer-v1',
    kind: 'git',
    artifactFile: 'transcript-summarizer.bundle',
    ref: 'refs/heads/main',
    commit: summarizerCommit,
    artifact: await gitArchive(summarizer, summarizerCommit),
  });

  const packageDir = join(root, 'reference-workloads/agent-pool-node');
  const pkg = JSON.parse(await readFile(join(packageDir, 'package.json'), 'utf8'));
  const packed = await npmPack(packageDir, work);
  files[packed.filename] = packed.bytes;
  releases.push({
    id: `agent-pool-${pkg.version}`,
    kind: 'package',
    artifactFile: packed.filename,
    package: { name: pkg.name, version: pkg.version },
    artifact: packed.bytes,
  });
  const images = JOB_IMAGES.map((spec) => ({ ...spec, id: `image-${spec.file}`, artifact: standInImage(spec) }));
  for (const image of images) files[`images/${image.file}`] = image.artifact;
  return { files, releases, images };
}

// ---------------------------------------------------------------------------------------------------------------
// reconcile: what would change in the checkout

/** Reads a file, or undefined when it does not exist. */
async function readIfExists(file) {
  try {
    return await readFile(file);
  } catch (err) {
    if (err.code === 'ENOENT') return undefined;
    throw err;
  }
}

function publicKeyHint(publicKey) {
  return createHash('sha256')
    .update(publicKey.export({ type: 'spki', format: 'der' }))
    .digest('base64');
}

/**
 * Whether `bundleBytes` is a message-signature bundle over exactly `artifact`, signed by `publicKey`. The script's
 * own check (plain Node, no build needed); the tests verify the same bundles with agentvm's verifyArtifact.
 */
function bundleVerifies(bundleBytes, artifact, publicKey) {
  if (bundleBytes === undefined || publicKey === undefined) return false;
  try {
    const bundle = JSON.parse(bundleBytes.toString('utf8'));
    const signature = bundle?.messageSignature;
    if (bundle?.mediaType !== 'application/vnd.dev.sigstore.bundle.v0.3+json') return false;
    if (bundle.verificationMaterial?.publicKey?.hint !== publicKeyHint(publicKey)) return false;
    if (signature?.messageDigest?.algorithm !== 'SHA2_256') return false;
    if (Buffer.from(signature.messageDigest.digest, 'base64').toString('hex') !== sha256(artifact)) return false;
    return verifySignature('sha256', artifact, publicKey, Buffer.from(signature.signature, 'base64'));
  } catch {
    return false;
  }
}

/** Resolves a path written in a manifest, relative to the workload directory; refuses one that leaves it. */
function insideWorkload(workloadDir, name) {
  const target = resolve(workloadDir, name);
  if (!target.startsWith(workloadDir + sep))
    throw new Error(`${workloadDir}: signature path "${name}" leaves the workload directory`);
  return target;
}

/**
 * The manifest text with the source fields of `release` set and each of `images` pinned (file, sha256, and a bundle
 * name when it has none); yaml Document API, so comments and layout survive. `bundles`: the bundle each image names.
 */
function pinnedManifest(text, release, file, images = []) {
  const doc = parseDocument(text);
  if (doc.errors.length > 0) throw new Error(`${file}: ${doc.errors[0].message}`);
  if (release.kind === 'git') {
    if (!doc.hasIn(['spec', 'source', 'git']))
      throw new Error(`${file}: spec.source.git is missing, but the workload pins git release ${release.id}`);
    doc.setIn(['spec', 'source', 'git', 'repo'], `../artifacts/${release.artifactFile}`);
    doc.setIn(['spec', 'source', 'git', 'commit'], release.commit);
    if (doc.hasIn(['spec', 'source', 'git', 'subdir'])) doc.deleteIn(['spec', 'source', 'git', 'subdir']);
  } else {
    if (!doc.hasIn(['spec', 'source', 'package']))
      throw new Error(`${file}: spec.source.package is missing, but the workload pins package release ${release.id}`);
    const pinned = doc.getIn(['spec', 'source', 'package', 'name']);
    if (pinned !== release.package.name)
      throw new Error(`${file}: pins package "${pinned}", the example package is "${release.package.name}"`);
    doc.setIn(['spec', 'source', 'package', 'version'], release.package.version);
    doc.setIn(['spec', 'source', 'package', 'integrity'], release.integrity);
    doc.setIn(['spec', 'source', 'package', 'tarball'], `../artifacts/${release.artifactFile}`);
  }
  const bundles = [];
  for (const image of images) {
    const jobs = doc.getIn(['spec', 'jobs'])?.items ?? [];
    const at = jobs.findIndex((job) => job?.get?.('name') === image.job);
    if (at < 0) throw new Error(`${file}: has no job "${image.job}", but the example pins its ${image.image} image`);
    const path = ['spec', 'jobs', at, image.image];
    doc.setIn([...path, 'file'], image.file);
    doc.setIn([...path, 'sha256'], image.sha256);
    if (!doc.hasIn([...path, 'bundle'])) doc.setIn([...path, 'bundle'], `${image.image}.sigstore.json`);
    bundles.push({ image, bundle: doc.getIn([...path, 'bundle']) });
  }
  return {
    text: doc.toString({ lineWidth: 0, flowCollectionPadding: false }),
    signature: doc.getIn(['spec', 'signature'])?.toJSON?.(),
    bundles,
  };
}

/**
 * Compares the build with the checkout. Returns { changes, releases } where a change is
 * { path, reason, bytes? | sign? } — bytes to write, or a release to sign (signatures are made only when applying).
 */
async function reconcile(root, work, built, check) {
  const changes = [];
  const notes = [];
  const at = (rel) => join(root, ...rel.split('/'));

  // The example key. Created only when there is none at all; half a key pair is an error, never "fixed".
  const priv = await readIfExists(at(PRIVATE_KEY));
  const pub = await readIfExists(at(PUBLIC_KEY));
  if ((priv === undefined) !== (pub === undefined)) {
    throw new Error(
      `${KEY_DIR} holds only one half of the example key pair; restore the other or remove both to make a new pair`,
    );
  }
  let publicKeyPem = pub;
  if (pub === undefined) {
    if (check) changes.push({ path: PUBLIC_KEY, reason: 'the example key pair does not exist' });
    else {
      const dir = join(work, 'keys');
      await run(process.execPath, [SIGN_LOCAL, 'keygen', dir]);
      publicKeyPem = await readFile(join(dir, 'signing.pub.pem'));
      changes.push({
        path: PRIVATE_KEY,
        reason: 'new example key pair',
        bytes: await readFile(join(dir, 'signing.key.pem')),
        mode: 0o600,
      });
      changes.push({ path: PUBLIC_KEY, reason: 'new example key pair', bytes: publicKeyPem });
    }
  }
  const publicKey = publicKeyPem === undefined ? undefined : createPublicKey(publicKeyPem);

  // Artifacts: a committed file that promises the same content is kept, so a rebuild never churns bytes.
  const kept = {};
  for (const [name, bytes] of Object.entries(built.files)) {
    const rel = `${ARTIFACTS}/${name}`;
    const current = await readIfExists(at(rel));
    let same = current !== undefined && current.equals(bytes);
    if (!same && current !== undefined) {
      if (name.endsWith('.bundle')) {
        const fresh = join(work, `fresh-${name}`);
        await writeFile(fresh, bytes);
        same = (await bundleHeads(at(rel), work).catch(() => undefined)) === (await bundleHeads(fresh, work));
        if (same)
          notes.push(`${rel}: same refs and commits as the rebuild, different pack bytes (another git version); kept`);
      } else if (name.endsWith('.tgz')) {
        let unzipped;
        try {
          unzipped = gunzipSync(current);
        } catch {
          unzipped = undefined;
        }
        same = unzipped !== undefined && unzipped.equals(gunzipSync(bytes));
        if (same)
          notes.push(`${rel}: same tar content as the rebuild, different gzip bytes (another zlib or npm); kept`);
      }
    }
    kept[name] = same ? current : bytes;
    if (!same)
      changes.push({
        path: rel,
        reason: current === undefined ? 'missing' : 'content differs from the rebuild',
        bytes,
      });
  }
  for (const release of built.releases) {
    if (release.kind === 'package') {
      release.artifact = kept[release.artifactFile];
      release.integrity = sriSha512(release.artifact);
    }
    release.sha256 = sha256(release.artifact);
  }
  for (const image of built.images) {
    image.artifact = kept[`images/${image.file}`];
    image.sha256 = sha256(image.artifact);
  }

  // One signature per release, in examples/artifacts; a committed one that verifies is kept.
  for (const release of built.releases) {
    const rel = `${ARTIFACTS}/${release.id}.sigstore.json`;
    release.signatureFile = rel;
    if (bundleVerifies(await readIfExists(at(rel)), release.artifact, publicKey)) continue;
    changes.push({
      path: rel,
      reason: `does not verify against release ${release.id} with the example key`,
      sign: release,
    });
  }

  // Workloads: manifests pin their release; signed ones get a copy of the release's bundle and the public key.
  const byId = new Map(built.releases.map((r) => [r.id, r]));
  for (const { workload, release: id } of WORKLOAD_RELEASES) {
    const release = byId.get(id);
    const dir = at(`${FLEET}/workloads/${workload}`);
    const manifestRel = `${FLEET}/workloads/${workload}/manifest.yaml`;
    const text = await readFile(at(manifestRel), 'utf8');
    const pinned = pinnedManifest(
      text,
      release,
      manifestRel,
      built.images.filter((image) => image.workload === workload),
    );
    if (pinned.text !== text)
      changes.push({
        path: manifestRel,
        reason: `does not pin ${release.id}${pinned.bundles.length > 0 ? ' and its example job images' : ''}`,
        bytes: Buffer.from(pinned.text),
      });
    // Each pinned image is signed on its own (a bundle in the workload directory), with the example key.
    for (const { image, bundle } of pinned.bundles) {
      const rel = relative(root, insideWorkload(dir, bundle)).split(sep).join('/');
      if (bundleVerifies(await readIfExists(at(rel)), image.artifact, publicKey)) continue;
      changes.push({
        path: rel,
        reason: `does not verify against image ${image.file} with the example key`,
        sign: image,
      });
    }
    if (!pinned.signature?.bundle) continue;
    if (!pinned.signature.key)
      throw new Error(`${manifestRel}: signature.key is not set; the example releases are key-signed`);
    const bundleRel = relative(root, insideWorkload(dir, pinned.signature.bundle)).split(sep).join('/');
    const keyRel = relative(root, insideWorkload(dir, pinned.signature.key)).split(sep).join('/');
    if (!bundleVerifies(await readIfExists(at(bundleRel)), release.artifact, publicKey)) {
      changes.push({
        path: bundleRel,
        reason: `does not verify against release ${release.id} with the example key`,
        copyOf: release.signatureFile,
        sign: release,
      });
    }
    const currentKey = await readIfExists(at(keyRel));
    if (publicKeyPem === undefined || currentKey === undefined || !currentKey.equals(publicKeyPem)) {
      changes.push({ path: keyRel, reason: 'is not the example public key', bytes: publicKeyPem });
    }
  }

  // The index the demo and the tests read: which release is which commit / file / digest. No signature in it.
  const index = {
    generatedBy: 'scripts/example-artifacts.js (do not edit; rerun it)',
    signingKey: `../keys/${PUBLIC_KEY.split('/').pop()}`,
    releases: built.releases.map((r) => ({
      id: r.id,
      kind: r.kind,
      ...(r.kind === 'git'
        ? { repo: r.artifactFile, ref: r.ref, commit: r.commit, artifact: 'git archive --format=tar <commit>' }
        : {
            tarball: r.artifactFile,
            name: r.package.name,
            version: r.package.version,
            integrity: r.integrity,
            artifact: 'the tarball',
          }),
      sha256: r.sha256,
      bundle: `${r.id}.sigstore.json`,
    })),
  };
  const indexRel = `${ARTIFACTS}/releases.json`;
  const indexBytes = Buffer.from(`${JSON.stringify(index, null, 2)}\n`);
  const currentIndex = await readIfExists(at(indexRel));
  if (currentIndex === undefined || !currentIndex.equals(indexBytes))
    changes.push({ path: indexRel, reason: 'differs from the rebuild', bytes: indexBytes });

  return { changes, notes, releases: built.releases, images: built.images };
}

/** Writes the changes. A release needing a signature is signed once; workload copies get the same bytes. */
async function apply(root, work, changes) {
  const signed = new Map();
  const keyPath = join(root, ...PRIVATE_KEY.split('/'));
  // The key may be among the changes (a new pair): write keys first so signing can use them.
  const ordered = [...changes].sort((a, b) => Number(b.path.startsWith(KEY_DIR)) - Number(a.path.startsWith(KEY_DIR)));
  for (const change of ordered) {
    let bytes = change.bytes;
    if (change.sign) {
      const release = change.sign;
      const committed = change.copyOf ? await readIfExists(join(root, ...change.copyOf.split('/'))) : undefined;
      if (signed.has(release.id)) bytes = signed.get(release.id);
      else if (committed !== undefined && !changes.some((c) => c.path === change.copyOf))
        bytes = committed; // the release's bundle verifies: reuse it
      else {
        const artifactFile = join(work, `${release.id}.artifact`);
        await writeFile(artifactFile, release.artifact);
        bytes = await run(process.execPath, [SIGN_LOCAL, 'sign', '--key', keyPath, artifactFile]);
      }
      signed.set(release.id, bytes);
    }
    const target = join(root, ...change.path.split('/'));
    await mkdir(dirname(target), { recursive: true });
    await writeFile(target, bytes, change.mode ? { mode: change.mode } : {});
    if (change.mode) await chmod(target, change.mode);
  }
}

function summary(releases, images) {
  const lines = [
    'release                    commit / integrity                                          artifact sha256',
  ];
  for (const r of releases) {
    const pin =
      r.kind === 'git'
        ? `${r.commit} (${r.artifactFile} ${r.ref})`
        : `${r.integrity.slice(0, 40)}… (${r.artifactFile})`;
    lines.push(`${r.id.padEnd(26)} ${pin.padEnd(60)} ${r.sha256}`);
  }
  for (const i of images)
    lines.push(
      `${`${i.workload}/${i.job}`.padEnd(26)} ${`${i.image}: images/${i.file} (stand-in)`.padEnd(60)} ${i.sha256}`,
    );
  return lines.join('\n');
}

async function main() {
  const options = parseArgs(process.argv.slice(2));
  const root = options.root;
  await stat(join(root, FLEET)).catch(() => {
    throw new Error(`${root} does not hold ${FLEET}`);
  });
  const work = await mkdtemp(join(tmpdir(), 'agentvm-example-artifacts-'));
  try {
    const built = await buildReleases(root, work);
    const { changes, notes, releases, images } = await reconcile(root, work, built, options.check);
    for (const note of notes) process.stderr.write(`note: ${note}\n`);
    if (options.check) {
      if (changes.length > 0) {
        for (const c of changes) process.stderr.write(`out of date: ${c.path}: ${c.reason}\n`);
        process.stderr.write(
          'The example artifacts do not match their sources. Run `node scripts/example-artifacts.js` and commit the result.\n',
        );
        process.exitCode = 1;
        return;
      }
      process.stdout.write(`example artifacts are up to date\n${summary(releases, images)}\n`);
      return;
    }
    await apply(root, work, changes);
    for (const c of changes) process.stdout.write(`wrote ${c.path} (${c.reason})\n`);
    if (changes.length === 0) process.stdout.write('example artifacts are up to date; nothing written\n');
    process.stdout.write(`${summary(releases, images)}\n`);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

try {
  await main();
} catch (err) {
  if (err instanceof UsageError) {
    process.stderr.write(`example-artifacts: ${err.message}\n${USAGE}\n`);
    process.exitCode = 2;
  } else {
    process.stderr.write(`example-artifacts: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  }
}
