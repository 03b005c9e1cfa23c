// The host side of the guest job protocol (the guest side is the /init in scripts/build-test-image.sh; keep
// them in step). Owns: the kernel command-line keys, the job script and overlay layout, and the parser that
// turns the serial console stream into console text, result files and an exit status.
//
// Record grammar (one per console line, found anywhere in the line so a job's unterminated last line cannot
// hide one): `AGENTVM-<TAG> <nonce>[ <fields>]` with TAG one of CONFINED, READY, ERROR, FILE, FILE-END, EXIT, PROBE-OK.
// CONFINED comes just before READY from an init that confined the job (ADR 0022 "Jobs").
// A FILE record (`<base64 name> <size> <sha256>`) is followed by base64 payload lines and FILE-END. EXIT
// (`<code>`) is the last record of a run.
//
// Invariants:
// - The nonce is random per run, so text that merely looks like a record (a job printing an old console log)
//   is job output, never a record. It is not a secret: the guest is root and can read its command line, so
//   results and exit status are the guest's own claims; containment and teardown do not depend on them.
// - A result file is returned only if its payload is valid base64 whose length and sha256 match its FILE
//   record, and its name is a safe relative path; anything else becomes a diagnostic.
// - Memory is bounded: console text and result bytes beyond their limits are dropped and reported.

import { createHash, randomBytes } from 'node:crypto';
import { errorDiag, warningDiag, type Diagnostic } from '../../diagnostics/index.js';
import { cpioPathProblem, writeCpio, type CpioEntry } from './cpio.js';

/** Kernel command-line keys the guest /init reads. */
export const CmdlineKey = {
  nonce: 'agentvm.nonce',
  job: 'agentvm.job',
  net: 'agentvm.net',
  /** The job's root is the read-only disk /dev/vda (scripts/build-test-image.sh /init mounts it and chroots). */
  disk: 'agentvm.disk',
  probe: 'agentvm.probe',
} as const;

export type RecordTag = 'CONFINED' | 'READY' | 'ERROR' | 'FILE' | 'FILE-END' | 'EXIT' | 'PROBE-OK';

export function newNonce(): string {
  return randomBytes(16).toString('hex');
}

