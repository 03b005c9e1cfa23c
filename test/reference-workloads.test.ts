// Integration test of the two reference workloads that prove agentvm is agent-agnostic: archetype A (Python
// orchestrator) and archetype B (Node agent pool). Real child processes, real HTTP over a loopback port and a
// unix socket, real systemd-style credential directories, real `npm pack`. Nothing here imports agentvm.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { parse as parseYaml } from 'yaml';

const ROOT = fileURLToPath(new URL('../reference-workloads/', import.meta.url));
const SCHEMAS = fileURLToPath(new URL('../schemas/', import.meta.url));
const STARTUP_TIMEOUT_MS = 15_000;

type Target = { host: string; port: number } | { socketPath: string };
type Listen = 'port' | 'socket';
interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}
interface Running {
  child: ChildProcess;
  target: Target;
  stderr: () => string;
  exited: Promise<Exit>;
}
interface Reply {
  status: number;
  body: Record<string, unknown>;
  raw: string;
}

interface Workload {
  name: string;
  dir: string;
  command: string;
  args: string[];
  env: Record<string, string>;
  skillPath: string;
  skillRequest: Record<string, unknown>;
  skillReply: Record<string, unknown>;
  /** Well-formed JSON the skill must still refuse with 400. */
  badShapes: string[];
  /** The field of /healthz that names what is running: the release (A) or the package version (B). */
  identity: [string, unknown];
}

const pkg = JSON.parse(readFileSync(join(ROOT, 'agent-pool-node/package.json'), 'utf8')) as Record<string, unknown>;

const WORKLOADS: Workload[] = [
  {
    name: 'orchestrator-py',
    dir: join(ROOT, 'orchestrator-py'),
    command: 'python3',
    args: ['-m', 'orchestrator'],
    // The repository copy must stay clean, as a read-only release would: no __pycache__.
    env: { PYTHONDONTWRITEBYTECODE: '1' },
    skillPath: '/skills/summarize',
    skillRequest: { text: 'Ship the  report today. Then rest!  Maybe.' },
    skillReply: { summary: 'Ship the report today.', words: 7 },
    badShapes: ['{}', '{"text":5}', '{"text":null}'],
    identity: ['release', 'dev'],
  },
  {
    name: 'agent-pool-node',
    dir: join(ROOT, 'agent-pool-node'),
    command: process.execPath,
    args: ['server.js'],
    env: {},
    skillPath: '/tasks',
    skillRequest: { kind: 'wordcount', text: ' one two\tthree\nfour ' },
    skillReply: { result: 4 },
    badShapes: [
      '{"text":"x"}',
      '{"kind":"wordcount","text":5}',
      '{"kind":"constructor","text":"x"}',
      '{"kind":"rm","text":"x"}',
    ],
    identity: ['version', pkg.version],
  },
];

const scratch = mkdtempSync(join(tmpdir(), 'agentvm-refwl-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));
let scratchCount = 0;
const freshDir = (label: string): string => {
  const dir = join(scratch, `${label}-${scratchCount++}`);
  mkdirSync(dir, { recursive: true });
  return dir;
};

// The child gets the test's environment minus anything a workload reads, so the host cannot leak in.
function childEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (!key.startsWith('AGENT_') && key !== 'CREDENTIALS_DIRECTORY' && key !== 'NODE_OPTIONS') env[key] = value;
  }
  return { ...env, ...extra };
}

