// Issue 18, "Done when": a canary secret planted as a literal in each string field of every document kind never
// appears in any output, file or cache agentvm writes.
//
// 1. The walk: the JSON schemas of Config, Host, WorkloadContract and WorkloadManifest are walked to every string
//    field, every list item and every free-form map (where the canary is planted as a value AND as a key). For each
//    such place, one repository with the canary there is validated in process (the same use case and the same
//    redaction boundary the CLI uses), with the document cache under a temp XDG_CACHE_HOME; the JSON result, the
//    rendered text and the cache file must not hold the canary.
// 2. The CLI: for a set of places reaching every output path (env value, description, label key, apiVersion, a
//    tag, a comment), the real CLI runs validate (text, --json), plan (text, --json, --format markdown, --out) and
//    apply against a temp host root and a temp HOME/XDG_CACHE_HOME, and scripts/render-pr-comment.js renders the
//    pull-request comment; every stdout/stderr and every file under the root, the cache, the plan file's directory
//    and the comment's directory is grepped for the canary.
// Two canaries: a prefixed token (caught by its shape anywhere) and a 64-hex token, which only the field-aware
// entropy rule flags — outside digest fields — so it tests the by-value net (remembered secrets), not shapes.

import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runValidate } from '../src/app/validate.js';
import { forgetSecrets, redactText, redactValue } from '../src/secrets/redaction.js';
import { renderValidate } from '../src/ui/validate-text.js';
import { agentvm, assertBuilt, ROOT } from './support/cli.js';
import { gitdir, type FileMap } from './support/gitdir.js';

const SHAPED = 'glpat-Cn4ryQ7wX2mLp9Rt8ZkV';
const HEX = '7c3e9a1f5b2d8c4e6a0f3b7d9e1c5a2f8b4d6e0a3c7f1b9d5e2a8c4f6b0d3e7a';
const DIGEST_FIELDS = new Set([
  'sha256',
  'sha512',
  'integrity',
  'commit',
  'digest',
  'fingerprint',
  'checksum',
  'ref',
  'rev',
]);

const FILES: Record<string, { kind: string; schema: string }> = {
  'agentvm.yaml': { kind: 'Config', schema: 'config.schema.json' },
  'hosts/edge.yaml': { kind: 'Host', schema: 'host.schema.json' },
  'workloads/docs-helper/contract.yaml': { kind: 'WorkloadContract', schema: 'workload-contract.schema.json' },
  'workloads/docs-helper/manifest.yaml': { kind: 'WorkloadManifest', schema: 'workload-manifest.schema.json' },
};

const BASE: Record<string, unknown> = {
  'agentvm.yaml': { apiVersion: 'agentvm.dev/v1alpha1', kind: 'Config', metadata: { name: 'fleet' }, spec: {} },
  'hosts/edge.yaml': {
    apiVersion: 'agentvm.dev/v1alpha1',
    kind: 'Host',
    metadata: { name: 'edge' },
    spec: { workloads: ['docs-helper'] },
  },
  'workloads/docs-helper/contract.yaml': {
    apiVersion: 'agentvm.dev/v1alpha1',
    kind: 'WorkloadContract',
    metadata: { name: 'docs-helper' },
    spec: { owner: 'docs-team@example.com', riskTier: 'low', substrate: 'service' },
  },
  'workloads/docs-helper/manifest.yaml': {
    apiVersion: 'agentvm.dev/v1alpha1',
    kind: 'WorkloadManifest',
    metadata: { name: 'docs-helper' },
    spec: {
      archetype: 'git-release',
      source: {
        git: {
          repo: 'https://git.example.com/agents/docs-helper.git',
          commit: '9b2f4c1e7d3a8b6c5e4f3a2b1c0d9e8f7a6b5c4d',
        },
      },
      profiles: [
        {
          name: 'docs',
          entrypoint: ['python3', '-m', 'docs_helper'],
          env: { AGENT_PROFILE: 'docs' },
          listen: { port: 8101 },
        },
      ],
    },
  },
};

