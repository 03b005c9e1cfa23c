// Exactly one runtime source per profile: the profile runs its workload's release and nothing else. Names are
// unique within a workload; the entrypoint is a program on PATH (a bare name) or a path inside the release (one
// with a `/`), never an absolute path elsewhere, never `..`, never behind a systemd ExecStart prefix (`+` is root),
// never a host program handed to a launcher (`env /usr/bin/x`); and the env may not set the variables that make
// the loader, a shell or an interpreter load code from somewhere else (PATH, LD_PRELOAD, BASH_ENV, PERL5OPT, …).

import { errorDiag, type Diagnostic } from '../../diagnostics/index.js';
import { at, lineOf, list, record, specOf, text, type WorkloadRule } from '../context.js';
import { quote } from '../../secrets/text-safety.js';

/** Env variables that add a second source of code or libraries to a process. */
export const RUNTIME_SOURCE_ENV: ReadonlySet<string> = new Set([
  'PATH',
  // The dynamic loader.
  'LD_PRELOAD',
  'LD_LIBRARY_PATH',
  'LD_AUDIT',
  'GCONV_PATH',
  // Shells read a start-up file named by these before running anything.
  'BASH_ENV',
  'ENV',
  'ZDOTDIR',
  'SHELLOPTS',
  'BASHOPTS',
  'PS4',
  'PROMPT_COMMAND',
  // Interpreters: module paths, start-up files and option variables that load or run code.
  'PYTHONPATH',
  'PYTHONHOME',
  'PYTHONSTARTUP',
  'PYTHONUSERBASE',
  'PYTHONINSPECT',
  'PYTHONBREAKPOINT',
  'PYTHONWARNINGS',
  'NODE_OPTIONS',
  'NODE_PATH',
  'NODE_REPL_EXTERNAL_MODULE',
  'PERL5OPT',
  'PERL5LIB',
  'PERLLIB',
  'PERL5DB',
  'RUBYOPT',
  'RUBYLIB',
  'GEM_PATH',
  'GEM_HOME',
  'JAVA_TOOL_OPTIONS',
  '_JAVA_OPTIONS',
  'JDK_JAVA_OPTIONS',
  'CLASSPATH',
  'LUA_INIT',
  'LUA_PATH',
  'LUA_CPATH',
  'PHPRC',
  'PHP_INI_SCAN_DIR',
  'DENO_DIR',
  'GIT_EXEC_PATH',
  'GIT_CONFIG_GLOBAL',
  'GIT_SSH_COMMAND',
]);

/** Version-suffixed interpreter variables: `LUA_INIT_5_4`, `LUA_PATH_5_3`. */
const RUNTIME_SOURCE_ENV_PATTERN = /^(?:LUA_(?:INIT|PATH|CPATH)_\d+_\d+|LD_[A-Z_]+)$/;

export function isRuntimeSourceEnv(name: string): boolean {
  return RUNTIME_SOURCE_ENV.has(name) || RUNTIME_SOURCE_ENV_PATTERN.test(name);
}

/**
 * systemd's ExecStart prefixes: `@` (argv[0]), `-` (ignore failure), `:` (no specifier expansion), `+` (full
 * privileges), `!`/`!!` (no user switch or ambient capabilities), `|` (run via the user's shell). Any of them at the
 * start of the program would change how the unit runs it, the privileged ones into root.
 */
const EXEC_PREFIX = /^[-@:+!|]/;

/** Programs that run another program named by their first argument: `[env, /usr/bin/x]` starts /usr/bin/x. */
const LAUNCHERS: ReadonlySet<string> = new Set([
  'env',
  'sh',
  'bash',
  'dash',
  'zsh',
  'ksh',
  'busybox',
  'exec',
  'nohup',
  'setsid',
  'nice',
  'ionice',
  'stdbuf',
  'timeout',
  'xargs',
  'sudo',
  'su',
  'runuser',
  'chroot',
  'unshare',
  'nsenter',
  'python',
  'python3',
  'node',
  'perl',
  'ruby',
  'php',
  'lua',
  'deno',
  'bun',
  'java',
]);

/** A bare program name that is really a file of the release (`agent.pl`): systemd would look it up on PATH. */
const SCRIPT_FILE = /\.(?:pl|pm|py|pyz|sh|bash|js|mjs|cjs|ts|rb|php|lua|jar|bin|exe|AppImage)$/;

/** A `..` segment in an argument, including after `=` (`--config=../x`). */
function climbs(arg: string): boolean {
  if (!arg.includes('..')) return false;
  return arg.split(/[/=]/).some((seg) => seg === '..');
}