function spawnWorkload(
  w: Workload,
  env: Record<string, string>,
  cwd = w.dir,
): { child: ChildProcess; stderr: () => string; exited: Promise<Exit> } {
  const child = spawn(w.command, w.args, {
    cwd,
    env: childEnv({ ...w.env, ...env }),
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
    stderr += chunk;
  });
  const exited = new Promise<Exit>((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  running.add(child);
  void exited.then(() => running.delete(child));
  return { child, stderr: () => stderr, exited };
}

const running = new Set<ChildProcess>();
afterAll(() => {
  for (const child of running) child.kill('SIGKILL');
});

/** Starts a workload listening on a free loopback port or on a unix socket in a fresh temp dir. */
async function start(
  w: Workload,
  listen: Listen,
  env: Record<string, string> = {},
  cwd?: string,
  socketPath?: string,
): Promise<Running> {
  const listenEnv: Record<string, string> =
    listen === 'port'
      ? { AGENT_LISTEN_PORT: '0' }
      : { AGENT_LISTEN_SOCKET: socketPath ?? join(freshDir('sock'), 'agent.sock') };
  const proc = spawnWorkload(w, { AGENT_PROFILE: 'core', ...listenEnv, ...env }, cwd);
  const deadline = Date.now() + STARTUP_TIMEOUT_MS;
  for (;;) {
    const line = /listening on (\S+)/.exec(proc.stderr());
    if (line?.[1]) {
      const address = line[1];
      const port = /^http:\/\/127\.0\.0\.1:(\d+)$/.exec(address);
      const target: Target = port?.[1]
        ? { host: '127.0.0.1', port: Number(port[1]) }
        : { socketPath: address.replace(/^unix:/, '') };
      return { ...proc, target };
    }
    if (proc.child.exitCode !== null || Date.now() > deadline) {
      proc.child.kill('SIGKILL');
      throw new Error(`${w.name} did not start (exit ${proc.child.exitCode}):\n${proc.stderr()}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

function call(target: Target, method: string, path: string, body?: string | Buffer): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      {
        ...target,
        method,
        path,
        agent: false,
        headers: body === undefined ? {} : { 'content-type': 'application/json' },
      },
      (res) => {
        let raw = '';
        res
          .setEncoding('utf8')
          .on('data', (chunk: string) => {
            raw += chunk;
          })
          .on('end', () => {
            let parsed: Record<string, unknown> = {};
            try {
              parsed = JSON.parse(raw) as Record<string, unknown>;
            } catch {
              /* asserted by callers through `body` */
            }
            resolve({ status: res.statusCode ?? 0, body: parsed, raw });
          });
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

async function until(condition: () => boolean, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition() && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));
}

async function stop(r: Running): Promise<Exit> {
  r.child.kill('SIGTERM');
  return r.exited;
}

const python = spawnSync('python3', ['-c', 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)']);
const hasPython = python.status === 0;
if (!hasPython && process.env.CI !== 'true') {
  console.warn('reference-workloads: skipping orchestrator-py: python3 >= 3.11 not found (apt-get install python3)');
}

describe('reference workloads: python3 is present in CI', () => {
  it.runIf(process.env.CI === 'true')('python3 >= 3.11 runs', () => {
    expect(hasPython, 'python3 >= 3.11 is required in CI for the archetype A reference workload').toBe(true);
  });
});

describe.each(WORKLOADS)('reference workload $name', (w) => {
  const skip = w.command === 'python3' && !hasPython && process.env.CI !== 'true';

  describe.skipIf(skip).each<Listen>(['port', 'socket'])('listening on a %s', (listen) => {
    let r: Running;
    beforeAll(async () => {
      r = await start(w, listen);
    });

    it('GET /healthz answers 200 with its profile and what is running', async () => {
      const reply = await call(r.target, 'GET', '/healthz');
      expect(reply.status).toBe(200);
      expect(reply.body).toMatchObject({ status: 'ok', profile: 'core', [w.identity[0]]: w.identity[1] });
    });

    it('runs its skill on a real request', async () => {
      const reply = await call(r.target, 'POST', w.skillPath, JSON.stringify(w.skillRequest));
      expect(reply.status).toBe(200);
      expect(reply.body).toMatchObject(w.skillReply);
    });

    it('answers 404 JSON for unknown paths and 400 for bad JSON or a bad shape, and keeps serving', async () => {
      const missing = await call(r.target, 'GET', '/nope');
      expect(missing.status).toBe(404);
      expect(missing.body).toMatchObject({ error: 'not found' });
      for (const bad of ['{"text":', '', 'null', '[1,2]', '"text"', Buffer.from([0xff, 0xfe, 0x7b]), ...w.badShapes]) {
        const reply = await call(r.target, 'POST', w.skillPath, bad);
        expect(reply.status, `body ${String(bad)}`).toBe(400);
        expect(reply.body.error).toEqual(expect.any(String));
      }
      expect((await call(r.target, 'GET', '/healthz')).status).toBe(200);
    });

    it('refuses a body over 1 MiB with 413', async () => {
      const reply = await call(
        r.target,
        'POST',
        w.skillPath,
        JSON.stringify({ kind: 'wordcount', text: 'x '.repeat(600_000) }),
      );
      expect(reply.status).toBe(413);
    });

    it('logs one stderr line per request, then exits 0 on SIGTERM', async () => {
      const before = r
        .stderr()
        .split('\n')
        .filter((l) => l.includes('/healthz')).length;
      await call(r.target, 'GET', '/healthz');
      await call(r.target, 'GET', '/healthz');
      // The line may reach our pipe a moment after the response does.
      const logged = () =>
        r
          .stderr()
          .split('\n')
          .filter((l) => l.includes('/healthz')).length;
      await until(() => logged() >= before + 2);
      await new Promise((resolve) => setTimeout(resolve, 50));
      expect(logged()).toBe(before + 2);
      expect(await stop(r)).toEqual({ code: 0, signal: null });
      if ('socketPath' in r.target) expect(existsSync(r.target.socketPath)).toBe(false);
    });
  });

  describe.skipIf(skip)('behaviour agentvm relies on', () => {
    it('reports present and missing credentials by name only, read only from $CREDENTIALS_DIRECTORY', async () => {
      const creds = freshDir('creds');
      const secretValue = 'top-secret-value-4711';
      writeFileSync(join(creds, 'chat-token'), secretValue);
      writeFileSync(join(scratch, 'escape'), secretValue); // reachable only through "../escape"
      const r = await start(w, 'port', {
        CREDENTIALS_DIRECTORY: creds,
        AGENT_REQUIRED_CREDENTIALS: 'chat-token, llm-api-key,../escape',
        'llm-api-key': secretValue, // an environment variable is not a credential
      });
      const reply = await call(r.target, 'GET', '/healthz');
      expect(reply.status).toBe(503);
      expect(reply.body).toMatchObject({
        status: 'failing',
        credentials: { present: ['chat-token'], missing: ['llm-api-key', '../escape'] },
      });
      expect(reply.raw).not.toContain(secretValue);
      expect(r.stderr()).not.toContain(secretValue);
      expect(await stop(r)).toEqual({ code: 0, signal: null });

      writeFileSync(join(creds, 'llm-api-key'), secretValue);
      const complete = await start(w, 'socket', {
        CREDENTIALS_DIRECTORY: creds,
        AGENT_REQUIRED_CREDENTIALS: 'chat-token,llm-api-key',
      });
      const ok = await call(complete.target, 'GET', '/healthz');
      expect(ok.status).toBe(200);
      expect(ok.body).toMatchObject({
        status: 'ok',
        credentials: { present: ['chat-token', 'llm-api-key'], missing: [] },
      });
      expect(await stop(complete)).toEqual({ code: 0, signal: null });
    });

    it('answers 503 on /healthz when AGENT_FAIL_HEALTH=1, while its skill still works', async () => {
      const r = await start(w, 'socket', { AGENT_FAIL_HEALTH: '1' });
      const health = await call(r.target, 'GET', '/healthz');
      expect(health.status).toBe(503);
      expect(health.body).toMatchObject({ status: 'failing', profile: 'core' });
      expect((await call(r.target, 'POST', w.skillPath, JSON.stringify(w.skillRequest))).status).toBe(200);
      expect(await stop(r)).toEqual({ code: 0, signal: null });
    });

    it('replaces a stale socket left by a killed predecessor', async () => {
      const socketPath = join(freshDir('stale'), 'agent.sock');
      const first = await start(w, 'socket', {}, undefined, socketPath);
      first.child.kill('SIGKILL');
      await first.exited;
      expect(existsSync(socketPath)).toBe(true);
      const second = await start(w, 'socket', {}, undefined, socketPath);
      expect((await call(second.target, 'GET', '/healthz')).status).toBe(200);
      expect(await stop(second)).toEqual({ code: 0, signal: null });
    });

    it('refuses to start without exactly one listen variable, or with a bad port', async () => {
      const refused: Record<string, string>[] = [
        {},
        { AGENT_LISTEN_PORT: '0', AGENT_LISTEN_SOCKET: join(scratch, 'x.sock') },
        { AGENT_LISTEN_PORT: 'http' },
      ];
      for (const env of refused) {
        const proc = spawnWorkload(w, env);
        const exit = await proc.exited;
        expect(exit.code, JSON.stringify(env)).toBe(1);
        expect(proc.stderr()).toMatch(/AGENT_LISTEN_(SOCKET|PORT)/);
      }
    });
  });
});

describe.skipIf(!hasPython && process.env.CI !== 'true')('orchestrator-py release naming', () => {
  const [orchestrator] = WORKLOADS;

  it('names its release from a RELEASE file next to the package, else AGENT_RELEASE, else "dev"', async () => {
    // A release directory as `git archive` would lay it out, plus the RELEASE file naming the commit.
    const release = freshDir('release');
    cpSync(join(ROOT, 'orchestrator-py/orchestrator'), join(release, 'orchestrator'), { recursive: true });
    const fromEnv = await start(orchestrator!, 'port', { AGENT_RELEASE: 'v7' }, release);
    expect((await call(fromEnv.target, 'GET', '/healthz')).body.release).toBe('v7');
    await stop(fromEnv);

    const commit = 'a'.repeat(40);
    writeFileSync(join(release, 'RELEASE'), `${commit}\n`);
    const fromFile = await start(orchestrator!, 'port', { AGENT_RELEASE: 'v7' }, release);
    expect((await call(fromFile.target, 'GET', '/healthz')).body.release).toBe(commit);
    expect(await stop(fromFile)).toEqual({ code: 0, signal: null });
    expect(existsSync(join(release, 'orchestrator', '__pycache__'))).toBe(false);
  });
});

describe('agent-pool-node as a package', () => {
  const pool = WORKLOADS[1]!;

  it('spreads concurrent tasks over AGENT_POOL_SIZE workers and reports the pool size', async () => {
    const r = await start(pool, 'port', { AGENT_POOL_SIZE: '3' });
    expect((await call(r.target, 'GET', '/healthz')).body).toMatchObject({ workers: 3, version: '1.0.0' });
    const replies = await Promise.all(
      Array.from({ length: 30 }, (_, i) =>
        call(r.target, 'POST', '/tasks', JSON.stringify({ kind: 'wordcount', text: 'w '.repeat(i) })),
      ),
    );
    replies.forEach((reply, i) => {
      expect(reply.status).toBe(200);
      expect(reply.body.result).toBe(i);
      expect([1, 2, 3]).toContain(reply.body.worker);
    });
    expect(await stop(r)).toEqual({ code: 0, signal: null });
  });

  it('declares an exact version, an ESM entry point and no dependencies', () => {
    expect(pkg).toMatchObject({
      name: 'agent-pool',
      version: '1.0.0',
      type: 'module',
      main: 'server.js',
      bin: { 'agent-pool': 'server.js' },
    });
    for (const field of ['dependencies', 'optionalDependencies', 'peerDependencies', 'bundleDependencies'])
      expect(pkg).not.toHaveProperty(field);
  });

  it('packs with pack.sh into a tarball whose printed sha512 integrity matches, and runs from it', async () => {
    const out = freshDir('pack');
    const packed = spawnSync(join(pool.dir, 'pack.sh'), [out], { encoding: 'utf8', env: childEnv({}) });
    expect(packed.status, packed.stderr).toBe(0);
    const printed = Object.fromEntries(
      packed.stdout
        .trim()
        .split('\n')
        .map((line) => line.split(': ') as [string, string]),
    );
    expect(printed.tarball).toBe(join(out, 'agent-pool-1.0.0.tgz'));
    expect(printed.version).toBe('1.0.0');
    const digest = createHash('sha512').update(readFileSync(printed.tarball!)).digest('base64');
    expect(printed.integrity).toBe(`sha512-${digest}`);
    expect(printed.integrity).toMatch(/^sha512-[A-Za-z0-9+/]{86}==$/);

    const listing = spawnSync('tar', ['-tzf', printed.tarball!], { encoding: 'utf8' });
    expect(listing.stdout.trim().split('\n').sort()).toEqual([
      'package/README.md',
      'package/package.json',
      'package/server.js',
    ]);
    expect(existsSync(join(pool.dir, 'agent-pool-1.0.0.tgz'))).toBe(false); // nothing written into the source tree

    // The installed release is the tarball's `package/` directory; it must run on its own.
    const installed = freshDir('installed');
    expect(spawnSync('tar', ['-xzf', printed.tarball!, '-C', installed, '--strip-components=1']).status).toBe(0);
    const r = await start(pool, 'socket', {}, installed);
    expect((await call(r.target, 'GET', '/healthz')).body).toMatchObject({
      status: 'ok',
      version: '1.0.0',
      workers: 2,
    });
    expect(await stop(r)).toEqual({ code: 0, signal: null });
  });
});

describe('agentvm drafts of the reference workloads', () => {
  const ajv = new Ajv2020({ allErrors: true, strict: false });
  const cases = WORKLOADS.flatMap((w) => [
    { workload: w.name, file: 'contract.yaml', schema: 'workload-contract.schema.json' },
    { workload: w.name, file: 'manifest.yaml', schema: 'workload-manifest.schema.json' },
  ]);

  it.each(cases)('$workload/agentvm/$file validates against schemas/$schema', ({ workload, file, schema }) => {
    const validate =
      ajv.getSchema(schema) ??
      ajv.addSchema(JSON.parse(readFileSync(join(SCHEMAS, schema), 'utf8')) as object, schema).getSchema(schema)!;
    const document: unknown = parseYaml(readFileSync(join(ROOT, workload, 'agentvm', file), 'utf8'));
    expect(validate(document), JSON.stringify(validate.errors, null, 2)).toBe(true);
  });

  it('agree with the programs: archetype, profiles on their listen port, credentials the contract declares', () => {
    for (const [w, archetype] of [
      [WORKLOADS[0]!, 'git-release'],
      [WORKLOADS[1]!, 'package-install'],
    ] as const) {
      const contract = parseYaml(readFileSync(join(ROOT, w.name, 'agentvm/contract.yaml'), 'utf8')) as {
        spec: { secrets?: { name: string }[] };
      };
      const manifest = parseYaml(readFileSync(join(ROOT, w.name, 'agentvm/manifest.yaml'), 'utf8')) as {
        spec: {
          archetype: string;
          profiles: { name: string; env: Record<string, string>; listen: { port: number }; health: { path: string } }[];
        };
      };
      expect(manifest.spec.archetype).toBe(archetype);
      const declared = new Set((contract.spec.secrets ?? []).map((s) => s.name));
      for (const profile of manifest.spec.profiles) {
        expect(profile.env.AGENT_PROFILE).toBe(profile.name);
        expect(profile.env.AGENT_LISTEN_PORT).toBe(String(profile.listen.port));
        expect(profile.health.path).toBe('/healthz');
        for (const name of (profile.env.AGENT_REQUIRED_CREDENTIALS ?? '').split(',').filter(Boolean))
          expect(declared).toContain(name);
      }
    }
  });
});
