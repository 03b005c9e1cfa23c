// Unit files as data: parsing systemd's dialect, escaping (round trip through systemd's own word splitting rules),
// and normalisation (files that mean the same compare equal; files that do not, do not).
import { describe, expect, it } from 'vitest';
import {
  diffUnits,
  environmentAssignment,
  escapeExecArg,
  execLine,
  normalizeUnit,
  parseUnitFile,
  serializeUnitFile,
  splitWords,
  unitDigest,
  unitPath,
  UnitValueError,
  valuesOf,
  withEnvironment,
  writeUnitFile,
  type UnitDocument,
} from './unit-file.js';

/** What systemd hands the process for one Exec word: unquoted/unescaped, then `$$` → `$`, `%%` → `%`. */
const systemdArg = (word: string): string => word.replaceAll('$$', '$').replaceAll('%%', '%');

describe('parseUnitFile', () => {
  it('reads sections, keys, comments, continuations and repeated keys', () => {
    const parsed = parseUnitFile(
      [
        '# comment',
        '; also a comment',
        '[Unit]',
        'Description = a gateway ',
        '',
        '[Service]',
        'ExecStart=/bin/echo \\',
        '  # skipped inside a continuation',
        '  one two',
        'Environment=A=1',
        'Environment=B=2',
      ].join('\n'),
    );
    expect(parsed.problems).toEqual([]);
    expect(parsed.sections.map((s) => s.name)).toEqual(['Unit', 'Service']);
    expect(valuesOf(parsed, 'Unit', 'Description')).toEqual(['a gateway']);
    expect(valuesOf(parsed, 'Service', 'ExecStart')).toEqual(['/bin/echo    one two']);
    expect(splitWords(valuesOf(parsed, 'Service', 'ExecStart')[0]!)).toEqual(['/bin/echo', 'one', 'two']);
    expect(valuesOf(parsed, 'Service', 'Environment')).toEqual(['A=1', 'B=2']);
    expect(parsed.sections[1]!.entries[0]!.line).toBe(7);
  });

  it('continues only on an odd run of trailing backslashes', () => {
    const parsed = parseUnitFile('[Service]\nDescription=ends in one escaped backslash \\\\\nType=simple\n');
    expect(valuesOf(parsed, 'Service', 'Description')).toEqual(['ends in one escaped backslash \\\\']);
    expect(valuesOf(parsed, 'Service', 'Type')).toEqual(['simple']);
  });

  it('reports lines systemd would ignore', () => {
    const parsed = parseUnitFile('Orphan=1\n[Service]\njust text\n');
    expect(parsed.problems.map((p) => p.line)).toEqual([1, 3]);
  });
});

describe('escaping', () => {
  const nasty = [
    'plain',
    'with space',
    'quote"inside',
    "single'quote",
    'back\\slash',
    'dollar $HOME and ${X}',
    '100%',
    '%i',
    ';',
    '',
    '  lead',
    'trail\\',
    'tab-free unicode ✓',
  ];

  it('Exec arguments round-trip through systemd word splitting', () => {
    for (const arg of nasty) {
      const words = splitWords(escapeExecArg(arg));
      expect(words, JSON.stringify(arg)).toHaveLength(1);
      expect(systemdArg(words[0]!)).toBe(arg);
    }
    const line = execLine(['python3', '-m', 'orchestrator', 'a b', '$X']);
    expect(splitWords(line).map(systemdArg)).toEqual(['python3', '-m', 'orchestrator', 'a b', '$X']);
  });

  it('Environment= assignments round-trip, with $ left literal and % escaped', () => {
    for (const value of nasty) {
      const [word, ...rest] = splitWords(environmentAssignment('NAME', value));
      expect(rest).toEqual([]);
      expect(word!.replaceAll('%%', '%')).toBe(`NAME=${value}`);
    }
  });

  it('refuses what cannot be written safely', () => {
    expect(() => escapeExecArg('two\nlines')).toThrow(UnitValueError);
    expect(() => environmentAssignment('A', 'x\ry')).toThrow(UnitValueError);
    expect(() => environmentAssignment('1BAD', 'x')).toThrow(UnitValueError);
    expect(() => execLine(['-/bin/sh'])).toThrow(/prefix/);
    expect(() => execLine([])).toThrow(UnitValueError);
    expect(() => unitPath('/a b')).toThrow(UnitValueError);
    expect(() => unitPath('/a:b')).toThrow(UnitValueError);
    expect(() => unitPath('/a/../b')).toThrow(UnitValueError);
    expect(() => unitPath('relative')).toThrow(UnitValueError);
    expect(unitPath('/srv/100%/x')).toBe('/srv/100%%/x');
    expect(() =>
      serializeUnitFile({ sections: [{ name: 'Service', entries: [{ key: 'Description', value: 'ends\\' }] }] }),
    ).toThrow(/backslash/);
    expect(() =>
      serializeUnitFile({ sections: [{ name: 'Service', entries: [{ key: 'Bad Key', value: 'x' }] }] }),
    ).toThrow(/invalid key/);
    expect(() =>
      serializeUnitFile({
        sections: [{ name: 'Service', entries: [{ key: 'Description', value: 'a\nExecStart=/bin/evil' }] }],
      }),
    ).toThrow(/control character/);
  });

  it('serializes what it parses back', () => {
    const text = serializeUnitFile({
      header: ['Managed by agentvm.'],
      sections: [
        { name: 'Unit', entries: [{ key: 'Description', value: 'x' }] },
        { name: 'Service', entries: [{ key: 'ExecStart', value: execLine(['/bin/echo', 'a b']) }] },
      ],
    });
    expect(text).toBe('# Managed by agentvm.\n\n[Unit]\nDescription=x\n\n[Service]\nExecStart=/bin/echo "a b"\n');
    expect(valuesOf(parseUnitFile(text), 'Service', 'ExecStart')).toEqual(['/bin/echo "a b"']);
  });
});

