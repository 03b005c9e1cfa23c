// The exec allowlist of a gateway unit (decisions/0022): the profile may execute its entrypoint, its interpreter
// and the contract's `kind: program` tools, and nothing else.
//   NoExecPaths=/ and every writable mount the unit gets  every file is mounted noexec: execve() fails with EACCES,
//                                                        and so does mmap(PROT_EXEC) of a copy (ld.so <file> too)
//   ExecPaths=<exact files>                              the allowed programs, their ELF interpreter and the shared
//                                                        libraries they load, each bind-mounted exec again
//   SystemCallFilter=~memfd_create                       no anonymous executable file to fexecve()
// Invariants:
//   - The list names files, never directories (a directory would allow every program in it), except an
//     interpreter's own extension-module directory (python's lib-dynload), which holds shared objects only.
//   - Resolution reads the host; rendering stays pure: `resolveExec` produces ExecFacts (host I/O), and
//     `execDirectives` renders them. Without facts (validate), only the declared files are listed.
//   - The digest of each declared program is read here, and a mismatch is the caller's drift and refusal.
//   - Libraries are listed by the host's loader (`ld.so --list`), never by the program's own PT_INTERP: listing
//     does not run the program.

import { createHash } from 'node:crypto';
import { execFile } from 'node:child_process';
import { createReadStream, statSync } from 'node:fs';
import { open, readdir, realpath, stat } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { errorDiag, type Diagnostic } from '../../diagnostics/index.js';
import type { Reason } from '../../model/index.js';
import { SystemdCode } from './codes.js';

const run = promisify(execFile);

/** A `kind: program` tool of the contract, as the unit config carries it. */
export interface ProgramPin {
  name: string;
  /** Absolute on the host, or relative to the release directory. */
  path: string;
  sha256: string;
}

/** What resolving the allowlist on the host found. Manager-side paths; plain, sorted JSON (it is fingerprinted). */
export interface ExecFacts {
  /** Every file the unit may execute or map executable: programs, interpreters, loader, libraries. */
  files: string[];
  /** Extension-module directories of interpreters (python's lib-dynload). */
  dirs: string[];
  /** Each declared program: the sha256 of its bytes now, or null when it is missing or unreadable. */
  programs: Array<{ name: string; path: string; seen: string | null }>;
}

/** The directories every unit gets writable (or may): they are made noexec explicitly, because systemd mounts
 *  PrivateTmp=, PrivateDevices= and ProtectHome=tmpfs after NoExecPaths=/ and they would stay exec otherwise.
 *  `-`: the path may not exist in this scope. */
const NOEXEC = ['/', '/dev', '/tmp', '/var/tmp', '/run', '-/run/user', '-/home', '-/root', '-/dev/shm', '-/dev/mqueue'];

/** Where the host's dynamic loader is; the first that exists lists libraries. */
const LOADERS = ['/lib64/ld-linux-x86-64.so.2', '/lib/ld-linux-aarch64.so.1', '/lib/ld-linux-armhf.so.3'];

/** The program of PATH lookups: the gateway's fixed PATH (gateway-unit.ts GATEWAY_PATH). */
const SEARCH_PATH = ['/usr/local/bin', '/usr/bin', '/bin'];

/** `kind: program` entries of a contract's tools, for the unit config. Kindless and mcp entries grant no exec. */
export function programsOf(
  tools: ReadonlyArray<{ kind?: string; name: string; path?: string; sha256?: string }> | undefined,
): ProgramPin[] {
  return (tools ?? [])
    .filter((t) => t.kind === 'program' && typeof t.path === 'string' && typeof t.sha256 === 'string')
    .map((t) => ({ name: t.name, path: t.path!, sha256: t.sha256! }));
}

/** Checks the config's `programs` (absent: none). Undefined when malformed. */
export function parsePrograms(value: unknown): ProgramPin[] | undefined {
  if (value === undefined) return [];
  if (!Array.isArray(value)) return undefined;
  const ok = value.every(
    (p) =>
      typeof p === 'object' &&
      p !== null &&
      typeof p.name === 'string' &&
      typeof p.path === 'string' &&
      p.path !== '' &&
      !p.path.split('/').includes('..') &&
      typeof p.sha256 === 'string' &&
      /^[0-9a-f]{64}$/.test(p.sha256),
  );
  return ok ? (value as ProgramPin[]) : undefined;
}

