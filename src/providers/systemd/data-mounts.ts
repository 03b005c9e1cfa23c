// Project data and agent memory of a gateway unit (ADR 0024).
//   TemporaryFileSystem=/srv:ro                      an empty, read-only /srv: the only place data appears
//   TemporaryFileSystem=<data root>:ro               the host's data root hidden (when it is not under /srv)
//   BindReadOnlyPaths=<root>/<path>:/srv/agentvm/data/<path>   a read-only grant
//   BindPaths=<root>/<path>:/srv/agentvm/data/<path>           a read-write grant
//   InaccessiblePaths=-<data root>                   a profile without grants sees no data at all
//   StateDirectory=agentvm-memory/<workload>/<profile>  the agent's memory: persistent, owned by the unit's user
// Invariants:
//   - A profile sees exactly its contract's grants, each at DATA_MOUNT/<path>; the rest of the data root and every
//     other workload's data is absent (not merely unwritable). A symlink a profile plants points into its own
//     namespace, where the target does not exist.
//   - Every writable mount here is also a NoExecPaths= entry (decisions/0022: mounts made after NoExecPaths=/ are
//     exec otherwise): what a profile writes into its data or its memory never runs.
//   - The memory directory survives restarts, release changes and rollbacks (its name has no release in it) and is
//     never removed by apply: only `agentvm memory purge` deletes it.
//   - A grant that does not exist on the host is not mounted (never an empty mount, never a failed start) and plan
//     says so with a warning (dataProblems); creating it changes the unit, which the next plan shows.
//   - Pure: the caller checks the host (DataFacts) and passes the missing paths in.

import path from 'node:path';
import { errorDiag, warningDiag, type Diagnostic } from '../../diagnostics/index.js';
import { SystemdCode } from './codes.js';

/** Where a profile sees its project data: the same relative path under this fixed directory. */
export const DATA_MOUNT = '/srv/agentvm/data';
/** The host's data root when the host file names none (`spec.data.root`), under the host root. */
export const DEFAULT_DATA_ROOT = '/srv/agentvm/data';
/** The directory whose tmpfs holds the mounts: it exists on every FHS host, and a user manager cannot create one. */
const DATA_PARENT = '/srv';
/** StateDirectory= prefix: each profile's memory is `<state dir>/agentvm-memory/<workload>/<profile>`. */
export const MEMORY_DIR = 'agentvm-memory';

export interface DataGrant {
  path: string;
  access: 'read-only' | 'read-write';
}

/** Checks the config's `data` (absent: none). Undefined when malformed. */
export function parseDataGrants(value: unknown): DataGrant[] | undefined {
  if (value === undefined || value === null) return [];
  if (!Array.isArray(value)) return undefined;
  const ok = value.every(
    (g) =>
      typeof g === 'object' &&
      g !== null &&
      typeof g.path === 'string' &&
      relativeOk(g.path) &&
      (g.access === 'read-only' || g.access === 'read-write'),
  );
  return ok ? (value as DataGrant[]) : undefined;
}

/** Checks the config's `dataRoot` (absent: the default). Undefined when malformed. */
export function parseDataRoot(value: unknown): string | undefined {
  if (value === undefined || value === null) return DEFAULT_DATA_ROOT;
  if (
    typeof value !== 'string' ||
    !value.startsWith('/') ||
    value === '/' ||
    value.split('/').some((s) => s === '..' || s === '.')
  )
    return undefined;
  return path.posix.normalize(value);
}

function relativeOk(p: string): boolean {
  if (p === '' || p.startsWith('/')) return false;
  return p.split('/').every((s) => s !== '' && s !== '.' && s !== '..');
}

/** The grants with duplicates merged (read-write wins), sorted by path. */
export function normalizedGrants(grants: readonly DataGrant[]): DataGrant[] {
  const by = new Map<string, DataGrant>();
  for (const g of grants) {
    const p = path.posix.normalize(g.path).replace(/\/$/, '');
    const seen = by.get(p);
    if (!seen || g.access === 'read-write') by.set(p, { path: p, access: g.access });
  }
  return [...by.values()].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}

