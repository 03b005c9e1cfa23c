// System test of the exec allowlist (decisions/0022) from inside a REAL unit of a real systemd user manager
// (test/support/systemd-user.ts). The workload is the attacker: its entrypoint (node) tries every way to run a
// program it was not given — /bin/sh -c, curl, a copy of an allowed program or of /usr/bin/true in every directory
// it can write, the dynamic loader run on /bin/sh — and reports what happened through its runtime directory.
// It may run only its entrypoint, its interpreter and the declared program. Then a declared program's bytes are
// replaced: plan shows drift, apply refuses and the unit does not run until the file is restored.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import {
  chmodSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmdirSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { request } from 'node:http';
import os from 'node:os';
import path from 'node:path';
import type { DesiredResource, LockedResource, PlannedChange } from '../src/model/resources.js';
import { hostPaths } from '../src/model/index.js';
import type { HostContext } from '../src/providers/provider.js';
import { EgressProvider } from '../src/providers/egress/provider.js';
import { SystemdCode, SystemdProvider, systemEndpoint, userEndpoint } from '../src/providers/systemd/index.js';
import { toolCapabilityLines } from '../src/ui/capabilities-tools.js';
import { startUserManager, userManagerSupport, type UserManager } from './support/systemd-user.js';

const support = userManagerSupport();
const inCi = process.env.CI === 'true';
if (!support.ok && !inCi) console.warn(`exec-allowlist: skipping: ${support.reason}. ${support.howTo}`);
const CURL = '/usr/bin/curl';
if (!existsSync(CURL) && !inCi)
  console.warn(
    'exec-allowlist: skipping: curl is not on the host (apt-get install curl); the test proves a present curl cannot run',
  );

const RELEASE = 'r1';
/** A host ELF program copied into the release as the declared tool (its bytes are what the pin covers). */
const TOOL_SOURCE = '/usr/bin/uname';
const OTHER_ELF = '/usr/bin/true';

/** The hostile entrypoint: tries everything, writes the outcome next to its socket, then serves /healthz. */
const PROBE = String.raw`
const cp = require('node:child_process');
const fs = require('node:fs');
const http = require('node:http');
const path = require('node:path');
const sock = process.env.AGENT_LISTEN_SOCKET;
const out = path.dirname(sock);
const tryRun = (file, args) => {
  const r = cp.spawnSync(file, args, { encoding: 'utf8', timeout: 10000 });
  return { file, ok: r.status === 0 && !r.error, status: r.status, error: r.error ? r.error.code : null, stdout: (r.stdout || '').trim().slice(0, 200), stderr: (r.stderr || '').slice(0, 200) };
};
process.on('uncaughtException', (e) => { try { fs.writeFileSync(path.join(out, 'error.txt'), String(e && e.stack || e)); } catch {} setInterval(() => {}, 1000); });
const result = {
  tool: tryRun(path.join(process.cwd(), 'bin/tool'), ['-s']),
  sh: tryRun('/bin/sh', ['-c', 'echo escaped']),
  curl: tryRun('/usr/bin/curl', ['--version']),
  loader: tryRun('/lib64/ld-linux-x86-64.so.2', ['/bin/sh', '-c', 'echo escaped']),
  copies: [],
};
// Every mount point of the unit's namespace that it can write: a copied program there must not run either.
const mounts = fs.readFileSync('/proc/self/mountinfo', 'utf8').trim().split('\n').map((l) => l.split(' ')[4].replace(/\\040/g, ' '));
for (const dir of [...new Set(mounts)]) {
  for (const [label, src] of [['tool', path.join(process.cwd(), 'bin/tool')], ['true', '/usr/bin/true']]) {
    const file = path.join(dir, '.agentvm-exec-probe-' + label);
    try { fs.copyFileSync(src, file); fs.chmodSync(file, 0o755); } catch { continue; }
    result.copies.push({ dir, ...tryRun(file, []) });
    try { fs.unlinkSync(file); } catch {}
  }
}
fs.writeFileSync(path.join(out, 'result.json'), JSON.stringify(result));
try { fs.unlinkSync(sock); } catch {} // a socket left by the previous run of the unit
http.createServer((req, res) => { res.writeHead(200, { 'content-type': 'application/json' }); res.end('{"status":"ok"}'); }).listen(sock);
`;

