// Fixtures for the preview gate suites: a temporary host root whose routes are written by the real GateProvider,
// real node:http upstreams on loopback that count what reaches them, the real `agentvm gate serve` process (built CLI),
// and small HTTP clients (one request per connection, or raw bytes on a socket) that assert nothing themselves.

import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import http, { type IncomingHttpHeaders } from 'node:http';
import https from 'node:https';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { GateProvider } from '../../src/providers/gate/provider.js';
import { hostPaths } from '../../src/model/index.js';
import { BIN, agentvm, type CliResult } from './cli.js';

export const HOST = 'edge-1';

export interface Upstream {
  name: string;
  port: number;
  /** Every request that reached it: method, url, headers. */
  hits: Array<{ method: string; url: string; headers: IncomingHttpHeaders }>;
  close(): Promise<void>;
}

/** A loopback upstream (or one on the unix socket `socketPath`) answering `<name>:<url>` (HTML for `/`), recording every request. */
export async function startUpstream(name: string, socketPath?: string): Promise<Upstream> {
  const hits: Upstream['hits'] = [];
  const server = http.createServer((req, res) => {
    hits.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers });
    req.resume();
    req.on('end', () => {
      const html = `<!doctype html><title>${name}</title><h1 id="who">preview ${name}</h1><p id="url">${req.url}</p>`;
      res.writeHead(200, {
        'content-type': 'text/html; charset=utf-8',
        'set-cookie': [`app=${name}; Path=/`, `agentvm_gate_x_y=evil; Path=/`],
      });
      res.end(html);
    });
  });
  server.keepAliveTimeout = 5_000;
  await new Promise<void>((r) =>
    socketPath !== undefined ? server.listen(socketPath, r) : server.listen(0, '127.0.0.1', r),
  );
  return {
    name,
    port: socketPath !== undefined ? 0 : (server.address() as AddressInfo).port,
    hits,
    close: () =>
      new Promise<void>((r) => {
        server.close(() => r());
        server.closeAllConnections();
      }),
  };
}

/** `socket` (a file name in the workload's socket directory) replaces `port` as the upstream when given. */
export interface PreviewSpec {
  workload: string;
  preview: string;
  port: number;
  socket?: string;
  maxTtl?: string;
  grantees?: string[];
}

/** Applies (or deletes) gate routes through the real provider, as `agentvm apply` does. */
export async function applyRoute(
  root: string,
  spec: PreviewSpec,
  action: 'create' | 'delete' = 'create',
): Promise<void> {
  const provider = new GateProvider();
  const address = `gate.${spec.workload}.${spec.preview}`;
  const desired = {
    address,
    provider: 'gate',
    workload: spec.workload,
    identity: `${spec.workload}/${spec.preview}`,
    dependsOn: [],
    config: {
      preview: spec.preview,
      upstream: spec.socket !== undefined ? { socket: spec.socket } : { port: spec.port },
      maxTtl: spec.maxTtl ?? '2h',
      grantees: spec.grantees ?? ['ana@example.com'],
    },
  };
  const res = await provider.apply({
    host: { host: HOST, root, paths: hostPaths(root), repo: root },
    change: {
      address,
      provider: 'gate',
      workload: spec.workload,
      action,
      effect: 'none',
      reasons: [],
      dependsOn: [],
      ...(action === 'delete' ? {} : { desired }),
    },
  });
  if (res.diagnostics.length) throw new Error(`apply ${address}: ${JSON.stringify(res.diagnostics)}`);
}

export function tempRoot(): { root: string; remove(): void } {
  const root = mkdtempSync(path.join(os.tmpdir(), 'agentvm-gate-'));
  return { root, remove: () => rmSync(root, { recursive: true, force: true }) };
}

export interface GateProcess {
  url: string;
  port: number;
  child: ChildProcess;
  stderr(): string;
  /** SIGTERM, then wait for exit (the server flushes its audit buffer). */
  stop(): Promise<number | null>;
}

/** Spawns the real `agentvm gate serve` and resolves once it prints where it listens. */
export function startGate(root: string, extra: string[] = [], env: NodeJS.ProcessEnv = {}): Promise<GateProcess> {
  const child = spawn(
    process.execPath,
    [BIN, 'gate', 'serve', '--root', root, '--host', HOST, '--port', '0', ...extra],
    { env: { ...process.env, NO_COLOR: '1', ...env }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let out = '';
  let err = '';
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`gate did not start in 15 s:\n${out}\n${err}`)), 15_000);
    child.on('exit', (code) => reject(new Error(`gate exited ${code} before listening:\n${out}\n${err}`)));
    child.stdout!.setEncoding('utf8').on('data', (d: string) => {
      out += d;
      const m = /listening on (https?:\/\/[^\s]+) /.exec(out);
      if (m) {
        clearTimeout(timer);
        const url = m[1]!;
        resolve({
          url,
          port: Number(new URL(url).port),
          child,
          stderr: () => err,
          stop: () =>
            new Promise((r) => {
              if (child.exitCode !== null) return r(child.exitCode);
              child.removeAllListeners('exit');
              child.once('exit', (code) => r(code));
              child.kill('SIGTERM');
            }),
        });
      }
    });
  });
}

