#!/usr/bin/env node
// One side of bench/mcp-gateway.js --transport http, in a process of its own as on a host: `proxy` runs the egress
// proxy (dist/egress) with the gateway's caller, `gateway` runs the McpGateway (dist/mcp) whose fetch goes through
// that proxy's caller socket. Prints READY once it serves; stops on SIGTERM.
// Usage: node bench/mcp-gateway-peer.js proxy <dir> <server-port>
//        node bench/mcp-gateway-peer.js gateway <dir> <server-url> <pins-json>
import { join } from 'node:path';
import { ROOT } from './lib.js';

const [mode, dir, target, pinsJson] = process.argv.slice(2);
const callerSocket = join(dir, 'egress', 'proxy.sock');
let close;
if (mode === 'proxy') {
  const { EgressProxy } = await import(join(ROOT, 'dist/egress/proxy.js'));
  const proxy = new EgressProxy({ host: 'bench', auditFile: join(dir, 'egress-audit.jsonl'), ownAddresses: [] });
  await proxy.reload({
    resolvers: [],
    callers: [
      {
        id: 'mcp.bench.main',
        workload: 'bench',
        entries: [{ host: '127.0.0.1', port: Number(target) }],
        socket: callerSocket,
      },
    ],
  });
  close = () => proxy.close();
} else if (mode === 'gateway') {
  const { McpGateway } = await import(join(ROOT, 'dist/mcp/gateway.js'));
  const { McpAuditLog } = await import(join(ROOT, 'dist/mcp/audit.js'));
  const { proxiedFetch } = await import(join(ROOT, 'dist/mcp/proxied-fetch.js'));
  const audit = new McpAuditLog(join(dir, 'audit.jsonl'), 'bench');
  const gateway = new McpGateway({
    workload: 'bench',
    profile: 'main',
    servers: [{ name: 'testsrv', url: target, tools: JSON.parse(pinsJson) }],
    socketPath: join(dir, 'mcp.sock'),
    audit: audit.record,
    env: { PATH: process.env.PATH ?? '' },
    fetch: proxiedFetch(callerSocket),
  });
  await gateway.start();
  close = async () => {
    await gateway.close();
    audit.flush();
  };
} else {
  throw new Error('usage: mcp-gateway-peer.js proxy|gateway …');
}
process.once('SIGTERM', () => void close().finally(() => process.exit(0)));
console.log('READY');
