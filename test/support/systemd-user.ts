// startUserManager(): a real systemd user manager for integration tests, on machines where systemd is not
// PID 1 (this sandbox: a Firecracker VM whose init is not systemd, hybrid cgroups, we are root).
// What it owns: the dedicated test user (created when missing, and then deleted again by stop()), that user's
// delegated cgroups, its runtime dir `/run/user/<uid>`, its unit dir `~/.config/systemd/user`, the manager
// process, and the harness's lock files under `/run/agentvm-systemd-harness/`.
// Invariants:
//   - Only users whose name starts with `agentvm-test` are used: stop() kills everything in the user's cgroups
//     and wipes its systemd config, which would be destructive for a real account.
//   - One manager per user at a time. A lock file names the owning process; a lock left by a dead process (a
//     crashed test run) is reclaimed, leftovers included. Parallel vitest workers get different users
//     (`agentvm-test-<VITEST_POOL_ID>`), so they never share a manager.
//   - `/run/systemd/system` (the "booted with systemd" marker) exists only while a manager starts, under a
//     start lock, when the harness had to create it: apt maintainer scripts and other tools read it as "PID 1
//     is systemd". The manager checks it only at start-up; afterwards `systemctl --user is-system-running`
//     answers `offline`, which is why systemState() reads the SystemState property instead.
//   - Everything the harness creates outside the user's home is removed by stop(); host paths it had to create
//     and that all managers share (`/run/user`, `/run/systemd/unit-root`) go when the last manager stops.
// Traps found on the way (details and timings: decisions/notes-systemd-harness.md):
//   - The manager refuses to start without `/run/systemd/system` ("system has not been booted with systemd").
//   - `/run/systemd/unit-root` must exist, created by root: a user manager cannot create it, and every unit
//     using a mount namespace (PrivateUsers= with ProtectSystem=, PrivateTmp=, …) fails with status 226/NAMESPACE.
//   - systemctl --user must run with the user's HOME: `enable` resolves unit files under $HOME, not over D-Bus.
//   - No journald: the manager closes its stderr and logs to /dev/console, which the user cannot open, so its
//     log is lost after start-up (start-up errors do reach the harness's log file and its error messages).
//     Units' output is lost too (StandardOutput=journal falls back to /dev/null; `inherit` means stdin, which
//     is /dev/null): give test units `StandardOutput=append:%t/<name>.log`, or probe with
//     `systemd-run --user --pipe --wait`. Why a unit failed: show(unit, ['Result', 'ExecMainStatus']).

