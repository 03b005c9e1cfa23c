// GitBatchReader: the one long-lived `git cat-file --batch` process through which agentvm reads git objects
// in bulk (desired-state files, release files). Spawning git per object costs milliseconds each; one batch
// process reads thousands of objects in tens of milliseconds.
// Invariants: requests are answered strictly in the order they were written, so many may be in flight at once;
// bodies are cut by the byte count in each response header, never by delimiters, so any bytes are safe;
// replace refs are ignored (GIT_NO_REPLACE_OBJECTS) so an object id always means exactly those bytes.

import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { AgentvmError } from '../diagnostics/index.js';

export type GitObjectType = 'blob' | 'tree' | 'commit' | 'tag';

export interface GitObject {
  oid: string;
  type: GitObjectType;
  size: number;
  content: Buffer;
}

/**
 * The environment every git child of agentvm runs with: the caller's, minus the variables that would make git
 * look at another repository or object store than the one named by `cwd`.
 */
export function gitEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const key of [
    'GIT_DIR',
    'GIT_WORK_TREE',
    'GIT_INDEX_FILE',
    'GIT_OBJECT_DIRECTORY',
    'GIT_ALTERNATE_OBJECT_DIRECTORIES',
    'GIT_COMMON_DIR',
    'GIT_NAMESPACE',
    'GIT_PREFIX',
  ]) {
    delete env[key];
  }
  return { ...env, GIT_NO_REPLACE_OBJECTS: '1', GIT_TERMINAL_PROMPT: '0', GIT_OPTIONAL_LOCKS: '0', ...extra };
}

interface PendingRead {
  spec: string;
  resolve: (object: GitObject | null) => void;
  reject: (error: Error) => void;
}

interface BodyInProgress {
  oid: string;
  type: GitObjectType;
  size: number;
  /** Bytes still expected, including the LF git writes after every body. */
  remaining: number;
  parts: Buffer[];
}

const OBJECT_HEADER = /^([0-9a-f]{40}|[0-9a-f]{64}) (blob|tree|commit|tag) (\d+)$/;

export class GitBatchReader {
  /** Process-wide counters, for tests and benchmarks that prove reads go through one process. */
  static readonly counters = { processesSpawned: 0, objectsRead: 0, bytesRead: 0 };

  readonly repo: string;
  private readonly child: ChildProcessWithoutNullStreams;
  private readonly queue: PendingRead[] = [];
  private outgoing: string[] = [];
  private flushScheduled = false;
  private headerTail: Buffer = Buffer.alloc(0);
  private body: BodyInProgress | null = null;
  private stderr = '';
  /** Set once the process can no longer answer: every later read rejects with it. */
  private failure: Error | null = null;
  private closing = false;
  private readonly exited: Promise<void>;

  constructor(repo: string) {
    this.repo = repo;
    this.child = spawn('git', ['cat-file', '--batch'], { cwd: repo, env: gitEnv(), stdio: ['pipe', 'pipe', 'pipe'] });
    GitBatchReader.counters.processesSpawned++;
    this.child.stdout.on('data', (chunk: Buffer) => this.onData(chunk));
    this.child.stderr.setEncoding('utf8');
    this.child.stderr.on('data', (text: string) => {
      if (this.stderr.length < 4096) this.stderr += text;
    });
    // EPIPE after git died is reported through 'exit'/'error' below; the stream error itself adds nothing.
    this.child.stdin.on('error', () => {});
    this.exited = new Promise((resolve) => {
      this.child.on('error', (error: NodeJS.ErrnoException) => {
        // Node reports a missing working directory as ENOENT of the program, too.
        const cause = error.code === 'ENOENT' ? `git is not on PATH, or ${repo} does not exist` : error.message;
        this.fail(
          new AgentvmError('git.unavailable', `Cannot run git to read ${repo}: ${cause}.`, {
            source: 'toolkit',
            cause: error,
          }),
        );
        resolve();
      });
      this.child.on('close', (code, signal) => {
        const how = signal === null ? `exit code ${code}` : `signal ${signal}`;
        this.fail(
          new AgentvmError('git.batch-exited', `git cat-file --batch in ${repo} stopped unexpectedly (${how}).`, {
            source: 'toolkit',
            detail: this.stderr.trim() || undefined,
          }),
        );
        resolve();
      });
    });
  }