export const profileRules: WorkloadRule = (ctx) => {
  const doc = ctx.manifest;
  if (!doc) return [];
  const out: Diagnostic[] = [];
  const seen = new Map<string, number>();
  list(specOf(doc).profiles).forEach((raw, i) => {
    const profile = record(raw);
    if (!profile) return;
    const name = text(profile.name);
    const shown = (): string => quote(name, `#${i + 1}`);
    if (name !== undefined) {
      const first = seen.get(name);
      if (first === undefined) seen.set(name, i);
      else {
        out.push(
          errorDiag('profile.duplicate', `Profile ${shown()} is defined twice in workload \`${ctx.name}\`.`, {
            detail: `The first definition is at ${lineOf(doc, ['spec', 'profiles', first])}. Each profile is its own systemd unit (agent-gateway@<profile>.service); rename one or merge them.`,
            ...at(doc, ['spec', 'profiles', i, 'name']),
            address: ctx.address,
          }),
        );
      }
    }

    const argv = list(profile.entrypoint);
    argv.forEach((argRaw, j) => {
      const arg = text(argRaw);
      if (arg === undefined) return;
      // Located only when reported: finding a position re-parses the document, which a clean one never needs.
      const where = () => ({ ...at(doc, ['spec', 'profiles', i, 'entrypoint', j]), address: ctx.address });
      if (j === 0 && EXEC_PREFIX.test(arg)) {
        out.push(
          errorDiag(
            'profile.exec-prefix',
            `Profile ${shown()}'s program starts with \`${arg[0]}\`, a systemd ExecStart prefix.`,
            {
              detail:
                'systemd reads a leading `+`, `!`, `!!`, `-`, `@`, `:` or `|` as an instruction (`+` runs the program with full privileges, as root). Name the program without it: `python3`, `bin/server`.',
              ...where(),
            },
          ),
        );
        return;
      }
      if (j === 0 && !arg.includes('/') && SCRIPT_FILE.test(arg)) {
        out.push(
          errorDiag(
            'profile.entrypoint-bare-file',
            `Profile ${shown()}'s program ${quote(arg, 'names a script')} has no \`/\`, so it would be looked up on PATH, not in the release.`,
            {
              detail: `A program without \`/\` is a command on the unit's fixed PATH (e.g. \`python3\`); a file of the release is written with a slash: \`./${safeName(arg)}\` or \`bin/${safeName(arg)}\`.`,
              ...where(),
            },
          ),
        );
        return;
      }
      const absolute = j === 0 && arg.startsWith('/');
      const launched = j > 0 && arg.startsWith('/') && launchedProgram(argv) === j;
      if (!absolute && !launched && !climbs(arg)) return;
      out.push(
        errorDiag(
          'profile.runtime-source',
          absolute
            ? `Profile ${shown()} starts a program by absolute path, outside its release.`
            : launched
              ? `Argument ${j + 1} of profile ${shown()}'s entrypoint runs a host program by absolute path, outside the release.`
              : `Argument ${j + 1} of profile ${shown()}'s entrypoint climbs out of the release with \`..\`.`,
          {
            detail:
              absolute || launched
                ? "The profile's one runtime source is its release: start a program on PATH (e.g. `python3`, `node`) or a path relative to the release directory (e.g. `bin/server`), and give it files of the release, not of the host."
                : 'Refer to files inside the release by paths relative to the release directory; code outside it would be a second, unreleased runtime source.',
            ...where(),
          },
        ),
      );
    });

    const env = record(profile.env);
    if (env) {
      for (const key of Object.keys(env)) {
        if (!isRuntimeSourceEnv(key)) continue;
        out.push(
          errorDiag(
            'profile.runtime-source',
            `Profile ${shown()} sets ${key}, which would load code from outside its release.`,
            {
              detail: `Remove ${key} from env. The unit provides a fixed PATH; ship libraries and modules inside the release (e.g. a vendored virtualenv or node_modules) so the release stays the one runtime source.`,
              ...at(doc, ['spec', 'profiles', i, 'env', key], { key: true }),
              address: ctx.address,
            },
          ),
        );
      }
    }
  });
  return out;
};

/**
 * Index of the argument a launcher program runs (`[env, /usr/bin/x]` → 1, `[python3, -u, /srv/x.py]` → 2), or -1
 * when argv[0] is not a launcher. Options are skipped, and so are `NAME=value` assignments for `env`.
 */
function launchedProgram(argv: unknown[]): number {
  const program = text(argv[0]);
  if (program === undefined || !LAUNCHERS.has(program.split('/').pop() ?? '')) return -1;
  for (let j = 1; j < argv.length; j++) {
    const arg = text(argv[j]);
    if (arg === undefined) return -1;
    if (arg.startsWith('-') || (program === 'env' && /^[A-Za-z_][A-Za-z0-9_]*=/.test(arg))) continue;
    return j;
  }
  return -1;
}

function safeName(arg: string): string {
  return /^[A-Za-z0-9._-]{1,64}$/.test(arg) ? arg : '<file>';
}