/** A program's path as the manager sees it. */
export function programPath(pin: Pick<ProgramPin, 'path'>, releaseDir: string): string {
  return pin.path.startsWith('/') ? path.posix.normalize(pin.path) : path.posix.join(releaseDir, pin.path);
}

/** The unit directives of the allowlist. `runtimeDirs`: RuntimeDirectory= mounts of the unit (made noexec too). */
export function execDirectives(input: {
  programs: readonly ProgramPin[];
  releaseDir: string;
  entrypoint: string | null;
  facts?: ExecFacts | null;
  runtimeDirs: readonly string[];
}): Array<[string, string]> {
  const files = new Set<string>(input.facts?.files ?? []);
  if (!input.facts) {
    if (input.entrypoint) files.add(input.entrypoint);
    for (const p of input.programs) files.add(programPath(p, input.releaseDir));
  }
  const exec = [...files, ...(input.facts?.dirs ?? [])].sort();
  const out: Array<[string, string]> = [['NoExecPaths', [...NOEXEC, ...input.runtimeDirs].join(' ')]];
  if (exec.length > 0) out.push(['ExecPaths', exec.join(' ')]);
  out.push(['SystemCallFilter', '~memfd_create']);
  return out;
}

export interface ResolveInput {
  /** argv[0] of ExecStart= as rendered: an absolute path in the release, or a name looked up on PATH. */
  entrypoint: string;
  programs: readonly ProgramPin[];
  /** Manager-side release directory. */
  releaseDir: string;
  /** ExecReload= runs /bin/kill inside the unit's namespace. */
  reload: boolean;
  /** Manager path → host path (a host root when rendering offline). */
  toHost: (managerPath: string) => string;
  /** Programs the unit runs in front of the entrypoint (the node of the egress shim): allowed with their libraries. */
  also?: readonly string[];
  /**
   * Shared by the units of one plan or apply (one provider instance): a name's PATH lookup and a program's closure
   * (interpreter, libraries) are resolved once, not once per unit. Declared programs' digests are never memoised.
   */
  memo?: ExecMemo;
}

/** Resolutions of one run: `toHost('/')` + name / program → what it resolved to. */
export class ExecMemo {
  readonly paths = new Map<string, Promise<string | undefined>>();
  readonly closures = new Map<string, Promise<{ files: string[]; dirs: string[] }>>();
}

/** argv[0] of a profile's entrypoint as the unit runs it: a path in the release, or a name on PATH. */
export function entrypointProgram(entrypoint: readonly string[], releaseDir: string): string {
  const program = entrypoint[0] ?? '';
  return program.includes('/') && !program.startsWith('/')
    ? path.posix.join(releaseDir, path.posix.normalize(program))
    : program;
}

/** Resolves the allowlist on the host: programs and interpreters to real files, their libraries, the digests. */
export async function resolveExec(input: ResolveInput): Promise<ExecFacts> {
  const files = new Set<string>();
  const dirs = new Set<string>();
  const roots: string[] = [];
  const memo = input.memo ?? new ExecMemo();
  const hostKey = input.toHost('/');
  const lookup = (name: string): Promise<string | undefined> => {
    const key = `${hostKey}\0${name}`;
    let found = memo.paths.get(key);
    if (!found) memo.paths.set(key, (found = onPath(name, input.toHost)));
    return found;
  };
  const entry = input.entrypoint.startsWith('/') ? input.entrypoint : await lookup(input.entrypoint);
  if (entry) roots.push(entry);
  if (input.reload) roots.push('/bin/kill');
  roots.push(...(input.also ?? []));
  // A release that is not installed yet (plan before its release is applied) has no files to hash: its
  // release-relative programs are left out here and checked by apply, which runs after the release is installed.
  const releaseInstalled = await isDirectory(input.toHost(input.releaseDir));
  const pins = input.programs.filter((p) => p.path.startsWith('/') || releaseInstalled);
  const programs: ExecFacts['programs'] = [];
  for (const p of pins) {
    // A release-relative program must be a file of the release: a symlink out of it (bin/tool → /bin/sh) would
    // grant whatever it points to under an innocent name. It counts as missing, and apply refuses the unit.
    const inRelease =
      p.path.startsWith('/') || (await staysUnder(programPath(p, input.releaseDir), input.releaseDir, input.toHost));
    if (inRelease) roots.push(programPath(p, input.releaseDir));
    programs.push({
      name: p.name,
      path: p.path,
      seen: inRelease ? await sha256Of(input.toHost(programPath(p, input.releaseDir))) : null,
    });
  }
  for (const root of roots) {
    const key = `${hostKey}\0${root}`;
    let closure = memo.closures.get(key);
    if (!closure) memo.closures.set(key, (closure = programClosure(root, input.toHost)));
    const c = await closure;
    for (const f of c.files) files.add(f);
    for (const d of c.dirs) dirs.add(d);
  }
  return { files: [...files].sort(), dirs: [...dirs].sort(), programs };
}

