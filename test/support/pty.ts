// Runs the real, built CLI in a pseudo-terminal, the way an engineer at a terminal runs it (@lydell/node-pty: node-pty
// 1.1.0 with prebuilt binaries as platform packages, so `npm ci` compiles nothing and runs no install script): stdin and
// stdout are a TTY, so agentvm takes its interactive path (ink views, the approval prompt). Tests wait for text on
// the screen with a timeout, type answers, and read the exit code. Needs `npm run build` first, like cli.ts.

import { createRequire } from 'node:module';
import type { IPty } from '@lydell/node-pty';
import { BIN, ROOT } from './cli.js';

const require = createRequire(import.meta.url);

/** Removes terminal escape sequences (CSI, OSC, single-character escapes) to match on what the screen says. */
export function stripAnsi(s: string): string {
  // eslint-disable-next-line no-control-regex
  return s.replace(/\u001b\[[0-?]*[ -/]*[@-~]|\u001b\][^\u0007\u001b]*(\u0007|\u001b\\)|\u001b[@-_]/g, '');
}

export interface PtyRun {
  /** Everything the program wrote, escape codes included. */
  readonly raw: string;
  /** The same without escape codes. */
  readonly text: string;
  /** Resolves when `pattern` has appeared in the output (escape codes stripped); rejects after `timeoutMs`. */
  waitFor(pattern: string | RegExp, timeoutMs?: number): Promise<void>;
  write(data: string): void;
  /** Resolves with the exit code; rejects after `timeoutMs`. */
  exit(timeoutMs?: number): Promise<number>;
  kill(): void;
}

/** An environment for a person at a terminal: no CI, no NO_COLOR, a capable TERM. */
export function terminalEnv(extra: NodeJS.ProcessEnv = {}): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env))
    if (v !== undefined && k !== 'CI' && k !== 'NO_COLOR' && k !== 'FORCE_COLOR') env[k] = v;
  for (const [k, v] of Object.entries(extra)) if (v !== undefined) env[k] = v;
  return { ...env, TERM: 'xterm-256color' };
}

export function agentvmPty(
  args: string[],
  opts: { cwd?: string; env?: NodeJS.ProcessEnv; cols?: number; rows?: number; nodeArgs?: string[] } = {},
): PtyRun {
  const pty = require('@lydell/node-pty') as typeof import('@lydell/node-pty');
  const proc: IPty = pty.spawn(process.execPath, [...(opts.nodeArgs ?? []), BIN, ...args], {
    name: 'xterm-256color',
    cols: opts.cols ?? 120,
    rows: opts.rows ?? 40,
    cwd: opts.cwd ?? ROOT,
    env: terminalEnv(opts.env),
  });
  let raw = '';
  let exitCode: number | undefined;
  const listeners = new Set<() => void>();
  const notify = () => listeners.forEach((l) => l());
  proc.onData((d) => {
    raw += d;
    notify();
  });
  proc.onExit((e) => {
    exitCode = e.exitCode;
    notify();
  });
  const until = (done: () => boolean, timeoutMs: number, what: () => string): Promise<void> =>
    new Promise((resolve, reject) => {
      const check = () => {
        if (!done()) return false;
        clearTimeout(timer);
        listeners.delete(check);
        resolve();
        return true;
      };
      const timer = setTimeout(() => {
        listeners.delete(check);
        reject(new Error(`${what()}\n--- screen so far ---\n${stripAnsi(raw)}`));
      }, timeoutMs);
      if (!check()) listeners.add(check);
    });
  return {
    get raw() {
      return raw;
    },
    get text() {
      return stripAnsi(raw);
    },
    waitFor(pattern, timeoutMs = 30_000) {
      const found = () =>
        typeof pattern === 'string' ? stripAnsi(raw).includes(pattern) : pattern.test(stripAnsi(raw));
      return until(
        found,
        timeoutMs,
        () =>
          `Timed out after ${timeoutMs} ms waiting for ${String(pattern)}${exitCode !== undefined ? ` (the program exited with ${exitCode})` : ''}`,
      );
    },
    write(data) {
      proc.write(data);
    },
    async exit(timeoutMs = 30_000) {
      await until(
        () => exitCode !== undefined,
        timeoutMs,
        () => `Timed out after ${timeoutMs} ms waiting for the program to exit`,
      );
      return exitCode!;
    },
    kill() {
      if (exitCode === undefined) {
        try {
          proc.kill('SIGKILL');
        } catch {
          // already gone
        }
      }
    },
  };
}
