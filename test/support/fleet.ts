// A runnable copy of the bundled example: examples/fleet and examples/artifacts side by side in a temp dir, the
// fleet committed as a real git repository (deterministic identity), and a scratch host root next to them.

import { execFileSync } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT } from './cli.js';

export interface FleetCopy {
  base: string;
  repo: string;
  artifacts: string;
  root: string;
  git(...args: string[]): string;
  releases: Record<string, { commit?: string; sha256: string; bundle: string }>;
  cleanup(): void;
}

const GIT_ENV = {
  GIT_AUTHOR_NAME: 'agentvm test',
  GIT_AUTHOR_EMAIL: 'test@agentvm.invalid',
  GIT_AUTHOR_DATE: '2025-01-01T00:00:00Z',
  GIT_COMMITTER_NAME: 'agentvm test',
  GIT_COMMITTER_EMAIL: 'test@agentvm.invalid',
  GIT_COMMITTER_DATE: '2025-01-01T00:00:00Z',
  GIT_CONFIG_NOSYSTEM: '1',
  GIT_CONFIG_GLOBAL: '/dev/null',
};

export function fleetCopy(): FleetCopy {
  const base = mkdtempSync(join(tmpdir(), 'agentvm-fleet-'));
  const repo = join(base, 'fleet');
  const artifacts = join(base, 'artifacts');
  cpSync(join(ROOT, 'examples', 'fleet'), repo, { recursive: true });
  cpSync(join(ROOT, 'examples', 'artifacts'), artifacts, { recursive: true });
  const git = (...args: string[]) =>
    execFileSync('git', args, { cwd: repo, env: { ...process.env, ...GIT_ENV }, encoding: 'utf8' });
  git('init', '-q', '-b', 'main');
  git('add', '-A');
  git('commit', '-q', '-m', 'example fleet');
  const manifest = JSON.parse(readFileSync(join(artifacts, 'releases.json'), 'utf8')) as {
    releases: Array<{ id: string; commit?: string; sha256: string; bundle: string }>;
  };
  const releases = Object.fromEntries(manifest.releases.map((r) => [r.id, r]));
  return {
    base,
    repo,
    artifacts,
    root: join(base, 'root'),
    git,
    releases,
    cleanup: () => rmSync(base, { recursive: true, force: true }),
  };
}
