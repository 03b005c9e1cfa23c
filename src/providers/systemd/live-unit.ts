// LiveGateway: what is on the host for one profile's unit, read through a SystemdEndpoint — agentvm's files
// (template and drop-in, parsed), every other source of the same unit on the unit search path (a second runtime
// source), and, when a manager is reachable, what it has loaded and what the running process was started with.
// Invariants:
//   - Read-only: nothing here writes, signals or reloads.
//   - No secret value leaves this module: credential files are compared in memory and reported as
//     current/changed/missing only.
//   - The result is plain, deterministically ordered JSON (it is fingerprinted into the plan): no PIDs, no
//     timestamps.

import { readFile, readdir, stat, access } from 'node:fs/promises';
import { constants, lstatSync, readdirSync, readlinkSync, statSync, type BigIntStats } from 'node:fs';
import { sha256Hex } from '../../model/canonical-json.js';
import type { StatIndex } from '../release/stat-index.js';
import path from 'node:path';
import { keyEffect } from './restart-table.js';
import { hostPathOf, parseShow, type SystemdEndpoint } from './systemctl.js';
import {
  DROP_IN_FILE,
  gatewayDigest,
  instanceUnit,
  OWNER_KEY,
  releaseIdOf,
  RUNTIME_DIGEST_ENV,
  runtimeDigestOf,
  TEMPLATE_OWNER,
  TEMPLATE_UNIT,
  type RenderedGateway,
} from './gateway-unit.js';
import {
  normalizeUnit,
  parseUnitFile,
  splitWords,
  valuesOf,
  type NormalizedUnit,
  type ParsedUnit,
} from './unit-file.js';

/** Another file that configures the same unit: a second runtime source. */
export interface ForeignSource {
  /** Host path. */
  path: string;
  /** A whole unit file, a drop-in, or a mask (symlink to /dev/null). */
  kind: 'unit' | 'drop-in' | 'mask';
  /** `instance`/`template`: named after agentvm's unit (apply removes it when it can); `prefix`: a shared drop-in dir (service.d/, agent-.service.d/), reported only. */
  reach: 'instance' | 'template' | 'prefix';
  /** The settings it sets (Section.Key). */
  keys: string[];
  removable: boolean;
}

export interface ManagerView {
  loadState: string;
  activeState: string;
  subState: string;
  /** The manager runs an older version of the files than the disk holds. */
  needDaemonReload: boolean;
  unitFileState: string;
}

export type CredentialState = 'current' | 'changed' | 'missing' | 'unknown';

/** LiveResource.attributes of a `unit.*` resource. */
export interface LiveGateway {
  context: {
    scope: SystemdEndpoint['scope'];
    mode: SystemdEndpoint['mode'];
    unitDir: string;
    releasesDir: string;
    runtimeDir: string | null;
    egress?: { node: string; shim: string; socketsDir: string } | null;
  };
  /** X-AgentvmOwner of the drop-in at agentvm's path; null when there is none (or no drop-in). */
  owner: string | null;
  templatePresent: boolean;
  /** The template is agentvm's (its owner mark). */
  templateOwned: boolean;
  /** Template and drop-in together, normalised; null without a drop-in. */
  normalized: NormalizedUnit | null;
  releaseId: string | null;
  /** RUNTIME_DIGEST_ENV as the files define it (recomputed, not trusted from the file). */
  runtimeDigest: string | null;
  foreign: ForeignSource[];
  manager: ManagerView | null;
  /** The main process, when one runs: which config it was started with, and whether its release dir is still the one on disk. */
  running: { runtimeDigest: string | null; releaseCurrent: boolean | null } | null;
  credentials: Array<{ name: string; state: CredentialState }>;
}

export interface ReadGatewayInput {
  endpoint: SystemdEndpoint;
  profile: string;
  workload: string;
  /** `<paths.releases>` as the manager sees it. */
  releasesDir: string;
  /** One plan's shared host facts (ReadRequest.snapshot): unit-path directory listings are read once per plan. */
  snapshot?: Map<string, unknown>;
  /** The network confinement the unit is rendered with (gateway-unit.ts EgressRenderContext). */
  egress?: { node: string; shim: string; socketsDir: string } | null;
  /**
   * The stat index (ADR 0027) and the desired unit rendered as the plan will render it (called at most once, only
   * when the drop-in exists). A drop-in whose stat the index holds with the hash of exactly that rendering is not
   * read: its parsed form, normalisation and digests are the render's (the same values: gateway-unit.test.ts). A
   * drop-in read whose text is exactly the rendering is recorded; any other text (a hand edit) never is.
   */
  index?: StatIndex;
  expected?: () => RenderedGateway | undefined;
}

