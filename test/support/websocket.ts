// A WebSocket upstream for the gate suites, RFC 6455 by hand (short text frames only): the handshake, an echo of every
// text frame as `echo:<text>`, `tick` pushes every 100 ms on /push, a refused upgrade on /refuse, a 101 one second late on
// /slow-101, a socket that ignores the client's FIN on /ignore-fin, and at `/` an HTML
// page whose script opens `socket` relative to itself (for the browser test). Records handshakes and received texts.

import { createHash } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

const WS_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';

export const wsAccept = (key: string): string =>
  createHash('sha1')
    .update(key + WS_GUID)
    .digest('base64');

/** One final text frame; clients mask theirs (RFC 6455 §5.3), servers do not. */
export function wsFrame(text: string, masked: boolean): Buffer {
  const payload = Buffer.from(text);
  if (payload.length > 125) throw new Error('test frames are short');
  if (!masked) return Buffer.concat([Buffer.from([0x81, payload.length]), payload]);
  const mask = Buffer.from([0x11, 0x22, 0x33, 0x44]);
  const body = Buffer.from(payload.map((b, i) => b ^ mask[i % 4]!));
  return Buffer.concat([Buffer.from([0x81, 0x80 | payload.length]), mask, body]);
}

/** Text payloads of the complete frames at the start of `buf`, and what is left over. */
export function wsRead(buf: Buffer): { texts: string[]; rest: Buffer } {
  const texts: string[] = [];
  for (;;) {
    if (buf.length < 2) break;
    const masked = (buf[1]! & 0x80) !== 0;
    const len = buf[1]! & 0x7f;
    const start = 2 + (masked ? 4 : 0);
    if (len > 125 || buf.length < start + len) break;
    let payload = buf.subarray(start, start + len);
    if (masked) payload = Buffer.from(payload.map((b, i) => b ^ buf[2 + (i % 4)]!));
    texts.push(payload.toString());
    buf = buf.subarray(start + len);
  }
  return { texts, rest: buf };
}

/** The page a browser test opens: it connects, says `hi`, logs what it receives, and says when the socket closed. */
const PAGE = `<!doctype html><title>live preview</title><pre id="log"></pre><p id="state">connecting</p><script>
const ws = new WebSocket(new URL('socket', location.href).href.replace(/^http/, 'ws'));
window.ws = ws;
ws.onopen = () => { document.getElementById('state').textContent = 'open'; ws.send('hi'); };
ws.onmessage = (e) => { document.getElementById('log').textContent += e.data + '\\n'; };
ws.onclose = () => { document.getElementById('state').textContent = 'closed'; };
</script>`;

export interface WsUpstream {
  port: number;
  /** Texts received from clients, in order. */
  received: string[];
  /** Headers of every upgrade request that reached it. */
  handshakes: http.IncomingHttpHeaders[];
  /** Upgraded sockets still open. */
  open(): number;
  /** Writes a `tick` frame on every open socket (a socket whose peer is gone then errors and closes). */
  poke(): void;
  /** Upgrade requests seen so far. */
  handshakesSeen(): number;
  /** Sends the 101 every /slow-101 request is waiting for. */
  switchSlow(): void;
  close(): Promise<void>;
}

export async function startWsUpstream(): Promise<WsUpstream> {
  const received: string[] = [];
  const handshakes: http.IncomingHttpHeaders[] = [];
  const sockets = new Set<Socket>();
  const held: Array<() => void> = [];
  const server = http.createServer((req, res) => {
    if (req.url === '/') {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      res.end(PAGE);
      return;
    }
    res.writeHead(404, { 'content-length': 9 });
    res.end('not found');
  });
  server.on('upgrade', (req: http.IncomingMessage, socket: Socket) => {
    handshakes.push(req.headers);
    if (req.url === '/refuse') {
      socket.end('HTTP/1.1 403 Forbidden\r\ncontent-length: 7\r\nconnection: close\r\n\r\nrefused');
      return;
    }
    sockets.add(socket);
    socket.on('error', () => socket.destroy());
    // The client went away: so does this side, as WebSocket servers do (not /ignore-fin, a hostile or buggy one).
    if (req.url !== '/ignore-fin') socket.on('end', () => socket.end());
    socket.on('close', () => sockets.delete(socket));
    const switched = `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${wsAccept(String(req.headers['sec-websocket-key']))}\r\n\r\n`;
    // /slow-101 answers when the test says so (switchSlow), not after a delay a loaded machine could outrun.
    if (req.url === '/slow-101') held.push(() => socket.write(switched));
    else socket.write(switched);
    let buf: Buffer = Buffer.alloc(0);
    socket.on('data', (d: Buffer) => {
      const { texts, rest } = wsRead(Buffer.concat([buf, d]));
      buf = rest;
      for (const t of texts) {
        received.push(t);
        socket.write(wsFrame(`echo:${t}`, false));
      }
    });
    if (req.url === '/push') {
      const timer = setInterval(() => socket.write(wsFrame('tick', false)), 100);
      socket.on('close', () => clearInterval(timer));
    }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as AddressInfo).port,
    received,
    handshakes,
    open: () => sockets.size,
    poke: () => sockets.forEach((s) => s.write(wsFrame('tick', false))),
    handshakesSeen: () => handshakes.length,
    switchSlow: () => held.splice(0).forEach((f) => f()),
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}
