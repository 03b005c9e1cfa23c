// Issue 13, jobs: a REAL microVM job reaches the network through the same egress rule engine as the services — a
// proxy on its gateway (`$HTTP_PROXY`), served by agentvm for this run only, resolving names with the host's
// configured resolver (here a DNS server in a namespace this test creates, with the upstreams: support/egress-net.ts).
// From inside the guest: the allowlisted name is reached by plain HTTP through the proxy; an IPv6-only name is reached
// too (the proxy connects over IPv6; the guest needs none); another name, names resolving to 127.0.0.1, 10.0.0.1 and
// the metadata address, and an unlisted address literal get 403 with the reason; the upstream's address is unreachable without the proxy;
// HTTPS to the allowlisted name through CONNECT works (busybox ssl_client), and the same CONNECT with another TLS server
// name (domain fronting) is cut at the ClientHello. Every
// refusal is in the audit log under the run's address (`job.<workload>.<job>.<runId>`).

import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { JobRunResult } from '../src/app/job-run.js';
import { agentvm, assertBuilt } from './support/cli.js';
import { egressNetSupport, startEgressNet, type EgressNet } from './support/egress-net.js';
import { gitdir, type GitDir } from './support/gitdir.js';
import { testImage, type TestImage } from './support/test-image.js';

const inCi = process.env.CI === 'true';
function prerequisites(): TestImage | string {
  if (process.getuid?.() !== 0) return 'job runs need root';
  for (const [command, flag] of [
    ['qemu-system-x86_64', '--version'],
    ['ip', '-V'],
    ['nft', '--version'],
  ] as const)
    if (spawnSync(command, [flag]).status !== 0) return `${command} is not installed`;
  const net = egressNetSupport();
  if (!net.ok) return net.reason;
  return testImage();
}
const image = prerequisites();
const missing = typeof image === 'string' ? image : undefined;
if (missing !== undefined && !inCi)
  console.warn(
    `job-egress-proxy: skipping: ${missing}. Needs root, qemu-system-x86, iproute2, nftables, openssl and scripts/build-test-image.sh`,
  );

describe('job-egress-proxy: available in CI', () => {
  it.runIf(inCi)('root, qemu, namespaces and the test image are available', () => expect(missing).toBeUndefined());
});

