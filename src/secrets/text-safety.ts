// The character-level rules for values that end up in a systemd unit line, a command line or a host path, and
// the one way governance quotes a user value back in a diagnostic.
// Invariant: `quote()` is the only place a diagnostic echoes a value, and it refuses anything that might be a
// secret, so a summary or detail never carries one.

import { findSecret } from './secret-detectors.js';

/**
 * Characters that would change the meaning of a unit-file line: newline/CR (a new directive), NUL, `%` (a
 * systemd specifier such as %h or %u is expanded) and backslash (an escape sequence or a C-style escape).
 */
const UNIT_UNSAFE = /[\n\r\0%\\]/;
const LINE_BREAKING = /[\n\r\0]/;

export type UnsafeReason = 'newline' | 'nul' | 'percent' | 'backslash' | 'whitespace' | 'option';

/** Why `value` may not be written into a unit file verbatim, or undefined when it may. */
export function unitUnsafe(value: string): UnsafeReason | undefined {
  if (!UNIT_UNSAFE.test(value)) return undefined;
  if (/[\n\r]/.test(value)) return 'newline';
  if (value.includes('\0')) return 'nul';
  if (value.includes('%')) return 'percent';
  return 'backslash';
}

/** Whether `value` would end the line it is written on (for values that are not unit lines, e.g. VM command args). */
export function breaksLine(value: string): UnsafeReason | undefined {
  if (!LINE_BREAKING.test(value)) return undefined;
  return value.includes('\0') ? 'nul' : 'newline';
}

export function describeUnsafe(reason: UnsafeReason): string {
  switch (reason) {
    case 'newline':
      return 'a line break (it would start a new unit-file directive)';
    case 'nul':
      return 'a NUL character';
    case 'percent':
      return 'a `%` (systemd expands `%` specifiers such as %h and %u in unit files)';
    case 'backslash':
      return 'a backslash (systemd reads it as an escape sequence)';
    case 'whitespace':
      return 'whitespace (it would split into several values)';
    case 'option':
      return 'a leading `-` (the command it is passed to would read it as an option)';
  }
}

export type PathProblem = 'absolute' | 'parent' | 'backslash' | 'empty';

/** Whether `value` is a relative path that stays inside the directory it is resolved against. */
export function relativePathProblem(value: string): PathProblem | undefined {
  if (value.length === 0) return 'empty';
  if (value.startsWith('/') || value.startsWith('~')) return 'absolute';
  if (value.includes('\\')) return 'backslash';
  if (hasParentSegment(value)) return 'parent';
  return undefined;
}

/** A `..` segment anywhere in a slash-separated path. */
export function hasParentSegment(value: string): boolean {
  if (!value.includes('..')) return false;
  for (const seg of value.split('/')) if (seg === '..') return true;
  return false;
}

export function describePathProblem(p: PathProblem): string {
  switch (p) {
    case 'absolute':
      return 'is an absolute path';
    case 'parent':
      return 'climbs out of its directory with `..`';
    case 'backslash':
      return 'contains a backslash';
    case 'empty':
      return 'is empty';
  }
}

const QUOTABLE = /^[A-Za-z0-9._:/@*^~<>=|+, -]{1,80}$/;
/** A run that mixes cases and digits, as random tokens do: never echoed even when too short to be flagged. */
const TOKEN_LIKE_RUN = /[A-Za-z0-9+/=_-]{16,}/g;

/** `value` itself when it is short, printable and cannot be a secret; otherwise undefined. */
export function safeText(value: unknown): string | undefined {
  if (typeof value === 'number' && Number.isFinite(value)) return String(value);
  if (typeof value !== 'string' || !QUOTABLE.test(value) || findSecret(value) !== undefined) return undefined;
  for (const run of value.match(TOKEN_LIKE_RUN) ?? [])
    if (/[A-Z]/.test(run) && /[a-z]/.test(run) && /[0-9]/.test(run)) return undefined;
  return value;
}

/**
 * A value in backticks when `safeText` allows it; otherwise a neutral phrase. Use it for every user value a
 * diagnostic mentions.
 */
export function quote(value: unknown, fallback = 'the value'): string {
  const safe = safeText(value);
  return safe === undefined ? fallback : `\`${safe}\``;
}