/** POSIX single-quoting: the result is one shell word whose value is exactly `value`. */
export function shellQuote(value: string): string {
  return `'${value.replace(/'/g, `'\\''`)}'`;
}

/**
 * The script the guest runs as `sh /job/run`: `args` become the positional parameters of `command`.
 * Throws on a NUL byte in an argument (no shell word can carry one); callers validate first.
 */
export function jobScript(command: string, args: readonly string[]): string {
  for (const arg of args) if (arg.includes('\0')) throw new Error('job argument contains a NUL byte');
  const set = args.length === 0 ? 'set --' : `set -- ${args.map(shellQuote).join(' ')}`;
  return `${set}\n${command}\n`;
}

/**
 * The job overlay: /job/run and the input files under /job/in, as a newc archive to append to the initramfs.
 * Inputs are mode 0444: the job reads them; the host's own files are never what the guest sees or changes.
 */
export function jobOverlay(command: string, args: readonly string[], files: Readonly<Record<string, Buffer>>): Buffer {
  const entries: CpioEntry[] = [{ path: 'job/run', data: Buffer.from(jobScript(command, args)), mode: 0o755 }];
  for (const [name, data] of Object.entries(files)) entries.push({ path: `job/in/${name}`, data, mode: 0o444 });
  return writeCpio(entries);
}

/**
 * A manifest command (an argv, `[program, arg…]`) as a job script: the program replaces the script's shell and
 * gets the fixed arguments first, then the run's own arguments (`agentvm job run --arg …`). In a confined guest the
 * init sets AGENTVM_LAUNCH (its launcher: drop to the job's uid, then exec the argv); unset, the program is exec'd
 * directly.
 */
export function argvCommand(argv: readonly string[]): string {
  if (argv.length === 0) throw new Error('a job command needs at least a program');
  return `exec \${AGENTVM_LAUNCH:+"$AGENTVM_LAUNCH"} ${argv.map(shellQuote).join(' ')} "$@"`;
}

/** The guest side of a job's network: its address on the tap and the gateway (the job's namespace). */
export interface GuestNetwork {
  /** Dotted IPv4 address of the guest's eth0. */
  address: string;
  prefixLength: number;
  /** The namespace side of the tap: the default route, and where host-loopback services appear. */
  gateway: string;
  /** The egress proxy's port on the gateway (decisions/0016): exported as HTTP(S)_PROXY / ALL_PROXY. */
  proxyPort?: number;
}

const IPV4 = /^(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)$/;

/**
 * Shell lines run before the job: `lo` up always; with a network, eth0 configured and the default route via the
 * gateway, which is also exported as AGENTVM_GATEWAY. Configuration only: what the guest may reach is decided
 * by the namespace's firewall, never by the guest (which is root and can change all of this).
 */
export function networkPrelude(net: GuestNetwork | undefined): string {
  const lines = ['ip link set lo up 2>/dev/null'];
  if (net === undefined) return `${lines.join('\n')}\n`;
  if (!IPV4.test(net.address) || !IPV4.test(net.gateway))
    throw new Error('guest network addresses must be dotted IPv4');
  if (!Number.isInteger(net.prefixLength) || net.prefixLength < 1 || net.prefixLength > 30)
    throw new Error('guest prefix length must be 1-30');
  lines.push(
    // virtio_net was loaded by /init (agentvm.net=1); its probe can lag the insmod by a moment.
    'n=0; while [ ! -e /sys/class/net/eth0 ] && [ $n -lt 50 ]; do sleep 0.1; n=$((n+1)); done',
    'ip link set eth0 up',
    `ip addr add ${net.address}/${net.prefixLength} dev eth0`,
    `ip route add default via ${net.gateway}`,
    `export AGENTVM_GATEWAY=${net.gateway}`,
  );
  if (net.proxyPort !== undefined) {
    if (!Number.isInteger(net.proxyPort) || net.proxyPort < 1 || net.proxyPort > 65535)
      throw new Error('guest proxy port must be 1-65535');
    const proxy = `http://${net.gateway}:${net.proxyPort}`;
    for (const name of ['HTTP_PROXY', 'HTTPS_PROXY', 'ALL_PROXY', 'http_proxy', 'https_proxy', 'all_proxy'])
      lines.push(`export ${name}=${proxy}`);
    lines.push('export NO_PROXY=localhost,127.0.0.1 no_proxy=localhost,127.0.0.1');
  }
  return `${lines.join('\n')}\n`;
}

/** Why an input file name cannot be used, or undefined. Names are relative paths under /job/in. */
export function inputNameProblem(name: string): string | undefined {
  return cpioPathProblem(name);
}

export interface ConsoleParserOptions {
  /** Called with each console line that is not part of the protocol (boot messages, job output). */
  onLine?: (line: string) => void;
  /** Called when a record has been handled (callers take timings, e.g. boot time at READY). */
  onRecord?: (tag: RecordTag) => void;
  /** Console text kept in `ConsoleReport.console` (default 1 MiB); the rest is dropped, not streamed less. */
  maxConsoleBytes?: number;
  /** Total decoded result bytes kept (default 64 MiB). */
  maxResultBytes?: number;
}

export interface ConsoleReport {
  /** The job's exit status as the guest reported it; null when no EXIT record arrived (timeout, crash). */
  exitCode: number | null;
  /** READY was seen: the guest booted and started the job. */
  ready: boolean;
  /** PROBE-OK was seen (accelerator probe). */
  probeOk: boolean;
  /** Console text without protocol records and payloads, up to the limit. */
  console: string;
  consoleTruncated: boolean;
  /** Verified result files by relative name. Null-prototype object: names come from the guest. */
  resultFiles: Record<string, Buffer>;
  diagnostics: Diagnostic[];
}

interface OpenFile {
  name: string | undefined;
  size: number;
  sha256: string;
  parts: Buffer[];
  decoded: number;
  corrupt: string | undefined;
}

const BASE64_LINE = /^[A-Za-z0-9+/]*={0,2}$/;
const SHA256_HEX = /^[0-9a-f]{64}$/;
const MAX_LINE_BYTES = 1024 * 1024;

