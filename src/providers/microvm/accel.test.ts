// resolveAccel's probe images: a probe boots only what prepareProbe hands it (verified private copies in job run),
// asks for them only when a probe will really boot, and answers TCG when there is nothing verified to boot.

import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { resolveAccel } from './accel.js';

const dir = mkdtempSync(join(tmpdir(), 'agentvm-accel-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('resolveAccel with prepareProbe', () => {
  it('GIVEN images that do not match their pins THEN no probe boots and the answer is TCG, not remembered', async () => {
    let asked = 0;
    const cacheFile = join(dir, 'no-images.json');
    const answer = await resolveAccel({
      setting: 'auto',
      kernelPath: '/nonexistent/vmlinuz',
      initrdPath: '/nonexistent/initrd',
      cacheFile,
      prepareProbe: async () => {
        asked++;
        return undefined;
      },
    });
    expect(answer.accel).toBe('tcg');
    expect(answer.cached).toBe(false);
    if (existsSync('/dev/kvm')) {
      // A probe would boot: the verified images were asked for, there were none, so nothing booted.
      expect(asked).toBe(1);
      expect(answer.reason).toContain('did not match their pins');
      expect(existsSync(cacheFile)).toBe(false);
    } else {
      // No /dev/kvm: TCG without asking for images at all.
      expect(asked).toBe(0);
    }
  });

  it('GIVEN a fixed setting THEN no images are prepared', async () => {
    let asked = 0;
    const prepareProbe = async () => {
      asked++;
      return undefined;
    };
    expect(
      (
        await resolveAccel({
          setting: 'tcg',
          kernelPath: 'k',
          initrdPath: 'i',
          cacheFile: join(dir, 'x.json'),
          prepareProbe,
        })
      ).accel,
    ).toBe('tcg');
    expect(
      (
        await resolveAccel({
          setting: 'kvm',
          kernelPath: 'k',
          initrdPath: 'i',
          cacheFile: join(dir, 'x.json'),
          prepareProbe,
        })
      ).accel,
    ).toBe('kvm');
    expect(asked).toBe(0);
  });
});
