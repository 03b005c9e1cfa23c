// HTTP/1.1 framing the gate writes itself: status lines, its own chunked encoding, header lookups in raw lists. The
// gate re-frames every message (ADR 0012), so these are the only framing bytes that ever reach a peer.

import { STATUS_CODES } from 'node:http';

export const CRLF = '\r\n';
/** The last chunk of a chunked body (no trailers: the gate never forwards any). */
export const LAST_CHUNK = `0${CRLF}${CRLF}`;

export function statusLine(status: number, reason: string): string {
  return `HTTP/1.1 ${status} ${reason}${CRLF}`;
}

/** Reason phrase the gate writes for `status`. */
export function reasonPhrase(status: number): string {
  return STATUS_CODES[status] ?? 'Status';
}

/** The whole answer of a refusal the gate writes on its own and then closes after (400, 408, 431). */
export function closingAnswer(status: number): string {
  return `${statusLine(status, reasonPhrase(status))}connection: close${CRLF}content-length: 0${CRLF}${CRLF}`;
}

/** Header value of `name` (lowercase) in a raw header list, joined like node does, or undefined. */
export function rawHeader(raw: string[], name: string): string | undefined {
  let out: string | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i]!.length === name.length && raw[i]!.toLowerCase() === name)
      out = out === undefined ? raw[i + 1]! : `${out}, ${raw[i + 1]!}`;
  }
  return out;
}
