// Which StateBackend a command uses (ADR 0017). The local files under --root stay the default; PostgreSQL is chosen by
// `--state-backend postgres` (env AGENTVM_STATE_BACKEND) or by the repository's agentvm.yaml
// (`spec.state: {backend: postgres, url: env:AGENTVM_PG_URL}`), and the flag wins over the file.
// Invariants:
// - The connection URL never comes from git: agentvm.yaml may only NAME an environment variable (`env:NAME`); a literal
//   URL there is refused (`config.state-url-literal`), with or without a password in it.
// - A URL is never printed: messages use the backend's `location` (no password).
// - One backend per process and URL: every use case of a command shares its connection pool, and the pool lets the
//   process exit when idle (no close() needed on every path).

import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { AgentvmError, userError } from '../diagnostics/index.js';
import { hostPaths } from '../model/index.js';
import { LocalStateBackend, type StateBackend } from '../state/index.js';
import { PostgresStateBackend } from '../state/postgres/backend.js';

export type StateBackendKind = 'local' | 'postgres';

export interface StateSelection {
  backend: StateBackendKind;
  /** `env:NAME` or a literal URL (flag only); required for postgres. */
  url?: string;
  /** Where the selection came from, for messages. */
  from: string;
}

export const DEFAULT_PG_URL_REF = 'env:AGENTVM_PG_URL';

let selected: StateSelection | undefined;
const pools = new Map<string, PostgresStateBackend>();

/** Set by the command layer before any use case runs (flags, or the repository's agentvm.yaml). */
export function selectStateBackend(selection: StateSelection | undefined): void {
  selected = selection;
}

/** The selection in force: what the command layer set, else the environment, else the local backend. */
export function stateSelection(env: NodeJS.ProcessEnv = process.env): StateSelection {
  if (selected) return selected;
  const kind = env.AGENTVM_STATE_BACKEND;
  if (kind === 'postgres')
    return { backend: 'postgres', url: env.AGENTVM_STATE_URL ?? DEFAULT_PG_URL_REF, from: 'AGENTVM_STATE_BACKEND' };
  if (kind && kind !== 'local')
    throw userError(
      'state.unknown-backend',
      `AGENTVM_STATE_BACKEND is "${kind}": agentvm knows the state backends local and postgres.`,
      'Set it to `local` (the default) or `postgres`, or unset it.',
    );
  return { backend: 'local', from: 'default' };
}

/** The backend of `root` under the selection in force. */
export function openStateBackend(root: string, selection: StateSelection = stateSelection()): StateBackend {
  if (selection.backend === 'local') return new LocalStateBackend(hostPaths(resolve(root)));
  return postgresBackend(selection);
}

export function postgresBackend(selection: StateSelection): PostgresStateBackend {
  const url = resolveUrl(selection.url ?? DEFAULT_PG_URL_REF, selection.from);
  let backend = pools.get(url);
  if (!backend) {
    backend = new PostgresStateBackend(url);
    pools.set(url, backend);
  }
  return backend;
}

/** Closes every pool this process opened (long-running processes: the agent between runs, tests). */
export async function closeStateBackends(): Promise<void> {
  const all = [...pools.values()];
  pools.clear();
  await Promise.all(all.map((b) => b.close()));
}

/** `env:NAME` → the variable's value; a literal URL (flags only) as is. */
export function resolveUrl(ref: string, from: string): string {
  const m = /^env:([A-Za-z_][A-Za-z0-9_]*)$/.exec(ref);
  if (m) {
    const value = process.env[m[1]!];
    if (!value) {
      throw userError(
        'state.url-missing',
        `The PostgreSQL state backend (${from}) reads its URL from $${m[1]}, which is not set.`,
        `Export ${m[1]}=postgresql://user@host/db (a password belongs in ~/.pgpass or PGPASSWORD, not in git).`,
      );
    }
    return value;
  }
  if (/^postgres(ql)?:\/\//.test(ref)) {
    // A password on a command line is visible to every user of the machine (ps, /proc): refuse it, without echoing.
    if (/^postgres(ql)?:\/\/[^/@]*:[^/@]*@/.test(ref)) {
      throw userError(
        'state.url-password',
        `The PostgreSQL state URL given by ${from} contains a password.`,
        'Put the URL in an environment variable (`--state-url env:AGENTVM_PG_URL`) and the password in ~/.pgpass or PGPASSWORD.',
      );
    }
    return ref;
  }
  throw userError(
    'state.url-invalid',
    `The PostgreSQL state URL given by ${from} is neither env:NAME nor a postgresql:// URL.`,
    'Pass `--state-url env:AGENTVM_PG_URL` and export the URL in that variable.',
  );
}

