// The pull-mode agent fetches its desired repository by URL (issue 17) from real servers on loopback: git's own daemon
// (git://) and a plain HTTP server holding a bare repository (git's "dumb" HTTP protocol, so a URL may carry a token
// the way https://agent:<token>@host/… does). Covered: the first fetch and later ones follow the branch, a tag and an
// exact commit resolve, a force-pushed branch is followed, an unknown ref and an unreachable server fail with their
// codes — and the token in the URL is in no file of the host's cache and in no error message.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fetchDesired } from '../src/app/agent.js';
import { freePort } from './support/gateway-repo.js';
import { gitdir, type GitDir } from './support/gitdir.js';
import { rejection } from './support/rejection.js';

const TOKEN = 'agentvm-canary-token-7f3a9c';

function filesUnder(dir: string): string[] {
  return readdirSync(dir, { recursive: true, encoding: 'utf8' })
    .map((f) => path.join(dir, f))
    .filter((f) => statSync(f).isFile());
}

describe('agent: fetching the desired repository by URL', () => {
  let base: string;
  let source: GitDir;
  let bare: string;
  let daemon: ChildProcess;
  let web: Server;
  let gitPort = 0;
  let webPort = 0;
  const authSeen: string[] = [];
  const push = (): void => {
    execFileSync('git', ['-C', source.dir, 'push', '--quiet', '--force', '--tags', bare, 'main'], {
      env: { ...process.env, GIT_CONFIG_NOSYSTEM: '1', GIT_CONFIG_GLOBAL: '/dev/null' },
    });
    execFileSync('git', ['-C', bare, 'update-server-info']);
  };

  beforeAll(async () => {
    base = mkdtempSync(path.join(os.tmpdir(), 'agentvm-agent-fetch-'));
    source = await gitdir({
      'hosts/h.yaml': 'apiVersion: agentvm.dev/v1alpha1\nkind: Host\nmetadata:\n  name: h\nspec:\n  workloads: []\n',
    });
    bare = path.join(base, 'srv', 'desired.git');
    execFileSync('git', ['init', '--quiet', '--bare', bare]);
    await source.git('tag', 'v1');
    push();
    gitPort = await freePort();
    daemon = spawn(
      'git',
      [
        'daemon',
        '--reuseaddr',
        '--export-all',
        `--base-path=${path.join(base, 'srv')}`,
        '--listen=127.0.0.1',
        `--port=${gitPort}`,
        path.join(base, 'srv'),
      ],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    // Ready once it accepts a listing.
    for (let i = 0; i < 200; i++) {
      try {
        execFileSync('git', ['ls-remote', `git://127.0.0.1:${gitPort}/desired.git`], { stdio: 'pipe' });
        break;
      } catch {
        await new Promise((r) => setTimeout(r, 50));
      }
    }
    web = createServer((req, res) => {
      // Like a forge: no credentials, no repository (git sends the URL's user and token after this challenge).
      if (!req.headers.authorization)
        return void res.writeHead(401, { 'www-authenticate': 'Basic realm="desired"' }).end();
      authSeen.push(req.headers.authorization);
      const file = path.join(bare, decodeURIComponent((req.url ?? '/').replace(/^\/desired\.git/, '').split('?')[0]!));
      if (!file.startsWith(bare)) return void res.writeHead(403).end();
      try {
        res.writeHead(200).end(readFileSync(file));
      } catch {
        res.writeHead(404).end();
      }
    });
    await new Promise<void>((r) => web.listen(0, '127.0.0.1', () => r()));
    webPort = (web.address() as { port: number }).port;
  }, 60_000);

  afterAll(async () => {
    daemon?.kill();
    web?.close();
    await source?.cleanup();
    rmSync(base, { recursive: true, force: true });
  });

  it('git://: follows the branch across commits and a force-push; a tag and an exact commit resolve', async () => {
    const url = `git://127.0.0.1:${gitPort}/desired.git`;
    const cache = path.join(base, 'cache-git');
    const first = source.commit;
    expect(await fetchDesired(url, 'main', cache)).toEqual({ dir: cache, commit: first });
    const second = await source.commitFiles({ 'README.md': 'two\n' }, 'second');
    push();
    expect((await fetchDesired(url, 'main', cache)).commit).toBe(second);
    expect((await fetchDesired(url, 'v1', cache)).commit).toBe(first);
    expect((await fetchDesired(url, first, cache)).commit).toBe(first);
    // A rewritten branch (not a descendant of what the cache has) is followed, not refused.
    await source.git('reset', '--quiet', '--hard', first);
    const rewritten = await source.commitFiles({ 'README.md': 'rewritten\n' }, 'rewritten');
    push();
    expect((await fetchDesired(url, 'main', cache)).commit).toBe(rewritten);
    expect((await rejection(fetchDesired(url, 'no-such-branch', cache))).code).toBe('agent.unknown-ref');
  });

  it('http:// with a token in the URL: fetched, and the token is in no cache file and no error', async () => {
    const url = `http://agent:${TOKEN}@127.0.0.1:${webPort}/desired.git`;
    const cache = path.join(base, 'cache-http');
    const head = (await source.git('rev-parse', 'HEAD')).trim();
    expect((await fetchDesired(url, 'main', cache)).commit).toBe(head);
    expect(
      authSeen.some((a) =>
        Buffer.from(a.replace(/^Basic /, ''), 'base64')
          .toString()
          .includes(TOKEN),
      ),
    ).toBe(true);
    for (const file of filesUnder(cache)) expect(readFileSync(file).includes(TOKEN), file).toBe(false);
    // The server goes away: a clear failure, without the token.
    const dead = `http://agent:${TOKEN}@127.0.0.1:${await freePort()}/desired.git`;
    const err = await rejection(fetchDesired(dead, 'main', path.join(base, 'cache-dead')));
    expect(err.code).toBe('agent.fetch-failed');
    expect(err.message).toContain('127.0.0.1');
    expect(JSON.stringify({ message: err.message, detail: err.detail })).not.toContain(TOKEN);
  });
});
