// System test of the systemd user-manager harness (test/support/systemd-user.ts) and of what a user manager on
// this kind of machine really does: a gateway template unit with per-profile drop-ins served over HTTP,
// restart isolation between instances, which hardening directives are honoured, and a clean teardown.
// Real systemd, real processes, real HTTP. Findings are written up in decisions/notes-systemd-harness.md.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { get } from 'node:http';
import { createServer } from 'node:net';
import {
  startUserManager,
  userManagerSupport,
  SystemdUnavailableError,
  type UserManager,
} from './support/systemd-user.js';

const support = userManagerSupport();
const inCi = process.env.CI === 'true';
if (!support.ok && !inCi) console.warn(`systemd-harness: skipping: ${support.reason}. ${support.howTo}`);

describe('systemd user manager: available in CI', () => {
  it.runIf(inCi)('the harness can start a user manager on this machine', () => {
    expect(support, support.ok ? '' : `${support.reason}. ${support.howTo}`).toEqual({ ok: true });
  });
});

const GATEWAY_TEMPLATE = `[Unit]
Description=agentvm gateway %i

[Service]
Type=simple
Environment=INSTANCE=%i
ExecStart=${process.execPath} %h/gateway/server.mjs
Restart=on-failure
NoNewPrivileges=yes

[Install]
WantedBy=default.target
`;

// Answers with the instance it serves and its own PID, so a reply can be matched against MainPID.
const GATEWAY_SERVER = `import http from 'node:http';
const server = http.createServer((req, res) => {
  res.setHeader('content-type', 'application/json');
  res.end(JSON.stringify({ instance: process.env.INSTANCE, pid: process.pid }));
});
server.listen(Number(process.env.PORT), '127.0.0.1');
process.on('SIGTERM', () => server.close(() => process.exit(0)));
`;