import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { chown, lstat, mkdir, open, readdir, readFile, rm, rmdir, unlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

export interface CommandResult {
  /** Exit code; 128 + signal number when the command was killed by a signal. */
  code: number;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  /** Working directory; the user's home by default. */
  cwd?: string;
  /** Added to (and overriding) the user's environment. */
  env?: Record<string, string>;
  /** Written to stdin, which is then closed. */
  input?: string;
  /** The command is killed and the call rejects after this long. Default 30 s. */
  timeoutMs?: number;
}

export interface UserManagerOptions {
  /** Dedicated user; must start with `agentvm-test`. Default `agentvm-test` (+ `-<VITEST_POOL_ID>` under vitest). */
  user?: string;
  /** How long to wait for the manager to answer `running`/`degraded`. Default 15 s. */
  readyTimeoutMs?: number;
}

export interface UserManagerTimings {
  /** Creating or finding the user, cgroups and directories. */
  prepareMs: number;
  /** From spawning the manager until `is-system-running` answers running/degraded. */
  startMs: number;
  /** Set by stop(): stopping the manager and removing everything. */
  stopMs?: number;
}

export interface UserManager {
  user: string;
  uid: number;
  gid: number;
  home: string;
  /** `/run/user/<uid>`, the manager's XDG_RUNTIME_DIR. */
  runtimeDir: string;
  /** `~/.config/systemd/user` of the user: unit files written here are found after `daemon-reload`. */
  unitDir: string;
  /** PID of `systemd --user`. */
  managerPid: number;
  /**
   * cgroup v2 controllers available to the user's delegated cgroup (`cgroup.controllers`). Empty on hybrid
   * hosts like this one, where memory and pids live in v1 hierarchies: MemoryMax=/TasksMax= are then accepted
   * but not enforced.
   */
  controllers: string[];
  timings: UserManagerTimings;
  /** Runs `systemctl --user <args>` as the user. */
  systemctl(args: readonly string[]): Promise<CommandResult>;
  /** Runs a command as the user with the manager's environment (XDG_RUNTIME_DIR, DBUS_SESSION_BUS_ADDRESS, HOME). */
  run(cmd: readonly string[], opts?: RunOptions): Promise<CommandResult>;
  /** `MainPID` of a unit; 0 when it has no running main process. Throws when systemctl fails. */
  mainPid(unit: string): Promise<number>;
  /** The named properties of a unit (`systemctl --user show -p …`). */
  show(unit: string, properties: readonly string[]): Promise<Record<string, string>>;
  /** The manager's SystemState (`running`, `degraded`, …); use it instead of `is-system-running`. */
  systemState(): Promise<string>;
  /** Writes a file under the unit dir (e.g. `foo@.service`, `foo@a.service.d/10-x.conf`), owned by the user. */
  writeUnit(name: string, text: string): Promise<string>;
  /** Writes a file under the user's home, owned by the user; removed by stop(). */
  writeFile(relativePath: string, text: string, mode?: number): Promise<string>;
  /** Stops the manager and removes what the harness created. Idempotent. */
  stop(): Promise<void>;
}

/** The user manager cannot run on this machine; `howTo` says what to install or change. */
export class SystemdUnavailableError extends Error {
  readonly howTo: string;
  constructor(reason: string, howTo: string) {
    super(`systemd user manager unavailable: ${reason}. ${howTo}`);
    this.name = 'SystemdUnavailableError';
    this.howTo = howTo;
  }
}

export type UserManagerSupport = { ok: true } | { ok: false; reason: string; howTo: string };

const HOW_TO =
  'Run the system tests as root on Linux with systemd installed (apt-get install systemd dbus-user-session util-linux) ' +
  'and cgroups mounted under /sys/fs/cgroup; see decisions/notes-systemd-harness.md';
const STATE_DIR = '/run/agentvm-systemd-harness';
const START_LOCK = path.join(STATE_DIR, 'start.lock');
const BOOTED_MARKER = '/run/systemd/system';
/** Host paths the harness creates when missing and shares between managers; removed by the last one. */
const SHARED_PATHS = ['/run/user', '/run/systemd/unit-root', '/run/credentials'] as const;
const USER_PATTERN = /^agentvm-test[a-z0-9-]{0,19}$/;
const SYSTEMD_CANDIDATES = ['/lib/systemd/systemd', '/usr/lib/systemd/systemd'];
const PATH_ENV = '/usr/local/bin:/usr/bin:/bin';

/**
 * Synchronous check (usable at test collection time) of what startUserManager needs. It does not start
 * anything, so a machine can pass it and the manager still fail to start: startUserManager then throws.
 */
export function userManagerSupport(): UserManagerSupport {
  const no = (reason: string): UserManagerSupport => ({ ok: false, reason, howTo: HOW_TO });
  if (process.platform !== 'linux') return no(`platform is ${process.platform}, not linux`);
  if (process.getuid?.() !== 0)
    return no('the tests do not run as root (needed to create the user and delegate cgroups)');
  if (!systemdBinary()) return no(`no systemd binary at ${SYSTEMD_CANDIDATES.join(' or ')}`);
  for (const tool of ['systemctl', 'setpriv', 'useradd', 'userdel']) {
    if (!onPath(tool)) return no(`${tool} is not on PATH`);
  }
  if (cgroupHierarchies().length === 0) return no('no cgroup v2 (or name=systemd v1) hierarchy under /sys/fs/cgroup');
  return { ok: true };
}

const active = new Map<string, UserManager>();

/**
 * Starts `systemd --user` for a dedicated test user and resolves once it answers running/degraded (≈0.25 s
 * here, preparation included). Throws SystemdUnavailableError when the machine cannot run it (see
 * userManagerSupport), and an Error with the manager's start-up output when it fails to come up; either way
 * nothing is left behind. Call stop() when done (afterAll).
 */
export async function startUserManager(opts: UserManagerOptions = {}): Promise<UserManager> {
  const support = userManagerSupport();
  if (!support.ok) throw new SystemdUnavailableError(support.reason, support.howTo);
  const systemd = systemdBinary()!;
  const user = opts.user ?? defaultUser();
  if (!USER_PATTERN.test(user))
    throw new Error(`test user "${user}" must match ${USER_PATTERN}: the harness wipes its systemd state`);
  if (active.has(user))
    throw new Error(`a user manager for ${user} is already running in this process; stop() it first`);

  const t0 = performance.now();
  await mkdir(STATE_DIR, { recursive: true, mode: 0o755 });
  await claimOwnership(user);
  let account: Account | undefined;
  let createdUser = false;
  let child: ChildProcess | undefined;
  let exited: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  const logFile = path.join(os.tmpdir(), `agentvm-systemd-${user}-${process.pid}.log`);
  let prepareMs = 0;
  let startMs = 0;
  let cgroups: string[] = [];
  try {
    ({ account, created: createdUser } = await withStartLock(async () => {
      await ensureSharedPaths();
      return ensureUser(user);
    }));
    await recordOwnership(user, createdUser);
    await reclaim(account);

    const { uid, gid, home } = account;
    await mkdir(`/run/user/${uid}`, { recursive: true, mode: 0o700 });
    await chown(`/run/user/${uid}`, uid, gid);
    await mkdirOwned(home, '.config/systemd/user', uid, gid);
    cgroups = cgroupHierarchies().map((h) => path.join(h, user));
    for (const dir of cgroups) await delegateCgroup(dir, uid, gid);
    prepareMs = performance.now() - t0;

    const t1 = performance.now();
    const env = userEnv(account, `/run/user/${uid}`);
    await withStartLock(async () => {
      const createdMarker = !existsSync(BOOTED_MARKER);
      if (createdMarker) await mkdir(BOOTED_MARKER, { recursive: true });
      try {
        const log = await open(logFile, 'w', 0o600);
        try {
          // The shell runs as root so that it may move itself into the delegated cgroups (writing a cgroup.procs
          // needs write access to the common ancestor's, which only root has); then it becomes the user.
          child = spawn(
            '/bin/sh',
            [
              '-c',
              'n=$1; shift; while [ "$n" -gt 0 ]; do echo $$ > "$1" || exit 97; shift; n=$((n-1)); done; exec "$@"',
              'sh',
              String(cgroups.length),
              ...cgroups.map((dir) => path.join(dir, 'cgroup.procs')),
              'setpriv',
              `--reuid=${uid}`,
              `--regid=${gid}`,
              '--init-groups',
              '--',
              systemd,
              '--user',
            ],
            { detached: true, stdio: ['ignore', log.fd, log.fd], env, cwd: home },
          );
        } finally {
          await log.close();
        }
        child.once('exit', (code, signal) => {
          exited = { code, signal };
        });
        child.unref();
        await waitUntilReady(account!, env);
      } finally {
        if (createdMarker) await rmdir(BOOTED_MARKER).catch(() => undefined);
      }
    });
    startMs = performance.now() - t1;
  } catch (err) {
    if (child?.pid) killQuietly(child.pid, 'SIGKILL');
    if (account) await teardown(account, { createdUser, log: logFile }).catch(() => undefined);
    else await unlink(ownerFile(user)).catch(() => undefined);
    throw err;
  }

  async function waitUntilReady(who: Account, env: Record<string, string>): Promise<void> {
    const deadline = Date.now() + (opts.readyTimeoutMs ?? 15_000);
    let last = '';
    for (;;) {
      if (exited) {
        const why =
          exited.code === 97
            ? 'could not move into its delegated cgroups'
            : `exited with ${exited.code ?? exited.signal}`;
        throw new Error(`systemd --user for ${user} ${why} before it was ready. Log:\n${tail(logFile)}`);
      }
      const r = await runAs(who, env, ['systemctl', '--user', 'is-system-running'], { timeoutMs: 5_000 });
      last = r.stdout.trim() || r.stderr.trim();
      if (last === 'running' || last === 'degraded') return;
      if (Date.now() > deadline) {
        throw new Error(
          `systemd --user for ${user} not ready after ${opts.readyTimeoutMs ?? 15_000} ms (last answer: ${last}). Log:\n${tail(logFile)}`,
        );
      }
      await sleep(20);
    }
  }

  const { uid, gid, home } = account;
  const runtimeDir = `/run/user/${uid}`;
  const unitDir = path.join(home, '.config/systemd/user');
  const env = userEnv(account, runtimeDir);
  const managerPid = child!.pid!;
  const controllers = (await readFile(path.join(cgroups[0]!, 'cgroup.controllers'), 'utf8').catch(() => ''))
    .split(/\s+/)
    .filter(Boolean);
  const timings: UserManagerTimings = { prepareMs, startMs };
  const written = new Set<string>();
  // A test process that dies without stop() must not leave a manager running; the next start reclaims the rest.
  const onExit = (): void => killQuietly(managerPid, 'SIGKILL');
  process.once('exit', onExit);

  let stopped: Promise<void> | undefined;
  const manager: UserManager = {
    user,
    uid,
    gid,
    home,
    runtimeDir,
    unitDir,
    managerPid,
    controllers,
    timings,
    run: (cmd, runOpts) => runAs(account, env, cmd, runOpts),
    systemctl: (args) => runAs(account, env, ['systemctl', '--user', ...args]),
    async show(unit, properties) {
      const r = await manager.systemctl(['show', unit, ...properties.map((p) => `--property=${p}`)]);
      if (r.code !== 0) throw new Error(`systemctl --user show ${unit} failed (${r.code}): ${r.stderr.trim()}`);
      const out: Record<string, string> = {};
      for (const line of r.stdout.split('\n')) {
        const eq = line.indexOf('=');
        if (eq > 0) out[line.slice(0, eq)] = line.slice(eq + 1);
      }
      return out;
    },
    async mainPid(unit) {
      const { MainPID } = await manager.show(unit, ['MainPID']);
      const pid = Number(MainPID);
      if (!Number.isInteger(pid)) throw new Error(`systemctl --user show ${unit}: MainPID is "${MainPID}"`);
      return pid;
    },
    async systemState() {
      const r = await manager.systemctl(['show', '--property=SystemState', '--value']);
      return r.stdout.trim();
    },
    writeUnit: (name, text) => writeOwned(account, path.join('.config/systemd/user', name), text, 0o644, written),
    writeFile: (relativePath, text, mode = 0o644) => writeOwned(account, relativePath, text, mode, written),
    stop() {
      stopped ??= (async () => {
        const t = performance.now();
        process.removeListener('exit', onExit);
        await stopManager(child!, () => exited !== undefined);
        // Newest first: files before the directories that were created for them.
        for (const p of [...written].reverse()) await rm(p, { recursive: true, force: true });
        await teardown(account, { createdUser, log: logFile });
        active.delete(user);
        timings.stopMs = performance.now() - t;
      })();
      return stopped;
    },
  };
  active.set(user, manager);
  return manager;
}

// ---------------------------------------------------------------------------------------------------------
// Accounts, ownership and locks

interface Account {
  user: string;
  uid: number;
  gid: number;
  home: string;
}

/**
 * `agentvm-test` (+ `-<VITEST_POOL_ID>`); AGENTVM_TEST_USER replaces the base name so that two test runs on one
 * machine (two checkouts, say) never claim the same account. It must start with `agentvm-test` like every user here.
 */
function defaultUser(): string {
  const base = process.env.AGENTVM_TEST_USER ?? 'agentvm-test';
  if (!/^agentvm-test[a-z0-9-]{0,16}$/.test(base))
    throw new Error(`AGENTVM_TEST_USER=${JSON.stringify(base)} must match agentvm-test[a-z0-9-]{0,16}`);
  const pool = process.env.VITEST_POOL_ID;
  return pool && /^[0-9]+$/.test(pool) ? `${base}-${pool}` : base;
}

async function ensureUser(user: string): Promise<{ account: Account; created: boolean }> {
  let entry = await passwdEntry(user);
  let created = false;
  if (!entry) {
    const r = await exec([
      'useradd',
      '--system',
      '--user-group',
      '--create-home',
      '--home-dir',
      `/var/lib/${user}`,
      '--shell',
      '/usr/sbin/nologin',
      user,
    ]);
    if (r.code !== 0) throw new Error(`useradd ${user} failed (${r.code}): ${r.stderr.trim()}`);
    created = true;
    entry = await passwdEntry(user);
    if (!entry) throw new Error(`useradd ${user} succeeded but getent does not know the user`);
  }
  if (!existsSync(entry.home)) {
    await mkdir(entry.home, { recursive: true, mode: 0o755 });
    await chown(entry.home, entry.uid, entry.gid);
  }
  return { account: entry, created };
}

async function passwdEntry(user: string): Promise<Account | undefined> {
  const r = await exec(['getent', 'passwd', user]);
  if (r.code !== 0) return undefined;
  const [, , uid, gid, , home] = r.stdout.trim().split(':');
  return { user, uid: Number(uid), gid: Number(gid), home: home ?? `/var/lib/${user}` };
}

interface Ownership {
  pid: number;
  createdUser: boolean;
}

function ownerFile(user: string): string {
  return path.join(STATE_DIR, `${user}.owner`);
}

async function readOwnership(file: string): Promise<Ownership | undefined> {
  try {
    return JSON.parse(await readFile(file, 'utf8')) as Ownership;
  } catch {
    return undefined;
  }
}

/** Claims the user for this process, or throws when another live process holds it. */
async function claimOwnership(user: string): Promise<void> {
  const previous = await readOwnership(ownerFile(user));
  if (previous && previous.pid !== process.pid && alive(previous.pid)) {
    throw new Error(
      `test user ${user} is in use by process ${previous.pid}; pass another { user } to startUserManager`,
    );
  }
  await writeFile(ownerFile(user), JSON.stringify({ pid: process.pid, createdUser: previous?.createdUser ?? false }));
}

async function recordOwnership(user: string, createdUser: boolean): Promise<void> {
  const previous = await readOwnership(ownerFile(user));
  // A user created by a crashed run stays "created by the harness", so that it is still deleted at the end.
  await writeFile(
    ownerFile(user),
    JSON.stringify({ pid: process.pid, createdUser: createdUser || (previous?.createdUser ?? false) }),
  );
}

/** Serialises the steps that must not interleave between processes: useradd/userdel and the booted-marker window. */
async function withStartLock<T>(fn: () => Promise<T>): Promise<T> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    try {
      const fh = await open(START_LOCK, 'wx', 0o644);
      await fh.writeFile(String(process.pid));
      await fh.close();
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const holder = Number((await readFile(START_LOCK, 'utf8').catch(() => '')).trim());
      if (!holder || !alive(holder)) {
        // An empty file is a lock being written right now; only a dead holder's lock is broken.
        if (holder) await unlink(START_LOCK).catch(() => undefined);
      } else if (Date.now() > deadline) {
        throw new Error(`${START_LOCK} is held by process ${holder} for more than 60 s`);
      }
      await sleep(20);
    }
  }
  try {
    return await fn();
  } finally {
    await unlink(START_LOCK).catch(() => undefined);
  }
}

