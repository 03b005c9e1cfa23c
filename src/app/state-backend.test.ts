// Unit tests of state backend selection (ADR 0017): the URL only ever comes from the environment (agentvm.yaml may
// only name a variable), a password never rides on a command line, and no message repeats a URL's password.

import { describe, expect, it } from 'vitest';
import { AgentvmError } from '../diagnostics/index.js';
import { redactUrl } from '../state/postgres/errors.js';
import { resolveUrl, stateFromRepoConfig, stateSelection } from './state-backend.js';

function thrown(fn: () => unknown): AgentvmError {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(AgentvmError);
    return error as AgentvmError;
  }
  throw new Error('expected an error');
}
const text = (e: AgentvmError) => `${e.message} ${e.detail ?? ''} ${JSON.stringify(e.diagnostics)}`;

describe('state backend selection', () => {
  it('agentvm.yaml may only name an environment variable: a literal URL is refused, and never echoed', () => {
    expect(stateFromRepoConfig({ backend: 'postgres', url: 'env:FLEET_PG' }, 'agentvm.yaml:7')).toEqual({
      backend: 'postgres',
      url: 'env:FLEET_PG',
      from: 'agentvm.yaml:7',
    });
    expect(stateFromRepoConfig({ backend: 'postgres' }, 'agentvm.yaml:7')?.url).toBe('env:AGENTVM_PG_URL');
    for (const literal of ['postgresql://agentvm:hunter2@db/agentvm', 'postgresql://agentvm@db/agentvm', 'hunter2']) {
      const e = thrown(() => stateFromRepoConfig({ backend: 'postgres', url: literal }, 'agentvm.yaml:7'));
      expect(e.code).toBe('config.state-url-literal');
      expect(e.message).toContain('agentvm.yaml:7');
      expect(text(e)).not.toContain('hunter2');
    }
    expect(stateFromRepoConfig({ backend: 'local' }, 'agentvm.yaml:7')?.backend).toBe('local');
  });

  it('resolves env:NAME, refuses an unset variable and a password on the command line, without echoing it', () => {
    process.env.H17_TEST_URL = 'postgresql://agentvm@/db?host=/tmp/x';
    expect(resolveUrl('env:H17_TEST_URL', 'test')).toBe('postgresql://agentvm@/db?host=/tmp/x');
    delete process.env.H17_TEST_URL;
    expect(thrown(() => resolveUrl('env:H17_TEST_URL', 'test')).code).toBe('state.url-missing');
    const e = thrown(() => resolveUrl('postgresql://agentvm:hunter2@db/agentvm', '--state-url'));
    expect(e.code).toBe('state.url-password');
    expect(text(e)).not.toContain('hunter2');
    expect(thrown(() => resolveUrl('mysql://db', '--state-url')).code).toBe('state.url-invalid');
  });

  it('the environment selects the backend when no command chose one; anything but local/postgres is refused', () => {
    expect(stateSelection({}).backend).toBe('local');
    expect(stateSelection({ AGENTVM_STATE_BACKEND: 'postgres', AGENTVM_STATE_URL: 'env:X' })).toMatchObject({
      backend: 'postgres',
      url: 'env:X',
    });
    expect(thrown(() => stateSelection({ AGENTVM_STATE_BACKEND: 'etcd' })).code).toBe('state.unknown-backend');
  });

  it('messages name a backend by its URL without the password', () => {
    expect(redactUrl('postgresql://agentvm:hunter2@db.example:5433/fleet?sslmode=require')).toBe(
      'postgresql://agentvm@db.example:5433/fleet',
    );
    expect(redactUrl('postgresql://agentvm@/fleet?host=%2Ftmp%2Fpg')).toBe('postgresql://agentvm@/tmp/pg/fleet');
  });
});
