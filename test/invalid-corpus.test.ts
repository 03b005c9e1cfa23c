// The bad-input corpus (fixtures/invalid/): every case is a small desired-state repository that must be refused
// by the real CLI with exit 1, the expected diagnostic code(s), a file:line location, and no stack trace.
//
// Case layout: fixtures/invalid/<case>/case.json + fixtures/invalid/<case>/repo/** (the files to commit).
// case.json: { "description": string, "expect": [codes], "ref"?: string,
//              "symlinks"?: {path: target}, "generate"?: [{path, bytes, fill?}], "binary"?: {path: base64},
//              "gitlinks"?: {path: 40-hex}, "mustNotAppear"?: [strings], "expectLine"?: {code: line} }

import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import Ajv2020 from 'ajv/dist/2020.js';
import { agentvm, assertBuilt, hasStackTrace, ROOT } from './support/cli.js';
import { gitdir, type FileMap } from './support/gitdir.js';

const CASES = join(ROOT, 'fixtures', 'invalid');
/** Codes about the repository or the ref as a whole: they have no file to point at. */
const REPOSITORY_LEVEL = new Set(['repo.ref-not-found', 'repo.bad-ref', 'repo.empty']);

interface CaseSpec {
  description: string;
  expect: string[];
  ref?: string;
  symlinks?: Record<string, string>;
  generate?: Array<{ path: string; bytes: number; fill?: string }>;
  binary?: Record<string, string>;
  gitlinks?: Record<string, string>;
  /** Secret values planted by the case: they must appear nowhere in stdout or stderr (the redaction boundary). */
  mustNotAppear?: string[];
  /** The line a code must be reported at (e.g. an alias at its own line, not 1:1). */
  expectLine?: Record<string, number>;
}

function readTree(dir: string, base = dir, out: FileMap = {}): FileMap {
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) readTree(p, base, out);
    else out[relative(base, p)] = readFileSync(p);
  }
  return out;
}

const cases = readdirSync(CASES)
  .filter((c) => statSync(join(CASES, c)).isDirectory())
  .sort();

function schemaValidator() {
  const ajv = new Ajv2020.default({ allErrors: true, strict: false });
  for (const f of readdirSync(join(ROOT, 'schemas')))
    ajv.addSchema(JSON.parse(readFileSync(join(ROOT, 'schemas', f), 'utf8')), f);
  return ajv;
}

describe('fixtures/invalid: every bad input is refused clearly', () => {
  beforeAll(() => assertBuilt());

  it('has at least 50 cases', () => {
    expect(cases.length).toBeGreaterThanOrEqual(50);
  });

  const ajv = schemaValidator();

  it.concurrent.each(cases)('%s', async (name) => {
    const spec = JSON.parse(readFileSync(join(CASES, name, 'case.json'), 'utf8')) as CaseSpec;
    const files: FileMap = readTree(join(CASES, name, 'repo'));
    for (const [p, target] of Object.entries(spec.symlinks ?? {})) files[p] = { symlink: target };
    for (const g of spec.generate ?? []) files[g.path] = Buffer.alloc(g.bytes, g.fill ?? 'a');
    for (const [p, b64] of Object.entries(spec.binary ?? {})) files[p] = Buffer.from(b64, 'base64');
    const repo = await gitdir(files);
    try {
      for (const [p, sha] of Object.entries(spec.gitlinks ?? {})) {
        await repo.git('update-index', '--add', '--cacheinfo', `160000,${sha},${p}`);
        await repo.git('commit', '-q', '-m', 'add gitlink');
      }
      const args = ['validate', '--repo', repo.dir, '--json', ...(spec.ref ? ['--ref', spec.ref] : [])];
      const r = await agentvm(args);
      expect(hasStackTrace(r.stdout + r.stderr), r.stdout + r.stderr).toBe(false);
      expect(r.code, r.stdout + r.stderr).toBe(1);
      const out = JSON.parse(r.stdout) as {
        valid?: boolean;
        diagnostics?: Array<{ code: string; severity: string; location?: { file: string; line: number } }>;
        error?: { diagnostics: Array<{ code: string; location?: { file: string; line: number } }> };
      };
      const schema = out.error ? 'error.schema.json' : 'validate-result.schema.json';
      expect(ajv.validate(schema, out), JSON.stringify(ajv.errors)).toBe(true);
      for (const secret of spec.mustNotAppear ?? [])
        expect(r.stdout + r.stderr, `${spec.description}: a planted secret was printed`).not.toContain(secret);
      const diags = out.diagnostics ?? out.error?.diagnostics ?? [];
      for (const [code, line] of Object.entries(spec.expectLine ?? {})) {
        expect(
          diags.filter((d) => d.code === code).map((d) => d.location?.line),
          `${code} at line ${line}`,
        ).toContain(line);
      }
      const codes = diags.map((d) => d.code);
      for (const code of spec.expect) expect(codes, `${spec.description}: expected ${code}`).toContain(code);
      // Every error that comes from a file names file:line.
      const expected = diags.filter((d) => spec.expect.includes(d.code));
      for (const d of expected) {
        if (REPOSITORY_LEVEL.has(d.code) || d.code.startsWith('repo.not-')) continue; // about the repository or ref, not a file
        expect(d.location?.file, `${d.code} has no file`).toBeTruthy();
        expect(d.location?.line, `${d.code} has no line`).toBeGreaterThanOrEqual(1);
      }
    } finally {
      await repo.cleanup();
    }
  });
});