export interface ReadGatewayResult {
  exists: boolean;
  digest?: string;
  live: LiveGateway;
  /** Host path of the drop-in (for messages). */
  dropInFile: string;
  /** The expected rendering, when the drop-in was found to be exactly its text (read or known from the index). */
  matched?: RenderedGateway;
}

export async function readGateway(input: ReadGatewayInput): Promise<ReadGatewayResult> {
  const { endpoint, profile, workload, releasesDir } = input;
  const unit = instanceUnit(profile);
  const templateFile = path.join(endpoint.unitDir, TEMPLATE_UNIT);
  const dropInFile = path.join(endpoint.unitDir, `${unit}.d`, DROP_IN_FILE);
  const templateRead = await readUnitText(templateFile, input.snapshot);
  const template = templateRead?.parsed;
  const { dropIn, matched } = await readDropIn(dropInFile, input);
  const owner = dropIn ? (valuesOf(dropIn, 'Unit', OWNER_KEY).at(-1) ?? null) : null;
  // Files that are exactly the rendering normalise to the rendering's values (computed once, in the render).
  const same = matched !== undefined && templateRead !== undefined && templateRead.text === matched.template.text;
  const normalized = same ? matched.normalized : dropIn ? normalizeUnit(...(template ? [template] : []), dropIn) : null;
  const releaseId = normalized ? releaseIdOf(normalized, releasesDir, workload) : null;

  const live: LiveGateway = {
    context: {
      scope: endpoint.scope,
      mode: endpoint.mode,
      unitDir: endpoint.unitDir,
      releasesDir,
      runtimeDir: endpoint.runtimeDir,
      egress: input.egress ?? null,
    },
    owner,
    templatePresent: template !== undefined,
    templateOwned: template !== undefined && valuesOf(template, 'Unit', OWNER_KEY).at(-1) === TEMPLATE_OWNER,
    normalized,
    releaseId,
    runtimeDigest: same
      ? matched.runtimeDigest
      : dropIn
        ? runtimeDigestOf(...(template ? [template] : []), dropIn)
        : null,
    foreign: await foreignSources(endpoint, profile, input.snapshot),
    manager: null,
    running: null,
    credentials: [],
  };

  if (endpoint.mode === 'online') {
    const show = await endpoint.systemctl([
      'show',
      unit,
      '--property=LoadState,ActiveState,SubState,NeedDaemonReload,UnitFileState,MainPID',
    ]);
    if (show.code === 0) {
      const p = parseShow(show.stdout);
      live.manager = {
        loadState: p.LoadState ?? '',
        activeState: p.ActiveState ?? '',
        subState: p.SubState ?? '',
        needDaemonReload: p.NeedDaemonReload === 'yes',
        unitFileState: p.UnitFileState ?? '',
      };
      const pid = Number(p.MainPID ?? 0);
      if (Number.isInteger(pid) && pid > 0) {
        const releaseDir = normalized?.Service?.WorkingDirectory?.[0]?.replaceAll('%%', '%');
        live.running = await runningProcess(pid, releaseDir ? hostPathOf(endpoint, releaseDir) : undefined);
        // The digest a process carries is the one its drop-in declared. A drop-in edited by hand still declares
        // the old one, so it proves nothing about what the process runs: then the process is "unknown".
        const declared = normalized?.Service?.Environment?.find((e) => e.startsWith(`${RUNTIME_DIGEST_ENV}=`))?.slice(
          RUNTIME_DIGEST_ENV.length + 1,
        );
        if (declared !== live.runtimeDigest) live.running = { ...live.running!, runtimeDigest: null };
        if (dropIn) live.credentials = await credentialStates(endpoint, unit, dropIn);
      }
    }
  }
  return {
    exists: owner !== null,
    ...(normalized && owner !== null ? { digest: same ? matched.digest : gatewayDigest(normalized) } : {}),
    live,
    dropInFile,
    ...(matched ? { matched } : {}),
  };
}

