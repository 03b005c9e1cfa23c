// System test of project data grants and agent memory (ADR 0024) from inside a REAL unit of a real systemd user
// manager (test/support/systemd-user.ts). The workload is the attacker: its entrypoint (node) writes where it was
// granted read-write and where it was granted read-only, looks for the sibling project it was not granted and for
// another workload's data, plants symlinks to them in its read-write path, and executes a program it copied there and
// into its memory. Its memory (StateDirectory=) must carry a line written before across a restart, a release change
// and a rollback; removing the workload keeps it (the plan says where) and only `agentvm memory purge` deletes it.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  chmodSync,
  chownSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmdirSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import path from 'node:path';
import type { DesiredResource, LockedResource, PlannedChange } from '../src/model/resources.js';
import { hostPaths } from '../src/model/index.js';
import type { HostContext } from '../src/providers/provider.js';
import { EgressProvider } from '../src/providers/egress/provider.js';
import { SystemdCode, SystemdProvider, systemEndpoint, userEndpoint } from '../src/providers/systemd/index.js';
import { agentvm, assertBuilt } from './support/cli.js';
import { startUserManager, userManagerSupport, type UserManager } from './support/systemd-user.js';

const support = userManagerSupport();
const inCi = process.env.CI === 'true';
if (!support.ok && !inCi) console.warn(`data-memory: skipping: ${support.reason}. ${support.howTo}`);

/** The hostile entrypoint: tries everything once per start, reports to result.json next to its socket, serves /healthz. */
const PROBE = String.raw`
const cp = require('node:child_process');
const fs = require('node:fs');
const http = require('node:http');
const path = require('node:path');
const sock = process.env.AGENT_LISTEN_SOCKET;
const out = path.dirname(sock);
const DATA = '/srv/agentvm/data';
const HOST_DATA = process.argv[2];
const RELEASE = process.argv[3];
const attempt = (fn) => { try { const v = fn(); return { ok: true, value: v === undefined ? null : v }; } catch (e) { return { ok: false, error: e.code || String(e) }; } };
const tryRun = (file) => { const r = cp.spawnSync(file, [], { encoding: 'utf8', timeout: 10000 }); return { ok: r.status === 0 && !r.error, error: r.error ? r.error.code : null }; };
process.on('uncaughtException', (e) => { try { fs.writeFileSync(path.join(out, 'error.txt'), String(e && e.stack || e)); } catch {} setInterval(() => {}, 1000); });
const rw = path.join(DATA, 'projects/research');
const ro = path.join(DATA, 'projects/shared');
const mem = process.env.STATE_DIRECTORY;
const result = {
  writeRw: attempt(() => fs.writeFileSync(path.join(rw, 'deliverable-' + RELEASE + '.txt'), 'done')),
  readRo: attempt(() => fs.readFileSync(path.join(ro, 'brief.txt'), 'utf8')),
  writeRo: attempt(() => fs.writeFileSync(path.join(ro, 'tampered.txt'), 'x')),
  deleteRo: attempt(() => fs.unlinkSync(path.join(ro, 'brief.txt'))),
  listProjects: attempt(() => fs.readdirSync(path.join(DATA, 'projects')).sort()),
  siblingAtMount: attempt(() => fs.readdirSync(path.join(DATA, 'projects/secret'))),
  siblingOnHostPath: attempt(() => fs.readFileSync(path.join(HOST_DATA, 'projects/secret/plans.txt'), 'utf8')),
  otherWorkloadAtMount: attempt(() => fs.readdirSync(path.join(DATA, 'other-team'))),
  otherWorkloadOnHostPath: attempt(() => fs.readdirSync(path.join(HOST_DATA, 'other-team'))),
  hostDataRoot: attempt(() => fs.readdirSync(HOST_DATA)),
  symlinkAbsolute: attempt(() => { try { fs.unlinkSync(path.join(rw, 'abs')); } catch {} fs.symlinkSync(path.join(HOST_DATA, 'projects/secret'), path.join(rw, 'abs')); return fs.readFileSync(path.join(rw, 'abs/plans.txt'), 'utf8'); }),
  symlinkRelative: attempt(() => { try { fs.unlinkSync(path.join(rw, 'rel')); } catch {} fs.symlinkSync('../secret', path.join(rw, 'rel')); return fs.readFileSync(path.join(rw, 'rel/plans.txt'), 'utf8'); }),
  symlinkIntoRo: attempt(() => { try { fs.unlinkSync(path.join(rw, 'ro-link')); } catch {} fs.symlinkSync('../shared', path.join(rw, 'ro-link')); return fs.writeFileSync(path.join(rw, 'ro-link/through-link.txt'), 'x'); }),
  execRw: attempt(() => { fs.copyFileSync('/usr/bin/true', path.join(rw, 'true')); fs.chmodSync(path.join(rw, 'true'), 0o755); return tryRun(path.join(rw, 'true')); }),
  memoryDir: mem || null,
  memoryBefore: attempt(() => fs.readFileSync(path.join(mem, 'memory.txt'), 'utf8')),
  execMemory: attempt(() => { fs.copyFileSync('/usr/bin/true', path.join(mem, 'true')); fs.chmodSync(path.join(mem, 'true'), 0o755); return tryRun(path.join(mem, 'true')); }),
};
fs.appendFileSync(path.join(mem, 'memory.txt'), 'remembered in ' + RELEASE + '\n');
fs.writeFileSync(path.join(out, 'result.json'), JSON.stringify(result));
try { fs.unlinkSync(sock); } catch {}
http.createServer((req, res) => { res.writeHead(200); res.end('{"status":"ok"}'); }).listen(sock);
`;

