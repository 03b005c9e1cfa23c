// The scheduled drift job (examples/drift): the shipped service and timer pass `systemd-analyze verify` offline, and
// the service runs for real under a systemd user manager (test/support/systemd-user.ts) against an applied example
// host root: exit 0 and a "no drift" summary line on a clean host, exit 2 (ExecMainStatus=2, unit failed) and a
// "DRIFT" summary line naming the address once a release file was edited by hand.
// The harness has no journald, so the test's drop-in sends the unit's stdout to a file (StandardOutput=append:) —
// the same line the journal gets — and the test also reads the JSON report the wrapper keeps in StateDirectory=.
// The drop-in also carries what this machine and a non-default root need: the wrapper's and agentvm's paths
// (ExecStart=, AGENTVM_BIN), PrivateUsers=yes (without it a user manager silently skips ProtectSystem=/PrivateTmp=
// and refuses PrivateDevices=; decisions/notes-systemd-harness.md) and ReadWritePaths= for the root's git cache.
import { execFileSync, spawnSync } from 'node:child_process';
import {
  appendFileSync,
  chmodSync,
  cpSync,
  existsSync,
  mkdtempSync,
  readFileSync,
  readlinkSync,
  rmSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { verifyUnits } from '../src/providers/systemd/analyze.js';
import { agentvm, assertBuilt, BIN, ROOT } from './support/cli.js';
import { fleetCopy, type FleetCopy } from './support/fleet.js';
import { startUserManager, userManagerSupport, type UserManager } from './support/systemd-user.js';

const DRIFT_DIR = join(ROOT, 'examples', 'drift');
const SERVICE = readFileSync(join(DRIFT_DIR, 'agentvm-drift@.service'), 'utf8');
const TIMER = readFileSync(join(DRIFT_DIR, 'agentvm-drift@.timer'), 'utf8');
const WRAPPER = readFileSync(join(DRIFT_DIR, 'agentvm-drift.mjs'), 'utf8');

const support = userManagerSupport();
const inCi = process.env.CI === 'true';
const analyzer = (() => {
  try {
    execFileSync('systemd-analyze', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();
if (!support.ok && !inCi)
  console.warn(`drift-timer: skipping the user-manager run: ${support.reason}. ${support.howTo}`);
if (!analyzer && !inCi)
  console.warn(
    'drift-timer: skipping systemd-analyze verify: install systemd (apt-get install systemd) for systemd-analyze',
  );

function testDropIn(home: string, root: string): string {
  return [
    '[Service]',
    'ExecStart=',
    `ExecStart=${home}/libexec/agentvm-drift.mjs %i`,
    `StandardOutput=append:${home}/drift-%i.log`,
    'PrivateUsers=yes',
    `ReadWritePaths=${root}/var/cache/agentvm`,
    // A checkout under /tmp (some CI runners) would be hidden by the unit's PrivateTmp=: bind agentvm itself in.
    ...(ROOT.startsWith('/tmp/') ? [`BindReadOnlyPaths=${ROOT}`] : []),
    '',
  ].join('\n');
}

describe('drift units: offline checks', () => {
  it.runIf(inCi)('systemd-analyze is installed in CI', () => expect(analyzer).toBe(true));

  it.skipIf(!analyzer && !inCi)(
    'GIVEN the shipped units THEN systemd-analyze verify finds no error; only the wrapper, not installed here, is missing',
    async () => {
      const files = [
        { name: 'agentvm-drift@.service', text: SERVICE },
        { name: 'agentvm-drift@.timer', text: TIMER },
      ];
      for (const scope of ['system', 'user'] as const) {
        const diagnostics = await verifyUnits(files, { scope });
        expect(
          diagnostics.filter((d) => d.severity === 'error'),
          `${scope}: ${JSON.stringify(diagnostics)}`,
        ).toEqual([]);
        expect(
          diagnostics.map((d) => d.code).filter((c) => c !== 'systemd.missing-executable'),
          scope,
        ).toEqual([]);
      }
    },
  );

  it.skipIf(!analyzer && !inCi)(
    'GIVEN the units with the test drop-in and an installed wrapper THEN systemd-analyze verify is clean',
    async () => {
      const diagnostics = await verifyUnits(
        [
          {
            name: 'agentvm-drift@.service',
            text: SERVICE.replace('/usr/local/libexec/agentvm-drift.mjs', join(DRIFT_DIR, 'agentvm-drift.mjs')),
          },
          { name: 'agentvm-drift@.timer', text: TIMER },
          {
            name: 'agentvm-drift@edge-1.service.d/50-test.conf',
            text: testDropIn('/tmp', '/tmp/root').replace(
              '/tmp/libexec/agentvm-drift.mjs',
              join(DRIFT_DIR, 'agentvm-drift.mjs'),
            ),
          },
        ],
        { scope: 'user' },
      );
      expect(diagnostics).toEqual([]);
    },
  );

  it('the service does not count drift (2) as success, so a drifted host is a failed unit', () => {
    expect(SERVICE).not.toMatch(/^SuccessExitStatus=.*\b2\b/m);
    expect(SERVICE).toMatch(/^Type=oneshot$/m);
    expect(TIMER).toMatch(/^Unit=agentvm-drift@%i\.service$/m);
  });
});

describe('the drift wrapper, run directly', () => {
  it('GIVEN agentvm cannot check (unknown repo) THEN it exits 1 with one error line and still keeps the report', () => {
    const state = mkdtempSync(join(tmpdir(), 'agentvm-drift-state-'));
    try {
      const r = spawnSync(process.execPath, [join(DRIFT_DIR, 'agentvm-drift.mjs'), 'edge-1'], {
        encoding: 'utf8',
        env: {
          ...process.env,
          AGENTVM_REPO: join(state, 'no-such-repo'),
          AGENTVM_ROOT: join(state, 'root'),
          AGENTVM_BIN: BIN,
          STATE_DIRECTORY: state,
        },
      });
      expect(r.status, r.stderr).toBe(1);
      expect(r.stdout.trim().split('\n')).toHaveLength(1);
      expect(r.stdout).toMatch(/^<3>agentvm-drift edge-1: error: agentvm drift exited 1: [\w.-]+: /);
      expect(JSON.parse(readFileSync(join(state, 'edge-1.json'), 'utf8'))).toHaveProperty('error.code');
    } finally {
      rmSync(state, { recursive: true, force: true });
    }
  });

  it('GIVEN no AGENTVM_REPO or a bad instance name THEN it exits 1 and says what to set', () => {
    const env = { ...process.env, AGENTVM_REPO: '' };
    const noRepo = spawnSync(process.execPath, [join(DRIFT_DIR, 'agentvm-drift.mjs'), 'edge-1'], {
      encoding: 'utf8',
      env,
    });
    expect(noRepo.status).toBe(1);
    expect(noRepo.stdout).toContain('AGENTVM_REPO is not set');
    const badHost = spawnSync(process.execPath, [join(DRIFT_DIR, 'agentvm-drift.mjs'), '../etc'], {
      encoding: 'utf8',
      env: { ...env, AGENTVM_REPO: '/x' },
    });
    expect(badHost.status).toBe(1);
    expect(badHost.stdout).toContain('is not a host name');
  });
});

describe.skipIf(!support.ok && !inCi)('drift service on a real systemd user manager', () => {
  let m: UserManager;
  let fleet: FleetCopy;
  let base = '';
  let repo = '';
  let root = '';
  const unit = 'agentvm-drift@edge-1.service';
  const reports = new Set<string>();

  beforeAll(async () => {
    assertBuilt();
    m = await startUserManager();
    // The fleet lives in the user's home: the unit's PrivateTmp= hides /tmp, and the user must own what it reads.
    fleet = fleetCopy();
    base = join(m.home, 'drift-fleet');
    cpSync(fleet.base, base, { recursive: true });
    repo = join(base, 'fleet');
    root = join(base, 'root');
    const apply = await agentvm(['apply', '--repo', repo, '--host', 'edge-1', '--root', root, '--auto-approve']);
    expect(apply.code, apply.stdout + apply.stderr).toBe(0);
    execFileSync('chown', ['-R', `${m.uid}:${m.gid}`, base]);

    await m.writeFile('libexec/agentvm-drift.mjs', WRAPPER, 0o755);
    await m.writeFile(
      '.config/agentvm/drift/edge-1.env',
      `AGENTVM_REPO=${repo}\nAGENTVM_ROOT=${root}\nAGENTVM_REF=HEAD\nAGENTVM_BIN=${BIN}\n`,
    );
    await m.writeUnit('agentvm-drift@.service', SERVICE);
    await m.writeUnit('agentvm-drift@.timer', TIMER);
    await m.writeUnit('agentvm-drift@edge-1.service.d/50-test.conf', testDropIn(m.home, root));
    const reload = await m.systemctl(['daemon-reload']);
    expect(reload.code, reload.stderr).toBe(0);
  });

  afterAll(async () => {
    fleet?.cleanup();
    if (base) rmSync(base, { recursive: true, force: true });
    if (m) {
      for (const r of reports) rmSync(dirname(r), { recursive: true, force: true });
      rmSync(join(m.home, 'drift-edge-1.log'), { force: true });
      await m.stop();
    }
  });

  const summaryLines = () =>
    existsSync(join(m.home, 'drift-edge-1.log'))
      ? readFileSync(join(m.home, 'drift-edge-1.log'), 'utf8').trim().split('\n')
      : [];
  // StateDirectory= of a user unit is ~/.config before systemd 254 and ~/.local/state after: read the path the line names.
  const reportOf = (line: string | undefined) => {
    const file = / report (\S+\.json)[;]?/.exec(line ?? '')?.[1];
    expect(file, `no report path in: ${line}`).toBeDefined();
    reports.add(file!);
    return JSON.parse(readFileSync(file!, 'utf8')) as { drift: Array<{ address: string }>; mode: string };
  };

  it('the timer loads and names the service', async () => {
    expect(await m.show('agentvm-drift@edge-1.timer', ['LoadState', 'Unit'])).toEqual({
      LoadState: 'loaded',
      Unit: unit,
    });
  });

  it('GIVEN a host that matches its lockfile WHEN the service runs once THEN it exits 0 and writes one "no drift" line', async () => {
    const t0 = performance.now();
    const start = await m.systemctl(['start', unit]);
    const seconds = (performance.now() - t0) / 1000;
    const props = await m.show(unit, ['Result', 'ExecMainStatus', 'ActiveState']);
    const lines = summaryLines();
    expect(start.code, `${start.stderr}\n${JSON.stringify(props)}\n${lines.join('\n')}`).toBe(0);
    console.info(`drift-timer: clean drift run under the user manager took ${seconds.toFixed(2)} s`);
    expect(props).toEqual({ Result: 'success', ExecMainStatus: '0', ActiveState: 'inactive' });
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^<6>agentvm-drift edge-1: no drift; commit [0-9a-f]{12}, lockfile serial \d+; /);
    expect(reportOf(lines[0])).toMatchObject({ mode: 'refresh-only', drift: [] });
  });

  it('GIVEN a release file edited by hand WHEN the service runs once THEN it exits 2, the unit is failed, and the summary names the drift', async () => {
    const dir = join(root, 'var/lib/agentvm/releases', 'research-orchestrator');
    const file = join(dir, readlinkSync(join(dir, 'current')), 'orchestrator', '__main__.py');
    chmodSync(file, 0o644);
    appendFileSync(file, '\n# hot fix made by hand\n');

    const start = await m.systemctl(['start', unit]);
    const props = await m.show(unit, ['Result', 'ExecMainStatus', 'ActiveState']);
    const lines = summaryLines();
    expect(start.code, `${start.stderr}\n${JSON.stringify(props)}\n${lines.join('\n')}`).not.toBe(0);
    expect(props).toEqual({ Result: 'exit-code', ExecMainStatus: '2', ActiveState: 'failed' });
    expect(lines).toHaveLength(2);
    expect(lines[1]).toMatch(
      /^<4>agentvm-drift edge-1: DRIFT in 1 resource\(s\): release\.research-orchestrator \(live-modified\); .*exit 2; report .*edge-1\.json; repair with agentvm apply$/,
    );
    expect(reportOf(lines[1]).drift.map((d) => d.address)).toEqual(['release.research-orchestrator']);
    const failed = await m.systemctl(['list-units', '--failed', '--plain', '--no-legend']);
    expect(failed.stdout).toContain(unit);
  });
});
