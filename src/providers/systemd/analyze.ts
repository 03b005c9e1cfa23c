// Offline checks of unit files with `systemd-analyze`: verifyUnits (syntax, values, executables, direct
// dependencies) and securityExposure (the 0–10 exposure score of `systemd-analyze security --offline=true`).
// No manager is needed: systemd-analyze builds an in-process manager over a temporary directory.
// Invariants:
//   - Unit names are checked before anything touches the file system; a name is never a path outside the
//     temporary directory. Temporary directories are removed on every path out.
//   - Output is mapped to diagnostics with the temporary directory stripped, so the same units give the same
//     diagnostics on every run. `location.file` is the unit file name as given (e.g. `x@a.service.d/10-p.conf`).
//   - A setting systemd "ignores" is an error here: an ignored hardening directive leaves a unit unprotected
//     while looking protected. Problems that depend on the host (a missing program or dependency) are warnings:
//     a planner without the host's releases installed sees them too.
// Facts (systemd 252, measured): verify takes ≈0.03 s; `--user` needs an XDG_RUNTIME_DIR, so one is made;
// `--root=` is no help (it also checks executables inside the root and needs a whole unit tree there); run as
// root in system scope it touches `/run/systemd/systemd-units-load` (an empty timestamp file).

import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { errorDiag, warningDiag, type Diagnostic } from '../../diagnostics/index.js';

export interface UnitFile {
  /** A unit (`agent-gateway@.service`) or a drop-in below it (`agent-gateway@core.service.d/10-profile.conf`). */
  name: string;
  text: string;
}

export type UnitScope = 'system' | 'user';

export interface AnalyzeOptions {
  /** Which manager's rules and search path to verify against. Default `system`. */
  scope?: UnitScope;
  /** Default 30 s; a hung systemd-analyze is an abort, not a diagnostic. */
  timeoutMs?: number;
}

/** The stable codes of verifyUnits' diagnostics. */
export const UnitCheckCode = {
  /** A file name that is not a unit name or a drop-in of one. */
  UnitName: 'systemd.unit-name',
  /** A key or section systemd does not know; it ignores it. */
  UnknownKey: 'systemd.unknown-key',
  /** A value systemd cannot parse; it ignores the setting (or, for ExecStart= and the like, refuses the unit). */
  InvalidValue: 'systemd.invalid-value',
  /** systemd accepts the setting but calls it unsafe or deprecated. */
  Advisory: 'systemd.unit-advisory',
  /** systemd will not start the unit at all. */
  NotLoadable: 'systemd.unit-not-loadable',
  /** A unit to verify (e.g. the instance a drop-in belongs to) exists neither in the set nor on the host. */
  NotFound: 'systemd.unit-not-found',
  /** A program in Exec*= does not exist on this host. */
  MissingExecutable: 'systemd.missing-executable',
  /** A Requires=/BindsTo=… dependency does not exist on this host. */
  MissingDependency: 'systemd.missing-dependency',
  /** systemd-analyze is not installed: the units were not checked. */
  AnalyzerUnavailable: 'systemd.analyzer-unavailable',
  /** Output verifyUnits does not recognise, or a failure without a recognised cause. */
  Verify: 'systemd.verify',
} as const;

// systemd's unit-name alphabet, backslash included (its escapes, e.g. `\x2d`); no slash, so never a path.
const UNIT_NAME =
  /^[A-Za-z0-9:_.\\-]+(@[A-Za-z0-9:_.\\-]*)?\.(service|socket|timer|path|target|mount|automount|swap|slice|scope|device)$/;
const DROP_IN = /^[A-Za-z0-9:_.\\-]+\.conf$/;

/**
 * Verifies a set of unit files (units and drop-ins) the way systemd would load them, offline. The set is
 * written to a temporary directory that is put first on the unit search path; units not in the set (targets,
 * dependencies) come from the host. Templates are verified as systemd does (instance `i`); a drop-in for an
 * instance (`x@a.service.d/…`) verifies that instance against the template in the set.
 */
