// CallBatch over a fake command runner (the real systemctl runs in test/systemd-provider.test.ts): calls made
// while a run is in flight share the next run; a failed batch is retried per item so the failure is attributed.
import { describe, expect, it } from 'vitest';
import { CallBatch } from './batch.js';
import type { CommandResult } from './systemctl.js';

function gate() {
  let open!: () => void;
  const opened = new Promise<void>((r) => (open = r));
  return { open, opened };
}

describe('CallBatch', () => {
  it('serves every call queued during a run with one next run, which starts after they all asked', async () => {
    const runs: string[][] = [];
    const first = gate();
    const batch = new CallBatch<string>(
      async (items) => {
        runs.push(items);
        if (runs.length === 1) await first.opened;
        return { code: 0, stdout: '', stderr: '' };
      },
      async () => ({ code: 0, stdout: '', stderr: '' }),
    );
    const a = batch.submit('a');
    const queued = ['b', 'c', 'd', 'c'].map((u) => batch.submit(u));
    first.open();
    await Promise.all([a, ...queued]);
    expect(runs).toEqual([['a'], ['b', 'c', 'd']]);
    expect([batch.calls, batch.runs]).toEqual([5, 2]);
  });

  it('retries a failed batch one item at a time, so only the unit that fails gets the failure', async () => {
    const first = gate();
    let started = 0;
    const fail = (item: string): CommandResult => ({
      code: item === 'bad' ? 1 : 0,
      stdout: '',
      stderr: item === 'bad' ? 'Unit bad not found.' : '',
    });
    const batch = new CallBatch<string>(
      async (items) => {
        if (started++ === 0) await first.opened;
        return items.includes('bad')
          ? { code: 1, stdout: '', stderr: 'Unit bad not found.' }
          : { code: 0, stdout: '', stderr: '' };
      },
      async (item) => fail(item),
    );
    const warm = batch.submit('x');
    const results = ['good', 'bad', 'also-good'].map((u) => batch.submit(u));
    first.open();
    await warm;
    expect((await Promise.all(results)).map((r) => r.code)).toEqual([0, 1, 0]);
  });
});
