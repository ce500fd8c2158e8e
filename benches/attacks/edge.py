#!/usr/bin/env python3
"""The attacks an attack-and-fault review ran against the edge, run against
a release edge on 127.0.0.1, with what it costs the edge and whether real
requests kept working:

1. slow readers: 40 clients reading an 18.6 MiB image at ~4 KiB/s, then 400
   of them against a small send budget (the excess are refused with 503 +
   Retry-After); RSS before/peak/after; a `Range: bytes=0-0` of the image
   (disk bytes read, CPU per request);
2. slowloris: 300 idle and 50 trickling connections (closed at the
   request-head deadline), then more connections than the cap (refused with
   503 at once);
3. pipelining: 2, 10 and 100 GETs in one write on one connection;
4. a 1,000,000-entry edge-sync state (benches/sync/state_1m.py).

Throughout, a probe fetches a small image every 50 ms and counts successes.

    python3 benches/attacks/edge.py              # builds the release binary first
    python3 benches/attacks/edge.py --no-build --skip-sync

Results: printed, and benches/results/attacks-edge.md. Traffic goes to
127.0.0.1 only, bounded in count and time. Not a test.
"""

from __future__ import annotations

import argparse
import http.client
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # benches/

from common import MIB, RELEASE_BINARY, REPO, log  # noqa: E402
from common.datasets import png, png_of_size, put  # noqa: E402
from common.edge import edge_config  # noqa: E402
from common.procs import cpu_ticks, free_port, start, stop, stop_all_on_exit, wait_http  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def metric(admin: int, name: str) -> float:
    c = http.client.HTTPConnection("127.0.0.1", admin, timeout=5)
    c.request("GET", "/metrics")
    text = c.getresponse().read().decode()
    c.close()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if not line.startswith("#") and line.rsplit(" ", 1)[0] == name)


class Edge:
    def __init__(self, binary: Path, work: Path, name: str, limits: dict, **cfg):
        self.port, self.admin = free_port(), free_port()
        text = edge_config(port=self.port, admin_port=self.admin, store_root=work / "store",
                           disk_path=work / f"{name}-cache", threads=2, **cfg)
        text += "[limits]\n" + "".join(f"{k} = {v}\n" for k, v in limits.items())
        path = work / f"{name}.toml"
        path.write_text(text)
        self.log = work / f"{name}.log"
        self.proc = start([str(binary), "edge", "--config", str(path)], self.log)
        wait_http(self.admin, "/readyz", self.proc, name, self.log, want=200)

    def get(self, path: str, headers: dict | None = None, timeout: float = 30) -> tuple[int, bytes, dict]:
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            c.request("GET", path, headers=headers or {})
            r = c.getresponse()
            return r.status, r.read(), {k.lower(): v for k, v in r.getheaders()}
        finally:
            c.close()

    def rss(self) -> int:
        return rss_kib(self.proc.pid)

    def metric(self, name: str) -> float:
        return metric(self.admin, name)


class Probe:
    """A real client: fetches `path` every 50 ms and counts the outcomes."""

    def __init__(self, edge: Edge, path: str, body: bytes):
        self.edge, self.path, self.body = edge, path, body
        self.ok = self.failed = 0
        self.latencies: list[float] = []
        self.running = True
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while self.running:
            t = time.time()
            try:
                status, body, _ = self.edge.get(self.path, timeout=5)
                good = status == 200 and body == self.body
            except OSError:
                good = False
            self.latencies.append(time.time() - t)
            if good:
                self.ok += 1
            else:
                self.failed += 1
            time.sleep(0.05)

    def finish(self) -> str:
        self.running = False
        self.thread.join()
        p99 = sorted(self.latencies)[int(len(self.latencies) * 0.99) - 1] * 1000 if self.latencies else 0
        return f"{self.ok} ok, {self.failed} failed, p99 {p99:.1f} ms"


