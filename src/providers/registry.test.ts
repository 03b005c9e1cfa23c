import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { isProvider, loadThirdPartyProviders, ProviderRegistry } from './registry.js';
import type { Provider } from './provider.js';

const fake = (type: string): Provider => ({
  type,
  addressPrefix: `${type}.`,
  validate: () => ({ diagnostics: [] }),
  read: async ({ address }) => ({ live: { address, provider: type, exists: false }, diagnostics: [] }),
  plan: () => ({ action: 'noop', effect: 'none', reasons: [], drift: [], diagnostics: [] }),
  apply: async () => ({ diagnostics: [] }),
  list: async () => ({ owned: [], diagnostics: [] }),
});

function pkgDir(name: string, body: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'agentvm-reg-'));
  const pkg = join(dir, 'node_modules', name);
  mkdirSync(pkg, { recursive: true });
  writeFileSync(
    join(pkg, 'package.json'),
    JSON.stringify({ name, version: '1.0.0', type: 'module', main: 'index.js' }),
  );
  writeFileSync(join(pkg, 'index.js'), body);
  return dir;
}

describe('ProviderRegistry', () => {
  it('refuses a second provider of one type and recognises the provider shape', () => {
    const r = new ProviderRegistry([fake('a')]);
    expect(() => r.register(fake('a'))).toThrow(/twice/);
    expect(isProvider(fake('b'))).toBe(true);
    expect(isProvider({ type: 'x' })).toBe(false);
  });

  it('reports a package that exports no provider, and one that would replace a built-in type', async () => {
    const bad = pkgDir('not-a-provider', 'export default { hello: 1 };');
    const dup = pkgDir(
      'dup-provider',
      "export default { type: 'a', addressPrefix: 'a.', validate(){}, read(){}, plan(){}, apply(){}, list(){} };",
    );
    try {
      const r = new ProviderRegistry([fake('a')]);
      expect((await loadThirdPartyProviders(r, [{ package: 'not-a-provider' }], bad)).map((d) => d.code)).toEqual([
        'provider.invalid',
      ]);
      expect((await loadThirdPartyProviders(r, [{ package: 'dup-provider' }], dup)).map((d) => d.code)).toEqual([
        'provider.duplicate',
      ]);
      const thrower = pkgDir('throws', "throw new Error('boom at import');");
      expect((await loadThirdPartyProviders(r, [{ package: 'throws' }], thrower)).map((d) => d.code)).toEqual([
        'provider.load-failed',
      ]);
      rmSync(thrower, { recursive: true, force: true });
    } finally {
      rmSync(bad, { recursive: true, force: true });
      rmSync(dup, { recursive: true, force: true });
    }
  });
});
