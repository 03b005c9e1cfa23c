// Issue 13, step 1: the egress proxy as a library, against real sockets. Upstreams, and the resolver the proxy asks,
// live in a network namespace this test creates (support/egress-net.ts); the proxy runs in the test process on two
// callers' unix sockets, each with its own allowlist. The hostile caller tries every way around the rules: another
// name, an unlisted address literal, names that resolve to loopback / private / metadata addresses, a TLS server name
// that differs from the CONNECT host, no server name at all, and a flood of denials (aggregated in the audit log).

import { mkdtempSync, rmSync } from 'node:fs';
import { connect, createServer, type AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hostAddresses } from '../src/egress/address-class.js';
import { EgressProxy, type CallerSettings, type ProxySettings } from '../src/egress/proxy.js';
import { tailAudit } from '../src/state/audit-log.js';
import { connectVia, forwardGet, httpsVia } from './support/egress-client.js';
import { egressNetSupport, startEgressNet, type EgressNet } from './support/egress-net.js';

const support = egressNetSupport();
const inCi = process.env.CI === 'true';
if (!support.ok && !inCi) console.warn(`egress-proxy: skipping: ${support.reason}`);

describe('egress-proxy: network namespaces are available in CI', () => {
  it.runIf(inCi)('the test can create a namespace', () => expect(support).toEqual({ ok: true }));
});

