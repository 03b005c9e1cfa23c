// Tests of the per-user caches (document cache, scan memo, validated lockfile texts): a scratch XDG_CACHE_HOME for the
// describe block that calls it, caches enabled (AGENTVM_NO_CACHE unset), both restored and the directory removed after.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll } from 'vitest';

/** Registers the hooks; returns the scratch directory (XDG_CACHE_HOME while the block runs). */
export function scratchCache(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  const saved = { xdg: process.env.XDG_CACHE_HOME, off: process.env.AGENTVM_NO_CACHE };
  beforeAll(() => {
    process.env.XDG_CACHE_HOME = dir;
    delete process.env.AGENTVM_NO_CACHE;
  });
  afterAll(() => {
    if (saved.xdg === undefined) delete process.env.XDG_CACHE_HOME;
    else process.env.XDG_CACHE_HOME = saved.xdg;
    if (saved.off === undefined) delete process.env.AGENTVM_NO_CACHE;
    else process.env.AGENTVM_NO_CACHE = saved.off;
    rmSync(dir, { recursive: true, force: true });
  });
  return dir;
}
