// The egress tests' own small internet: a network namespace the test creates (`agentvm-eg-<pid>-<n>`), joined to the
// host namespace by a veth pair on a benchmarking range (198.18.<k>.0/24 and 2001:db8:<k>::/64 — neither private,
// loopback nor link-local, so the proxy treats them as public), with egress-upstream.mjs serving DNS (:53), HTTP (:80)
// and HTTPS (:443, a self-signed certificate for the test's names) inside it. Nothing outside loopback and this
// namespace is touched; cleanup() removes the namespace, the veth and the certificate directory.

import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));

export interface EgressNet {
  ns: string;
  /** The namespace's addresses (where DNS, HTTP and HTTPS answer). */
  v4: string;
  v6: string;
  /** The host side of the veth. */
  hostV4: string;
  hostV6: string;
  /** The self-signed certificate the HTTPS server uses (as a CA for clients). */
  ca: Buffer;
  records: Record<string, { A?: string[]; AAAA?: string[] }>;
  cleanup(): Promise<void>;
}

/** Whether this machine can create namespaces (root, `ip`, `openssl`); the reason otherwise. */
export function egressNetSupport(): { ok: true } | { ok: false; reason: string } {
  if (process.getuid?.() !== 0) return { ok: false, reason: 'network namespaces need root' };
  for (const tool of ['/usr/sbin/ip', '/usr/bin/openssl'])
    if (!existsSync(tool) && !existsSync(tool.replace('/usr', '')))
      return { ok: false, reason: `${path.basename(tool)} is not installed (apt-get install iproute2 openssl)` };
  return { ok: true };
}

let counter = 0;

/**
 * `names` get the namespace's addresses (`v6only` ones only its IPv6 address); `extra` adds records of its own (e.g. a
 * name resolving to 127.0.0.1).
 */
export async function startEgressNet(
  names: string[],
  extra: Record<string, { A?: string[]; AAAA?: string[] }> = {},
  v6only: string[] = [],
): Promise<EgressNet> {
  const n = counter++;
  const k = ((process.pid + n * 7) % 200) + 20;
  const ns = `agentvm-eg-${process.pid}-${n}`;
  const vh = `aeg${process.pid % 100000}${n}h`.slice(0, 15);
  const vn = `aeg${process.pid % 100000}${n}n`.slice(0, 15);
  const v4 = `198.18.${k}.2`;
  const hostV4 = `198.18.${k}.1`;
  const v6 = `2001:db8:${k.toString(16)}::2`;
  const hostV6 = `2001:db8:${k.toString(16)}::1`;
  const dir = mkdtempSync(path.join(os.tmpdir(), 'agentvm-egress-net-'));
  const ip = (...args: string[]): void => void execFileSync('ip', args, { stdio: 'pipe' });
  let child: ChildProcess | undefined;
  const cleanup = async (): Promise<void> => {
    if (child && child.exitCode === null) {
      child.kill('SIGTERM');
      await new Promise((r) => child!.once('exit', r));
    }
    try {
      ip('link', 'del', vh);
    } catch {
      /* gone with the namespace */
    }
    try {
      ip('netns', 'del', ns);
    } catch {
      /* never created */
    }
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    ip('netns', 'add', ns);
    ip('link', 'add', vh, 'type', 'veth', 'peer', 'name', vn);
    ip('link', 'set', vn, 'netns', ns);
    ip('addr', 'add', `${hostV4}/24`, 'dev', vh);
    ip('-6', 'addr', 'add', `${hostV6}/64`, 'dev', vh, 'nodad');
    ip('link', 'set', vh, 'up');
    ip('-n', ns, 'addr', 'add', `${v4}/24`, 'dev', vn);
    ip('-n', ns, '-6', 'addr', 'add', `${v6}/64`, 'dev', vn, 'nodad');
    ip('-n', ns, 'link', 'set', vn, 'up');
    ip('-n', ns, 'link', 'set', 'lo', 'up');
    const cert = path.join(dir, 'cert.pem');
    const key = path.join(dir, 'key.pem');
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
        '2',
        '-subj',
        `/CN=${names[0] ?? 'egress.test'}`,
        '-addext',
        `subjectAltName=${[...names, ...v6only].map((x) => `DNS:${x}`).join(',')}`,
        '-keyout',
        key,
        '-out',
        cert,
      ],
      { stdio: 'pipe' },
    );
    // `self` in an extra record stands for the namespace's own address (a name the certificate does not cover).
    const own = Object.fromEntries(
      Object.entries(extra).map(([x, r]) => [
        x,
        {
          ...(r.A ? { A: r.A.map((a) => (a === 'self' ? v4 : a)) } : {}),
          ...(r.AAAA ? { AAAA: r.AAAA.map((a) => (a === 'self' ? v6 : a)) } : {}),
        },
      ]),
    );
    const records: EgressNet['records'] = {
      ...Object.fromEntries(names.map((x) => [x, { A: [v4], AAAA: [v6] }])),
      ...Object.fromEntries(v6only.map((x) => [x, { AAAA: [v6] }])),
      ...own,
    };
    child = spawn(
      'ip',
      [
        'netns',
        'exec',
        ns,
        process.execPath,
        path.join(HERE, 'egress-upstream.mjs'),
        JSON.stringify({ addresses: [v4, v6], records, cert, key }),
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    await new Promise<void>((resolve, reject) => {
      let err = '';
      child!.stderr!.on('data', (d: Buffer) => (err += d.toString()));
      child!.stdout!.on('data', (d: Buffer) => d.toString().includes('ready') && resolve());
      child!.once('exit', (code) => reject(new Error(`egress-upstream exited ${code}: ${err}`)));
    });
    return { ns, v4, v6, hostV4, hostV6, ca: readFileSync(cert), records, cleanup };
  } catch (error) {
    await cleanup();
    throw error;
  }
}
