// Tests of the tar reader against hand-built archives (every header byte under the test's control) and GNU tar.

import { execFileSync } from 'node:child_process';
import { mkdtemp, readFile, readdir, rm, stat, writeFile, mkdir } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { gzipSync } from 'node:zlib';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { extractTar, readTarEntries, TarCode } from './tar-reader.js';

interface HeaderSpec {
  name: string;
  type?: string;
  size?: number;
  mode?: number;
  linkname?: string;
  prefix?: string;
  magic?: 'ustar' | 'gnu' | 'v7';
}

function header(spec: HeaderSpec): Buffer {
  const block = Buffer.alloc(512);
  block.write(spec.name, 0, 100, 'utf8');
  block.write(`${(spec.mode ?? 0o644).toString(8).padStart(7, '0')}\0`, 100, 'latin1');
  block.write('0000000\0', 108, 'latin1');
  block.write('0000000\0', 116, 'latin1');
  block.write(`${(spec.size ?? 0).toString(8).padStart(11, '0')}\0`, 124, 'latin1');
  block.write('00000000000\0', 136, 'latin1');
  block.write(spec.type ?? '0', 156, 'latin1');
  block.write(spec.linkname ?? '', 157, 100, 'utf8');
  const magic = spec.magic ?? 'ustar';
  if (magic === 'ustar') block.write('ustar\x0000', 257, 'latin1');
  if (magic === 'gnu') block.write('ustar  \0', 257, 'latin1');
  if (spec.prefix) block.write(spec.prefix, 345, 155, 'utf8');
  block.fill(0x20, 148, 156);
  let sum = 0;
  for (const byte of block) sum += byte;
  block.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'latin1');
  return block;
}

function padded(content: Buffer): Buffer {
  const pad = (512 - (content.length % 512)) % 512;
  return Buffer.concat([content, Buffer.alloc(pad)]);
}

function file(name: string, content: string | Buffer, extra: Partial<HeaderSpec> = {}): Buffer {
  const body = Buffer.isBuffer(content) ? content : Buffer.from(content);
  return Buffer.concat([header({ name, size: body.length, ...extra }), padded(body)]);
}

function paxRecord(key: string, value: string): string {
  const body = ` ${key}=${value}\n`;
  let length = Buffer.byteLength(body) + 1;
  while (String(length).length + Buffer.byteLength(body) !== length)
    length = String(length).length + Buffer.byteLength(body);
  return `${length}${body}`;
}

function pax(type: 'x' | 'g', records: Record<string, string>): Buffer {
  const body = Buffer.from(
    Object.entries(records)
      .map(([k, v]) => paxRecord(k, v))
      .join(''),
  );
  return Buffer.concat([header({ name: 'PaxHeader', type, size: body.length }), padded(body)]);
}

const END = Buffer.alloc(1024);
const archive = (...parts: Buffer[]): Buffer => Buffer.concat([...parts, END]);

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'agentvm-tar-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('readTarEntries', () => {
  it('reads ustar files, directories, the prefix field, pax paths, GNU long names and the pax global comment', async () => {
    const longName = `${'d'.repeat(120)}/file.txt`;
    const gnuName = `${'g'.repeat(110)}.txt`;
    const tar = archive(
      pax('g', { comment: 'a'.repeat(40) }),
      header({ name: 'app/', type: '5', mode: 0o755 }),
      file('app/run.sh', '#!/bin/sh\n', { mode: 0o755 }),
      file('name.txt', 'prefixed', { prefix: 'deep/er' }),
      pax('x', { path: longName }),
      file('ignored-short-name', 'long'),
      Buffer.concat([
        header({ name: '././@LongLink', type: 'L', size: gnuName.length + 1, magic: 'gnu' }),
        padded(Buffer.from(`${gnuName}\0`)),
      ]),
      file('short', 'gnu', { magic: 'gnu' }),
    );
    const result = await readTarEntries(tar);
    expect(result.diagnostics).toEqual([]);
    expect(result.comment).toBe('a'.repeat(40));
    expect(result.entries.map((e) => [e.path, e.type, e.executable, e.content.toString()])).toEqual([
      ['app', 'directory', false, ''],
      ['app/run.sh', 'file', true, '#!/bin/sh\n'],
      ['deep/er/name.txt', 'file', false, 'prefixed'],
      [longName, 'file', false, 'long'],
      [gnuName, 'file', false, 'gnu'],
    ]);
  });

  it('honours a pax size larger than the header can say, and strips leading components', async () => {
    const tar = archive(
      header({ name: 'package/', type: '5' }),
      pax('x', { size: '3' }),
      file('package/x', 'abc', { size: 0 }).subarray(0, 512),
      padded(Buffer.from('abc')),
    );
    // The header above says size 0; only the pax record gives the real size.
    const result = await readTarEntries(tar, { stripComponents: 1 });
    expect(result.diagnostics).toEqual([]);
    expect(result.entries.map((e) => [e.path, e.content.toString()])).toEqual([['x', 'abc']]);
  });

  it('gunzips when the bytes are gzip', async () => {
    const result = await readTarEntries(gzipSync(archive(file('a.txt', 'zipped'))));
    expect(result.entries.map((e) => e.content.toString())).toEqual(['zipped']);
  });

  const refusals: Array<[string, Buffer, string]> = [
    ['an absolute path', archive(file('/etc/passwd', 'x')), TarCode.unsafePath],
    ['a .. segment', archive(file('a/../../escape', 'x')), TarCode.unsafePath],
    ['a pax path with ..', archive(pax('x', { path: '../escape' }), file('fine', 'x')), TarCode.unsafePath],
    [
      'a GNU long name that is absolute',
      archive(
        Buffer.concat([
          header({ name: '././@LongLink', type: 'L', size: 8, magic: 'gnu' }),
          padded(Buffer.from('/tmp/x\0')),
        ]),
        file('s', 'x'),
      ),
      TarCode.unsafePath,
    ],
    ['a symlink', archive(header({ name: 'link', type: '2', linkname: '/etc/passwd' })), TarCode.link],
    ['a hard link', archive(file('a', 'x'), header({ name: 'b', type: '1', linkname: 'a' })), TarCode.link],
    ['a character device', archive(header({ name: 'null', type: '3' })), TarCode.specialFile],
    ['a FIFO', archive(header({ name: 'fifo', type: '6' })), TarCode.specialFile],
    ['a file listed twice', archive(file('a', 'x'), file('a', 'y')), TarCode.duplicate],
    ['a pax global path', archive(pax('g', { path: 'x' }), file('a', 'x')), TarCode.corrupt],
    ['a missing end-of-archive block', Buffer.concat([file('a', 'x')]), TarCode.corrupt],
    ['a file cut short', file('a', 'x'.repeat(2000)).subarray(0, 1024), TarCode.corrupt],
    ['empty input', Buffer.alloc(0), TarCode.corrupt],
    ['garbage gzip', Buffer.from([0x1f, 0x8b, 1, 2, 3, 4]), TarCode.corrupt],
  ];
  it.each(refusals)('refuses %s', async (_what, tar, code) => {
    const result = await readTarEntries(tar);
    expect(result.entries).toEqual([]);
    expect(result.diagnostics.map((d) => [d.code, d.severity])).toEqual([[code, 'error']]);
  });

  it('refuses a header whose checksum does not match', async () => {
    const tar = archive(file('a', 'x'));
    tar[0] = 'b'.charCodeAt(0);
    const result = await readTarEntries(tar);
    expect(result.diagnostics[0]?.code).toBe(TarCode.corrupt);
    expect(result.diagnostics[0]?.summary).toMatch(/checksum/);
  });
});

