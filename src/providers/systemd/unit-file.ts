// Unit files as data: parse systemd's INI dialect, serialize it back, escape values so that nothing
// user-supplied changes a unit's meaning, and normalise a parsed unit so two files compare by what systemd
// would load, not by their text (comments, blank lines, key order across keys, quoting, line continuations and
// `Environment=` splitting do not matter; the order of repeated keys does).
// Invariants:
//   - A value that cannot be written safely is refused (`UnitValueError`), never written half-escaped: newlines
//     and other control characters, a value ending in a backslash (it would continue onto the next line).
//   - Escaping follows systemd 252's parsers: `%` is a specifier everywhere (`%%`); Exec lines unquote and
//     C-unescape every word and expand `$VAR` (`$$`); `Environment=` unquotes and C-unescapes but never expands `$`.
//   - normalizeUnit() applies systemd's "an empty assignment resets the list" rule, so a drop-in's `ExecStart=`
//     followed by `ExecStart=/x` normalises to exactly `/x`.

import { createHash } from 'node:crypto';

export interface UnitEntry {
  key: string;
  value: string;
  /** 1-based line of the key in the file (the first line of a continued value). */
  line: number;
}

export interface UnitSection {
  name: string;
  entries: UnitEntry[];
}

export interface ParsedUnit {
  sections: UnitSection[];
  /** Lines systemd would ignore with a warning (text outside a section, a line without `=`). */
  problems: Array<{ line: number; message: string }>;
}

/** What a unit file says, as comparable data: section → key → effective values in order. */
export type NormalizedUnit = Record<string, Record<string, string[]>>;

export class UnitValueError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UnitValueError';
  }
}

// ---------------------------------------------------------------------------------------------------------
// Parsing

/** Parses unit file text the way systemd's config parser does (sections, `Key=Value`, comments, continuations). */
export function parseUnitFile(text: string): ParsedUnit {
  const sections: UnitSection[] = [];
  const problems: ParsedUnit['problems'] = [];
  let current: UnitSection | undefined;
  const lines = text.split(/\r?\n/);
  // systemd 252 (conf-parser.c): comment lines are skipped even inside a continuation; a line ending in an odd
  // number of backslashes continues, its last backslash becoming a space and the next raw line appended.
  let pending: { text: string; line: number } | undefined;

  const handle = (raw: string, lineNo: number): void => {
    const stripped = raw.trim();
    if (stripped === '') return;
    if (stripped.startsWith('[')) {
      const m = /^\[([^\]]+)\]$/.exec(stripped);
      if (!m) {
        problems.push({ line: lineNo, message: `invalid section header: ${stripped}` });
        current = undefined;
        return;
      }
      current = { name: m[1]!, entries: [] };
      sections.push(current);
      return;
    }
    const eq = stripped.indexOf('=');
    if (eq <= 0) {
      problems.push({ line: lineNo, message: `missing '=' in: ${stripped}` });
      return;
    }
    const key = stripped.slice(0, eq).trim();
    if (!current) {
      problems.push({ line: lineNo, message: `assignment outside of a section: ${key}` });
      return;
    }
    current.entries.push({ key, value: stripped.slice(eq + 1).trim(), line: lineNo });
  };

  for (let i = 0; i < lines.length; i++) {
    const raw = lines[i]!;
    const lead = raw.trimStart();
    if (lead.startsWith('#') || lead.startsWith(';')) continue;
    const joined = pending ? pending.text + raw : raw;
    const lineNo = pending ? pending.line : i + 1;
    if (endsEscaped(joined)) {
      pending = { text: `${joined.slice(0, -1)} `, line: lineNo };
      continue;
    }
    pending = undefined;
    handle(joined, lineNo);
  }
  if (pending) handle(pending.text, pending.line);
  return { sections, problems };
}

/** True when the text ends in an unescaped backslash (an odd run of them). */
function endsEscaped(text: string): boolean {
  let n = 0;
  for (let i = text.length - 1; i >= 0 && text[i] === '\\'; i--) n++;
  return n % 2 === 1;
}

/** Every value of `key` in `section`, in file order. */
export function valuesOf(unit: ParsedUnit, section: string, key: string): string[] {
  return unit.sections
    .filter((s) => s.name === section)
    .flatMap((s) => s.entries.filter((e) => e.key === key).map((e) => e.value));
}

// ---------------------------------------------------------------------------------------------------------
// Serializing and escaping

