#!/usr/bin/env node
// Preview gate throughput and latency, gate vs the upstream directly, in the same run: an upstream in its own process,
// the real `agentvm gate serve` (built CLI) in front of it with one granted session, and this process as the load
// generator. Prints requests/s, p50/p99 latency, CPU per request of each process, and the gate/direct throughput
// ratio against the target (≥ 80%): PASS or MISS. Build first: npm run build.
// Usage: node bench/gate.js [--upstream vite|node] [--pin] [--connections 16] [--seconds 6] [--rounds 3] [--profile DIR]
//   --upstream vite (default): a real dev server — Vite (the project's dev dependency) serving a page an agent built,
//   the kind of preview the gate is for. The target is judged here.
//   --upstream node: a no-op node:http upstream answering --bytes (default 1024) at once, the worst case for any proxy
//   (decisions/0012); --upstream-work-us N makes it spend N µs of CPU per request first.
//   --pin: the load generator and the upstream on CPU 0, the gate on CPU 1 (taskset), so the ratio measures the
//   gate's capacity rather than its share of two cores.
//   --profile DIR runs the gate under `node --cpu-prof` and writes its profile to DIR.
// Fairness: both targets get the same client code, the same N keep-alive connections, one request in flight per
// connection (as a browser does), the same request bytes except the gate's path and session cookie, and the same
// response bytes (checked: status 200 and the full Content-Length body, else counted as an error). The client is a
// small raw-socket HTTP/1.1 client, not node:http, so the generator costs little CPU: on a 2-core machine it shares the
// cores with the upstream and the gate, and a heavy generator would slow the gate run more than the direct run.
// Direct and gate runs alternate in rounds, so a change in background load hits both.
import { execFileSync, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { cpus, tmpdir } from 'node:os';
import { performance } from 'node:perf_hooks';
import { join } from 'node:path';
import { BIN, ROOT } from './lib.js';

const arg = (name, def) => {
  const i = process.argv.indexOf(`--${name}`);
  return i === -1 ? def : Number(process.argv[i + 1]);
};
const CONNECTIONS = arg('connections', 16);
const SECONDS = arg('seconds', 6);
const BYTES = arg('bytes', 1024);
const ROUNDS = arg('rounds', 3);
const WORK_US = arg('upstream-work-us', 0);
const UPSTREAM = process.argv.includes('--upstream') ? process.argv[process.argv.indexOf('--upstream') + 1] : 'vite';
if (UPSTREAM !== 'node' && UPSTREAM !== 'vite') {
  console.error(
    `bench/gate.js: --upstream ${UPSTREAM} is not an upstream: give vite (a dev server, the default) or node (a no-op one).`,
  );
  process.exit(1);
}
const TARGET = 0.8;
const PIN = process.argv.includes('--pin');
const PROFILE_DIR = process.argv.includes('--profile')
  ? process.argv[process.argv.indexOf('--profile') + 1]
  : undefined;

const { GateProvider } = await import(join(ROOT, 'dist/providers/gate/provider.js'));
const { hostPaths } = await import(join(ROOT, 'dist/model/host-paths.js'));

const root = mkdtempSync(join(tmpdir(), 'agentvm-bench-gate-'));
const children = [];
const cleanup = async () => {
  await Promise.all(
    children
      .filter((c) => c.exitCode === null)
      .map(
        (c) =>
          new Promise((resolve) => {
            c.once('exit', resolve);
            c.kill('SIGTERM');
          }),
      ),
  );
  rmSync(root, { recursive: true, force: true });
};
process.on('SIGINT', () => {
  cleanup().finally(() => process.exit(130));
});

function startChild(args, pattern, cpu) {
  const child = PIN
    ? spawn('taskset', ['-c', String(cpu), process.execPath, ...args], { stdio: ['ignore', 'pipe', 'inherit'] })
    : spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'] });
  children.push(child);
  return new Promise((resolve, reject) => {
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (d) => {
      out += d;
      const m = pattern.exec(out);
      if (m) resolve({ value: m[1], pid: child.pid });
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

/** CPU seconds (user + system) a process has used so far, from /proc (Linux). */
function cpuSeconds(pid) {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100; // utime, stime in clock ticks (USER_HZ = 100)
  } catch {
    return NaN;
  }
}

/**
 * One keep-alive connection issuing `request` back to back until `deadline`; each response must be 200 with exactly
 * `expectBytes` of body (Content-Length framing: both the upstream and the gate send it).
 */
function connection(port, request, expectBytes, deadline, latencies, counts) {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port, noDelay: true });
    let buf = Buffer.alloc(0);
    let sentAt = 0;
    let bodyLeft = -1; // -1: reading headers
    let status = 0;
    const send = () => {
      if (performance.now() >= deadline) {
        socket.end();
        return;
      }
      sentAt = performance.now();
      socket.write(request);
    };
    socket.on('connect', send);
    socket.on('data', (chunk) => {
      buf = buf.length ? Buffer.concat([buf, chunk]) : chunk;
      for (;;) {
        if (bodyLeft === -1) {
          const end = buf.indexOf('\r\n\r\n');
          if (end === -1) return;
          const head = buf.subarray(0, end).toString('latin1');
          status = Number(head.slice(9, 12));
          const m = /\r\ncontent-length: *(\d+)/i.exec(head);
          bodyLeft = m ? Number(m[1]) : 0;
          if (!m || bodyLeft !== expectBytes) counts.errors++;
          buf = buf.subarray(end + 4);
        }
        if (buf.length < bodyLeft) {
          bodyLeft -= buf.length;
          buf = Buffer.alloc(0);
          return;
        }
        buf = buf.subarray(bodyLeft);
        bodyLeft = -1;
        if (status === 200) latencies.push(performance.now() - sentAt);
        else counts.errors++;
        send();
        if (buf.length === 0) return;
      }
    });
    socket.on('error', () => {
      counts.errors++;
      resolve();
    });
    socket.on('close', resolve);
  });
}