describe.skipIf(!support.ok && !inCi)('the egress proxy against real sockets', () => {
  let net: EgressNet;
  let dir: string;
  let proxy: EgressProxy;
  let settings: ProxySettings;
  const sock = (name: string) => ({ path: path.join(dir, name, 'proxy.sock') });
  const audit = () => tailAudit(path.join(dir, 'audit.jsonl'), 1000).filter((e) => e.event === 'egress.deny');
  const flushed = async () => {
    // The audit writer group-commits every 50 ms; wait for the group, not for a duration: poll the file.
    for (let i = 0; i < 500 && proxy.audit.written < proxy.audit.records; i++)
      await new Promise((r) => setTimeout(r, 10));
  };

  beforeAll(async () => {
    net = await startEgressNet(['allowed.test', 'other.test'], {
      'loop.test': { A: ['127.0.0.1'] },
      'private.test': { A: ['10.0.0.1'] },
      'meta.test': { A: ['169.254.169.254'] },
    });
    dir = mkdtempSync(path.join(os.tmpdir(), 'agentvm-egress-proxy-'));
    const callers: CallerSettings[] = [
      {
        id: 'unit.hostile.core',
        workload: 'hostile',
        socket: sock('core').path,
        entries: [
          { host: 'allowed.test', port: 443 },
          { host: 'allowed.test', port: 80 },
          { host: 'loop.test', port: 80 },
          { host: 'private.test', port: 80 },
          { host: 'meta.test', port: 80 },
          { host: `${net.v4}`, port: 80 },
        ],
      },
      {
        id: 'unit.other.web',
        workload: 'other',
        socket: sock('web').path,
        entries: [{ host: 'other.test', port: 443 }],
      },
    ];
    settings = { resolvers: [net.v4], callers };
    proxy = new EgressProxy({
      host: 'h1',
      auditFile: path.join(dir, 'audit.jsonl'),
      ownAddresses: hostAddresses(),
      auditWindowMs: 60_000,
    });
    await proxy.reload(settings);
  }, 60_000);

  afterAll(async () => {
    await proxy?.close();
    await net?.cleanup();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('GIVEN allowed.test:443 on the allowlist WHEN the caller tunnels HTTPS to it THEN the upstream answers, having seen that SNI', async () => {
    const r = await httpsVia(sock('core'), 'allowed.test:443', { ca: net.ca });
    expect(r.status, r.tlsError ?? r.body).toBe(200);
    expect(JSON.parse(r.body)).toMatchObject({ server: 'https', sni: 'allowed.test' });
  });

  it('GIVEN allowed.test:80 WHEN a plain-HTTP forward request names it THEN it is sent in origin form with Host set to the target', async () => {
    const r = await forwardGet(sock('core'), 'http://allowed.test/hello?x=1', {
      'Proxy-Authorization': 'Basic Zm9vOmJhcg==',
    });
    expect(r.status, r.body).toBe(200);
    expect(JSON.parse(r.body)).toMatchObject({ server: 'http', host: 'allowed.test', path: '/hello?x=1' });
  });

  it('GIVEN a client that shuts its write side right after the request (printf | nc) THEN it still gets the whole answer', async () => {
    const s = connect(sock('core').path);
    s.end('GET http://allowed.test/half HTTP/1.1\r\nHost: allowed.test\r\n\r\n');
    const got = await new Promise<string>((resolve) => {
      let out = '';
      s.on('data', (d: Buffer) => (out += d.toString()));
      s.once('close', () => resolve(out));
    });
    expect(got).toMatch(/^HTTP\/1\.1 200/);
    expect(got).toContain('/half');
  });

  it('GIVEN an address literal on the allowlist WHEN requested THEN it is reached without any name', async () => {
    const r = await forwardGet(sock('core'), `http://${net.v4}/lit`);
    expect(r.status, r.body).toBe(200);
  });

  it('WHEN the caller asks for a name not on its allowlist THEN 403 with a one-line reason naming the contract, and an audit record', async () => {
    const r = await httpsVia(sock('core'), 'other.test:443', { ca: net.ca });
    expect(r.status).toBe(403);
    expect(r.body.trim()).toBe(
      'agentvm egress: other.test:443 refused for unit.hostile.core: this name is not in the egress allowlist; add {host: other.test, port: 443} to spec.egress in workloads/hostile/contract.yaml and apply.',
    );
    expect(r.head).toContain('X-Agentvm-Egress-Denied: agentvm egress: other.test:443 refused');
    await flushed();
    expect(
      audit().some(
        (e) => e.address === 'unit.hostile.core' && e.detail?.startsWith('agentvm egress: other.test:443 refused'),
      ),
    ).toBe(true);
  });

  it("GIVEN two callers WHEN each asks for the other one's destination THEN each is judged by the socket it came in on", async () => {
    expect((await httpsVia(sock('web'), 'other.test:443', { ca: net.ca })).status).toBe(200);
    expect((await httpsVia(sock('web'), 'allowed.test:443', { ca: net.ca })).status).toBe(403);
  });

  it('WHEN the caller asks for an address literal that is not listed (v4, v6, the metadata address) THEN 403', async () => {
    for (const authority of [
      `${net.v4}:443`,
      `[${net.v6}]:443`,
      '169.254.169.254:80',
      '127.0.0.1:80',
      '[::ffff:127.0.0.1]:80',
    ]) {
      const r = await connectVia(sock('core'), authority);
      expect(r.status, authority).toBe(403);
      expect(r.body, authority).toContain('not in the egress allowlist');
    }
  });

  it('GIVEN listed names that resolve to 127.0.0.1, 10.0.0.1 and 169.254.169.254 WHEN requested THEN refused as rebinding, with the address in the reason', async () => {
    for (const [name, ip, cls] of [
      ['loop.test', '127.0.0.1', 'loopback'],
      ['private.test', '10.0.0.1', 'private'],
      ['meta.test', '169.254.169.254', 'link-local'],
    ] as const) {
      const r = await forwardGet(sock('core'), `http://${name}/`);
      expect(r.status, name).toBe(403);
      expect(r.body, name).toContain(`the name resolves to ${ip}, a ${cls} address`);
    }
  });

  it('WHEN the TLS server name differs from the CONNECT host (domain fronting) THEN the tunnel is cut with a TLS alert and audited', async () => {
    const r = await httpsVia(sock('core'), 'allowed.test:443', { ca: net.ca, servername: 'other.test' });
    expect(r.status).toBe(0);
    expect(r.tlsError).toMatch(/access denied|alert|socket disconnected|ECONNRESET/i);
    await flushed();
    expect(audit().some((e) => e.detail?.includes('differs from the CONNECT host (domain fronting)'))).toBe(true);
  });

  it('WHEN the ClientHello carries no server name THEN the tunnel is refused', async () => {
    const r = await httpsVia(sock('core'), 'allowed.test:443', { ca: net.ca, servername: null });
    expect(r.status).toBe(0);
    await flushed();
    expect(audit().some((e) => e.detail?.includes('names no server (SNI)'))).toBe(true);
  });

  it('WHEN the tunnel to a TLS port carries plain bytes THEN nothing reaches the upstream and it is audited', async () => {
    const t = await connectVia(sock('core'), 'allowed.test:443');
    expect(t.status).toBe(200);
    t.socket!.write('GET / HTTP/1.1\r\nHost: other.test\r\n\r\n');
    const got = await new Promise<string>((resolve) => {
      let s = '';
      t.socket!.on('data', (d: Buffer) => (s += d.toString()));
      t.socket!.once('close', () => resolve(s));
      t.socket!.resume();
    });
    expect(got).toBe('');
    await flushed();
    expect(audit().some((e) => e.detail?.includes('does not start with a TLS ClientHello'))).toBe(true);
  });

  it('GIVEN a looping agent WHEN it is refused 50 times for one destination THEN the log holds one record now and one count when the window closes', async () => {
    const before = audit().filter((e) => e.detail?.startsWith('agentvm egress: flood.test:443')).length;
    for (let i = 0; i < 50; i++) expect((await connectVia(sock('core'), 'flood.test:443')).status).toBe(403);
    await flushed();
    expect(audit().filter((e) => e.detail?.startsWith('agentvm egress: flood.test:443')).length - before).toBe(1);
    proxy.audit.close(); // closes the window (as a shutdown or the minute's end does)
    const records = audit().filter((e) => e.detail?.startsWith('agentvm egress: flood.test:443'));
    expect(records.at(-1)?.detail).toMatch(/\(49 more time\(s\) since /);
  });

  it("GIVEN an open tunnel WHEN the allowlists are reloaded THEN the tunnel keeps working, new requests see the new rules, and the other caller's listener is the same", async () => {
    const t = await connectVia(sock('core'), 'allowed.test:80');
    expect(t.status).toBe(200);
    const open = proxy.openConnections;
    const next: ProxySettings = {
      ...settings,
      callers: settings.callers.map((c) =>
        c.id === 'unit.hostile.core' ? { ...c, entries: [...c.entries, { host: 'other.test', port: 443 }] } : c,
      ),
    };
    await proxy.reload(next);
    expect(proxy.openConnections).toBe(open);
    t.socket!.write('GET /after-reload HTTP/1.1\r\nHost: allowed.test\r\nConnection: close\r\n\r\n');
    const body = await new Promise<string>((resolve) => {
      let s = '';
      t.socket!.on('data', (d: Buffer) => (s += d.toString()));
      t.socket!.once('close', () => resolve(s));
      t.socket!.resume();
    });
    expect(body).toContain('/after-reload');
    expect((await httpsVia(sock('core'), 'other.test:443', { ca: net.ca })).status).toBe(200);
    await proxy.reload(settings);
    expect((await httpsVia(sock('core'), 'other.test:443', { ca: net.ca })).status).toBe(403);
  });

  it('GIVEN a name with only an IPv6 address WHEN tunnelled THEN the proxy reaches it over IPv6', async () => {
    const v6 = {
      ...settings,
      callers: [
        ...settings.callers,
        {
          id: 'unit.six.core',
          workload: 'six',
          socket: sock('six').path,
          entries: [{ host: `[${net.v6}]`, port: 80 }],
        },
      ],
    };
    await proxy.reload(v6);
    const r = await forwardGet(sock('six'), `http://[${net.v6}]/six`);
    expect(r.status, r.body).toBe(200);
    expect(JSON.parse(r.body).remote).toBe(net.hostV6);
  });

  it('GIVEN a profile port another process holds WHEN reloaded THEN that bridge is reported and every other caller still gets its rules', async () => {
    const holder = createServer();
    await new Promise<void>((r) => holder.listen(0, '127.0.0.1', () => r()));
    const port = (holder.address() as AddressInfo).port;
    const next = {
      ...settings,
      callers: [
        ...settings.callers.map((c) =>
          c.id === 'unit.other.web' ? { ...c, entries: [...c.entries, { host: 'allowed.test', port: 443 }] } : c,
        ),
        {
          id: 'unit.taken.p',
          workload: 'taken',
          socket: sock('taken').path,
          entries: [],
          inbound: { port, target: path.join(dir, 'nowhere.sock') },
        },
      ],
    };
    await proxy.reload(next);
    expect(proxy.inboundFailures).toEqual([{ port, error: 'EADDRINUSE' }]);
    expect((await httpsVia(sock('web'), 'allowed.test:443', { ca: net.ca })).status).toBe(200);
    holder.close();
    await proxy.reload(settings);
    expect(proxy.inboundFailures).toEqual([]);
  });

  it('WHEN a client sends garbage or a huge head THEN it gets 400/431 and the proxy keeps serving', async () => {
    const s = connect(sock('core').path);
    s.write('\x16\x03\x01garbage\r\n\r\n');
    const got = await new Promise<string>((resolve) => {
      let out = '';
      s.on('data', (d: Buffer) => (out += d.toString()));
      s.once('close', () => resolve(out));
    });
    expect(got).toMatch(/^HTTP\/1\.1 400/);
    const big = connect(sock('core').path);
    big.write(`GET http://allowed.test/ HTTP/1.1\r\nX: ${'a'.repeat(20_000)}`);
    const bigGot = await new Promise<string>((resolve) => {
      let out = '';
      big.on('data', (d: Buffer) => (out += d.toString()));
      big.once('close', () => resolve(out));
    });
    expect(bigGot).toMatch(/^HTTP\/1\.1 431/);
    expect((await forwardGet(sock('core'), 'http://allowed.test/still')).status).toBe(200);
  });
});
