// Parses one desired-state YAML file into plain data plus a position index, so every later diagnostic can name
// file:line:column. Owns the YAML safety rules: one document per file, no duplicate keys, a hard alias-expansion
// limit (alias bombs), no custom tags, mapping at the top, YAML 1.2 only (a `%YAML 1.1` directive would turn `<<`
// merge keys and sexagesimal numbers back on), and every error located at its own line.
// A lone CR is a line break in YAML; the parser reads it as a character, so it is read as LF here (same offsets).

import { isMap, isPair, isScalar, isSeq, LineCounter, parseAllDocuments, visit, type Document, type Node } from 'yaml';
import { errorDiag, type Diagnostic, type SourceLocation } from '../diagnostics/index.js';

export type JsonPath = ReadonlyArray<string | number>;

/** Alias expansion budget per file. A legitimate contract needs a handful; a billion-laughs needs millions. */
export const MAX_ALIAS_COUNT = 100;

export interface YamlDocument {
  file: string;
  /** Plain JS data; `undefined` when the file could not be parsed. */
  value: unknown;
  diagnostics: Diagnostic[];
  /** Where a value (or, with `key: true`, its key) sits; falls back to the nearest existing ancestor. */
  locate(path: JsonPath, opts?: { key?: boolean }): SourceLocation;
}

export function formatJsonPath(path: JsonPath): string {
  let out = '$';
  for (const seg of path)
    out +=
      typeof seg === 'number'
        ? `[${seg}]`
        : /^[A-Za-z_][A-Za-z0-9_-]*$/.test(seg)
          ? `.${seg}`
          : `[${JSON.stringify(seg)}]`;
  return out;
}

export function parseYamlDocument(file: string, raw: string): YamlDocument {
  const text = raw.includes('\r') ? raw.replace(/\r(?!\n)/g, '\n') : raw;
  const lineCounter = new LineCounter();
  const at = (offset: number): SourceLocation => {
    const { line, col } = lineCounter.linePos(offset);
    return { file, line, column: col };
  };
  const diagnostics: Diagnostic[] = [];
  const docs = parseAllDocuments(text, {
    lineCounter,
    uniqueKeys: true,
    prettyErrors: false,
    strict: true,
    version: '1.2',
  });
  const list = Array.isArray(docs) ? docs : [];
  const doc: Document.Parsed | undefined = list[0];
  const locateIn = (path: JsonPath, opts?: { key?: boolean }): SourceLocation =>
    doc ? locateNode(doc, path, opts?.key ?? false, at) : at(0);

  if (list.length > 1) {
    const second = list[1]!;
    diagnostics.push(
      errorDiag('yaml.multiple-documents', 'The file holds more than one YAML document.', {
        detail:
          'Put exactly one document in each file; remove the `---` separator and split the rest into its own file.',
        location: at(second.range[0]),
      }),
    );
  }
  if (!doc || doc.contents === null) {
    diagnostics.push(
      errorDiag('yaml.empty', 'The file is empty.', {
        detail: 'Write an apiVersion, kind, metadata and spec into it, or delete it.',
        location: at(0),
      }),
    );
    return { file, value: undefined, diagnostics, locate: locateIn };
  }
  const version = doc.directives?.yaml;
  if (version?.explicit && version.version !== '1.2') {
    const offset = Math.max(0, text.search(/^%YAML/m));
    diagnostics.push(
      errorDiag('yaml.version', 'The file declares a YAML version other than 1.2 (`%YAML` directive).', {
        detail:
          'Delete the `%YAML` line: desired-state files are YAML 1.2, where `<<` merge keys and other 1.1 conversions do not exist.',
        location: at(offset),
      }),
    );
  }
  for (const e of doc.errors) {
    const code = e.code === 'DUPLICATE_KEY' ? 'yaml.duplicate-key' : 'yaml.syntax';
    const detail =
      code === 'yaml.duplicate-key'
        ? 'Each key may appear once in a mapping; remove or rename the repeated key.'
        : 'Fix the YAML syntax at this position.';
    diagnostics.push(errorDiag(code, firstLine(e.message), { detail, location: at(e.pos[0]) }));
  }
  for (const w of doc.warnings) {
    const tag = w.code === 'TAG_RESOLVE_FAILED' || /tag/i.test(w.message);
    // The tag's text is the user's and may be anything (a pasted token): it is not echoed.
    diagnostics.push(
      errorDiag(
        tag ? 'yaml.tag' : 'yaml.syntax',
        tag ? 'A custom YAML tag (`!…`) is not allowed here.' : firstLine(w.message),
        {
          detail: tag
            ? 'Custom YAML tags are not allowed in desired-state files; write plain values.'
            : 'Fix the YAML at this position.',
          location: at(w.pos[0]),
        },
      ),
    );
  }
  if (diagnostics.length > 0) return { file, value: undefined, diagnostics, locate: locateIn };

  let value: unknown;
  try {
    value = doc.toJS({ maxAliasCount: MAX_ALIAS_COUNT });
  } catch (err) {
    const msg = err instanceof Error ? err.message : String(err);
    const unresolved = unresolvedAlias(doc);
    if (unresolved !== undefined) {
      diagnostics.push(
        errorDiag('yaml.alias', 'This alias (`*…`) refers to an anchor that is not defined before it.', {
          detail: 'Define the anchor (`&name`) earlier in the file, or write the value out.',
          location: at(unresolved),
        }),
      );
    } else {
      const alias = /alias/i.test(msg);
      diagnostics.push(
        errorDiag(
          alias ? 'yaml.alias-limit' : 'yaml.syntax',
          alias ? `YAML aliases expand beyond the limit of ${MAX_ALIAS_COUNT}.` : 'The YAML could not be read.',
          {
            detail: alias
              ? 'Aliases that multiply (a "billion laughs") are refused; write the values out or reduce the aliases.'
              : 'Fix the YAML.',
            location: at(doc.contents.range?.[0] ?? 0),
          },
        ),
      );
    }
    return { file, value: undefined, diagnostics, locate: locateIn };
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    diagnostics.push(
      errorDiag('yaml.not-a-mapping', 'The document is not a mapping of keys to values.', {
        detail: 'A desired-state document starts with `apiVersion:`, `kind:`, `metadata:` and `spec:` keys.',
        location: at(doc.contents.range?.[0] ?? 0),
      }),
    );
    return { file, value: undefined, diagnostics, locate: locateIn };
  }
  return { file, value, diagnostics, locate: locateIn };
}

