// Runs INSIDE a gateway unit's own network namespace (PrivateNetwork=yes), as the unit's ExecStart, in front of the
// workload's program: `node unit-shim.js --proxy-port P --egress-socket S [--inbound-socket I --inbound-port L] -- argv…`
//   outbound: 127.0.0.1:P (the unit's own loopback; HTTPS_PROXY points there) → the unix socket S of the host's egress
//             proxy, which is bound into the unit and is this profile's identity there.
//   inbound:  the unix socket I in the unit's RuntimeDirectory → 127.0.0.1:L, the profile's declared listener; the
//             egress server bridges the host's 127.0.0.1:L to I, so the gate and the health check reach it unchanged.
// The shim holds no privilege the workload lacks: it sees the same namespace and the same one socket, so a workload
// that kills or bypasses it gains nothing (and loses its own way out). It starts the program as its child, forwards
// signals, and exits as the child did. Node built-ins only: it is on every gateway's start-up path.

import { spawn } from 'node:child_process';
import { rmSync } from 'node:fs';
import { connect, createServer, type Socket } from 'node:net';

interface ShimArgs {
  proxyPort: number;
  egressSocket: string;
  inbound: { socket: string; port: number } | null;
  argv: string[];
}

export function parseShimArgs(args: readonly string[]): ShimArgs {
  const sep = args.indexOf('--');
  if (sep < 0 || sep === args.length - 1)
    throw new Error(
      'usage: unit-shim --proxy-port P --egress-socket S [--inbound-socket I --inbound-port L] -- program [args…]',
    );
  const opts = new Map<string, string>();
  for (let i = 0; i < sep; i += 2) opts.set(args[i]!, args[i + 1] ?? '');
  const proxyPort = Number(opts.get('--proxy-port'));
  const egressSocket = opts.get('--egress-socket') ?? '';
  const inboundSocket = opts.get('--inbound-socket');
  const inboundPort = Number(opts.get('--inbound-port'));
  if (!Number.isInteger(proxyPort) || proxyPort < 1 || proxyPort > 65535 || !egressSocket.startsWith('/'))
    throw new Error('unit-shim: --proxy-port and an absolute --egress-socket are required');
  return {
    proxyPort,
    egressSocket,
    inbound: inboundSocket ? { socket: inboundSocket, port: inboundPort } : null,
    argv: args.slice(sep + 1),
  };
}

function pipeBoth(a: Socket, b: Socket): void {
  a.on('error', () => b.destroy());
  b.on('error', () => a.destroy());
  a.on('close', () => b.destroy());
  b.on('close', () => a.destroy());
  a.pipe(b);
  b.pipe(a);
}

function main(): void {
  const args = parseShimArgs(process.argv.slice(2));
  // A listener that cannot open is reported and the program still starts: without the proxy port it has no way out
  // (fail closed); without the inbound socket its health check fails and apply rolls it back.
  const report =
    (what: string) =>
    (e: Error): void =>
      void process.stderr.write(`agentvm unit-shim: ${what}: ${e.message}\n`);
  // Half-open both ways: a client that shuts its write side after the request still gets the whole answer.
  createServer({ allowHalfOpen: true }, (c) => pipeBoth(c, connect({ path: args.egressSocket, allowHalfOpen: true })))
    .on('error', report(`127.0.0.1:${args.proxyPort}`))
    .listen(args.proxyPort, '127.0.0.1');
  if (args.inbound) {
    const { socket, port } = args.inbound;
    rmSync(socket, { force: true });
    createServer({ allowHalfOpen: true }, (c) => pipeBoth(c, connect({ port, host: '127.0.0.1', allowHalfOpen: true })))
      .on('error', report(socket))
      .listen(socket);
  }
  const [program, ...rest] = args.argv;
  const child = spawn(program!, rest, { stdio: 'inherit' });
  for (const sig of ['SIGTERM', 'SIGINT', 'SIGHUP', 'SIGUSR1', 'SIGUSR2'] as const)
    process.on(sig, () => child.kill(sig));
  child.once('error', (e) => {
    process.stderr.write(`agentvm unit-shim: cannot start ${program}: ${e.message}\n`);
    process.exit(127);
  });
  child.once('exit', (code, signal) => {
    if (args.inbound) rmSync(args.inbound.socket, { force: true });
    if (signal) {
      process.removeAllListeners(signal);
      process.kill(process.pid, signal);
    }
    process.exit(code ?? 1);
  });
}

if (process.argv[1] && /unit-shim\.[jt]s$/.test(process.argv[1])) main();