async function ensureSharedPaths(): Promise<void> {
  for (const p of SHARED_PATHS) {
    if (existsSync(p)) continue;
    await mkdir(p, { recursive: true, mode: 0o755 });
    await writeFile(path.join(STATE_DIR, `created${p.replaceAll('/', '-')}`), '');
  }
}

/** Removes shared host paths the harness created, once no live process owns a manager. */
async function releaseSharedPaths(): Promise<void> {
  for (const entry of await readdir(STATE_DIR)) {
    if (!entry.endsWith('.owner')) continue;
    const o = await readOwnership(path.join(STATE_DIR, entry));
    if (o && o.pid !== process.pid && alive(o.pid)) return;
  }
  for (const p of SHARED_PATHS) {
    const marker = path.join(STATE_DIR, `created${p.replaceAll('/', '-')}`);
    if (!existsSync(marker)) continue;
    // Only an empty directory is removed: a runtime dir or a mount inside means someone still uses it.
    try {
      await rmdir(p);
      await unlink(marker);
    } catch {
      // still in use; the last user removes it
    }
  }
  if ((await readdir(STATE_DIR)).length === 0) await rmdir(STATE_DIR).catch(() => undefined);
}

// ---------------------------------------------------------------------------------------------------------
// Cgroups, processes and teardown

