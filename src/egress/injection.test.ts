import { describe, expect, it } from 'vitest';
import { injectedHeaderValue, rewriteHeaders, routesFor, type InjectionRoute } from './injection.js';

const P = 'agentvm-placeholder-0123';
const routes: InjectionRoute[] = [
  { name: 'llm', host: 'api.example.com', header: 'authorization', format: 'Bearer {}' },
];
const creds = (name: string) => (name === 'llm' ? { placeholder: P, value: 'REAL$&value' } : undefined);

describe('injected credentials: what the proxy replaces', () => {
  it('GIVEN the declared header holding the placeholder (bare or formatted) THEN it carries the formatted real value', () => {
    expect(injectedHeaderValue(P, P, 'Bearer {}', 'v')).toBe('Bearer v');
    expect(injectedHeaderValue(`Bearer ${P}`, P, 'Bearer {}', 'v')).toBe('Bearer v');
    // `$&` in a value is not a replacement pattern.
    expect(injectedHeaderValue(P, P, '{}', 'a$&b')).toBe('a$&b');
  });

  it('GIVEN the placeholder with anything around it THEN nothing is replaced (the agent cannot choose where the value lands)', () => {
    expect(injectedHeaderValue(`x${P}`, P, '{}', 'v')).toBeUndefined();
    expect(injectedHeaderValue(`Bearer ${P} ${P}`, P, 'Bearer {}', 'v')).toBeUndefined();
    expect(injectedHeaderValue('', '', '{}', 'v')).toBeUndefined();
  });

  it('GIVEN a request THEN only the declared header changes; other headers keep the placeholder; Host and hop headers go', () => {
    const out = rewriteHeaders(
      ['Host', 'api.example.com', 'Authorization', `Bearer ${P}`, 'X-Other', P, 'Connection', 'keep-alive'],
      routes,
      creds,
    );
    expect(out).toEqual(['Authorization', 'Bearer REAL$&value', 'X-Other', P]);
  });

  it('GIVEN routes THEN only the exact host matches', () => {
    expect(routesFor(routes, 'API.example.com.')).toHaveLength(1);
    expect(routesFor(routes, 'evil.api.example.com')).toHaveLength(0);
    expect(routesFor(undefined, 'api.example.com')).toHaveLength(0);
  });
});