/** What one program needs to execute: itself, its interpreter chain and their libraries (see addProgram). */
async function programClosure(
  root: string,
  toHost: (p: string) => string,
): Promise<{ files: string[]; dirs: string[] }> {
  const files = new Set<string>();
  const dirs = new Set<string>();
  await addProgram(root, files, dirs, toHost, 0);
  return { files: [...files], dirs: [...dirs] };
}

/** A file, the interpreter of its `#!` line (following `env <name>`), and, for ELF files, the libraries. */
async function addProgram(
  file: string,
  files: Set<string>,
  dirs: Set<string>,
  toHost: (p: string) => string,
  depth: number,
): Promise<void> {
  if (depth > 4) return;
  const real = await managerRealpath(file, toHost);
  if (!real || files.has(real)) return;
  files.add(real);
  const head = await readHead(toHost(real));
  if (head.startsWith('#!')) {
    const [interp, arg] = head.slice(2).split('\n')[0]!.trim().split(/\s+/);
    if (interp) await addProgram(interp, files, dirs, toHost, depth + 1);
    if (interp && path.posix.basename(interp) === 'env' && arg) {
      const found = await onPath(arg, toHost);
      if (found) await addProgram(found, files, dirs, toHost, depth + 1);
    }
    return;
  }
  if (!head.startsWith('\x7fELF')) return;
  for (const lib of await librariesOf(toHost(real), toHost)) {
    const r = await managerRealpath(lib, toHost);
    if (r) files.add(r);
  }
  const python = /^python3(\.\d+)?$/.exec(path.posix.basename(real));
  if (python) await addPythonModules(real, files, dirs, toHost);
}

/** python's extension modules are shared objects it dlopen()s: their directory and their libraries. */
async function addPythonModules(
  python: string,
  files: Set<string>,
  dirs: Set<string>,
  toHost: (p: string) => string,
): Promise<void> {
  const version = path.posix.basename(python).replace(/^python/, '');
  const dir = `/usr/lib/python${version}/lib-dynload`;
  let names: string[];
  try {
    names = await readdir(toHost(dir));
  } catch {
    return;
  }
  dirs.add(dir);
  for (const n of names.filter((x) => x.endsWith('.so')).sort()) {
    for (const lib of await librariesOf(toHost(path.posix.join(dir, n)), toHost)) {
      const r = await managerRealpath(lib, toHost);
      if (r) files.add(r);
    }
  }
}