describe('normalizeUnit', () => {
  it('compares by meaning: comments, blank lines, quoting, key order and Environment splitting do not matter', () => {
    const a = parseUnitFile('[Service]\nExecStart=/bin/echo "a" b\nEnvironment=X=1 Y=2\nType=simple\n');
    const b = parseUnitFile(
      '# hand formatted\n[Service]\nType=simple\n\nEnvironment="Y=2"\nEnvironment=X=1\nExecStart=/bin/echo a "b"\n',
    );
    expect(normalizeUnit(a)).toEqual(normalizeUnit(b));
    expect(unitDigest({ u: normalizeUnit(a) })).toBe(unitDigest({ u: normalizeUnit(b) }));
    expect(diffUnits(normalizeUnit(a), normalizeUnit(b))).toEqual([]);
  });

  it('applies drop-ins in order: an empty assignment resets a list, the last value of a single setting wins', () => {
    const template = parseUnitFile('[Service]\nExecStart=/bin/false\nRestart=no\nEnvironment=A=1\n');
    const dropIn = parseUnitFile(
      '[Service]\nExecStart=\nExecStart=/usr/bin/node server.js\nRestart=on-failure\nEnvironment=A=2 B=3\n',
    );
    const n = normalizeUnit(template, dropIn);
    expect(n.Service!.ExecStart).toEqual(['', JSON.stringify(['/usr/bin/node', 'server.js'])]);
    expect(n.Service!.Restart).toEqual(['on-failure']);
    expect(n.Service!.Environment).toEqual(['A=2', 'B=3']);
  });

  it('tells "reset to empty" from "never set" (CapabilityBoundingSet= drops every capability)', () => {
    const withEmpty = normalizeUnit(parseUnitFile('[Service]\nCapabilityBoundingSet=\n'));
    const without = normalizeUnit(parseUnitFile('[Service]\n'));
    expect(diffUnits(without, withEmpty)).toEqual([
      { section: 'Service', key: 'CapabilityBoundingSet', before: [], after: [''] },
    ]);
  });

  it('reports each changed setting once, sorted', () => {
    const before = normalizeUnit(parseUnitFile('[Unit]\nDescription=a\n[Service]\nEnvironment=A=1\nMemoryMax=1G\n'));
    const after = normalizeUnit(parseUnitFile('[Unit]\nDescription=b\n[Service]\nEnvironment=A=2\nMemoryMax=1G\n'));
    expect(diffUnits(before, after).map((c) => `${c.section}.${c.key}`)).toEqual([
      'Service.Environment',
      'Unit.Description',
    ]);
  });
});

describe('writeUnitFile and withEnvironment (the renderer builds what parsing and normalising the text would give)', () => {
  const docs: UnitDocument[] = [
    { sections: [{ name: 'Service', entries: [{ key: 'ExecStart', value: '/bin/true' }] }] },
    {
      header: ['managed', '', 'do not edit'],
      sections: [
        { name: 'Unit', entries: [{ key: 'Description', value: 'a b' }] },
        { name: 'Service', entries: [] },
        {
          name: 'Service',
          entries: [
            { key: 'Environment', value: environmentAssignment('A', 'x y') },
            { key: 'ExecStart', value: '' },
            { key: 'ExecStart', value: execLine(['python3', '-c', 'print("%s $HOME")']) },
          ],
        },
      ],
    },
  ];

  it('parses its own text back to exactly the entries and lines it built', () => {
    for (const doc of docs) {
      const { text, parsed } = writeUnitFile(doc);
      expect(parsed).toEqual(parseUnitFile(text));
    }
  });

  it('adds a last Environment= assignment exactly as normalising the files with it would', () => {
    const cases = [
      '[Service]\nEnvironment="B=1" "D=2"\n',
      '[Service]\nEnvironment=A=0\nEnvironment=\nEnvironment="Z=9" "C=3"\n',
      '[Service]\nEnvironment="C=old" E=5\n[Unit]\nDescription=x\n',
    ];
    for (const text of cases) {
      const before = normalizeUnit(parseUnitFile(text));
      const after = normalizeUnit(
        parseUnitFile(`${text}[Service]\nEnvironment=${environmentAssignment('C', 'abc123')}\n`),
      );
      const added = withEnvironment(before, 'Service', 'C', 'abc123');
      expect(added).toEqual(after);
      // Same key order too: the digest is of the JSON text.
      expect(unitDigest({ u: added! })).toBe(unitDigest({ u: after }));
    }
    expect(withEnvironment(normalizeUnit(parseUnitFile('[Service]\nRestart=no\n')), 'Service', 'C', 'x')).toBe(
      undefined,
    );
    expect(withEnvironment(normalizeUnit(parseUnitFile('[Service]\nEnvironment=A=1\n')), 'Service', 'C', 'a b')).toBe(
      undefined,
    );
  });
});
