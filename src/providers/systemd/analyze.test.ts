// verifyUnits and securityExposure against the real systemd-analyze (offline, no manager), and the output
// mapping over recorded systemd 252 output.
import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  parseExposure,
  parseVerifyOutput,
  securityExposure,
  systemdVersion,
  UnitCheckCode,
  verifyUnits,
} from './analyze.js';

const hasAnalyze = spawnSync('systemd-analyze', ['--version']).status === 0;
const inCi = process.env.CI === 'true';
if (!hasAnalyze && !inCi)
  console.warn('analyze.test: skipping the systemd-analyze tests: not installed (apt-get install systemd)');

const GATEWAY = `[Unit]
Description=agentvm gateway %i

[Service]
Type=simple
ExecStart=${process.execPath} %h/gateway/server.mjs
NoNewPrivileges=yes

[Install]
WantedBy=default.target
`;

const HARDENED = `[Service]
ExecStart=/bin/true
DynamicUser=yes
PrivateUsers=yes
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes
PrivateDevices=yes
PrivateNetwork=yes
NoNewPrivileges=yes
CapabilityBoundingSet=
SystemCallFilter=@system-service
SystemCallArchitectures=native
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectControlGroups=yes
RestrictAddressFamilies=AF_UNIX
RestrictNamespaces=yes
MemoryDenyWriteExecute=yes
LockPersonality=yes
`;

const codes = (ds: { code: string; severity: string }[]) => ds.map((d) => `${d.severity}:${d.code}`).sort();

describe('systemd-analyze is present in CI', () => {
  it.runIf(inCi)('systemd-analyze --version runs', () => {
    expect(hasAnalyze, 'systemd-analyze is required in CI (apt-get install systemd)').toBe(true);
  });
});

describe.skipIf(!hasAnalyze && !inCi)('verifyUnits (real systemd-analyze)', () => {
  it('accepts a valid template and an instance drop-in', async () => {
    const ds = await verifyUnits([
      { name: 'agent-gateway@.service', text: GATEWAY },
      { name: 'agent-gateway@core.service.d/10-profile.conf', text: '[Service]\nEnvironment=PORT=18431\n' },
    ]);
    expect(ds).toEqual([]);
  });

  it('reports unknown keys and unparsable values with the file and line they are on', async () => {
    const ds = await verifyUnits([
      {
        name: 'agent-gateway@.service',
        text: GATEWAY.replace('NoNewPrivileges=yes', 'NoNewPrivileges=yes\nProtectSystem=sometimes'),
      },
      {
        name: 'agent-gateway@core.service.d/10-profile.conf',
        text: '[Service]\nEnvironment=PORT=1\nPrivateTmpp=yes\n',
      },
    ]);
    expect(ds).toContainEqual(
      expect.objectContaining({
        code: UnitCheckCode.InvalidValue,
        severity: 'error',
        location: { file: 'agent-gateway@.service', line: 8, column: 1 },
      }),
    );
    expect(ds).toContainEqual(
      expect.objectContaining({
        code: UnitCheckCode.UnknownKey,
        severity: 'error',
        summary: "Unknown key 'PrivateTmpp' in section [Service], ignoring.",
        location: { file: 'agent-gateway@core.service.d/10-profile.conf', line: 3, column: 1 },
      }),
    );
    // The temporary directory never leaks into a message.
    expect(JSON.stringify(ds)).not.toContain(os.tmpdir());
  });

  it('says a unit with a fatal error will not start', async () => {
    const ds = await verifyUnits([{ name: 'bad.service', text: '[Service]\nExecStart=relative/path\n' }]);
    expect(codes(ds)).toEqual(['error:systemd.invalid-value', 'error:systemd.unit-not-loadable']);
    expect(ds.find((d) => d.code === UnitCheckCode.NotLoadable)?.summary).toBe(
      'systemd will not start bad.service: its configuration has a fatal error',
    );
  });

  it('reports a missing program and a missing required unit as host-dependent warnings', async () => {
    const ds = await verifyUnits([
      {
        name: 'needs.service',
        text: '[Unit]\nRequires=agentvm-no-such-unit.service\n[Service]\nExecStart=/opt/agentvm-no-such/bin/gateway\n',
      },
    ]);
    expect(codes(ds)).toEqual(['warning:systemd.missing-dependency', 'warning:systemd.missing-executable']);
    expect(ds.map((d) => d.summary)).toContain(
      'needs.service: its dependency agentvm-no-such-unit.service does not exist on this host',
    );
  });

  it('verifies in user scope too', async () => {
    const ds = await verifyUnits([{ name: 'x.service', text: '[Service]\nExecStart=/bin/true\nBogus=1\n' }], {
      scope: 'user',
    });
    expect(codes(ds)).toEqual(['error:systemd.unknown-key']);
  });

  it('refuses names that are not unit or drop-in names, before writing anything', async () => {
    const before = leftovers();
    const ds = await verifyUnits([
      { name: '../etc/passwd', text: '' },
      { name: 'x.service.d/../../y.service', text: '' },
      { name: 'notes.txt', text: '' },
    ]);
    expect(codes(ds)).toEqual(['error:systemd.unit-name', 'error:systemd.unit-name', 'error:systemd.unit-name']);
    expect(leftovers()).toEqual(before);
  });

  it('returns nothing for an empty set and leaves no temporary directories behind', async () => {
    const before = leftovers();
    expect(await verifyUnits([])).toEqual([]);
    await verifyUnits([{ name: 'x.service', text: '[Service]\nExecStart=/bin/true\n' }], { scope: 'user' });
    expect(leftovers()).toEqual(before);
  });
});