describe.skipIf(!support.ok && !inCi)('a real systemd user manager', () => {
  let m: UserManager;
  const timings: Record<string, number> = {};

  beforeAll(async () => {
    m = await startUserManager();
    timings.prepareMs = m.timings.prepareMs;
    timings.startMs = m.timings.startMs;
  });

  afterAll(async () => {
    if (!m) return;
    await m.stop();
    timings.stopMs = m.timings.stopMs ?? NaN;
    console.info(
      `systemd-harness timings (ms): ${Object.entries(timings)
        .map(([k, v]) => `${k}=${v.toFixed(0)}`)
        .join(' ')}`,
    );
  });

  it('is running as the dedicated user in its delegated cgroup', async () => {
    expect(await m.systemState()).toMatch(/^(running|degraded)$/);
    const status = readFileSync(`/proc/${m.managerPid}/status`, 'utf8');
    expect(status).toMatch(new RegExp(`^Uid:\\s+${m.uid}\\s`, 'm'));
    expect(readFileSync(`/proc/${m.managerPid}/cgroup`, 'utf8')).toContain(`/${m.user}/init.scope`);
    // Trap: the booted marker is gone once the manager runs, so is-system-running says "offline" unless
    // PID 1 is systemd; SystemState is the reliable question.
    if (!existsSync('/run/systemd/system')) {
      expect((await m.systemctl(['is-system-running'])).stdout.trim()).toBe('offline');
    }
  });

  it('captures unit output with StandardOutput=append: (there is no journal to read)', async () => {
    await m.writeUnit(
      'hello.service',
      '[Service]\nType=oneshot\nStandardOutput=append:%t/hello.log\nExecStart=/bin/echo hello-from-a-unit\n',
    );
    await ok(m.systemctl(['daemon-reload']));
    await ok(m.systemctl(['start', 'hello.service']));
    expect(readFileSync(`${m.runtimeDir}/hello.log`, 'utf8')).toBe('hello-from-a-unit\n');
    expect(await m.show('hello.service', ['Result', 'ExecMainStatus'])).toEqual({
      Result: 'success',
      ExecMainStatus: '0',
    });
  });

  it('refuses a second manager for the same user while the first runs', async () => {
    await expect(startUserManager({ user: m.user })).rejects.toThrow(/already running in this process/);
  });

  it('runs a gateway template with per-profile drop-ins; restarts change only the restarted instance', async () => {
    const [corePort, researchPort] = [await freePort(), await freePort()];
    await m.writeFile('gateway/server.mjs', GATEWAY_SERVER);
    await m.writeUnit('agent-gateway@.service', GATEWAY_TEMPLATE);
    await m.writeUnit('agent-gateway@core.service.d/10-profile.conf', `[Service]\nEnvironment=PORT=${corePort}\n`);
    await m.writeUnit(
      'agent-gateway@research.service.d/10-profile.conf',
      `[Service]\nEnvironment=PORT=${researchPort}\n`,
    );

    await ok(m.systemctl(['daemon-reload']));
    await ok(m.systemctl(['enable', 'agent-gateway@core.service']));
    expect(existsSync(`${m.unitDir}/default.target.wants/agent-gateway@core.service`)).toBe(true);

    let t = performance.now();
    await ok(m.systemctl(['start', 'agent-gateway@core.service']));
    const first = await waitForReply(corePort);
    timings.gatewayStartToHttpMs = performance.now() - t;
    expect(first.instance).toBe('core');
    const corePid = await m.mainPid('agent-gateway@core.service');
    expect(corePid).toBe(first.pid);
    const props = await m.show('agent-gateway@core.service', ['ActiveState', 'DropInPaths', 'UnitFileState']);
    expect(props).toMatchObject({ ActiveState: 'active', UnitFileState: 'enabled' });
    expect(props.DropInPaths).toContain('agent-gateway@core.service.d/10-profile.conf');

    t = performance.now();
    await ok(m.systemctl(['restart', 'agent-gateway@core.service']));
    timings.restartMs = performance.now() - t;
    const restartedPid = await m.mainPid('agent-gateway@core.service');
    expect(restartedPid).not.toBe(corePid);
    expect(restartedPid).toBeGreaterThan(0);
    expect((await waitForReply(corePort)).pid).toBe(restartedPid);

    await ok(m.systemctl(['start', 'agent-gateway@research.service']));
    const research = await waitForReply(researchPort);
    expect(research.instance).toBe('research');
    const researchPid = await m.mainPid('agent-gateway@research.service');
    expect(researchPid).toBe(research.pid);

    await ok(m.systemctl(['restart', 'agent-gateway@core.service']));
    const corePidAgain = await m.mainPid('agent-gateway@core.service');
    expect(corePidAgain).not.toBe(restartedPid);
    expect(await m.mainPid('agent-gateway@research.service')).toBe(researchPid);
    expect((await waitForReply(researchPort)).pid).toBe(researchPid);

    await ok(m.systemctl(['stop', 'agent-gateway@core.service', 'agent-gateway@research.service']));
    await ok(m.systemctl(['disable', 'agent-gateway@core.service']));
    expect(await m.mainPid('agent-gateway@core.service')).toBe(0);
    expect((await m.show('agent-gateway@research.service', ['ActiveState'])).ActiveState).toBe('inactive');
    expect(existsSync(`${m.unitDir}/default.target.wants/agent-gateway@core.service`)).toBe(false);
  });

  // Each probe is a transient unit with the directive under test; `systemd-run --pipe --wait` returns the
  // probe's output and exit status. These are facts the systemd provider relies on when it writes user units.
  describe('hardening directives under this user manager', () => {
    const probe = async (properties: string[], script: string) => {
      const args = ['systemd-run', '--user', '--wait', '--pipe', '--quiet', '--collect'];
      for (const p of properties) args.push(`--property=${p}`);
      return m.run([...args, '/bin/sh', '-c', script], { timeoutMs: 20_000 });
    };
    const writeHome = 'touch "$HOME/probe" && echo writable || echo read-only';

    it('ProtectSystem=strict needs PrivateUsers=yes: alone it is silently not applied', async () => {
      expect((await probe(['ProtectSystem=strict'], writeHome)).stdout.trim()).toBe('writable');
      const confined = await probe(['PrivateUsers=yes', 'ProtectSystem=strict'], writeHome);
      expect(confined.stdout.trim()).toBe('read-only');
      const allowed = await probe(['PrivateUsers=yes', 'ProtectSystem=strict', `ReadWritePaths=${m.home}`], writeHome);
      expect(allowed.stdout.trim()).toBe('writable');
    });

    it('PrivateTmp=yes gives an empty /tmp only with PrivateUsers=yes', async () => {
      const marker = await m.run(['sh', '-c', 'mktemp /tmp/agentvm-probe.XXXXXX']);
      const name = marker.stdout.trim();
      try {
        const look = `test -e ${name} && echo shared || echo private`;
        expect((await probe(['PrivateTmp=yes'], look)).stdout.trim()).toBe('shared');
        expect((await probe(['PrivateUsers=yes', 'PrivateTmp=yes'], look)).stdout.trim()).toBe('private');
      } finally {
        await m.run(['rm', '-f', name]);
      }
    });

    it('PrivateDevices=yes fails to start without PrivateUsers=yes (218/CAPABILITIES) and works with it', async () => {
      const alone = await probe(['PrivateDevices=yes'], 'echo started');
      expect(alone.code).not.toBe(0);
      expect(alone.stdout).not.toContain('started');
      const withUsers = await probe(['PrivateUsers=yes', 'PrivateDevices=yes'], 'ls /dev | wc -l');
      expect(withUsers.code).toBe(0);
      expect(Number(withUsers.stdout.trim())).toBeLessThan(30);
    });

    it('NoNewPrivileges= and SystemCallFilter= are enforced (seccomp works unprivileged)', async () => {
      const nnp = await probe(['NoNewPrivileges=yes'], 'grep NoNewPrivs /proc/self/status');
      expect(nnp.stdout).toMatch(/NoNewPrivs:\s+1/);
      const filtered = await probe(
        ['SystemCallFilter=~@clock', 'SystemCallErrorNumber=EPERM'],
        'date -s 2020-01-01 2>&1; echo "exit=$?"',
      );
      expect(filtered.stdout).toMatch(/Operation not permitted/);
    });

    it('LoadCredential= delivers the file under $CREDENTIALS_DIRECTORY', async () => {
      const source = await m.writeFile('probe-credential', 'not-a-real-secret\n', 0o600);
      const r = await probe(
        [`LoadCredential=token:${source}`],
        'cat "$CREDENTIALS_DIRECTORY/token"; echo "dir=$CREDENTIALS_DIRECTORY"',
      );
      expect(r.stdout).toContain('not-a-real-secret');
      expect(r.stdout).toContain(`dir=${m.runtimeDir}/credentials/`);
    });

    it('MemoryMax= and TasksMax= are enforced only when the controller is delegated', async () => {
      const memory = await probe(
        ['MemoryMax=32M', 'MemorySwapMax=0'],
        `${process.execPath} -e "const b=[];for(let i=0;i<16;i++)b.push(Buffer.alloc(16<<20,1));console.log('allocated')"`,
      );
      expect(memory.stdout.includes('allocated')).toBe(!m.controllers.includes('memory'));
      const tasks = await probe(
        ['TasksMax=4'],
        'for i in 1 2 3 4 5 6 7 8; do sleep 0.3 & done 2>/dev/null; wait; echo spawned',
      );
      expect(tasks.code === 0 && tasks.stdout.includes('spawned')).toBe(!m.controllers.includes('pids'));
    });

    it('IPAddressDeny= is accepted but not enforced (cgroup BPF needs privileges a user manager lacks)', async () => {
      const port = await freePort();
      const server = createServer((s) => s.on('error', () => undefined).end('hello\n')).listen(port, '127.0.0.1');
      try {
        const connect =
          `${process.execPath} -e "require('net').connect(${port},'127.0.0.1')` +
          `.on('connect',()=>{console.log('connected');process.exit(0)}).on('error',()=>{console.log('denied');process.exit(0)})"`;
        const viaNode = await probe(['IPAddressDeny=any'], connect);
        expect(viaNode.stdout.trim()).toBe('connected');
      } finally {
        server.close();
      }
    });
  });
});