/** Offset of the first alias whose anchor is not defined before it, or undefined. */
function unresolvedAlias(doc: Document.Parsed): number | undefined {
  let found: number | undefined;
  visit(doc, {
    Alias(_key, node) {
      if (node.resolve(doc) === undefined) {
        found = node.range?.[0] ?? 0;
        return visit.BREAK;
      }
      return undefined;
    },
  });
  return found;
}

function firstLine(message: string): string {
  const line = message.split('\n')[0] ?? message;
  return line.replace(/ at line \d+, column \d+:?$/, '').trim();
}

function locateNode(
  doc: Document.Parsed,
  path: JsonPath,
  key: boolean,
  at: (offset: number) => SourceLocation,
): SourceLocation {
  let node: unknown = doc.contents;
  let best = rangeStart(node) ?? 0;
  for (let i = 0; i < path.length; i++) {
    const seg = path[i];
    const last = i === path.length - 1;
    if (isMap(node)) {
      const pair = node.items.find((p) => isPair(p) && isScalar(p.key) && String(p.key.value) === String(seg));
      if (!pair) break;
      if (last && key) {
        best = rangeStart(pair.key) ?? best;
        break;
      }
      best = rangeStart(pair.value) ?? rangeStart(pair.key) ?? best;
      node = pair.value;
      // An alias resolves to its anchor: keep the alias position (what the user wrote here) but walk the target.
    } else if (isSeq(node) && typeof seg === 'number') {
      const item = node.items[seg];
      if (item === undefined) break;
      best = rangeStart(item) ?? best;
      node = item;
    } else {
      break;
    }
  }
  return at(best);
}

function rangeStart(node: unknown): number | undefined {
  const n = node as Node | null | undefined;
  return n && Array.isArray(n.range) ? n.range[0] : undefined;
}
