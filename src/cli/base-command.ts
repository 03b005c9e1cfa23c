// The base of every agentvm command. It owns what commands share: the --json output contract, rendering of
// errors as diagnostics (never a stack trace for user errors), and exit codes (ADR 0004). Commands stay thin:
// parse flags, call a use case in src/app, return an Outcome.
// Invariant: every byte a command prints passes the redaction boundary (secrets/redaction.ts) here: text, JSON,
// errors, and the lines a command streams while it works (say()), whichever layer produced them. A lint rule
// (eslint.config.js) refuses process.stdout/stderr.write anywhere else in src/, so no new output path can bypass it.

import { Command, Errors } from '@oclif/core';
import { AgentvmError, ExitCode, type Diagnostic } from '../diagnostics/index.js';
import { redactText, redactValue } from '../secrets/redaction.js';
import { renderDiagnostics } from '../ui/diagnostics-text.js';
import { styleFor } from '../ui/style.js';

export interface Outcome<R> {
  /** The typed result; printed as JSON under --json (each result type has a schema in schemas/). */
  result: R;
  /** Human-readable output for stdout when not in --json mode. */
  text?: string;
  exitCode?: ExitCode;
}

export interface ErrorJson {
  error: { code: string; message: string; source: 'user' | 'toolkit'; diagnostics: readonly Diagnostic[] };
}

export abstract class AgentvmCommand<R> extends Command {
  static override enableJsonFlag = true;

  protected abstract execute(): Promise<Outcome<R>>;

  async run(): Promise<R> {
    const outcome = await this.execute();
    if (outcome.exitCode !== undefined && outcome.exitCode !== ExitCode.Ok) process.exitCode = outcome.exitCode;
    if (!this.jsonEnabled() && outcome.text !== undefined) {
      const text = redactText(outcome.text);
      process.stdout.write(text.endsWith('\n') ? text : `${text}\n`);
    }
    return outcome.result;
  }

  /** The one way a command prints while it works (progress, a console, warnings): through the redaction boundary. */
  protected say(line: string, to: 'stdout' | 'stderr' = 'stdout'): void {
    say(line, to);
  }

  /** Machines read this: plain JSON, never colourised, one document per run. */
  protected override logJson(json: unknown): void {
    process.stdout.write(`${JSON.stringify(redactValue(json), null, 2)}\n`);
  }

  protected override toErrorJson(err: unknown): ErrorJson {
    const e = normaliseError(err);
    return { error: { code: e.code, message: e.message, source: e.source, diagnostics: e.diagnostics } };
  }

  protected override async catch(err: Error & { exitCode?: number }): Promise<void> {
    const e = normaliseError(err);
    process.exitCode = e.exitCode;
    if (this.jsonEnabled()) {
      this.logJson(this.toErrorJson(err));
      return;
    }
    // An error that carries the diagnostics behind it (e.g. `job.refused` and the problems that caused it) is
    // headed by its own summary and fix, so the reader sees what failed before why.
    const headline: Diagnostic[] = e.diagnostics.some((d) => d.code === e.code)
      ? []
      : [{ code: e.code, severity: 'error', summary: e.message, ...(e.detail ? { detail: e.detail } : {}) }];
    process.stderr.write(
      `${redactText(renderDiagnostics([...headline, ...e.diagnostics], styleFor(process.stderr)))}\n`,
    );
    if (e.source === 'toolkit') {
      if (process.env.AGENTVM_DEBUG && err instanceof Error && err.stack)
        process.stderr.write(`${redactText(err.stack)}\n`);
      else
        process.stderr.write(
          'This is a bug in agentvm. Re-run with AGENTVM_DEBUG=1 for a stack trace and report it.\n',
        );
    }
  }
}

const FS_HINTS: Record<string, { what: string; fix: string }> = {
  EACCES: {
    what: 'Permission denied',
    fix: 'Run agentvm as a user that may write there, or point --root at a directory you own.',
  },
  EPERM: {
    what: 'Operation not permitted',
    fix: 'Run agentvm as a user that may change this path, or point --root elsewhere.',
  },
  EROFS: { what: 'Read-only file system', fix: 'Point --root at a writable directory.' },
  ENOSPC: {
    what: 'No space left on the device',
    fix: 'Free space on that file system; nothing was half-written (state writes are atomic).',
  },
  EDQUOT: {
    what: 'Disk quota exceeded',
    fix: 'Raise the quota or free space; nothing was half-written (state writes are atomic).',
  },
  EIO: { what: 'I/O error', fix: 'Check the device (`dmesg`) and the file system, then run the command again.' },
  ENOTDIR: {
    what: 'A path component is not a directory',
    fix: 'Check --root and the paths under it: a file stands where a directory is expected.',
  },
  EISDIR: { what: 'A directory stands where a file is expected', fix: 'Remove or rename it, or check the path given.' },
};

/** Maps anything thrown to an AgentvmError: ours as-is, oclif usage errors as user errors, the rest as bugs. */
export function normaliseError(err: unknown): AgentvmError {
  if (err instanceof AgentvmError) return err;
  if (err instanceof Errors.CLIError || (err instanceof Error && 'oclif' in err)) {
    const message = err.message.replace(/\n\s*See more help with --help$/m, '').trim();
    return new AgentvmError('cli.usage', message.split('\n')[0] ?? message, {
      detail:
        `${message.split('\n').slice(1).join(' ').trim() || ''} Run the command with --help to see its flags and examples.`.trim(),
    });
  }
  // The filesystem refusing is the environment, not a bug: say which path and what to check.
  const fsError = err as NodeJS.ErrnoException | undefined;
  if (fsError && typeof fsError.code === 'string' && FS_HINTS[fsError.code]) {
    // write(2) and fsync(2) errors carry no path: say which call failed rather than call the environment a bug.
    const where =
      typeof fsError.path === 'string'
        ? fsError.path
        : `a ${fsError.syscall ?? 'file system'} call (the path was not reported)`;
    return new AgentvmError(`fs.${fsError.code.toLowerCase()}`, `${FS_HINTS[fsError.code]!.what}: ${where}.`, {
      detail: FS_HINTS[fsError.code]!.fix,
      cause: err,
    });
  }
  const message = err instanceof Error ? err.message : String(err);
  return new AgentvmError('internal', `Internal error: ${message}`, { source: 'toolkit', cause: err });
}

/** A line to stdout or stderr through the redaction boundary: for hooks and views that are not a command. */
export function say(line: string, to: 'stdout' | 'stderr' = 'stdout'): void {
  const text = redactText(line);
  (to === 'stdout' ? process.stdout : process.stderr).write(text.endsWith('\n') ? text : `${text}\n`);
}