describe.skipIf(!support.ok && !inCi)('startUserManager teardown', () => {
  it('stop() after the manager was killed still removes processes, cgroups, runtime dir and the user it created', async () => {
    const user = `${process.env.AGENTVM_TEST_USER ?? 'agentvm-test'}-t${process.env.VITEST_POOL_ID ?? '0'}`;
    const hadMarker = existsSync('/run/systemd/system');
    const m = await startUserManager({ user });
    await m.writeUnit('sleeper.service', '[Service]\nExecStart=/bin/sleep 300\n');
    await ok(m.systemctl(['daemon-reload']));
    await ok(m.systemctl(['start', 'sleeper.service']));
    const sleeper = await m.mainPid('sleeper.service');
    expect(sleeper).toBeGreaterThan(0);
    // A crashed manager: its units survive it, in its cgroups.
    process.kill(m.managerPid, 'SIGKILL');
    await m.stop();

    // Killed processes may linger as zombies until init reaps them; a zombie runs nothing.
    expect(processesOf(m.uid)).toEqual([]);
    expect(processesOf(m.uid).includes(sleeper)).toBe(false);
    expect(existsSync(m.runtimeDir)).toBe(false);
    expect(
      existsSync(`/sys/fs/cgroup/unified/${user}`) ||
        existsSync(`/sys/fs/cgroup/systemd/${user}`) ||
        existsSync(`/sys/fs/cgroup/${user}`),
    ).toBe(false);
    expect(existsSync(m.home)).toBe(false);
    expect(readFileSync('/etc/passwd', 'utf8')).not.toMatch(new RegExp(`^${user}:`, 'm'));
    expect(existsSync('/run/systemd/system')).toBe(hadMarker);
  });

  it('a manager that is not ready in time is killed and everything it needed is removed', async () => {
    const user = `${process.env.AGENTVM_TEST_USER ?? 'agentvm-test'}-r${process.env.VITEST_POOL_ID ?? '0'}`;
    await expect(startUserManager({ user, readyTimeoutMs: 1 })).rejects.toThrow(/not ready after 1 ms/);
    expect(readFileSync('/etc/passwd', 'utf8')).not.toMatch(new RegExp(`^${user}:`, 'm'));
    expect(
      existsSync(`/sys/fs/cgroup/unified/${user}`) ||
        existsSync(`/sys/fs/cgroup/systemd/${user}`) ||
        existsSync(`/sys/fs/cgroup/${user}`),
    ).toBe(false);
    expect(existsSync(`/run/agentvm-systemd-harness/${user}.owner`)).toBe(false);
  });

  it('refuses a user that is not a dedicated test user', async () => {
    await expect(startUserManager({ user: 'postgres' })).rejects.toThrow(/must match/);
  });
});