/** The shared libraries and the loader an ELF file needs, as `ld.so --list` resolves them on this host. */
async function librariesOf(hostFile: string, toHost: (p: string) => string): Promise<string[]> {
  const loader = await firstExisting(LOADERS, toHost);
  if (!loader) return [];
  try {
    const { stdout } = await run(loader, ['--list', hostFile], { timeout: 10_000, maxBuffer: 1 << 20 });
    const libs = [...stdout.matchAll(/=>\s+(\/\S+)/g)].map((m) => m[1]!);
    const interp = [...stdout.matchAll(/^\s+(\/\S+)\s+\(0x/gm)].map((m) => m[1]!);
    return [...libs, ...interp, loader];
  } catch {
    // Not a dynamic executable (static, or another architecture): it needs no libraries, or cannot run at all.
    return [];
  }
}

async function firstExisting(
  candidates: readonly string[],
  toHost: (p: string) => string,
): Promise<string | undefined> {
  for (const c of candidates) if (await isFile(toHost(c))) return c;
  return undefined;
}

async function onPath(name: string, toHost: (p: string) => string): Promise<string | undefined> {
  if (name.includes('/')) return name.startsWith('/') ? name : undefined;
  return firstExisting(
    SEARCH_PATH.map((d) => `${d}/${name}`),
    toHost,
  );
}

/** realpath as the manager sees it (symlinks resolved inside the host root). */
async function managerRealpath(file: string, toHost: (p: string) => string): Promise<string | undefined> {
  const host = toHost(file);
  try {
    const real = await realpath(host);
    const rootLen = host.length - file.length;
    const root = host.slice(0, rootLen);
    if (root !== '' && !real.startsWith(root)) return undefined;
    return root === '' ? real : real.slice(root.length);
  } catch {
    return undefined;
  }
}

/** The file's real path is inside `dir` (both resolved on the host). */
async function staysUnder(file: string, dir: string, toHost: (p: string) => string): Promise<boolean> {
  try {
    const [real, base] = await Promise.all([realpath(toHost(file)), realpath(toHost(dir))]);
    return real.startsWith(`${base}/`);
  } catch {
    return false;
  }
}

async function isDirectory(p: string): Promise<boolean> {
  try {
    return statSync(p).isDirectory(); // synchronous: once per unit per plan (ADR 0027)
  } catch {
    return false;
  }
}

async function isFile(p: string): Promise<boolean> {
  try {
    return (await stat(p)).isFile();
  } catch {
    return false;
  }
}

async function readHead(hostFile: string): Promise<string> {
  try {
    const fh = await open(hostFile, 'r');
    try {
      const buf = Buffer.alloc(256);
      const { bytesRead } = await fh.read(buf, 0, 256, 0);
      return buf.subarray(0, bytesRead).toString('latin1');
    } finally {
      await fh.close();
    }
  } catch {
    return '';
  }
}

/** sha256 of a file's bytes (streamed: a program may be large); null when it cannot be read. */
export async function sha256Of(hostFile: string): Promise<string | null> {
  try {
    if (!(await stat(hostFile)).isFile()) return null;
    const hash = createHash('sha256');
    for await (const chunk of createReadStream(hostFile)) hash.update(chunk as Buffer);
    return hash.digest('hex');
  } catch {
    return null;
  }
}

/** Declared programs whose bytes do not hash to their pin: drift reasons for plan. */
export function programDrift(
  pins: readonly ProgramPin[],
  facts: ExecFacts | null | undefined,
  address: string,
): Reason[] {
  return mismatches(pins, facts).map((m) => ({
    code: 'live-modified',
    message: `${address}: program ${m.name} (${m.path}) ${m.seen === null ? 'is missing' : `is sha256:${m.seen.slice(0, 12)}…, pinned sha256:${m.pinned.slice(0, 12)}…`}`,
  }));
}

/** The same mismatches as apply's refusal: the unit does not start until the pin or the file is fixed. */
export function programRefusal(pins: readonly ProgramPin[], facts: ExecFacts, address: string): Diagnostic[] {
  return mismatches(pins, facts).map((m) =>
    errorDiag(
      SystemdCode.toolDigest,
      `${address}: program ${m.name} (${m.path}) ${m.seen === null ? 'is missing, unreadable, or (in the release) a link out of the release' : `hashes to sha256:${m.seen}, not its pin sha256:${m.pinned}`}; the unit is not started.`,
      {
        address,
        detail:
          'A declared program runs only with the bytes the contract pins. If the change is intended, review it and set `sha256:` of the tool in the contract to the new digest (`sha256sum <file>`); otherwise restore the file. Then apply again.',
      },
    ),
  );
}

function mismatches(
  pins: readonly ProgramPin[],
  facts: ExecFacts | null | undefined,
): Array<{ name: string; path: string; pinned: string; seen: string | null }> {
  if (!facts) return [];
  const out: Array<{ name: string; path: string; pinned: string; seen: string | null }> = [];
  for (const pin of pins) {
    const seen = facts.programs.find((p) => p.name === pin.name && p.path === pin.path);
    if (seen && seen.seen !== pin.sha256)
      out.push({ name: pin.name, path: pin.path, pinned: pin.sha256, seen: seen.seen });
  }
  return out;
}