function sha256(file: string): string {
  return createHash('sha256').update(readFileSync(file)).digest('hex');
}

describe.skipIf((!support.ok || !existsSync(CURL)) && !inCi)(
  'exec allowlist: only the pinned programs run, from inside a real unit',
  () => {
    let m: UserManager;
    let root: string;
    let host: HostContext;
    let provider: SystemdProvider;
    let createdCredentialsDir = false;
    let releaseDir: string;
    let desired: DesiredResource;
    let locked: LockedResource | undefined;
    const UNIT = 'agent-gateway@probe.service';

    beforeAll(async () => {
      m = await startUserManager();
      if (!existsSync('/run/credentials')) {
        mkdirSync('/run/credentials', { mode: 0o755 });
        createdCredentialsDir = true;
      }
      root = mkdtempSync(path.join(os.tmpdir(), 'agentvm-exec-allowlist-'));
      chmodSync(root, 0o755);
      host = { host: 'test', root, paths: hostPaths(root), repo: root };
      provider = new SystemdProvider({
        endpoint: (h, scope) =>
          scope === 'user'
            ? userEndpoint({
                root: h.root,
                account: { user: m.user, uid: m.uid, gid: m.gid, home: m.home, runtimeDir: m.runtimeDir },
              })
            : systemEndpoint(h.root),
      });
      // The release, laid out by hand (the release providers are tested elsewhere): the probe and the declared tool.
      releaseDir = path.join(host.paths.releases, 'hostile', RELEASE);
      mkdirSync(path.join(releaseDir, 'bin'), { recursive: true });
      writeFileSync(path.join(releaseDir, 'probe.js'), PROBE);
      copyFileSync(TOOL_SOURCE, path.join(releaseDir, 'bin/tool'));
      chmodSync(path.join(releaseDir, 'bin/tool'), 0o755);
      for (const d of [host.paths.releases, path.dirname(releaseDir), releaseDir, path.join(releaseDir, 'bin')])
        chmodSync(d, 0o755);
      desired = {
        address: 'unit.hostile.probe',
        provider: 'systemd',
        workload: 'hostile',
        identity: 'hostile/probe',
        dependsOn: [],
        config: {
          profile: 'probe',
          entrypoint: ['node', 'probe.js'],
          env: {},
          listen: { socket: 'probe.sock' },
          health: { path: '/healthz', timeoutSeconds: 30 },
          reload: false,
          riskTier: 'moderate',
          egress: [],
          secrets: [],
          canary: null,
          releaseId: RELEASE,
          scope: 'user',
          programs: [{ name: 'tool', path: 'bin/tool', sha256: sha256(path.join(releaseDir, 'bin/tool')) }],
        },
      };
      // Every unit is confined to its own network namespace (decisions/0016) with its caller socket of the host's
      // egress proxy bound in: the proxy runs first, as apply would start it (egress.server before every unit).
      const egress = new EgressProvider({
        endpoint: (h) =>
          userEndpoint({
            root: h.root,
            account: { user: m.user, uid: m.uid, gid: m.gid, home: m.home, runtimeDir: m.runtimeDir },
          }),
      });
      const server: DesiredResource = {
        address: 'egress.server',
        provider: 'egress',
        workload: '(host)',
        identity: 'agentvm-egress.service',
        dependsOn: [],
        config: {
          scope: 'user',
          resolvers: [],
          callers: [{ id: 'unit.hostile.probe', workload: 'hostile', profile: 'probe', entries: [], listenPort: null }],
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

    function change(action: PlannedChange['action'], reasons: PlannedChange['reasons'] = []): PlannedChange {
      return {
        address: desired.address,
        provider: 'systemd',
        workload: 'hostile',
        action,
        effect: 'restart',
        reasons,
        dependsOn: [],
        desired,
        after: { identity: desired.identity },
      };
    }

    async function planNow() {
      const read = await provider.read({ host, address: desired.address, desired, ...(locked ? { locked } : {}) });
      return provider.plan({ address: desired.address, desired, live: read.live, ...(locked ? { locked } : {}) });
    }

    async function applyNow() {
      const plan = await planNow();
      const res = await provider.apply({
        host,
        change: change(plan.action, plan.reasons),
        ...(locked ? { locked } : {}),
      });
      if (!res.diagnostics.some((d) => d.severity === 'error') && res.locked)
        locked = { ...res.locked, commit: null, appliedAt: new Date().toISOString() };
      return { plan, res };
    }

    const resultFile = (): string => path.join(m.runtimeDir, 'agent-gateway/probe/result.json');

    it('runs the entrypoint and the declared program; /bin/sh, curl, the loader and every copied program fail', async () => {
      const { plan, res } = await applyNow();
      expect(plan.action).toBe('create');
      expect(res.diagnostics.filter((d) => d.severity === 'error')).toEqual([]);
      expect(await m.show(UNIT, ['ActiveState'])).toEqual({ ActiveState: 'active' });
      const dropIn = readFileSync(path.join(m.unitDir, `${UNIT}.d/50-agentvm.conf`), 'utf8');
      expect(dropIn).toMatch(/^NoExecPaths=\/ /m);
      expect(dropIn).toMatch(/^ExecPaths=.*\/usr\/bin\/node/m);
      expect(dropIn).not.toMatch(/^ExecPaths=.*\/bin\/(sh|dash|bash)\b/m);

      const r = JSON.parse(readFileSync(resultFile(), 'utf8'));
      // The entrypoint ran (it wrote the file and answers health); the declared program runs and prints its output.
      expect(r.tool, JSON.stringify(r.tool)).toMatchObject({ ok: true, stdout: 'Linux' });
      // Programs that are not allowlisted cannot be executed at all.
      expect(r.sh).toMatchObject({ ok: false, error: 'EACCES' });
      expect(r.curl).toMatchObject({ ok: false, error: 'EACCES' });
      // The loader is allowed (every program needs it), but it cannot map a program from a noexec file.
      expect(r.loader.ok).toBe(false);
      expect(r.loader.stdout).not.toContain('escaped');
      expect(r.loader.stderr).toMatch(/failed to map segment|Permission denied/);
      // Wherever the unit can write, a copy — even of the allowed program's bytes — does not run: the allowlist is
      // of files, not of contents. The probe found writable places (tmp at least), so the loop is not vacuous.
      expect(r.copies.length).toBeGreaterThan(0);
      expect(r.copies.map((c: { dir: string }) => c.dir)).toContain('/tmp');
      for (const c of r.copies) expect(c, JSON.stringify(c)).toMatchObject({ ok: false, error: 'EACCES' });
      expect((await planNow()).action).toBe('noop');
    }, 120_000);

    it('a declared program whose bytes change is drift, apply refuses and stops the unit, and fixing the file brings it back', async () => {
      const tool = path.join(releaseDir, 'bin/tool');
      const pinned = sha256(tool);
      copyFileSync(OTHER_ELF, tool);
      const seen = sha256(tool);

      const plan = await planNow();
      expect(plan.action).toBe('update');
      expect(plan.drift.map((d) => d.message).join('\n')).toMatch(/program tool \(bin\/tool\) is sha256:/);

      const { res } = await applyNow();
      const refusal = res.diagnostics.find((d) => d.code === SystemdCode.toolDigest);
      expect(refusal?.severity).toBe('error');
      expect(refusal!.summary).toContain(`sha256:${seen}`);
      expect(refusal!.summary).toContain(`sha256:${pinned}`);
      expect((await m.show(UNIT, ['ActiveState'])).ActiveState).not.toBe('active');
      // Applying again without a fix is refused again: the unit does not start.
      expect((await applyNow()).res.diagnostics.map((d) => d.code)).toContain(SystemdCode.toolDigest);
      expect((await m.show(UNIT, ['ActiveState'])).ActiveState).not.toBe('active');

      copyFileSync(TOOL_SOURCE, tool);
      const fixed = await applyNow();
      const probeError = path.join(m.runtimeDir, 'agent-gateway/probe/error.txt');
      expect(
        fixed.res.diagnostics.filter((d) => d.severity === 'error'),
        existsSync(probeError) ? readFileSync(probeError, 'utf8') : 'no probe error',
      ).toEqual([]);
      expect(await m.show(UNIT, ['ActiveState'])).toEqual({ ActiveState: 'active' });
      expect(await health()).toBe(200);
      expect((await planNow()).action).toBe('noop');
    }, 120_000);

    it('the plan lists re-pinned programs and MCP tools under the change; an MCP re-pin alone restarts nothing', async () => {
      // Re-pin the program to other bytes (a reviewed update of the tool) and allowlist an MCP tool.
      const tool = path.join(releaseDir, 'bin/tool');
      const oldPin = sha256(tool);
      copyFileSync(OTHER_ELF, tool);
      const config = desired.config as Record<string, unknown>;
      desired = {
        ...desired,
        config: {
          ...config,
          programs: [{ name: 'tool', path: 'bin/tool', sha256: sha256(tool) }],
          mcp: [{ server: 'search', tools: [{ name: 'find', sha256: 'a'.repeat(64) }] }],
        },
      };
      const plan = await planNow();
      expect(plan.action).toBe('update');
      const recorded = { config: locked!.attributes!.config as Record<string, unknown> };
      expect(toolCapabilityLines({ action: plan.action, desired, recorded })).toEqual([
        `~ program tool (bin/tool) re-pinned sha256:${oldPin.slice(0, 12)} → sha256:${sha256(tool).slice(0, 12)}: its bytes changed since last review`,
        `+ mcp tool search/find sha256:${'a'.repeat(12)}`,
      ]);
      expect((await applyNow()).res.diagnostics.filter((d) => d.severity === 'error')).toEqual([]);
      expect(await m.show(UNIT, ['ActiveState'])).toEqual({ ActiveState: 'active' });
      const pid = await m.mainPid(UNIT);

      // The server's description changed and the reviewer re-pinned it: an update that restarts nothing.
      desired = {
        ...desired,
        config: {
          ...(desired.config as Record<string, unknown>),
          mcp: [{ server: 'search', tools: [{ name: 'find', sha256: 'b'.repeat(64) }] }],
        },
      };
      const repin = await planNow();
      expect([repin.action, repin.effect]).toEqual(['update', 'none']);
      expect(
        toolCapabilityLines({
          action: repin.action,
          desired,
          recorded: { config: locked!.attributes!.config as Record<string, unknown> },
        }),
      ).toEqual([
        `~ mcp tool search/find re-pinned sha256:${'a'.repeat(12)} → sha256:${'b'.repeat(12)}: description changed since last review`,
      ]);
      expect((await applyNow()).res.diagnostics).toEqual([]);
      expect(await m.mainPid(UNIT)).toBe(pid);
      expect((await planNow()).action).toBe('noop');
    }, 120_000);

    function health(): Promise<number> {
      return new Promise((resolve, reject) => {
        const req = request(
          { socketPath: path.join(m.runtimeDir, 'agent-gateway/probe/probe.sock'), path: '/healthz' },
          (res) => {
            res.resume();
            resolve(res.statusCode ?? 0);
          },
        );
        req.on('error', reject);
        req.end();
      });
    }
  },
);
