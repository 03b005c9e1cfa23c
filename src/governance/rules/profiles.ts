// Exactly one runtime source per profile: the profile runs its workload's release and nothing else. Names are
// unique within a workload; the entrypoint is a program on PATH or a path inside the release (never an absolute
// path elsewhere, never `..`); and the env may not set the variables that make a runtime load code from
// somewhere else (PATH, LD_PRELOAD, PYTHONPATH, NODE_OPTIONS, …).

import { errorDiag, type Diagnostic } from '../../diagnostics/index.js';
import { at, lineOf, list, record, specOf, text, type WorkloadRule } from '../context.js';
import { quote } from '../text-safety.js';

/** Env variables that add a second source of code or libraries to a process. */
export const RUNTIME_SOURCE_ENV: ReadonlySet<string> = new Set([
  'PATH',
  'LD_PRELOAD',
  'LD_LIBRARY_PATH',
  'LD_AUDIT',
  'PYTHONPATH',
  'PYTHONHOME',
  'PYTHONSTARTUP',
  'NODE_OPTIONS',
  'NODE_PATH',
]);

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
        out.push(errorDiag('profile.duplicate', `Profile ${shown()} is defined twice in workload \`${ctx.name}\`.`, {
          detail: `The first definition is at ${lineOf(doc, ['spec', 'profiles', first])}. Each profile is its own systemd unit (agent-gateway@<profile>.service); rename one or merge them.`,
          ...at(doc, ['spec', 'profiles', i, 'name']),
          address: ctx.address,
        }));
      }
    }

    list(profile.entrypoint).forEach((argRaw, j) => {
      const arg = text(argRaw);
      if (arg === undefined) return;
      const absolute = j === 0 && arg.startsWith('/');
      if (!absolute && !climbs(arg)) return;
      out.push(errorDiag('profile.runtime-source', absolute
        ? `Profile ${shown()} starts a program by absolute path, outside its release.`
        : `Argument ${j + 1} of profile ${shown()}'s entrypoint climbs out of the release with \`..\`.`, {
        detail: absolute
          ? 'The profile\'s one runtime source is its release: start a program on PATH (e.g. `python3`, `node`) or a path relative to the release directory (e.g. `bin/server`).'
          : 'Refer to files inside the release by paths relative to the release directory; code outside it would be a second, unreleased runtime source.',
        ...at(doc, ['spec', 'profiles', i, 'entrypoint', j]),
        address: ctx.address,
      }));
    });

    const env = record(profile.env);
    if (env) {
      for (const key of Object.keys(env)) {
        if (!RUNTIME_SOURCE_ENV.has(key)) continue;
        out.push(errorDiag('profile.runtime-source', `Profile ${shown()} sets ${key}, which would load code from outside its release.`, {
          detail: `Remove ${key} from env. The unit provides a fixed PATH; ship libraries and modules inside the release (e.g. a vendored virtualenv or node_modules) so the release stays the one runtime source.`,
          ...at(doc, ['spec', 'profiles', i, 'env', key], { key: true }),
          address: ctx.address,
        }));
      }
    }
  });
  return out;
};