export interface UnitDocument {
  /** Comment lines written first (without the leading `# `). */
  header?: string[];
  sections: Array<{ name: string; entries: Array<{ key: string; value: string }> }>;
}

const KEY = /^[A-Za-z][A-Za-z0-9-]*$/;
const SECTION = /^[A-Za-z][A-Za-z0-9 -]*$/;

/** Writes a unit document. Throws UnitValueError for a key, section or value that cannot be written as is. */
export function serializeUnitFile(doc: UnitDocument): string {
  const out: string[] = [];
  for (const line of doc.header ?? []) {
    assertNoControl(line, 'a header comment');
    out.push(line === '' ? '#' : `# ${line}`);
  }
  for (const section of doc.sections) {
    if (!SECTION.test(section.name)) throw new UnitValueError(`invalid section name ${JSON.stringify(section.name)}`);
    if (out.length > 0) out.push('');
    out.push(`[${section.name}]`);
    for (const { key, value } of section.entries) {
      if (!KEY.test(key)) throw new UnitValueError(`invalid key ${JSON.stringify(key)}`);
      assertNoControl(value, `${key}=`);
      if (value.endsWith('\\'))
        throw new UnitValueError(`${key}= ends in a backslash, which would continue onto the next line`);
      if (value !== value.trim())
        throw new UnitValueError(`${key}= has leading or trailing whitespace that systemd would strip; quote it`);
      out.push(`${key}=${value}`);
    }
  }
  return `${out.join('\n')}\n`;
}

/**
 * serializeUnitFile's text together with what parseUnitFile would make of it, built from the document instead of
 * re-parsed: a serialized value has no newline, no surrounding whitespace and no trailing backslash, and a key no
 * `=` (all refused above), so each `Key=value` line parses back to exactly that entry on that line (unit-file.test.ts
 * checks the two agree).
 */
export function writeUnitFile(doc: UnitDocument): { text: string; parsed: ParsedUnit } {
  const text = serializeUnitFile(doc);
  return { text, parsed: parsedFromDocument(doc) };
}

/**
 * The ParsedUnit of a document as serializeUnitFile would write it, without the checks (normalising a document that
 * is about to be serialized, which checks it). Line numbers are the serialized file's.
 */
export function parsedFromDocument(doc: UnitDocument): ParsedUnit {
  let line = doc.header?.length ?? 0;
  const sections: UnitSection[] = doc.sections.map((section) => {
    line += line > 0 ? 2 : 1; // the blank line before a section (none before the first line), then `[Name]`
    return { name: section.name, entries: section.entries.map(({ key, value }) => ({ key, value, line: ++line })) };
  });
  return { sections, problems: [] };
}

function assertNoControl(value: string, what: string): void {
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(value))
    throw new UnitValueError(`${what} contains a newline or another control character`);
}

/** `%` starts a specifier in almost every setting; `%%` is a literal percent sign. */
export function escapeSpecifiers(value: string): string {
  return value.replaceAll('%', '%%');
}

const SAFE_WORD = /^[A-Za-z0-9_@+=:,./~^-]+$/;

/** Double-quoted with `\` and `"` escaped: systemd's unquoting with C-unescaping gives back `value`. */
function quoteWord(value: string): string {
  return `"${value.replaceAll('\\', '\\\\').replaceAll('"', '\\"')}"`;
}

/**
 * One argument of an Exec line: specifiers and `$` escaped (`%%`, `$$`), quoted when it holds anything but plain
 * characters (whitespace, quotes, backslashes, `;`, or nothing at all). Control characters are refused.
 */
export function escapeExecArg(arg: string): string {
  assertNoControl(arg, 'an Exec argument');
  const escaped = escapeSpecifiers(arg).replaceAll('$', '$$$$');
  return SAFE_WORD.test(escaped) ? escaped : quoteWord(escaped);
}

/**
 * An Exec line from argv. The program must not start with one of systemd's prefix characters (`@-:+!`), which
 * would change how it is run rather than name it.
 */
export function execLine(argv: readonly string[]): string {
  const [program, ...args] = argv;
  if (program === undefined || program === '') throw new UnitValueError('an Exec line needs a program');
  if (/^[@\-:+!|]/.test(program))
    throw new UnitValueError(`program ${JSON.stringify(program)} starts with a systemd Exec prefix character`);
  return [program, ...args].map(escapeExecArg).join(' ');
}

