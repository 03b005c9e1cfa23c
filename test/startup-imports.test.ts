// Guards the start-up path (issue 8) without timing anything: which modules the built CLI loads. `--version` must
// load no package at all (not even @oclif/core) and print exactly oclif's own version string; validate and a non-TTY
// plan of the bundled example must not load the terminal UI (ink, react) nor oclif's engine check (semver), and —
// with a warm document cache and no state file — not zod either. Every module the CLI loads is recorded by a
// preloaded module (`--import`): ES modules through a loader hook, CommonJS ones from require's cache at exit.
// Positive controls (zod with the cache off, Sigstore on a first signed plan and on apply) prove the recorder sees
// both kinds.

import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Config } from '@oclif/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { agentvm, assertBuilt, ROOT } from './support/cli.js';
import { fleetCopy, type FleetCopy } from './support/fleet.js';

const HOOKS = `import { appendFileSync } from 'node:fs';
export async function load(url, context, next) {
  appendFileSync(process.env.AGENTVM_TEST_MODULE_LOG, url + '\\n');
  return next(url, context);
}
`;
const PRELOAD = `import { appendFileSync } from 'node:fs';
import { createRequire, register } from 'node:module';
register('./hooks.mjs', import.meta.url);
const cache = createRequire(import.meta.url).cache;
process.on('exit', () => appendFileSync(process.env.AGENTVM_TEST_MODULE_LOG, Object.keys(cache).map((f) => 'cjs:' + f + '\\n').join('')));
`;

let dir: string;
let fleet: FleetCopy;
let runs = 0;

beforeAll(() => {
  assertBuilt();
  dir = mkdtempSync(join(tmpdir(), 'agentvm-startup-'));
  writeFileSync(join(dir, 'hooks.mjs'), HOOKS);
  writeFileSync(join(dir, 'preload.mjs'), PRELOAD);
  fleet = fleetCopy();
});

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
  fleet?.cleanup();
});

/** Runs the built CLI, returning its result and every module it loaded (file URLs and CommonJS paths). */
async function traced(args: string[], env: NodeJS.ProcessEnv = {}) {
  const log = join(dir, `modules-${runs++}.log`);
  writeFileSync(log, '');
  const result = await agentvm(args, {
    env: {
      NODE_OPTIONS: `--import ${pathToFileURL(join(dir, 'preload.mjs')).href}`,
      AGENTVM_TEST_MODULE_LOG: log,
      XDG_CACHE_HOME: join(dir, 'cache'),
      ...env,
    },
  });
  const modules = readFileSync(log, 'utf8').split('\n').filter(Boolean);
  return { ...result, modules, packages: packagesOf(modules) };
}

/** The npm packages among loaded modules, by name (`@scope/name` or `name`). */
function packagesOf(modules: string[]): Set<string> {
  const names = new Set<string>();
  for (const m of modules) {
    const match = /node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(m);
    if (match?.[1]) names.add(match[1]);
  }
  return names;
}

describe('agentvm --version', () => {
  it('prints exactly what oclif prints, loading no package at all', async () => {
    // GIVEN oclif's own answer to --version for this package
    const config = await Config.load(ROOT);
    // WHEN the CLI is asked for its version
    const run = await traced(['--version']);
    // THEN the same line, exit 0, and nothing from node_modules was loaded
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    expect(run.stdout).toBe(`${config.userAgent}\n`);
    expect([...run.packages]).toEqual([]);
    expect(run.modules.some((m) => m.endsWith('/bin/run.js'))).toBe(true);
  });

  it('treats the other version spellings as oclif does, leaving them to oclif', async () => {
    const config = await Config.load(ROOT);
    // oclif looks at the first argument only: whatever follows `--version` is ignored.
    const trailing = await traced(['--version', 'plan']);
    expect(trailing.code).toBe(0);
    expect(trailing.stdout).toBe(`${config.userAgent}\n`);
    // `-v` is a version flag only if package.json lists it in oclif.additionalVersionFlags; either way oclif answers.
    const short = await traced(['-v']);
    expect(short.packages.has('@oclif/core')).toBe(true);
    if ((config.pjson.oclif.additionalVersionFlags ?? []).includes('-v'))
      expect(short.stdout).toBe(`${config.userAgent}\n`);
    else expect(short.stderr).toContain('cli.unknown-command');
  });
});

describe('validate and a non-TTY plan of examples/fleet', () => {
  const plan = () => ['plan', '--repo', fleet.repo, '--host', 'edge-1', '--root', fleet.root];

  it('a cold validate builds validators with zod (the recorder sees CommonJS modules)', async () => {
    const run = await traced(['validate', '--repo', fleet.repo], { AGENTVM_NO_CACHE: '1' });
    expect(run.code).toBe(0);
    expect(run.packages.has('zod')).toBe(true);
    expect(run.packages.has('ink')).toBe(false);
    expect(run.packages.has('react')).toBe(false);
  });

  it('a warm validate loads neither zod nor the terminal UI nor semver', async () => {
    // GIVEN a document cache filled by a first run
    expect((await traced(['validate', '--repo', fleet.repo])).code).toBe(0);
    // WHEN validate runs again
    const run = await traced(['validate', '--repo', fleet.repo]);
    // THEN every document came from the cache: no validator was built, so zod was never imported
    expect(run.code).toBe(0);
    expect(run.packages.has('@oclif/core')).toBe(true);
    for (const name of ['zod', 'ink', 'react', 'semver', '@sigstore/verify'])
      expect(run.packages, name).not.toContain(name);
  });

  it('a plan verifies the signed releases with Sigstore once, then reuses the verdicts; apply always verifies (ADR 0010); never zod, ink, react or semver', async () => {
    // Positive control: the example's releases are signed, so the first plan imports the verifier.
    const first = await traced(plan());
    expect(first.code).toBe(0);
    expect(first.packages.has('@sigstore/verify')).toBe(true);
    // The same inputs again: the remembered verdicts stand in, and the plan is the same.
    const run = await traced(plan());
    expect(run.code).toBe(0);
    expect(run.stdout).toContain('Plan:');
    expect(run.stdout.replace(/plan [0-9a-f]{12}/g, '')).toBe(first.stdout.replace(/plan [0-9a-f]{12}/g, ''));
    for (const name of ['@sigstore/verify', 'zod', 'ink', 'react', 'semver'])
      expect(run.packages, name).not.toContain(name);
    // Apply never trusts remembered verdicts: it verifies the exact bytes it installs.
    const apply = await traced([
      'apply',
      '--repo',
      fleet.repo,
      '--host',
      'edge-1',
      '--root',
      fleet.root,
      '--auto-approve',
    ]);
    expect(apply.code, apply.stdout + apply.stderr).toBe(0);
    expect(apply.packages.has('@sigstore/verify')).toBe(true);
  });
});
