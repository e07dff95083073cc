#!/usr/bin/env python3
"""A webhook sink for the http publisher's TAP tests (loopback only).

    http_sink.py --log FILE --port-file FILE [--port N] [--config FILE]
                 [--blackhole-port-file FILE]

Listens on 127.0.0.1 (port N, default: any free port, written to
--port-file once listening) and appends one JSON object per line to --log:

  {"event": "open",    "conn": 7, "t": ..., "open_now": 3}
  {"event": "request", "conn": 7, "t": ..., "method": "POST", "path": "/x",
   "headers": [[name, value], ...], "body": "...", "body_len": 12,
   "body_sha256": "...", "status": 200}
  {"event": "done",    "conn": 7, "t": ..., "path": "/x"}  (response sent)
  {"event": "aborted", "conn": 7, "t": ..., "path": "/hang"}  (client left)
  {"event": "close",   "conn": 7, "t": ..., "open_now": 2}

t is time.time().  What a path answers comes from the --config JSON file,
re-read whenever it changes: {"/path": RESPONSE or [RESPONSE, ...]}.  A
list is used in order, one per request to that path, its last entry
repeating.  RESPONSE: {"status": 200, "body": "ok", "delay_ms": 0,
"retry_after": "2", "location": "/elsewhere", "headers": {...},
"raw": "bytes"}; with "raw" those bytes are sent instead of an HTTP response
and the connection is closed.  A 204 or 304 answer has no body, as HTTP
says (a body there would corrupt a reused connection).  Paths not
in the config answer 200 "ok".  Keep-alive (HTTP/1.1) is supported, so
connection reuse shows up as several requests on one conn.

--blackhole-port-file also opens a port whose accept queue is kept full and
never served, so connecting to it hangs (to test connect timeouts).
"""
import argparse
import hashlib
import json
import os
import select
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

lock = threading.Lock()
state = {"conns": 0, "open_now": 0, "config_mtime": None, "config": {}, "seq": {}}
args = None
log_file = None


def log(event):
    line = json.dumps(event, ensure_ascii=True) + "\n"
    with lock:
        log_file.write(line)
        log_file.flush()


def response_for(path):
    """The RESPONSE dict for the next request to path."""
    with lock:
        if args.config and os.path.exists(args.config):
            mtime = os.stat(args.config).st_mtime_ns
            if mtime != state["config_mtime"]:
                with open(args.config) as f:
                    state["config"] = json.load(f)
                state["config_mtime"] = mtime
                state["seq"] = {}
        spec = state["config"].get(path.split("?")[0])
        if spec is None:
            return {}
        if isinstance(spec, list):
            i = state["seq"].get(path, 0)
            state["seq"][path] = i + 1
            return spec[min(i, len(spec) - 1)]
        return spec


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self):
        super().setup()
        with lock:
            state["conns"] += 1
            state["open_now"] += 1
            self.conn_id = state["conns"]
            now = state["open_now"]
        log({"event": "open", "conn": self.conn_id, "t": time.time(), "open_now": now})

    def finish(self):
        try:
            super().finish()
        finally:
            with lock:
                state["open_now"] -= 1
                now = state["open_now"]
            log({"event": "close", "conn": self.conn_id, "t": time.time(), "open_now": now})

    def log_message(self, fmt, *a):
        pass

    def client_left(self):
        """True when the client closed its end (readable with no data)."""
        try:
            r, _, _ = select.select([self.connection], [], [], 0)
            if r:
                return self.connection.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True
        return False

    def handle_any(self):
        t = time.time()
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        spec = response_for(self.path)
        status = int(spec.get("status", 200))
        log({"event": "request", "conn": self.conn_id, "t": t, "method": self.command,
             "path": self.path, "headers": [[k, v] for k, v in self.headers.items()],
             "body": raw.decode("utf-8", "surrogateescape"), "body_len": len(raw),
             "body_sha256": hashlib.sha256(raw).hexdigest(), "status": status})
        delay = spec.get("delay_ms", 0) / 1000.0
        end = time.time() + delay
        while time.time() < end:
            if self.client_left():
                log({"event": "aborted", "conn": self.conn_id, "t": time.time(), "path": self.path})
                self.close_connection = True
                return
            time.sleep(min(0.02, max(0, end - time.time())))
        if "raw" in spec:
            self.wfile.write(spec["raw"].encode())
            self.wfile.flush()
            self.close_connection = True
            log({"event": "done", "conn": self.conn_id, "t": time.time(), "path": self.path})
            return
        out = b"" if status in (204, 304) else spec.get("body", "ok").encode()
        self.send_response(status)
        if status not in (204, 304):
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(out)))
        if "retry_after" in spec:
            self.send_header("Retry-After", str(spec["retry_after"]))
        if "location" in spec:
            self.send_header("Location", spec["location"])
        for k, v in spec.get("headers", {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(out)
        self.wfile.flush()
        log({"event": "done", "conn": self.conn_id, "t": time.time(), "path": self.path})

    do_POST = do_PUT = do_PATCH = do_GET = do_DELETE = handle_any


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024


def main():
    global args, log_file
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--port-file", required=True)
    p.add_argument("--log", required=True)
    p.add_argument("--config")
    p.add_argument("--blackhole-port-file")
    args = p.parse_args()
    log_file = open(args.log, "a")
    server = Server(("127.0.0.1", args.port), Handler)
    tmp = args.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(server.server_address[1]))
    if args.blackhole_port_file:
        hole = socket.socket()
        hole.bind(("127.0.0.1", 0))
        hole.listen(0)
        filler = []
        for _ in range(3):
            c = socket.socket()
            c.setblocking(False)
            try:
                c.connect(hole.getsockname())
            except BlockingIOError:
                pass
            filler.append(c)
        time.sleep(0.2)
        with open(args.blackhole_port_file + ".tmp", "w") as f:
            f.write(str(hole.getsockname()[1]))
        os.rename(args.blackhole_port_file + ".tmp", args.blackhole_port_file)
    os.rename(tmp, args.port_file)
    server.serve_forever()


if __name__ == "__main__":
    main()
