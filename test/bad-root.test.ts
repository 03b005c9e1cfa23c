// A careless --root gets a clear refusal (exit 1, no stack trace), never an internal error or a hang.

import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { agentvm, assertBuilt, hasStackTrace } from './support/cli.js';
import { fleetCopy, type FleetCopy } from './support/fleet.js';

let fleet: FleetCopy;

describe('bad --root', () => {
  beforeAll(() => {
    assertBuilt();
    fleet = fleetCopy();
  });
  afterAll(() => fleet?.cleanup());

  it.each([
    [
      'a regular file',
      () => {
        const file = join(fleet.base, 'not-a-dir');
        writeFileSync(file, 'x');
        return file;
      },
      'root.not-a-directory',
    ],
    ['a pseudo file system', () => '/proc/1', 'root.pseudo-filesystem'],
  ])('%s', async (_what, makeRoot, code) => {
    for (const args of [
      ['plan', '--repo', fleet.repo, '--host', 'edge-1'],
      ['apply', '--repo', fleet.repo, '--host', 'edge-1', '--auto-approve'],
      ['state', 'list'],
    ]) {
      const r = await agentvm([...args, '--root', makeRoot(), '--json'], { timeoutMs: 30_000 });
      expect(r.signal, `${args.join(' ')} hung`).toBeNull();
      expect(r.code).toBe(1);
      expect(hasStackTrace(r.stdout + r.stderr)).toBe(false);
      expect((JSON.parse(r.stdout) as { error: { code: string } }).error.code).toBe(code);
    }
  });
});
