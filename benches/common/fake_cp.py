"""A stand-in control plane for edge-sync benchmarks: serves a snapshot of
as many entries as asked (a million takedowns take no database), answers
long-polls with batches queued by the script, and records acks with the
time they arrived. Speaks the wire format of shared/src/sync.rs.

    cp = FakeControlPlane(entries=1_000_000)   # takedowns of ids 0..n
    cp.start(); ...; cp.queue_batch(1000); cp.wait_ack(seq); cp.stop()
"""

from __future__ import annotations

import http.server
import json
import threading
import time

from .procs import free_port

TOKEN = "bench-fake-control-plane-token-" + "x" * 16
ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def image_id(n: int) -> str:
    """A valid 8-character base62 image id for `n`."""
    out = []
    for _ in range(8):
        out.append(ALPHABET[n % 62])
        n //= 62
    return "".join(reversed(out))


class FakeControlPlane:
    def __init__(self, entries: int, action: str = "takedown"):
        self.port = free_port()
        self.seq = entries
        self.snapshot_ready = threading.Event()
        self.lock = threading.Lock()
        self.batches: list[tuple[int, bytes]] = []  # (last seq, changes JSON)
        self.acks: dict[int, float] = {}
        self.next_id = entries
        parts = [
            f'{{"seq":{i + 1},"id":"{image_id(i)}","action":"{action}"}}' for i in range(entries)
        ]
        self.snapshot = f'{{"seq":{entries},"entries":[{",".join(parts)}]}}'.encode()
        self.server = None

    def start(self, serve_snapshot: bool = True):
        if serve_snapshot:
            self.snapshot_ready.set()
        cp = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in separate writes: without this, Nagle
            # and delayed ACKs add ~40 ms to every answer.
            disable_nagle_algorithm = True

            def log_message(self, *a):
                pass

            def reply(self, status, body=b"", ctype="application/json"):
                try:
                    self.send_response(status)
                    self.send_header("content-type", ctype)
                    self.send_header("content-length", str(len(body)))
                    self.end_headers()
                    if body:
                        self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the edge went away (stopped mid long-poll)

            def authorised(self):
                if self.headers.get("authorization") != f"Bearer {TOKEN}":
                    self.reply(401)
                    return False
                return True

            def do_GET(self):
                if not self.authorised():
                    return
                if self.path.startswith("/v1/edge/snapshot"):
                    if not cp.snapshot_ready.is_set():
                        return self.reply(503)
                    return self.reply(200, cp.snapshot)
                if self.path.startswith("/v1/edge/changes"):
                    q = dict(p.split("=", 1) for p in self.path.split("?", 1)[1].split("&"))
                    after, wait = int(q["after"]), int(q.get("wait_ms", "1000"))
                    deadline = time.time() + wait / 1000
                    while True:
                        with cp.lock:
                            pending = [b for b in cp.batches if b[0] > after]
                            head = cp.seq
                        if pending:
                            last, changes = pending[0]
                            body = b'{"changes":' + changes + b',"head":' + str(head).encode() + b',"more":' \
                                + (b"true" if last < head else b"false") + b"}"
                            return self.reply(200, body)
                        if time.time() >= deadline:
                            return self.reply(200, json.dumps({"changes": [], "head": head, "more": False}).encode())
                        time.sleep(0.001)
                self.reply(404)

            def do_POST(self):
                if not self.authorised():
                    return
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                if self.path.startswith("/v1/edge/ack"):
                    with cp.lock:
                        cp.acks[json.loads(body)["seq"]] = time.time()
                    return self.reply(204)
                self.reply(404)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def queue_batch(self, n: int, action: str = "takedown") -> tuple[int, float]:
        """Queue `n` changes for new ids; returns (their last seq, time queued)."""
        with self.lock:
            parts = []
            for _ in range(n):
                self.seq += 1
                parts.append(f'{{"seq":{self.seq},"id":"{image_id(self.next_id)}","action":"{action}"}}')
                self.next_id += 1
            self.batches.append((self.seq, f"[{','.join(parts)}]".encode()))
            return self.seq, time.time()

    def wait_ack(self, seq: int, timeout: float = 120.0) -> float:
        """The time the edge acknowledged `seq` (or later)."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            with self.lock:
                done = [t for s, t in self.acks.items() if s >= seq]
            if done:
                return min(done)
            time.sleep(0.002)
        raise RuntimeError(f"no ack of {seq} within {timeout}s")

    def stop(self):
        if self.server:
            self.server.shutdown()
            self.server.server_close()
