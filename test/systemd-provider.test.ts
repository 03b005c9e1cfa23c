// System test of the systemd provider against a REAL systemd user manager (test/support/systemd-user.ts): the
// reference workloads installed by the real release providers (archetype A from examples/artifacts/orchestrator.bundle,
// archetype B from the agent-pool tarball), brought up as agent-gateway@<profile> instances, health-checked over
// real HTTP, restarted in isolation, drift repaired, a failing release rolled back, a profile removed. Also the
// offline path (system scope into a host root, `systemctl --root`). Every unit file the provider writes is checked
// with `systemd-analyze verify`.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import {
  chmodSync,
  chownSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmdirSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { get } from 'node:http';
import { createServer } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import type { DesiredResource, LockedResource, PlannedChange } from '../src/model/resources.js';
import type { HostContext } from '../src/providers/provider.js';
import { EgressProvider } from '../src/providers/egress/provider.js';
import { GitReleaseProvider, PackageReleaseProvider } from '../src/providers/release/index.js';
import {
  SystemdCode,
  SystemdProvider,
  systemEndpoint,
  userEndpoint,
  verifyUnits,
} from '../src/providers/systemd/index.js';
import { hostPaths } from '../src/model/index.js';
import { startUserManager, userManagerSupport, type UserManager } from './support/systemd-user.js';

const support = userManagerSupport();
const inCi = process.env.CI === 'true';
if (!support.ok && !inCi) console.warn(`systemd-provider: skipping: ${support.reason}. ${support.howTo}`);

const REPO = path.resolve(import.meta.dirname, '..');
const BUNDLE = path.join(REPO, 'examples/artifacts/orchestrator.bundle');
const TARBALL = path.join(REPO, 'examples/artifacts/agent-pool-1.0.0.tgz');
const V1 = 'fe0645c4528837f2588a33651153f918d89da72d';
const V2 = '7e6cab4322ce8353d0750de9a4b10ceba66bf3ac';
const POOL_INTEGRITY =
  'sha512-ScissILtjOHpRN92+5y6NhmYVLbCwwaGOvKjZvykyhYPuq1+vfR76qiCHFxtsYNtoPEnpuaS/n3332GlFw6yxQ==';

describe('systemd provider: a user manager is available in CI', () => {
  it.runIf(inCi)('the harness can start a user manager on this machine', () => {
    expect(support, support.ok ? '' : `${support.reason}. ${support.howTo}`).toEqual({ ok: true });
  });
});

interface UnitSpec {
  workload: string;
  profile: string;
  entrypoint: string[];
  env: Record<string, string>;
  listen: { port: number } | { socket: string };
  timeoutSeconds?: number;
  riskTier: 'low' | 'moderate' | 'high' | 'critical';
  secrets: Array<{ name: string; ref: string }>;
  egress?: Array<{ host: string; port: number }>;
  releaseId: string;
}

/** A desired `unit.*` resource shaped exactly like src/engine/expand.ts makes it. */
function unit(s: UnitSpec): DesiredResource {
  return {
    address: `unit.${s.workload}.${s.profile}`,
    provider: 'systemd',
    workload: s.workload,
    identity: `${s.workload}/${s.profile}`,
    dependsOn: [`release.${s.workload}`],
    config: {
      profile: s.profile,
      entrypoint: s.entrypoint,
      env: s.env,
      listen: s.listen,
      health: { path: '/healthz', timeoutSeconds: s.timeoutSeconds ?? 20 },
      reload: false,
      riskTier: s.riskTier,
      egress: s.egress ?? [],
      secrets: s.secrets,
      canary: null,
      releaseId: s.releaseId,
      scope: 'user',
    },
  };
}

