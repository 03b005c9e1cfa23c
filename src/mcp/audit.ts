// How the MCP gateway's facts reach the hash-chained audit log: operation `mcp-gateway`, event mcp.call |
// mcp.refuse | mcp.deny, address `mcp.<workload>.<profile>`, and a key=value detail
// (`server=… tool=… args=sha256:… outcome=… [pinned=sha256:… seen=sha256:…|none]`). The record schema has no
// free-form bag, and the detail holds names and digests only — never an argument value (McpAuditFact has no slot
// for one). Calls are many: records are written in groups (one lock, one write, one fsync per group), flushed every
// `intervalMs` or `maxRecords` and on close; a crash loses at most one interval of call records.

import { appendAuditBatch, type AuditEntry } from '../state/audit-log.js';
import type { McpAuditFact } from './gateway.js';

export const MCP_OPERATION = 'mcp-gateway';

export function mcpAuditEntry(host: string, fact: McpAuditFact): AuditEntry {
  const parts = [`server=${fact.server}`, `tool=${fact.tool}`];
  if (fact.argsDigest) parts.push(`args=sha256:${fact.argsDigest}`);
  parts.push(`outcome=${fact.outcome}`);
  if (fact.pinned) parts.push(`pinned=sha256:${fact.pinned}`, `seen=${fact.seen ? `sha256:${fact.seen}` : 'none'}`);
  return {
    host,
    operation: MCP_OPERATION,
    event: fact.event,
    result:
      fact.outcome === 'ok' ? 'ok' : fact.outcome === 'tool-error' || fact.outcome === 'failed' ? 'failed' : 'skipped',
    address: `mcp.${fact.workload}.${fact.profile}`,
    detail: parts.join(' '),
  };
}

export class McpAuditLog {
  private buffer: AuditEntry[] = [];
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly file: string,
    private readonly host: string,
    private readonly opts: { intervalMs?: number; maxRecords?: number; onError?: (e: unknown) => void } = {},
  ) {}

  readonly record = (fact: McpAuditFact): void => {
    this.buffer.push(mcpAuditEntry(this.host, fact));
    if (this.buffer.length >= (this.opts.maxRecords ?? 64)) this.flush();
    else this.timer ??= setTimeout(() => this.flush(), this.opts.intervalMs ?? 100);
  };

  flush(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    const batch = this.buffer;
    this.buffer = [];
    if (batch.length === 0) return;
    try {
      appendAuditBatch(this.file, batch);
    } catch (e) {
      this.opts.onError?.(e);
    }
  }
}
