// Default-deny egress for Tier-2 jobs, the host half (ADR 0006): creates a job's network namespace with its tap
// device and nftables ruleset, opens the egress proxies, and deletes it all again.
//
// Invariants and reasons:
// - The namespace holds exactly one tap (`avm0`, the guest's NIC) and loopback: no veth, no route out. What the
//   guest can reach is what the proxies serve, and the ruleset (egress.ts) drops the rest.
// - Proxy listeners are created INSIDE the namespace by a short-lived helper (`ip netns exec <ns> node -e …`) that
//   hands the listening sockets to this process over the IPC channel and exits; this process proxies to the
//   allowlisted destination from the host's namespace. Nothing long-lived runs in the namespace but the VMM, and
//   when agentvm dies the proxies die with it: egress fails closed.
// - The helper's command line carries the run directory, so a reaper that kills every process mentioning the run
//   directory also kills a helper stranded by a crash.
// - Everything of a job network is named after the run: namespace `agentvm-<runId>` under /run/netns; deleting
//   the namespace deletes the tap and the ruleset with it (the tap is also deleted explicitly first).

import { spawn } from 'node:child_process';
import dgram from 'node:dgram';
import { existsSync } from 'node:fs';
import net from 'node:net';
import { errorDiag, type Diagnostic } from '../../diagnostics/index.js';
import type { EgressProxy } from '../../egress/proxy.js';
import type { EgressCaller } from '../../egress/rules.js';
import { JOB_TAP, nftRuleset, type EgressPlan, type ProxyListener } from './egress.js';

/** Port of the egress proxy on a job's gateway (the same rule engine as services: decisions/0016). */
export const JOB_PROXY_PORT = 3128;

