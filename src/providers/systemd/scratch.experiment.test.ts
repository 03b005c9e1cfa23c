import { it } from 'vitest';
import { mkdtemp, writeFile, chmod, chown, readFile, cp } from 'node:fs/promises';
import { execFileSync } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { startUserManager } from '../../../test/support/systemd-user.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

it('experiments', async () => {
  const m = await startUserManager();
  try {
    const root = await mkdtemp(path.join(os.tmpdir(), 'exp-root-'));
    await chmod(root, 0o755);
    const rel = path.join(root, 'rel');
    await cp('/work/main/reference-workloads/orchestrator-py', rel, { recursive: true });
    execFileSync('chmod', ['-R', 'a+rX', rel]);
    const secret = path.join(root, 'secret.txt');
    await writeFile(secret, 'hunter2');
    await chown(secret, m.uid, m.gid); await chmod(secret, 0o400);
    const port = 18000 + Math.floor(Math.random() * 1000);
    const unit = `[Unit]
Description=x
[Service]
Type=simple
ExecStart=python3 -m orchestrator
WorkingDirectory=${rel}
Environment=AGENT_PROFILE=core AGENT_LISTEN_PORT=${port} PYTHONDONTWRITEBYTECODE=1 AGENT_REQUIRED_CREDENTIALS=tok AGENTVM_X=abc
LoadCredential=tok:${secret}
PrivateUsers=yes
NoNewPrivileges=yes
ProtectSystem=strict
ProtectHome=tmpfs
PrivateTmp=yes
PrivateDevices=yes
BindReadOnlyPaths=${rel}
RuntimeDirectory=agent-gateway/core
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6
SystemCallFilter=@system-service
SystemCallFilter=~@privileged @resources
SystemCallArchitectures=native
RestrictNamespaces=yes
LockPersonality=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
MemoryDenyWriteExecute=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
ProtectProc=invisible
ProcSubset=pid
CapabilityBoundingSet=
UMask=0077
IPAddressDeny=any
IPAddressAllow=localhost
`;
    await m.writeUnit('x.service', unit);
    console.log((await m.systemctl(['daemon-reload'])).stderr);
    console.log(await m.systemctl(['start', 'x.service']));
    await sleep(1500);
    console.log(await m.show('x.service', ['ActiveState', 'Result', 'ExecMainStatus', 'MainPID', 'ExecMainStartTimestamp', 'ExecMainStartTimestampMonotonic', 'ActiveEnterTimestampMonotonic', 'FragmentPath', 'DropInPaths', 'NeedDaemonReload', 'UnitFileState', 'LoadState']));
    const r = await m.run(['curl', '-s', `http://127.0.0.1:${port}/healthz`]);
    console.log('health', r);
    const pid = await m.mainPid('x.service');
    console.log('environ', (await readFile(`/proc/${pid}/environ`, 'utf8').catch((e) => String(e))).split('\0').filter((l) => l.startsWith('AGENTVM') || l.startsWith('CRED')));
    console.log('cwd', execFileSync('readlink', [`/proc/${pid}/cwd`]).toString());
    const envAsUser = await m.run(['cat', `/proc/${pid}/environ`]);
    console.log('environ as user', envAsUser.code, envAsUser.stderr, envAsUser.stdout.includes('AGENTVM_X'));
    const cwdAsUser = await m.run(['stat', '-L', '-c', '%i', `/proc/${pid}/cwd`]);
    console.log('cwd as user', cwdAsUser, execFileSync('stat', ['-c', '%i', rel]).toString());
    console.log(await m.run(['ls', '-la', `${m.runtimeDir}/credentials/x.service`]));
    console.log('unit-paths', (await m.run(['systemd-analyze', '--user', 'unit-paths'])).stdout);
    // credstore
    await m.writeUnit('cs.service', `[Service]\nType=oneshot\nExecStart=/bin/sh -c 'ls -la $CREDENTIALS_DIRECTORY; cat $CREDENTIALS_DIRECTORY/foo'\nLoadCredential=foo\nStandardOutput=append:%t/cs.log\nStandardError=append:%t/cs.log\n`);
    await m.writeUnit('enc.service', `[Service]\nType=oneshot\nExecStart=/bin/sh -c 'ls -la $CREDENTIALS_DIRECTORY'\nLoadCredentialEncrypted=foo:${root}/nonexist.cred\nStandardOutput=append:%t/cs.log\nStandardError=append:%t/cs.log\n`);
    await m.systemctl(['daemon-reload']);
    console.log('credstore', await m.systemctl(['start', 'cs.service']), await m.show('cs.service', ['Result', 'ExecMainStatus']));
    console.log('encrypted', await m.systemctl(['start', 'enc.service']), await m.show('enc.service', ['Result', 'ExecMainStatus']));
    console.log(await readFile(`${m.runtimeDir}/cs.log`, 'utf8').catch((e) => String(e)));
    // offline enable
    await m.writeUnit('off@.service', `[Service]\nExecStart=/bin/true\n[Install]\nWantedBy=default.target\n`);
    console.log('offline enable', await m.run(['systemctl', '--user', 'enable', 'off@a.service'], { env: { SYSTEMD_OFFLINE: '1' } }));
    console.log('is-enabled', await m.run(['systemctl', '--user', 'is-enabled', 'off@a.service']));
  } finally {
    await m.stop();
  }
});
