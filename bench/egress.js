#!/usr/bin/env node
// Egress proxy cost, proxy vs direct in the same run (issue 13): a 16 KiB HTTPS response fetched over a fresh
// connection each time — direct (TCP + TLS to the upstream) against through agentvm's egress proxy (the built
// `agentvm egress serve` in its own process: CONNECT over the caller's unix socket, name resolution by the proxy's own
// resolver, answer screening, SNI check, relay). The upstream and its DNS server run in a network namespace this
// script creates (root needed), as the tests do. Prints p50/p99 latency of both, the added p50 (target < 1 ms), the
// throughput ratio proxy/direct with N concurrent clients (target ≥ 0.8), PASS/MISS, and the load average.
// Usage: node bench/egress.js [--requests 400] [--concurrency 8] [--rounds 3]. Build first: npm run build.
import { execFileSync, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import net from 'node:net';
import { loadavg, tmpdir } from 'node:os';
import { performance } from 'node:perf_hooks';
import { join } from 'node:path';
import tls from 'node:tls';
import { BIN, ROOT } from './lib.js';

const arg = (name, def) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : def;
};
const REQUESTS = arg('requests', 400);
const CONCURRENCY = arg('concurrency', 8);
const ROUNDS = arg('rounds', 3);
const BYTES = 16 * 1024;
const NAME = 'bench.egress.test';

if (process.getuid?.() !== 0) {
  console.error('bench/egress.js needs root (it creates a network namespace for the upstream).');
  process.exit(1);
}

const k = (process.pid % 200) + 20;
const ns = `agentvm-egb-${process.pid}`;
const vh = `aegb${process.pid % 100000}h`;
const vn = `aegb${process.pid % 100000}n`;
const v4 = `198.18.${k}.2`;
const dir = mkdtempSync(join(tmpdir(), 'agentvm-bench-egress-'));
const children = [];
const ip = (...a) => execFileSync('ip', a, { stdio: 'pipe' });

function cleanup() {
  for (const c of children) c.kill('SIGTERM');
  try {
    ip('link', 'del', vh);
  } catch {
    /* gone */
  }
  try {
    ip('netns', 'del', ns);
  } catch {
    /* gone */
  }
  rmSync(dir, { recursive: true, force: true });
}
process.on('SIGINT', () => {
  cleanup();
  process.exit(130);
});

function waitFor(check, what, ms = 15_000) {
  const until = Date.now() + ms;
  return new Promise((resolve, reject) => {
    const tick = () => {
      const v = check();
      if (v) return resolve(v);
      if (Date.now() > until) return reject(new Error(`timed out waiting for ${what}`));
      setTimeout(tick, 20);
    };
    tick();
  });
}