describe('SystemdUnavailableError', () => {
  it('says what is missing and how to get it', () => {
    const err = new SystemdUnavailableError('no systemd binary at /lib/systemd/systemd', 'apt-get install systemd');
    expect(err.message).toBe(
      'systemd user manager unavailable: no systemd binary at /lib/systemd/systemd. apt-get install systemd',
    );
    expect(err.howTo).toBe('apt-get install systemd');
  });
});

async function ok(result: Promise<{ code: number; stdout: string; stderr: string }>): Promise<string> {
  const r = await result;
  expect(r.code, r.stderr).toBe(0);
  return r.stdout;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const address = s.address();
      s.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port'))));
    });
  });
}

function fetchJson(port: number): Promise<{ instance: string; pid: number }> {
  return new Promise((resolve, reject) => {
    const req = get({ host: '127.0.0.1', port, path: '/', timeout: 2_000 }, (res) => {
      let body = '';
      res
        .setEncoding('utf8')
        .on('data', (d: string) => {
          body += d;
        })
        .on('end', () => {
          try {
            resolve(JSON.parse(body) as { instance: string; pid: number });
          } catch (err) {
            reject(err);
          }
        });
    });
    req.once('timeout', () => req.destroy(new Error('timeout')));
    req.once('error', reject);
  });
}

/** Type=simple units are "started" when forked, not when listening: poll until the gateway answers. */
async function waitForReply(port: number, timeoutMs = 10_000): Promise<{ instance: string; pid: number }> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await fetchJson(port);
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }
}

/** Live (not zombie) processes running as `uid`. */
function processesOf(uid: number): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^[0-9]+$/.test(entry)) continue;
    try {
      const status = readFileSync(`/proc/${entry}/status`, 'utf8');
      if (new RegExp(`^Uid:\\s+${uid}\\s`, 'm').test(status) && !/^State:\s+Z/m.test(status)) pids.push(Number(entry));
    } catch {
      // exited while we looked
    }
  }
  return pids;
}
