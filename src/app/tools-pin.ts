// `agentvm tools pin <workload>`: what the workload's MCP servers offer now, against the contract's pins, and the
// contract diff that would accept the new descriptions — like `terraform providers lock`, but never written: the
// reviewer applies the diff (a changed description is exactly what a rug pull looks like, so accepting it is a
// human decision). Tools a server offers but the contract does not list are reported, never added.
// Reads the contract from the working tree (the file the reviewer edits), not from a commit.

import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseYamlDocument } from '../contracts/yaml-document.js';
import { userError } from '../diagnostics/index.js';
import type { ToolsPinResult } from '../generated/tools-pin-result.js';
import type { WorkloadContract } from '../generated/workload-contract.js';
import { toolDigest } from '../mcp/digest.js';
import { offeredTools } from '../mcp/upstream.js';
import { systemdRunSandbox } from '../mcp/sandbox.js';
import { accountNamed, SYSTEMD_USER_ENV } from '../providers/systemd/systemctl.js';

export interface PinToolsInput {
  repo: string;
  workload: string;
  /** Where a stdio server's command runs (its release); default the workload's directory in the repository. */
  releaseDir?: string;
  /**
   * How stdio servers are started: in a transient unit (pinSandbox()), or — only when the operator says so with
   * --no-sandbox — as the caller; undefined: there is no manager, and a stdio server is refused (tools.no-sandbox).
   * Never silently unsandboxed.
   */
  sandbox: PinSandbox | 'none' | undefined;
}

export interface PinSandbox {
  wrap: (argv: string[]) => string[];
  env: Record<string, string>;
  where: string;
}

const PIN_PATH = '/usr/local/bin:/usr/bin:/bin';

/**
 * A sandbox for the servers `tools pin` starts: a transient unit (systemd-run) with no network, a read-only system,
 * no home, and an unprivileged identity — of the user manager of AGENTVM_SYSTEMD_USER (or of the caller when it is
 * not root and has one), else of the system manager as a dynamic user. Undefined when there is no manager.
 */
export function pinSandbox(releaseDir: string): PinSandbox | undefined {
  const base: Array<[string, string]> = [
    ['NoNewPrivileges', 'yes'],
    ['PrivateNetwork', 'yes'],
    ['RestrictAddressFamilies', 'AF_UNIX'],
    ['IPAddressDeny', 'any'],
    ['ProtectSystem', 'strict'],
    ['PrivateTmp', 'yes'],
    ['PrivateDevices', 'yes'],
  ];
  const named = process.env[SYSTEMD_USER_ENV];
  const account = named
    ? accountNamed(named)
    : process.getuid?.() !== 0 && process.env.XDG_RUNTIME_DIR
      ? {
          user: os.userInfo().username,
          uid: process.getuid!(),
          gid: process.getgid!(),
          runtimeDir: process.env.XDG_RUNTIME_DIR,
        }
      : undefined;
  if (account && existsSync(path.join(account.runtimeDir, 'systemd/private'))) {
    const runAs = process.getuid?.() !== account.uid ? { runAs: { uid: account.uid, gid: account.gid } } : {};
    return {
      wrap: systemdRunSandbox({
        properties: [...base, ['PrivateUsers', 'yes'], ['ProtectHome', 'tmpfs']],
        workingDirectory: releaseDir,
        scope: 'user',
        env: { PATH: PIN_PATH },
        ...runAs,
      }),
      env: {
        PATH: PIN_PATH,
        XDG_RUNTIME_DIR: account.runtimeDir,
        DBUS_SESSION_BUS_ADDRESS: `unix:path=${account.runtimeDir}/bus`,
      },
      where: `a transient unit of ${account.user}'s user manager`,
    };
  }
  if (process.getuid?.() === 0 && existsSync('/run/systemd/system')) {
    return {
      wrap: systemdRunSandbox({
        properties: [...base, ['DynamicUser', 'yes'], ['ProtectHome', 'yes']],
        workingDirectory: releaseDir,
        scope: 'system',
        env: { PATH: PIN_PATH },
      }),
      env: { PATH: PIN_PATH },
      where: 'a transient unit of the system manager (a dynamic user)',
    };
  }
  return undefined;
}

