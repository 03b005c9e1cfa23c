// Injection: nothing user-supplied becomes a unit-file line, a command line or a host path unescaped. Values
// written into units (entrypoint args, env values, secret references, tool names, data paths, the source subdir)
// may not hold line breaks, NUL, `%` specifiers or backslashes; values handed to git or a VM may not break a line
// or pose as an option; paths that are meant to be relative may not climb out with `..`.
// Each value is checked once here; shape rules (is it a reference, is it pinned) live in their own families.
// Every value of every workload passes through here, so a check runs first and the path and label of a finding
// are built only when it fails.

import type { LoadedDocument } from '../../contracts/desired-state.js';
import type { JsonPath } from '../../contracts/yaml-document.js';
import { errorDiag, type Diagnostic } from '../../diagnostics/index.js';
import { at, list, record, specOf, text, type PolicyRule, type WorkloadRule } from '../context.js';
import { parseSecretReference, secretScheme } from '../../secrets/secret-detectors.js';
import {
  breaksLine,
  describePathProblem,
  describeUnsafe,
  hasParentSegment,
  relativePathProblem,
  unitUnsafe,
  type UnsafeReason,
} from '../../secrets/text-safety.js';

type Check = (value: string) => UnsafeReason | undefined;

const UNIT_FIX =
  'agentvm writes this value into a systemd unit and refuses anything it would have to escape: remove the character. Values that need it belong in a file inside the release or in a credential.';
const LINE_FIX = 'Remove the line break or NUL; the value is passed as one argument and may not span lines.';
const DESCRIPTION_FIX = "Write the description on one line; it becomes the unit's Description=.";

/** An argument git would read as an option (`--upload-pack=…`). */
const optionLike: Check = (v) => breaksLine(v) ?? (v.startsWith('-') ? 'option' : undefined);
/** A hostname or address: one token. */
const hostUnsafe: Check = (v) => unitUnsafe(v) ?? (/\s/.test(v) ? 'whitespace' : undefined);

/** The findings about one document. */
class Findings {
  readonly out: Diagnostic[] = [];
  constructor(private readonly address?: string) {}

  /** Why `value` fails `check`, or undefined (also for non-strings). */
  static fails(value: unknown, check: Check): UnsafeReason | undefined {
    return typeof value === 'string' ? check(value) : undefined;
  }

  unsafe(doc: LoadedDocument<unknown>, path: JsonPath, what: string, reason: UnsafeReason, fix: string): void {
    this.push('name.unit-injection', `${what} contains ${describeUnsafe(reason)}.`, doc, path, fix);
  }

  traversal(doc: LoadedDocument<unknown>, path: JsonPath, what: string, problem: string, fix: string): void {
    this.push('name.path-traversal', `${what} ${problem}.`, doc, path, fix);
  }

  private push(code: string, summary: string, doc: LoadedDocument<unknown>, path: JsonPath, detail: string): void {
    this.out.push(
      errorDiag(code, summary, { detail, ...at(doc, path), ...(this.address ? { address: this.address } : {}) }),
    );
  }
}

const fails = Findings.fails;