describe.skipIf(!hasAnalyze && !inCi)('securityExposure (real systemd-analyze)', () => {
  it('scores an unprotected service as exposed and a hardened one as much less exposed', async () => {
    const version = await systemdVersion();
    expect(version).toBeGreaterThan(200);
    const dir = mkdtempSync(path.join(os.tmpdir(), 'agentvm-exposure-test-'));
    try {
      writeFileSync(path.join(dir, 'plain.service'), '[Service]\nExecStart=/bin/true\n');
      writeFileSync(path.join(dir, 'hard.service'), HARDENED);
      writeFileSync(path.join(dir, 'agent-gateway@.service'), GATEWAY);
      const plain = await securityExposure(path.join(dir, 'plain.service'));
      const hard = await securityExposure(path.join(dir, 'hard.service'));
      if (version! < 250) {
        expect([plain, hard]).toEqual([null, null]);
        return;
      }
      expect(plain).toBeGreaterThanOrEqual(9);
      expect(hard).toBeLessThan(4);
      // An instance path works when its template is beside it.
      expect(await securityExposure(path.join(dir, 'agent-gateway@core.service'))).toBeGreaterThan(hard!);
      expect(await securityExposure(path.join(dir, 'x.timer'))).toBeNull();
      await expect(securityExposure(path.join(dir, 'absent.service'))).rejects.toThrow(/absent\.service/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('parseVerifyOutput (recorded systemd 252 output)', () => {
  const dir = '/tmp/agentvm-units-abc123';

  it('maps file:line messages, fatal errors and host-dependent problems', () => {
    const output = [
      `${dir}/agent-gateway@.service:8: Unknown key 'Bogus' in section [Service], ignoring.`,
      `${dir}/agent-gateway@.service:9: Failed to parse protect system value, ignoring: sometimes`,
      `${dir}/w.service:3: Special user nobody configured, this is not safe!`,
      `${dir}/bad.service:2: Neither a valid executable name nor an absolute path: relative/path`,
      'bad.service: Unit configuration has fatal error, unit will not be started.',
      'Unit bad.service has a bad unit file setting.',
      'dep.service: Failed to create dep.service/start: Unit nonexistent.service not found.',
      'dep.service: Command /usr/bin/does-not-exist is not executable: No such file or directory',
    ].join('\n');
    const ds = parseVerifyOutput(output, dir, 1);
    expect(ds.map((d) => [d.severity, d.code, d.location?.file ?? '', d.location?.line ?? 0])).toEqual([
      ['error', 'systemd.unknown-key', 'agent-gateway@.service', 8],
      ['error', 'systemd.invalid-value', 'agent-gateway@.service', 9],
      ['warning', 'systemd.unit-advisory', 'w.service', 3],
      ['error', 'systemd.invalid-value', 'bad.service', 2],
      ['warning', 'systemd.missing-dependency', '', 0],
      ['warning', 'systemd.missing-executable', '', 0],
      ['error', 'systemd.unit-not-loadable', '', 0],
    ]);
    expect(ds[5]!.summary).toBe(
      'dep.service: /usr/bin/does-not-exist is not executable on this host (No such file or directory)',
    );
  });

  it('turns unrecognised output of a failed run into one error, and of a passing run into a warning', () => {
    const failed = parseVerifyOutput(
      'Failed to lookup RuntimeDirectory path: No such device or address\nFailed to initialize manager: No such device or address\n',
      dir,
      1,
    );
    expect(failed).toEqual([
      expect.objectContaining({
        code: 'systemd.verify',
        severity: 'error',
        summary: 'systemd-analyze verify: Failed to lookup RuntimeDirectory path: No such device or address',
      }),
    ]);
    expect(parseVerifyOutput('Something new in systemd 260.\n', dir, 0)).toEqual([
      expect.objectContaining({ code: 'systemd.verify', severity: 'warning' }),
    ]);
    expect(parseVerifyOutput('', dir, 1)).toEqual([
      expect.objectContaining({ code: 'systemd.verify', severity: 'error' }),
    ]);
    expect(parseVerifyOutput('', dir, 0)).toEqual([]);
  });
});

describe('parseExposure', () => {
  it('reads the overall score and nothing else', () => {
    expect(
      parseExposure(
        '✗ UMask=   Files created by service are world-readable by default   0.1\n\n→ Overall exposure level for plain.service: 9.6 UNSAFE 😨\n',
      ),
    ).toBe(9.6);
    expect(parseExposure('→ Overall exposure level for hard.service: 3 OK 🙂')).toBe(3);
    expect(parseExposure('Unit nope.service not found.')).toBeNull();
  });
});

/** Temporary directories analyze.ts creates, to prove it removes them. */
/** Temp dirs of this process only: other test workers run verifyUnits at the same time. */
function leftovers(): string[] {
  return readdirSync(os.tmpdir())
    .filter(
      (e) => e.startsWith(`agentvm-units-${process.pid}-`) || e.startsWith(`agentvm-analyze-runtime-${process.pid}-`),
    )
    .sort();
}
