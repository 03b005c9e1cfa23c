import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { hostNames, labelIndex, routeByHost } from './host-names.js';
import { AUDIT_PER_SECOND, RefusalCounter } from './limits.js';
import type { RouteTable } from './routes.js';

const dir = mkdtempSync(path.join(os.tmpdir(), 'agentvm-host-names-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const route = (workload: string, preview: string) => ({
  workload,
  preview,
  upstream: { port: 1 },
  maxTtl: '1h',
  grantees: [],
});
const table: RouteTable = {
  version: 1,
  host: 'h',
  routes: { 'web/site': route('web', 'site'), 'api/docs': route('api', 'docs') },
};

describe('preview host names', () => {
  it('on localhost: tagged, stable for one key, different per route; on a real domain: plain', () => {
    const local = hostNames(dir, 'localhost');
    const site = local.label('web', 'site')!;
    expect(site).toMatch(/^site--web--[a-z2-7]{10}$/);
    expect(hostNames(dir, 'localhost').label('web', 'site')).toBe(site); // the key is kept
    expect(local.label('api', 'docs')!.slice(-10)).not.toBe(site.slice(-10));
    expect(hostNames(dir, 'previews.example.com').label('web', 'site')).toBe('site--web');
    expect(local.label('w'.repeat(40), 'p'.repeat(20))).toBeUndefined(); // over one DNS label
  });

  it('a Host header routes only by its exact label under the exact domain, any case and port', () => {
    const names = hostNames(dir, 'localhost');
    const index = labelIndex(names, table);
    const label = names.label('web', 'site')!;
    expect(routeByHost(`${label.toUpperCase()}.LOCALHOST:8443`, 'localhost', index)).toEqual({
      key: 'web/site',
      host: `${label}.localhost:8443`,
    });
    for (const bad of [
      undefined,
      '',
      'site--web.localhost',
      `${label}.localhost.evil`,
      `x.${label}.localhost`,
      `${label}.localhost:99999999`,
      `${label}`,
      '127.0.0.1:8443',
    ]) {
      expect(routeByHost(bad, 'localhost', index), String(bad)).toBeUndefined();
    }
  });

  it('two routes whose plain names collide are reachable by neither', () => {
    const names = hostNames(dir, 'example.com');
    const clash: RouteTable = {
      version: 1,
      host: 'h',
      routes: { 'b--c/a': route('b--c', 'a'), 'c/a--b': route('c', 'a--b') },
    };
    expect(names.label('b--c', 'a')).toBe(names.label('c', 'a--b'));
    expect(routeByHost('a--b--c.example.com', 'example.com', labelIndex(names, clash))).toBeUndefined();
  });
});

describe('refusal accounting', () => {
  it('audits the first refusals of a second one by one and the rest as one aggregate per source', () => {
    const flushed: Array<[string, number, number]> = [];
    const c = new RefusalCounter((s, n, k) => flushed.push([s, n, k]));
    const t = 1_000_000;
    const verdicts = Array.from({ length: 100 }, () => c.refusal('10.0.0.1', t));
    expect(verdicts.filter((v) => v.audit).length).toBe(AUDIT_PER_SECOND);
    expect(c.refusal('10.0.0.2', t).audit).toBe(true); // another source has its own budget
    c.connectionRefused('10.0.0.1', t);
    c.roll(Math.floor(t / 1000) + 1);
    expect(flushed).toEqual([['10.0.0.1', 100 - AUDIT_PER_SECOND, 1]]);
    expect(c.refusal('10.0.0.1', t + 1000).audit).toBe(true); // a new second, a new budget
  });
});
