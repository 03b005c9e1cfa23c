// The proxy's resolver against a real UDP DNS server on loopback: answers are kept for their TTL and no longer,
// concurrent lookups share a query, a TTL of 0 and failures are not kept, and each caller gets its own copy.
import { createSocket, type Socket } from 'node:dgram';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NameResolver } from './resolver.js';

/** A-record answers from `table` (name → [address, ttl]); AAAA gets no records; unknown names NXDOMAIN. */
function dnsAnswer(msg: Buffer, table: Map<string, [string, number]>): Buffer {
  let off = 12;
  const labels: string[] = [];
  while (msg[off] !== 0) {
    labels.push(msg.subarray(off + 1, off + 1 + msg[off]!).toString('latin1'));
    off += 1 + msg[off]!;
  }
  const qtype = msg.readUInt16BE(off + 1);
  const question = msg.subarray(12, off + 5);
  const rec = table.get(labels.join('.').toLowerCase());
  const answers: Buffer[] = [];
  if (rec && qtype === 1) {
    const head = Buffer.alloc(12);
    head.writeUInt16BE(0xc00c, 0);
    head.writeUInt16BE(1, 2);
    head.writeUInt16BE(1, 4);
    head.writeUInt32BE(rec[1], 6);
    head.writeUInt16BE(4, 10);
    answers.push(head, Buffer.from(rec[0].split('.').map(Number)));
  }
  const header = Buffer.alloc(12);
  header.writeUInt16BE(msg.readUInt16BE(0), 0);
  header.writeUInt16BE(0x8180 | (rec ? 0 : 3), 2);
  header.writeUInt16BE(1, 4);
  header.writeUInt16BE(answers.length / 2, 6);
  return Buffer.concat([header, question, ...answers]);
}

describe('NameResolver', () => {
  const table = new Map<string, [string, number]>();
  const queries: string[] = [];
  let server: Socket;
  let port = 0;
  let clock = 1_000_000;
  const resolver = (): NameResolver => new NameResolver([`127.0.0.1:${port}`], { now: () => clock });

  beforeAll(async () => {
    server = createSocket('udp4');
    server.on('message', (msg, from) => {
      if (msg.readUInt16BE(msg.length - 4) === 1) queries.push(msg.subarray(12, 40).toString('latin1'));
      server.send(dnsAnswer(msg, table), from.port, from.address);
    });
    await new Promise<void>((r) => server.bind(0, '127.0.0.1', () => r()));
    port = server.address().port;
  });
  afterAll(() => server.close());

  it('keeps an answer for its TTL, then asks again and sees the new address', async () => {
    const r = resolver();
    table.set('a.test', ['192.0.2.1', 30]);
    queries.length = 0;
    expect((await r.resolve('a.test')).addresses).toEqual(['192.0.2.1']);
    table.set('a.test', ['192.0.2.2', 30]);
    clock += 29_000;
    expect((await r.resolve('A.test')).addresses).toEqual(['192.0.2.1']);
    expect(queries).toHaveLength(1);
    clock += 1_000;
    expect((await r.resolve('a.test')).addresses).toEqual(['192.0.2.2']);
    expect(queries).toHaveLength(2);
  });

  it('shares one query among concurrent lookups, and hands each caller its own list', async () => {
    const r = resolver();
    table.set('b.test', ['192.0.2.3', 60]);
    queries.length = 0;
    const all = await Promise.all(Array.from({ length: 20 }, () => r.resolve('b.test')));
    expect(queries).toHaveLength(1);
    all[0]!.addresses.push('10.0.0.1');
    expect(all[1]!.addresses).toEqual(['192.0.2.3']);
    expect((await r.resolve('b.test')).addresses).toEqual(['192.0.2.3']);
  });

  it('does not keep a TTL of 0, a failure, or longer than five minutes', async () => {
    const r = resolver();
    table.set('zero.test', ['192.0.2.4', 0]);
    table.set('long.test', ['192.0.2.5', 86_400]);
    queries.length = 0;
    await r.resolve('zero.test');
    await r.resolve('zero.test');
    expect(queries).toHaveLength(2);
    expect((await r.resolve('missing.test')).error).toBe('ENOTFOUND');
    table.set('missing.test', ['192.0.2.6', 60]);
    expect((await r.resolve('missing.test')).addresses).toEqual(['192.0.2.6']);
    await r.resolve('long.test');
    clock += 300_000;
    queries.length = 0;
    await r.resolve('long.test');
    expect(queries).toHaveLength(1);
  });
});
