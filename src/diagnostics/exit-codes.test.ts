// The exit codes a --json result schema promises are the ones the code returns (ADR 0004): every "exit N when …" in
// a result schema's description names a code of ExitCode, and the apply schema's partial code is PartialApply. A
// schema once said 1 for a partial apply while the code returned 3; this test keeps them from drifting again.

import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ExitCode } from './exit-codes.js';

const SCHEMAS = path.resolve(import.meta.dirname, '../../schemas');

function promisedExits(description: string): Array<{ code: number; when: string }> {
  return [...description.matchAll(/(?:exit |, |and )(\d+) when ([^,;).]+)/g)].map((m) => ({
    code: Number(m[1]),
    when: m[2]!.trim(),
  }));
}

describe('exit codes promised by result schemas', () => {
  const results = readdirSync(SCHEMAS).filter((f) => f.endsWith('-result.schema.json'));

  it.each(results)('%s promises only codes that exist', (file) => {
    const { description = '' } = JSON.parse(readFileSync(path.join(SCHEMAS, file), 'utf8')) as { description?: string };
    for (const { code } of promisedExits(description)) expect(Object.values(ExitCode)).toContain(code);
  });

  it('apply: a partial apply exits PartialApply (3), success 0', () => {
    const { description } = JSON.parse(readFileSync(path.join(SCHEMAS, 'apply-result.schema.json'), 'utf8')) as {
      description: string;
    };
    const exits = promisedExits(description);
    expect(exits.find((e) => /partial/.test(e.when))?.code).toBe(ExitCode.PartialApply);
    expect(exits.find((e) => /every change was applied/.test(e.when))?.code).toBe(ExitCode.Ok);
  });
});