export async function pinTools(input: PinToolsInput): Promise<ToolsPinResult> {
  if (!/^[a-z][a-z0-9-]{0,62}$/.test(input.workload))
    throw userError(
      'tools.workload',
      `${JSON.stringify(input.workload)} is not a workload name.`,
      'Name a directory under workloads/ of the repository.',
    );
  const rel = path.posix.join('workloads', input.workload, 'contract.yaml');
  const file = path.join(input.repo, rel);
  const text = await readFile(file, 'utf8').catch(() => {
    throw userError(
      'tools.no-contract',
      `${rel} does not exist in ${input.repo}.`,
      'Pass --repo (the desired-state repository) and a workload that has a contract.',
    );
  });
  const doc = parseYamlDocument(rel, text);
  const bad = doc.diagnostics.find((d) => d.severity === 'error');
  if (bad)
    throw userError(
      'tools.contract-invalid',
      `${rel}:${bad.location?.line ?? 1}: ${bad.summary}`,
      'Fix the contract (`agentvm validate` says more), then pin again.',
    );
  const tools = (doc.value as WorkloadContract | undefined)?.spec?.tools ?? [];
  const lines = text.split('\n');
  const edits = new Map<number, string>();
  const out: ToolsPinResult['tools'] = [];
  const cwd = input.releaseDir ?? path.join(input.repo, 'workloads', input.workload);
  for (const [i, entry] of tools.entries()) {
    if (entry.kind !== 'mcp') continue;
    const sandbox = input.sandbox;
    if (entry.command && sandbox === undefined) {
      throw userError(
        'tools.no-sandbox',
        `${rel}: MCP server ${entry.name} is a stdio server, and there is no systemd manager to sandbox it in: \`tools pin\` does not start a tool server unconfined on its own.`,
        `Set ${SYSTEMD_USER_ENV}=<account> to use that account's user manager, run as root where systemd is PID 1, or pass --no-sandbox for servers you trust.`,
      );
    }
    let offered;
    try {
      offered = await offeredTools(
        {
          name: entry.name,
          ...(entry.command ? { command: entry.command, cwd } : {}),
          ...(entry.url ? { url: entry.url } : {}),
        },
        sandbox === 'none' || sandbox === undefined
          ? { env: { PATH: PIN_PATH } }
          : { env: sandbox.env, sandbox: sandbox.wrap },
      );
    } catch (err) {
      throw userError(
        'tools.server-unreachable',
        `${rel}: MCP server ${entry.name} (${entry.url ?? entry.command?.join(' ')}) could not be reached: ${(err as Error).message}.`,
        'Start or install the server (a stdio command runs in --release-dir), then pin again.',
      );
    }
    const pins = entry.tools ?? [];
    for (const [j, pin] of pins.entries()) {
      const now = offered.find((t) => t.name === pin.name);
      const seen = now ? toolDigest(now) : null;
      const status = seen === null ? 'missing' : seen === pin.sha256 ? 'unchanged' : 'changed';
      out.push({ server: entry.name, tool: pin.name, status, pinned: pin.sha256, seen });
      if (status === 'changed') {
        const line = doc.locate(['spec', 'tools', i, 'tools', j, 'sha256']).line - 1;
        edits.set(line, lines[line]!.replace(pin.sha256, seen!));
      }
    }
    for (const t of offered)
      if (!pins.some((p) => p.name === t.name))
        out.push({ server: entry.name, tool: t.name, status: 'unlisted', pinned: null, seen: toolDigest(t) });
  }
  return { workload: input.workload, contract: rel, tools: out, diff: unifiedDiff(rel, lines, edits) };
}

/** One hunk per changed line (pins are one line each), with a line of context either side. */
function unifiedDiff(rel: string, lines: readonly string[], edits: ReadonlyMap<number, string>): string {
  if (edits.size === 0) return '';
  const out = [`--- a/${rel}`, `+++ b/${rel}`];
  for (const n of [...edits.keys()].sort((a, b) => a - b)) {
    const from = Math.max(0, n - 1);
    const to = Math.min(lines.length - 1, n + 1);
    out.push(`@@ -${from + 1},${to - from + 1} +${from + 1},${to - from + 1} @@`);
    for (let k = from; k <= to; k++) {
      if (k === n) out.push(`-${lines[k]}`, `+${edits.get(k)}`);
      else out.push(` ${lines[k]}`);
    }
  }
  return `${out.join('\n')}\n`;
}