async function setup() {
  ip('netns', 'add', ns);
  ip('link', 'add', vh, 'type', 'veth', 'peer', 'name', vn);
  ip('link', 'set', vn, 'netns', ns);
  ip('addr', 'add', `198.18.${k}.1/24`, 'dev', vh);
  ip('link', 'set', vh, 'up');
  ip('-n', ns, 'addr', 'add', `${v4}/24`, 'dev', vn);
  ip('-n', ns, 'link', 'set', vn, 'up');
  ip('-n', ns, 'link', 'set', 'lo', 'up');
  const cert = join(dir, 'cert.pem');
  const key = join(dir, 'key.pem');
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-nodes',
      '-days',
      '1',
      '-subj',
      `/CN=${NAME}`,
      '-addext',
      `subjectAltName=DNS:${NAME}`,
      '-keyout',
      key,
      '-out',
      cert,
    ],
    { stdio: 'pipe' },
  );
  const up = spawn(
    'ip',
    [
      'netns',
      'exec',
      ns,
      process.execPath,
      join(ROOT, 'test/support/egress-upstream.mjs'),
      JSON.stringify({ addresses: [v4], records: { [NAME]: { A: [v4] } }, cert, key }),
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  children.push(up);
  await new Promise((resolve) => up.stdout.on('data', (d) => d.toString().includes('ready') && resolve()));
  // The proxy as apply installs it: rules.json under a host root, `agentvm egress serve` reading it.
  const root = join(dir, 'root');
  const socket = join(root, 'run/agentvm/egress/unit.bench.p/proxy.sock');
  mkdirSync(join(root, 'var/lib/agentvm/egress'), { recursive: true });
  writeFileSync(
    join(root, 'var/lib/agentvm/egress/rules.json'),
    JSON.stringify({
      version: 1,
      host: 'bench',
      resolvers: [v4],
      callers: [{ id: 'unit.bench.p', workload: 'bench', entries: [{ host: NAME, port: 443 }], socket, inbound: null }],
    }),
  );
  const proxy = spawn(process.execPath, [BIN, 'egress', 'serve', '--root', root, '--host', 'bench'], {
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  children.push(proxy);
  await waitFor(() => existsSync(join(root, 'var/lib/agentvm/egress/status.json')), 'the egress proxy');
  return { ca: readFileSync(cert), socket };
}

/** One request on a fresh connection: TLS handshake, GET /bytes/16384, the whole body. Resolves with ms. */
function fetchOnce(ca, socketFactory) {
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    socketFactory((err, raw) => {
      if (err) return reject(err);
      const s = tls.connect({ socket: raw, servername: NAME, ca });
      let got = 0;
      let head = '';
      s.once('secureConnect', () =>
        s.write(`GET /bytes/${BYTES} HTTP/1.1\r\nHost: ${NAME}\r\nConnection: close\r\n\r\n`),
      );
      s.on('data', (d) => {
        got += d.length;
        if (head.length < 12) head += d.toString('latin1', 0, 12);
      });
      s.once('error', reject);
      s.once('close', () =>
        head.startsWith('HTTP/1.1 200') && got > BYTES
          ? resolve(performance.now() - t0)
          : reject(new Error(`bad response (${got} bytes)`)),
      );
    });
  });
}

const direct = (cb) => {
  const s = net.connect(443, v4);
  s.setNoDelay(true); // as the proxy does on its upstream leg: both paths without Nagle's wait
  s.once('connect', () => cb(null, s));
  s.once('error', cb);
};
const viaProxy = (socketPath) => (cb) => {
  const s = net.connect(socketPath);
  s.once('error', cb);
  s.once('connect', () => s.write(`CONNECT ${NAME}:443 HTTP/1.1\r\nHost: ${NAME}:443\r\n\r\n`));
  let buf = '';
  const onData = (d) => {
    buf += d.toString('latin1');
    if (!buf.includes('\r\n\r\n')) return;
    s.off('data', onData);
    if (!buf.startsWith('HTTP/1.1 200')) return cb(new Error(buf.split('\r\n')[0]));
    cb(null, s);
  };
  s.on('data', onData);
};

async function run(ca, factory) {
  const times = [];
  let next = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next < REQUESTS) {
        next++;
        times.push(await fetchOnce(ca, factory));
      }
    }),
  );
  const wall = (performance.now() - t0) / 1000;
  // Latency without queueing: sequential requests, one at a time.
  const seq = [];
  for (let i = 0; i < Math.max(50, REQUESTS / 4); i++) seq.push(await fetchOnce(ca, factory));
  seq.sort((a, b) => a - b);
  return { rps: REQUESTS / wall, p50: seq[Math.floor(seq.length / 2)], p99: seq[Math.floor(seq.length * 0.99)] };
}

try {
  const { ca, socket } = await setup();
  for (let i = 0; i < 30; i++) {
    await fetchOnce(ca, direct);
    await fetchOnce(ca, viaProxy(socket));
  } // warm-up
  const rows = { direct: [], proxy: [] };
  for (let r = 0; r < ROUNDS; r++) {
    rows.direct.push(await run(ca, direct));
    rows.proxy.push(await run(ca, viaProxy(socket)));
  }
  const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  const sum = (rs) => ({
    rps: median(rs.map((x) => x.rps)),
    p50: median(rs.map((x) => x.p50)),
    p99: median(rs.map((x) => x.p99)),
  });
  const d = sum(rows.direct);
  const p = sum(rows.proxy);
  const added = p.p50 - d.p50;
  const ratio = p.rps / d.rps;
  const f = (n) => n.toFixed(2);
  console.log(
    `16 KiB HTTPS, fresh connection per request, ${REQUESTS} requests × ${ROUNDS} rounds, ${CONCURRENCY} concurrent (latency: sequential)`,
  );
  console.log(`direct:  ${d.rps.toFixed(0)} req/s  p50 ${f(d.p50)} ms  p99 ${f(d.p99)} ms`);
  console.log(`proxy:   ${p.rps.toFixed(0)} req/s  p50 ${f(p.p50)} ms  p99 ${f(p.p99)} ms`);
  console.log(`added p50 latency: ${f(added)} ms (target < 1 ms): ${added < 1 ? 'PASS' : 'MISS'}`);
  console.log(`throughput ratio proxy/direct: ${ratio.toFixed(2)} (target ≥ 0.8): ${ratio >= 0.8 ? 'PASS' : 'MISS'}`);
  console.log(
    `load average: ${loadavg()
      .map((x) => x.toFixed(2))
      .join(' ')}`,
  );
} finally {
  cleanup();
}
