// SystemdEndpoint: the systemd manager a host's gateway units live in, and how to talk to it.
//   system scope  units in `<root>/etc/systemd/system`; `systemctl` when `--root` is `/` and PID 1 is systemd,
//                 otherwise offline (`systemctl --root=<root>`: files and enablement only, nothing starts).
//   user scope    units in `$XDG_CONFIG_HOME/systemd/user` (default `~/.config/systemd/user`) of the account
//                 whose manager runs them, `systemctl --user`; offline when that manager is not running
//                 (`SYSTEMD_OFFLINE=1 systemctl --user`). Why that directory: agentvm in user scope runs as the
//                 account (or as root on its behalf) and cannot own /etc/systemd/user, which would also put the
//                 gateways into every user's manager; `systemctl --user enable` and `systemctl --user edit` work
//                 in the same directory, so hand edits land where drift detection looks first. A root other than
//                 `/` (rendering into an image) has no account to resolve: units go to `<root>/etc/systemd/user`
//                 and are enabled `--global`.
// Invariants:
//   - Commands run with an explicit argv and environment (no shell); in user scope on behalf of another account
//     they run as that account (uid/gid) with its HOME and XDG_RUNTIME_DIR (systemctl --user needs both).
//   - Paths: `unitDir` and `unitPaths()` are host paths; `managerRoot` is what the manager sees as `/` (the host
//     root when offline), so a unit written offline names paths as the booted host will see them.

import { execFileSync, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { UnitScope } from './analyze.js';

export interface CommandResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** The account whose user manager runs the units (user scope), when agentvm acts on its behalf. */
export interface UserAccount {
  user: string;
  uid: number;
  gid: number;
  home: string;
  /** `/run/user/<uid>`. */
  runtimeDir: string;
}

export interface SystemdEndpoint {
  readonly scope: UnitScope;
  /** `online`: a manager is reachable and units start; `offline`: files and enablement only. */
  readonly mode: 'online' | 'offline';
  /** Where agentvm writes its unit files (host path). */
  readonly unitDir: string;
  /** What the manager sees as `/`: `/` online, the host root offline. */
  readonly managerRoot: string;
  /**
   * The manager's runtime directory (`%t`) as the manager sees it: `/run`, or `$XDG_RUNTIME_DIR` in user scope.
   * Null when it cannot be known (user units rendered `--global` into a root: each user has their own).
   */
  readonly runtimeDir: string | null;
  /** Files agentvm writes are chowned to this account (user scope on behalf of another account). */
  readonly fileOwner?: { uid: number; gid: number };
  /** `systemctl` with the scope's flags (`--user`, `--root=`, `--global`) in front of `args`. */
  systemctl(args: readonly string[]): Promise<CommandResult>;
  /** The unit search path, highest priority first, as host paths. */
  unitPaths(): Promise<string[]>;
}

/** Host path → the path the manager sees. */
export function managerPath(endpoint: Pick<SystemdEndpoint, 'managerRoot'>, hostPath: string): string {
  if (endpoint.managerRoot === '/') return hostPath;
  const rel = path.relative(endpoint.managerRoot, hostPath);
  if (rel.startsWith('..') || path.isAbsolute(rel))
    throw new Error(`bug: ${hostPath} is outside the host root ${endpoint.managerRoot}`);
  return `/${rel}`;
}

/** The manager's path → host path. */
export function hostPathOf(endpoint: Pick<SystemdEndpoint, 'managerRoot'>, managerSidePath: string): string {
  return endpoint.managerRoot === '/' ? managerSidePath : path.join(endpoint.managerRoot, managerSidePath);
}

const PATH_ENV = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

function baseEnv(): Record<string, string> {
  return { PATH: PATH_ENV, LANG: 'C.UTF-8', SYSTEMD_COLORS: '0', SYSTEMD_PAGER: '', SYSTEMD_LOG_LEVEL: 'warning' };
}

/** System scope. Online only when the root is `/` and PID 1 is systemd (`/run/systemd/system` exists). */
export function systemEndpoint(root: string): SystemdEndpoint {
  const r = path.resolve(root);
  const online = r === '/' && existsSync('/run/systemd/system');
  const env = online ? baseEnv() : { ...baseEnv(), SYSTEMD_OFFLINE: '1' };
  const flags = online ? [] : [`--root=${r}`];
  return {
    scope: 'system',
    mode: online ? 'online' : 'offline',
    unitDir: path.join(r, 'etc/systemd/system'),
    managerRoot: online ? '/' : r,
    runtimeDir: '/run',
    systemctl: (args) => run(['systemctl', ...flags, ...args], { env }),
    unitPaths: cached(async () => (await analyzerUnitPaths([], env)).map((p) => (online ? p : path.join(r, p)))),
  };
}

export interface UserEndpointOptions {
  /** Host root (`--root`). */
  root: string;
  /** The account whose manager runs the units; default: the account agentvm runs as. */
  account?: UserAccount;
}

/** User scope: the manager of `account` (or of the current user). */
export function userEndpoint(opts: UserEndpointOptions): SystemdEndpoint {
  const r = path.resolve(opts.root);
  if (r !== '/' && !opts.account) {
    // Rendering into an image: no account to resolve inside it.
    const env = { ...baseEnv(), SYSTEMD_OFFLINE: '1' };
    return {
      scope: 'user',
      mode: 'offline',
      unitDir: path.join(r, 'etc/systemd/user'),
      managerRoot: r,
      runtimeDir: null,
      systemctl: (args) => run(['systemctl', `--root=${r}`, '--global', ...args], { env }),
      unitPaths: cached(async () => (await analyzerUnitPaths(['--global'], env)).map((p) => path.join(r, p))),
    };
  }
  const account = opts.account ?? currentAccount();
  const configHome = opts.account
    ? path.join(account.home, '.config')
    : (process.env.XDG_CONFIG_HOME ?? path.join(account.home, '.config'));
  const online = existsSync(path.join(account.runtimeDir, 'systemd/private'));
  const env: Record<string, string> = {
    ...baseEnv(),
    HOME: account.home,
    USER: account.user,
    LOGNAME: account.user,
    XDG_RUNTIME_DIR: account.runtimeDir,
    XDG_CONFIG_HOME: configHome,
    DBUS_SESSION_BUS_ADDRESS: `unix:path=${account.runtimeDir}/bus`,
    ...(online ? {} : { SYSTEMD_OFFLINE: '1' }),
  };
  const asOther = opts.account !== undefined && process.getuid?.() !== account.uid;
  const ids = asOther ? { uid: account.uid, gid: account.gid } : {};
  return {
    scope: 'user',
    mode: online ? 'online' : 'offline',
    unitDir: path.join(configHome, 'systemd/user'),
    managerRoot: '/',
    runtimeDir: account.runtimeDir,
    ...(asOther ? { fileOwner: { uid: account.uid, gid: account.gid } } : {}),
    systemctl: (args) => run(['systemctl', '--user', ...args], { env, ...ids }),
    unitPaths: cached(() => analyzerUnitPaths(['--user'], env, ids)),
  };
}

/**
 * The environment variable naming the account whose user manager runs user-scope gateways when agentvm acts on
 * its behalf (typically as root: `AGENTVM_SYSTEMD_USER=agents agentvm apply …`). Unset: the invoking account.
 */
export const SYSTEMD_USER_ENV = 'AGENTVM_SYSTEMD_USER';

const ACCOUNT_NAME = /^[a-z_][a-z0-9_-]{0,31}$/;

/**
 * The account named `name`, from the passwd database (`getent passwd`). Throws an Error naming the problem when the
 * name is malformed or unknown: a misconfigured account must stop the run before any unit is touched.
 */
export function accountNamed(name: string): UserAccount {
  if (!ACCOUNT_NAME.test(name)) throw new Error(`${SYSTEMD_USER_ENV}=${JSON.stringify(name)} is not an account name`);
  let line: string;
  try {
    line = execFileSync('getent', ['passwd', name], {
      encoding: 'utf8',
      env: { PATH: PATH_ENV },
      stdio: ['ignore', 'pipe', 'ignore'],
    }).trim();
  } catch {
    throw new Error(`${SYSTEMD_USER_ENV} names the account ${name}, which does not exist on this host`);
  }
  const [user, , uid, gid, , home] = line.split(':');
  if (user !== name || !uid || !gid || !home) throw new Error(`getent passwd ${name} answered an unexpected line`);
  return { user, uid: Number(uid), gid: Number(gid), home, runtimeDir: `/run/user/${uid}` };
}

function currentAccount(): UserAccount {
  const info = os.userInfo();
  const uid = info.uid;
  return {
    user: info.username,
    uid,
    gid: info.gid,
    home: process.env.HOME ?? info.homedir,
    runtimeDir: process.env.XDG_RUNTIME_DIR ?? `/run/user/${uid}`,
  };
}

/** The unit search path as systemd computes it (`systemd-analyze unit-paths`), highest priority first. */
async function analyzerUnitPaths(
  flags: string[],
  env: Record<string, string>,
  ids: { uid?: number; gid?: number } = {},
): Promise<string[]> {
  const r = await run(['systemd-analyze', ...flags, 'unit-paths'], { env, ...ids });
  if (r.code !== 0)
    throw new Error(`systemd-analyze ${flags.join(' ')} unit-paths failed (${r.code}): ${r.stderr.trim()}`);
  return r.stdout
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l.startsWith('/'));
}

