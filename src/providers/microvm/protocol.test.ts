// The console protocol parser: what the host accepts from a guest, with console streams written by hand
// the way the guest /init writes them (CRLF from the serial tty, records inside lines, interleaving).

import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { argvCommand, ConsoleParser, jobScript, networkPrelude, shellQuote } from './protocol.js';

const NONCE = '0123456789abcdef0123456789abcdef';

function fileRecord(name: string, data: Buffer, nonce = NONCE): string {
  const b64 = data
    .toString('base64')
    .replace(/(.{76})/g, '$1\r\n')
    .replace(/\r\n$/, '');
  const sum = createHash('sha256').update(data).digest('hex');
  return `AGENTVM-FILE ${nonce} ${Buffer.from(name).toString('base64')} ${data.length} ${sum}\r\n${b64 === '' ? '' : `${b64}\r\n`}AGENTVM-FILE-END ${nonce}\r\n`;
}

const blob = Buffer.from(Array.from({ length: 300 }, (_, i) => (i * 7) % 256));
const stream = [
  '[    0.5] PCI: Fatal: No config space access function found\r\n',
  `AGENTVM-READY ${NONCE}\r\n`,
  'hello\r\n',
  `partial output AGENTVM-EXIT ffffffffffffffffffffffffffffffff 0\r\n`,
  `no newline\r\n`,
  fileRecord('out/b.bin', blob),
  fileRecord('a.txt', Buffer.from('A\n')),
  fileRecord('empty', Buffer.alloc(0)),
  `AGENTVM-EXIT ${NONCE} 3\r\n`,
  '[    2.7] reboot: Power down\r\n',
].join('');

function parse(text: string | Buffer, chunkSize = Infinity): ReturnType<ConsoleParser['end']> {
  const parser = new ConsoleParser(NONCE);
  const bytes = Buffer.isBuffer(text) ? text : Buffer.from(text);
  for (let i = 0; i < bytes.length; i += chunkSize === Infinity ? bytes.length : chunkSize) {
    parser.push(bytes.subarray(i, chunkSize === Infinity ? bytes.length : i + chunkSize));
  }
  return parser.end();
}

describe('ConsoleParser', () => {
  it('GIVEN a complete run THEN exit code, files and console text come out, records and payloads do not', () => {
    const report = parse(stream);

    expect(report.ready).toBe(true);
    expect(report.exitCode).toBe(3);
    expect(report.diagnostics).toEqual([]);
    expect(Object.keys(report.resultFiles).sort()).toEqual(['a.txt', 'empty', 'out/b.bin']);
    expect(report.resultFiles['out/b.bin']?.equals(blob)).toBe(true);
    expect(report.console).toBe(
      '[    0.5] PCI: Fatal: No config space access function found\nhello\n' +
        'partial output AGENTVM-EXIT ffffffffffffffffffffffffffffffff 0\nno newline\n[    2.7] reboot: Power down\n',
    );
  });

  it('GIVEN the same stream split at every chunk size THEN the report is the same', () => {
    const whole = parse(stream);
    for (const size of [1, 2, 3, 7, 64, 1000]) {
      expect(parse(stream, size)).toEqual(whole);
    }
  });

  it('GIVEN a record glued to unterminated job output THEN it is still found and the prefix is text', () => {
    const report = parse(`AGENTVM-READY ${NONCE}\nlast wordsAGENTVM-EXIT ${NONCE} 0\n`);
    expect(report.exitCode).toBe(0);
    expect(report.console).toBe('last words\n');
  });

  it('GIVEN multi-byte UTF-8 split across chunks THEN the text is intact', () => {
    const report = parse(`AGENTVM-READY ${NONCE}\nGrüße ✓\n`, 1);
    expect(report.console).toBe('Grüße ✓\n');
  });

  it('GIVEN a payload with a wrong digest, an interleaved line or a missing end THEN the file is rejected', () => {
    const wrongDigest = fileRecord('x', Buffer.from('data')).replace(/ [0-9a-f]{64}\r\n/, ` ${'0'.repeat(64)}\r\n`);
    const interleaved = fileRecord('y', blob).replace('\r\n', '\r\n[ 1.0] kernel says hi\r\n');
    const cut = fileRecord('z', blob).split('AGENTVM-FILE-END')[0] ?? '';

    const report = parse(`${wrongDigest}${interleaved}${cut}`);

    expect(report.resultFiles).toEqual({});
    expect(report.diagnostics.map((d) => d.code)).toEqual([
      'microvm.result-rejected',
      'microvm.result-rejected',
      'microvm.result-incomplete',
    ]);
    expect(report.console).toContain('kernel says hi');
  });

  it.each(['../escape', '/abs', '__proto__/x', 'a/./b'])(
    'GIVEN the hostile result name %j THEN nothing unsafe is stored',
    (name) => {
      const report = parse(`${fileRecord(name, Buffer.from('x'))}AGENTVM-EXIT ${NONCE} 0\n`);
      if (name === '__proto__/x') {
        // A safe relative path; stored as a plain key on a null-prototype object, no prototype pollution.
        expect(Object.getPrototypeOf(report.resultFiles)).toBeNull();
        expect(report.resultFiles['__proto__/x']?.toString()).toBe('x');
      } else {
        expect(Object.keys(report.resultFiles)).toEqual([]);
        expect(report.diagnostics.map((d) => d.code)).toEqual(['microvm.result-rejected']);
      }
    },
  );

  it('GIVEN results over the limit THEN they are dropped and reported', () => {
    const parser = new ConsoleParser(NONCE, { maxResultBytes: 100 });
    parser.push(fileRecord('big', blob));
    expect(parser.end().diagnostics.map((d) => d.code)).toEqual(['microvm.result-rejected']);
  });

  it('GIVEN console text over the limit THEN it is truncated but still streamed', () => {
    const streamed: string[] = [];
    const parser = new ConsoleParser(NONCE, { maxConsoleBytes: 10, onLine: (l) => streamed.push(l) });
    parser.push('12345\n67890\nabc\n');
    const report = parser.end();
    expect(report.console).toBe('12345\n');
    expect(report.consoleTruncated).toBe(true);
    expect(streamed).toEqual(['12345', '67890', 'abc']);
  });

  it('GIVEN no EXIT record THEN the exit code is null', () => {
    expect(parse(`AGENTVM-READY ${NONCE}\nworking...\n`).exitCode).toBeNull();
  });

  it('GIVEN records after EXIT THEN they are console text, not a second result', () => {
    const report = parse(`AGENTVM-EXIT ${NONCE} 1\nAGENTVM-EXIT ${NONCE} 0\n`);
    expect(report.exitCode).toBe(1);
    expect(report.console).toBe(`AGENTVM-EXIT ${NONCE} 0\n`);
  });

  it('never throws on arbitrary bytes', () => {
    let seed = 42;
    const random = (): number => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed;
    };
    const pieces = [
      `AGENTVM-FILE ${NONCE} `,
      `AGENTVM-FILE-END ${NONCE}`,
      `AGENTVM-EXIT ${NONCE} `,
      '\n',
      '\r',
      'QUJD',
      '=',
      ' ',
      'x',
    ];
    for (let run = 0; run < 300; run += 1) {
      const parts: Buffer[] = [];
      for (let i = 0; i < 40; i += 1) {
        const r = random();
        parts.push(r % 3 === 0 ? Buffer.from([r % 256]) : Buffer.from(pieces[r % pieces.length] ?? ''));
      }
      expect(() => parse(Buffer.concat(parts), 1 + (run % 5))).not.toThrow();
    }
  });
});

