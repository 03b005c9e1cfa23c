// Tool kinds (decisions/0022): what each `tools[]` entry must say so a provider can enforce it.
//   program  {kind, name, path, sha256}           an executable the unit may run (exec allowlist)
//   mcp      {kind, name, command|url, tools[]}   an MCP server reached only through the profile's MCP gateway
//   kindless {name, version|sha256}                the v1alpha1 form: read and checked (tools.ts) as before, and mapped
//                                                  to no grant at run time (no provider sees it; README says how to
//                                                  rewrite it). Not a warning: today's contracts name in-process
//                                                  skills this way, and a warning on every such entry would teach
//                                                  people to ignore warnings.
// Invariants: a field of another kind is an error (it would look like a grant and be ignored); a program path may
// not climb out of the release; an HTTP server's host:port must also be an egress destination, so the tool list
// never opens a network path the egress list does not show.

import { errorDiag, type Diagnostic } from '../../diagnostics/index.js';
import { at, list, record, specOf, text, type WorkloadRule } from '../context.js';
import { quote } from '../../secrets/text-safety.js';
import { destinationOf } from '../../egress/mcp-destinations.js';

const FIELDS: Record<'program' | 'mcp' | 'kindless', ReadonlySet<string>> = {
  program: new Set(['kind', 'name', 'path', 'sha256']),
  mcp: new Set(['kind', 'name', 'command', 'url', 'tools']),
  kindless: new Set(['name', 'version', 'sha256']),
};

export const toolKindRules: WorkloadRule = (ctx) => {
  const doc = ctx.contract;
  if (!doc) return [];
  const spec = specOf(doc);
  const out: Diagnostic[] = [];
  list(spec.tools).forEach((raw, i) => {
    const tool = record(raw);
    if (!tool) return;
    const kind =
      tool.kind === 'program' || tool.kind === 'mcp' ? tool.kind : tool.kind === undefined ? 'kindless' : undefined;
    if (!kind) return; // the schema reports an unknown kind
    const shown = quote(text(tool.name), `#${i + 1}`);
    const where = (...p: Array<string | number>): ReturnType<typeof at> & { address: string } => ({
      ...at(doc, ['spec', 'tools', i, ...p]),
      address: ctx.address,
    });
    for (const field of Object.keys(tool)) {
      if (FIELDS[kind].has(field) || !isToolField(field)) continue;
      out.push(
        errorDiag(
          'policy.tool-field',
          `Tool ${shown} (${kind === 'kindless' ? 'no kind' : `kind ${kind}`}) has \`${field}\`, which belongs to another kind of tool.`,
          {
            detail:
              kind === 'kindless'
                ? 'Add `kind: program` (with path and sha256) or `kind: mcp` (with command or url, and tools), so the entry means what it says.'
                : `A ${kind} entry has exactly ${[...FIELDS[kind]].map((f) => `\`${f}\``).join(', ')}. Remove \`${field}\`.`,
            ...where(field),
          },
        ),
      );
    }
    const missing = (REQUIRED[kind] ?? []).filter((f) => tool[f] === undefined);
    if (missing.length > 0) {
      out.push(
        errorDiag(
          'policy.tool-incomplete',
          `Tool ${shown} (kind ${kind}) has no ${missing.map((f) => `\`${f}\``).join(' and ')}.`,
          {
            detail:
              kind === 'program'
                ? 'A program is the exact file the unit may execute (`path`, in the release or absolute on the host) and the sha256 of its bytes (`sha256sum <file>`); apply refuses to start the unit when the file does not match.'
                : 'An MCP server lists the tools the workload may call, each with the sha256 of its description (`agentvm tools pin <workload>` prints them for review).',
            ...where(),
          },
        ),
      );
    }
    if (kind === 'program') out.push(...programPath(shown, text(tool.path), where('path')));
    if (kind === 'mcp') out.push(...mcpChecks(shown, tool, spec, where));
  });
  return out;
};

const REQUIRED: Partial<Record<'program' | 'mcp' | 'kindless', readonly string[]>> = {
  program: ['path', 'sha256'],
  mcp: ['tools'],
};

const ALL_FIELDS = new Set([...FIELDS.program, ...FIELDS.mcp, ...FIELDS.kindless]);
function isToolField(field: string): boolean {
  return ALL_FIELDS.has(field);
}

function programPath(shown: string, p: string | undefined, where: { address: string }): Diagnostic[] {
  if (p === undefined) return [];
  const parts = p.split('/');
  if (parts.includes('..') || parts.includes('.') || (p.length > 1 && p.endsWith('/')) || p.includes('//')) {
    return [
      errorDiag(
        'policy.tool-path',
        `Tool ${shown} has path ${quote(p, 'that is not plain')}: a program path names one file, without \`.\`, \`..\` or empty segments.`,
        {
          detail:
            'Give the absolute path on the host (/usr/bin/rg) or the path relative to the release directory (bin/tool). The unit is allowed to execute exactly that file.',
          ...where,
        },
      ),
    ];
  }
  return [];
}

function mcpChecks(
  shown: string,
  tool: Record<string, unknown>,
  spec: Record<string, unknown>,
  where: (...p: Array<string | number>) => { address: string },
): Diagnostic[] {
  const out: Diagnostic[] = [];
  const hasCommand = tool.command !== undefined;
  const url = text(tool.url);
  if (hasCommand === (url !== undefined)) {
    out.push(
      errorDiag(
        'policy.mcp-transport',
        `MCP server ${shown} needs exactly one of \`command\` (a stdio server from the release) or \`url\` (an HTTP server).`,
        {
          detail:
            'agentvm launches a `command` server itself, sandboxed, or reaches a `url` server over HTTP through the egress allowlist; an entry with both or neither is ambiguous.',
          ...where(),
        },
      ),
    );
  }
  if (url !== undefined) {
    const dest = destinationOf(url);
    const egress = list(spec.egress)
      .map(record)
      .filter((e): e is Record<string, unknown> => e !== undefined);
    if (dest && !egress.some((e) => text(e.host) === dest.host && e.port === dest.port)) {
      out.push(
        errorDiag(
          'policy.mcp-url-egress',
          `MCP server ${shown} at ${quote(url, 'its url')} is not an egress destination of the workload.`,
          {
            detail: `Add \`{host: ${dest.host}, port: ${dest.port}}\` to spec.egress: the tool list never opens a network path that the egress list does not show.`,
            ...where('url'),
          },
        ),
      );
    }
  }
  const seen = new Set<string>();
  list(tool.tools).forEach((rawPin, j) => {
    const name = text(record(rawPin)?.name);
    if (name === undefined) return;
    if (seen.has(name)) {
      out.push(
        errorDiag('policy.mcp-tool-duplicate', `MCP server ${shown} lists tool ${quote(name, `#${j + 1}`)} twice.`, {
          detail: 'Keep one entry per MCP tool, so exactly one description pin applies.',
          ...where('tools', j, 'name'),
        }),
      );
    }
    seen.add(name);
  });
  return out;
}
