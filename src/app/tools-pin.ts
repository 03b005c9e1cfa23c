// `agentvm tools pin <workload>`: what the workload's MCP servers offer now, against the contract's pins, and the
// contract diff that would accept the new descriptions — like `terraform providers lock`, but never written: the
// reviewer applies the diff (a changed description is exactly what a rug pull looks like, so accepting it is a
// human decision). Tools a server offers but the contract does not list are reported, never added.
// Reads the contract from the working tree (the file the reviewer edits), not from a commit.
// Servers are reached with no more than the workload gets: a stdio server in a sandbox (pinSandbox), an HTTP server
// only through an egress proxy holding the contract's own rules for its MCP gateway (tools-pin-proxy.ts), so a URL
// the contract does not allow as a destination is refused (tools.egress-refused) and the refusal audited.

import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseYamlDocument } from '../contracts/yaml-document.js';
import { userError } from '../diagnostics/index.js';
import type { ToolsPinResult } from '../generated/tools-pin-result.js';
import type { WorkloadContract } from '../generated/workload-contract.js';
import type { Tool as OfferedTool } from '@modelcontextprotocol/sdk/types.js';
import { toolDigest } from '../mcp/digest.js';
import { offeredTools } from '../mcp/upstream.js';
import { systemdRunSandbox } from '../mcp/sandbox.js';
import { EgressRefusedError } from '../mcp/proxied-fetch.js';
import { startPinProxy, type PinProxy } from './tools-pin-proxy.js';
import { accountNamed, SYSTEMD_USER_ENV } from '../providers/systemd/systemctl.js';

export interface PinToolsInput {
  repo: string;
  /** Host root: the egress proxy's refusals are audited in its audit log (<root>/var/log/agentvm). */
  root: string;
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
  const spec = (doc.value as WorkloadContract | undefined)?.spec;
  const tools = spec?.tools ?? [];
  const lines = text.split('\n');
  const edits = new Map<number, string>();
  const out: ToolsPinResult['tools'] = [];
  const cwd = input.releaseDir ?? path.join(input.repo, 'workloads', input.workload);
  const servers = tools.flatMap((entry, i) => (entry.kind === 'mcp' ? [{ entry, i }] : []));
  const urls = servers.filter((s) => s.entry.url !== undefined).map((s) => ({ url: s.entry.url! }));
  const proxy = urls.length
    ? await startPinProxy({ root: input.root, workload: input.workload, egress: spec?.egress ?? [], servers: urls })
    : undefined;
  try {
    for (const { entry, i } of servers) {
      const offered = await offeredBy(entry, i, { rel, doc, cwd, sandbox: input.sandbox, proxy });
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
  } finally {
    await proxy?.close();
  }
  return { workload: input.workload, contract: rel, tools: out, diff: unifiedDiff(rel, lines, edits) };
}

/** A `tools[]` entry of kind mcp. */
type McpEntry = NonNullable<WorkloadContract['spec']['tools']>[number];

/** What one server offers now: a stdio server started in the sandbox, an HTTP server reached through the pin proxy. */
async function offeredBy(
  entry: McpEntry,
  i: number,
  ctx: {
    rel: string;
    doc: ReturnType<typeof parseYamlDocument>;
    cwd: string;
    sandbox: PinToolsInput['sandbox'];
    proxy: PinProxy | undefined;
  },
): Promise<OfferedTool[]> {
  const { rel, sandbox, proxy } = ctx;
  if (entry.command && sandbox === undefined) {
    throw userError(
      'tools.no-sandbox',
      `${rel}: MCP server ${entry.name} is a stdio server, and there is no systemd manager to sandbox it in: \`tools pin\` does not start a tool server unconfined on its own.`,
      `Set ${SYSTEMD_USER_ENV}=<account> to use that account's user manager, run as root where systemd is PID 1, or pass --no-sandbox for servers you trust.`,
    );
  }
  const stdio =
    sandbox === 'none' || sandbox === undefined
      ? { env: { PATH: PIN_PATH } }
      : { env: sandbox.env, sandbox: sandbox.wrap };
  try {
    return await offeredTools(
      {
        name: entry.name,
        ...(entry.command ? { command: entry.command, cwd: ctx.cwd } : {}),
        ...(entry.url ? { url: entry.url } : {}),
      },
      entry.url ? { fetch: proxy!.fetch } : stdio,
    );
  } catch (err) {
    if (err instanceof EgressRefusedError) throw await egressRefused(entry, i, ctx, err);
    throw userError(
      'tools.server-unreachable',
      `${rel}: MCP server ${entry.name} (${entry.url ?? entry.command?.join(' ')}) could not be reached: ${(err as Error).message}.`,
      'Start or install the server (a stdio command runs in --release-dir), then pin again.',
    );
  }
}

/** The proxy refused the server's URL: name the contract line, the proxy's reason, and where it was audited. */
async function egressRefused(
  entry: McpEntry,
  i: number,
  ctx: { rel: string; doc: ReturnType<typeof parseYamlDocument>; proxy: PinProxy | undefined },
  err: EgressRefusedError,
): Promise<Error> {
  const line = ctx.doc.locate(['spec', 'tools', i, 'url']).line;
  const unaudited = (await ctx.proxy?.close()) ?? [];
  const audit = unaudited.length
    ? `; the refusal could NOT be audited (${unaudited.join('; ')})`
    : `; audited in ${ctx.proxy?.auditFile} as ${ctx.proxy?.caller}`;
  return userError(
    'tools.egress-refused',
    `${ctx.rel}:${line}: MCP server ${entry.name} at ${entry.url} is not an allowed destination of this contract: ${err.reason.replace(/\.$/, '')}${audit}.`,
    `\`tools pin\` reaches an HTTP server only as the workload's MCP gateway would: through the egress proxy, to a host:port listed exactly in spec.egress. Fix the URL, or add its destination to spec.egress after review.`,
  );
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