function cached<T>(fn: () => Promise<T>): () => Promise<T> {
  let value: Promise<T> | undefined;
  return () => {
    value ??= fn().catch((err: unknown) => {
      value = undefined;
      throw err;
    });
    return value;
  };
}

/** Runs a command without a shell. A missing binary is exit code 127 with the error in stderr. */
export function run(
  cmd: readonly string[],
  o: { env?: Record<string, string>; uid?: number; gid?: number; timeoutMs?: number } = {},
): Promise<CommandResult> {
  const [file, ...args] = cmd;
  if (!file) return Promise.reject(new Error('empty command'));
  const timeoutMs = o.timeoutMs ?? 90_000;
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, {
      env: o.env ?? baseEnv(),
      cwd: '/',
      stdio: ['ignore', 'pipe', 'pipe'],
      ...(o.uid === undefined ? {} : { uid: o.uid, gid: o.gid }),
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      stdout += d;
    });
    child.stderr.setEncoding('utf8').on('data', (d: string) => {
      stderr += d;
    });
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${cmd.join(' ')} did not finish within ${timeoutMs} ms`));
    }, timeoutMs);
    child.once('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      if (err.code === 'ENOENT') resolve({ code: 127, stdout: '', stderr: `${file}: not found` });
      else reject(err);
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code: code ?? 128 + (signal ? os.constants.signals[signal] : 0), stdout, stderr });
    });
  });
}

/** `systemctl show` output (`Key=value` lines) as a record. */
export function parseShow(stdout: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of stdout.split('\n')) {
    const eq = line.indexOf('=');
    if (eq > 0) out[line.slice(0, eq)] = line.slice(eq + 1);
  }
  return out;
}
