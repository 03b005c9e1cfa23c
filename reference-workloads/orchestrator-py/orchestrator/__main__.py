# Archetype A reference workload: an HTTP orchestrator (stdlib only) with one skill, served on a unix socket
# or a loopback port. It knows nothing about agentvm; it only honours the environment a systemd unit gives it.
import json
import os
import re
import signal
import socketserver
import stat
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

MAX_BODY = 1 << 20
# A credential name becomes a file name under $CREDENTIALS_DIRECTORY, so it may never contain a separator.
CREDENTIAL_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")
SENTENCE_END = re.compile(r"[.!?](?=\s|$)")


def log(line):
    sys.stderr.write(f"orchestrator: {line}\n")
    sys.stderr.flush()


def release_name():
    # The release directory is the parent of the package; a RELEASE file there names the commit it holds.
    try:
        pinned = (Path(__file__).resolve().parent.parent / "RELEASE").read_text().strip()
    except OSError:
        pinned = ""
    return pinned or os.environ.get("AGENT_RELEASE") or "dev"


def load_credentials():
    """Names of the required credentials that are readable. Values are read but never leave this process."""
    wanted = [n.strip() for n in os.environ.get("AGENT_REQUIRED_CREDENTIALS", "").split(",") if n.strip()]
    directory = os.environ.get("CREDENTIALS_DIRECTORY")
    present = []
    for name in wanted:
        if directory and CREDENTIAL_NAME.match(name):
            try:
                (Path(directory) / name).read_bytes()
                present.append(name)
            except OSError:
                pass
    return {"required": wanted, "present": present, "missing": [n for n in wanted if n not in present]}


def summarize(text):
    match = SENTENCE_END.search(text)
    first = text[: match.end()] if match else text
    return {"summary": " ".join(first.split()), "words": len(text.split())}


class Handler(BaseHTTPRequestHandler):
    server_version = "orchestrator/1"
    timeout = 30  # a stalled client must not hold a thread forever

    def log_message(self, fmt, *args):
        log(fmt % args)

    def reply(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path != "/healthz":
            return self.reply(404, {"error": "not found", "path": self.path})
        state = self.server.state
        creds = state["credentials"]
        failing = os.environ.get("AGENT_FAIL_HEALTH") == "1" or bool(creds["missing"])
        self.reply(503 if failing else 200, {
            "status": "failing" if failing else "ok",
            "profile": os.environ.get("AGENT_PROFILE", ""),
            "release": state["release"],
            "credentials": {"present": creds["present"], "missing": creds["missing"]},
        })

    def do_POST(self):
        if self.path != "/skills/summarize":
            return self.reply(404, {"error": "not found", "path": self.path})
        try:
            length = int(self.headers.get("Content-Length") or "0")
        except ValueError:
            return self.reply(400, {"error": "bad Content-Length"})
        if length < 0 or length > MAX_BODY:
            # Drain what the client is sending (up to a bound) so it reads the 413 instead of a reset connection.
            remaining = min(length, 16 * MAX_BODY)
            while remaining > 0 and (chunk := self.rfile.read(min(remaining, 65536))):
                remaining -= len(chunk)
            return self.reply(413, {"error": f"body must be at most {MAX_BODY} bytes"})
        try:
            request = json.loads(self.rfile.read(length).decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            return self.reply(400, {"error": "body is not valid JSON"})
        if not isinstance(request, dict) or not isinstance(request.get("text"), str):
            return self.reply(400, {"error": 'expected {"text": string}'})
        self.reply(200, summarize(request["text"]))


class UnixHTTPServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


def make_server():
    sock_path = os.environ.get("AGENT_LISTEN_SOCKET")
    port = os.environ.get("AGENT_LISTEN_PORT")
    if bool(sock_path) == bool(port):
        raise SystemExit("orchestrator: set exactly one of AGENT_LISTEN_SOCKET or AGENT_LISTEN_PORT")
    if sock_path:
        if os.path.exists(sock_path) and stat.S_ISSOCK(os.stat(sock_path).st_mode):
            os.unlink(sock_path)  # a stale socket from a previous run would make bind fail; never other files
        server = UnixHTTPServer(sock_path, Handler)
        return server, f"unix:{sock_path}"
    if not port.isdigit() or int(port) > 65535:
        raise SystemExit(f"orchestrator: AGENT_LISTEN_PORT must be a port number, got {port!r}")
    server = ThreadingHTTPServer(("127.0.0.1", int(port)), Handler)
    server.daemon_threads = True
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def main():
    try:
        server, address = make_server()
    except OSError as err:
        raise SystemExit(f"orchestrator: cannot listen: {err}")
    server.state = {"release": release_name(), "credentials": load_credentials()}
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    log(f"listening on {address} profile={os.environ.get('AGENT_PROFILE', '')} release={server.state['release']}")
    while not stop.wait(3600):
        pass
    server.shutdown()
    server.server_close()
    if isinstance(server.server_address, str):
        try:
            os.unlink(server.server_address)
        except OSError:
            pass
    log("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