export interface Reply {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
}

/** Where a test reaches a host name: `*.localhost` is loopback (as browsers resolve it, without DNS), and so is the
 *  reserved `*.test` the TLS suites name their gate domains under. */
export function connectAddress(hostname: string): string {
  return hostname === 'localhost' || hostname.endsWith('.localhost') || hostname.endsWith('.test')
    ? '127.0.0.1'
    : hostname;
}

/** One request on a fresh connection (no agent), nothing followed. `*.localhost` names reach 127.0.0.1 with their Host. */
export function request(
  url: string,
  opts: { method?: string; headers?: Record<string, string>; ca?: Buffer; body?: string; localAddress?: string } = {},
): Promise<Reply> {
  const u = new URL(url);
  const mod = u.protocol === 'https:' ? https : http;
  const headers: Record<string, string> = { host: u.host, ...(opts.headers ?? {}) };
  if (opts.body !== undefined) headers['content-length'] = String(Buffer.byteLength(opts.body));
  return new Promise((resolve, reject) => {
    const req = mod.request(
      {
        host: connectAddress(u.hostname),
        servername: u.hostname,
        port: u.port,
        path: `${u.pathname}${u.search}`,
        method: opts.method ?? 'GET',
        headers,
        agent: false,
        ...(opts.ca ? { ca: opts.ca } : {}),
        ...(opts.localAddress ? { localAddress: opts.localAddress } : {}),
      },
      (res) => {
        let body = '';
        res
          .setEncoding('utf8')
          .on('data', (d: string) => (body += d))
          .on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      },
    );
    req.on('error', reject);
    req.end(opts.body);
  });
}

/** Writes raw bytes on a new TCP connection and returns everything read until the server closes (or 3 s pass). */
export function rawRequest(port: number, bytes: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    let data = '';
    const done = (): void => {
      clearTimeout(timer);
      resolve(data);
    };
    const timer = setTimeout(() => {
      socket.destroy();
      resolve(data);
    }, 3_000);
    socket.setEncoding('utf8').on('data', (d: string) => (data += d));
    socket.on('end', done).on('close', done);
    socket.on('error', (e) => (data ? done() : reject(e)));
    socket.write(bytes);
  });
}

/** `gate grant` through the real CLI; returns the parsed --json result. */
export async function grant(
  root: string,
  target: string,
  opts: { to?: string; ttl?: string; reason?: string } = {},
): Promise<{ result: { grant: { id: string; expires: string }; link: string }; cli: CliResult }> {
  const cli = await agentvm([
    'gate',
    'grant',
    target,
    '--root',
    root,
    '--to',
    opts.to ?? 'ana@example.com',
    '--ttl',
    opts.ttl ?? '30m',
    '--reason',
    opts.reason ?? 'review',
    '--json',
  ]);
  if (cli.code !== 0) throw new Error(`gate grant exited ${cli.code}: ${cli.stdout}${cli.stderr}`);
  return { result: JSON.parse(cli.stdout), cli };
}

/**
 * Follows a grant link as a person does: opens it (a page; nothing spent), then presses its button (a same-origin POST
 * of the link). Returns the POST's reply (303 on success) and the `name=value` of the session cookie it set.
 */
export async function exchange(
  link: string,
  ca?: Buffer,
): Promise<{ reply: Reply; page: Reply; cookie?: string; setCookie?: string }> {
  const page = await request(link, ca ? { ca } : {});
  const u = new URL(link);
  const reply = await request(link, {
    method: 'POST',
    headers: { origin: u.origin, 'sec-fetch-site': 'same-origin', 'content-type': 'application/x-www-form-urlencoded' },
    body: '',
    ...(ca ? { ca } : {}),
  });
  const setCookie = (reply.headers['set-cookie'] ?? [])[0];
  return { reply, page, ...(setCookie ? { setCookie, cookie: setCookie.split(';')[0]! } : {}) };
}

/** The Host header of a preview under host routing on the gate's default domain. */
export function previewHost(workload: string, preview: string, port: number, domain = 'localhost'): string {
  return `${preview}--${workload}.${domain}:${port}`;
}
