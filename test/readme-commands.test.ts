// The README's command reference is generated from the oclif manifest (scripts/readme-commands.js): a flag or summary
// changed in code without regenerating it fails here, so the README never teaches a flag that is gone.
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { expect, it } from 'vitest';
import { assertBuilt, ROOT } from './support/cli.js';

it('README.md commands section matches --help', () => {
  assertBuilt();
  const r = spawnSync(process.execPath, [path.join(ROOT, 'scripts/readme-commands.js'), '--check'], {
    encoding: 'utf8',
  });
  expect(r.status, r.stderr).toBe(0);
});