async function load(port, request, seconds, expectBytes) {
  const latencies = [];
  const counts = { errors: 0 };
  const start = performance.now();
  await Promise.all(
    Array.from({ length: CONNECTIONS }, () =>
      connection(port, request, expectBytes, start + seconds * 1000, latencies, counts),
    ),
  );
  return { latencies, elapsed: (performance.now() - start) / 1000, errors: counts.errors };
}

function summary(runs, cpu) {
  const latencies = runs.flatMap((r) => r.latencies).sort((a, b) => a - b);
  const elapsed = runs.reduce((s, r) => s + r.elapsed, 0);
  const pct = (p) => latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * p))] ?? NaN;
  const perRequest = Object.fromEntries(Object.entries(cpu).map(([k, v]) => [k, (v / latencies.length) * 1e6]));
  return {
    rps: latencies.length / elapsed,
    p50: pct(0.5),
    p99: pct(0.99),
    n: latencies.length,
    errors: runs.reduce((s, r) => s + r.errors, 0),
    perRequest,
  };
}

try {
  const html = BYTES >= 4096 || UPSTREAM === 'vite';
  if (PIN) execFileSync('taskset', ['-p', '-c', '0', String(process.pid)], { stdio: 'ignore' });
  let upstream;
  let expectBytes = BYTES;
  if (UPSTREAM === 'vite') {
    // A real dev server, the kind of preview the gate fronts: Vite serving a page an agent built (index.html that loads
    // a module). Every request of / runs Vite's HTML pipeline, as a browser reload does.
    const site = join(root, 'site');
    mkdirSync(join(site, 'src'), { recursive: true });
    writeFileSync(
      join(site, 'index.html'),
      `<!doctype html><html><head><meta charset="utf-8"><title>Onboarding preview</title></head><body>${'<section><h2>Step</h2><p>Text of a page an agent built, served by a dev server.</p></section>\n'.repeat(40)}<script type="module" src="/src/main.js"></script></body></html>\n`,
    );
    writeFileSync(join(site, 'src', 'main.js'), "document.title = 'ready';\n");
    const viteSrc = `const { createServer } = await import('vite'); const s = await createServer({ root: ${JSON.stringify(site)}, configFile: false, logLevel: 'silent', clearScreen: false, server: { host: '127.0.0.1', port: 0, strictPort: false, hmr: false } }); await s.listen(); console.log('port ' + s.httpServer.address().port);`;
    upstream = await startChild(['--input-type=module', '-e', viteSrc], /port (\d+)/, 0);
    const probe = await new Promise((resolve, reject) =>
      http
        .get(`http://127.0.0.1:${upstream.value}/`, (res) => {
          let n = 0;
          res.on('data', (d) => (n += d.length));
          res.on('end', () => resolve({ n, length: res.headers['content-length'] }));
        })
        .on('error', reject),
    );
    if (probe.length === undefined)
      throw new Error('vite answered / without Content-Length; the bench client needs it');
    expectBytes = probe.n;
  } else {
    const page = html
      ? `'<!doctype html><html><head><title>preview</title></head><body>'+'<p>Text of a page an agent built, served as HTML.</p>\\n'.repeat(${BYTES})`
      : `'x'.repeat(${BYTES})`;
    const upstreamSrc = `const b=Buffer.from(${page}).subarray(0,${BYTES});require('http').createServer((q,s)=>{${WORK_US > 0 ? `const t=process.hrtime.bigint()+${WORK_US * 1000}n;while(process.hrtime.bigint()<t);` : ''}s.writeHead(200,{'content-type':'${html ? 'text/html; charset=utf-8' : 'text/plain'}','content-length':b.length});s.end(b)}).listen(0,'127.0.0.1',function(){console.log('port '+this.address().port)})`;
    upstream = await startChild(['-e', upstreamSrc], /port (\d+)/, 0);
  }
  const upstreamPort = Number(upstream.value);
  await new GateProvider().apply({
    host: { host: 'bench', root, paths: hostPaths(root), repo: root },
    change: {
      address: 'gate.bench.site',
      provider: 'gate',
      workload: 'bench',
      action: 'create',
      effect: 'none',
      reasons: [],
      dependsOn: [],
      desired: {
        address: 'gate.bench.site',
        provider: 'gate',
        workload: 'bench',
        identity: 'bench/site',
        dependsOn: [],
        config: { preview: 'site', upstream: { port: upstreamPort }, maxTtl: '1h', grantees: ['bench@example.com'] },
      },
    },
  });
  const gate = await startChild(
    [
      ...(PROFILE_DIR ? ['--cpu-prof', '--cpu-prof-dir', PROFILE_DIR] : []),
      BIN,
      'gate',
      'serve',
      '--root',
      root,
      '--host',
      'bench',
      '--port',
      '0',
    ],
    /listening on (http:\/\/[^\s]+) /,
    1,
  );
  const gatePort = Number(new URL(gate.value).port);
  const granted = JSON.parse(
    await runCli([
      'gate',
      'grant',
      'bench/site',
      '--root',
      root,
      '--to',
      'bench@example.com',
      '--ttl',
      '1h',
      '--reason',
      'bench',
      '--json',
    ]),
  );
  // Host routing (the default): the link names the preview's own host; its page's button POSTs the link back.
  const link = new URL(granted.link);
  const cookie = await new Promise((resolve, reject) =>
    http
      .request(
        {
          host: '127.0.0.1',
          port: link.port,
          path: `${link.pathname}${link.search}`,
          method: 'POST',
          headers: { host: link.host, origin: link.origin, 'content-length': 0 },
        },
        (res) => {
          res.resume();
          const c = res.headers['set-cookie']?.[0];
          if (c) resolve(c.split(';')[0]);
          else reject(new Error(`no cookie: ${res.statusCode}`));
        },
      )
      .on('error', reject)
      .end(),
  );

  // Browser-like request headers, the same for both targets; the gate's adds only its session cookie.
  const common = 'user-agent: agentvm-bench\r\naccept: text/html,*/*\r\naccept-encoding: identity\r\n';
  const directRequest = Buffer.from(`GET / HTTP/1.1\r\nhost: 127.0.0.1:${upstreamPort}\r\n${common}\r\n`, 'latin1');
  const gateRequest = Buffer.from(
    `GET / HTTP/1.1\r\nhost: ${link.host}\r\n${common}cookie: ${cookie}\r\n\r\n`,
    'latin1',
  );

  const what =
    UPSTREAM === 'vite'
      ? `a Vite ${(await import('vite')).version} dev server (${expectBytes} B HTML page)`
      : `a node:http upstream (${BYTES} B ${html ? 'HTML' : 'text'}, ${WORK_US} µs of work per request)`;
  console.log(
    `gate bench: ${what}; ${CONNECTIONS} keep-alive connections, ${SECONDS} s per target in ${ROUNDS} alternating rounds; ${PIN ? 'pinned: load generator and upstream on CPU 0, gate on CPU 1' : 'unpinned: all processes share the CPUs'}; node ${process.version}, ${cpus().length} CPUs`,
  );
  await load(upstreamPort, directRequest, 0.5, expectBytes); // warm-up
  await load(gatePort, gateRequest, 0.5, expectBytes);
  const runs = { direct: [], gate: [] };
  const cpu = { direct: { upstream: 0, client: 0 }, gate: { upstream: 0, gate: 0, client: 0 } };
  for (let r = 0; r < ROUNDS; r++) {
    for (const [name, port, request] of [
      ['direct', upstreamPort, directRequest],
      ['gate', gatePort, gateRequest],
    ]) {
      const before = { upstream: cpuSeconds(upstream.pid), gate: cpuSeconds(gate.pid), client: process.cpuUsage() };
      runs[name].push(await load(port, request, SECONDS / ROUNDS, expectBytes));
      const used = process.cpuUsage(before.client);
      cpu[name].upstream += cpuSeconds(upstream.pid) - before.upstream;
      cpu[name].client += (used.user + used.system) / 1e6;
      if (name === 'gate') cpu[name].gate += cpuSeconds(gate.pid) - before.gate;
    }
  }
  const direct = summary(runs.direct, cpu.direct);
  const gated = summary(runs.gate, cpu.gate);
  const cpuText = (r) =>
    Object.entries(r.perRequest)
      .map(([k, v]) => `${k} ${v.toFixed(0)}`)
      .join(', ');
  const row = (name, r) =>
    console.log(
      `${name.padEnd(8)} ${r.rps.toFixed(0).padStart(7)} req/s   p50 ${r.p50.toFixed(2)} ms   p99 ${r.p99.toFixed(2)} ms   (${r.n} ok, ${r.errors} errors)   CPU µs/request: ${cpuText(r)}`,
    );
  row('direct', direct);
  row('gate', gated);
  const ratio = gated.rps / direct.rps;
  console.log(
    `ratio    gate/direct throughput ${(ratio * 100).toFixed(1)}% (target ≥ ${TARGET * 100}%): ${ratio >= TARGET ? 'PASS' : 'MISS'}; p50 +${(gated.p50 - direct.p50).toFixed(2)} ms`,
  );
  if (direct.errors || gated.errors) process.exitCode = 1;
} finally {
  await cleanup();
}
