// docs/diagnostic-codes.md documents every governance code, and nothing else: a code added to a rule without a
// line in the table (or a documented code no rule emits) fails here.

import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const HERE = fileURLToPath(new URL('.', import.meta.url));
const EMITTED = /(?:errorDiag|warningDiag|report|push)\(\s*'([a-z]+\.[a-z0-9-]+)'/g;
const DOCUMENTED = /^\| `([a-z]+\.[a-z0-9-]+)` \|/gm;

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = join(dir, e.name);
    if (e.isDirectory()) return sources(p);
    return e.name.endsWith('.ts') && !e.name.endsWith('.test.ts') && !e.name.endsWith('.fixture.ts') ? [p] : [];
  });
}

describe('docs/diagnostic-codes.md', () => {
  it('lists exactly the codes governance emits', () => {
    const emitted = new Set<string>();
    for (const file of sources(HERE)) for (const m of readFileSync(file, 'utf8').matchAll(EMITTED)) emitted.add(m[1]!);
    const doc = readFileSync(join(HERE, '../../docs/diagnostic-codes.md'), 'utf8');
    const documented = new Set([...doc.matchAll(DOCUMENTED)].map((m) => m[1]!));
    expect(emitted.size).toBeGreaterThan(25);
    expect([...emitted].sort()).toEqual([...documented].sort());
  });
});