type Seg = string | number | { key: true };
type Schema = Record<string, unknown>;

/** Every place a string can stand in documents of `schema`: string fields, list items, map values and map keys. */
function stringPlaces(root: Schema): Seg[][] {
  const out: Seg[][] = [];
  const seen = new Set<string>();
  const walk = (node: Schema | undefined, path: Seg[], depth: number): void => {
    if (!node || depth > 12) return;
    if (typeof node.$ref === 'string') {
      const name = node.$ref.replace('#/$defs/', '');
      const key = `${JSON.stringify(path)}→${name}`;
      if (seen.has(key)) return;
      seen.add(key);
      walk((root.$defs as Record<string, Schema>)[name], path, depth + 1);
      return;
    }
    for (const k of ['oneOf', 'anyOf', 'allOf'] as const)
      for (const s of (node[k] as Schema[] | undefined) ?? []) walk(s, path, depth + 1);
    const types = Array.isArray(node.type) ? node.type : [node.type];
    if (types.includes('string') || node.enum || node.const !== undefined) out.push(path);
    if (node.properties)
      for (const [k, v] of Object.entries(node.properties as Record<string, Schema>)) walk(v, [...path, k], depth + 1);
    if (node.items && typeof node.items === 'object') walk(node.items as Schema, [...path, 0], depth + 1);
    if (node.additionalProperties && typeof node.additionalProperties === 'object') {
      walk(node.additionalProperties as Schema, [...path, 'CANARY_FIELD'], depth + 1);
      out.push([...path, { key: true }]);
    }
  };
  walk(root, [], 0);
  return out;
}

/** `doc` with `value` planted at `path` (intermediate maps and lists created as needed). */
function plant(doc: unknown, path: Seg[], value: string): unknown {
  const copy = structuredClone(doc) as Record<string | number, unknown>;
  let cur: Record<string | number, unknown> = copy;
  for (let i = 0; i < path.length; i++) {
    const seg = path[i]!;
    const last = i === path.length - 1;
    if (typeof seg === 'object') {
      cur[value] = 'x';
      return copy;
    }
    if (last) {
      cur[seg] = value;
      return copy;
    }
    const next = path[i + 1]!;
    const want = typeof next === 'number' ? 'list' : 'map';
    const existing = cur[seg];
    if (want === 'list' && !Array.isArray(existing)) cur[seg] = [{}];
    else if (want === 'map' && (existing === null || typeof existing !== 'object' || Array.isArray(existing)))
      cur[seg] = {};
    if (
      want === 'list' &&
      typeof next === 'number' &&
      i + 2 < path.length &&
      typeof (cur[seg] as unknown[])[next] !== 'object'
    )
      (cur[seg] as unknown[])[next] = {};
    cur = cur[seg] as Record<string | number, unknown>;
  }
  return copy;
}

function render(files: Record<string, unknown>): FileMap {
  const out: FileMap = {};
  for (const [p, v] of Object.entries(files)) out[p] = stringify(v);
  return out;
}

/** Every file under `dir`, recursively, as text (binary content is searched as latin1 text too). */
function filesUnder(dir: string): Array<{ path: string; text: string }> {
  const out: Array<{ path: string; text: string }> = [];
  const walk = (d: string): void => {
    let names: string[];
    try {
      names = readdirSync(d);
    } catch {
      return;
    }
    for (const n of names) {
      const p = join(d, n);
      const st = statSync(p, { throwIfNoEntry: false });
      if (!st) continue;
      if (st.isDirectory()) walk(p);
      else if (st.isFile()) out.push({ path: p, text: readFileSync(p).toString('latin1') });
    }
  };
  walk(dir);
  return out;
}

const places: Array<{ file: string; path: Seg[]; label: string }> = [];
for (const [file, { schema }] of Object.entries(FILES)) {
  const root = JSON.parse(readFileSync(join(ROOT, 'schemas', schema), 'utf8')) as Schema;
  for (const path of stringPlaces(root))
    places.push({
      file,
      path,
      label: `${file} ${path.map((s) => (typeof s === 'object' ? '<key>' : String(s))).join('.')}`,
    });
}

