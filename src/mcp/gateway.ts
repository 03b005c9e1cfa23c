// The MCP gateway of one profile (decisions/0022 §4): the profile's only way to its declared MCP servers.
//   profile ──unix socket (stdio framing)──▶ McpGateway ──stdio child / streamable HTTP──▶ declared servers
// Invariants:
//   - Only allowlisted tools are listed or callable, and only while the server's CURRENT description hashes to the
//     pin: the upstream list is read again for every listing and every call, so a server cannot change a
//     description between the check and the call without the next call seeing it.
//   - A listed tool carries exactly the pinned fields (name, description, inputSchema): title, annotations and
//     _meta are not pinned, so they are not passed on.
//   - Every call is audited — workload, profile, server, tool, the sha256 of the canonical arguments, the outcome —
//     and never an argument value. A changed description is audited once per (tool, seen digest) when listed, and
//     on every refused call.
//   - Two servers offering an allowlisted tool of the same name is refused at start: a name means one tool.

import { createServer, type Server as NetServer, type Socket } from 'node:net';
import { chmod, rm } from 'node:fs/promises';
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { Server } from '@modelcontextprotocol/sdk/server/index.js';
import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';
import {
  CallToolRequestSchema,
  ErrorCode,
  ListToolsRequestSchema,
  McpError,
  type CallToolResult,
  type Tool,
} from '@modelcontextprotocol/sdk/types.js';
import { argsDigest, toolDigest } from './digest.js';
import { connectUpstream } from './upstream.js';

export interface McpServerSpec {
  /** The contract's tool name of the server. */
  name: string;
  /** stdio: argv, program first. */
  command?: string[];
  /** The directory a stdio server starts in (its release). */
  cwd?: string;
  /** HTTP: the streamable-HTTP endpoint. */
  url?: string;
  /** Allowlisted tools and their description pins. */
  tools: Array<{ name: string; sha256: string }>;
}

export type McpOutcome = 'ok' | 'tool-error' | 'failed' | 'denied' | 'refused';

/** One audit fact of the gateway. Digests only: never an argument value. */
export interface McpAuditFact {
  event: 'mcp.call' | 'mcp.refuse' | 'mcp.deny';
  workload: string;
  profile: string;
  server: string;
  tool: string;
  outcome: McpOutcome;
  /** sha256 of the canonical arguments (calls only). */
  argsDigest?: string;
  /** Refusals: the pinned and the seen description digest (null when the server no longer offers the tool). */
  pinned?: string;
  seen?: string | null;
}

export interface McpGatewayOptions {
  workload: string;
  profile: string;
  servers: McpServerSpec[];
  /** Where the profile connects; created 0600 (the owner is the profile's account, set by the caller). */
  socketPath: string;
  /** The socket's mode when access is decided by the directory's visibility instead (host-gateway.ts). */
  socketMode?: number;
  audit: (fact: McpAuditFact) => void;
  /**
   * Wraps a stdio server's argv before it is spawned (the sandbox: e.g. `systemd-run --user --pipe` with the
   * workload's hardening). Identity when absent.
   */
  sandbox?: (argv: string[]) => string[];
  /** Environment of stdio servers: nothing is inherited beyond this (the SDK's default is a small safe set). */
  env?: Record<string, string>;
  /** How HTTP servers are reached: through the egress proxy (proxied-fetch.ts) when the gateway runs on a host. */
  fetch?: (url: string | URL, init?: RequestInit) => Promise<Response>;
}

/** A refusal's message: names the tool and both digests, so the reviewer can re-pin or investigate. */
export function changedDescriptionMessage(server: string, tool: string, pinned: string, seen: string | null): string {
  return seen === null
    ? `MCP tool ${tool} of server ${server} is refused: the server no longer offers it (pinned sha256:${pinned}).`
    : `MCP tool ${tool} of server ${server} is refused: its description changed since it was pinned (pinned sha256:${pinned}, seen sha256:${seen}). Review the new description and re-pin it with \`agentvm tools pin\`.`;
}

interface Upstream {
  spec: McpServerSpec;
  client: Client;
  pins: Map<string, string>;
}

export class McpGateway {
  private readonly upstreams: Upstream[] = [];
  private listener: NetServer | undefined;
  private readonly sockets = new Set<Socket>();
  private readonly auditedChanges = new Set<string>();

  constructor(private readonly options: McpGatewayOptions) {
    const owner = new Map<string, string>();
    for (const s of options.servers) {
      if ((s.command === undefined) === (s.url === undefined))
        throw new Error(`MCP server ${s.name}: exactly one of command or url`);
      for (const t of s.tools) {
        const other = owner.get(t.name);
        if (other !== undefined)
          throw new Error(
            `MCP tool ${t.name} is allowlisted for two servers (${other}, ${s.name}): a name must mean one tool`,
          );
        owner.set(t.name, s.name);
      }
    }
  }

