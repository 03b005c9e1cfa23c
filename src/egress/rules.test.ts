import { describe, expect, it } from 'vitest';
import { classifyAddress } from './address-class.js';
import { decideDestination, screenAnswers, type EgressCaller } from './rules.js';

const caller = (entries: EgressCaller['entries']): EgressCaller => ({ id: 'unit.w.p', workload: 'w', entries });

describe('egress rules', () => {
  it('classifies every refused range, including IPv4-mapped IPv6', () => {
    const cases: Array<[string, string]> = [
      ['127.0.0.1', 'loopback'],
      ['10.1.2.3', 'private'],
      ['172.16.0.1', 'private'],
      ['192.168.1.1', 'private'],
      ['169.254.169.254', 'link-local'],
      ['100.64.0.1', 'cgnat'],
      ['0.0.0.0', 'unspecified'],
      ['::1', 'loopback'],
      ['fd00::1', 'ula'],
      ['fe80::1', 'link-local'],
      ['::ffff:127.0.0.1', 'loopback'],
      ['::ffff:10.0.0.1', 'private'],
      ['8.8.8.8', 'public'],
      ['2606:4700::1', 'public'],
      ['198.18.0.1', 'public'],
    ];
    for (const [ip, cls] of cases) expect(classifyAddress(ip), ip).toBe(cls);
  });

  it('allows exact names on the listed port only, case- and trailing-dot-insensitively', () => {
    const c = caller([{ host: 'API.example.com', port: 443 }]);
    expect(decideDestination(c, 'api.example.com.', 443)).toMatchObject({ ok: true, host: 'api.example.com' });
    expect(decideDestination(c, 'api.example.com', 80)).toMatchObject({ ok: false, code: 'not-allowed' });
    expect(decideDestination(c, 'evil.api.example.com', 443)).toMatchObject({ ok: false });
    expect(decideDestination(c, 'api.example.com.evil.net', 443)).toMatchObject({ ok: false });
  });

  it('matches a low-tier wildcard on subdomains only', () => {
    const c = caller([{ host: '*.example.com', port: 443 }]);
    expect(decideDestination(c, 'a.b.example.com', 443).ok).toBe(true);
    expect(decideDestination(c, 'example.com', 443).ok).toBe(false);
    expect(decideDestination(c, 'badexample.com', 443).ok).toBe(false);
  });

  it('allows an address literal only when an IP or CIDR entry covers it; the any-entry never covers private ones', () => {
    const c = caller([
      { host: '203.0.113.0/24', port: 443 },
      { host: '2001:db8::7', port: 443 },
      { host: '*', port: 8443 },
    ]);
    expect(decideDestination(c, '203.0.113.9', 443)).toMatchObject({ ok: true, literal: true });
    expect(decideDestination(c, '[2001:db8::7]', 443)).toMatchObject({ ok: true, literal: true });
    expect(decideDestination(c, '203.0.114.9', 443).ok).toBe(false);
    expect(decideDestination(c, '8.8.8.8', 8443)).toMatchObject({ ok: true, literal: false });
    expect(decideDestination(c, '127.0.0.1', 8443).ok).toBe(false);
    expect(decideDestination(c, '169.254.169.254', 8443).ok).toBe(false);
  });

  it('refuses answers in private ranges or of the host itself unless listed literally (DNS rebinding)', () => {
    const c = caller([
      { host: 'db.example.com', port: 5432 },
      { host: '10.0.0.5', port: 5432 },
    ]);
    expect(screenAnswers(c, 'db.example.com', 5432, ['10.0.0.5'], new Set())).toEqual({
      ok: true,
      addresses: ['10.0.0.5'],
    });
    expect(screenAnswers(c, 'db.example.com', 5432, ['10.0.0.6'], new Set())).toMatchObject({
      ok: false,
      code: 'rebinding',
    });
    expect(screenAnswers(c, 'db.example.com', 5432, ['198.51.100.1'], new Set(['198.51.100.1']))).toMatchObject({
      ok: false,
      reason: expect.stringContaining('an address of this host'),
    });
    expect(screenAnswers(c, 'db.example.com', 5432, ['127.0.0.1', '93.184.216.34'], new Set())).toEqual({
      ok: true,
      addresses: ['93.184.216.34'],
    });
  });

  it('refuses what is not a host name or port, with a one-line reason', () => {
    const c = caller([]);
    for (const [h, p] of [
      ['a b', 443],
      ['x'.repeat(300), 443],
      ['ok.example', 0],
      ['ok.example', 70000],
    ] as const) {
      const d = decideDestination(c, h, p);
      expect(d.ok).toBe(false);
      if (!d.ok) expect(d.reason).not.toContain('\n');
    }
  });
});