describe('extractTar', () => {
  it('streams an archive into a fresh directory with safe modes', async () => {
    const tar = archive(
      header({ name: 'bin/', type: '5', mode: 0o700 }),
      file('bin/tool', 'run', { mode: 0o4755 }),
      file('README', 'read me', { mode: 0o666 }),
    );
    const chunks = Array.from({ length: Math.ceil(tar.length / 100) }, (_, i) => tar.subarray(i * 100, i * 100 + 100));
    const target = path.join(dir, 'out');
    const result = await extractTar(Readable.from(chunks), target);
    expect(result).toMatchObject({ files: 2, directories: 1, bytes: 10, diagnostics: [] });
    expect(await readFile(path.join(target, 'bin/tool'), 'utf8')).toBe('run');
    expect((await stat(path.join(target, 'bin/tool'))).mode & 0o7777).toBe(0o755);
    expect((await stat(path.join(target, 'README'))).mode & 0o7777).toBe(0o644);
    expect((await stat(path.join(target, 'bin'))).mode & 0o7777).toBe(0o755);
  });

  it('gunzips a gzip stream', async () => {
    const target = path.join(dir, 'out');
    const result = await extractTar(Readable.from([gzipSync(archive(file('z', 'zz')))]), target, { gzip: 'auto' });
    expect(result.diagnostics).toEqual([]);
    expect(await readFile(path.join(target, 'z'), 'utf8')).toBe('zz');
  });

  it('removes everything it wrote when a later entry is refused, and writes nothing outside', async () => {
    const tar = archive(file('ok.txt', 'fine'), file('../outside.txt', 'evil'));
    const target = path.join(dir, 'out');
    const result = await extractTar(tar, target);
    expect(result.diagnostics.map((d) => d.code)).toEqual([TarCode.unsafePath]);
    expect(await readdir(dir)).toEqual([]);
  });

  it('extracts what GNU tar writes, including long names', async () => {
    const src = path.join(dir, 'src');
    const long = `${'n'.repeat(150)}/${'m'.repeat(120)}.txt`;
    await mkdir(path.join(src, path.dirname(long)), { recursive: true });
    await writeFile(path.join(src, long), 'long');
    await writeFile(path.join(src, 'exec'), 'x', { mode: 0o755 });
    for (const format of ['gnu', 'pax', 'ustar']) {
      const tarFile = path.join(dir, `${format}.tar`);
      try {
        execFileSync('tar', [`--format=${format}`, '-cf', tarFile, '-C', src, '.'], { stdio: 'pipe' });
      } catch {
        // ustar cannot hold a 150-character directory component; the other formats must.
        expect(format).toBe('ustar');
        continue;
      }
      const target = path.join(dir, `out-${format}`);
      const result = await extractTar(await readFile(tarFile), target);
      expect(result.diagnostics).toEqual([]);
      expect(await readFile(path.join(target, long), 'utf8')).toBe('long');
      expect((await stat(path.join(target, 'exec'))).mode & 0o111).not.toBe(0);
    }
  });
});