  /**
   * Content of an object named by id or by any revision expression git accepts (`<commit>:<path>`, `HEAD:a.yaml`),
   * or null when git reports it missing.
   */
  async read(spec: string): Promise<Buffer | null> {
    const object = await this.readObject(spec);
    return object === null ? null : object.content;
  }

  /** Like read(), with the object's id, type and size. */
  readObject(spec: string): Promise<GitObject | null> {
    // git reads one request per line; a line break would split a request in two and desynchronise every answer.
    if (/[\n\r\0]/.test(spec) || spec.length === 0) {
      return Promise.reject(
        new AgentvmError('git.bad-object-name', `Object name ${JSON.stringify(spec)} cannot be sent to git cat-file.`, {
          source: 'toolkit',
        }),
      );
    }
    if (this.failure) return Promise.reject(this.failure);
    if (this.closing)
      return Promise.reject(
        new AgentvmError('git.batch-closed', `The git reader for ${this.repo} is closed.`, { source: 'toolkit' }),
      );
    return new Promise((resolve, reject) => {
      this.queue.push({ spec, resolve, reject });
      this.outgoing.push(`${spec}\n`);
      if (!this.flushScheduled) {
        this.flushScheduled = true;
        // Requests made in the same tick go out in one write.
        process.nextTick(() => this.flush());
      }
    });
  }

  /** Finishes outstanding reads, then stops the process. Safe to call more than once. */
  async close(): Promise<void> {
    if (!this.closing) {
      this.closing = true;
      this.flush();
      this.child.stdin.end();
    }
    await this.exited;
  }

  private flush(): void {
    this.flushScheduled = false;
    if (this.outgoing.length === 0 || this.failure) return;
    const text = this.outgoing.join('');
    this.outgoing = [];
    this.child.stdin.write(text);
  }

  private onData(chunk: Buffer): void {
    const data = this.headerTail.length > 0 ? Buffer.concat([this.headerTail, chunk]) : chunk;
    this.headerTail = Buffer.alloc(0);
    let offset = 0;
    while (offset < data.length) {
      if (this.body) {
        const body = this.body;
        const take = Math.min(body.remaining, data.length - offset);
        body.parts.push(data.subarray(offset, offset + take));
        body.remaining -= take;
        offset += take;
        if (body.remaining === 0) {
          this.body = null;
          const whole = Buffer.concat(body.parts);
          const content = whole.subarray(0, body.size);
          GitBatchReader.counters.objectsRead++;
          GitBatchReader.counters.bytesRead += body.size;
          this.answer((pending) => pending.resolve({ oid: body.oid, type: body.type, size: body.size, content }));
        }
        continue;
      }
      const lineEnd = data.indexOf(0x0a, offset);
      if (lineEnd < 0) {
        this.headerTail = Buffer.from(data.subarray(offset));
        return;
      }
      const header = data.toString('utf8', offset, lineEnd);
      offset = lineEnd + 1;
      this.onHeader(header);
    }
  }

  private onHeader(header: string): void {
    const match = OBJECT_HEADER.exec(header);
    if (match) {
      const size = Number(match[3]);
      this.body = { oid: match[1] as string, type: match[2] as GitObjectType, size, remaining: size + 1, parts: [] };
      return;
    }
    if (header.endsWith(' missing')) {
      this.answer((pending) => pending.resolve(null));
      return;
    }
    // `ambiguous` (a short id matching several objects) and anything newer git may say: a one-line answer.
    this.answer((pending) =>
      pending.reject(
        new AgentvmError('git.object-unreadable', `git cannot read ${JSON.stringify(pending.spec)}: ${header}.`, {
          source: 'toolkit',
        }),
      ),
    );
  }

  private answer(settle: (pending: PendingRead) => void): void {
    const pending = this.queue.shift();
    if (pending === undefined) {
      this.fail(
        new AgentvmError('git.batch-desync', `git cat-file in ${this.repo} answered a request that was never made.`, {
          source: 'toolkit',
        }),
      );
      return;
    }
    settle(pending);
  }

  private fail(error: Error): void {
    if (this.failure === null && (this.queue.length > 0 || !this.closing)) this.failure = error;
    for (const pending of this.queue.splice(0)) pending.reject(error);
    if (!this.closing) this.child.kill();
  }
}