/** Incremental parser of the serial console stream; feed chunks with `push`, then call `end`. */
export class ConsoleParser {
  private readonly nonce: string;
  private readonly record: RegExp;
  private readonly options: ConsoleParserOptions;
  private readonly maxConsoleBytes: number;
  private readonly maxResultBytes: number;
  private pending = '';
  private consoleParts: string[] = [];
  private consoleBytes = 0;
  private consoleTruncated = false;
  private resultBytes = 0;
  private open: OpenFile | undefined;
  private exitCode: number | null = null;
  private exited = false;
  private ready = false;
  private probeOk = false;
  private readonly files: Record<string, Buffer> = Object.create(null) as Record<string, Buffer>;
  private readonly diagnostics: Diagnostic[] = [];

  constructor(nonce: string, options: ConsoleParserOptions = {}) {
    if (!/^[0-9a-f]{8,64}$/.test(nonce)) throw new Error('nonce must be 8 to 64 lowercase hex digits');
    this.nonce = nonce;
    this.record = new RegExp(`AGENTVM-([A-Z][A-Z-]*) ${nonce}(?: (.*))?$`);
    this.options = options;
    this.maxConsoleBytes = options.maxConsoleBytes ?? 1024 * 1024;
    this.maxResultBytes = options.maxResultBytes ?? 64 * 1024 * 1024;
  }

  push(chunk: Buffer | string): void {
    // latin1 keeps every byte as one char, so a multi-byte character split across chunks is never mangled
    // here; lines are decoded as UTF-8 once complete.
    this.pending += typeof chunk === 'string' ? Buffer.from(chunk).toString('latin1') : chunk.toString('latin1');
    let newline = this.pending.indexOf('\n');
    while (newline !== -1) {
      const raw = this.pending.slice(0, newline);
      this.pending = this.pending.slice(newline + 1);
      this.line(Buffer.from(raw.endsWith('\r') ? raw.slice(0, -1) : raw, 'latin1').toString('utf8'));
      newline = this.pending.indexOf('\n');
    }
    // A guest that never ends a line must not grow memory without bound: flush it as text.
    if (this.pending.length > MAX_LINE_BYTES) {
      const long = this.pending;
      this.pending = '';
      this.line(Buffer.from(long, 'latin1').toString('utf8'));
    }
  }

  end(): ConsoleReport {
    if (this.pending !== '') {
      const rest = this.pending;
      this.pending = '';
      this.line(Buffer.from(rest.endsWith('\r') ? rest.slice(0, -1) : rest, 'latin1').toString('utf8'));
    }
    if (this.open !== undefined) {
      this.diagnostics.push(
        errorDiag(
          'microvm.result-incomplete',
          `Result file ${JSON.stringify(this.open.name ?? '?')} was cut off before its end marker.`,
          {
            detail: 'The VM stopped (timeout, crash or kill) while sending results; the file is dropped.',
          },
        ),
      );
      this.open = undefined;
    }
    return {
      exitCode: this.exitCode,
      ready: this.ready,
      probeOk: this.probeOk,
      console: this.consoleParts.join(''),
      consoleTruncated: this.consoleTruncated,
      resultFiles: this.files,
      diagnostics: [...this.diagnostics],
    };
  }

  private line(line: string): void {
    const match = this.exited ? null : this.record.exec(line);
    if (match === null) {
      if (this.open !== undefined) this.payload(line);
      else this.text(line);
      return;
    }
    if (match.index > 0) this.text(line.slice(0, match.index));
    const tag = match[1] ?? '';
    const fields = (match[2] ?? '').split(' ').filter((f) => f !== '');
    this.handle(tag, fields, match[2] ?? '');
  }

