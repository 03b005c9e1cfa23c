// Reads the server name (SNI) out of a TLS ClientHello without terminating TLS: the proxy peeks at the first bytes a
// client sends through a CONNECT tunnel and refuses the tunnel when the name differs from the CONNECT host (domain
// fronting) or is absent. The ClientHello may span several TLS records; it is reassembled up to MAX_HELLO bytes.
// Invariant: never throws on any input; malformed or oversized input is 'invalid', incomplete input is 'more'.

export type HelloResult =
  { kind: 'more' } | { kind: 'not-tls' } | { kind: 'invalid'; why: string } | { kind: 'hello'; sni: string | null };

/** Largest ClientHello we reassemble (post-quantum key shares make them ~2 KiB; 16 KiB is generous). */
export const MAX_HELLO = 16 * 1024;

const HANDSHAKE = 0x16;
const CLIENT_HELLO = 0x01;
const EXT_SERVER_NAME = 0x0000;

/** Concatenates the handshake bytes of the TLS records in `buf`; `complete` when the buffer ends on a record boundary. */
function handshakeBytes(buf: Buffer): { bytes: Buffer; partial: boolean } | { error: string } {
  const parts: Buffer[] = [];
  let off = 0;
  while (off < buf.length) {
    if (buf.length - off < 5) return { bytes: Buffer.concat(parts), partial: true };
    if (buf[off] !== HANDSHAKE) return { error: 'a record that is not a handshake before the ClientHello ended' };
    const len = buf.readUInt16BE(off + 3);
    if (len === 0 || len > 16384 + 2048) return { error: 'a TLS record of impossible length' };
    if (buf.length - off - 5 < len) {
      parts.push(buf.subarray(off + 5));
      return { bytes: Buffer.concat(parts), partial: true };
    }
    parts.push(buf.subarray(off + 5, off + 5 + len));
    off += 5 + len;
  }
  return { bytes: Buffer.concat(parts), partial: false };
}

/** Parses the start of a client's byte stream as a TLS ClientHello. */
export function parseClientHello(buf: Buffer): HelloResult {
  if (buf.length === 0) return { kind: 'more' };
  if (buf[0] !== HANDSHAKE) return { kind: 'not-tls' };
  if (buf.length > MAX_HELLO + 5 * 8) return { kind: 'invalid', why: 'the ClientHello is larger than agentvm accepts' };
  const hs = handshakeBytes(buf);
  if ('error' in hs) return { kind: 'invalid', why: hs.error };
  const b = hs.bytes;
  if (b.length < 4) return { kind: 'more' };
  if (b[0] !== CLIENT_HELLO) return { kind: 'invalid', why: 'the first handshake message is not a ClientHello' };
  const helloLen = b.readUIntBE(1, 3);
  if (helloLen > MAX_HELLO) return { kind: 'invalid', why: 'the ClientHello is larger than agentvm accepts' };
  if (b.length < 4 + helloLen) return { kind: 'more' };
  return readHello(b.subarray(4, 4 + helloLen));
}

function readHello(h: Buffer): HelloResult {
  let off = 2 + 32; // client_version, random
  const need = (n: number): boolean => off + n <= h.length;
  if (!need(1)) return { kind: 'invalid', why: 'truncated ClientHello' };
  off += 1 + h[off]!; // session_id
  if (!need(2)) return { kind: 'invalid', why: 'truncated ClientHello' };
  off += 2 + h.readUInt16BE(off); // cipher_suites
  if (!need(1)) return { kind: 'invalid', why: 'truncated ClientHello' };
  off += 1 + h[off]!; // compression_methods
  if (off === h.length) return { kind: 'hello', sni: null }; // no extensions at all
  if (!need(2)) return { kind: 'invalid', why: 'truncated ClientHello' };
  const end = off + 2 + h.readUInt16BE(off);
  off += 2;
  if (end > h.length) return { kind: 'invalid', why: 'truncated extensions' };
  while (off + 4 <= end) {
    const type = h.readUInt16BE(off);
    const len = h.readUInt16BE(off + 2);
    off += 4;
    if (off + len > end) return { kind: 'invalid', why: 'truncated extension' };
    if (type === EXT_SERVER_NAME) return readServerName(h.subarray(off, off + len));
    off += len;
  }
  return { kind: 'hello', sni: null };
}

function readServerName(ext: Buffer): HelloResult {
  if (ext.length < 2) return { kind: 'invalid', why: 'truncated server_name' };
  const listEnd = 2 + ext.readUInt16BE(0);
  if (listEnd > ext.length) return { kind: 'invalid', why: 'truncated server_name' };
  let off = 2;
  let name: string | null = null;
  while (off + 3 <= listEnd) {
    const type = ext[off]!;
    const len = ext.readUInt16BE(off + 1);
    off += 3;
    if (off + len > listEnd) return { kind: 'invalid', why: 'truncated server_name' };
    if (type === 0) {
      // Two host names in one ClientHello: refuse rather than guess which one the server will use.
      if (name !== null) return { kind: 'invalid', why: 'more than one server name' };
      name = ext.subarray(off, off + len).toString('latin1');
    }
    off += len;
  }
  return { kind: 'hello', sni: name };
}
