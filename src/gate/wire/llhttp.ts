// llhttp, node's own HTTP parser (the one node:http uses), reached through the built-in `_http_common` binding: no
// dependency, and exactly node:http's parsing rules in strict mode (ADR 0012).
// Invariants:
// - Always strict (kLenientNone): conflicting Content-Length/Transfer-Encoding, bad chunk sizes, invalid header
//   characters and heads over the size limit are errors, never guessed at.
// - The native parser is never freed from inside its own callbacks (a use after free, seen as a segfault during
//   development): free() while execute() or finish() runs is deferred to the caller's next free().

import { createRequire } from 'node:module';

/** What execute() and finish() return for a message llhttp refused. */
export type ParseError = Error & { code?: string };

export interface LlhttpParser {
  initialize(type: number, resource: object, maxHeaderSize: number, lenient: number): void;
  execute(data: Buffer): number | ParseError;
  finish(): undefined | ParseError;
  close(): void;
  [key: number]: unknown;
}

interface LlhttpModule {
  HTTPParser: {
    new (): LlhttpParser;
    REQUEST: number;
    RESPONSE: number;
    kOnHeaders: number;
    kOnHeadersComplete: number;
    kOnMessageBegin: number;
    kOnBody: number;
    kOnMessageComplete: number;
    kOnExecute: number;
    kLenientNone: number;
  };
  methods: string[];
}

export const { HTTPParser, methods } = createRequire(import.meta.url)('_http_common') as LlhttpModule;

/**
 * The whole header list of a head: llhttp hands a long head's first headers to kOnHeaders (`partial`) and the rest to
 * kOnHeadersComplete (`last`). No copy when either part is empty (the common case).
 */
export function joinHeaders(partial: string[], last: string[] | undefined): string[] {
  if (!last || last.length === 0) return partial;
  return partial.length ? partial.concat(last) : last;
}

/** One llhttp parser with the guard its native memory needs. Callbacks are set on `native[HTTPParser.kOn…]`. */
export class GuardedParser {
  readonly native: LlhttpParser;
  /** Inside execute()/finish(): the native parser must not be freed until it returns. */
  executing = false;
  private freed = false;

  constructor(type: 'request' | 'response', maxHeaderSize: number) {
    this.native = new HTTPParser();
    this.native.initialize(
      type === 'request' ? HTTPParser.REQUEST : HTTPParser.RESPONSE,
      {},
      maxHeaderSize,
      HTTPParser.kLenientNone,
    );
  }

  /** Parses `chunk`: the number of bytes parsed (fewer than its length when an upgrade head ended in it), or the error. */
  execute(chunk: Buffer): number | ParseError {
    this.executing = true;
    try {
      return this.native.execute(chunk);
    } finally {
      this.executing = false;
    }
  }

  /** The peer closed: an error when a message was cut short (a message delimited by the close completes here). */
  finish(): undefined | ParseError {
    this.executing = true;
    try {
      return this.native.finish();
    } finally {
      this.executing = false;
    }
  }

  /** Frees the native parser once; does nothing while it is executing (the owner calls again after it returns). */
  free(): void {
    if (this.freed || this.executing) return;
    this.freed = true;
    this.native.close();
  }
}