def slow_reader(port: int, path: str, seconds: float, rate: int, out: list):
    """GET `path` and read `rate` bytes per second for `seconds`; appends
    (status line, bytes read, time to first byte)."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
    s.settimeout(seconds + 10)
    started = time.time()
    try:
        s.connect(("127.0.0.1", port))
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        first = s.recv(4096)
        ttfb = time.time() - started
        status = first.split(b"\r\n", 1)[0].decode(errors="replace")
        got = len(first)
        until = started + seconds
        # A refusal is complete at once (and the connection kept alive).
        while " 200 " in status and time.time() < until:
            data = s.recv(rate // 4)
            if not data:
                break
            got += len(data)
            time.sleep(0.25)
        out.append((status, got, ttfb))
    except OSError as e:
        out.append((f"error {e}", 0, time.time() - started))
    finally:
        s.close()


def attack_slow_readers(binary: Path, work: Path, big: str, small: str, small_body: bytes, rep: list):
    log("slow readers")
    edge = Edge(binary, work, "slow", {"send_buffer_bytes": 64 * MIB}, memory_max_object_bytes=8 * MIB)
    try:
        for _ in range(2):
            status, body, h = edge.get(big)
            assert status == 200, status
        size = len(body)
        rep.append(f"Image: {size / MIB:.1f} MiB (larger than memory.max_object_bytes, so served from the disk "
                   f"tier), x-cache {h.get('x-cache')}.\n")
        before = edge.rss()
        probe = Probe(edge, small, small_body)
        out: list = []
        threads = [threading.Thread(target=slow_reader, args=(edge.port, big, 10, 4096, out)) for _ in range(40)]
        for t in threads:
            t.start()
        peak = before
        while any(t.is_alive() for t in threads):
            peak = max(peak, edge.rss())
            time.sleep(0.1)
        time.sleep(0.5)
        after = edge.rss()
        rep.append("| 40 slow readers (~4 KiB/s each, 10 s) of it | |\n|---|---|\n")
        rep.append(f"| edge RSS before / peak / after | {before / 1024:.0f} / {peak / 1024:.0f} / "
                   f"{after / 1024:.0f} MiB (review, before the fix: 240 → 892 MiB) |\n")
        rep.append(f"| readers answered 200 | {sum(1 for o in out if ' 200 ' in o[0])} of 40, "
                   f"{sum(o[1] for o in out) / 40 / 1024:.0f} KiB read each |\n")
        rep.append(f"| real requests meanwhile | {probe.finish()} |\n")

        # Range 0-0: disk bytes read and CPU per request.
        n = 500
        d0, c0 = edge.metric("imgcdn_edge_disk_read_bytes_total"), cpu_ticks(edge.proc.pid)
        t0 = time.time()
        for _ in range(n):
            status, body, _ = edge.get(big, {"Range": "bytes=0-0"})
            assert status == 206 and len(body) == 1
        wall = time.time() - t0
        d1, c1 = edge.metric("imgcdn_edge_disk_read_bytes_total"), cpu_ticks(edge.proc.pid)
        rep.append(f"| `Range: bytes=0-0` of it | {(d1 - d0) / n / 1024:.1f} KiB read from disk and "
                   f"{(c1 - c0) / CLK_TCK / n * 1e6:.0f} µs edge CPU per request (incl. HTTP; "
                   f"{wall / n * 1000:.2f} ms wall); before: the whole file and 3.6 ms CPU |\n\n")
    finally:
        stop(edge.proc)

    log("slow readers against a small send budget")
    edge = Edge(binary, work, "budget", {"send_buffer_bytes": 4 * MIB, "send_buffer_wait_ms": 200,
                                         "retry_after_secs": 1}, memory_max_object_bytes=8 * MIB)
    try:
        edge.get(big)
        before = edge.rss()
        probe = Probe(edge, small, small_body)
        out = []
        threads = [threading.Thread(target=slow_reader, args=(edge.port, big, 8, 4096, out)) for _ in range(400)]
        for t in threads:
            t.start()
            time.sleep(0.002)
        peak = before
        while any(t.is_alive() for t in threads):
            peak = max(peak, edge.rss())
            time.sleep(0.1)
        refused = [o for o in out if " 503 " in o[0]]
        served = [o for o in out if " 200 " in o[0]]
        rep.append("| 400 slow readers, send budget 4 MiB (64 KiB chunk each when streamed; a body sent from its file with sendfile holds none, so none is refused) | |\n|---|---|\n")
        rep.append(f"| served 200 / refused 503 / other | {len(served)} / {len(refused)} / "
                   f"{len(out) - len(served) - len(refused)} |\n")
        if refused:
            ttfb = sorted(o[2] for o in refused)
            rep.append(f"| time to the 503 (median / max) | {statistics.median(ttfb) * 1000:.0f} / "
                       f"{ttfb[-1] * 1000:.0f} ms (send_buffer_wait_ms = 200) |\n")
        rep.append(f"| edge RSS before / peak | {before / 1024:.0f} / {peak / 1024:.0f} MiB |\n")
        rep.append(f"| real requests meanwhile (memory-tier image) | {probe.finish()} |\n\n")
    finally:
        stop(edge.proc)


def attack_slowloris(binary: Path, work: Path, small: str, small_body: bytes, rep: list):
    log("slowloris")
    edge = Edge(binary, work, "loris", {"header_timeout_secs": 2, "max_connections": 1000})
    try:
        probe = Probe(edge, small, small_body)
        opened = time.time()
        idle = [socket.create_connection(("127.0.0.1", edge.port)) for _ in range(300)]
        trickle = [socket.create_connection(("127.0.0.1", edge.port)) for _ in range(50)]
        closed_at: dict[int, float] = {}
        head = b"GET /abc/abcdefgh.png HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 1000
        for s in idle + trickle:
            s.setblocking(False)
        i = 0
        open_peak = edge.metric("imgcdn_edge_connections_open")
        while len(closed_at) < len(idle) + len(trickle) and time.time() - opened < 15:
            for k, s in enumerate(idle + trickle):
                if k in closed_at:
                    continue
                if k >= len(idle) and i < len(head):
                    try:
                        s.send(head[i:i + 1])
                    except OSError:
                        closed_at[k] = time.time() - opened
                        continue
                try:
                    if s.recv(4096) == b"":
                        closed_at[k] = time.time() - opened
                except BlockingIOError:
                    pass
                except OSError:
                    closed_at[k] = time.time() - opened
            i += 1
            time.sleep(0.1)
        idle_closed = sorted(v for k, v in closed_at.items() if k < len(idle))
        trickle_closed = sorted(v for k, v in closed_at.items() if k >= len(idle))
        rep.append("| 300 idle + 50 trickling connections (1 byte / 100 ms), header_timeout_secs = 2 | |\n"
                   "|---|---|\n")
        rep.append(f"| open at the peak (edge gauge) | {open_peak:.0f} |\n")
        rep.append(f"| idle closed by the edge | {len(idle_closed)} of 300, after "
                   f"{idle_closed[0]:.2f}–{idle_closed[-1]:.2f} s |\n" if idle_closed else "| idle closed | 0 |\n")
        rep.append(f"| trickling closed by the edge | {len(trickle_closed)} of 50, after "
                   f"{trickle_closed[0]:.2f}–{trickle_closed[-1]:.2f} s |\n" if trickle_closed else
                   "| trickling closed | 0 |\n")
        rep.append(f"| real requests meanwhile | {probe.finish()} |\n\n")
        for s in idle + trickle:
            s.close()
    finally:
        stop(edge.proc)

    edge = Edge(binary, work, "cap", {"header_timeout_secs": 5, "max_connections": 200, "retry_after_secs": 1})
    try:
        held = [socket.create_connection(("127.0.0.1", edge.port)) for _ in range(200)]
        time.sleep(0.2)
        times, refused = [], 0
        for _ in range(200):
            t = time.time()
            s = socket.create_connection(("127.0.0.1", edge.port))
            s.settimeout(5)
            data = b""
            try:
                while True:
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    data += chunk
            except OSError:
                pass
            times.append(time.time() - t)
            refused += data.startswith(b"HTTP/1.1 503") and b"Retry-After: 1" in data
            s.close()
        rep.append("| 400 connections, max_connections = 200 | |\n|---|---|\n")
        rep.append(f"| over the cap answered 503 + Retry-After and closed | {refused} of 200 "
                   f"(edge counter: {edge.metric('imgcdn_edge_connections_refused_total'):.0f}) |\n")
        rep.append(f"| time to the refusal (median / max) | {statistics.median(times) * 1000:.2f} / "
                   f"{max(times) * 1000:.2f} ms |\n")
        for s in held:
            s.close()
        time.sleep(0.3)
        status, body, _ = edge.get(small)
        rep.append(f"| a real request once they left | {status}, body {'correct' if body == small_body else 'WRONG'} |"
                   "\n\n")
    finally:
        stop(edge.proc)


def attack_pipelining(binary: Path, work: Path, images: list[tuple[str, bytes]], rep: list):
    log("pipelining")
    edge = Edge(binary, work, "pipe", {})
    try:
        rep.append("| pipelined GETs in one write | complete responses, in order, right bodies |\n|---|---|\n")
        for n in (2, 10, 100):
            batch = [images[i % len(images)] for i in range(n)]
            s = socket.create_connection(("127.0.0.1", edge.port))
            s.settimeout(10)
            s.sendall(b"".join(f"GET {p} HTTP/1.1\r\nHost: x\r\n\r\n".encode() for p, _ in batch))
            f = s.makefile("rb")
            good = 0
            for _, want in batch:
                line = f.readline()
                if not line.startswith(b"HTTP/1.1 200"):
                    break
                length = 0
                while (h := f.readline()) not in (b"\r\n", b""):
                    if h.lower().startswith(b"content-length:"):
                        length = int(h.split(b":")[1])
                good += f.read(length) == want
            s.close()
            rep.append(f"| {n} | {good} of {n} |\n")
        rep.append("\n")
    finally:
        stop(edge.proc)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--skip-sync", action="store_true", help="leave out the 1M-entry sync state")
    ap.add_argument("--out", default=str(REPO / "benches" / "results" / "attacks-edge.md"))
    args = ap.parse_args()
    if not args.no_build:
        subprocess.run(["cargo", "build", "--release", "-p", "imgcdn"], cwd=REPO, check=True)
    stop_all_on_exit()
    binary = RELEASE_BINARY
    rep = [f"# Attacks on the edge ({time.strftime('%Y-%m-%d')}, {os.cpu_count()} CPUs, release build, "
           "everything on 127.0.0.1)\n\n`python3 benches/attacks/edge.py`\n\n"]
    with tempfile.TemporaryDirectory(prefix="imgcdn-attacks-") as d:
        work = Path(d)
        rng = random.Random(7)
        files = work / "files"
        files.mkdir()
        (files / "big.png").write_bytes(png_of_size(rng, int(18.6 * MIB))[0])
        big = put(binary, work, files / "big.png")
        images = []
        for i in range(10):
            body = png(rng, 16 + i, 16)
            (files / f"s{i}.png").write_bytes(body)
            images.append((put(binary, work, files / f"s{i}.png"), body))
        small, small_body = images[0]
        attack_slow_readers(binary, work, big, small, small_body, rep)
        attack_slowloris(binary, work, small, small_body, rep)
        attack_pipelining(binary, work, images, rep)
    if not args.skip_sync:
        log("1M-entry sync state")
        sys.path.insert(0, str(REPO / "benches" / "sync"))
        import state_1m  # noqa: E402
        with tempfile.TemporaryDirectory(prefix="imgcdn-attacks-sync-") as d:
            r = state_1m.measure(binary, Path(d), 1_000_000, 10)
        rep.append("## A 1,000,000-entry edge-sync state\n\n" + state_1m.markdown(r) + "\n")
    text = "".join(rep)
    print(text)
    Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