/**
 * agentvm's drop-in, parsed (undefined when it does not exist), and the expected rendering when the file is exactly
 * its text. With an index: the stat first (before any read, so a change after it leaves a stat the index never held),
 * then the index; a hit for the rendering's hash needs no read.
 */
async function readDropIn(
  file: string,
  input: ReadGatewayInput,
): Promise<{ dropIn: ParsedUnit | undefined; matched?: RenderedGateway }> {
  const { index, expected, snapshot } = input;
  if (!index || !expected) return { dropIn: (await readUnitText(file, snapshot))?.parsed };
  const st = await unitStat(file, snapshot);
  const rendering = st ? expected() : undefined;
  const hash = rendering ? sha256Hex(rendering.dropIn.text) : undefined;
  if (st && rendering && index.lookup(st) === hash) return { dropIn: rendering.dropIn.parsed, matched: rendering };
  const read = await readUnitText(file, snapshot);
  if (!read) return { dropIn: undefined };
  if (!rendering || read.text !== rendering.dropIn.text) return { dropIn: read.parsed };
  if (st) index.record(st, hash!, rendering.address);
  return { dropIn: read.parsed, matched: rendering };
}

/** A unit file's stat (following links, as a read does), once per plan with a snapshot; undefined when absent. */
export function unitStat(file: string, snapshot?: Map<string, unknown>): Promise<BigIntStats | undefined> {
  return perSnapshot(
    snapshot,
    `systemd.unit-stat:${file}`,
    () =>
      // Synchronous, like the other metadata calls of a plan's sweep (ADR 0027).
      new Promise<BigIntStats | undefined>((resolve) => {
        try {
          const st = statSync(file, { bigint: true });
          resolve(st.isFile() ? st : undefined);
        } catch (err) {
          const code = (err as NodeJS.ErrnoException).code;
          if (code === 'ENOENT' || code === 'ENOTDIR') resolve(undefined);
          else throw err;
        }
      }),
  );
}

/** `make()` once per plan's snapshot under `key` (a promise, so concurrent readers share it); without one, every call. */
export function perSnapshot<T>(
  snapshot: Map<string, unknown> | undefined,
  key: string,
  make: () => Promise<T>,
): Promise<T> {
  if (snapshot === undefined) return make();
  let value = snapshot.get(key) as Promise<T> | undefined;
  if (value === undefined) {
    value = make();
    snapshot.set(key, value);
  }
  return value;
}

/**
 * A unit file, parsed; undefined when it does not exist. With a plan's snapshot each file is read and parsed once per
 * plan (the shared template once, not once per profile). Parsed units are never mutated by their readers.
 */
export async function readUnit(file: string, snapshot?: Map<string, unknown>): Promise<ParsedUnit | undefined> {
  return (await readUnitText(file, snapshot))?.parsed;
}

/** readUnit with the file's text. */
export function readUnitText(
  file: string,
  snapshot?: Map<string, unknown>,
): Promise<{ text: string; parsed: ParsedUnit } | undefined> {
  return perSnapshot(snapshot, `systemd.unit-file:${file}`, () => readUnitNow(file));
}

