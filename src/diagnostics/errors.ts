// The error hierarchy. An AgentvmError is an expected failure the user can act on: the CLI renders its
// diagnostics without a stack trace and exits with its code. Anything else thrown is a bug (source 'toolkit').

import type { Diagnostic } from './diagnostic.js';
import { ExitCode } from './exit-codes.js';

export type ErrorSource = 'user' | 'toolkit';

export class AgentvmError extends Error {
  readonly code: string;
  readonly source: ErrorSource;
  readonly diagnostics: readonly Diagnostic[];
  readonly exitCode: ExitCode;
  /** What to do about it, when the error says (also in the default diagnostic). */
  readonly detail: string | undefined;

  constructor(
    code: string,
    message: string,
    options: {
      detail?: string;
      diagnostics?: readonly Diagnostic[];
      source?: ErrorSource;
      exitCode?: ExitCode;
      cause?: unknown;
    } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'AgentvmError';
    this.code = code;
    this.source = options.source ?? 'user';
    this.exitCode = options.exitCode ?? ExitCode.Error;
    this.detail = options.detail;
    this.diagnostics = options.diagnostics ?? [
      { code, severity: 'error', summary: message, ...(options.detail ? { detail: options.detail } : {}) },
    ];
  }
}

/** A user-facing refusal: bad flags, missing files, refused operations. */
export function userError(code: string, message: string, detail?: string): AgentvmError {
  return new AgentvmError(code, message, detail === undefined ? {} : { detail });
}