describe('a canary secret planted in every string field never leaves', () => {
  const cache = mkdtempSync(join(tmpdir(), 'agentvm-canary-cache-'));
  const saved = process.env.XDG_CACHE_HOME;
  beforeAll(() => {
    process.env.XDG_CACHE_HOME = cache;
    delete process.env.AGENTVM_NO_CACHE;
  });
  afterAll(() => {
    if (saved === undefined) delete process.env.XDG_CACHE_HOME;
    else process.env.XDG_CACHE_HOME = saved;
    rmSync(cache, { recursive: true, force: true });
  });

  it('walks every document kind (90 places today)', () => {
    expect(new Set(places.map((p) => p.file)).size).toBe(4);
    expect(places.length).toBeGreaterThanOrEqual(80);
  });

  it('validate (JSON result, text, document cache) never holds either canary, for every place', async () => {
    const repo = await gitdir(render(BASE));
    const leaks: string[] = [];
    try {
      for (const place of places) {
        const last = place.path[place.path.length - 1];
        const digest = typeof last === 'string' && DIGEST_FIELDS.has(last);
        for (const canary of digest ? [SHAPED] : [SHAPED, HEX]) {
          forgetSecrets();
          const files = { ...BASE, [place.file]: plant(BASE[place.file], place.path, canary) };
          await repo.commitFiles(render(files), place.label);
          const result = await runValidate({ repo: repo.dir, ref: 'HEAD' });
          const json = JSON.stringify(redactValue(result));
          const text = redactText(renderValidate(result));
          const cached = filesUnder(cache)
            .map((f) => f.text)
            .join('\n');
          if (json.includes(canary)) leaks.push(`${place.label} [${canary === HEX ? 'hex' : 'shaped'}]: --json`);
          if (text.includes(canary)) leaks.push(`${place.label} [${canary === HEX ? 'hex' : 'shaped'}]: text`);
          if (cached.includes(canary))
            leaks.push(`${place.label} [${canary === HEX ? 'hex' : 'shaped'}]: document cache`);
          if (result.valid) leaks.push(`${place.label} [${canary === HEX ? 'hex' : 'shaped'}]: validated clean`);
        }
      }
    } finally {
      await repo.cleanup();
    }
    expect(leaks).toEqual([]);
  }, 600_000);
});