/** One `Environment=` assignment, always quoted: `"NAME=value"`; `$` stays literal there. */
export function environmentAssignment(name: string, value: string): string {
  if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name))
    throw new UnitValueError(`invalid environment variable name ${JSON.stringify(name)}`);
  assertNoControl(value, `environment variable ${name}`);
  return quoteWord(escapeSpecifiers(`${name}=${value}`));
}

/**
 * An absolute path for settings that split on whitespace or `:` (BindReadOnlyPaths=, LoadCredential=, …): only
 * characters that need no quoting are accepted, so the path can never become two settings.
 */
export function unitPath(p: string): string {
  if (!/^\/[A-Za-z0-9._@+~%/-]*$/.test(p) || p.split('/').includes('..')) {
    throw new UnitValueError(
      `path ${JSON.stringify(p)} must be absolute and contain only letters, digits and . _ @ + ~ - /`,
    );
  }
  return escapeSpecifiers(p);
}

// ---------------------------------------------------------------------------------------------------------
// Word splitting (systemd's extract_first_word with UNQUOTE | CUNESCAPE)

const C_ESCAPES: Record<string, string> = {
  a: '\u0007',
  b: '\b',
  f: '\f',
  n: '\n',
  r: '\r',
  t: '\t',
  v: '\v',
  '\\': '\\',
  '"': '"',
  "'": "'",
  s: ' ',
};

/** Splits a value into words: whitespace separates, single and double quotes group, backslash escapes. */
export function splitWords(value: string): string[] {
  const words: string[] = [];
  let word = '';
  let inWord = false;
  let quote: '"' | "'" | undefined;
  for (let i = 0; i < value.length; i++) {
    const c = value[i]!;
    if (c === '\\' && i + 1 < value.length) {
      const n = value[++i]!;
      if (n === 'x' && /^[0-9a-fA-F]{2}$/.test(value.slice(i + 1, i + 3))) {
        word += String.fromCharCode(parseInt(value.slice(i + 1, i + 3), 16));
        i += 2;
      } else {
        word += C_ESCAPES[n] ?? n;
      }
      inWord = true;
      continue;
    }
    if (quote) {
      if (c === quote) quote = undefined;
      else word += c;
      continue;
    }
    if (c === '"' || c === "'") {
      quote = c;
      inWord = true;
      continue;
    }
    if (c === ' ' || c === '\t') {
      if (inWord) words.push(word);
      word = '';
      inWord = false;
      continue;
    }
    word += c;
    inWord = true;
  }
  if (inWord) words.push(word);
  return words;
}

// ---------------------------------------------------------------------------------------------------------
// Normalising

/** Settings where each assignment adds to a list and an empty assignment clears it. Anything else: last one wins. */
const LIST_KEYS = new Set([
  'ExecStart',
  'ExecStartPre',
  'ExecStartPost',
  'ExecReload',
  'ExecStop',
  'ExecStopPost',
  'ExecCondition',
  'Environment',
  'EnvironmentFile',
  'PassEnvironment',
  'UnsetEnvironment',
  'LoadCredential',
  'LoadCredentialEncrypted',
  'SetCredential',
  'SetCredentialEncrypted',
  'ImportCredential',
  'BindPaths',
  'BindReadOnlyPaths',
  'ReadOnlyPaths',
  'ReadWritePaths',
  'InaccessiblePaths',
  'ExecPaths',
  'NoExecPaths',
  'TemporaryFileSystem',
  'IPAddressAllow',
  'IPAddressDeny',
  'RestrictAddressFamilies',
  'SystemCallFilter',
  'SystemCallArchitectures',
  'SystemCallLog',
  'CapabilityBoundingSet',
  'AmbientCapabilities',
  'DeviceAllow',
  'SupplementaryGroups',
  'RuntimeDirectory',
  'StateDirectory',
  'CacheDirectory',
  'LogsDirectory',
  'ConfigurationDirectory',
  'After',
  'Before',
  'Wants',
  'Requires',
  'Requisite',
  'BindsTo',
  'PartOf',
  'Upholds',
  'Conflicts',
  'OnFailure',
  'OnSuccess',
  'WantedBy',
  'RequiredBy',
  'Also',
  'Alias',
  'Documentation',
]);

export function isListKey(key: string): boolean {
  return LIST_KEYS.has(key) || /^(Condition|Assert)/.test(key);
}