export const injectionRules: WorkloadRule = (ctx) => {
  const f = new Findings(ctx.address);
  const m = ctx.manifest;
  if (m) {
    const spec = specOf(m);
    list(spec.profiles).forEach((raw, i) => {
      const p = record(raw);
      if (!p) return;
      list(p.entrypoint).forEach((arg, j) => {
        const r = fails(arg, unitUnsafe);
        if (r)
          f.unsafe(
            m,
            ['spec', 'profiles', i, 'entrypoint', j],
            `Argument ${j + 1} of profile #${i + 1}'s entrypoint`,
            r,
            UNIT_FIX,
          );
      });
      const env = record(p.env);
      if (env) {
        for (const key in env) {
          const r = fails(env[key], unitUnsafe);
          if (r)
            f.unsafe(
              m,
              ['spec', 'profiles', i, 'env', key],
              `Env variable ${/^[A-Z_][A-Z0-9_]*$/.test(key) ? key : '(invalid name)'} of profile #${i + 1}`,
              r,
              UNIT_FIX,
            );
        }
      }
      const health = text(record(p.health)?.path);
      if (health !== undefined) {
        const r = unitUnsafe(health);
        if (r)
          f.unsafe(m, ['spec', 'profiles', i, 'health', 'path'], `The health path of profile #${i + 1}`, r, UNIT_FIX);
        if (hasParentSegment(health))
          f.traversal(
            m,
            ['spec', 'profiles', i, 'health', 'path'],
            `The health path of profile #${i + 1}`,
            'contains a `..` segment',
            'Give the health endpoint as a plain absolute URL path such as `/healthz`.',
          );
      }
    });
    list(spec.jobs).forEach((raw, i) => {
      const job = record(raw);
      if (!job) return;
      list(job.command).forEach((arg, j) => {
        const r = fails(arg, breaksLine);
        if (r)
          f.unsafe(m, ['spec', 'jobs', i, 'command', j], `Argument ${j + 1} of job #${i + 1}'s command`, r, LINE_FIX);
      });
      for (const image of ['kernel', 'rootfs', 'initramfs'] as const) {
        const file = text(record(job[image])?.file);
        if (file === undefined) continue;
        const problem = relativePathProblem(file) ?? (file.includes('/') ? 'absolute' : undefined);
        if (problem)
          f.traversal(
            m,
            ['spec', 'jobs', i, image, 'file'],
            `The ${image} file of job #${i + 1}`,
            `${describePathProblem(problem)} or names a directory`,
            "Give a plain file name inside the host's image directory; the image is found there and checked against its sha256.",
          );
      }
    });

    const source = record(spec.source);
    const git = record(source?.git);
    const repo = fails(git?.repo, optionLike);
    if (repo)
      f.unsafe(
        m,
        ['spec', 'source', 'git', 'repo'],
        'source.git.repo',
        repo,
        'Give the repository as a URL or an absolute path on one line; a value starting with `-` would be read by git as an option.',
      );
    const repoPath = text(git?.repo);
    if (repoPath !== undefined && hasParentSegment(stripRepoRelativePrefix(repoPath))) {
      f.traversal(
        m,
        ['spec', 'source', 'git', 'repo'],
        'source.git.repo',
        'contains a `..` segment after its start',
        'Give a URL, a normalised absolute path, or a path relative to the repository (`../sources/x.git`: `..` only at the start).',
      );
    }
    const subdir = fails(git?.subdir, unitUnsafe);
    if (subdir) f.unsafe(m, ['spec', 'source', 'git', 'subdir'], 'source.git.subdir', subdir, UNIT_FIX);
    const tarball = text(record(source?.package)?.tarball);
    if (tarball !== undefined) {
      const r = breaksLine(tarball);
      if (r) f.unsafe(m, ['spec', 'source', 'package', 'tarball'], 'source.package.tarball', r, LINE_FIX);
      if (hasParentSegment(stripRepoRelativePrefix(tarball)))
        f.traversal(
          m,
          ['spec', 'source', 'package', 'tarball'],
          'source.package.tarball',
          'contains a `..` segment after its start',
          'Give the tarball as a normalised absolute path, an https URL, or a path relative to the repository (`../artifacts/x.tgz`: `..` only at the start).',
        );
    }
    const description = fails(record(record(m.value)?.metadata)?.description, breaksLine);
    if (description) f.unsafe(m, ['metadata', 'description'], 'metadata.description', description, DESCRIPTION_FIX);
  }

  const c = ctx.contract;
  if (c) {
    const spec = specOf(c);
    list(spec.tools).forEach((raw, i) => {
      const name = text(record(raw)?.name);
      if (name === undefined) return;
      const r = unitUnsafe(name);
      if (r) f.unsafe(c, ['spec', 'tools', i, 'name'], `The name of tool #${i + 1}`, r, UNIT_FIX);
      if (name.includes('/') || name === '..')
        f.traversal(
          c,
          ['spec', 'tools', i, 'name'],
          `The name of tool #${i + 1}`,
          'is a path',
          'A tool is named, not located: give its plain name (e.g. `ripgrep`).',
        );
    });
    list(spec.secrets).forEach((raw, i) => {
      const ref = text(record(raw)?.ref);
      // A ref that names no scheme is a literal secret (secrets.ts reports it); never inspect it further.
      if (ref === undefined || !secretScheme(ref)) return;
      const r = unitUnsafe(ref);
      if (r) f.unsafe(c, ['spec', 'secrets', i, 'ref'], `The reference of secret #${i + 1}`, r, UNIT_FIX);
      const hostPath = parseSecretReference(ref)?.hostPath;
      if (hostPath !== undefined && hasParentSegment(hostPath)) {
        f.traversal(
          c,
          ['spec', 'secrets', i, 'ref'],
          `The reference of secret #${i + 1}`,
          'contains a `..` segment',
          'Give the normalised absolute path of the credential file, without `..`.',
        );
      }
    });
    list(spec.data).forEach((raw, i) => {
      const r = fails(record(raw)?.path, unitUnsafe);
      if (r) f.unsafe(c, ['spec', 'data', i, 'path'], `Data grant #${i + 1}`, r, UNIT_FIX);
    });
    list(spec.egress).forEach((raw, i) => {
      const r = fails(record(raw)?.host, hostUnsafe);
      if (r)
        f.unsafe(
          c,
          ['spec', 'egress', i, 'host'],
          `The host of egress rule #${i + 1}`,
          r,
          'Give one hostname or IP address, without spaces or control characters.',
        );
    });
    const description = fails(record(record(c.value)?.metadata)?.description, breaksLine);
    if (description) f.unsafe(c, ['metadata', 'description'], 'metadata.description', description, DESCRIPTION_FIX);
    const owner = fails(spec.owner, breaksLine);
    if (owner) f.unsafe(c, ['spec', 'owner'], 'spec.owner', owner, 'Write the owner on one line.');
  }
  return f.out;
};

/** Host documents: the gate's listen address and TLS references. */
export const hostInjectionRules: PolicyRule = ({ state }) => {
  const f = new Findings();
  for (const host of state.hosts.values()) {
    const gate = record(specOf(host).gate);
    if (!gate) continue;
    const address = fails(gate.address, hostUnsafe);
    if (address)
      f.unsafe(host, ['spec', 'gate', 'address'], 'spec.gate.address', address, 'Give one IP address or hostname.');
    const tls = record(gate.tls);
    for (const field of ['cert', 'key'] as const) {
      const r = fails(tls?.[field], unitUnsafe);
      if (r) f.unsafe(host, ['spec', 'gate', 'tls', field], `spec.gate.tls.${field}`, r, UNIT_FIX);
    }
  }
  return f.out;
};

/**
 * Source locations may be relative to the desired-state repository (`./x`, `../artifacts/x.tgz`): agentvm
 * resolves them against the repository directory. Only that leading run of `./` and `../` is allowed.
 */
function stripRepoRelativePrefix(value: string): string {
  return value.replace(/^(?:\.\.?\/)+/, '');
}