/** Where a delegated cgroup must be made: cgroup v2 (pure or the hybrid `unified`) and the v1 name=systemd tree. */
function cgroupHierarchies(): string[] {
  if (existsSync('/sys/fs/cgroup/cgroup.controllers')) return ['/sys/fs/cgroup'];
  return ['/sys/fs/cgroup/unified', '/sys/fs/cgroup/systemd'].filter((h) => existsSync(path.join(h, 'cgroup.procs')));
}

async function delegateCgroup(dir: string, uid: number, gid: number): Promise<void> {
  await mkdir(dir, { recursive: true });
  await chown(dir, uid, gid);
  // Delegation: the user owns the directory and the files it writes to move processes and enable controllers.
  for (const f of await readdir(dir)) {
    const p = path.join(dir, f);
    if ((await lstat(p)).isFile()) await chown(p, uid, gid).catch(() => undefined);
  }
}

/** Kills everything in the user's cgroups, removes them, its runtime dir and its systemd config. */
async function reclaim(account: Account): Promise<void> {
  for (const dir of cgroupHierarchies().map((h) => path.join(h, account.user))) await removeCgroup(dir);
  await rm(`/run/user/${account.uid}`, { recursive: true, force: true });
  await rm(path.join(account.home, '.config/systemd'), { recursive: true, force: true });
  await rm(path.join(account.home, '.local/share/systemd'), { recursive: true, force: true });
}

