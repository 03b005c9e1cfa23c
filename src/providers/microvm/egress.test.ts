// The pure half of job egress: allowlist parsing, the egress plan (listeners, guest targets) and the namespace
// ruleset. The real namespaces, taps and guests are exercised in test/job-run.test.ts.

import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { guestAddressing, isLoopbackHost, nftRuleset, parseEgressRules, planEgress, SLOT_COUNT } from './egress.js';

describe('parseEgressRules', () => {
  it('GIVEN host:port entries THEN protocol defaults to tcp and hosts are normalised', () => {
    const { rules, diagnostics } = parseEgressRules([
      { host: 'API.Example.com.', port: 443 },
      { host: '10.0.0.53', port: 53, protocol: 'udp' },
    ]);

    expect(diagnostics).toEqual([]);
    expect(rules).toEqual([
      { host: 'api.example.com', port: 443, protocol: 'tcp' },
      { host: '10.0.0.53', port: 53, protocol: 'udp' },
    ]);
  });

  it('GIVEN a wildcard, an IPv6 address, a bad port and a bad protocol THEN each is one error and none becomes a rule', () => {
    const { rules, diagnostics } = parseEgressRules(
      [
        { host: '*.example.com', port: 443 },
        { host: '2001:db8::1', port: 443 },
        { host: 'example.com', port: 0 },
        { host: 'example.com', port: 80, protocol: 'icmp' },
        { host: 'bad host!', port: 80 },
      ],
      'job.w.j',
    );

    expect(rules).toEqual([]);
    expect(diagnostics.map((d) => d.code)).toEqual([
      'microvm.egress-wildcard',
      'microvm.egress-ipv6',
      'microvm.egress-invalid',
      'microvm.egress-invalid',
      'microvm.egress-invalid',
    ]);
    expect(diagnostics.every((d) => d.severity === 'error' && d.address === 'job.w.j')).toBe(true);
  });

  it('GIVEN no allowlist THEN there are no rules (default deny)', () => {
    expect(parseEgressRules(undefined)).toEqual({ rules: [], diagnostics: [] });
    expect(parseEgressRules([])).toEqual({ rules: [], diagnostics: [] });
  });
});

describe('guestAddressing', () => {
  it('GIVEN every slot THEN each is a distinct /30 inside 172.30.0.0/16 with gateway .1 and guest .2 of it', () => {
    const seen = new Set<string>();
    let outside = 0;
    for (let slot = 0; slot < SLOT_COUNT; slot += 1) {
      const net = guestAddressing(slot);
      if (net.prefixLength !== 30 || !net.gateway.startsWith('172.30.') || !net.address.startsWith('172.30.'))
        outside += 1;
      seen.add(net.address);
    }
    expect(outside).toBe(0);
    expect(seen.size).toBe(SLOT_COUNT);
    expect(guestAddressing(0)).toEqual({ gateway: '172.30.0.1', address: '172.30.0.2', prefixLength: 30 });
    expect(guestAddressing(SLOT_COUNT - 1)).toEqual({
      gateway: '172.30.255.253',
      address: '172.30.255.254',
      prefixLength: 30,
    });
    expect(() => guestAddressing(SLOT_COUNT)).toThrow();
  });
});