/** Checks the `spec.state` block of agentvm.yaml: the URL must be an environment reference, never a literal. */
export function stateFromRepoConfig(
  state: { backend?: string; url?: string } | undefined,
  file: string,
): StateSelection | undefined {
  if (!state) return undefined;
  if (state.backend !== 'postgres') return { backend: 'local', from: file };
  const url = state.url ?? DEFAULT_PG_URL_REF;
  if (!/^env:[A-Za-z_][A-Za-z0-9_]*$/.test(url)) {
    throw new AgentvmError(
      'config.state-url-literal',
      `${file}: spec.state.url is a literal URL; the state backend's URL must never be in git.`,
      {
        detail:
          'Write `url: env:AGENTVM_PG_URL` and export the URL in that variable on each host and in CI (credentials in ~/.pgpass or PGPASSWORD).',
      },
    );
  }
  return { backend: 'postgres', url, from: file };
}

/**
 * The repository's `spec.state` at `ref` (agentvm.yaml, read straight from git: one small read, not the whole desired
 * state), checked: a literal URL is refused with file:line, and its value is never echoed.
 */
export async function repoStateSelection(repo: string, ref: string): Promise<StateSelection | undefined> {
  let text: string;
  try {
    text =
      ref === 'WORKTREE'
        ? readFileSync(join(repo, 'agentvm.yaml'), 'utf8')
        : await gitShow(repo, `${ref}:./agentvm.yaml`); // ./: relative to --repo, which may be a subdirectory
  } catch {
    return undefined; // no agentvm.yaml (or no repository): the desired-state loader reports what is wrong
  }
  const { parseYamlDocument } = await import('../contracts/yaml-document.js');
  const doc = parseYamlDocument('agentvm.yaml', text);
  const spec = (doc.value as { spec?: { state?: { backend?: unknown; url?: unknown } } } | undefined)?.spec;
  const state = spec?.state;
  if (!state || typeof state !== 'object') return undefined;
  const at = doc.locate(['spec', 'state', 'url']);
  const where = `agentvm.yaml:${at.line ?? 1}`;
  return stateFromRepoConfig(
    {
      ...(typeof state.backend === 'string' ? { backend: state.backend } : {}),
      ...(typeof state.url === 'string' ? { url: state.url } : {}),
    },
    where,
  );
}

/**
 * Used by commands before any use case: flags (and their env variables) win; else the repository's agentvm.yaml;
 * else the local files. A repository's literal URL is refused even when a flag overrides it.
 */
export async function chooseStateBackend(
  flags: { 'state-backend'?: string | undefined; 'state-url'?: string | undefined },
  repo?: { repo: string; ref: string },
): Promise<StateSelection> {
  const fromRepo = repo ? await repoStateSelection(repo.repo, repo.ref) : undefined;
  let selection: StateSelection;
  if (flags['state-backend'] === 'postgres' || flags['state-backend'] === 'local') {
    const url = flags['state-url'] ?? fromRepo?.url;
    selection = { backend: flags['state-backend'], ...(url ? { url } : {}), from: '--state-backend' };
  } else if (fromRepo) {
    selection = flags['state-url'] ? { ...fromRepo, url: flags['state-url'] } : fromRepo;
  } else {
    selection = { backend: 'local', from: 'default' };
  }
  selectStateBackend(selection);
  return selection;
}

function gitShow(repo: string, spec: string): Promise<string> {
  return new Promise((resolvePromise, reject) => {
    execFile(
      'git',
      ['-C', repo, 'show', spec],
      { encoding: 'utf8', maxBuffer: 1024 * 1024, env: { ...process.env, GIT_CONFIG_NOSYSTEM: '1' } },
      (error, stdout) => (error ? reject(error) : resolvePromise(stdout)),
    );
  });
}