async function teardown(account: Account, o: { createdUser: boolean; log: string }): Promise<void> {
  await reclaim(account);
  const owner = await readOwnership(ownerFile(account.user));
  if (o.createdUser || owner?.createdUser) {
    await withStartLock(async () => {
      const r = await exec(['userdel', '--remove', account.user]);
      // userdel --remove warns (exit 12) when the mail spool is missing; the account and home are gone anyway.
      if (r.code !== 0 && r.code !== 12)
        throw new Error(`userdel ${account.user} failed (${r.code}): ${r.stderr.trim()}`);
    });
  }
  await rm(o.log, { force: true });
  await unlink(ownerFile(account.user)).catch(() => undefined);
  await releaseSharedPaths();
}

async function stopManager(child: ChildProcess, hasExited: () => boolean): Promise<void> {
  if (hasExited() || child.pid === undefined) return;
  // SIGTERM makes the manager stop its units (exit.target) and exit; bounded, then the cgroups are killed.
  killQuietly(child.pid, 'SIGTERM');
  const deadline = Date.now() + 10_000;
  while (!hasExited() && Date.now() < deadline) await sleep(10);
}

async function removeCgroup(dir: string): Promise<void> {
  if (!existsSync(dir)) return;
  const deadline = Date.now() + 5_000;
  for (;;) {
    const pids = await cgroupPids(dir);
    if (pids.length === 0) break;
    if (existsSync(path.join(dir, 'cgroup.kill')))
      await writeFile(path.join(dir, 'cgroup.kill'), '1').catch(() => undefined);
    else for (const pid of pids) killQuietly(pid, 'SIGKILL');
    if (Date.now() > deadline) throw new Error(`processes ${pids.join(' ')} in ${dir} survive SIGKILL`);
    await sleep(10);
  }
  // Children before parents; an emptied cgroup can answer EBUSY for a moment while its last task exits.
  for (const sub of await subdirs(dir)) await removeCgroup(sub);
  for (;;) {
    try {
      await rmdir(dir);
      return;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') return;
      if (code !== 'EBUSY' || Date.now() > deadline) throw err;
      await sleep(10);
    }
  }
}

