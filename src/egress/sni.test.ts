import { once } from 'node:events';
import { createServer, type AddressInfo } from 'node:net';
import { connect } from 'node:tls';
import { describe, expect, it } from 'vitest';
import { parseClientHello } from './sni.js';

/** The first bytes a real TLS client (node's OpenSSL) sends for `servername`. */
async function clientHello(servername?: string): Promise<Buffer> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const got = new Promise<Buffer>((resolve) =>
    server.once('connection', (s) =>
      s.once('data', (d: Buffer) => {
        resolve(d);
        s.destroy();
      }),
    ),
  );
  const t = connect({
    port: (server.address() as AddressInfo).port,
    host: '127.0.0.1',
    ...(servername ? { servername } : {}),
  });
  t.on('error', () => {});
  const bytes = await got;
  t.destroy();
  server.close();
  return bytes;
}

describe('parseClientHello', () => {
  it('reads the server name of a real ClientHello, and none when the client sends none', async () => {
    expect(parseClientHello(await clientHello('api.example.com'))).toEqual({ kind: 'hello', sni: 'api.example.com' });
    expect(parseClientHello(await clientHello())).toEqual({ kind: 'hello', sni: null });
  });

  it('asks for more on every strict prefix and never throws on truncated or mutated input', async () => {
    const hello = await clientHello('api.example.com');
    for (let i = 1; i < hello.length; i++)
      expect(parseClientHello(hello.subarray(0, i)).kind, `prefix ${i}`).toBe('more');
    for (let i = 0; i < 2000; i++) {
      const b = Buffer.from(hello);
      b[Math.floor(Math.random() * b.length)] = Math.floor(Math.random() * 256);
      expect(() => parseClientHello(b)).not.toThrow();
    }
  });

  it('says not-tls for plain text and invalid for a non-handshake record', () => {
    expect(parseClientHello(Buffer.from('GET / HTTP/1.1\r\n'))).toEqual({ kind: 'not-tls' });
    expect(parseClientHello(Buffer.from([0x16, 3, 1, 0, 4, 2, 0, 0, 0]))).toMatchObject({ kind: 'invalid' });
  });
});