describe.skipIf(!support.ok && !inCi)('systemd provider against a real user manager', () => {
  let m: UserManager;
  let root: string;
  let host: HostContext;
  let provider: SystemdProvider;
  let createdCredentialsDir = false;
  const lock = new Map<string, LockedResource>();
  const ports: Record<string, number> = {};
  const timings: string[] = [];
  const units: Record<string, DesiredResource> = {};

  beforeAll(async () => {
    m = await startUserManager();
    // systemd 252 user managers mount the credentials dir under /run/credentials inside the unit's namespace and
    // cannot create that directory themselves (PID 1 does on a booted host): without it 226/NAMESPACE.
    if (!existsSync('/run/credentials')) {
      mkdirSync('/run/credentials', { mode: 0o755 });
      createdCredentialsDir = true;
    }
    root = mkdtempSync(path.join(os.tmpdir(), 'agentvm-systemd-provider-'));
    chmodSync(root, 0o755); // the units run as the harness user, who must reach the release dirs
    host = { host: 'test', root, paths: hostPaths(root), repo: REPO };
    provider = new SystemdProvider({
      endpoint: (h, scope) =>
        scope === 'user'
          ? userEndpoint({
              root: h.root,
              account: { user: m.user, uid: m.uid, gid: m.gid, home: m.home, runtimeDir: m.runtimeDir },
            })
          : systemEndpoint(h.root),
    });

    // Releases, installed by the real release providers (archetype A: two commits of the bundle; B: the tarball).
    const git = new GitReleaseProvider();
    for (const commit of [V1, V2]) {
      const desired: DesiredResource = {
        address: 'release.orchestrator',
        provider: 'release.git',
        workload: 'orchestrator',
        identity: commit,
        dependsOn: [],
        config: { repo: BUNDLE, commit },
      };
      const res = await git.apply({ host, change: change(desired, 'create') });
      expect(res.diagnostics.filter((d) => d.severity === 'error')).toEqual([]);
    }
    const pkg = new PackageReleaseProvider();
    const poolRelease: DesiredResource = {
      address: 'release.agent-pool',
      provider: 'release.package',
      workload: 'agent-pool',
      identity: `agent-pool@1.0.0#${POOL_INTEGRITY}`,
      dependsOn: [],
      config: { name: 'agent-pool', version: '1.0.0', integrity: POOL_INTEGRITY, tarball: TARBALL },
    };
    expect(
      (await pkg.apply({ host, change: change(poolRelease, 'create') })).diagnostics.filter(
        (d) => d.severity === 'error',
      ),
    ).toEqual([]);

    // Secrets on the host, readable by the account whose manager loads them; referenced, never in a unit.
    const secrets = path.join(root, 'etc/agentvm/secrets');
    mkdirSync(secrets, { recursive: true });
    for (const [name, value] of [
      ['chat-token', 'chat-secret-1'],
      ['llm-api-key', 'llm-secret-1'],
      ['pool-token', 'pool-secret-1'],
    ] as const) {
      const file = path.join(secrets, name);
      writeFileSync(file, value, { mode: 0o400 });
      chownSync(file, m.uid, m.gid);
    }
    for (const p of ['core', 'research', 'pool', 'sock-check', 'echo']) ports[p] = await freePort();
    const orchestratorSecrets = [
      { name: 'chat-token', ref: `file:${secrets}/chat-token` },
      { name: 'llm-api-key', ref: `file:${secrets}/llm-api-key` },
    ];
    units.core = unit({
      workload: 'orchestrator',
      profile: 'core',
      entrypoint: ['python3', '-m', 'orchestrator'],
      env: {
        AGENT_PROFILE: 'core',
        AGENT_LISTEN_PORT: String(ports.core),
        AGENT_REQUIRED_CREDENTIALS: 'chat-token,llm-api-key',
        PYTHONDONTWRITEBYTECODE: '1',
      },
      listen: { port: ports.core! },
      riskTier: 'high',
      secrets: orchestratorSecrets,
      egress: [{ host: '192.0.2.10', port: 443 }],
      releaseId: V1,
    });
    units.research = unit({
      workload: 'orchestrator',
      profile: 'research',
      entrypoint: ['python3', '-m', 'orchestrator'],
      env: {
        AGENT_PROFILE: 'research',
        AGENT_LISTEN_PORT: String(ports.research),
        AGENT_REQUIRED_CREDENTIALS: 'llm-api-key',
        PYTHONDONTWRITEBYTECODE: '1',
      },
      listen: { port: ports.research! },
      riskTier: 'high',
      secrets: orchestratorSecrets,
      releaseId: V1,
    });
    units.pool = unit({
      workload: 'agent-pool',
      profile: 'pool',
      entrypoint: ['node', 'server.js'],
      env: {
        AGENT_PROFILE: 'pool',
        AGENT_LISTEN_PORT: String(ports.pool),
        AGENT_POOL_SIZE: '2',
        AGENT_REQUIRED_CREDENTIALS: 'pool-token',
      },
      listen: { port: ports.pool! },
      riskTier: 'moderate',
      secrets: [{ name: 'pool-token', ref: `file:${secrets}/pool-token` }],
      releaseId: 'agent-pool@1.0.0',
    });

    // Every unit is confined to its own network namespace (decisions/0016): the host's egress proxy serves each
    // profile's socket and bridges its port inbound, so it runs (as apply would start it, in the same manager) first.
    const egress = new EgressProvider({
      endpoint: (h) =>
        userEndpoint({
          root: h.root,
          account: { user: m.user, uid: m.uid, gid: m.gid, home: m.home, runtimeDir: m.runtimeDir },
        }),
    });
    const callers = [
      ['orchestrator', 'core'],
      ['orchestrator', 'research'],
      ['agent-pool', 'pool'],
      ['echo', 'echo'],
      ['orchestrator', 'sock-check'],
    ].map(([w, p]) => ({
      id: `unit.${w}.${p}`,
      workload: w!,
      profile: p!,
      entries: [],
      listenPort: p === 'sock-check' ? null : ports[p!]!,
    }));
    const egressServer: DesiredResource = {
      address: 'egress.server',
      provider: 'egress',
      workload: '(host)',
      identity: 'agentvm-egress.service',
      dependsOn: [],
      config: { scope: 'user', resolvers: [], callers },
    };
    expect((await egress.apply({ host, change: change(egressServer, 'create') })).diagnostics).toEqual([]);
  }, 120_000);

  afterAll(async () => {
    if (timings.length) console.info(`systemd-provider apply timings:\n${timings.join('\n')}`);
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

  function change(
    desired: DesiredResource | undefined,
    action: PlannedChange['action'],
    address = desired?.address ?? '',
  ): PlannedChange {
    return {
      address,
      provider: desired?.provider ?? 'systemd',
      workload: desired?.workload ?? address.split('.')[1]!,
      action,
      effect: 'restart',
      reasons: [],
      dependsOn: [],
      ...(desired ? { desired, after: { identity: desired.identity } } : {}),
    };
  }

  /** read → plan → apply for one address, keeping the lockfile entry the way src/app/apply.ts does. */
  async function converge(desired: DesiredResource | undefined, address = desired!.address) {
    const locked = lock.get(address);
    const read = await provider.read({ host, address, ...(desired ? { desired } : {}), ...(locked ? { locked } : {}) });
    const plan = provider.plan({
      address,
      ...(desired ? { desired } : {}),
      live: read.live,
      ...(locked ? { locked } : {}),
    });
    if (plan.action === 'noop') return { read, plan, res: undefined };
    const c = { ...change(desired, plan.action, address), effect: plan.effect, reasons: plan.reasons };
    const messages: string[] = [];
    const t0 = performance.now();
    const res = await provider.apply({
      host,
      change: c,
      ...(locked ? { locked } : {}),
      progress: (msg) => messages.push(msg),
    });
    timings.push(`${address} ${plan.action}/${plan.effect}: ${(performance.now() - t0).toFixed(0)} ms`);
    const ok = !res.diagnostics.some((d) => d.severity === 'error');
    if (ok && plan.action === 'delete') lock.delete(address);
    else if (ok && res.locked) lock.set(address, { ...res.locked, commit: null, appliedAt: new Date().toISOString() });
    return { read, plan, res, messages };
  }

  async function planOf(desired: DesiredResource) {
    const locked = lock.get(desired.address);
    const read = await provider.read({ host, address: desired.address, desired, ...(locked ? { locked } : {}) });
    return provider.plan({ address: desired.address, desired, live: read.live, ...(locked ? { locked } : {}) });
  }

  /** MainPID once the process has exec'd (Type=simple: systemctl returns after fork, the child is `(prog)` until exec). */
  async function execdPid(unitName: string): Promise<number> {
    for (let i = 0; i < 500; i++) {
      const pid = await m.mainPid(unitName);
      const cmdline = pid > 0 ? readFileSync(`/proc/${pid}/cmdline`, 'utf8') : '';
      if (cmdline !== '' && !cmdline.startsWith('(')) return pid;
      await new Promise((r) => setTimeout(r, 10));
    }
    throw new Error(`${unitName} has no exec'd main process`);
  }

  const pids = async () => ({
    core: await m.mainPid('agent-gateway@core.service'),
    research: await m.mainPid('agent-gateway@research.service'),
    pool: await m.mainPid('agent-gateway@pool.service'),
  });

  async function verifyWritten(): Promise<void> {
    const files = [
      { name: 'agent-gateway@.service', text: readFileSync(path.join(m.unitDir, 'agent-gateway@.service'), 'utf8') },
    ];
    for (const e of readdirSync(m.unitDir).filter((d) => /^agent-gateway@.+\.service\.d$/.test(d))) {
      for (const f of readdirSync(path.join(m.unitDir, e)))
        files.push({ name: `${e}/${f}`, text: readFileSync(path.join(m.unitDir, e, f), 'utf8') });
    }
    expect(await verifyUnits(files, { scope: 'user' })).toEqual([]);
  }

  it('brings up archetype A (python, git release) and B (node, package) as one explicit unit per profile', async () => {
    for (const name of ['core', 'research', 'pool']) {
      const { plan, res } = await converge(units[name]);
      expect([plan.action, plan.effect]).toEqual(['create', 'restart']);
      expect(
        res!.diagnostics.filter((d) => d.severity === 'error'),
        name,
      ).toEqual([]);
    }
    for (const [name, release] of [
      ['core', V1],
      ['research', V1],
      ['pool', 'agent-pool@1.0.0'],
    ] as const) {
      const health = await getJson(ports[name]!, '/healthz');
      expect(health.status, name).toBe(200);
      expect(health.body).toMatchObject({ status: 'ok', profile: name });
      expect((health.body.credentials as { missing: string[] }).missing).toEqual([]);
      expect(await m.show(`agent-gateway@${name}.service`, ['ActiveState', 'UnitFileState'])).toEqual({
        ActiveState: 'active',
        UnitFileState: 'enabled',
      });
      // Exactly one runtime source: the process runs in its release directory.
      const pid = await execdPid(`agent-gateway@${name}.service`);
      const workload = name === 'pool' ? 'agent-pool' : 'orchestrator';
      expect(readlinkSync(`/proc/${pid}/cwd`)).toBe(path.join(host.paths.releases, workload, release));
    }
    expect(
      readdirSync(path.join(m.unitDir, 'default.target.wants'))
        .filter((u) => u.startsWith('agent-gateway@'))
        .sort(),
    ).toEqual(['agent-gateway@core.service', 'agent-gateway@pool.service', 'agent-gateway@research.service']);
    // Secrets are references in the unit, values only in the unit's credentials dir.
    const dropIn = readFileSync(path.join(m.unitDir, 'agent-gateway@core.service.d/50-agentvm.conf'), 'utf8');
    expect(dropIn).toContain('LoadCredential=chat-token:');
    expect(dropIn).not.toContain('chat-secret-1');
    expect(JSON.stringify([...lock.values()])).not.toMatch(/secret-1/);
    await verifyWritten();
  });

  it('plans nothing and restarts nothing when applied again', async () => {
    const before = await pids();
    for (const name of ['core', 'research', 'pool']) {
      const { plan } = await converge(units[name]);
      expect([name, plan.action, plan.effect, plan.drift]).toEqual([name, 'noop', 'none', []]);
    }
    // apply itself is idempotent too, even when called with a change that is already applied.
    const res = await provider.apply({
      host,
      change: change(units.core, 'update'),
      locked: lock.get('unit.orchestrator.core')!,
    });
    expect(res.diagnostics).toEqual([]);
    expect(await pids()).toEqual(before);
  });

  it("changing one profile's env restarts only that unit", async () => {
    const before = await pids();
    units.research = {
      ...units.research!,
      config: {
        ...units.research!.config,
        env: { ...(units.research!.config.env as Record<string, string>), AGENT_NOTE: 'changed' },
      },
    };
    const { plan, res } = await converge(units.research);
    expect([plan.action, plan.effect]).toEqual(['update', 'restart']);
    expect(plan.reasons.map((r) => r.message).join('\n')).toContain('Service.Environment (restart)');
    expect(res!.diagnostics).toEqual([]);
    for (const name of ['core', 'pool']) expect((await converge(units[name])).plan.action).toBe('noop');
    const after = await pids();
    expect(after.research).not.toBe(before.research);
    expect(after.research).toBeGreaterThan(0);
    expect(after.core).toBe(before.core);
    expect(after.pool).toBe(before.pool);
    expect((await getJson(ports.research!, '/healthz')).status).toBe(200);
  });

  it("leaves the unit alone on an egress change: the allowlist lives in the egress proxy's rules, not in the unit", async () => {
    const before = await pids();
    units.core = {
      ...units.core!,
      config: {
        ...units.core!.config,
        egress: [
          { host: '192.0.2.10', port: 443 },
          { host: '192.0.2.11', port: 443 },
        ],
      },
    };
    const { plan } = await converge(units.core);
    expect([plan.action, plan.effect]).toEqual(['noop', 'none']);
    expect(readFileSync(path.join(m.unitDir, 'agent-gateway@core.service.d/50-agentvm.conf'), 'utf8')).not.toContain(
      '192.0.2.1',
    );
    expect(await pids()).toEqual(before);
  });

  it('reports a hand edit as drift and repairs it', async () => {
    const file = path.join(m.unitDir, 'agent-gateway@pool.service.d/50-agentvm.conf');
    writeFileSync(file, readFileSync(file, 'utf8').replace('"AGENT_POOL_SIZE=2"', '"AGENT_POOL_SIZE=5"'));
    expect((await m.systemctl(['daemon-reload'])).code).toBe(0);
    expect((await m.systemctl(['restart', 'agent-gateway@pool.service'])).code).toBe(0);
    const edited = await execdPid('agent-gateway@pool.service');
    expect(readFileSync(`/proc/${edited}/environ`, 'utf8')).toContain('AGENT_POOL_SIZE=5');

    const plan = await planOf(units.pool!);
    expect([plan.action, plan.effect]).toEqual(['replace', 'restart']);
    expect(plan.drift.map((d) => d.code)).toContain('live-modified');
    expect(plan.drift[0]!.message).toContain('Service.Environment');

    const { res } = await converge(units.pool);
    expect(res!.diagnostics).toEqual([]);
    const repaired = await execdPid('agent-gateway@pool.service');
    expect(repaired).not.toBe(edited);
    expect(readFileSync(`/proc/${repaired}/environ`, 'utf8')).toContain('AGENT_POOL_SIZE=2');
    expect((await planOf(units.pool!)).action).toBe('noop');
    expect((await getJson(ports.pool!, '/healthz')).status).toBe(200);
  });

  it('reports a second runtime source (a drop-in overriding ExecStart) as drift and removes it', async () => {
    const foreign = 'agent-gateway@core.service.d/90-hand.conf';
    await m.writeUnit(
      foreign,
      `[Service]\nExecStart=\nExecStart=/usr/bin/python3 -m http.server ${ports.core} --bind 127.0.0.1\n`,
    );
    expect((await m.systemctl(['daemon-reload'])).code).toBe(0);
    expect((await m.systemctl(['restart', 'agent-gateway@core.service'])).code).toBe(0);
    const hijacked = await execdPid('agent-gateway@core.service');
    expect(readFileSync(`/proc/${hijacked}/cmdline`, 'utf8')).toContain('http.server');

    const plan = await planOf(units.core!);
    expect([plan.action, plan.effect]).toEqual(['replace', 'restart']);
    expect(plan.drift.map((d) => d.message).join('\n')).toMatch(
      /second runtime source .*90-hand\.conf sets Service\.ExecStart/,
    );

    const { res } = await converge(units.core);
    expect(res!.diagnostics).toEqual([]);
    expect(existsSync(path.join(m.unitDir, foreign))).toBe(false);
    // The main process is the unit shim (decisions/0016); the program after its `--` is the profile's entrypoint.
    const shimArgv = readFileSync(`/proc/${await execdPid('agent-gateway@core.service')}/cmdline`, 'utf8').split('\0');
    expect(shimArgv[1]).toMatch(/unit-shim\.js$/);
    const argv = shimArgv.slice(shimArgv.indexOf('--') + 1);
    expect(argv[0]).toMatch(/python3/);
    expect(argv.slice(1, 3)).toEqual(['-m', 'orchestrator']);
    expect((await getJson(ports.core!, '/healthz')).body).toMatchObject({ status: 'ok', profile: 'core' });
    expect((await planOf(units.core!)).action).toBe('noop');
  });

  it('restarts a unit whose credential changed since it started, and only that unit', async () => {
    const before = await pids();
    const file = path.join(root, 'etc/agentvm/secrets/pool-token');
    chmodSync(file, 0o600);
    writeFileSync(file, 'pool-secret-2');
    const plan = await planOf(units.pool!);
    expect([plan.action, plan.effect, plan.reasons.map((r) => r.code)]).toEqual([
      'update',
      'restart',
      ['dependency-changed'],
    ]);
    expect(JSON.stringify(plan)).not.toContain('pool-secret');
    await converge(units.pool);
    const after = await pids();
    expect(after.pool).not.toBe(before.pool);
    expect([after.core, after.research]).toEqual([before.core, before.research]);
  });

  it('rolls a release that fails its health check back to the previous one', async () => {
    const before = lock.get('unit.orchestrator.core')!;
    const failing: DesiredResource = {
      ...units.core!,
      config: {
        ...units.core!.config,
        releaseId: V2,
        env: { ...(units.core!.config.env as Record<string, string>), AGENT_FAIL_HEALTH: '1' },
        health: { path: '/healthz', timeoutSeconds: 6 },
      },
    };
    const plan = await planOf(failing);
    expect([plan.action, plan.effect]).toEqual(['update', 'restart']);
    expect(plan.reasons[0]!.message).toContain(`release ${V1} → ${V2}`);

    const { res } = await converge(failing);
    const codes = res!.diagnostics.map((d) => `${d.severity}:${d.code}`);
    expect(codes).toEqual([`error:${SystemdCode.healthFailed}`, `warning:${SystemdCode.rolledBack}`]);
    expect(res!.diagnostics[0]!.summary, res!.diagnostics[0]!.summary).toMatch(/HTTP 503/);
    // The unit runs the previous release and config again, healthy; the lockfile entry is the previous one.
    const pid = await execdPid('agent-gateway@core.service');
    expect(readlinkSync(`/proc/${pid}/cwd`)).toBe(path.join(host.paths.releases, 'orchestrator', V1));
    expect(readFileSync(`/proc/${pid}/environ`, 'utf8')).not.toContain('AGENT_FAIL_HEALTH');
    expect((await getJson(ports.core!, '/healthz')).status).toBe(200);
    expect(lock.get('unit.orchestrator.core')).toBe(before);
    expect((await planOf(units.core!)).action).toBe('noop');

    // A healthy upgrade to the same release goes through.
    units.core = { ...units.core!, config: { ...units.core!.config, releaseId: V2 } };
    const up = await converge(units.core);
    expect(up.res!.diagnostics).toEqual([]);
    expect((await getJson(ports.core!, '/healthz')).body).toMatchObject({ status: 'ok', release: 'v2' });
    await verifyWritten();
  });

  it('escapes argv and env values so that the process gets them byte for byte', async () => {
    const release = path.join(host.paths.releases, 'echo', 'echo-1');
    mkdirSync(release, { recursive: true });
    writeFileSync(path.join(release, 'echo.py'), ECHO_PY);
    execFileSync('chmod', ['-R', 'a-w,a+rX', release]);
    const weird = ['with space', 'quote"d', "single'q", 'back\\slash', '$HOME and ${USER}', '100% %i %n', ';'];
    const desired = unit({
      workload: 'echo',
      profile: 'echo',
      entrypoint: ['python3', 'echo.py', ...weird],
      env: { AGENT_LISTEN_PORT: String(ports.echo), WEIRD_A: weird.join('|'), WEIRD_B: '  leading and trailing  ' },
      listen: { port: ports.echo! },
      riskTier: 'critical',
      secrets: [],
      releaseId: 'echo-1',
    });
    const { res } = await converge(desired);
    expect(res!.diagnostics).toEqual([]);
    const echoed = (await getJson(ports.echo!, '/healthz')).body as { argv: string[]; env: Record<string, string> };
    expect(echoed.argv).toEqual(weird);
    expect(echoed.env).toEqual({ WEIRD_A: weird.join('|'), WEIRD_B: '  leading and trailing  ' });
    // Forgotten by the lockfile (an orphan): found through list, read in the scope it lives in, and deleted.
    lock.delete(desired.address);
    expect((await provider.list({ host })).owned.map((o) => o.address)).toContain(desired.address);
    const orphan = await converge(undefined, desired.address);
    expect([orphan.read.live.exists, orphan.plan.action]).toEqual([true, 'delete']);
    expect(orphan.res!.diagnostics).toEqual([]);
    expect(existsSync(path.join(m.unitDir, 'agent-gateway@echo.service.d'))).toBe(false);
  });

  it('serves a profile on a unix socket from its runtime directory', async () => {
    const desired = unit({
      workload: 'orchestrator',
      profile: 'sock-check',
      entrypoint: ['python3', '-m', 'orchestrator'],
      env: { PYTHONDONTWRITEBYTECODE: '1' },
      listen: { socket: 'gw.sock' },
      riskTier: 'critical',
      secrets: [],
      releaseId: V1,
    });
    const { res } = await converge(desired);
    expect(res!.diagnostics).toEqual([]);
    const sock = path.join(m.runtimeDir, 'agent-gateway/sock-check/gw.sock');
    expect(lstatSync(sock).isSocket()).toBe(true);
    expect((await getJson(0, '/healthz', sock)).body).toMatchObject({ status: 'ok', profile: 'sock-check' });
    await converge(undefined, desired.address);
    expect(existsSync(sock)).toBe(false);
  });

  it('removing a profile removes only its unit; list reports only what agentvm owns', async () => {
    await m.writeUnit(
      'agent-gateway@manual.service.d/10-mine.conf',
      '[Service]\nExecStart=\nExecStart=/bin/sleep 1000\n',
    );
    await m.writeUnit('unrelated.service', '[Service]\nExecStart=/bin/sleep 1000\n');
    const listed = await provider.list({ host });
    expect(listed.owned.map((o) => o.address)).toEqual([
      'unit.agent-pool.pool',
      'unit.orchestrator.core',
      'unit.orchestrator.research',
    ]);

    const before = await pids();
    const { plan, res } = await converge(undefined, 'unit.orchestrator.research');
    expect(plan.action).toBe('delete');
    expect(res!.diagnostics).toEqual([]);
    expect(existsSync(path.join(m.unitDir, 'agent-gateway@research.service.d'))).toBe(false);
    expect(existsSync(path.join(m.unitDir, 'default.target.wants/agent-gateway@research.service'))).toBe(false);
    expect((await m.show('agent-gateway@research.service', ['ActiveState'])).ActiveState).toBe('inactive');
    const after = await pids();
    expect([after.core, after.pool]).toEqual([before.core, before.pool]);
    expect(existsSync(path.join(m.unitDir, 'agent-gateway@.service'))).toBe(true);

    for (const address of ['unit.orchestrator.core', 'unit.agent-pool.pool'])
      expect((await converge(undefined, address)).res!.diagnostics).toEqual([]);
    // The last instance took the template with it; files agentvm does not own are untouched.
    expect(existsSync(path.join(m.unitDir, 'agent-gateway@.service'))).toBe(false);
    expect(existsSync(path.join(m.unitDir, 'agent-gateway@manual.service.d/10-mine.conf'))).toBe(true);
    expect(existsSync(path.join(m.unitDir, 'unrelated.service'))).toBe(true);
    expect((await provider.list({ host })).owned).toEqual([]);
  });
});

describe.skipIf(!support.ok && !inCi)('systemd provider offline (system scope into a host root)', () => {
  it('renders and enables without a manager, and removes again', async () => {
    const root = mkdtempSync(path.join(os.tmpdir(), 'agentvm-systemd-offline-'));
    try {
      const host: HostContext = { host: 'img', root, paths: hostPaths(root), repo: REPO };
      const provider = new SystemdProvider();
      const desired: DesiredResource = {
        ...unit({
          workload: 'orchestrator',
          profile: 'core',
          entrypoint: ['python3', '-m', 'orchestrator'],
          env: {},
          listen: { port: 8101 },
          riskTier: 'high',
          secrets: [{ name: 'k', ref: 'systemd-creds:/etc/agentvm/credstore/k.cred' }],
          releaseId: V1,
        }),
      };
      desired.config = { ...desired.config, scope: 'system' };
      mkdirSync(path.join(host.paths.releases, 'orchestrator', V1), { recursive: true });
      const read = await provider.read({ host, address: desired.address, desired });
      expect((read.live.attributes as { context: { mode: string } }).context.mode).toBe('offline');
      const plan = provider.plan({ address: desired.address, desired, live: read.live });
      expect(plan.action).toBe('create');
      const res = await provider.apply({
        host,
        change: {
          address: desired.address,
          provider: 'systemd',
          workload: 'orchestrator',
          action: 'create',
          effect: 'restart',
          reasons: [],
          desired,
          dependsOn: [],
        },
      });
      expect(res.diagnostics).toEqual([]);
      const unitDir = path.join(root, 'etc/systemd/system');
      const wants = path.join(unitDir, 'multi-user.target.wants/agent-gateway@core.service');
      expect(lstatSync(wants).isSymbolicLink()).toBe(true);
      // Paths in the unit are the booted host's, not the build root's.
      const dropIn = readFileSync(path.join(unitDir, 'agent-gateway@core.service.d/50-agentvm.conf'), 'utf8');
      expect(dropIn).toContain(`WorkingDirectory=/var/lib/agentvm/releases/orchestrator/${V1}`);
      expect(dropIn).not.toContain(root);
      expect(statSync(path.join(unitDir, 'agent-gateway@.service')).mode & 0o777).toBe(0o644);
      expect(
        await verifyUnits([
          { name: 'agent-gateway@.service', text: readFileSync(path.join(unitDir, 'agent-gateway@.service'), 'utf8') },
          { name: 'agent-gateway@core.service.d/50-agentvm.conf', text: dropIn },
        ]),
      ).toEqual([]);

      const locked: LockedResource = { ...res.locked!, commit: null, appliedAt: '2026-01-01T00:00:00Z' };
      const again = await provider.read({ host, address: desired.address, desired, locked });
      expect(provider.plan({ address: desired.address, desired, live: again.live, locked }).action).toBe('noop');
      const del = await provider.apply({
        host,
        change: {
          address: desired.address,
          provider: 'systemd',
          workload: 'orchestrator',
          action: 'delete',
          effect: 'none',
          reasons: [],
          dependsOn: [],
        },
        locked,
      });
      expect(del.diagnostics).toEqual([]);
      expect(existsSync(wants)).toBe(false);
      expect(existsSync(path.join(unitDir, 'agent-gateway@core.service.d'))).toBe(false);
      expect(existsSync(path.join(unitDir, 'agent-gateway@.service'))).toBe(false);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
});

describe.skipIf(!support.ok && !inCi)('systemd provider offline (user scope into a host root)', () => {
  it('renders into <root>/etc/systemd/user and enables --global', async () => {
    const root = mkdtempSync(path.join(os.tmpdir(), 'agentvm-systemd-offline-user-'));
    try {
      const host: HostContext = { host: 'img', root, paths: hostPaths(root), repo: REPO };
      const provider = new SystemdProvider();
      const desired = unit({
        workload: 'agent-pool',
        profile: 'pool',
        entrypoint: ['node', 'server.js'],
        env: {},
        listen: { port: 8201 },
        riskTier: 'moderate',
        secrets: [],
        releaseId: 'agent-pool@1.0.0',
      });
      mkdirSync(path.join(host.paths.releases, 'agent-pool', 'agent-pool@1.0.0'), { recursive: true });
      const read = await provider.read({ host, address: desired.address, desired });
      const plan = provider.plan({ address: desired.address, desired, live: read.live });
      const res = await provider.apply({
        host,
        change: {
          address: desired.address,
          provider: 'systemd',
          workload: 'agent-pool',
          action: plan.action,
          effect: plan.effect,
          reasons: [],
          desired,
          dependsOn: [],
        },
      });
      expect(res.diagnostics).toEqual([]);
      const unitDir = path.join(root, 'etc/systemd/user');
      expect(readlinkSync(path.join(unitDir, 'default.target.wants/agent-gateway@pool.service'))).toBe(
        '/etc/systemd/user/agent-gateway@.service',
      );
      expect((await provider.list({ host })).owned.map((o) => o.address)).toEqual(['unit.agent-pool.pool']);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
});

const ECHO_PY = `import http.server, json, os, sys
class Echo(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"argv": sys.argv[1:], "env": {k: v for k, v in os.environ.items() if k.startswith("WEIRD")}}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.HTTPServer(("127.0.0.1", int(os.environ["AGENT_LISTEN_PORT"])), Echo).serve_forever()
`;

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

function getJson(
  port: number,
  urlPath: string,
  socketPath?: string,
): Promise<{ status: number; body: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const req = get(
      { host: '127.0.0.1', port, path: urlPath, ...(socketPath ? { socketPath } : {}), timeout: 5_000 },
      (res) => {
        let data = '';
        res.setEncoding('utf8').on('data', (d: string) => {
          data += d;
        });
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, body: JSON.parse(data || '{}') as Record<string, unknown> }),
        );
      },
    );
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
  });
}