async function cgroupPids(dir: string): Promise<number[]> {
  const pids: number[] = [];
  const own = await readFile(path.join(dir, 'cgroup.procs'), 'utf8').catch(() => '');
  for (const line of own.split('\n')) if (line.trim()) pids.push(Number(line));
  for (const sub of await subdirs(dir)) pids.push(...(await cgroupPids(sub)));
  return pids;
}

async function subdirs(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
  return entries.filter((e) => e.isDirectory()).map((e) => path.join(dir, e.name));
}

// ---------------------------------------------------------------------------------------------------------
// Running commands as the user

function userEnv(account: Account, runtimeDir: string): Record<string, string> {
  return {
    HOME: account.home,
    USER: account.user,
    LOGNAME: account.user,
    SHELL: '/bin/sh',
    PATH: PATH_ENV,
    LANG: 'C.UTF-8',
    XDG_RUNTIME_DIR: runtimeDir,
    DBUS_SESSION_BUS_ADDRESS: `unix:path=${runtimeDir}/bus`,
  };
}

function runAs(
  account: Account,
  env: Record<string, string>,
  cmd: readonly string[],
  opts: RunOptions = {},
): Promise<CommandResult> {
  return exec(cmd, {
    uid: account.uid,
    gid: account.gid,
    cwd: opts.cwd ?? account.home,
    env: { ...env, ...opts.env },
    input: opts.input,
    timeoutMs: opts.timeoutMs,
  });
}