  private handle(tag: string, fields: string[], rest: string): void {
    if (this.open !== undefined && tag !== 'FILE-END') {
      this.open.corrupt ??= `a ${tag} record arrived inside the payload`;
      this.finishFile();
    }
    switch (tag) {
      case 'CONFINED':
        break;
      case 'READY':
        this.ready = true;
        break;
      case 'PROBE-OK':
        this.probeOk = true;
        break;
      case 'ERROR':
        this.diagnostics.push(warningDiag('microvm.guest-error', `The guest init reported: ${rest}`));
        break;
      case 'FILE':
        this.openFile(fields);
        break;
      case 'FILE-END':
        if (this.open === undefined) this.violation('FILE-END without FILE');
        else this.finishFile();
        break;
      case 'EXIT': {
        const code = Number(fields[0]);
        if (fields.length !== 1 || !Number.isInteger(code) || code < 0 || code > 255)
          this.violation(`EXIT with ${JSON.stringify(rest)}`);
        else this.exitCode = code;
        // Anything after EXIT (the kernel's power-down line) is console text, never a record.
        this.exited = true;
        break;
      }
      default:
        this.violation(`unknown record ${tag}`);
    }
    this.options.onRecord?.(tag as RecordTag);
  }

  private openFile(fields: string[]): void {
    const [nameB64, sizeText, sha256] = fields;
    const size = Number(sizeText);
    const name =
      nameB64 !== undefined && BASE64_LINE.test(nameB64) ? Buffer.from(nameB64, 'base64').toString('utf8') : undefined;
    const file: OpenFile = { name, size, sha256: sha256 ?? '', parts: [], decoded: 0, corrupt: undefined };
    if (
      fields.length !== 3 ||
      name === undefined ||
      !Number.isSafeInteger(size) ||
      size < 0 ||
      !SHA256_HEX.test(file.sha256)
    ) {
      file.corrupt = `malformed FILE record ${JSON.stringify(fields.join(' '))}`;
    } else {
      const problem = cpioPathProblem(name);
      if (problem !== undefined) file.corrupt = `its name ${problem}`;
      else if (this.resultBytes + size > this.maxResultBytes)
        file.corrupt = `results exceed the ${this.maxResultBytes}-byte limit`;
    }
    this.open = file;
  }

  private payload(line: string): void {
    const file = this.open;
    if (file === undefined) return;
    if (!BASE64_LINE.test(line)) {
      // A line that is not base64 inside a payload is an interleaved console message (e.g. a kernel alert).
      file.corrupt ??= 'a non-base64 line interrupted the payload';
      this.text(line);
      return;
    }
    if (file.corrupt !== undefined) return;
    const bytes = Buffer.from(line, 'base64');
    file.decoded += bytes.length;
    if (file.decoded > file.size) {
      file.corrupt = 'the payload is longer than the announced size';
      file.parts = [];
      return;
    }
    file.parts.push(bytes);
  }

  private finishFile(): void {
    const file = this.open;
    this.open = undefined;
    if (file === undefined) return;
    const label = JSON.stringify(file.name ?? '?');
    if (file.corrupt === undefined) {
      const data = Buffer.concat(file.parts);
      if (data.length !== file.size) file.corrupt = `${data.length} bytes arrived, ${file.size} announced`;
      else if (createHash('sha256').update(data).digest('hex') !== file.sha256)
        file.corrupt = 'its sha256 does not match';
      else if (file.name !== undefined && Object.hasOwn(this.files, file.name))
        file.corrupt = 'the name was sent twice';
      else if (file.name !== undefined) {
        this.files[file.name] = data;
        this.resultBytes += data.length;
        return;
      }
    }
    this.diagnostics.push(
      errorDiag('microvm.result-rejected', `Result file ${label} was rejected: ${file.corrupt ?? 'unknown reason'}.`, {
        detail: 'The file is not returned. If the job wrote it, check the console for interleaved output or a crash.',
      }),
    );
  }

  private violation(what: string): void {
    this.diagnostics.push(
      errorDiag('microvm.protocol-violation', `The guest sent ${what}.`, {
        detail: `The guest image and the host disagree on the job protocol (nonce ${this.nonce}); rebuild the image with scripts/build-test-image.sh.`,
      }),
    );
  }

  private text(line: string): void {
    this.options.onLine?.(line);
    if (this.consoleTruncated) return;
    const bytes = Buffer.byteLength(line) + 1;
    if (this.consoleBytes + bytes > this.maxConsoleBytes) {
      this.consoleTruncated = true;
      return;
    }
    this.consoleBytes += bytes;
    this.consoleParts.push(`${line}\n`);
  }
}
