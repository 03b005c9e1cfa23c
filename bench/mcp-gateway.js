#!/usr/bin/env node
// MCP gateway overhead per tool call, gateway vs the server directly, in the same run: the real MCP test server
// (test/support/mcp-test-server.mjs, stdio) called by an SDK client directly, and the same server behind the built
// McpGateway (dist/mcp) reached through its unix socket. Prints p50/p99 per call of both, the added p50 against the
// target (< 2 ms): PASS or MISS, and the load average. Build first: npm run build.
// With --transport http the server speaks streamable HTTP on loopback: direct is an SDK client over HTTP, and the
// gateway reaches the server as it does on a host — the gateway and the egress proxy each in a process of their own
// (bench/mcp-gateway-peer.js), the gateway's requests through the proxy's caller socket over kept-alive CONNECT
// tunnels (decisions/0022 §7). The stdio gateway runs in this process (its server is its own child either way).
// Usage: node bench/mcp-gateway.js [--calls 2000] [--rounds 3] [--transport stdio|http]
// Fairness: one client, one call in flight, the same tool (`add`) and arguments; direct and gateway runs alternate in
// rounds so background load hits both. What the gateway adds per call: a socket hop, one upstream tools/list (the
// description is checked on every call, decisions/0022) and an audit record (group-committed).
import { mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { ROOT } from './lib.js';

const arg = (name, def) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : def;
};
const CALLS = arg('calls', 2000);
const ROUNDS = arg('rounds', 3);
const SERVER = join(ROOT, 'test/support/mcp-test-server.mjs');
const TRANSPORT = process.argv.includes('--transport')
  ? process.argv[process.argv.indexOf('--transport') + 1]
  : 'stdio';
if (TRANSPORT !== 'stdio' && TRANSPORT !== 'http') {
  console.error(
    `--transport ${TRANSPORT}: use stdio or http. Usage: node bench/mcp-gateway.js [--calls 2000] [--rounds 3] [--transport stdio|http]`,
  );
  process.exit(1);
}

const { McpGateway } = await import(join(ROOT, 'dist/mcp/gateway.js'));
const { McpAuditLog } = await import(join(ROOT, 'dist/mcp/audit.js'));
const { SocketClientTransport } = await import(join(ROOT, 'dist/mcp/socket-transport.js'));
const { toolDigest } = await import(join(ROOT, 'dist/mcp/digest.js'));
const PEER = join(ROOT, 'bench/mcp-gateway-peer.js');

/** A peer process (the egress proxy or the gateway) that prints READY once it serves. */
async function peer(args) {
  const child = spawn(process.execPath, [PEER, ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise((resolve, reject) => {
    let out = '';
    child.stdout.on('data', (d) => {
      out += d;
      if (out.includes('READY')) resolve();
    });
    child.once('exit', (code) => reject(new Error(`${args[0]} peer exited (${code})`)));
  });
  return child;
}

async function stop(child) {
  if (!child || child.exitCode !== null) return;
  child.kill('SIGTERM');
  await once(child, 'exit');
}

/** The test server over streamable HTTP on loopback (it prints `PORT <n>`). */
async function httpServer() {
  const child = spawn(process.execPath, [SERVER, '--http'], { stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise((resolve, reject) => {
    let out = '';
    child.stdout.on('data', (d) => {
      out += d;
      const m = /PORT (\d+)/.exec(out);
      if (m) resolve(Number(m[1]));
    });
    child.once('exit', (code) => reject(new Error(`the HTTP test server exited (${code})`)));
  });
  return { child, url: `http://127.0.0.1:${port}/mcp`, port };
}

const dir = mkdtempSync(join(tmpdir(), 'bench-mcp-'));
const env = { PATH: process.env.PATH ?? '' };

async function client(transport) {
  const c = new Client({ name: 'bench', version: '1' });
  await c.connect(transport);
  return c;
}

async function timeCalls(c) {
  for (let i = 0; i < 50; i++) await c.callTool({ name: 'add', arguments: { a: i, b: 1 } }); // warm-up
  const t = [];
  for (let i = 0; i < CALLS; i++) {
    const t0 = performance.now();
    await c.callTool({ name: 'add', arguments: { a: i, b: 1 } });
    t.push(performance.now() - t0);
  }
  t.sort((a, b) => a - b);
  return { p50: t[Math.floor(t.length * 0.5)], p99: t[Math.floor(t.length * 0.99)] };
}

let http;
const peers = [];
try {
  http = TRANSPORT === 'http' ? await httpServer() : undefined;
  const direct = await client(
    http
      ? new StreamableHTTPClientTransport(new URL(http.url))
      : new StdioClientTransport({ command: process.execPath, args: [SERVER], env }),
  );
  const offered = (await direct.listTools()).tools;
  const pins = ['add', 'echo'].map((name) => ({ name, sha256: toolDigest(offered.find((t) => t.name === name)) }));
  let gateway;
  let audit;
  if (http) {
    peers.push(await peer(['proxy', dir, String(http.port)]));
    peers.push(await peer(['gateway', dir, http.url, JSON.stringify(pins)]));
  } else {
    audit = new McpAuditLog(join(dir, 'audit.jsonl'), 'bench');
    gateway = new McpGateway({
      workload: 'bench',
      profile: 'main',
      servers: [{ name: 'testsrv', command: [process.execPath, SERVER], tools: pins }],
      socketPath: join(dir, 'mcp.sock'),
      audit: audit.record,
      env,
    });
    await gateway.start();
  }
  const viaGateway = await client(new SocketClientTransport(join(dir, 'mcp.sock')));

  const rows = [];
  for (let r = 1; r <= ROUNDS; r++) {
    const d = await timeCalls(direct);
    const g = await timeCalls(viaGateway);
    rows.push({ d, g });
    console.log(
      `round ${r}: direct p50 ${d.p50.toFixed(3)} ms p99 ${d.p99.toFixed(3)} ms | gateway p50 ${g.p50.toFixed(3)} ms p99 ${g.p99.toFixed(3)} ms | added p50 ${(g.p50 - d.p50).toFixed(3)} ms`,
    );
  }
  const median = (xs) => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  const added = median(rows.map((x) => x.g.p50 - x.d.p50));
  console.log(
    `added per call (median of rounds, p50): ${added.toFixed(3)} ms — target < 2 ms: ${added < 2 ? 'PASS' : 'MISS'}`,
  );
  console.log(`ratio gateway/direct p50 (median of rounds): ${median(rows.map((x) => x.g.p50 / x.d.p50)).toFixed(2)}×`);
  console.log(
    `load average: ${loadavg()
      .map((l) => l.toFixed(2))
      .join(
        ' ',
      )} (${CALLS} calls × ${ROUNDS} rounds each way, ${TRANSPORT}${http ? ', gateway and egress proxy in processes of their own' : ''})`,
  );
  await viaGateway.close();
  await gateway?.close();
  audit?.flush();
  await direct.close();
} finally {
  for (const p of peers.reverse()) await stop(p);
  http?.child.kill();
  rmSync(dir, { recursive: true, force: true });
}
