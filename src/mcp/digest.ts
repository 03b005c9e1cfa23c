// The digests of the MCP gateway (decisions/0022 §4), so anyone can compute the same pin:
//   toolDigest  sha256 of the canonical JSON (RFC 8785 / src/model/canonical-json.ts) of exactly
//               {name, description ("" when absent), inputSchema ({} when absent)}
//   argsDigest  sha256 of the canonical JSON of a call's arguments: the audit records it, never the values
// Other fields of a tool (title, annotations, outputSchema, _meta) are not pinned: they do not instruct the model.

import { canonicalJson, sha256Hex } from '../model/index.js';

export interface ToolDescription {
  name: string;
  description?: string | undefined;
  inputSchema?: unknown;
}

export function toolDigest(tool: ToolDescription): string {
  return sha256Hex(
    canonicalJson({ name: tool.name, description: tool.description ?? '', inputSchema: tool.inputSchema ?? {} }),
  );
}

export function argsDigest(args: unknown): string {
  return sha256Hex(canonicalJson(args ?? {}));
}
