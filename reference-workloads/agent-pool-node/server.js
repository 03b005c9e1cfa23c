#!/usr/bin/env node
// Archetype B reference workload: an HTTP front for a pool of worker threads that run tasks, served on a unix
// socket or a loopback port. It knows nothing about agentvm; it only honours the environment a unit gives it.
import { createServer } from 'node:http';
import { Worker, isMainThread, parentPort } from 'node:worker_threads';
import { existsSync, lstatSync, readFileSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';

const MAX_BODY = 1 << 20;
// A credential name becomes a file name under $CREDENTIALS_DIRECTORY, so it may never contain a separator.
const CREDENTIAL_NAME = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$/;
// Task kinds run inside a worker; the main thread has already checked that `input.text` is a string.
const TASKS = { wordcount: (input) => input.text.split(/\s+/).filter(Boolean).length };

const log = (line) => process.stderr.write(`agent-pool: ${line}\n`);
const fail = (message) => { log(message); process.exit(1); };

if (isMainThread) main();
else parentPort.on('message', ({ kind, input }) => parentPort.postMessage(TASKS[kind](input)));

// One task per worker at a time; the rest wait in `queue`. A worker that dies fails only its own task and is
// replaced in the same slot, so a bad task never shrinks the pool.
function createPool(size) {
  const slots = [], queue = [];
  let closed = false;
  const dispatch = () => {
    for (const slot of slots) {
      if (slot.task || queue.length === 0) continue;
      slot.task = queue.shift();
      slot.worker.postMessage({ kind: slot.task.kind, input: slot.task.input });
    }
  };
  const start = (slot) => {
    slot.worker = new Worker(new URL(import.meta.url));
    slot.worker.on('message', (result) => { slot.task?.resolve({ result, worker: slot.id }); slot.task = null; dispatch(); });
    slot.worker.on('error', (err) => { slot.task?.reject(err); slot.task = null; });
    slot.worker.on('exit', () => {
      slot.task?.reject(new Error('worker exited'));
      slot.task = null;
      if (!closed) { start(slot); dispatch(); }
    });
  };
  for (let id = 1; id <= size; id++) { const slot = { id, worker: null, task: null }; slots.push(slot); start(slot); }
  return {
    size,
    run: (kind, input) => new Promise((resolve, reject) => { queue.push({ kind, input, resolve, reject }); dispatch(); }),
    close: async () => { closed = true; await Promise.all(slots.map((slot) => slot.worker.terminate())); },
  };
}

function loadCredentials() {
  const required = (process.env.AGENT_REQUIRED_CREDENTIALS ?? '').split(',').map((n) => n.trim()).filter(Boolean);
  const dir = process.env.CREDENTIALS_DIRECTORY;
  const present = required.filter((name) => {
    if (!dir || !CREDENTIAL_NAME.test(name)) return false;
    try { readFileSync(join(dir, name)); return true; } catch { return false; } // values never leave this process
  });
  return { present, missing: required.filter((name) => !present.includes(name)) };
}

async function readJson(req) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) { size += chunk.length; if (size <= MAX_BODY) chunks.push(chunk); }
  if (size > MAX_BODY) return [413, { error: `body must be at most ${MAX_BODY} bytes` }];
  try { return [0, JSON.parse(Buffer.concat(chunks).toString('utf8'))]; } catch { return [400, { error: 'body is not valid JSON' }]; }
}

function listenTarget() {
  const { AGENT_LISTEN_SOCKET: path, AGENT_LISTEN_PORT: port } = process.env;
  if (Boolean(path) === Boolean(port)) fail('set exactly one of AGENT_LISTEN_SOCKET or AGENT_LISTEN_PORT');
  if (path) {
    // A stale socket from a previous run would make listen fail; any other file at that path is left alone.
    if (existsSync(path) && lstatSync(path).isSocket()) unlinkSync(path);
    return { path };
  }
  if (!/^\d+$/.test(port) || Number(port) > 65535) fail(`AGENT_LISTEN_PORT must be a port number, got ${JSON.stringify(port)}`);
  return { port: Number(port), host: '127.0.0.1' };
}

function main() {
  const { version } = JSON.parse(readFileSync(new URL('./package.json', import.meta.url), 'utf8'));
  const profile = process.env.AGENT_PROFILE ?? '';
  const size = Number(process.env.AGENT_POOL_SIZE ?? '2');
  if (!Number.isInteger(size) || size < 1 || size > 64) fail('AGENT_POOL_SIZE must be an integer from 1 to 64');
  const target = listenTarget();
  const credentials = loadCredentials();
  const pool = createPool(size);

  const route = async (req) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method === 'GET' && path === '/healthz') {
      const failing = process.env.AGENT_FAIL_HEALTH === '1' || credentials.missing.length > 0;
      return [failing ? 503 : 200, { status: failing ? 'failing' : 'ok', profile, version, workers: pool.size, credentials }];
    }
    if (req.method !== 'POST' || path !== '/tasks') return [404, { error: 'not found', path }];
    const [status, task] = await readJson(req);
    if (status) return [status, task];
    if (typeof task !== 'object' || task === null || !Object.hasOwn(TASKS, task.kind) || typeof task.text !== 'string') {
      return [400, { error: `expected {"kind": one of ${Object.keys(TASKS).join(', ')}, "text": string}` }];
    }
    return [200, await pool.run(task.kind, { text: task.text })];
  };

  const server = createServer((req, res) => {
    res.on('finish', () => log(`${req.method} ${req.url} ${res.statusCode}`));
    route(req)
      .catch((err) => { log(`error: ${err.message}`); return [500, { error: 'internal error' }]; })
      .then(([status, body]) => {
        const data = JSON.stringify(body);
        res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(data) });
        res.end(data);
      });
  });
  server.on('error', (err) => fail(`cannot listen: ${err.message}`));
  server.listen(target, () => {
    const address = target.path ? `unix:${target.path}` : `http://127.0.0.1:${server.address().port}`;
    log(`listening on ${address} profile=${profile} version=${version} workers=${size}`);
  });

  let stopping = false;
  const stop = () => {
    if (stopping) return;
    stopping = true;
    setTimeout(() => server.closeAllConnections(), 5000).unref(); // in-flight requests get 5 s to finish
    server.close(async () => { await pool.close(); log('stopped'); process.exit(0); });
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}
