// Connecting to one declared MCP server, for the gateway and for `agentvm tools pin`: stdio servers are spawned
// with only the environment given (never the caller's), HTTP servers reached over streamable HTTP.

import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { Tool } from '@modelcontextprotocol/sdk/types.js';

export interface UpstreamSpec {
  name: string;
  command?: string[];
  cwd?: string;
  url?: string;
}

export interface UpstreamOptions {
  /** Wraps a stdio server's argv before it is spawned (its sandbox). */
  sandbox?: (argv: string[]) => string[];
  env?: Record<string, string>;
  /** How HTTP servers are reached (the egress proxy's socket: proxied-fetch.ts). Default: the global fetch. */
  fetch?: (url: string | URL, init?: RequestInit) => Promise<Response>;
}

export function upstreamTransport(
  spec: UpstreamSpec,
  opts: UpstreamOptions = {},
): StdioClientTransport | StreamableHTTPClientTransport {
  if (spec.url !== undefined)
    return new StreamableHTTPClientTransport(new URL(spec.url), opts.fetch ? { fetch: opts.fetch } : {});
  const argv = (opts.sandbox ?? ((a: string[]) => a))(spec.command!);
  return new StdioClientTransport({
    command: argv[0]!,
    args: argv.slice(1),
    ...(spec.cwd ? { cwd: spec.cwd } : {}),
    ...(opts.env ? { env: opts.env } : {}),
    stderr: 'ignore',
  });
}

export async function connectUpstream(
  spec: UpstreamSpec,
  clientName: string,
  opts: UpstreamOptions = {},
): Promise<Client> {
  const client = new Client({ name: clientName, version: '1' });
  await client.connect(upstreamTransport(spec, opts));
  return client;
}

/** The tools a server offers now (one connection, closed again). */
export async function offeredTools(spec: UpstreamSpec, opts: UpstreamOptions = {}): Promise<Tool[]> {
  const client = await connectUpstream(spec, 'agentvm-tools-pin', opts);
  try {
    return (await client.listTools()).tools;
  } finally {
    await client.close().catch(() => undefined);
  }
}