function exec(
  cmd: readonly string[],
  o: {
    uid?: number;
    gid?: number;
    cwd?: string;
    env?: Record<string, string>;
    input?: string | undefined;
    timeoutMs?: number | undefined;
  } = {},
): Promise<CommandResult> {
  const [file, ...args] = cmd;
  if (!file) return Promise.reject(new Error('empty command'));
  const timeoutMs = o.timeoutMs ?? 30_000;
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, {
      ...(o.uid === undefined ? {} : { uid: o.uid, gid: o.gid }),
      cwd: o.cwd ?? '/',
      env: o.env ?? { PATH: process.env.PATH ?? PATH_ENV, LANG: 'C.UTF-8' },
      stdio: [o.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout!.setEncoding('utf8').on('data', (d: string) => {
      stdout += d;
    });
    child.stderr!.setEncoding('utf8').on('data', (d: string) => {
      stderr += d;
    });
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${cmd.join(' ')} did not finish within ${timeoutMs} ms`));
    }, timeoutMs);
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code: code ?? 128 + (signal ? os.constants.signals[signal] : 0), stdout, stderr });
    });
    if (o.input !== undefined) {
      // A command that exits without reading its input must not crash the test process with EPIPE.
      child.stdin!.on('error', () => undefined).end(o.input);
    }
  });
}

/** Writes a file below the home, owned by the user; records it and every directory it created in `created`. */
async function writeOwned(
  account: Account,
  relativePath: string,
  text: string,
  mode: number,
  created: Set<string>,
): Promise<string> {
  const normalized = path.posix.normalize(relativePath);
  if (path.isAbsolute(normalized) || normalized === '..' || normalized.startsWith('../')) {
    throw new Error(`${relativePath} is not a path inside the home`);
  }
  const dir = path.dirname(normalized);
  if (dir !== '.') await mkdirOwned(account.home, dir, account.uid, account.gid, created);
  const file = path.join(account.home, normalized);
  if (!existsSync(file)) created.add(file);
  await writeFile(file, text, { mode });
  await chown(file, account.uid, account.gid);
  return file;
}

/** mkdir -p below `base`, each created directory owned by the user (and recorded in `created`). */
async function mkdirOwned(
  base: string,
  relative: string,
  uid: number,
  gid: number,
  created?: Set<string>,
): Promise<void> {
  let current = base;
  for (const part of relative.split('/').filter(Boolean)) {
    current = path.join(current, part);
    if (!existsSync(current)) {
      await mkdir(current, { mode: 0o755 });
      await chown(current, uid, gid);
      created?.add(current);
    }
  }
}

// ---------------------------------------------------------------------------------------------------------
// Small things

function systemdBinary(): string | undefined {
  return SYSTEMD_CANDIDATES.find((p) => existsSync(p));
}

function onPath(tool: string): boolean {
  return (process.env.PATH ?? PATH_ENV)
    .split(':')
    .concat(['/usr/sbin', '/sbin'])
    .some((dir) => {
      try {
        return statSync(path.join(dir, tool)).isFile();
      } catch {
        return false;
      }
    });
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function killQuietly(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch {
    // already gone
  }
}

function tail(file: string, lines = 40): string {
  if (!existsSync(file)) return '(no log)';
  return readFileSync(file, 'utf8').split('\n').slice(-lines).join('\n');
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
