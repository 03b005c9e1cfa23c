// Two projects, one run: `unit` is the colocated tests of pure layers (no build, seconds: `npm run test:unit`);
// `integration` drives the built CLI against real git, systemd, QEMU, HTTP and Chromium (`npm run test:integration`,
// which builds first). `npm test` builds, lints and runs both.
import { defineConfig } from 'vitest/config';

const shared = { testTimeout: 60_000, hookTimeout: 120_000 };
const NEEDS_BUILD = ['src/**/*.crash.test.ts'];

export default defineConfig({
  test: {
    pool: 'forks',
    maxWorkers: 2,
    projects: [
      { test: { ...shared, name: 'unit', include: ['src/**/*.test.ts'], exclude: NEEDS_BUILD } },
      { test: { ...shared, name: 'integration', include: ['test/**/*.test.ts', ...NEEDS_BUILD] } },
    ],
  },
});