describe.skipIf(!support.ok && !inCi)('data grants and agent memory, from inside a real unit (ADR 0024)', () => {
  let m: UserManager;
  let root: string;
  let host: HostContext;
  let hostData: string;
  let provider: SystemdProvider;
  let createdCredentialsDir = false;
  let desired: DesiredResource;
  let locked: LockedResource | undefined;
  const UNIT = 'agent-gateway@analyst.service';
  const ADDRESS = 'unit.research.analyst';

  const account = () => ({ user: m.user, uid: m.uid, gid: m.gid, home: m.home, runtimeDir: m.runtimeDir });

  function installRelease(id: string): void {
    const dir = path.join(host.paths.releases, 'research', id);
    mkdirSync(dir, { recursive: true });
    writeFileSync(path.join(dir, 'probe.js'), PROBE);
    for (const d of [host.paths.releases, path.dirname(dir), dir]) chmodSync(d, 0o755);
  }

  function config(releaseId: string, data: unknown[]): Record<string, unknown> {
    return {
      profile: 'analyst',
      entrypoint: ['node', 'probe.js', hostData, releaseId],
      env: {},
      listen: { socket: 'probe.sock' },
      health: { path: '/healthz', timeoutSeconds: 30 },
      reload: false,
      riskTier: 'high',
      egress: [],
      secrets: [],
      canary: null,
      releaseId,
      scope: 'user',
      programs: [],
      data,
      dataRoot: '/srv/agentvm/data',
    };
  }
  const GRANTS = [
    { path: 'projects/research', access: 'read-write' },
    { path: 'projects/shared', access: 'read-only' },
  ];

  beforeAll(async () => {
    m = await startUserManager();
    if (!existsSync('/run/credentials')) {
      mkdirSync('/run/credentials', { mode: 0o755 });
      createdCredentialsDir = true;
    }
    // Not under /tmp: PrivateTmp= would hide the host's data root anyway, and the test must show that the data
    // mounts hide it (a root outside /srv also exercises the second tmpfs).
    root = mkdtempSync('/var/lib/agentvm-data-memory-');
    chmodSync(root, 0o755);
    host = { host: 'test', root, paths: hostPaths(root), repo: root };
    hostData = path.join(root, 'srv/agentvm/data');
    // The project data: the two granted paths, a sibling project and another workload's tree that are not granted.
    for (const d of ['projects/research', 'projects/shared', 'projects/secret', 'other-team'])
      mkdirSync(path.join(hostData, d), { recursive: true });
    writeFileSync(path.join(hostData, 'projects/shared/brief.txt'), 'the brief');
    writeFileSync(path.join(hostData, 'projects/secret/plans.txt'), 'SECRET-PLANS');
    writeFileSync(path.join(hostData, 'other-team/notes.txt'), 'OTHER-TEAM');
    // In user scope the unit runs as the manager's account: it owns the data (ADR 0024: the grant's write permission
    // comes from the file system; the mount decides what is visible and whether writing is possible at all).
    for (const d of [
      'srv',
      'srv/agentvm',
      'srv/agentvm/data',
      'srv/agentvm/data/projects',
      'srv/agentvm/data/projects/research',
      'srv/agentvm/data/projects/shared',
      'srv/agentvm/data/projects/secret',
      'srv/agentvm/data/other-team',
    ]) {
      chownSync(path.join(root, d), m.uid, m.gid);
      chmodSync(path.join(root, d), 0o755);
    }
    for (const f of ['projects/shared/brief.txt', 'projects/secret/plans.txt', 'other-team/notes.txt'])
      chownSync(path.join(hostData, f), m.uid, m.gid);
    provider = new SystemdProvider({
      endpoint: (h, scope) =>
        scope === 'user' ? userEndpoint({ root: h.root, account: account() }) : systemEndpoint(h.root),
    });
    installRelease('r1');
    installRelease('r2');
    desired = {
      address: ADDRESS,
      provider: 'systemd',
      workload: 'research',
      identity: 'research/analyst',
      dependsOn: [],
      config: config('r1', GRANTS),
    };
    const egress = new EgressProvider({ endpoint: (h) => userEndpoint({ root: h.root, account: account() }) });
    const server: DesiredResource = {
      address: 'egress.server',
      provider: 'egress',
      workload: '(host)',
      identity: 'agentvm-egress.service',
      dependsOn: [],
      config: {
        scope: 'user',
        resolvers: [],
        callers: [{ id: ADDRESS, workload: 'research', profile: 'analyst', entries: [], listenPort: null }],
      },
    };
    const started = await egress.apply({
      host,
      change: {
        address: server.address,
        provider: 'egress',
        workload: '(host)',
        action: 'create',
        effect: 'restart',
        reasons: [{ code: 'new', message: 'test' }],
        dependsOn: [],
        desired: server,
        after: { identity: server.identity },
      },
    });
    expect(started.diagnostics).toEqual([]);
  }, 120_000);

  afterAll(async () => {
    await m?.stop();
    if (root) rmSync(root, { recursive: true, force: true });
    if (createdCredentialsDir) {
      try {
        rmdirSync('/run/credentials');
      } catch {
        // another manager still uses it
      }
    }
  });

  async function planNow(d: DesiredResource | null = desired) {
    const read = await provider.read({
      host,
      address: ADDRESS,
      ...(d ? { desired: d } : {}),
      ...(locked ? { locked } : {}),
    });
    return provider.plan({
      address: ADDRESS,
      ...(d ? { desired: d } : {}),
      live: read.live,
      ...(locked ? { locked } : {}),
    });
  }

  async function applyNow(extraReasons: PlannedChange['reasons'] = []) {
    const plan = await planNow();
    const change: PlannedChange = {
      address: ADDRESS,
      provider: 'systemd',
      workload: 'research',
      action: plan.action,
      effect: plan.effect,
      reasons: [...plan.reasons, ...extraReasons],
      dependsOn: [],
      desired,
      after: { identity: desired.identity },
    };
    const res = await provider.apply({ host, change, ...(locked ? { locked } : {}) });
    if (!res.diagnostics.some((d) => d.severity === 'error') && res.locked)
      locked = { ...res.locked, commit: null, appliedAt: new Date().toISOString() };
    return { plan, res };
  }

  const resultFile = (): string => path.join(m.runtimeDir, 'agent-gateway/analyst/result.json');
  const probeError = (): string => {
    const f = path.join(m.runtimeDir, 'agent-gateway/analyst/error.txt');
    return existsSync(f) ? readFileSync(f, 'utf8') : 'no probe error';
  };
  const result = () => JSON.parse(readFileSync(resultFile(), 'utf8'));
  const memoryDir = (): string => path.join(m.home, '.config/agentvm-memory/research/analyst');

  it('writes its read-write grant, cannot write its read-only one, and cannot see, link to or execute anything else', async () => {
    const { plan, res } = await applyNow();
    expect(plan.action).toBe('create');
    expect(
      res.diagnostics.filter((d) => d.severity === 'error'),
      probeError(),
    ).toEqual([]);
    expect(await m.show(UNIT, ['ActiveState'])).toEqual({ ActiveState: 'active' });
    const r = result();
    // The grants, as declared.
    expect(r.writeRw).toEqual({ ok: true, value: null });
    expect(readFileSync(path.join(hostData, 'projects/research/deliverable-r1.txt'), 'utf8')).toBe('done');
    expect(r.readRo).toEqual({ ok: true, value: 'the brief' });
    expect(r.writeRo).toEqual({ ok: false, error: 'EROFS' });
    expect(r.deleteRo).toEqual({ ok: false, error: 'EROFS' });
    expect(existsSync(path.join(hostData, 'projects/shared/brief.txt'))).toBe(true);
    // Nothing else of the data root exists for it: not the sibling project, not another workload's data, not the root.
    expect(r.listProjects).toEqual({ ok: true, value: ['research', 'shared'] });
    expect(r.siblingAtMount).toEqual({ ok: false, error: 'ENOENT' });
    expect(r.siblingOnHostPath).toEqual({ ok: false, error: 'ENOENT' });
    expect(r.otherWorkloadAtMount).toEqual({ ok: false, error: 'ENOENT' });
    expect(r.otherWorkloadOnHostPath).toEqual({ ok: false, error: 'ENOENT' });
    expect(r.hostDataRoot.ok === false || (r.hostDataRoot.value as string[]).length === 0).toBe(true);
    // Symlinks it plants resolve inside its own namespace, where the targets do not exist or stay read-only.
    expect(r.symlinkAbsolute).toEqual({ ok: false, error: 'ENOENT' });
    expect(r.symlinkRelative).toEqual({ ok: false, error: 'ENOENT' });
    expect(r.symlinkIntoRo).toEqual({ ok: false, error: 'EROFS' });
    // What it writes never runs: neither in its data nor in its memory.
    expect(r.execRw).toEqual({ ok: true, value: { ok: false, error: 'EACCES' } });
    expect(r.execMemory).toEqual({ ok: true, value: { ok: false, error: 'EACCES' } });
    // Its memory starts empty, and is where the plan will say.
    expect(r.memoryDir).toBe(memoryDir());
    expect(r.memoryBefore).toEqual({ ok: false, error: 'ENOENT' });
    expect(readFileSync(path.join(memoryDir(), 'memory.txt'), 'utf8')).toBe('remembered in r1\n');
    expect((await planNow()).action).toBe('noop');
  }, 120_000);

  it('memory survives systemctl restart, a new release and a rollback', async () => {
    expect((await m.systemctl(['restart', UNIT])).code).toBe(0);
    await waitForResult((r) => r.memoryBefore.ok && r.memoryBefore.value.split('\n').length === 2);
    expect(result().memoryBefore).toEqual({ ok: true, value: 'remembered in r1\n' });

    // A new release: the unit restarts from another directory, the memory stays.
    desired = { ...desired, config: config('r2', GRANTS) };
    const promoted = await applyNow();
    expect(promoted.plan.action).toBe('update');
    expect(
      promoted.res.diagnostics.filter((d) => d.severity === 'error'),
      probeError(),
    ).toEqual([]);
    expect(result().memoryBefore).toEqual({ ok: true, value: 'remembered in r1\nremembered in r1\n' });
    expect(result().writeRw.ok).toBe(true);

    // Back to the previous release (what `agentvm rollback` applies): the memory written by r2 is still there.
    desired = { ...desired, config: config('r1', GRANTS) };
    const rolledBack = await applyNow([{ code: 'rollback', message: 'test rollback to r1' }]);
    expect(
      rolledBack.res.diagnostics.filter((d) => d.severity === 'error'),
      probeError(),
    ).toEqual([]);
    expect(result().memoryBefore).toEqual({
      ok: true,
      value: 'remembered in r1\nremembered in r1\nremembered in r2\n',
    });
  }, 180_000);

  it('a grant that does not exist on the host is a plan warning naming the unit and the fix, and is not mounted', async () => {
    desired = { ...desired, config: config('r1', [...GRANTS, { path: 'projects/typo', access: 'read-only' }]) };
    const plan = await planNow();
    const d = plan.diagnostics.find((x) => x.code === SystemdCode.dataMissing);
    expect(d).toMatchObject({ severity: 'warning', address: ADDRESS });
    expect(d!.summary).toContain('projects/typo');
    expect(d!.detail).toContain(path.join(hostData, 'projects/typo'));
    const { res } = await applyNow();
    expect(res.diagnostics.map((x) => x.code)).toEqual([SystemdCode.dataMissing]);
    expect(await m.show(UNIT, ['ActiveState'])).toEqual({ ActiveState: 'active' });
    const dropIn = readFileSync(path.join(m.unitDir, `${UNIT}.d/50-agentvm.conf`), 'utf8');
    expect(dropIn).not.toContain('projects/typo');
    expect(result().listProjects).toEqual({ ok: true, value: ['research', 'shared'] });
    // Once the directory exists, the next plan shows the new mount (a change, not a silent one).
    mkdirSync(path.join(hostData, 'projects/typo'));
    chownSync(path.join(hostData, 'projects/typo'), m.uid, m.gid);
    const next = await planNow();
    expect(next.action).toBe('update');
    expect(next.diagnostics.filter((x) => x.code === SystemdCode.dataMissing)).toEqual([]);
    expect(
      (await applyNow()).res.diagnostics.filter((x) => x.severity === 'error'),
      probeError(),
    ).toEqual([]);
    expect(result().listProjects).toEqual({ ok: true, value: ['research', 'shared', 'typo'] });
  }, 120_000);

  it('a grant that another workload swapped for a symlink (to a sibling it may not see) is refused and not mounted', async () => {
    // Someone with write access to projects/ (another workload's read-write grant) replaces the granted directory.
    rmSync(path.join(hostData, 'projects/typo'), { recursive: true });
    symlinkSync(path.join(hostData, 'projects/secret'), path.join(hostData, 'projects/typo'));
    const plan = await planNow();
    const d = plan.diagnostics.find((x) => x.code === SystemdCode.dataSymlink);
    expect(d).toMatchObject({ severity: 'error', address: ADDRESS });
    expect(d!.summary).toContain(path.join(hostData, 'projects/secret'));
    const { res } = await applyNow();
    expect(res.diagnostics.map((x) => x.code)).toContain(SystemdCode.dataSymlink);
    const dropIn = readFileSync(path.join(m.unitDir, `${UNIT}.d/50-agentvm.conf`), 'utf8');
    expect(dropIn).not.toContain('projects/typo');
    expect(await m.show(UNIT, ['ActiveState'])).toEqual({ ActiveState: 'active' });
    expect(result().listProjects).toEqual({ ok: true, value: ['research', 'shared'] });
    expect(result().siblingAtMount).toEqual({ ok: false, error: 'ENOENT' });
    rmSync(path.join(hostData, 'projects/typo'));
    desired = { ...desired, config: config('r2', GRANTS) };
    expect(
      (await applyNow()).res.diagnostics.filter((x) => x.severity === 'error'),
      probeError(),
    ).toEqual([]);
  }, 120_000);

  it('removing the workload keeps its memory and the plan says where; only `memory purge` deletes it (its refusal while the workload is on the host: src/app/memory-purge.test.ts)', async () => {
    assertBuilt();
    const plan = await planNow(null);
    expect(plan.action).toBe('delete');
    const kept = plan.reasons.find((r) => r.message.includes('memory is kept'));
    expect(kept?.message).toContain(memoryDir());
    expect(kept?.message).toContain('agentvm memory purge research');
    const removed = await provider.apply({
      host,
      change: {
        address: ADDRESS,
        provider: 'systemd',
        workload: 'research',
        action: 'delete',
        effect: 'restart',
        reasons: plan.reasons,
        dependsOn: [],
      },
      ...(locked ? { locked } : {}),
    });
    expect(removed.diagnostics.filter((d) => d.severity === 'error')).toEqual([]);
    expect(existsSync(path.join(m.unitDir, `${UNIT}.d`))).toBe(false);
    expect(readFileSync(path.join(memoryDir(), 'memory.txt'), 'utf8')).toContain('remembered in r2');

    const env = { AGENTVM_SYSTEMD_USER: m.user };
    const purged = await agentvm(['memory', 'purge', 'research', '--host', 'test', '--root', root, '--json'], { env });
    expect(purged.code, purged.stderr).toBe(0);
    expect(JSON.parse(purged.stdout)).toEqual({
      formatVersion: 1,
      host: 'test',
      workload: 'research',
      removed: [path.join(m.home, '.config/agentvm-memory/research')],
    });
    expect(existsSync(memoryDir())).toBe(false);
    // The deletion is audited; the project data is untouched.
    expect(readdirSync(path.join(hostData, 'projects/research'))).toContain('deliverable-r2.txt');
    const again = await agentvm(['memory', 'purge', 'research', '--host', 'test', '--root', root], { env });
    expect(again.code).toBe(0);
    expect(again.stdout).toContain('nothing deleted');
  }, 120_000);

  async function waitForResult(done: (r: { memoryBefore: { ok: boolean; value: string } }) => boolean): Promise<void> {
    // Driven by the unit's own report, not by time: the restarted probe rewrites result.json once it ran.
    for (let i = 0; i < 600; i++) {
      try {
        if (done(result())) return;
      } catch {
        // being rewritten
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`the restarted unit did not report: ${probeError()}`);
  }
});