describe('jobScript', () => {
  it('makes each argument exactly one positional parameter', () => {
    expect(shellQuote("it's")).toBe(`'it'\\''s'`);
    expect(jobScript('echo "$@"', ['a b', "c'd", '$(x)'])).toBe(`set -- 'a b' 'c'\\''d' '$(x)'\necho "$@"\n`);
    expect(jobScript('true', [])).toBe('set --\ntrue\n');
    expect(() => jobScript('true', ['a\0b'])).toThrow('NUL');
  });

  it('GIVEN hostile arguments THEN a real sh receives them byte for byte', () => {
    const args = ['a b', "c'd", '$(touch /tmp/pwned)', '`id`', 'line1\nline2', '', '*', 'ü'];
    const run = spawnSync('sh', ['-c', jobScript('for a in "$@"; do printf "<%s>" "$a"; done', args)], {
      encoding: 'utf8',
    });
    expect(run.stdout).toBe(args.map((a) => `<${a}>`).join(''));
  });
});

describe('argvCommand', () => {
  it("GIVEN a manifest argv and run arguments THEN a real sh runs the program with the fixed arguments first, then the run's", () => {
    const script = jobScript(argvCommand(['printf', '<%s>', '$(id)', "it's"]), ['--since', 'a b', '*']);

    const run = spawnSync('sh', ['-c', script], { encoding: 'utf8' });

    expect(run.stdout).toBe("<$(id)><it's><--since><a b><*>");
    expect(() => argvCommand([])).toThrow();
    // In a confined guest the init's launcher comes first and receives the argv unchanged.
    const launched = spawnSync('sh', ['-c', script], {
      encoding: 'utf8',
      env: { ...process.env, AGENTVM_LAUNCH: 'echo' },
    });
    expect(launched.stdout).toBe("printf <%s> $(id) it's --since a b *\n");
  });
});

describe('networkPrelude', () => {
  it('GIVEN no network THEN only loopback is brought up; GIVEN one THEN eth0 gets the address and the default route', () => {
    expect(networkPrelude(undefined)).toBe('ip link set lo up 2>/dev/null\n');
    const text = networkPrelude({ address: '172.30.0.2', prefixLength: 30, gateway: '172.30.0.1' });
    expect(text).toContain('ip addr add 172.30.0.2/30 dev eth0');
    expect(text).toContain('ip route add default via 172.30.0.1');
    expect(text).toContain('export AGENTVM_GATEWAY=172.30.0.1');
    expect(spawnSync('sh', ['-n', '-c', text]).status).toBe(0);
    // With the egress proxy (decisions/0016) ordinary clients find it in the usual variables.
    const proxied = networkPrelude({ address: '172.30.0.2', prefixLength: 30, gateway: '172.30.0.1', proxyPort: 3128 });
    expect(
      spawnSync(
        'sh',
        [
          '-c',
          `${proxied
            .split('\n')
            .filter((l) => l.startsWith('export'))
            .join('\n')}\necho "$HTTPS_PROXY $http_proxy $NO_PROXY"`,
        ],
        { encoding: 'utf8' },
      ).stdout.trim(),
    ).toBe('http://172.30.0.1:3128 http://172.30.0.1:3128 localhost,127.0.0.1');
    expect(() =>
      networkPrelude({ address: '172.30.0.2', prefixLength: 30, gateway: '172.30.0.1', proxyPort: 0 }),
    ).toThrow();
    expect(() => networkPrelude({ address: '172.30.0.2; reboot', prefixLength: 30, gateway: '172.30.0.1' })).toThrow();
  });
});
