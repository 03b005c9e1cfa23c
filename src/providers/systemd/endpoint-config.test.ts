// The account a user-scope endpoint acts for (AGENTVM_SYSTEMD_USER) and the canary part of a unit's config.

import { describe, expect, it } from 'vitest';
import { parseGatewayConfig } from './gateway-unit.js';
import { accountNamed } from './systemctl.js';

const ADDRESS = 'unit.orchestrator.research';
const config = (canary: unknown) => ({
  profile: 'research',
  entrypoint: ['python3', '-m', 'orchestrator'],
  env: {},
  listen: { port: 8102 },
  health: { path: '/healthz', timeoutSeconds: 5 },
  reload: false,
  riskTier: 'high',
  egress: [],
  secrets: [],
  releaseId: 'fe0645c4528837f2588a33651153f918d89da72d',
  scope: 'user',
  canary,
});

describe('accountNamed', () => {
  it('resolves an account from the passwd database', () => {
    expect(accountNamed('root')).toEqual({ user: 'root', uid: 0, gid: 0, home: '/root', runtimeDir: '/run/user/0' });
  });

  it('refuses a malformed or unknown name, naming the variable', () => {
    expect(() => accountNamed('root;id')).toThrow(/AGENTVM_SYSTEMD_USER="root;id" is not an account name/);
    expect(() => accountNamed('agentvm-no-such-user')).toThrow(/does not exist/);
  });
});

describe('parseGatewayConfig: canary', () => {
  it('keeps the canary (soakSeconds defaults to 60) and refuses a malformed one', () => {
    expect(parseGatewayConfig(config({ profile: 'research', soakSeconds: 2 }), ADDRESS).config?.canary).toEqual({
      profile: 'research',
      soakSeconds: 2,
    });
    expect(parseGatewayConfig(config({ profile: 'research' }), ADDRESS).config?.canary).toEqual({
      profile: 'research',
      soakSeconds: 60,
    });
    expect(parseGatewayConfig(config(null), ADDRESS).config?.canary).toBeNull();
    const bad = parseGatewayConfig(config({ profile: 'research', soakSeconds: -1 }), ADDRESS);
    expect(bad.config).toBeUndefined();
    expect(bad.diagnostics[0]?.summary).toContain('canary');
  });
});