describe('planEgress', () => {
  it('GIVEN a loopback service THEN the guest reaches it at the gateway on the same port and nothing is DNATed', () => {
    const plan = planEgress([{ host: '127.0.0.1', port: 8080, protocol: 'tcp' }], new Map(), 0);

    expect(plan.listeners).toEqual([
      expect.objectContaining({
        protocol: 'tcp',
        listenPort: 8080,
        upstream: { address: '127.0.0.1', port: 8080 },
        guestTarget: { address: '172.30.0.1', port: 8080 },
      }),
    ]);
    expect(plan.ruleset).not.toContain('dnat');
    expect(plan.ruleset).toContain('ip daddr 172.30.0.1 tcp dport { 8080 } ct state new accept');
  });

  it('GIVEN a remote address and a resolved hostname THEN each destination gets its own DNAT listener', () => {
    const plan = planEgress(
      [
        { host: '203.0.113.7', port: 443, protocol: 'tcp' },
        { host: 'api.example.com', port: 443, protocol: 'tcp' },
        { host: '127.0.0.1', port: 40000, protocol: 'tcp' },
        { host: '198.51.100.53', port: 53, protocol: 'udp' },
      ],
      new Map([['api.example.com', ['198.51.100.1', '198.51.100.2']]]),
      1,
    );

    const targets = plan.listeners.map(
      (l) =>
        `${l.protocol} ${l.guestTarget.address}:${l.guestTarget.port} -> ${l.listenPort} -> ${l.upstream.address}:${l.upstream.port}`,
    );
    // The loopback service keeps port 40000, so DNAT listeners skip it.
    expect(targets).toEqual([
      'tcp 172.30.0.5:40000 -> 40000 -> 127.0.0.1:40000',
      'tcp 203.0.113.7:443 -> 40001 -> 203.0.113.7:443',
      'tcp 198.51.100.1:443 -> 40002 -> 198.51.100.1:443',
      'tcp 198.51.100.2:443 -> 40003 -> 198.51.100.2:443',
      'udp 198.51.100.53:53 -> 40004 -> 198.51.100.53:53',
    ]);
    expect(plan.ruleset).toContain(
      'iifname "avm0" ip saddr 172.30.0.6 ip daddr 203.0.113.7 tcp dport 443 dnat ip to 172.30.0.5:40001',
    );
    expect(plan.ruleset).toContain(
      'iifname "avm0" ip saddr 172.30.0.6 ip daddr 198.51.100.53 udp dport 53 dnat ip to 172.30.0.5:40004',
    );
    expect(plan.ruleset).toContain('udp dport { 40004 } ct state new accept');
    expect(plan.diagnostics).toEqual([]);
  });

  it('GIVEN a hostname that did not resolve THEN it is reported and nothing is opened for it', () => {
    const plan = planEgress(
      [{ host: 'gone.example.com', port: 443, protocol: 'tcp' }],
      new Map([['gone.example.com', []]]),
      0,
    );

    expect(plan.listeners).toEqual([]);
    expect(plan.diagnostics.map((d) => d.code)).toEqual(['microvm.egress-unresolved']);
    expect(plan.ruleset).not.toContain('ct state new accept');
  });

  it('GIVEN two loopback hosts on one port THEN the second is reported, not silently merged', () => {
    const plan = planEgress(
      [
        { host: '127.0.0.1', port: 80, protocol: 'tcp' },
        { host: '127.0.0.2', port: 80, protocol: 'tcp' },
      ],
      new Map(),
      0,
    );

    expect(plan.listeners).toHaveLength(1);
    expect(plan.diagnostics.map((d) => d.code)).toEqual(['microvm.egress-clash']);
  });

  it('GIVEN `localhost` THEN it is a loopback destination', () => {
    expect(isLoopbackHost('localhost')).toBe(true);
    expect(isLoopbackHost('127.1.2.3')).toBe(true);
    expect(isLoopbackHost('10.0.0.1')).toBe(false);
    expect(
      planEgress([{ host: 'localhost', port: 5432, protocol: 'tcp' }], new Map(), 0).listeners[0]?.upstream,
    ).toEqual({ address: '127.0.0.1', port: 5432 });
  });
});

describe('nftRuleset', () => {
  it('GIVEN no listeners THEN input and forward drop everything and nothing is accepted', () => {
    const text = nftRuleset(guestAddressing(0), []);

    expect(text).toContain('type filter hook input priority filter; policy drop;');
    expect(text).toContain('type filter hook forward priority filter; policy drop;');
    expect(text).not.toContain('ct state new accept');
    // Only replies to connections the namespace accepted may pass.
    expect(text).toContain('ct state established,related accept');
  });

  it.runIf(spawnSync('nft', ['--version']).status === 0 && process.getuid?.() === 0)(
    'GIVEN a full plan THEN nft itself accepts the ruleset (--check)',
    () => {
      const plan = planEgress(
        [
          { host: '127.0.0.1', port: 8080, protocol: 'tcp' },
          { host: '203.0.113.7', port: 443, protocol: 'tcp' },
          { host: '198.51.100.53', port: 53, protocol: 'udp' },
        ],
        new Map(),
        3,
      );

      const check = spawnSync('nft', ['--check', '-f', '-'], { input: plan.ruleset, encoding: 'utf8' });

      expect(check.stderr).toBe('');
      expect(check.status).toBe(0);
    },
  );
});