export async function verifyUnits(files: readonly UnitFile[], opts: AnalyzeOptions = {}): Promise<Diagnostic[]> {
  const diagnostics: Diagnostic[] = [];
  const targets = new Set<string>();
  for (const f of files) {
    const kind = classifyName(f.name);
    if (kind === undefined) {
      diagnostics.push(
        errorDiag(UnitCheckCode.UnitName, `"${f.name}" is not a unit file name or a drop-in of one`, {
          detail: 'Use <name>.<type> (e.g. agent-gateway@.service) or <unit>.d/<name>.conf for a drop-in.',
        }),
      );
    } else {
      targets.add(kind.unit);
    }
  }
  if (diagnostics.length > 0 || targets.size === 0) return diagnostics;

  const dir = await mkdtemp(path.join(os.tmpdir(), `agentvm-units-${process.pid}-`));
  try {
    for (const f of files) {
      const file = path.join(dir, f.name);
      await mkdir(path.dirname(file), { recursive: true });
      // 0644: systemd warns about executable or world-writable unit files.
      await writeFile(file, f.text, { mode: 0o644 });
    }
    const args = [
      'verify',
      '--man=no',
      '--generators=no',
      '--recursive-errors=one',
      ...[...targets].sort().map((u) => path.join(dir, u)),
    ];
    const run = await analyze(args, opts);
    if (run === 'missing') return [analyzerMissing()];
    return parseVerifyOutput(run.output, dir, run.code);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * The overall exposure score (0 = locked down … 10 = unprotected) systemd gives a service unit, read from the
 * unit file at `unitPath` (an instance path such as `<dir>/x@a.service` works when its template and drop-ins
 * are in `<dir>`). Null when it cannot be measured here: systemd-analyze missing, older than 250 (no
 * `--offline`), or not a service. Throws when the unit does not load; verify it first.
 */
export async function securityExposure(unitPath: string, opts: AnalyzeOptions = {}): Promise<number | null> {
  if (!unitPath.endsWith('.service')) return null;
  const version = await systemdVersion();
  if (version === null || version < 250) return null;
  const run = await analyze(['security', '--offline=true', '--no-pager', unitPath], opts);
  if (run === 'missing') return null;
  const score = parseExposure(run.output);
  if (run.code !== 0 || score === null) {
    throw new Error(`systemd-analyze security ${unitPath} failed (exit ${run.code}):\n${run.output.trim()}`);
  }
  return score;
}

let versionCache: Promise<number | null> | undefined;

/** The systemd version systemd-analyze reports (e.g. 252), or null when it is not installed. */
export function systemdVersion(): Promise<number | null> {
  versionCache ??= analyze(['--version'], {}).then((run) => {
    if (run === 'missing') return null;
    const m = /^systemd (\d+)/m.exec(run.output);
    return m ? Number(m[1]) : null;
  });
  return versionCache;
}

/** `→ Overall exposure level for x.service: 9.6 UNSAFE 😨` → 9.6. */
export function parseExposure(output: string): number | null {
  const m = /Overall exposure level for \S+: (\d+(?:\.\d+)?)/.exec(output);
  return m ? Number(m[1]) : null;
}

/**
 * Maps `systemd-analyze verify` output (stdout and stderr together) to diagnostics. `dir` is the directory the
 * units were written to; it is stripped from every message. Pure: exported for tests over recorded output.
 */
export function parseVerifyOutput(output: string, dir: string, exitCode: number): Diagnostic[] {
  const prefix = dir.endsWith('/') ? dir : `${dir}/`;
  const diagnostics: Diagnostic[] = [];
  const notLoadable = new Set<string>();
  const unrecognised: string[] = [];

  for (const raw of output.split('\n')) {
    const line = raw.replaceAll(prefix, '').trim();
    if (!line) continue;

    // <file>:<line>: <message> — a problem in one line of one file of the set.
    const at = /^(\S+?):(\d+): (.*)$/.exec(line);
    if (at) {
      const [, file, lineNo, message] = at as unknown as [string, string, string, string];
      const location = { file, line: Number(lineNo), column: 1 };
      if (/^Unknown (key|section|lvalue)/i.test(message)) {
        diagnostics.push(
          errorDiag(UnitCheckCode.UnknownKey, message, {
            location,
            detail:
              'systemd ignores it, so the setting has no effect. Fix the spelling, or drop it if this systemd version does not support it.',
          }),
        );
      } else if (/ignoring|invalid|failed to parse|neither a valid|not valid|unbalanced/i.test(message)) {
        diagnostics.push(
          errorDiag(UnitCheckCode.InvalidValue, message, {
            location,
            detail: 'systemd ignores the setting (or refuses the unit), so it has no effect. Fix the value.',
          }),
        );
      } else {
        diagnostics.push(warningDiag(UnitCheckCode.Advisory, message, { location }));
      }
      continue;
    }

    // <unit>: <message> — a problem of a loaded unit.
    const unitLine = /^([^\s:]+\.(?:[a-z]+)): (.*)$/.exec(line);
    if (unitLine) {
      const [, unit, message] = unitLine as unknown as [string, string, string];
      const exe = /^Command (\S+) is not executable: (.*)$/.exec(message);
      const dep = /^Failed to create \S+: Unit (\S+) not found\.?$/.exec(message);
      if (exe) {
        diagnostics.push(
          warningDiag(
            UnitCheckCode.MissingExecutable,
            `${unit}: ${exe[1]} is not executable on this host (${exe[2]})`,
            {
              detail:
                'The unit cannot start here until the program exists. Expected while planning, when the release that provides it is not installed yet.',
            },
          ),
        );
      } else if (dep) {
        diagnostics.push(
          warningDiag(
            UnitCheckCode.MissingDependency,
            `${unit}: its dependency ${dep[1]} does not exist on this host`,
            {
              detail: `Starting ${unit} fails until ${dep[1]} exists. Add it to the set, install it, or use Wants= for an optional dependency.`,
            },
          ),
        );
      } else if (/^Unit configuration has fatal error/.test(message)) {
        notLoadable.add(unit);
      } else {
        unrecognised.push(line);
      }
      continue;
    }

    const bad = /^Unit (\S+) has a bad unit file setting\.?$/.exec(line);
    if (bad) {
      notLoadable.add(bad[1]!);
      continue;
    }
    const notFound = /^Unit (\S+) not found\.?$/.exec(line);
    if (notFound) {
      diagnostics.push(
        errorDiag(UnitCheckCode.NotFound, `${notFound[1]} was not found`, {
          detail: 'A drop-in needs its unit (or template) in the same set, or installed on the host.',
        }),
      );
      continue;
    }
    if (/^Configuration file \S+ is marked/.test(line)) {
      diagnostics.push(warningDiag(UnitCheckCode.Advisory, line));
      continue;
    }
    unrecognised.push(line);
  }

  for (const unit of [...notLoadable].sort()) {
    diagnostics.push(
      errorDiag(UnitCheckCode.NotLoadable, `systemd will not start ${unit}: its configuration has a fatal error`, {
        detail: 'Fix the errors reported for its files above.',
      }),
    );
  }
  const hasError = diagnostics.some((d) => d.severity === 'error');
  if (unrecognised.length > 0) {
    const summary = `systemd-analyze verify: ${unrecognised[0]}`;
    const detail = unrecognised.length > 1 ? unrecognised.join('\n') : undefined;
    const extra = detail === undefined ? {} : { detail };
    diagnostics.push(
      exitCode !== 0 && !hasError
        ? errorDiag(UnitCheckCode.Verify, summary, extra)
        : warningDiag(UnitCheckCode.Verify, summary, extra),
    );
  } else if (
    exitCode !== 0 &&
    !hasError &&
    !diagnostics.some((d) => d.code === UnitCheckCode.MissingExecutable || d.code === UnitCheckCode.MissingDependency)
  ) {
    diagnostics.push(
      errorDiag(UnitCheckCode.Verify, `systemd-analyze verify failed with exit code ${exitCode} and no message`),
    );
  }
  return diagnostics;
}

/** The unit a file name belongs to, or undefined when it is not a unit or drop-in name. */
function classifyName(name: string): { unit: string } | undefined {
  const parts = name.split('/');
  if (parts.length === 1 && UNIT_NAME.test(name)) return { unit: name };
  if (parts.length === 2) {
    const [dirName, file] = parts as [string, string];
    if (!dirName.endsWith('.d') || !DROP_IN.test(file)) return undefined;
    const unit = dirName.slice(0, -2);
    if (UNIT_NAME.test(unit)) return { unit };
  }
  return undefined;
}

function analyzerMissing(): Diagnostic {
  return warningDiag(
    UnitCheckCode.AnalyzerUnavailable,
    'The unit files were not checked: systemd-analyze is not installed',
    {
      detail: 'Install systemd (apt-get install systemd) where plans are made to check units before they reach a host.',
    },
  );
}

/** Runs systemd-analyze; `missing` when the binary is not installed. Output is stdout and stderr interleaved. */
async function analyze(
  args: readonly string[],
  opts: AnalyzeOptions,
): Promise<{ code: number; output: string } | 'missing'> {
  const scope = opts.scope ?? 'system';
  let runtimeDir: string | undefined;
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    LANG: 'C.UTF-8',
    SYSTEMD_COLORS: '0',
    SYSTEMD_PAGER: '',
  };
  if (scope === 'user') {
    // A user-scope manager refuses to initialise without a runtime directory ("Failed to lookup RuntimeDirectory").
    runtimeDir = await mkdtemp(path.join(os.tmpdir(), `agentvm-analyze-runtime-${process.pid}-`));
    env.XDG_RUNTIME_DIR = runtimeDir;
  }
  try {
    return await new Promise((resolve, reject) => {
      const child = spawn('systemd-analyze', scope === 'user' ? ['--user', ...args] : [...args], {
        env,
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let output = '';
      child.stdout.setEncoding('utf8').on('data', (d: string) => {
        output += d;
      });
      child.stderr.setEncoding('utf8').on('data', (d: string) => {
        output += d;
      });
      const timeoutMs = opts.timeoutMs ?? 30_000;
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        reject(new Error(`systemd-analyze ${args[0] ?? ''} did not finish within ${timeoutMs} ms`));
      }, timeoutMs);
      child.once('error', (err: NodeJS.ErrnoException) => {
        clearTimeout(timer);
        if (err.code === 'ENOENT') resolve('missing');
        else reject(err);
      });
      child.once('close', (code) => {
        clearTimeout(timer);
        resolve({ code: code ?? 1, output });
      });
    });
  } finally {
    if (runtimeDir) await rm(runtimeDir, { recursive: true, force: true });
  }
}
