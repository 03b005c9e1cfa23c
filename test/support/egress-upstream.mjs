// Runs INSIDE a network namespace the egress tests create (test/support/egress-net.ts): the "internet" the egress
// proxy reaches. A UDP DNS responder (the test's own resolver, answering from a fixed record table), an HTTP server on
// :80 and an HTTPS server on :443 (certificate for the names the test uses), on the namespace's IPv4 and IPv6
// addresses. Every server answers JSON naming which server answered and the Host/SNI it saw; `/bytes/<n>` answers n bytes.
// Config: one JSON argument {addresses, records: {name: {A: [], AAAA: []}}, cert, key}. Prints `ready` when listening.

import { createSocket } from 'node:dgram';
import { readFileSync } from 'node:fs';
import { createServer as createHttp } from 'node:http';
import { createServer as createHttps } from 'node:https';

const config = JSON.parse(process.argv[2]);

function answer(msg) {
  const id = msg.readUInt16BE(0);
  let off = 12;
  const labels = [];
  while (msg[off] !== 0) {
    labels.push(msg.subarray(off + 1, off + 1 + msg[off]).toString('latin1'));
    off += 1 + msg[off];
  }
  off += 1;
  const qtype = msg.readUInt16BE(off);
  const question = msg.subarray(12, off + 4);
  const name = labels.join('.').toLowerCase();
  const rec = config.records[name];
  const type = qtype === 1 ? 'A' : qtype === 28 ? 'AAAA' : '';
  const values = rec && type ? (rec[type] ?? []) : [];
  const answers = values.map((v) => {
    const rdata = type === 'A' ? Buffer.from(v.split('.').map(Number)) : ipv6Bytes(v);
    const head = Buffer.alloc(12);
    head.writeUInt16BE(0xc00c, 0);
    head.writeUInt16BE(qtype, 2);
    head.writeUInt16BE(1, 4);
    head.writeUInt32BE(5, 6);
    head.writeUInt16BE(rdata.length, 10);
    return Buffer.concat([head, rdata]);
  });
  const header = Buffer.alloc(12);
  header.writeUInt16BE(id, 0);
  header.writeUInt16BE(0x8180 | (rec ? 0 : 3), 2);
  header.writeUInt16BE(1, 4);
  header.writeUInt16BE(answers.length, 6);
  return Buffer.concat([header, question, ...answers]);
}

function ipv6Bytes(v) {
  const [a, b = ''] = v.split('::');
  const left = a ? a.split(':') : [];
  const right = b ? b.split(':') : [];
  const groups = [...left, ...Array(8 - left.length - right.length).fill('0'), ...right];
  const out = Buffer.alloc(16);
  groups.forEach((g, i) => out.writeUInt16BE(parseInt(g, 16), i * 2));
  return out;
}

const handler = (kind) => (req, res) => {
  const m = /^\/bytes\/(\d+)$/.exec(req.url ?? '');
  if (m) {
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': m[1] });
    res.end(Buffer.alloc(Number(m[1]), 0x61));
    return;
  }
  // The request's headers and body are echoed too (injected-credential tests check what arrived).
  let received = '';
  req.setEncoding('utf8').on('data', (d) => (received += d));
  req.on('end', () => {
    const body = JSON.stringify({ server: kind, host: req.headers.host, sni: req.socket.servername ?? null, path: req.url, remote: req.socket.remoteAddress, headers: req.headers, body: received });
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  });
};

// SECLEVEL=0: the microVM guest's only TLS client is busybox's ssl_client, which sends no signature_algorithms and so
// means SHA-1 signatures, refused at OpenSSL's default level. Test upstream only, inside the test's namespace.
const tls = { cert: readFileSync(config.cert), key: readFileSync(config.key), ciphers: 'DEFAULT@SECLEVEL=0' };
let pending = 0;
const up = () => {
  if (--pending === 0) process.stdout.write('ready\n');
};
for (const address of config.addresses) {
  const udp = createSocket(address.includes(':') ? 'udp6' : 'udp4');
  udp.on('message', (msg, rinfo) => {
    try {
      udp.send(answer(msg), rinfo.port, rinfo.address);
    } catch {
      // a malformed query gets no answer
    }
  });
  pending += 3;
  udp.bind(53, address, up);
  createHttp(handler('http')).listen(80, address, up);
  createHttps(tls, handler('https')).listen(443, address, up);
}
process.on('SIGTERM', () => process.exit(0));