/** The StateDirectory= value of a profile. */
export function memoryDirName(workload: string, profile: string): string {
  return `${MEMORY_DIR}/${workload}/${profile}`;
}

export interface DataDirectives {
  directives: Array<[string, string]>;
  /** Writable mounts, for NoExecPaths= (exec-allowlist.ts). */
  noexec: string[];
}

/**
 * The directives of a profile's data grants and memory. `dataDir`: the data root as the manager sees it; `quote`
 * makes a path safe for a unit file (unit-file.ts unitPath), throwing on what it cannot write.
 */
export function dataDirectives(input: {
  workload: string;
  profile: string;
  grants: readonly DataGrant[];
  dataDir: string;
  quote: (p: string) => string;
  missing?: readonly string[] | 'all';
}): DataDirectives {
  const missing = input.missing ?? [];
  const grants = missing === 'all' ? [] : normalizedGrants(input.grants).filter((g) => !missing.includes(g.path));
  const root = input.quote(input.dataDir);
  const memory = memoryDirName(input.workload, input.profile);
  const directives: Array<[string, string]> = [];
  const noexec: string[] = [`-%S/${memory}`];
  if (grants.length === 0) {
    directives.push(['InaccessiblePaths', `-${root}`]);
  } else {
    directives.push(['TemporaryFileSystem', `${DATA_PARENT}:ro`]);
    if (!isUnder(input.dataDir, DATA_PARENT)) directives.push(['TemporaryFileSystem', `${root}:ro`]);
    for (const g of grants) {
      const source = input.quote(path.posix.join(input.dataDir, g.path));
      const target = input.quote(path.posix.join(DATA_MOUNT, g.path));
      directives.push([g.access === 'read-write' ? 'BindPaths' : 'BindReadOnlyPaths', `${source}:${target}`]);
      noexec.push(target);
    }
  }
  directives.push(['StateDirectory', memory]);
  return { directives, noexec };
}

function isUnder(p: string, dir: string): boolean {
  return p === dir || p.startsWith(`${dir}/`);
}

/** What the host lacks for a profile's grants: a missing data root, /srv, or a granted path (host paths). */
export interface DataFacts {
  missing: Array<{ path: string; access: DataGrant['access'] }>;
  /**
   * Grants whose host path goes through a symlink (or resolves outside the data root): systemd would follow it and
   * bind its target, so a workload with write access to a parent could point another's grant at any host path.
   * Absent in facts read before this check existed.
   */
  escapes?: Array<{ path: string; access: DataGrant['access']; target: string }>;
  /** The data root as the host sees it. */
  root: string;
  rootMissing: boolean;
  parentMissing: boolean;
}

/** What to leave out of the render for facts read on the host: every grant without /srv, else the missing ones. */
export function unmounted(facts: DataFacts | null | undefined): readonly string[] | 'all' {
  if (!facts) return [];
  return facts.parentMissing ? 'all' : [...facts.missing, ...(facts.escapes ?? [])].map((m) => m.path);
}

