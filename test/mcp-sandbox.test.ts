// A stdio MCP server behind the gateway runs in its own sandboxed unit of a REAL systemd user manager
// (test/support/systemd-user.ts), with the hardening and exec allowlist the caller gives it. The server is the
// attacker: its `escape` tool tries to run /bin/sh. Unsandboxed it succeeds (so the test can fail); sandboxed it
// gets EACCES, while its allowlisted tools keep working through the gateway.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { toolDigest } from '../src/mcp/digest.js';
import { McpGateway } from '../src/mcp/gateway.js';
import { systemdRunSandbox } from '../src/mcp/sandbox.js';
import { SocketClientTransport } from '../src/mcp/socket-transport.js';
import { offeredTools } from '../src/mcp/upstream.js';
import { execDirectives, resolveExec } from '../src/providers/systemd/exec-allowlist.js';
import { assertCheckoutOutsideTmp } from './support/cli.js';
import { startUserManager, userManagerSupport, type UserManager } from './support/systemd-user.js';

const support = userManagerSupport();
const inCi = process.env.CI === 'true';
if (!support.ok && !inCi) console.warn(`mcp-sandbox: skipping: ${support.reason}. ${support.howTo}`);
const SERVER = path.resolve(import.meta.dirname, 'support/mcp-test-server.mjs');

describe.skipIf(!support.ok && !inCi)('MCP gateway: a stdio server in its own sandboxed unit', () => {
  let m: UserManager;
  let dir: string;
  let pins: Array<{ name: string; sha256: string }>;

  beforeAll(async () => {
    assertCheckoutOutsideTmp();
    m = await startUserManager();
    dir = mkdtempSync(path.join(os.tmpdir(), 'mcp-sandbox-'));
    chmodSync(dir, 0o755);
    const offered = await offeredTools(
      { name: 'testsrv', command: [process.execPath, SERVER], cwd: dir },
      { env: { PATH: process.env.PATH ?? '' } },
    );
    pins = ['echo', 'escape'].map((name) => ({ name, sha256: toolDigest(offered.find((t) => t.name === name)!) }));
  }, 120_000);

  afterAll(async () => {
    await m?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  async function escapeThrough(
    sandboxed: boolean,
  ): Promise<{ tools: string[]; echo: unknown; escape: unknown; units: string }> {
    const facts = await resolveExec({
      entrypoint: process.execPath,
      programs: [],
      releaseDir: dir,
      reload: false,
      toHost: (p) => p,
    });
    const properties: Array<[string, string]> = [
      ['PrivateUsers', 'yes'],
      ['NoNewPrivileges', 'yes'],
      ['ProtectSystem', 'strict'],
      ['PrivateTmp', 'yes'],
      ['PrivateDevices', 'yes'],
      ['ProtectHome', 'tmpfs'],
      ['RestrictAddressFamilies', 'AF_UNIX'],
      ['IPAddressDeny', 'any'],
      ...execDirectives({ programs: [], releaseDir: dir, entrypoint: process.execPath, facts, runtimeDirs: [] }),
    ];
    const socketPath = path.join(dir, sandboxed ? 's.sock' : 'u.sock');
    const gateway = new McpGateway({
      workload: 'agent',
      profile: 'main',
      servers: [{ name: 'testsrv', command: [process.execPath, SERVER], cwd: dir, tools: pins }],
      socketPath,
      audit: () => undefined,
      ...(sandboxed
        ? { sandbox: systemdRunSandbox({ properties, workingDirectory: dir, runAs: { uid: m.uid, gid: m.gid } }) }
        : {}),
      env: {
        PATH: process.env.PATH ?? '',
        XDG_RUNTIME_DIR: m.runtimeDir,
        DBUS_SESSION_BUS_ADDRESS: `unix:path=${m.runtimeDir}/bus`,
      },
    });
    await gateway.start();
    const client = new Client({ name: 'profile', version: '1' });
    await client.connect(new SocketClientTransport(socketPath));
    try {
      const tools = (await client.listTools()).tools.map((t) => t.name).sort();
      const echo = await client.callTool({ name: 'echo', arguments: { text: 'hi' } });
      const escape = await client.callTool({ name: 'escape', arguments: {} });
      const units = (await m.systemctl(['list-units', '--type=service', '--state=running', '--no-legend', '--plain']))
        .stdout;
      return { tools, echo, escape, units };
    } finally {
      await client.close();
      await gateway.close();
    }
  }

  it('unsandboxed, the hostile server runs /bin/sh (the control that the sandboxed case can fail)', async () => {
    const r = await escapeThrough(false);
    expect(r.escape).toMatchObject({ content: [{ text: 'escaped' }] });
  }, 60_000);

  it('sandboxed, it runs as a transient unit of the manager, its tools work, and /bin/sh is refused', async () => {
    const r = await escapeThrough(true);
    expect(r.tools).toEqual(['echo', 'escape']);
    expect(r.echo).toMatchObject({ content: [{ text: 'hi' }] });
    expect(r.escape).toMatchObject({ content: [{ text: 'EACCES' }] });
    expect(r.units).toMatch(/^run-\S+\.service\s/m);
  }, 60_000);
});
