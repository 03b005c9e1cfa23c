// The restart table: which settings restart, which reload, which touch nothing; unknown settings restart.
import { describe, expect, it } from 'vitest';
import { changeEffect, keyEffect } from './restart-table.js';

describe('keyEffect', () => {
  it('follows the table', () => {
    expect(keyEffect('Unit', 'Description')).toBe('none');
    expect(keyEffect('Unit', 'X-AgentvmOwner')).toBe('none');
    expect(keyEffect('Install', 'WantedBy')).toBe('none');
    expect(keyEffect('Service', 'ExecReload')).toBe('reload');
    expect(keyEffect('Service', 'MemoryMax')).toBe('reload');
    expect(keyEffect('Service', 'TasksMax')).toBe('reload');
    expect(keyEffect('Service', 'IPAddressAllow')).toBe('reload');
    expect(keyEffect('Service', 'ExecStart')).toBe('restart');
    expect(keyEffect('Service', 'Environment')).toBe('restart');
    expect(keyEffect('Service', 'LoadCredential')).toBe('restart');
    expect(keyEffect('Service', 'WorkingDirectory')).toBe('restart');
    expect(keyEffect('Service', 'ProtectSystem')).toBe('restart');
  });

  it('restarts for a setting it does not know (fail safe)', () => {
    expect(keyEffect('Service', 'SomeFutureSetting')).toBe('restart');
    expect(keyEffect('Unit', 'After')).toBe('restart');
  });
});

describe('changeEffect', () => {
  const change = (section: string, key: string) => ({ section, key, before: ['a'], after: ['b'] });
  it('is the worst effect, with its causes', () => {
    expect(changeEffect([])).toEqual({ effect: 'none', causes: [] });
    expect(changeEffect([change('Unit', 'Description')])).toEqual({ effect: 'none', causes: ['Unit.Description'] });
    expect(changeEffect([change('Unit', 'Description'), change('Service', 'MemoryMax')])).toEqual({
      effect: 'reload',
      causes: ['Service.MemoryMax'],
    });
    expect(
      changeEffect([change('Service', 'MemoryMax'), change('Service', 'Environment'), change('Service', 'TasksMax')]),
    ).toEqual({ effect: 'restart', causes: ['Service.Environment'] });
  });
});
