// What a request may ask the gate for: the request target is checked BEFORE anything else looks at it, and only an
// origin-form target with a plain path passes. Pure; no I/O.
// Invariants:
// - Host routing (the default, ADR 0014): the route is chosen by the Host header alone (host-names.ts); the path never
//   chooses it. Path routing (the opt-in): the
//   first two segments of `/p/<workload>/<preview>/` choose it and the Host header never does.
// - Anything an upstream or an intermediary could decode into another path is refused, not normalised: `.`/`..`
//   segments, empty segments, backslashes, encoded `.`, `/`, `\`, `%` and NUL, invalid or overlong UTF-8, characters
//   outside RFC 3986 `pchar`, absolute-form and authority-form targets. The upstream receives `<rest>` byte-for-byte.

import { NAME } from './routes.js';

export type RequestTarget =
  | {
      ok: true;
      workload: string;
      preview: string;
      /** The path below the route, starting with `/`, exactly as received. */
      rest: string;
      /** The query to forward (without `?`), with any `grant` parameter removed; '' when none. */
      query: string;
      /** The one-time token from `?grant=`, when given. */
      grant?: string;
    }
  | { ok: false; status: 400 | 404 | 308; reason: string; location?: string };

const PCHAR_PATH = /^[A-Za-z0-9\-._~!$&'()*+,;=:@/%]*$/;
const QUERY_CHARS = /^[A-Za-z0-9\-._~!$&'()*+,;=:@/?%]*$/;
const FORBIDDEN_ENCODED = /%(2e|2f|5c|25|00)/i;
const BAD_PERCENT = /%(?![0-9A-Fa-f]{2})/;

/** Checks a path and query (see the invariants); the path's segments after the leading `/`, or a refusal. */
function checkTarget(
  url: string | undefined,
): { rawPath: string; rawQuery: string; segments: string[] } | { ok: false; status: 400; reason: string } {
  if (!url || url[0] !== '/')
    return { ok: false, status: 400, reason: 'request target is not origin-form (absolute-form, authority-form or *)' };
  const q = url.indexOf('?');
  const rawPath = q === -1 ? url : url.slice(0, q);
  const rawQuery = q === -1 ? '' : url.slice(q + 1);
  if (!PCHAR_PATH.test(rawPath))
    return { ok: false, status: 400, reason: 'path has characters outside RFC 3986 (e.g. a backslash)' };
  if (BAD_PERCENT.test(rawPath)) return { ok: false, status: 400, reason: 'path has a malformed percent-encoding' };
  if (FORBIDDEN_ENCODED.test(rawPath))
    return { ok: false, status: 400, reason: 'path encodes ".", "/", "\\", "%" or NUL' };
  const segments = rawPath.split('/').slice(1);
  for (let i = 0; i < segments.length; i++) {
    const s = segments[i]!;
    if (s === '.' || s === '..') return { ok: false, status: 400, reason: 'path has a "." or ".." segment' };
    if (s === '' && i !== segments.length - 1)
      return { ok: false, status: 400, reason: 'path has an empty segment ("//")' };
    try {
      const decoded = decodeURIComponent(s);
      if (decoded === '.' || decoded === '..' || /[/\\\0]/.test(decoded))
        return { ok: false, status: 400, reason: 'path segment decodes to a separator or a dot segment' };
    } catch {
      return { ok: false, status: 400, reason: 'path has invalid UTF-8 in a percent-encoding' };
    }
  }
  if (!QUERY_CHARS.test(rawQuery) || BAD_PERCENT.test(rawQuery))
    return { ok: false, status: 400, reason: 'query has characters outside RFC 3986 or a malformed percent-encoding' };
  return { rawPath, rawQuery, segments };
}

/** The query without its `grant` parameter, and the token it held. */
function splitGrant(rawQuery: string): { query: string; grant?: string } {
  let grant: string | undefined;
  const kept: string[] = [];
  for (const part of rawQuery ? rawQuery.split('&') : []) {
    if (part.startsWith('grant=')) grant = part.slice('grant='.length);
    else if (part !== '') kept.push(part);
  }
  return { query: kept.join('&'), ...(grant !== undefined ? { grant } : {}) };
}

/** Path routing (the opt-in): `/p/<workload>/<preview>/<rest>`. */
export function parseRequestTarget(url: string | undefined): RequestTarget {
  const checked = checkTarget(url);
  if ('ok' in checked) return checked;
  const { rawQuery, segments } = checked;
  if (segments[0] !== 'p' || segments.length < 3)
    return { ok: false, status: 404, reason: 'no such route (previews are under /p/<workload>/<preview>/)' };
  const workload = segments[1]!;
  const preview = segments[2]!;
  if (!NAME.test(workload) || !NAME.test(preview))
    return { ok: false, status: 404, reason: 'no such route (workload and preview are DNS labels)' };
  if (segments.length === 3)
    return {
      ok: false,
      status: 308,
      reason: 'route without trailing slash',
      location: `/p/${workload}/${preview}/${rawQuery ? `?${rawQuery}` : ''}`,
    };
  const rest = `/${segments.slice(3).join('/')}`;
  return { ok: true, workload, preview, rest, ...splitGrant(rawQuery) };
}

/** Host routing (the default): the route came from the Host header, the whole path is the preview's. */
export function parseHostTarget(url: string | undefined, workload: string, preview: string): RequestTarget {
  const checked = checkTarget(url);
  if ('ok' in checked) return checked;
  return { ok: true, workload, preview, rest: checked.rawPath, ...splitGrant(checked.rawQuery) };
}

/** The target as it may be written to the audit log: the path only (a query may hold the token or app secrets). */
export function auditPath(url: string | undefined): string {
  const u = url ?? '';
  const q = u.indexOf('?');
  const p = q === -1 ? u : u.slice(0, q);
  return p.length > 2000 ? `${p.slice(0, 1999)}…` : p;
}