describe('the CLI: validate, plan (--out, --format markdown, --json) and apply never write either canary', () => {
  beforeAll(() => assertBuilt());

  const manifest = BASE['workloads/docs-helper/manifest.yaml'] as Record<string, unknown>;
  const contract = BASE['workloads/docs-helper/contract.yaml'] as Record<string, unknown>;
  const withText = (file: string, edit: (text: string) => string): FileMap => ({
    ...render(BASE),
    [file]: edit(stringify(BASE[file])),
  });
  const CASES: Record<string, (canary: string) => FileMap> = {
    'an env value': (c) =>
      render({
        ...BASE,
        'workloads/docs-helper/manifest.yaml': plant(manifest, ['spec', 'profiles', 0, 'env', 'AGENT_GCP'], c),
      }),
    'a description': (c) =>
      render({
        ...BASE,
        'workloads/docs-helper/contract.yaml': plant(contract, ['metadata', 'description'], `uses ${c}`),
      }),
    'a label key': (c) =>
      render({
        ...BASE,
        'workloads/docs-helper/contract.yaml': plant(contract, ['metadata', 'labels', { key: true }], c),
      }),
    'an enum field': (c) =>
      render({ ...BASE, 'workloads/docs-helper/contract.yaml': plant(contract, ['spec', 'substrate'], c) }),
    'the apiVersion': (c) =>
      render({ ...BASE, 'workloads/docs-helper/manifest.yaml': plant(manifest, ['apiVersion'], c) }),
    'an entrypoint argument': (c) =>
      render({
        ...BASE,
        'workloads/docs-helper/manifest.yaml': plant(manifest, ['spec', 'profiles', 0, 'entrypoint', 2], c),
      }),
    'a YAML comment': (c) => withText('workloads/docs-helper/manifest.yaml', (t) => `# ${c}\n${t}`),
    'a YAML tag': (c) => withText('workloads/docs-helper/contract.yaml', (t) => t.replace('owner: ', `owner: !${c} `)),
  };

  for (const [name, build] of Object.entries(CASES)) {
    for (const [canaryName, canary] of [
      ['shaped', SHAPED],
      ['hex', HEX],
    ] as const) {
      it.concurrent(
        `${name} [${canaryName}]`,
        async () => {
          const repo = await gitdir(build(canary));
          const home = mkdtempSync(join(tmpdir(), 'agentvm-canary-home-'));
          const root = mkdtempSync(join(tmpdir(), 'agentvm-canary-root-'));
          const out = mkdtempSync(join(tmpdir(), 'agentvm-canary-out-'));
          const env = { HOME: home, XDG_CACHE_HOME: join(home, '.cache'), AGENTVM_NO_CACHE: '' };
          try {
            const runs = [
              ['validate', '--repo', repo.dir],
              ['validate', '--repo', repo.dir, '--json'],
              ['plan', '--repo', repo.dir, '--root', root, '--out', join(out, 'edge.plan.json')],
              ['plan', '--repo', repo.dir, '--root', root, '--json'],
              ['plan', '--repo', repo.dir, '--root', root, '--format', 'markdown'],
              ['apply', '--repo', repo.dir, '--root', root, '--auto-approve'],
            ];
            let secretFound = false;
            for (const args of runs) {
              const r = await agentvm(args, { env, timeoutMs: 120_000 });
              expect(r.code, `${args.join(' ')}\n${r.stdout}${r.stderr}`).toBe(1);
              expect(r.stdout + r.stderr, `${args[0]} ${args.slice(3).join(' ')} printed the canary`).not.toContain(
                canary,
              );
              if (args.includes('--json') && args[0] === 'validate')
                secretFound = r.stdout.includes('"policy.secret-literal"');
            }
            // The pull-request comment script: one `plan --json`, rendered to markdown in its own process.
            const pr = mkdtempSync(join(tmpdir(), 'agentvm-canary-pr-'));
            try {
              const comment = spawnSync(
                process.execPath,
                [
                  join(ROOT, 'scripts', 'render-pr-comment.js'),
                  '--repo',
                  repo.dir,
                  '--host',
                  'edge',
                  '--root',
                  root,
                  '--out',
                  join(pr, 'comment.md'),
                  '--plan-json',
                  join(pr, 'plan.json'),
                ],
                { encoding: 'utf8', env: { ...process.env, ...env } },
              );
              expect(comment.status, comment.stderr).toBe(1);
              expect(comment.stdout + comment.stderr, 'render-pr-comment printed the canary').not.toContain(canary);
              for (const f of filesUnder(pr)) expect(f.text, `${f.path} holds the canary`).not.toContain(canary);
            } finally {
              rmSync(pr, { recursive: true, force: true });
            }
            for (const f of [...filesUnder(root), ...filesUnder(home), ...filesUnder(out)])
              expect(f.text, `${f.path} holds the canary`).not.toContain(canary);
            // A 64-hex value in a tag is no value at all (the tag is refused, never echoed): nothing to find there.
            if (name !== 'a YAML tag' || canaryName === 'shaped')
              expect(secretFound, 'validate reports policy.secret-literal').toBe(true);
            if (secretFound)
              expect(
                filesUnder(out).map((f) => f.path),
                'a plan with a secret finding is never saved',
              ).toEqual([]);
          } finally {
            await repo.cleanup();
            for (const d of [home, root, out]) rmSync(d, { recursive: true, force: true });
          }
        },
        600_000,
      );
    }
  }
});