async function readUnitNow(file: string): Promise<{ text: string; parsed: ParsedUnit } | undefined> {
  try {
    const text = await readFile(file, 'utf8');
    return { text, parsed: parseUnitFile(text) };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

/** Every file on the unit search path that configures agent-gateway@<profile> besides agentvm's own two. */
export async function foreignSources(
  endpoint: SystemdEndpoint,
  profile: string,
  snapshot?: Map<string, unknown>,
): Promise<ForeignSource[]> {
  const unit = instanceUnit(profile);
  const dirs = await endpoint.unitPaths();
  if (!dirs.includes(endpoint.unitDir)) dirs.unshift(endpoint.unitDir);
  const found: ForeignSource[] = [];
  for (const dir of [...new Set(dirs)]) {
    const ours = dir === endpoint.unitDir;
    const present = await directoryEntries(dir, snapshot);
    if (!present) continue;
    // Whole unit files named like the instance or the template (an instance file beats the template).
    for (const [name, reach] of [
      [unit, 'instance'],
      [TEMPLATE_UNIT, 'template'],
    ] as const) {
      if (ours && name === TEMPLATE_UNIT) continue;
      if (!present.has(name)) continue;
      const file = path.join(dir, name);
      const kind = await unitKind(file);
      if (kind)
        found.push({
          path: file,
          kind,
          reach,
          keys: kind === 'unit' ? await keysOf(file) : [],
          removable: await writableDir(dir),
        });
    }
    // Drop-in directories, most specific first: the instance's, the template's, then the prefix ones.
    const dropInDirs: Array<[string, ForeignSource['reach']]> = [
      [`${unit}.d`, 'instance'],
      [`${TEMPLATE_UNIT}.d`, 'template'],
      ['agent-.service.d', 'prefix'],
      ['service.d', 'prefix'],
    ];
    for (const [dName, reach] of dropInDirs) {
      if (!present.has(dName)) continue;
      const dDir = path.join(dir, dName);
      let entries: string[];
      try {
        entries = readdirSync(dDir)
          .filter((e) => e.endsWith('.conf'))
          .sort();
      } catch {
        continue;
      }
      for (const e of entries) {
        if (ours && dName === `${unit}.d` && e === DROP_IN_FILE) continue;
        const file = path.join(dDir, e);
        const kind = await unitKind(file);
        if (!kind) continue;
        const keys = kind === 'unit' ? await keysOf(file) : [];
        // A shared drop-in (every service, or every agent-*) is only a second source when it changes how the process runs.
        if (reach === 'prefix' && !keys.some((k) => keyEffect(k.split('.')[0]!, k.split('.')[1]!) === 'restart'))
          continue;
        found.push({
          path: file,
          kind: kind === 'unit' ? 'drop-in' : kind,
          reach,
          keys,
          removable: reach !== 'prefix' && (await writableDir(dDir)),
        });
      }
    }
  }
  return found.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}

/**
 * The names in a unit directory, or null when it does not exist. Listings are reused while the directory's mtime is
 * unchanged (adding, removing or renaming an entry changes it), so a plan of many units lists each unit-path
 * directory once instead of probing a dozen names per unit. File contents are never cached.
 */
const listings = new Map<string, { mtimeNs: bigint; names: Set<string> }>();
function directoryEntries(dir: string, snapshot?: Map<string, unknown>): Promise<Set<string> | null> {
  // Within one plan's read phase each directory is looked at once (a promise, so concurrent reads share it too).
  if (snapshot === undefined) return listDirectory(dir);
  const key = `systemd.unit-dir:${dir}`;
  let listing = snapshot.get(key) as Promise<Set<string> | null> | undefined;
  if (listing === undefined) {
    listing = listDirectory(dir);
    snapshot.set(key, listing);
  }
  return listing;
}

async function listDirectory(dir: string): Promise<Set<string> | null> {
  let st;
  try {
    st = statSync(dir, { bigint: true });
  } catch {
    listings.delete(dir);
    return null;
  }
  if (!st.isDirectory()) return null;
  const cached = listings.get(dir);
  if (cached && cached.mtimeNs === st.mtimeNs) return cached.names;
  let names: Set<string>;
  try {
    names = new Set(await readdir(dir));
  } catch {
    return null;
  }
  listings.set(dir, { mtimeNs: st.mtimeNs, names });
  return names;
}

async function unitKind(file: string): Promise<'unit' | 'mask' | undefined> {
  try {
    const st = lstatSync(file);
    if (st.isSymbolicLink()) {
      const target = readlinkSync(file);
      if (target === '/dev/null') return 'mask';
    }
    return statSync(file).isFile() ? 'unit' : undefined;
  } catch {
    return undefined;
  }
}

async function keysOf(file: string): Promise<string[]> {
  try {
    const parsed = parseUnitFile(await readFile(file, 'utf8'));
    return [...new Set(parsed.sections.flatMap((s) => s.entries.map((e) => `${s.name}.${e.key}`)))].sort();
  } catch {
    return [];
  }
}

async function writableDir(dir: string): Promise<boolean> {
  try {
    await access(dir, constants.W_OK);
    return true;
  } catch {
    return false;
  }
}

/** What a running main process was started with: the runtime digest in its environment, and its working dir. */
async function runningProcess(pid: number, releaseDirHost: string | undefined): Promise<LiveGateway['running']> {
  let runtimeDigest: string | null = null;
  // Type=simple: MainPID is known from fork(), before exec(). Until then the child is systemd's own, named
  // `(program)`, with systemd's environment: wait (briefly) for the exec.
  for (let i = 0; i < 50; i++) {
    const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
    if (cmdline !== '' && !cmdline.startsWith('(')) break;
    await new Promise((r) => setTimeout(r, 10));
  }
  try {
    const environ = await readFile(`/proc/${pid}/environ`, 'utf8');
    const entry = environ.split('\0').find((e) => e.startsWith(`${RUNTIME_DIGEST_ENV}=`));
    runtimeDigest = entry ? entry.slice(RUNTIME_DIGEST_ENV.length + 1) : null;
  } catch {
    return { runtimeDigest: null, releaseCurrent: null };
  }
  let releaseCurrent: boolean | null = null;
  if (releaseDirHost) {
    // A release dir replaced on disk (same name, new inode) leaves the process in the old, deleted directory.
    try {
      const [cwd, dir] = await Promise.all([stat(`/proc/${pid}/cwd`), stat(releaseDirHost)]);
      releaseCurrent = cwd.ino === dir.ino && cwd.dev === dir.dev;
    } catch {
      releaseCurrent = false;
    }
  }
  return { runtimeDigest, releaseCurrent };
}

const CREDSTORE_DIRS = ['/etc/credstore', '/run/credstore', '/usr/lib/credstore'];
const CREDSTORE_ENCRYPTED_DIRS = [
  '/etc/credstore.encrypted',
  '/run/credstore.encrypted',
  '/usr/lib/credstore.encrypted',
];

/**
 * For each credential of the drop-in: is the copy the running unit got at start the same as its source now?
 * Plain sources are compared by content (in memory); encrypted ones by time (source newer than the copy).
 */
async function credentialStates(
  endpoint: SystemdEndpoint,
  unit: string,
  dropIn: ParsedUnit,
): Promise<LiveGateway['credentials']> {
  if (endpoint.runtimeDir === null) return [];
  const dir = path.join(hostPathOf(endpoint, endpoint.runtimeDir), 'credentials', unit);
  const out: LiveGateway['credentials'] = [];
  const entries: Array<{ key: string; value: string }> = [];
  for (const key of ['LoadCredential', 'LoadCredentialEncrypted'])
    for (const value of valuesOf(dropIn, 'Service', key)) if (value) entries.push({ key, value });
  for (const { key, value } of entries) {
    const [word = ''] = splitWords(value);
    const colon = word.indexOf(':');
    const name = colon < 0 ? word : word.slice(0, colon);
    const source = (colon < 0 ? name : word.slice(colon + 1)).replaceAll('%%', '%');
    const encrypted = key === 'LoadCredentialEncrypted';
    const candidates = source.startsWith('/')
      ? [source]
      : (encrypted ? [...CREDSTORE_ENCRYPTED_DIRS, ...CREDSTORE_DIRS] : CREDSTORE_DIRS).map((d) =>
          path.join(d, source),
        );
    const sourceFile = await firstExisting(candidates.map((c) => hostPathOf(endpoint, c)));
    const copy = path.join(dir, name);
    let state: CredentialState;
    if (!sourceFile) state = 'missing';
    else {
      try {
        if (encrypted) {
          const [s, c] = await Promise.all([stat(sourceFile), stat(copy)]);
          state = s.mtimeMs > c.mtimeMs ? 'changed' : 'current';
        } else {
          const [s, c] = await Promise.all([readFile(sourceFile), readFile(copy)]);
          state = s.equals(c) ? 'current' : 'changed';
        }
      } catch {
        state = 'unknown';
      }
    }
    out.push({ name, state });
  }
  return out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

async function firstExisting(files: string[]): Promise<string | undefined> {
  for (const f of files) {
    try {
      if ((await stat(f)).isFile()) return f;
    } catch {
      // next
    }
  }
  return undefined;
}