/**
 * The effective settings of a unit assembled from files in load order (the unit file first, then its drop-ins):
 * list settings accumulate and reset on an empty assignment (kept as a leading '' marker), other settings keep
 * their last value. Exec lines
 * compare as argv (quoting and escapes removed), `Environment=` as sorted `NAME=value` with the last assignment
 * of a name winning.
 */
export function normalizeUnit(...files: readonly ParsedUnit[]): NormalizedUnit {
  const raw: Record<string, Record<string, string[]>> = {};
  for (const file of files) {
    for (const section of file.sections) {
      const keys = (raw[section.name] ??= {});
      for (const { key, value } of section.entries) {
        // An empty assignment is kept as a '' marker: "reset here" is not the same as "never set" (an empty
        // CapabilityBoundingSet= drops every capability; a drop-in's ExecStart= discards the template's).
        if (value === '') keys[key] = [''];
        else keys[key] = isListKey(key) ? [...(keys[key] ?? []), value] : [value];
      }
    }
  }
  const out: NormalizedUnit = {};
  for (const sectionName of Object.keys(raw).sort()) {
    const keys = raw[sectionName]!;
    const section: Record<string, string[]> = {};
    for (const key of Object.keys(keys).sort()) {
      const values = keys[key]!;
      if (key === 'Environment') {
        const env = new Map<string, string>();
        let reset = false;
        for (const v of values) {
          if (v === '') {
            env.clear();
            reset = true;
            continue;
          }
          for (const word of splitWords(v)) {
            const eq = word.indexOf('=');
            if (eq > 0) env.set(word.slice(0, eq), word.slice(eq + 1));
          }
        }
        const sorted = [...env.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([k, v]) => `${k}=${v}`);
        section[key] = reset ? ['', ...sorted] : sorted;
      } else if (key.startsWith('Exec')) {
        section[key] = values.map((v) => (v === '' ? '' : JSON.stringify(splitWords(v))));
      } else {
        section[key] = values;
      }
    }
    out[sectionName] = section;
  }
  return out;
}

/**
 * `normalized` with one more `Environment=NAME=value` assigned after everything else: what normalizeUnit gives for
 * the same files plus that last assignment (the last assignment of a name wins; the list stays sorted by name, after
 * a '' reset marker). `value` must be a plain word (no quoting or escapes): it is taken literally. Keys keep their
 * order, so the digest of the result is the digest of the re-normalised files. Undefined when the section has no
 * Environment= list to add to.
 */
export function withEnvironment(
  normalized: NormalizedUnit,
  section: string,
  name: string,
  value: string,
): NormalizedUnit | undefined {
  const keys = normalized[section];
  const list = keys?.Environment;
  if (!keys || !list || !/^[A-Za-z0-9_./:@+-]*$/.test(value)) return undefined;
  const reset = list[0] === '';
  const entries = (reset ? list.slice(1) : list).filter((e) => e.slice(0, e.indexOf('=')) !== name);
  entries.push(`${name}=${value}`);
  const nameOf = (e: string): string => e.slice(0, e.indexOf('='));
  entries.sort((a, b) => (nameOf(a) < nameOf(b) ? -1 : nameOf(a) > nameOf(b) ? 1 : 0));
  return { ...normalized, [section]: { ...keys, Environment: reset ? ['', ...entries] : entries } };
}

/** sha256 of a normalised unit set: the same settings give the same digest whatever the files look like. */
export function unitDigest(units: Record<string, NormalizedUnit | null>): string {
  const canonical = JSON.stringify(
    Object.keys(units)
      .sort()
      .map((name) => [name, units[name] ?? null]),
  );
  return `sha256:${createHash('sha256').update(canonical).digest('hex')}`;
}

export interface KeyChange {
  section: string;
  key: string;
  before: string[];
  after: string[];
}

/** The settings that differ between two normalised units, sorted by section and key. */
export function diffUnits(before: NormalizedUnit, after: NormalizedUnit): KeyChange[] {
  const changes: KeyChange[] = [];
  const sections = [...new Set([...Object.keys(before), ...Object.keys(after)])].sort();
  for (const section of sections) {
    const b = before[section] ?? {};
    const a = after[section] ?? {};
    for (const key of [...new Set([...Object.keys(b), ...Object.keys(a)])].sort()) {
      const bv = b[key] ?? [];
      const av = a[key] ?? [];
      if (bv.length !== av.length || bv.some((v, i) => v !== av[i]))
        changes.push({ section, key, before: bv, after: av });
    }
  }
  return changes;
}