export interface CommandRun {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a host command to completion (never through a shell); a missing binary is code 127. */
export function runCommand(argv: readonly string[], input?: string): Promise<CommandRun> {
  const [command, ...args] = argv;
  return new Promise((resolve) => {
    if (command === undefined) {
      resolve({ code: 127, stdout: '', stderr: 'empty command' });
      return;
    }
    const child = spawn(command, args, { stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout?.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr?.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', (error: NodeJS.ErrnoException) =>
      resolve({ code: error.code === 'ENOENT' ? 127 : -1, stdout, stderr: error.message }),
    );
    child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
    if (input !== undefined) child.stdin?.end(input);
  });
}

/** The namespace name of a run. Run ids are validated by the registry, so this is always a safe file name. */
export function jobNetnsName(runId: string): string {
  return `agentvm-${runId}`;
}

/** Whether `ip netns` knows the namespace (its bind mount under /run/netns exists). */
export function netnsExists(name: string): boolean {
  return existsSync(`/run/netns/${name}`);
}

export interface JobNetwork {
  netns: string;
  tap: string;
  plan: EgressPlan;
  /** Closes every proxy listener and connection (the namespace itself is deleted by `deleteJobNetwork`). */
  close(): void;
}

export interface JobNetworkRequest {
  netns: string;
  plan: EgressPlan;
  /** The run directory: put on the helper's command line so a reaper finds a stranded helper. */
  marker: string;
  /**
   * The host's egress proxy logic for this run: a listener on the gateway's JOB_PROXY_PORT whose connections are
   * served by `proxy` as `caller` (the listener is the run's identity).
   */
  egressProxy?: { proxy: EgressProxy; caller: EgressCaller };
}

/**
 * Creates the namespace, the tap, the ruleset and the proxies. On failure whatever was created is deleted again
 * and the diagnostics say which step failed (most often: not root, or nftables/iproute2 missing).
 */
export async function createJobNetwork(
  request: JobNetworkRequest,
): Promise<{ network?: JobNetwork; diagnostics: Diagnostic[] }> {
  const { netns, plan } = request;
  const fail = async (step: string, run: CommandRun, hint: string): Promise<{ diagnostics: Diagnostic[] }> => {
    await deleteJobNetwork(netns);
    return {
      diagnostics: [
        errorDiag(
          'microvm.network-setup-failed',
          `The job's network namespace could not be set up: ${step} failed${run.stderr.trim() === '' ? '' : ` (${run.stderr.trim().split('\n').slice(-2).join(' | ')})`}.`,
          {
            detail: `${hint} Nothing of the namespace was left behind.`,
          },
        ),
      ],
    };
  };
  const add = await runCommand(['ip', 'netns', 'add', netns]);
  if (add.code !== 0) {
    return fail(
      `ip netns add ${netns}`,
      add,
      add.code === 127
        ? 'Install iproute2: apt-get install iproute2.'
        : 'Creating network namespaces needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN).',
    );
  }
  const proxyListener: ProxyListener | undefined = request.egressProxy
    ? {
        protocol: 'tcp',
        listenPort: JOB_PROXY_PORT,
        upstream: { address: plan.guest.gateway, port: 0 },
        guestTarget: { address: plan.guest.gateway, port: JOB_PROXY_PORT },
        rule: { host: '(egress proxy)', port: JOB_PROXY_PORT, protocol: 'tcp' },
      }
    : undefined;
  const listeners = proxyListener
    ? [...plan.listeners.filter((l) => l.listenPort !== JOB_PROXY_PORT || l.protocol !== 'tcp'), proxyListener]
    : plan.listeners;
  const ruleset = proxyListener ? nftRuleset(plan.guest, listeners) : plan.ruleset;
  // The three steps run side by side (ADR 0028): the tap and its address, the ruleset (it names the tap by
  // `iifname`, so it needs no tap yet), and the proxy helper's start (a Node process: the slowest step). The helper
  // binds only once the address exists (`linked`). Nothing is booted before all three have succeeded.
  let linkedOk: (ok: boolean) => void = () => {};
  const linked = new Promise<boolean>((resolve) => (linkedOk = resolve));
  const proxiesOpened = openProxies(
    netns,
    plan.guest.gateway,
    listeners,
    request.marker,
    linked,
    proxyListener && request.egressProxy ? { listener: proxyListener, ...request.egressProxy } : undefined,
  ).then(
    (proxies) => ({ proxies }),
    (error: Error) => ({ error }),
  );
  const linksDone = runCommand(
    ['ip', '-n', netns, '-batch', '-'],
    [
      'link set lo up',
      `tuntap add dev ${JOB_TAP} mode tap`,
      `addr add ${plan.guest.gateway}/${plan.guest.prefixLength} dev ${JOB_TAP}`,
      `link set ${JOB_TAP} up`,
      '',
    ].join('\n'),
  ).then((run) => (linkedOk(run.code === 0), run));
  const [links, rules, opened] = await Promise.all([
    linksDone,
    runCommand(['ip', 'netns', 'exec', netns, 'nft', '-f', '-'], ruleset),
    proxiesOpened,
  ]);
  const failed = async (): Promise<{ diagnostics: Diagnostic[] }> => {
    if ('proxies' in opened) opened.proxies.close();
    if (links.code !== 0)
      return fail(`creating tap ${JOB_TAP}`, links, 'The kernel needs TUN/TAP support (/dev/net/tun).');
    if (rules.code !== 0)
      return fail(
        'loading the nftables ruleset',
        rules,
        rules.code === 127 || /nft.*(not found|No such file)/.test(rules.stderr)
          ? 'Install nftables: apt-get install nftables.'
          : 'The kernel needs nf_tables with NAT support.',
      );
    return fail(
      'opening the egress proxies',
      { code: -1, stdout: '', stderr: 'error' in opened ? opened.error.message : '' },
      'See the message above.',
    );
  };
  if (links.code !== 0 || rules.code !== 0 || !('proxies' in opened)) return failed();
  const { proxies } = opened;
  return { network: { netns, tap: JOB_TAP, plan, close: () => proxies.close() }, diagnostics: [] };
}

export interface NetworkTeardown {
  /** The namespace existed and is gone now. */
  netnsDeleted: boolean;
  /** The tap existed and is gone now. */
  tapDeleted: boolean;
  /** Why something could not be deleted; empty when everything is gone. */
  problems: string[];
}

/** Deletes the tap and then the namespace; a namespace that does not exist is no problem. Idempotent. */
export async function deleteJobNetwork(netns: string): Promise<NetworkTeardown> {
  const result: NetworkTeardown = { netnsDeleted: false, tapDeleted: false, problems: [] };
  if (!netnsExists(netns)) return result;
  const tap = await runCommand(['ip', '-n', netns, 'link', 'del', JOB_TAP]);
  result.tapDeleted = tap.code === 0;
  const del = await runCommand(['ip', 'netns', 'delete', netns]);
  if (del.code === 0 || !netnsExists(netns)) result.netnsDeleted = true;
  else result.problems.push(`ip netns delete ${netns}: ${del.stderr.trim() || `exit ${del.code}`}`);
  return result;
}

// ---------------------------------------------------------------------------------------------------------
// Proxies

/**
 * Runs inside the namespace: once the parent says so (the gateway address exists), opens each listener on the
 * gateway, sends its handle to the parent, exits.
 */
const HELPER = `
const net = require('node:net');
const dgram = require('node:dgram');
const specs = JSON.parse(process.argv[2]);
process.on('disconnect', () => process.exit(1));
let left = specs.length;
const done = () => { if (--left === 0) process.exit(0); };
const fail = (error) => { process.send({ error: String(error && error.message || error) }, () => process.exit(1)); };
process.once('message', () => specs.forEach((s, index) => {
  if (s.protocol === 'tcp') {
    const server = net.createServer();
    server.on('error', fail);
    server.listen({ host: s.host, port: s.port, exclusive: true }, () => process.send({ index }, server, () => { server.close(); done(); }));
  } else {
    const socket = dgram.createSocket('udp4');
    socket.on('error', fail);
    socket.bind({ address: s.host, port: s.port, exclusive: true }, () => process.send({ index }, socket, () => { socket.close(); done(); }));
  }
}));
`;

const HELPER_TIMEOUT_MS = 10_000;
const UDP_IDLE_MS = 30_000;
const UDP_MAX_PEERS = 256;

interface EgressProxies {
  close(): void;
}

/** Listeners sit on the namespace's gateway address (the guest's default route). */
async function openProxies(
  netns: string,
  gateway: string,
  listeners: readonly ProxyListener[],
  marker: string,
  linked: Promise<boolean>,
  egress?: { listener: ProxyListener; proxy: EgressProxy; caller: EgressCaller },
): Promise<EgressProxies> {
  const closers: Array<() => void> = [];
  const proxies: EgressProxies = { close: () => closers.splice(0).forEach((c) => c()) };
  if (listeners.length === 0) return proxies;
  const helperSpecs = listeners.map((l) => ({ protocol: l.protocol, host: gateway, port: l.listenPort }));
  // argv[1] (the marker) is there for the reaper only; the helper reads its specs from argv[2].
  const child = spawn(
    'ip',
    ['netns', 'exec', netns, process.execPath, '-e', HELPER, marker, JSON.stringify(helperSpecs)],
    { stdio: ['ignore', 'ignore', 'pipe', 'ipc'] },
  );
  let stderr = '';
  child.stderr?.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  try {
    // Every listener is attached now, before waiting for the address: an early 'error' or 'close' is never missed.
    const answered = new Promise<void>((resolve, reject) => {
      let received = 0;
      const timer = setTimeout(
        () => reject(new Error(`the proxy helper did not answer within ${HELPER_TIMEOUT_MS} ms`)),
        HELPER_TIMEOUT_MS,
      );
      child.on('error', (error) => {
        clearTimeout(timer);
        reject(error);
      });
      child.on('message', (message: { index?: number; error?: string }, handle: unknown) => {
        if (message.error !== undefined) {
          clearTimeout(timer);
          reject(new Error(message.error));
          return;
        }
        const listener = message.index === undefined ? undefined : listeners[message.index];
        if (listener === undefined) return;
        if (handle instanceof net.Server && egress && listener === egress.listener)
          closers.push(serveEgressProxy(handle, egress.proxy, egress.caller));
        else if (handle instanceof net.Server) closers.push(serveTcp(handle, listener));
        else if (handle instanceof dgram.Socket) closers.push(serveUdp(handle, listener));
        received += 1;
        if (received === listeners.length) {
          clearTimeout(timer);
          resolve();
        }
      });
      // 'close', not 'exit': it comes after the IPC channel has delivered every message the helper sent.
      child.on('close', (code) => {
        if (received < listeners.length) {
          clearTimeout(timer);
          reject(
            new Error(
              `the proxy helper exited with ${code ?? 'a signal'}${stderr.trim() === '' ? '' : `: ${stderr.trim().split('\n').pop() ?? ''}`}`,
            ),
          );
        }
      });
    });
    answered.catch(() => undefined);
    if (!(await linked)) throw new Error('the gateway address was not created');
    // A helper that died already has rejected `answered` ('close'); the message is then simply not sent.
    if (child.connected) child.send('listen', () => undefined);
    await answered;
  } catch (error) {
    proxies.close();
    throw error;
  } finally {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
  return proxies;
}

/** Hands each guest connection to the egress proxy as this run's caller; closing stops listening (open tunnels end with the proxy). */
function serveEgressProxy(server: net.Server, proxy: EgressProxy, caller: EgressCaller): () => void {
  server.on('connection', (guest) => proxy.accept(guest, caller));
  server.on('error', () => server.close());
  return () => server.close();
}

/**
 * Relays each guest connection to the one upstream this listener allows. Half-close aware: a guest that shuts its
 * write side (e.g. `nc </dev/null`) still receives everything the upstream sends, and an upstream that closes after
 * replying has its data flushed to the guest before the guest side ends. Only errors tear both sides down at once.
 */
function serveTcp(server: net.Server, listener: ProxyListener): () => void {
  const sockets = new Set<net.Socket>();
  server.on('connection', (guest) => {
    // The server came over IPC with default options; half-open must be set before the first 'end' can arrive.
    guest.allowHalfOpen = true;
    const upstream = net.connect({
      host: listener.upstream.address,
      port: listener.upstream.port,
      allowHalfOpen: true,
    });
    sockets.add(guest);
    sockets.add(upstream);
    const abort = (): void => {
      guest.destroy();
      upstream.destroy();
    };
    guest.on('error', abort).on('close', () => sockets.delete(guest));
    upstream.on('error', abort).on('close', () => sockets.delete(upstream));
    // pipe() ends the destination when the source ends (FIN forwarded), after flushing what was written.
    guest.pipe(upstream);
    upstream.pipe(guest);
  });
  server.on('error', () => server.close());
  return () => {
    server.close();
    for (const s of sockets) s.destroy();
    sockets.clear();
  };
}

/** Relays datagrams: one host-side socket per guest peer, replies only from the allowed upstream. */
function serveUdp(socket: dgram.Socket, listener: ProxyListener): () => void {
  const peers = new Map<string, { socket: dgram.Socket; timer: NodeJS.Timeout }>();
  const drop = (key: string): void => {
    const peer = peers.get(key);
    if (peer === undefined) return;
    clearTimeout(peer.timer);
    peer.socket.close();
    peers.delete(key);
  };
  socket.on('message', (message, rinfo) => {
    const key = `${rinfo.address}:${rinfo.port}`;
    let peer = peers.get(key);
    if (peer === undefined) {
      if (peers.size >= UDP_MAX_PEERS) return;
      const upstream = dgram.createSocket('udp4');
      upstream.on('error', () => drop(key));
      upstream.on('message', (reply, from) => {
        if (from.address !== listener.upstream.address || from.port !== listener.upstream.port) return;
        socket.send(reply, rinfo.port, rinfo.address);
      });
      peer = { socket: upstream, timer: setTimeout(() => drop(key), UDP_IDLE_MS) };
      peers.set(key, peer);
    }
    peer.timer.refresh();
    peer.socket.send(message, listener.upstream.port, listener.upstream.address);
  });
  socket.on('error', () => undefined);
  return () => {
    for (const key of [...peers.keys()]) drop(key);
    socket.close();
  };
}
