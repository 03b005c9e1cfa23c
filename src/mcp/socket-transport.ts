// MCP over a unix stream socket, with the stdio framing (one JSON-RPC message per line): the profile's way to its
// gateway. Any MCP client speaks it with a socket instead of a child's pipes — no program to execute, which the exec
// allowlist would refuse anyway. The server side is the SDK's StdioServerTransport on the accepted socket.

import { connect, type Socket } from 'node:net';
import { ReadBuffer, serializeMessage } from '@modelcontextprotocol/sdk/shared/stdio.js';
import type { Transport } from '@modelcontextprotocol/sdk/shared/transport.js';
import type { JSONRPCMessage } from '@modelcontextprotocol/sdk/types.js';

/** A client transport to a gateway's socket. */
export class SocketClientTransport implements Transport {
  onclose?: () => void;
  onerror?: (error: Error) => void;
  onmessage?: (message: JSONRPCMessage) => void;
  private socket: Socket | undefined;
  private readonly buffer = new ReadBuffer();

  constructor(private readonly socketPath: string) {}

  start(): Promise<void> {
    return new Promise((resolve, reject) => {
      const socket = connect(this.socketPath);
      socket.once('connect', () => {
        socket.off('error', reject);
        socket.on('error', (e) => this.onerror?.(e));
        resolve();
      });
      socket.once('error', reject);
      socket.on('data', (chunk: Buffer) => {
        this.buffer.append(chunk);
        for (;;) {
          let message: JSONRPCMessage | null;
          try {
            message = this.buffer.readMessage();
          } catch (e) {
            this.onerror?.(e as Error);
            continue;
          }
          if (message === null) break;
          this.onmessage?.(message);
        }
      });
      socket.on('close', () => this.onclose?.());
      this.socket = socket;
    });
  }

  send(message: JSONRPCMessage): Promise<void> {
    return new Promise((resolve, reject) => {
      if (!this.socket) return reject(new Error('not connected'));
      this.socket.write(serializeMessage(message), (e) => (e ? reject(e) : resolve()));
    });
  }

  async close(): Promise<void> {
    this.socket?.end();
    this.socket?.destroy();
    this.buffer.clear();
  }
}
