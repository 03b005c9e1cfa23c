#!/usr/bin/env node
// Preview gate throughput and latency, gate vs the upstream directly, in the same run: a loopback node:http upstream
// (its own process), the real `agentvm gate serve` (built CLI) in front of it with one granted session, and this
// process as the load generator: N keep-alive connections issuing GETs back to back for D seconds per target.
// Prints requests/s, p50/p99 latency and the gate/direct ratio (target ≥ 0.80). Build first: npm run build.
// Usage: node bench/gate.js [--connections 16] [--seconds 5] [--bytes 1024]
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { performance } from 'node:perf_hooks';
import { join } from 'node:path';
import { BIN, ROOT } from './lib.js';

const arg = (name, def) => {
  const i = process.argv.indexOf(`--${name}`);
  return i === -1 ? def : Number(process.argv[i + 1]);
};
const CONNECTIONS = arg('connections', 16);
const SECONDS = arg('seconds', 5);
const BYTES = arg('bytes', 1024);

const { GateProvider } = await import(join(ROOT, 'dist/providers/gate/provider.js'));
const { hostPaths } = await import(join(ROOT, 'dist/state/host-paths.js'));

const root = mkdtempSync(join(tmpdir(), 'agentvm-bench-gate-'));
const children = [];
const cleanup = () => {
  for (const c of children) if (c.exitCode === null) c.kill('SIGTERM');
  rmSync(root, { recursive: true, force: true });
};
process.on('SIGINT', () => { cleanup(); process.exit(130); });

function startChild(args, pattern) {
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'] });
  children.push(child);
  return new Promise((resolve, reject) => {
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (d) => {
      out += d;
      const m = pattern.exec(out);
      if (m) resolve(m[1]);
    });
    child.on('exit', (code) => reject(new Error(`${args.join(' ')} exited ${code}: ${out}`)));
  });
}

function runCli(args) {
  return new Promise((resolve, reject) => {
    const c = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    c.stdout.setEncoding('utf8').on('data', (d) => (out += d));
    c.on('exit', (code) => (code === 0 ? resolve(out) : reject(new Error(`agentvm ${args.join(' ')} exited ${code}`))));
  });
}

/** N connections, each issuing requests back to back until the deadline; returns rps and latency percentiles. */
async function load(url, headers) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: CONNECTIONS });
  const u = new URL(url);
  const latencies = [];
  let errors = 0;
  const one = () => new Promise((resolve) => {
    const t = process.hrtime.bigint();
    const req = http.request({ hostname: u.hostname, port: u.port, path: u.pathname, headers, agent }, (res) => {
      res.on('data', () => {});
      res.on('end', () => {
        if (res.statusCode === 200) latencies.push(Number(process.hrtime.bigint() - t) / 1e6);
        else errors++;
        resolve();
      });
    });
    req.on('error', () => { errors++; resolve(); });
    req.end();
  });
  // warm-up
  await Promise.all(Array.from({ length: CONNECTIONS }, one));
  latencies.length = 0;
  const start = performance.now();
  const deadline = start + SECONDS * 1000;
  await Promise.all(Array.from({ length: CONNECTIONS }, async () => { while (performance.now() < deadline) await one(); }));
  const elapsed = (performance.now() - start) / 1000;
  agent.destroy();
  latencies.sort((a, b) => a - b);
  const pct = (p) => latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * p))] ?? NaN;
  return { rps: latencies.length / elapsed, p50: pct(0.5), p99: pct(0.99), n: latencies.length, errors };
}

try {
  const upstreamSrc = `const b=Buffer.alloc(${BYTES},'x');require('http').createServer((q,s)=>{s.writeHead(200,{'content-type':'text/plain','content-length':b.length});s.end(b)}).listen(0,'127.0.0.1',function(){console.log('port '+this.address().port)})`;
  const upstreamPort = Number(await startChild(['-e', upstreamSrc], /port (\d+)/));
  await new GateProvider().apply({
    host: { host: 'bench', root, paths: hostPaths(root), repo: root },
    change: { address: 'gate.bench.site', provider: 'gate', workload: 'bench', action: 'create', effect: 'none', reasons: [], dependsOn: [], desired: { address: 'gate.bench.site', provider: 'gate', workload: 'bench', identity: 'bench/site', dependsOn: [], config: { preview: 'site', upstream: { port: upstreamPort }, maxTtl: '1h', grantees: ['bench@example.com'] } } },
  });
  const gateUrl = await startChild([BIN, 'gate', 'serve', '--root', root, '--host', 'bench', '--port', '0'], /listening on (http:\/\/[^\s]+) /);
  const granted = JSON.parse(await runCli(['gate', 'grant', 'bench/site', '--root', root, '--to', 'bench@example.com', '--ttl', '1h', '--reason', 'bench', '--json']));
  const cookie = await new Promise((resolve, reject) => http.get(granted.link, (res) => { res.resume(); const c = res.headers['set-cookie']?.[0]; if (c) resolve(c.split(';')[0]); else reject(new Error(`no cookie: ${res.statusCode}`)); }));

  console.log(`gate bench: ${CONNECTIONS} keep-alive connections, ${SECONDS} s per target, ${BYTES} B responses, node ${process.version}`);
  const direct = await load(`http://127.0.0.1:${upstreamPort}/`, {});
  const gated = await load(`${gateUrl}/p/bench/site/`, { cookie });
  const row = (name, r) => console.log(`${name.padEnd(8)} ${r.rps.toFixed(0).padStart(7)} req/s   p50 ${r.p50.toFixed(2)} ms   p99 ${r.p99.toFixed(2)} ms   (${r.n} ok, ${r.errors} errors)`);
  row('direct', direct);
  row('gate', gated);
  const ratio = gated.rps / direct.rps;
  console.log(`ratio    gate/direct throughput ${(ratio * 100).toFixed(1)}% (target ≥ 80%); p50 +${(gated.p50 - direct.p50).toFixed(2)} ms`);
} finally {
  cleanup();
}