  /** Connects every declared server, then listens on the profile's socket. */
  async start(): Promise<void> {
    for (const spec of this.options.servers) {
      const client = await connectUpstream(
        spec,
        `agentvm-mcp-gateway/${this.options.workload}/${this.options.profile}`,
        {
          ...(this.options.sandbox ? { sandbox: this.options.sandbox } : {}),
          ...(this.options.env ? { env: this.options.env } : {}),
          ...(this.options.fetch ? { fetch: this.options.fetch } : {}),
        },
      );
      this.upstreams.push({ spec, client, pins: new Map(spec.tools.map((t) => [t.name, t.sha256])) });
    }
    await rm(this.options.socketPath, { force: true });
    const listener = createServer((socket) => this.serve(socket));
    await new Promise<void>((resolve, reject) => {
      listener.once('error', reject);
      listener.listen(this.options.socketPath, () => resolve());
    });
    await chmod(this.options.socketPath, this.options.socketMode ?? 0o600);
    this.listener = listener;
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => (this.listener ? this.listener.close(() => resolve()) : resolve()));
    await Promise.all(this.upstreams.map((u) => u.client.close().catch(() => undefined)));
    await rm(this.options.socketPath, { force: true });
  }

  /** One profile connection: an MCP server session with only the gateway's two handlers. */
  private serve(socket: Socket): void {
    this.sockets.add(socket);
    const server = new Server({ name: 'agentvm-mcp-gateway', version: '1' }, { capabilities: { tools: {} } });
    server.setRequestHandler(ListToolsRequestSchema, async () => ({ tools: await this.listAllowed() }));
    server.setRequestHandler(CallToolRequestSchema, async (req) =>
      this.call(req.params.name, req.params.arguments ?? {}),
    );
    socket.on('close', () => {
      this.sockets.delete(socket);
      void server.close().catch(() => undefined);
    });
    socket.on('error', () => socket.destroy());
    void server.connect(new StdioServerTransport(socket, socket)).catch(() => socket.destroy());
  }

  private async listAllowed(): Promise<Tool[]> {
    const out: Tool[] = [];
    for (const u of this.upstreams) {
      const { tools } = await u.client.listTools();
      for (const t of tools) {
        const pinned = u.pins.get(t.name);
        if (pinned === undefined) continue;
        const seen = toolDigest(t);
        if (seen !== pinned) {
          this.auditChangeOnce(u.spec.name, t.name, pinned, seen);
          continue;
        }
        out.push({
          name: t.name,
          ...(t.description !== undefined ? { description: t.description } : {}),
          inputSchema: t.inputSchema,
        });
      }
    }
    return out;
  }

  private async call(tool: string, args: Record<string, unknown>): Promise<CallToolResult> {
    const digest = argsDigest(args);
    const base = { workload: this.options.workload, profile: this.options.profile, tool, argsDigest: digest };
    const u = this.upstreams.find((x) => x.pins.has(tool));
    if (!u) {
      this.options.audit({ ...base, event: 'mcp.deny', server: '-', outcome: 'denied' });
      throw new McpError(
        ErrorCode.InvalidParams,
        `MCP tool ${tool} is not on the allowlist of ${this.options.workload}/${this.options.profile}.`,
      );
    }
    const pinned = u.pins.get(tool)!;
    const current = (await u.client.listTools()).tools.find((t) => t.name === tool);
    const seen = current ? toolDigest(current) : null;
    if (seen !== pinned) {
      this.options.audit({ ...base, event: 'mcp.refuse', server: u.spec.name, outcome: 'refused', pinned, seen });
      throw new McpError(ErrorCode.InvalidParams, changedDescriptionMessage(u.spec.name, tool, pinned, seen));
    }
    try {
      const result = (await u.client.callTool({ name: tool, arguments: args })) as CallToolResult;
      this.options.audit({
        ...base,
        event: 'mcp.call',
        server: u.spec.name,
        outcome: result.isError ? 'tool-error' : 'ok',
      });
      return result;
    } catch (err) {
      this.options.audit({ ...base, event: 'mcp.call', server: u.spec.name, outcome: 'failed' });
      throw err;
    }
  }

  private auditChangeOnce(server: string, tool: string, pinned: string, seen: string): void {
    const key = `${server}\0${tool}\0${seen}`;
    if (this.auditedChanges.has(key)) return;
    this.auditedChanges.add(key);
    this.options.audit({
      event: 'mcp.refuse',
      workload: this.options.workload,
      profile: this.options.profile,
      server,
      tool,
      outcome: 'refused',
      pinned,
      seen,
    });
  }
}