describe.skipIf(missing !== undefined)('a microVM job goes out only through the egress proxy', () => {
  const img = image as TestImage;
  let base = '';
  let root = '';
  let repo: GitDir;
  let source: GitDir;
  let net: EgressNet;

  beforeAll(async () => {
    assertBuilt();
    net = await startEgressNet(
      ['allowed.test', 'other.test'],
      {
        'meta.test': { A: ['169.254.169.254'] },
        'loop.test': { A: ['127.0.0.1'] },
        'private.test': { A: ['10.0.0.1'] },
      },
      ['six.test'],
    );
    base = mkdtempSync(join(tmpdir(), 'agentvm-job-egress-'));
    root = join(base, 'root');
    const images = join(root, 'var/lib/agentvm/images');
    mkdirSync(images, { recursive: true });
    copyFileSync(img.kernel, join(images, 'vmlinuz'));
    copyFileSync(img.initrd, join(images, 'initramfs.cpio.gz'));
    source = await gitdir({ 'README.md': 'job release\n' });
    // Each probe: one raw proxy request (busybox nc), its answer's first line and the denial header into $AGENTVM_OUT.
    // (One shell function keeps the command under the contract's 1,000-character limit per argument.)
    const script = [
      `p() { printf 'GET http://%s HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n' "$2" | nc -w 10 "$AGENTVM_GATEWAY" 3128 >"$AGENTVM_OUT/$1.out" 2>&1; };`,
      'echo "proxy=[$HTTP_PROXY]" >"$AGENTVM_OUT/env";',
      'p allowed allowed.test/from-job; p six six.test/six; p other other.test/; p meta meta.test/; p loop loop.test/; p private private.test/;',
      `p literal ${net.v4}/;`,
      `(nc -w 5 ${net.v4} 80 </dev/null >"$AGENTVM_OUT/direct.out" 2>&1; echo $? >"$AGENTVM_OUT/direct.rc");`,
      // HTTPS through CONNECT with busybox's ssl_client: the lines below (one argument each) become /tmp/t.sh, run on the proxy connection
      // (nc -e); N names the outputs and S the TLS server name.
      // (nc -e sh FILE: the job may not execute a file it wrote, only its own program, here busybox: ADR 0022 "Jobs".)
      'printf "%s\\n" "$@" >/tmp/t.sh;',
      'N=sni S=allowed.test nc -w 10 "$AGENTVM_GATEWAY" 3128 -e sh /tmp/t.sh; N=fronted S=other.test nc -w 10 "$AGENTVM_GATEWAY" 3128 -e sh /tmp/t.sh;',
    ].join(' ');
    // Sends the CONNECT, skips the answer's headers (its status line to $N.connect), then speaks TLS as $S: what the
    // TLS client printed to $N.tls, its exit code to $N.rc.
    const tls = [
      '#!/bin/sh',
      'exec 3<&0',
      'printf "CONNECT allowed.test:443 HTTP/1.1\\r\\nHost: allowed.test:443\\r\\n\\r\\n" >&3',
      'read -r l <&3; echo "$l" >"$AGENTVM_OUT/$N.connect"',
      'while read -r l <&3; do [ "${#l}" -le 1 ] && break; done',
      'printf "GET /tls HTTP/1.1\\r\\nHost: allowed.test\\r\\nConnection: close\\r\\n\\r\\n" | ssl_client -s 3 -n "$S" >"$AGENTVM_OUT/$N.tls" 2>&1',
      'echo $? >"$AGENTVM_OUT/$N.rc"',
    ];
    repo = await gitdir({
      'hosts/h1.yaml': `apiVersion: agentvm.dev/v1alpha1\nkind: Host\nmetadata:\n  name: h1\nspec:\n  workloads: [fetcher]\n  microvm:\n    accel: tcg\n  egress:\n    resolvers: ["${net.v4}"]\n`,
      'workloads/fetcher/contract.yaml': `apiVersion: agentvm.dev/v1alpha1\nkind: WorkloadContract\nmetadata:\n  name: fetcher\nspec:\n  owner: jobs@example.com\n  riskTier: low\n  substrate: job\n  tools: []\n  egress:\n    - host: allowed.test\n      port: 80\n    - host: allowed.test\n      port: 443\n    - host: meta.test\n      port: 80\n    - host: six.test\n      port: 80\n    - host: loop.test\n      port: 80\n    - host: private.test\n      port: 80\n`,
      'workloads/fetcher/manifest.yaml': `apiVersion: agentvm.dev/v1alpha1\nkind: WorkloadManifest\nmetadata:\n  name: fetcher\nspec:\n  archetype: git-release\n  source:\n    git:\n      repo: ${source.dir}\n      commit: ${source.commit}\n  jobs:\n    - name: fetch\n      kernel: { file: vmlinuz, sha256: ${img.kernelSha256} }\n      rootfs: { file: initramfs.cpio.gz, sha256: ${img.initrdSha256}, format: initramfs }\n      command: [sh, -c, ${JSON.stringify(script)}, fetch, ${tls.map((l) => JSON.stringify(l)).join(', ')}]\n      timeoutSeconds: 120\n`,
    });
    const applied = await agentvm(['apply', '--auto-approve', '--repo', repo.dir, '--root', root, '--host', 'h1'], {
      timeoutMs: 90_000,
    });
    expect(applied.code, applied.stdout + applied.stderr).toBe(0);
  }, 180_000);

  afterAll(async () => {
    await repo?.cleanup();
    await source?.cleanup();
    await net?.cleanup();
    if (base !== '') rmSync(base, { recursive: true, force: true });
  });

  it('FROM INSIDE the guest: the allowlisted name and an IPv6-only destination are reached by name through the proxy; the rest is refused with a reason and audited', async () => {
    const out = join(base, 'out');
    const res = await agentvm(['job', 'run', 'fetcher/fetch', '--root', root, '--host', 'h1', '--out', out, '--json'], {
      timeoutMs: 240_000,
    });
    const result = JSON.parse(res.stdout) as JobRunResult;
    const read = (f: string): string => readFileSync(join(out, f), 'utf8');
    expect(read('env')).toContain('proxy=[http://');
    expect(
      read('allowed.out'),
      JSON.stringify({
        d: result.diagnostics,
        n: result.network,
        c: result.console,
        e: res.stderr,
        f: ['direct.rc', 'other.out'].map((f) => {
          try {
            return read(f);
          } catch {
            return '-';
          }
        }),
      }),
    ).toMatch(/^HTTP\/1\.1 200/);
    expect(read('allowed.out')).toContain('"path":"/from-job"');
    // six.test has only an AAAA record: the guest (IPv4 only) reaches it by name, the proxy over IPv6.
    expect(read('six.out')).toMatch(/^HTTP\/1\.1 200/);
    expect(read('six.out')).toContain(`"remote":"${net.hostV6}"`);
    expect(read('other.out')).toMatch(/^HTTP\/1\.1 403/);
    expect(read('other.out')).toContain(
      `other.test:80 refused for job.fetcher.fetch.${result.runId}: this name is not in the egress allowlist`,
    );
    expect(read('meta.out')).toContain('the name resolves to 169.254.169.254, a link-local address');
    expect(read('loop.out')).toContain('the name resolves to 127.0.0.1, a loopback address');
    expect(read('private.out')).toContain('the name resolves to 10.0.0.1, a private address');
    expect(read('literal.out')).toContain('this address is not in the egress allowlist');
    expect(read('direct.rc').trim()).not.toBe('0');
    // TLS by name: the server name the CONNECT named goes through to the upstream; another name behind an allowed
    // CONNECT (domain fronting) is cut at the ClientHello with a fatal access_denied alert and audited.
    expect(read('sni.connect')).toMatch(/^HTTP\/1\.1 200/);
    expect(read('sni.tls')).toMatch(/^HTTP\/1\.1 200/);
    expect(read('sni.tls')).toContain('"sni":"allowed.test"');
    expect(read('fronted.connect')).toMatch(/^HTTP\/1\.1 200/);
    // busybox prints the record it did not expect: an alert (0x15), fatal (02), access_denied (0x31 = 49).
    expect(read('fronted.tls'), read('fronted.tls')).toContain('15 03 01 00 02 02 31');
    expect(read('fronted.rc').trim()).not.toBe('0');
    const audit = await agentvm(['audit', 'tail', '--json', '-n', '100', '--root', root]);
    const denials = (JSON.parse(audit.stdout) as Array<{ event: string; address?: string; detail?: string }>).filter(
      (e) => e.event === 'egress.deny' && e.address === `job.fetcher.fetch.${result.runId}`,
    );
    expect(
      denials.some((d) => d.detail?.includes('allowed.test:443') && d.detail.includes('other.test')),
      JSON.stringify(denials),
    ).toBe(true);
    for (const needle of ['other.test:80', 'meta.test:80', 'loop.test:80', 'private.test:80', `${net.v4}:80`])
      expect(
        denials.some((d) => d.detail?.includes(needle)),
        needle,
      ).toBe(true);
  }, 300_000);
});
