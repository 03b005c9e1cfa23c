// Runs the real, built CLI (`bin/run.js` over dist/) as a child process, the way users and bots run it.
// Tests that use it need `npm run build` first (npm test does it).

import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';

export const ROOT = join(import.meta.dirname, '..', '..');
export const BIN = join(ROOT, 'bin', 'run.js');

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export function assertBuilt(): void {
  if (!existsSync(join(ROOT, 'dist', 'commands')) || !existsSync(join(ROOT, 'oclif.manifest.json'))) {
    throw new Error('The CLI is not built: run `npm run build` (npm test does it) before these tests.');
  }
}

export function agentvm(
  args: string[],
  opts: { cwd?: string; env?: NodeJS.ProcessEnv; input?: string; timeoutMs?: number } = {},
): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], {
      cwd: opts.cwd ?? ROOT,
      env: { ...process.env, NO_COLOR: '1', CI: 'true', ...opts.env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 60_000);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
    child.stdin.end(opts.input ?? '');
  });
}

/** True when the output shows a JavaScript stack trace — never acceptable for user errors. */
export function hasStackTrace(text: string): boolean {
  return (
    /\n\s+at .+\(.+:\d+:\d+\)/.test(text) || /\n\s+at (async )?[\w.<>]+ \(/.test(text) || /node:internal/.test(text)
  );
}

/**
 * Sandboxed units get PrivateTmp=yes (the tier's hardening), which hides /tmp. A test whose sandboxed program imports
 * files of this checkout (the MCP test server and its SDK) needs the checkout outside /tmp: say so instead of
 * failing with an unexplained start error.
 */
export function assertCheckoutOutsideTmp(): void {
  if (/^\/(var\/)?tmp\//.test(`${ROOT}/`)) {
    throw new Error(
      `This checkout is under /tmp (${ROOT}): sandboxed units (PrivateTmp=yes) cannot see the test servers it holds. Clone the repository elsewhere (e.g. under /work or your home) and run the tests there.`,
    );
  }
}