/** Plan warnings for facts read on the host: a grant that does not exist is not mounted, and the plan says so. */
export function dataProblems(facts: DataFacts | null | undefined, address: string): Diagnostic[] {
  if (!facts) return [];
  const out: Diagnostic[] = [];
  if (facts.parentMissing) {
    out.push(
      warningDiag(
        SystemdCode.dataMissing,
        `${address}: ${DATA_PARENT} does not exist on the host, so none of the profile's data grants is mounted (they appear under ${DATA_MOUNT}).`,
        {
          address,
          detail: `Create it (mkdir -m 0755 ${DATA_PARENT}) and plan again.`,
        },
      ),
    );
  }
  for (const e of facts.escapes ?? []) {
    out.push(
      errorDiag(
        SystemdCode.dataSymlink,
        `${address}: data path \`${e.path}\` (${e.access}) is a symlink or goes through one on the host (it resolves to ${e.target}); it is not mounted.`,
        {
          address,
          detail: `systemd follows symlinks when it binds a grant, so whoever can write a parent directory could point the grant at any host path. Replace ${path.posix.join(facts.root, e.path)} with a real directory, and check which workload wrote the link (a workload with read-write access to a parent of another's grant can).`,
        },
      ),
    );
  }
  for (const m of facts.missing) {
    out.push(
      warningDiag(
        SystemdCode.dataMissing,
        `${address}: data path \`${m.path}\` (${m.access}) does not exist under the host's data root ${facts.root}${facts.rootMissing ? ' (the root itself is missing)' : ''}; it is not mounted.`,
        {
          address,
          detail: `The profile runs without it until it exists (the next plan then shows the new mount): create ${path.posix.join(facts.root, m.path)}${m.access === 'read-write' ? ' writable by the account that runs the unit (ADR 0024)' : ''}, set spec.data.root in the host file if the data lives elsewhere, or remove the entry from the contract's spec.data.`,
        },
      ),
    );
  }
  return out;
}

/**
 * Where a profile's memory lives on the host (host paths), existing or not: system scope under /var/lib/private
 * (DynamicUser=; systemd links /var/lib/agentvm-memory/… to it), user scope under the account's $XDG_CONFIG_HOME
 * (systemd 252; later versions use $XDG_STATE_HOME, ~/.local/state, listed too). `profile` absent: the workload's
 * directory. Empty when unknown (user units rendered for every user into a root).
 */
export function memoryHostDirs(
  endpoint: { scope: 'system' | 'user'; mode: 'online' | 'offline'; unitDir: string; managerRoot: string },
  workload: string,
  profile?: string,
): string[] {
  const rel = profile ? memoryDirName(workload, profile) : `${MEMORY_DIR}/${workload}`;
  const under = (base: string): string => path.join(endpoint.managerRoot, base, rel);
  if (endpoint.scope === 'system') return [under('/var/lib/private'), under('/var/lib')];
  // unitDir is $XDG_CONFIG_HOME/systemd/user of the account (systemctl.ts userEndpoint); offline --global has none.
  if (endpoint.mode !== 'online' || !endpoint.unitDir.endsWith('/systemd/user')) return [];
  const configHome = path.dirname(path.dirname(endpoint.unitDir));
  return [path.join(configHome, rel), path.join(path.dirname(configHome), '.local/state', rel)];
}

/**
 * Warnings for grants another service workload of the host may replace: a read-write grant on a strict parent of
 * this grant lets that workload change these files and swap the directory for a symlink (refused at plan and apply,
 * systemd.data-symlink, but a restart systemd does on its own in between would follow it). One per grant and writer.
 */
export function overlapWarnings(
  workloads: ReadonlyArray<{ name: string; units: readonly string[]; grants: readonly DataGrant[] }>,
): Diagnostic[] {
  const out: Diagnostic[] = [];
  for (const w of workloads) {
    for (const g of normalizedGrants(w.grants)) {
      for (const v of workloads) {
        if (v.name === w.name) continue;
        const parent = normalizedGrants(v.grants).find(
          (r) => r.access === 'read-write' && g.path.startsWith(`${r.path}/`),
        );
        if (!parent) continue;
        for (const address of w.units) {
          out.push(
            warningDiag(
              SystemdCode.dataOverlap,
              `${address}: workload \`${v.name}\` may write \`${parent.path}\`, a parent of this profile's data grant \`${g.path}\`: it can change these files and replace the directory with a symlink.`,
              {
                address,
                detail: `Grant ${v.name} only the sibling directories it needs, or move ${g.path} out from under ${parent.path}. A replaced directory is refused when agentvm plans or applies (systemd.data-symlink), not when systemd restarts the unit on its own.`,
              },
            ),
          );
        }
      }
    }
  }
  return out;
}
