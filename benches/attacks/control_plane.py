#!/usr/bin/env python3
"""Resource-exhaustion attacks on the control plane: do the bounds hold?

Starts a release control plane (`target/release/imgcdn control-plane`) on
127.0.0.1, SQLite and fs stores in a temporary directory, `cookie_secure =
false` and `client_ip_header = "X-Forwarded-For"` (so one machine can play
many clients), every other limit at its default unless an attack says so.
Each attack gets a fresh process (its own temp directory, empty in-memory
rate limiters), and the process's memory is read from /proc: VmRSS before,
the peak (VmHWM, reset through /proc/PID/clear_refs at the start of each
phase, and VmRSS sampled every 20 ms), VmRSS after (3 s after the attack).

    python3 benches/attacks/control_plane.py                # all attacks, ~5 min
    python3 benches/attacks/control_plane.py --only 2,4     # some of them
    python3 benches/attacks/control_plane.py --no-build     # reuse target/release/imgcdn

Attacks (numbers for --only):
 1. argon2 amplification: (a) 48 concurrent password-reset confirmations with
    bogus tokens from 48 addresses, (b) 48 concurrent logins with wrong
    passwords for 48 existing accounts, every request from a new address; a
    real login every 250 ms during both, and before them for a baseline;
    (c) the (b) flood against a fresh process, unknown emails (the dummy
    hash: same work), to see what a login flood costs from a cold start.
 2. decompression bombs: 6 concurrent anonymous uploads (distinct addresses)
    of a 10000x10000 PNG of zeros (100 Mpx, the default max_pixels), 16-bit
    RGBA (~780 KB on the wire, 800 MB decoded) then 8-bit RGBA.
 3. password-reset flood with distinct emails: (a) 50,000 requests from one
    client, keep-alive, concurrency 32; (b) 20,000 from distinct clients.
    Then, on a fresh process, the rate limiter's subject cap (200,000 over
    all scopes): (c) 200,000 bogus reset tokens, each from its own IPv6 /64,
    then what 10 new clients get on login, password-reset and signup; (d) 10 s
    of new /64s past the cap with GET /healthz every 100 ms.
 4. slowloris (header_read_timeout_secs = 5, max_connections = 200 for this
    run): (a) 150 idle + 40 header-trickling connections, under the cap;
    (b) 50 tricklers then 300 idle connections, over the cap; (c) 20 s of an
    attacker keeping 250 connections open (reconnecting when closed). A real
    GET /healthz every 200 ms throughout.
 5. slow upload: 3.6 MB at 100 KB/s (~36 s, past request_timeout_secs = 30)
    while a second upload stalls half-way (408 after body_idle_timeout_secs).
 6. body budget: 60, then (a fresh process) 120 concurrent anonymous uploads
    of a 19.5 MB PNG at full speed, 1.17 and 2.34 GB against the 1 GiB body
    budget.

Results: benches/results/attacks-control-plane.{md,json}. Python 3.11
stdlib only; the PNGs are made here with zlib (streamed, so the bombs never
exist decoded in this process). Not a test: tests never measure time.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import datetime
import json
import math
import os
import platform
import random
import shlex
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # benches/

from common import MIB, RELEASE_BINARY, REPO, log  # noqa: E402
from common.datasets import png_of_size  # noqa: E402
from common.procs import free_port, start, stop, stop_all_on_exit, wait_http  # noqa: E402

PW = "tulip-Orbit-94"
KIB = 1024
ARGON2_KIB = 19456  # passwords.argon2_memory_kib default
DEFAULT_BUDGET = 1073741824  # uploads.body_budget_bytes / decode_budget_bytes default
BINARY = RELEASE_BINARY  # --binary


# ================================================================ config
def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, (str, Path)):
        return json.dumps(str(v))
    raise TypeError(f"no TOML form for {v!r}")


def toml_text(cfg: dict) -> str:
    """`cfg`: {"": top-level keys, "table.name": keys}; tables in order."""
    lines = [f"{k} = {_toml_value(v)}" for k, v in cfg.get("", {}).items()]
    for table, keys in cfg.items():
        if table and keys:
            lines.append(f"\n[{table}]")
            lines += [f"{k} = {_toml_value(v)}" for k, v in keys.items()]
    return "\n".join(lines) + "\n"


def base_config(work: Path, port: int) -> dict:
    return {
        "": {
            "listen": f"127.0.0.1:{port}",
            "admin_listen": "127.0.0.1:0",
            "database_url": f"sqlite://{work}/cp.db",
            "public_base_url": f"http://127.0.0.1:{port}",
            "cookie_secure": False,
            "client_ip_header": "X-Forwarded-For",
        },
        "email": {"transport": "file", "outbox_dir": str(work / "outbox")},
        "stores.public": {"scheme": "fs", "root": str(work / "store")},
        "stores.recovery": {"scheme": "fs", "root": str(work / "recovery")},
    }


def merged(cfg: dict, overrides: dict) -> dict:
    out = {k: dict(v) for k, v in cfg.items()}
    for table, keys in overrides.items():
        out.setdefault(table, {}).update(keys)
    return out


# ================================================================ memory
def proc_status(pid: int) -> dict:
    """VmRSS, VmHWM (KiB) and Threads of `pid`, {} once it is gone."""
    out = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM", "Threads"):
                out[key] = int(value.split()[0])
    except OSError:
        pass
    return out


def fd_count(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return -1


def reset_peak(pid: int) -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0, same user)."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


class Monitor:
    """Samples VmRSS, threads and open fds of one process every 20 ms in a
    thread (independent of the event loop doing the attack)."""

    def __init__(self, pid: int, interval: float = 0.02):
        self.pid, self.interval = pid, interval
        self.peak_rss = self.peak_threads = self.peak_fds = 0
        self.timeline: list[tuple[float, int]] = []  # (s, VmRSS KiB) every ~0.25 s
        self._stop = threading.Event()
        self._t0 = 0.0
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        last = -1.0
        while not self._stop.is_set():
            s = proc_status(self.pid)
            if not s:
                return
            self.peak_rss = max(self.peak_rss, s.get("VmRSS", 0))
            self.peak_threads = max(self.peak_threads, s.get("Threads", 0))
            self.peak_fds = max(self.peak_fds, fd_count(self.pid))
            now = time.monotonic() - self._t0
            if now - last >= 0.25:
                self.timeline.append((round(now, 2), s.get("VmRSS", 0)))
                last = now
            self._stop.wait(self.interval)

    def __enter__(self):
        self._t0 = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def measure(cp: "ControlPlane", coro_fn, settle: float = 3.0) -> dict:
    """Run the attack `coro_fn()` (an async function) against `cp`, with
    RSS before / peak / after; returns the attack's own dict plus `rss`."""
    before = proc_status(cp.pid)
    log_from = cp.log_size()
    hwm_reset = reset_peak(cp.pid)
    t0 = time.monotonic()
    with Monitor(cp.pid) as mon:
        result = asyncio.run(coro_fn())
        during = proc_status(cp.pid)
    elapsed = time.monotonic() - t0
    time.sleep(settle)
    after = proc_status(cp.pid)
    result["rss"] = {
        "before_kib": before.get("VmRSS"),
        "peak_hwm_kib": during.get("VmHWM") if hwm_reset else None,
        "peak_sampled_kib": mon.peak_rss,
        "after_kib": after.get("VmRSS"),
        "hwm_reset": hwm_reset,
        "timeline": mon.timeline,
    }
    result["rss"]["peak_kib"] = max(result["rss"]["peak_hwm_kib"] or 0, mon.peak_rss)
    result["threads_peak"] = mon.peak_threads
    result["fds_peak"] = mon.peak_fds
    result["duration_s"] = round(elapsed, 2)
    result["alive_after"] = cp.alive()
    result["log"] = cp.log_findings(log_from)
    return result


# ================================================================ server
class ControlPlane:
    def __init__(self, root: Path, name: str, overrides: dict | None = None):
        self.name = name
        self.work = root / name
        self.work.mkdir(parents=True)
        self.port = free_port()
        self.overrides = overrides or {}
        self.config = merged(base_config(self.work, self.port), self.overrides)
        self.toml = self.work / "control-plane.toml"
        self.toml.write_text(toml_text(self.config))
        self.logfile = self.work / "control-plane.log"
        self.proc = start([str(BINARY), "control-plane", "--config", str(self.toml)], self.logfile)
        wait_http(self.port, "/healthz", self.proc, f"control plane ({name})", self.logfile, want=200,
                  interval=0.05)
        self.pid = self.proc.pid
        self.rss_at_start_kib = proc_status(self.pid).get("VmRSS")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_size(self) -> int:
        try:
            return self.logfile.stat().st_size
        except OSError:
            return 0

    def log_findings(self, start: int = 0) -> dict:
        """What the server logged from byte `start` on: lines, bytes, the
        per-request ERROR lines tower_http writes for every 5xx answer (by
        status), and any other ERROR line or panic (unexpected)."""
        with open(self.logfile, "rb") as f:
            f.seek(start)
            data = f.read()
        lines = data.decode("utf-8", "replace").splitlines()
        trace_5xx = collections.Counter()
        unexpected, warns = [], []
        for ln in lines:
            if "tower_http::trace::on_failure" in ln:
                code = ln.split("Status code: ", 1)[1].split()[0] if "Status code: " in ln else "?"
                trace_5xx[code] += 1
            elif " ERROR " in ln or "panicked" in ln:
                unexpected.append(ln)
            elif " WARN " in ln:
                warns.append(ln)
        return {"lines": len(lines), "bytes": len(data), "error_lines_per_5xx": dict(trace_5xx),
                "unexpected_error_lines": len(unexpected), "unexpected_sample": unexpected[:5],
                "warn_lines": len(warns), "warn_sample": warns[:3],
                "panics": sum("panicked" in ln for ln in lines), "exit_code": self.proc.poll()}

    def stop(self):
        stop(self.proc)


# ================================================================ HTTP client
class Resp:
    __slots__ = ("status", "headers", "body", "ms")

    def __init__(self, status, headers, body, ms=0.0):
        self.status, self.headers, self.body, self.ms = status, headers, body, ms

    def json(self):
        try:
            return json.loads(self.body)
        except ValueError:
            return {}

    def message(self) -> str:
        err = self.json().get("error") if isinstance(self.json(), dict) else None
        return (err or {}).get("message", "") if isinstance(err, dict) else ""


async def read_response(reader: asyncio.StreamReader) -> Resp:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for ln in lines[1:]:
        k, sep, v = ln.partition(":")
        if sep:
            headers[k.strip().lower()] = v.strip()
    if "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        parts = []
        while True:
            size = int((await reader.readline()).split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while (await reader.readline()) not in (b"\r\n", b""):
                    pass
                break
            parts.append(await reader.readexactly(size))
            await reader.readexactly(2)
        body = b"".join(parts)
    elif status in (204, 304) or 100 <= status < 200:
        body = b""
    else:
        body = await reader.read()
    return Resp(status, headers, body)


def request_bytes(method: str, path: str, headers: dict | None = None, body: bytes = b"") -> bytes:
    h = {"Host": "127.0.0.1", **(headers or {})}
    if "Content-Length" not in h and (body or method in ("POST", "PUT", "PATCH")):
        h["Content-Length"] = str(len(body))
    return (f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in h.items())
            + "\r\n").encode() + body


def json_req(path: str, obj: dict, xff: str | None = None) -> tuple:
    headers = {"Content-Type": "application/json"}
    if xff:
        headers["X-Forwarded-For"] = xff
    return ("POST", path, headers, json.dumps(obj).encode())


class Conn:
    """One keep-alive HTTP/1.1 connection, reopened when the server closed it.
    A request is retried once only if it failed on a reused connection
    before any answer (the server closed it idle)."""

    def __init__(self, port: int, timeout: float = 60.0):
        self.port, self.timeout = port, timeout
        self.r = self.w = None
        self.reused = False

    async def close(self):
        if self.w is not None:
            self.w.close()
            try:
                await self.w.wait_closed()
            except (OSError, ConnectionError):
                pass
        self.r = self.w = None

    async def request(self, method, path, headers=None, body=b"") -> Resp:
        for attempt in range(2):
            if self.w is None:
                self.r, self.w = await asyncio.open_connection("127.0.0.1", self.port)
                self.reused = False
            t0 = time.perf_counter()
            try:
                self.w.write(request_bytes(method, path, headers, body))
                await self.w.drain()
                resp = await asyncio.wait_for(read_response(self.r), self.timeout)
            except (ConnectionError, asyncio.IncompleteReadError, OSError):
                reused = self.reused
                await self.close()
                if reused and attempt == 0:
                    continue
                raise
            resp.ms = (time.perf_counter() - t0) * 1000
            self.reused = True
            if resp.headers.get("connection", "").lower() == "close":
                await self.close()
            return resp
        raise ConnectionError("unreachable")


async def one_shot(port: int, method, path, headers=None, body=b"", timeout: float = 60.0) -> Resp:
    """A request on its own connection (connect time included in .ms)."""
    t0 = time.perf_counter()
    r, w = await asyncio.open_connection("127.0.0.1", port)
    try:
        w.write(request_bytes(method, path, {**(headers or {}), "Connection": "close"}, body))
        await w.drain()
        resp = await asyncio.wait_for(read_response(r), timeout)
    finally:
        w.close()
    resp.ms = (time.perf_counter() - t0) * 1000
    return resp


def pct(values, p):
    if not values:
        return None
    v = sorted(values)
    return round(v[min(len(v) - 1, max(0, math.ceil(p / 100 * len(v)) - 1))], 2)  # nearest rank


def lat_summary(ms: list[float]) -> dict:
    return {"n": len(ms), "p50_ms": pct(ms, 50), "p99_ms": pct(ms, 99),
            "max_ms": round(max(ms), 2) if ms else None}


class Tally:
    def __init__(self):
        self.status = collections.Counter()
        self.ms: list[float] = []
        self.samples: dict[int, str] = {}  # first body per status
        self.retry_after_missing = collections.Counter()

    def add(self, resp: Resp | None, err: str | None = None):
        if resp is None:
            self.status[err or "error"] += 1
            return
        self.status[resp.status] += 1
        self.ms.append(resp.ms)
        if resp.status not in self.samples:
            self.samples[resp.status] = resp.body[:300].decode("utf-8", "replace")
        if resp.status in (429, 503) and "retry-after" not in resp.headers:
            self.retry_after_missing[resp.status] += 1

    def summary(self) -> dict:
        return {"requests": sum(self.status.values()),
                "statuses": {str(k): v for k, v in sorted(self.status.items(), key=lambda kv: str(kv[0]))},
                "latency": lat_summary(self.ms), "samples": {str(k): v for k, v in self.samples.items()},
                "retry_after_missing": dict(self.retry_after_missing)}


async def flood(port: int, concurrency: int, make, *, total: int | None = None,
                duration: float | None = None) -> dict:
    """`concurrency` keep-alive connections sending make(i, w) = (method,
    path, headers, body) for request i = 0, 1, … (w: the connection's
    number), until `total` requests or `duration` seconds."""
    tally = Tally()
    counter = iter(range(total if total is not None else 10**12))
    deadline = time.monotonic() + duration if duration else None

    async def worker(wid):
        c = Conn(port)
        try:
            while deadline is None or time.monotonic() < deadline:
                i = next(counter, None)
                if i is None:
                    return
                try:
                    tally.add(await c.request(*make(i, wid)))
                except (ConnectionError, asyncio.IncompleteReadError, OSError, asyncio.TimeoutError) as e:
                    tally.add(None, type(e).__name__)
                    await c.close()
        finally:
            await c.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(concurrency)))
    wall = time.perf_counter() - t0
    out = tally.summary()
    out["wall_s"] = round(wall, 2)
    out["req_per_s"] = round(out["requests"] / wall, 1) if wall else None
    return out


async def prober(port: int, interval: float, done: asyncio.Event, make, timeout: float = 30.0) -> dict:
    """A request make(n) on a fresh connection every `interval` s until
    `done` is set; each (t, status, ms) is kept."""
    events, tally, n = [], Tally(), 0
    t0 = time.monotonic()
    pending = set()

    async def one(n, t):
        try:
            resp = await one_shot(port, *make(n), timeout=timeout)
            tally.add(resp)
            events.append((round(t, 2), resp.status, round(resp.ms, 1)))
        except (ConnectionError, asyncio.IncompleteReadError, OSError, asyncio.TimeoutError) as e:
            tally.add(None, type(e).__name__)
            events.append((round(t, 2), type(e).__name__, None))

    while not done.is_set():
        pending.add(asyncio.create_task(one(n, time.monotonic() - t0)))
        n += 1
        try:
            await asyncio.wait_for(done.wait(), interval)
        except asyncio.TimeoutError:
            pass
    if pending:
        await asyncio.wait(pending)
    out = tally.summary()
    out["events"] = sorted(events, key=lambda e: e[0])
    ok = [ms for _, st, ms in events if st == 200]
    out["ok_latency"] = lat_summary(ok)
    return out


# ================================================================ PNGs
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def blank_png(width: int, height: int, bit_depth: int) -> bytes:
    """An RGBA PNG of zeros at `bit_depth` (8 or 16), compressed row by row:
    the decoded image (width*height*4*bit_depth/8 bytes) never exists here."""
    row = bytes(1 + width * 4 * bit_depth // 8)  # filter type 0, then zeros
    co = zlib.compressobj(9)
    parts = [co.compress(row) for _ in range(height)]
    parts.append(co.flush())
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, 6, 0, 0, 0)
    return PNG_SIGNATURE + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", b"".join(parts)) + _chunk(b"IEND", b"")


BOUNDARY = "attack-boundary-7f3a"


def multipart_parts(data: bytes, filename: str = "a.png") -> tuple[bytes, bytes]:
    head = (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n").encode()
    return head, f"\r\n--{BOUNDARY}--\r\n".encode()


def upload_head(total: int, xff: str) -> bytes:
    return request_bytes("POST", "/v1/images", {
        "X-Forwarded-For": xff, "Connection": "close",
        "Content-Type": f"multipart/form-data; boundary={BOUNDARY}", "Content-Length": str(total)})


async def upload(port: int, body: bytes, xff: str, timeout: float = 120.0) -> Resp:
    """POST `body` (from `multipart_body`) to /v1/images on its own
    connection, written in 256 KiB slices (no copy of a large body)."""
    t0 = time.perf_counter()
    r, w = await asyncio.open_connection("127.0.0.1", port)
    try:
        w.write(upload_head(len(body), xff))
        view = memoryview(body)
        answer = asyncio.create_task(read_response(r))
        try:
            for off in range(0, len(body), 256 * 1024):
                if answer.done():  # answered (refused) before the whole body
                    break
                w.write(view[off:off + 256 * 1024])
                await w.drain()
        except (ConnectionError, OSError):
            pass  # the server answered and closed: its answer is read below
        resp = await asyncio.wait_for(answer, timeout)
    finally:
        w.close()
    resp.ms = (time.perf_counter() - t0) * 1000
    return resp


def multipart_body(data: bytes, filename: str = "a.png") -> bytes:
    head, tail = multipart_parts(data, filename)
    return head + data + tail


# ================================================================ attacks
def login_req(email, password, xff):
    return json_req("/v1/auth/login", {"email": email, "password": password}, xff)


def real_login(n: int):
    # The real user's address rotates so the per-client login limit (30 per
    # 10 minutes) never stops the probe.
    return login_req("real-user@example.com", PW, f"203.0.113.{n % 250 + 1}")


def botnet_ip(i: int, first: int = 10) -> str:
    """A distinct address per i (i < 250**3): first.x.y.z, z never 0."""
    return f"{first}.{i // 62500 % 250}.{i // 250 % 250}.{i % 250 + 1}"


async def signup_accounts(port: int, emails: list[str]) -> collections.Counter:
    c = Conn(port)
    got = collections.Counter()
    for i, email in enumerate(emails):
        r = await c.request(*json_req("/v1/auth/signup", {"email": email, "name": "Bench User", "password": PW,
                                                             "age_confirmed": True},
                                      f"192.0.2.{i % 250 + 1}"))
        got[r.status] += 1
    await c.close()
    return got


def attack_argon2(root: Path, args) -> dict:
    cp = ControlPlane(root, "1-argon2")
    phases = []
    try:
        targets = [f"target{i}@example.com" for i in range(48)]
        signups = asyncio.run(signup_accounts(cp.port, ["real-user@example.com", *targets]))
        log(f"  49 accounts signed up: {dict(signups)}")

        async def baseline():
            t = Tally()
            for n in range(args.baseline_logins):
                t.add(await one_shot(cp.port, *real_login(1000 + n)))
            return t.summary()

        base = measure(cp, baseline, settle=1.0)
        base["phase"] = "1.0 real logins, no attack"
        phases.append(base)
        log(f"  baseline login: {base['latency']}")

        async def with_probe(flood_coro):
            stop_evt = asyncio.Event()
            probe = asyncio.create_task(prober(cp.port, 0.25, stop_evt, real_login))
            out = await flood_coro
            stop_evt.set()
            out["probe"] = await probe
            return out

        def bogus(i, w):
            # 48 clients, one per connection: 30 answers each, then 429.
            return json_req("/v1/auth/password-reset/confirm", {"token": f"bogus-{i:08d}-token", "password": PW},
                            f"10.0.0.{w + 1}")

        async def bogus_flood():
            out = await with_probe(flood(cp.port, 48, bogus, duration=args.flood_secs))
            # One address, sequentially: 30 per 10 minutes, then 429.
            one = Tally()
            c = Conn(cp.port)
            for i in range(40):
                one.add(await c.request(*json_req("/v1/auth/password-reset/confirm",
                                                  {"token": f"one-{i}", "password": PW}, "198.51.100.7")))
            await c.close()
            out["one_client"] = one.summary()
            return out

        a = measure(cp, bogus_flood)
        a["phase"] = "1a bogus reset tokens, 48 concurrent connections from 48 addresses"
        phases.append(a)
        log(f"  1a: {a['statuses']} rss {kib(a['rss']['before_kib'])}→{kib(a['rss']['peak_kib'])}"
            f"→{kib(a['rss']['after_kib'])} MiB; probe {a['probe']['statuses']}")

        def wrong(i, w):
            return login_req(targets[w], f"wrong-guess-{i}", botnet_ip(i, 11))

        b = measure(cp, lambda: with_probe(flood(cp.port, 48, wrong, duration=args.flood_secs)))
        b["phase"] = "1b wrong passwords for 48 existing accounts, 48 concurrent, a new address per request"
        phases.append(b)
        log(f"  1b: {b['statuses']} rss {kib(b['rss']['before_kib'])}→{kib(b['rss']['peak_kib'])}"
            f"→{kib(b['rss']['after_kib'])} MiB; probe {b['probe']['statuses']}")
    finally:
        server = cp.log_findings()
        cp.stop()
    # The same flood against a fresh process that has hashed nothing yet:
    # what a login flood costs from a cold start. Unknown emails (verified
    # against the dummy hash: the same work, never locked out).
    cold = ControlPlane(root, "1c-argon2-cold")
    try:
        def unknown(i, w):
            return login_req(f"nobody{i}@example.com", f"wrong-guess-{i}", botnet_ip(i, 13))

        c = measure(cold, lambda: flood(cold.port, 48, unknown, duration=args.flood_secs))
        c["phase"] = "1c wrong passwords for unknown emails, 48 concurrent, a new address per request, fresh process"
        phases.append(c)
        log(f"  1c: {c['statuses']} rss {kib(c['rss']['before_kib'])}→{kib(c['rss']['peak_kib'])}"
            f"→{kib(c['rss']['after_kib'])} MiB")
    finally:
        server_cold = cold.log_findings()
        cold.stop()
    server = merge_findings([server, server_cold])
    slots = os.cpu_count() or 1
    argon_mib = ARGON2_KIB / 1024
    allowed_kib = (slots + 1) * ARGON2_KIB + 64 * KIB
    checks = [
        check("1a: no argon2 work for bogus tokens: only 422/429, no 5xx",
              set(a["statuses"]) <= {"422", "429"}, a["statuses"]),
        check("1a: 30 answers per client address (48 x 30 = 1440 x 422), the rest 429",
              a["statuses"].get("422") == 48 * 30, a["statuses"]),
        check("1a: one address gets 30 answers then 429 with Retry-After",
              a["one_client"]["statuses"] == {"422": 30, "429": 10} and not a["one_client"]["retry_after_missing"],
              a["one_client"]["statuses"]),
        check("1a: RSS growth (peak - before) < 64 MiB", growth(a) < 64 * KIB, f"{kib(growth(a))} MiB"),
        check("1b: only 401/429/503, no 500", set(b["statuses"]) <= {"401", "429", "503"}, b["statuses"]),
        check("1b: every 503/429 carries Retry-After", not b["retry_after_missing"], b["retry_after_missing"]),
        check(f"1b: RSS growth during the flood < (hash slots {slots} + 1) x {argon_mib:.0f} MiB + 64 MiB "
              f"(unbounded: 48 x {argon_mib:.0f} = {48 * argon_mib:.0f} MiB)",
              growth(b) < allowed_kib, f"{kib(growth(b))} MiB"),
        check(f"1b: peak VmRSS - VmRSS at process start < (hash slots {slots} + 1) x {argon_mib:.0f} MiB + 64 MiB "
              "(all hashing so far: 49 sign-ups, real logins, the flood; at most "
              f"{slots} at once)", b["rss"]["peak_kib"] - cp.rss_at_start_kib < allowed_kib,
              f"{kib(cp.rss_at_start_kib)} → {kib(b['rss']['peak_kib'])} MiB"),
        check("1c: only 401/503, no 500", set(c["statuses"]) <= {"401", "503"}, c["statuses"]),
        check(f"1c: fresh process: RSS growth < (hash slots {slots} + 1) x {argon_mib:.0f} MiB + 64 MiB",
              growth(c) < allowed_kib, f"{kib(growth(c))} MiB"),
        check("server alive, no panic, no unexpected ERROR line", b["alive_after"] and c["alive_after"]
              and server["panics"] == 0 and server["unexpected_error_lines"] == 0, server),
    ]
    pb, okb = b["probe"], b["probe"]["ok_latency"]
    observations = [
        f"1: VmRSS {kib(cp.rss_at_start_kib)} MiB at start, {kib(base['rss']['before_kib'])} MiB after 49 "
        f"sign-ups (49 argon2 hashes, one at a time), peak {kib(b['rss']['peak_kib'])} MiB during 1b, "
        f"{kib(b['rss']['after_kib'])} MiB after it; the hashing bound allows {slots} x {argon_mib:.0f} MiB "
        f"at once (threads peak {b['threads_peak']})",
        f"1b: the real user's logins during the flood: {fmt_statuses(pb['statuses'])} "
        f"(200s p50 {okb['p50_ms']} / p99 {okb['p99_ms']} ms; without attack p50 "
        f"{base['latency']['p50_ms']} / p99 {base['latency']['p99_ms']} ms)",
    ]
    return {"id": 1, "title": "argon2 amplification", "config": cp.config, "overrides": cp.overrides,
            "phases": phases, "checks": checks, "server": server, "observations": observations,
            "notes": [f"48 accounts (target0..47) + the real user, signed up from distinct addresses: "
                      f"{dict(signups)}",
                      f"hash slots = max_concurrent_hashes 0 = one per CPU = {slots}; 32 may wait"]}


def attack_bombs(root: Path, args) -> dict:
    log("  generating the PNGs (zlib, streamed; ~12 s)")
    t0 = time.time()
    png16 = blank_png(10000, 10000, 16)
    png8 = blank_png(10000, 10000, 8)
    log(f"  16-bit: {len(png16)} bytes, 8-bit: {len(png8)} bytes ({time.time() - t0:.1f} s)")
    cp = ControlPlane(root, "2-bombs")
    phases = []
    try:
        for depth, data, first in ((16, png16, 20), (8, png8, 21)):
            body = multipart_body(data)

            async def six(body=body, first=first):
                t = Tally()
                per = []

                async def one(k):
                    try:
                        r = await upload(cp.port, body, f"{first}.0.0.{k + 1}", timeout=180)
                        t.add(r)
                        per.append({"status": r.status, "ms": round(r.ms), "message": r.message()[:160]})
                    except (ConnectionError, asyncio.IncompleteReadError, OSError, asyncio.TimeoutError) as e:
                        t.add(None, type(e).__name__)
                        per.append({"status": type(e).__name__})

                await asyncio.gather(*(one(k) for k in range(6)))
                out = t.summary()
                out["uploads"] = sorted(per, key=lambda p: p.get("ms", 0))
                return out

            ph = measure(cp, six)
            ph["phase"] = f"2{'a' if depth == 16 else 'b'} 6 concurrent 10000x10000 RGBA {depth}-bit PNG " \
                          f"({len(data) / 1e6:.2f} MB on the wire, {10000 * 10000 * 4 * depth // 8 / 1e6:.0f} MB decoded)"
            ph["file_bytes"] = len(data)
            phases.append(ph)
            log(f"  2 ({depth}-bit): {ph['statuses']} rss {kib(ph['rss']['before_kib'])}→"
                f"{kib(ph['rss']['peak_kib'])}→{kib(ph['rss']['after_kib'])} MiB")
    finally:
        server = cp.log_findings()
        cp.stop()
    a, b = phases
    need16 = (100_000_000 * 8 * 2 + 4 * MIB)
    checks = [
        check("2a: all six 16-bit uploads refused 422 'needs about N MB of memory'",
              a["statuses"] == {"422": 6} and all("needs about" in u.get("message", "") for u in a["uploads"]),
              a["uploads"][:1]),
        check("2a: RSS growth < 64 MiB (nothing decoded)", growth(a) < 64 * KIB, f"{kib(growth(a))} MiB"),
        check("2b: 8-bit: at least one 201, the rest 201 or 503, no 500",
              b["statuses"].get("201", 0) >= 1 and set(b["statuses"]) <= {"201", "503"}, b["statuses"]),
        check("2b: RSS growth <= decode budget (1 GiB) + 64 MiB",
              growth(b) <= DEFAULT_BUDGET // KIB + 64 * KIB, f"{kib(growth(b))} MiB"),
        check("server alive, no panic, no unexpected ERROR line",
              b["alive_after"] and server["panics"] == 0 and server["unexpected_error_lines"] == 0, server),
    ]
    observations = [f"2b: the six 8-bit uploads were answered at "
                    f"{', '.join(str(u.get('ms', '?')) for u in b['uploads'])} ms (decodes admitted one at a time); "
                    f"VmRSS {kib(b['rss']['before_kib'])} → peak {kib(b['rss']['peak_kib'])} → "
                    f"{kib(b['rss']['after_kib'])} MiB"]
    return {"id": 2, "title": "decompression bombs", "config": cp.config, "overrides": cp.overrides,
            "phases": phases, "checks": checks, "server": server, "observations": observations,
            "notes": [f"decode cost charged = width x height x bytes per pixel x 2 + 4 MiB: 16-bit "
                      f"{need16 / 1e6:.0f} MB (> the 1073.7 MB budget: refused), 8-bit "
                      f"{(100_000_000 * 4 * 2 + 4 * MIB) / 1e6:.0f} MB (one at a time fits, two do not)"]}


def attack_reset_flood(root: Path, args) -> dict:
    cp = ControlPlane(root, "3-reset-flood")
    phases = []
    try:
        def one_client(i, w):
            return json_req("/v1/auth/password-reset", {"email": f"victim{i}@example.com"}, "198.51.100.66")

        a = measure(cp, lambda: flood(cp.port, 32, one_client, total=args.reset_requests))
        a["phase"] = f"3a {args.reset_requests} resets, distinct emails, one client, keep-alive, concurrency 32"
        phases.append(a)
        log(f"  3a: {a['statuses']} {a['req_per_s']} req/s rss {kib(a['rss']['before_kib'])}→"
            f"{kib(a['rss']['peak_kib'])}→{kib(a['rss']['after_kib'])} MiB")
        if args.reset_distinct_clients:
            def many_clients(i, w):
                return json_req("/v1/auth/password-reset", {"email": f"other{i}@example.com"}, botnet_ip(i, 12))

            b = measure(cp, lambda: flood(cp.port, 32, many_clients, total=args.reset_distinct_clients))
            b["phase"] = f"3b {args.reset_distinct_clients} resets, distinct emails, a new address per request, " \
                         "concurrency 32"
            phases.append(b)
            log(f"  3b: {b['statuses']} {b['req_per_s']} req/s rss {kib(b['rss']['before_kib'])}→"
                f"{kib(b['rss']['peak_kib'])}→{kib(b['rss']['after_kib'])} MiB")
    finally:
        server = cp.log_findings()
        cp.stop()
    sat = None
    if args.limiter_flood:
        # The rate limiter tracks at most 200,000 subjects over all scopes;
        # past that a new one is refused (429, Retry-After 60) until entries
        # expire. Fill it with the cheapest request there is (a bogus reset
        # token: one indexed read), each from its own IPv6 /64 (counted per
        # /64), then see what new clients get.
        cp3 = ControlPlane(root, "3c-limiter")
        try:
            def v6(i, w):
                return json_req("/v1/auth/password-reset/confirm", {"token": f"t{i}", "password": PW},
                                f"2001:db8:{i >> 16 & 0xffff:x}:{i & 0xffff:x}::1")

            async def fill_then_try():
                out = await flood(cp3.port, 32, v6, total=args.limiter_flood)
                after = {}
                c = Conn(cp3.port)
                for name, make in (
                        ("login", lambda k: login_req(f"someone{k}@example.com", "wrong-guess-zz",
                                                      f"203.0.113.{k + 1}")),
                        ("password-reset", lambda k: json_req("/v1/auth/password-reset",
                                                              {"email": f"someone{k}@example.com"},
                                                              f"203.0.113.{k + 101}")),
                        ("signup", lambda k: json_req("/v1/auth/signup", {"email": f"new{k}@example.com",
                                                                          "name": "New", "password": PW,
                                                                          "age_confirmed": True},
                                                      f"203.0.113.{k + 201}"))):
                    t = Tally()
                    for k in range(10):
                        t.add(await c.request(*make(k)))
                    after[name] = t.summary()
                await c.close()
                healthz_resp = await one_shot(cp3.port, "GET", "/healthz")
                out["new_clients_after"] = {k: {"statuses": v["statuses"], "sample": next(
                    (b for st, b in v["samples"].items() if st == "429"), None)} for k, v in after.items()}
                out["healthz_after"] = healthz_resp.status
                return out

            sat = measure(cp3, fill_then_try)
            sat["phase"] = f"3c {args.limiter_flood} bogus reset tokens, each from a new IPv6 /64, concurrency 32; " \
                           "then 10 new clients each try login, password-reset, signup"
            phases.append(sat)
            log(f"  3c: {sat['statuses']} rss {kib(sat['rss']['before_kib'])}→{kib(sat['rss']['peak_kib'])}→"
                f"{kib(sat['rss']['after_kib'])} MiB; new clients after: "
                f"{ {k: v['statuses'] for k, v in sat['new_clients_after'].items()} }")

            # Past the cap: every new subject evicts one (a sample of 8; a
            # full sweep at most once a second). GET /healthz (no limiter)
            # every 100 ms, idle first, then during the flood.
            def v6_more(i, w):
                return v6(i + 10_000_000, w)

            async def past_cap():
                done = asyncio.Event()
                idle = asyncio.create_task(prober(cp3.port, 0.1, done, healthz))
                await asyncio.sleep(3)
                done.set()
                idle_probe = await idle
                done = asyncio.Event()
                probe = asyncio.create_task(prober(cp3.port, 0.1, done, healthz))
                out = await flood(cp3.port, 32, v6_more, duration=args.flood_secs)
                done.set()
                out["probe"] = await probe
                out["probe_idle"] = idle_probe
                return out

            past = measure(cp3, past_cap)
            past["phase"] = f"3d {args.flood_secs:.0f} s of bogus reset tokens from new IPv6 /64s past the cap, " \
                            "concurrency 32; GET /healthz every 100 ms"
            phases.append(past)
            log(f"  3d: {past['statuses']} {past['req_per_s']} req/s {past['latency']}; healthz idle "
                f"{past['probe_idle']['ok_latency']} during {past['probe']['ok_latency']}")
        finally:
            server = merge_findings([server, cp3.log_findings()])
            cp3.stop()
    a = phases[0]
    checks = [
        check("3a: exactly 20 accepted (20/hour per client), every other 429",
              a["statuses"] == {"202": 20, "429": args.reset_requests - 20}, a["statuses"]),
        check("3a: RSS growth < 32 MiB", growth(a) < 32 * KIB, f"{kib(growth(a))} MiB"),
    ]
    if len(phases) > 1:
        b = phases[1]
        checks.append(check("3b: only 202, no 5xx", set(b["statuses"]) == {"202"}, b["statuses"]))
        checks.append(check("3b: RSS growth < 128 MiB (3 limiter subjects per request, 200k cap)",
                            growth(b) < 128 * KIB, f"{kib(growth(b))} MiB"))
    observations = []
    if sat is not None:
        checks.append(check("3c: limiter memory bounded: RSS growth < 128 MiB with 200,000 subjects tracked",
                            growth(sat) < 128 * KIB, f"{kib(growth(sat))} MiB"))
        checks.append(check("3c: only 422/429 during the flood, no 5xx", set(sat["statuses"]) <= {"422", "429"},
                            sat["statuses"]))
        refused_new = {k: v["statuses"].get("429", 0) for k, v in sat["new_clients_after"].items()}
        checks.append(check("3c: with the limiter full, new clients are counted, not refused",
                            sum(refused_new.values()) == 0, refused_new))
        past = phases[-1]
        checks.append(check("3d: GET /healthz p99 during the past-cap flood < 3 x idle p99 + 20 ms",
                            (past["probe"]["ok_latency"]["p99_ms"] or 1e9)
                            < 3 * (past["probe_idle"]["ok_latency"]["p99_ms"] or 0) + 20,
                            {"idle": past["probe_idle"]["ok_latency"], "during": past["probe"]["ok_latency"]}))
        observations.append(
            f"3d: past the limiter's cap, {past['req_per_s']} req/s of new subjects (all "
            f"{fmt_statuses(past['statuses'])}, p50 {past['latency']['p50_ms']} ms) against ~"
            f"{sat['req_per_s']} req/s below it; GET /healthz p50/p99 {past['probe']['ok_latency']['p50_ms']}/"
            f"{past['probe']['ok_latency']['p99_ms']} ms during it, {past['probe_idle']['ok_latency']['p50_ms']}/"
            f"{past['probe_idle']['ok_latency']['p99_ms']} ms idle")
        refused = {k: v["statuses"].get("429", 0) for k, v in sat["new_clients_after"].items()}
        observations.append(
            f"3c: after {args.limiter_flood} requests from distinct IPv6 /64s ({sat['statuses']}), 10 new clients "
            f"(fresh IPv4 addresses) were refused 429 on: " + ", ".join(f"{k} {v}/10" for k, v in refused.items())
            + f"; GET /healthz {sat['healthz_after']}; sample: "
            + str(next((v["sample"] for v in sat["new_clients_after"].values() if v["sample"]), None)))
    checks.append(check("server alive, no panic, no unexpected ERROR line",
                        phases[-1]["alive_after"] and server["panics"] == 0 and server["unexpected_error_lines"] == 0,
                        server))
    return {"id": 3, "title": "password-reset flood", "config": cp.config, "overrides": cp.overrides,
            "phases": phases, "checks": checks, "server": server, "observations": observations,
            "notes": ["3c on a fresh process: the limiter's 200,000-subject cap (ratelimit.rs "
                      "DEFAULT_MAX_SUBJECTS) is shared by every scope"] if sat is not None else []}


# ---------------------------------------------------------------- slowloris
async def hold_connection(port: int, kind: str, t0: float, until: float, trickle_every: float = 1.0) -> dict:
    """Open a connection and hold it: `idle` sends nothing, `trickle` sends a
    request line and then one header line every `trickle_every` s, never the
    blank line. Returns when the server closes it or at `until`."""
    rec = {"kind": kind, "opened": None, "closed": None, "outcome": "open", "first_bytes": ""}
    try:
        r, w = await asyncio.open_connection("127.0.0.1", port)
    except OSError as e:
        rec["outcome"] = f"connect failed: {type(e).__name__}"
        return rec
    rec["opened"] = round(time.monotonic() - t0, 3)
    data = bytearray()

    async def reader():
        while True:
            chunk = await r.read(4096)
            if not chunk:
                return
            data.extend(chunk)

    async def trickler():
        w.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        n = 0
        while True:
            await asyncio.sleep(trickle_every)
            w.write(f"X-Slow-{n}: y\r\n".encode())
            await w.drain()
            n += 1

    tasks = [asyncio.create_task(reader())]
    if kind == "trickle":
        tasks.append(asyncio.create_task(trickler()))
    try:
        done, _ = await asyncio.wait(tasks, timeout=max(0.0, until - time.monotonic()),
                                     return_when=asyncio.FIRST_COMPLETED)
        if done:
            rec["closed"] = round(time.monotonic() - t0, 3)
            for d in done:
                exc = d.exception()
                if exc is not None:
                    rec["error"] = type(exc).__name__
    finally:
        for t in tasks:
            t.cancel()
        w.close()
    text = bytes(data).decode("latin-1")
    rec["first_bytes"] = text[:200]
    if rec["closed"] is not None:
        if text.startswith("HTTP/1.1 503"):
            rec["outcome"] = "503+retry-after" if "retry-after" in text.lower() else "503"
        elif text:
            rec["outcome"] = "answered " + text.split("\r\n", 1)[0]
        else:
            rec["outcome"] = "closed" + (f" ({rec['error']})" if "error" in rec else "")
    return rec


def healthz(n):
    return ("GET", "/healthz", {}, b"")


def conn_summary(recs: list[dict]) -> dict:
    out = {}
    for kind in sorted({r["kind"] for r in recs}):
        rs = [r for r in recs if r["kind"] == kind]
        outcomes = collections.Counter(r["outcome"] for r in rs)
        by = {}
        for outcome in outcomes:
            life = [r["closed"] - r["opened"] for r in rs if r["outcome"] == outcome and r["closed"] is not None
                    and r["opened"] is not None]
            by[outcome] = {"n": outcomes[outcome],
                           "held_s_min": round(min(life), 2) if life else None,
                           "held_s_p50": pct(life, 50), "held_s_max": round(max(life), 2) if life else None}
        out[kind] = by
    return out


def attack_slowloris(root: Path, args) -> dict:
    timeout_s = 5
    cp = ControlPlane(root, "4-slowloris", {"": {"header_read_timeout_secs": timeout_s, "max_connections": 200}})
    phases = []
    try:
        async def under_cap():
            t0 = time.monotonic()
            until = t0 + 12
            stop_evt = asyncio.Event()
            probe = asyncio.create_task(prober(cp.port, 0.2, stop_evt, healthz, timeout=15))
            conns = [asyncio.create_task(hold_connection(cp.port, "trickle", t0, until)) for _ in range(40)]
            conns += [asyncio.create_task(hold_connection(cp.port, "idle", t0, until)) for _ in range(150)]
            recs = await asyncio.gather(*conns)
            await asyncio.sleep(1.0)
            stop_evt.set()
            return {"connections": conn_summary(recs), "probe": await probe, "statuses": {}}

        a = measure(cp, under_cap, settle=1.0)
        a["phase"] = "4a 40 header tricklers + 150 idle connections (under max_connections 200), until closed"
        phases.append(a)
        log(f"  4a: {a['connections']} healthz {a['probe']['statuses']} {a['probe']['ok_latency']}")

        async def over_cap():
            t0 = time.monotonic()
            until = t0 + 14
            stop_evt = asyncio.Event()
            probe = asyncio.create_task(prober(cp.port, 0.2, stop_evt, healthz, timeout=15))
            conns = [asyncio.create_task(hold_connection(cp.port, "trickle", t0, until)) for _ in range(50)]
            await asyncio.sleep(0.3)
            conns += [asyncio.create_task(hold_connection(cp.port, "idle", t0, until)) for _ in range(300)]
            recs = await asyncio.gather(*conns)
            await asyncio.sleep(1.0)  # the probe, once the slow connections are gone
            stop_evt.set()
            refused = next((r for r in recs if r["outcome"].startswith("503")), None)
            return {"connections": conn_summary(recs), "probe": await probe, "statuses": {},
                    "refused_answer": refused["first_bytes"] if refused else None,
                    "refused_after_s": round(refused["closed"] - refused["opened"], 3) if refused else None}

        b = measure(cp, over_cap, settle=1.0)
        b["phase"] = "4b 50 header tricklers, then 300 idle connections (over max_connections 200), until closed"
        phases.append(b)
        log(f"  4b: {b['connections']} healthz {b['probe']['statuses']}")

        async def sustained():
            t0 = time.monotonic()
            until = t0 + args.sustained_secs
            stop_evt = asyncio.Event()
            probe = asyncio.create_task(prober(cp.port, 0.2, stop_evt, healthz, timeout=15))
            stats = collections.Counter()

            async def attacker():
                while time.monotonic() < until:
                    rec = await hold_connection(cp.port, "idle", t0, until)
                    stats[rec["outcome"].split(" ")[0]] += 1
                    if rec["outcome"].startswith("503") or rec["outcome"].startswith("connect"):
                        await asyncio.sleep(0.2)

            await asyncio.gather(*(attacker() for _ in range(250)))
            stop_evt.set()
            return {"attacker_connections": dict(stats), "probe": await probe, "statuses": {}}

        c = measure(cp, sustained, settle=1.0)
        c["phase"] = f"4c one attacker holding 250 idle connections, reconnecting when closed, " \
                     f"{args.sustained_secs} s"
        phases.append(c)
        log(f"  4c: attacker {c['attacker_connections']} healthz {c['probe']['statuses']}")
    finally:
        server = cp.log_findings()
        cp.stop()
    a, b, c = phases
    ca, cb = a["connections"], b["connections"]

    def closed(summary, kind):
        """(connections closed without an answer, the longest held)."""
        rows = [v for k, v in summary.get(kind, {}).items() if k.startswith("closed")]
        return sum(v["n"] for v in rows), max((v["held_s_max"] or 0 for v in rows), default=None)

    idle_a, idle_a_max = closed(ca, "idle")
    trickle_a, trickle_a_max = closed(ca, "trickle")
    checks = [
        check("4a: healthz answered 200 every time while 190 slow connections are held",
              set(a["probe"]["statuses"]) == {"200"}, a["probe"]["statuses"]),
        check(f"4a: all 150 idle connections closed within {timeout_s} s + 1.5 s",
              idle_a == 150 and idle_a_max is not None and idle_a_max <= timeout_s + 1.5,
              ca.get("idle")),
        check(f"4a: all 40 tricklers closed without an answer within 2 x {timeout_s} s + 1.5 s",
              trickle_a == 40 and trickle_a_max is not None
              and trickle_a_max <= 2 * timeout_s + 1.5, ca.get("trickle")),
        check("4b: connections past the cap get 503 + Retry-After at once (< 1 s) and are closed",
              b.get("refused_answer") is not None and (b.get("refused_after_s") or 9) < 1.0
              and sum(v["n"] for k, v in cb.get("idle", {}).items() if k.startswith("503")) >= 100,
              {"answer": b.get("refused_answer"), "after_s": b.get("refused_after_s")}),
        check("4b: server fds never far past max_connections (200 + 64)", b["fds_peak"] <= 264, b["fds_peak"]),
        check("server alive, no panic, no unexpected ERROR line",
              c["alive_after"] and server["panics"] == 0 and server["unexpected_error_lines"] == 0, server),
    ]
    first_ok_b = next((t for t, st, _ in b["probe"]["events"] if st == 200 and t > 1.0), None)
    observations = [
        f"4b: GET /healthz answered {fmt_statuses(b['probe']['statuses'])}; 503 (the cap) from when the idle "
        f"connections arrived until the server closed them; first 200 again at {first_ok_b} s",
        f"4c: one client keeping 250 connections open (reconnecting when closed): GET /healthz "
        f"{fmt_statuses(c['probe']['statuses'])} over {args.sustained_secs} s; attacker's connections "
        f"{c['attacker_connections']}; server fds peak {c['fds_peak']}, VmRSS peak {kib(c['rss']['peak_kib'])} MiB",
    ]
    return {"id": 4, "title": "slowloris", "config": cp.config, "overrides": cp.overrides, "phases": phases,
            "checks": checks, "server": server, "observations": observations,
            "notes": [f"header_read_timeout_secs = {timeout_s} (default 15) and max_connections = 200 "
                      "(default 1024) for this run only",
                      "tricklers send a request line, then one header line a second, never the blank line"]}


# ---------------------------------------------------------------- slow upload
async def slow_upload(port: int, data: bytes, xff: str, rate: int, piece: int) -> dict:
    """Send an upload at `rate` bytes/s in `piece`-byte writes; read the answer."""
    head, tail = multipart_parts(data, "slow.png")
    body = head + data + tail
    r, w = await asyncio.open_connection("127.0.0.1", port)
    t0 = time.monotonic()
    w.write(upload_head(len(body), xff))
    answer = asyncio.create_task(read_response(r))
    sent, early = 0, None
    for off in range(0, len(body), piece):
        target = t0 + off / rate
        delay = target - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        if answer.done():
            early = round(time.monotonic() - t0, 2)
            break
        try:
            w.write(body[off:off + piece])
            await w.drain()
        except (ConnectionError, OSError):
            early = round(time.monotonic() - t0, 2)
            break
        sent += len(body[off:off + piece])
    send_s = time.monotonic() - t0
    try:
        resp = await asyncio.wait_for(answer, 120)
        status, msg = resp.status, resp.body[:200].decode("utf-8", "replace")
    except (ConnectionError, asyncio.IncompleteReadError, OSError, asyncio.TimeoutError) as e:
        status, msg = type(e).__name__, ""
    w.close()
    return {"status": status, "sent_bytes": sent, "body_bytes": len(body), "send_s": round(send_s, 2),
            "answered_s": round(time.monotonic() - t0, 2), "answered_early_at_s": early, "answer": msg}


async def stalled_upload(port: int, data: bytes, xff: str) -> dict:
    head, tail = multipart_parts(data, "stalled.png")
    body = head + data + tail
    r, w = await asyncio.open_connection("127.0.0.1", port)
    w.write(upload_head(len(body), xff) + body[:len(body) // 2])
    await w.drain()
    t0 = time.monotonic()
    try:
        resp = await asyncio.wait_for(read_response(r), 120)
        status, msg = resp.status, resp.body[:200].decode("utf-8", "replace")
    except (ConnectionError, asyncio.IncompleteReadError, OSError, asyncio.TimeoutError) as e:
        status, msg = type(e).__name__, ""
    w.close()
    return {"status": status, "stalled_after_bytes": len(body) // 2, "answered_after_stall_s":
            round(time.monotonic() - t0, 2), "answer": msg}


def attack_slow_upload(root: Path, args) -> dict:
    data, width, height = png_of_size(random.Random("attack-slow-upload"), 3_600_000)
    small, _, _ = png_of_size(random.Random("attack-stalled-upload"), 200_000)
    cp = ControlPlane(root, "5-slow-upload")
    try:
        async def both():
            slow, stalled = await asyncio.gather(
                slow_upload(cp.port, data, "198.51.100.50", rate=100_000, piece=10_000),
                stalled_upload(cp.port, small, "198.51.100.51"))
            statuses = collections.Counter(str(x["status"]) for x in (slow, stalled))
            return {"slow": slow, "stalled": stalled, "statuses": dict(statuses)}

        ph = measure(cp, both)
        ph["phase"] = f"5 {len(data) / 1e6:.1f} MB PNG ({width}x{height}) at 100 KB/s + a stalled upload"
        log(f"  5: slow {ph['slow']['status']} after {ph['slow']['answered_s']} s; stalled "
            f"{ph['stalled']['status']} after {ph['stalled']['answered_after_stall_s']} s")
    finally:
        server = cp.log_findings()
        cp.stop()
    idle = 30
    checks = [
        check("5: the slow upload (longer than request_timeout_secs = 30) gets 201",
              ph["slow"]["status"] == 201 and ph["slow"]["answered_s"] > 30, ph["slow"]),
        check(f"5: the stalled upload gets 408 request_timeout ~{idle} s after the stall",
              ph["stalled"]["status"] == 408 and "request_timeout" in ph["stalled"]["answer"]
              and idle - 1 <= ph["stalled"]["answered_after_stall_s"] <= idle + 3, ph["stalled"]),
        check("server alive, no panic, no unexpected ERROR line",
              ph["alive_after"] and server["panics"] == 0 and server["unexpected_error_lines"] == 0, server),
    ]
    return {"id": 5, "title": "slow upload", "config": cp.config, "overrides": cp.overrides, "phases": [ph],
            "checks": checks, "server": server, "notes": []}


def attack_body_budget(root: Path, args) -> dict:
    data, width, height = png_of_size(random.Random("attack-body-budget"), 19_500_000)
    body = multipart_body(data)
    waves = [int(x) for x in str(args.body_uploads).split(",") if x.strip()]
    phases, servers, configs = [], [], None
    for w, n in enumerate(waves):
        # A fresh process per wave: RSS after one wave stays high (see README).
        cp = ControlPlane(root, f"6-body-budget-{n}")
        configs = (cp.config, cp.overrides)
        try:
            async def many(n=n, port=cp.port):
                t = Tally()
                per = []

                async def one(k):
                    try:
                        r = await upload(port, body, f"30.{w}.{k // 250}.{k % 250 + 1}", timeout=300)
                        t.add(r)
                        per.append({"status": r.status, "ms": round(r.ms)})
                    except (ConnectionError, asyncio.IncompleteReadError, OSError, asyncio.TimeoutError) as e:
                        t.add(None, type(e).__name__)
                        per.append({"status": type(e).__name__})

                await asyncio.gather(*(one(k) for k in range(n)))
                out = t.summary()
                by = collections.defaultdict(list)
                for p in per:
                    if "ms" in p:
                        by[str(p["status"])].append(p["ms"])
                out["ms_by_status"] = {k: lat_summary(v) for k, v in by.items()}
                return out

            ph = measure(cp, many)
            ph["phase"] = f"6{'abcdef'[w]} {n} concurrent anonymous uploads of a {len(data) / 1e6:.1f} MB PNG " \
                          f"({n * len(data) / 1e9:.2f} GB at once vs the 1.07 GB body budget)"
            ph["uploads_n"] = n
            phases.append(ph)
            log(f"  6 ({n}): {ph['statuses']} {ph['ms_by_status']} rss {kib(ph['rss']['before_kib'])}→"
                f"{kib(ph['rss']['peak_kib'])}→{kib(ph['rss']['after_kib'])} MiB")
        finally:
            servers.append(cp.log_findings())
            cp.stop()
    budgets_kib = 2 * DEFAULT_BUDGET // KIB  # body + decode
    checks = []
    for ph in phases:
        tag = ph["phase"].split(" ", 1)[0]
        slowest = max((v["max_ms"] for v in ph["ms_by_status"].values()), default=0)
        checks += [
            check(f"{tag}: only 201/503, no 500", set(ph["statuses"]) <= {"201", "503"}, ph["statuses"]),
            check(f"{tag}: RSS growth <= body budget + decode budget (2 GiB) + 128 MiB",
                  growth(ph) <= budgets_kib + 128 * KIB, f"{kib(growth(ph))} MiB"),
            check(f"{tag}: every upload answered within 30 s (budget_wait_ms 10 s + transfer and decode)",
                  slowest <= 30_000, ph["ms_by_status"]),
        ]
    server = merge_findings(servers)
    checks.append(check("server alive, no panic, no unexpected ERROR line",
                        all(ph["alive_after"] for ph in phases) and all(
                            s_["panics"] == 0 and s_["unexpected_error_lines"] == 0 for s_ in servers), servers))
    observations = [
        f"{ph['phase'].split(' ', 1)[0]}: {ph['uploads_n']} uploads: {fmt_statuses(ph['statuses'])}; answer times "
        + "; ".join(f"{st}: p50 {v['p50_ms'] / 1000:.1f} s, max {v['max_ms'] / 1000:.1f} s"
                    for st, v in ph["ms_by_status"].items())
        + f"; VmRSS {kib(ph['rss']['before_kib'])} → peak {kib(ph['rss']['peak_kib'])} → "
          f"{kib(ph['rss']['after_kib'])} MiB 3 s after the last answer"
        for ph in phases]
    return {"id": 6, "title": "body budget", "config": configs[0], "overrides": configs[1], "phases": phases,
            "checks": checks, "server": server, "observations": observations,
            "notes": ["not in the brief's list: exercises uploads.body_budget_bytes; the anonymous plan allows "
                      "20,000,000-byte files; each wave on a fresh process",
                      f"the file: {width}x{height} RGB noise in stored deflate blocks ({len(data)} bytes), so "
                      f"decode cost {(2 * width * height * 3 + 4 * MIB) / 1e6:.0f} MB charged to the decode budget"]}


# ================================================================ report
def merge_findings(found: list[dict]) -> dict:
    """The log findings of several processes as one."""
    out: dict = {}
    for f in found:
        for k, v in f.items():
            if isinstance(v, dict):
                d = out.setdefault(k, {})
                for kk, vv in v.items():
                    d[kk] = d.get(kk, 0) + vv
            elif isinstance(v, list):
                out.setdefault(k, []).extend(v)
            elif isinstance(v, int) and k != "exit_code":
                out[k] = out.get(k, 0) + v
            else:
                out.setdefault(k, v)
    return out


def kib(v) -> str:
    return "?" if v is None else f"{v / 1024:.0f}"


def growth(phase: dict) -> int:
    r = phase["rss"]
    return (r["peak_kib"] or 0) - (r["before_kib"] or 0)


def check(name: str, ok: bool, detail) -> dict:
    return {"name": name, "ok": bool(ok), "detail": detail}


def machine() -> dict:
    mem = {}
    for line in Path("/proc/meminfo").read_text().splitlines():
        k, _, v = line.partition(":")
        if k in ("MemTotal", "MemAvailable", "SwapTotal"):
            mem[k] = int(v.split()[0])
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor())

    def git(*a):
        try:
            return subprocess.run(["git", *a], cwd=REPO, capture_output=True, text=True, timeout=10).stdout.strip()
        except OSError:
            return ""

    compilers = 0
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                comm = Path(f"/proc/{d}/comm").read_text().strip()
            except OSError:
                continue
            compilers += comm in ("rustc", "cc1", "cc1plus", "ld", "cargo")
    return {"nproc": os.cpu_count(), "cpu": cpu, "mem_total_mib": mem.get("MemTotal", 0) // 1024,
            "mem_available_mib": mem.get("MemAvailable", 0) // 1024, "swap_mib": mem.get("SwapTotal", 0) // 1024,
            "kernel": platform.release(), "python": platform.python_version(), "loadavg": os.getloadavg(),
            "compiler_processes": compilers, "git_commit": git("rev-parse", "--short", "HEAD"),
            "git_dirty": bool(git("status", "--porcelain", "--", "control-plane", "media", "shared", "src")),
            "binary": str(BINARY),
            "binary_mtime": datetime.datetime.fromtimestamp(BINARY.stat().st_mtime).isoformat(
                timespec="seconds") if BINARY.exists() else None}


def fmt_statuses(st: dict) -> str:
    return " ".join(f"{k}×{v}" for k, v in st.items()) or "–"


def phase_row(ph: dict) -> str:
    r = ph["rss"]
    lat = ph.get("latency") or {}
    extra = ""
    if "probe" in ph:
        pr = ph["probe"]
        ok = pr["ok_latency"]
        extra = f"probe {fmt_statuses(pr['statuses'])}; 200s p50 {ok['p50_ms']} / p99 {ok['p99_ms']} ms"
    if "connections" in ph:
        extra = "; ".join(f"{kind}: " + ", ".join(f"{o}×{v['n']} (held ≤{v['held_s_max']} s)" for o, v in d.items())
                          for kind, d in ph["connections"].items()) + "; " + extra
    if "attacker_connections" in ph:
        extra = f"attacker {ph['attacker_connections']}; " + extra
    if "slow" in ph:
        extra = (f"slow: {ph['slow']['status']} at {ph['slow']['answered_s']} s; stalled: "
                 f"{ph['stalled']['status']} {ph['stalled']['answered_after_stall_s']} s after the stall")
    if "uploads" in ph:
        extra = ", ".join(f"{u['status']}@{u.get('ms', '?')}ms" for u in ph["uploads"])
    reqs = ph.get("requests", "")
    rate = f" ({ph['req_per_s']}/s)" if ph.get("req_per_s") else ""
    lat_s = f"{lat.get('p50_ms')} / {lat.get('p99_ms')}" if lat.get("n") else "–"
    lg = ph.get("log") or {}
    log_s = f"{lg.get('lines', '?')} ({sum((lg.get('error_lines_per_5xx') or {}).values())})"
    return (f"| {ph['phase']} | {reqs}{rate} | {fmt_statuses(ph.get('statuses', {}))} | {lat_s} | "
            f"{kib(r['before_kib'])} → {kib(r['peak_kib'])} → {kib(r['after_kib'])} | "
            f"{ph.get('threads_peak')} / {ph.get('fds_peak')} | {log_s} | {extra} |")


def markdown(results: dict) -> str:
    m = results["machine"]
    out = [
        "# Control plane under resource-exhaustion attacks",
        "",
        f"Run {results['date']} with `{shlex.join(['python3', 'benches/attacks/control_plane.py', *results['argv']])}`"
        f" ({results['wall_s']:.0f} s).",
        "",
        f"Machine: {m['nproc']} CPUs ({m['cpu']}), {m['mem_total_mib']} MiB RAM "
        f"({m['mem_available_mib']} MiB available at start, swap {m['swap_mib']} MiB), Linux {m['kernel']}, "
        f"Python {m['python']}; load average at start {', '.join(f'{x:.2f}' for x in m['loadavg'])}, "
        f"{m['compiler_processes']} compiler processes running. Binary `{m['binary']}` built "
        f"{m['binary_mtime']} from {results['built_from']}. "
        "Client and server share the machine (no CPU pinning: pinning the server to one CPU would also halve "
        "its argon2 slots).",
        "",
        "RSS in MiB: VmRSS before the phase → peak (VmHWM after resetting it through `/proc/PID/clear_refs`, "
        "or the highest VmRSS sampled every 20 ms, whichever is higher) → VmRSS 3 s after. Latency p50 / p99 "
        "in ms over the attack's own requests. Threads / fds: the server's peak. Log: lines the server "
        "logged during the phase (of which tower_http's one ERROR line per 5xx answer).",
        "",
        "| attack / phase | requests | statuses | p50 / p99 ms | RSS before → peak → after | threads / fds | "
        "log (5xx ERROR) | details |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for a in results["attacks"]:
        for ph in a["phases"]:
            out.append(phase_row(ph))
    obs = [o for a in results["attacks"] for o in a.get("observations", [])]
    if obs:
        out += ["", "## Observations", ""] + [f"- {o}" for o in obs]
    out += ["", "## Checks", ""]
    for a in results["attacks"]:
        for c in a["checks"]:
            detail = c["detail"] if c["ok"] else json.dumps(c["detail"], default=str)[:400]
            out.append(f"- {'PASS' if c['ok'] else '**FAIL**'} {c['name']}" +
                       ("" if c["ok"] else f": `{detail}`"))
    out += ["", "## Configuration", "",
            "Base config (every attack; the rest are the defaults of config/control-plane.toml):", "",
            "```toml", results["base_config"].rstrip(), "```", ""]
    for a in results["attacks"]:
        ov = {k: v for k, v in a["overrides"].items() if v}
        out.append(f"- {a['id']}. {a['title']}: " + (", ".join(
            f"{(t + '.') if t else ''}{k} = {_toml_value(v)}" for t, kv in ov.items() for k, v in kv.items())
            or "defaults") + "".join(f"; {n}" for n in a["notes"]))
    out += ["", "## Details", ""]
    for a in results["attacks"]:
        out.append(f"### {a['id']}. {a['title']}")
        out.append("")
        for ph in a["phases"]:
            out.append(f"- **{ph['phase']}** ({ph['duration_s']} s)")
            for key in ("one_client", "refused_answer", "refused_after_s", "slow", "stalled", "ms_by_status"):
                if key in ph:
                    out.append(f"  - {key}: `{json.dumps(ph[key], default=str)[:600]}`")
            if "samples" in ph and ph["samples"]:
                for st, body in ph["samples"].items():
                    out.append(f"  - first {st} body: `{body[:200]}`")
            if "probe" in ph:
                pr = ph["probe"]
                out.append(f"  - probe: {fmt_statuses(pr['statuses'])}, all p50/p99 "
                           f"{pr['latency']['p50_ms']}/{pr['latency']['p99_ms']} ms, 200s "
                           f"{pr['ok_latency']} ")
            if "uploads" in ph:
                for u in ph["uploads"]:
                    out.append(f"  - upload: {u}")
        s = a["server"]
        out.append(f"- server log (whole run of the attack): {s['lines']} lines, {s['bytes']} bytes; one ERROR line "
                   f"per 5xx answer: {s['error_lines_per_5xx']}; {s['unexpected_error_lines']} other ERROR lines, "
                   f"{s['warn_lines']} WARN, {s['panics']} panics"
                   + (f"; e.g. `{s['unexpected_sample'][0][:300]}`" if s["unexpected_sample"] else "")
                   + (f"; WARN e.g. `{s['warn_sample'][0][:300]}`" if s["warn_sample"] else ""))
        out.append("")
    return "\n".join(out) + "\n"


ATTACKS = {1: attack_argon2, 2: attack_bombs, 3: attack_reset_flood, 4: attack_slowloris,
           5: attack_slow_upload, 6: attack_body_budget}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default="1,2,3,4,5,6", help="attack numbers, comma-separated")
    ap.add_argument("--no-build", action="store_true", help="reuse target/release/imgcdn")
    ap.add_argument("--binary", type=Path, help="the imgcdn binary to attack (implies --no-build)")
    ap.add_argument("--built-from", help="what the binary was built from, for the report "
                    "(default: this checkout's commit, and whether it has uncommitted changes)")
    ap.add_argument("--flood-secs", type=float, default=10.0, help="length of each argon2 flood (1a, 1b)")
    ap.add_argument("--baseline-logins", type=int, default=20)
    ap.add_argument("--reset-requests", type=int, default=50_000, help="3a: requests from one client")
    ap.add_argument("--reset-distinct-clients", type=int, default=20_000, help="3b: requests (0: skip)")
    ap.add_argument("--limiter-flood", type=int, default=200_000,
                    help="3c: bogus reset tokens from distinct IPv6 /64s to fill the rate limiter (0: skip)")
    ap.add_argument("--sustained-secs", type=int, default=20, help="4c: length of the sustained slowloris")
    ap.add_argument("--body-uploads", default="60,120",
                    help="6: concurrent 19.5 MB uploads per wave, comma-separated (a fresh process each)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (configs, logs, stores)")
    ap.add_argument("--out", default=str(REPO / "benches" / "results" / "attacks-control-plane"),
                    help="results path without extension")
    args = ap.parse_args()
    only = [int(x) for x in args.only.split(",") if x.strip()]
    global BINARY
    if args.binary:
        BINARY = args.binary.resolve()
    elif not args.no_build:
        subprocess.run(["cargo", "build", "--release", "-p", "imgcdn"], cwd=REPO, check=True)
    if not BINARY.exists():
        sys.exit(f"{BINARY} missing: build it (cargo build --release -p imgcdn)")
    stop_all_on_exit()
    root = Path(tempfile.mkdtemp(prefix="imgcdn-attacks-"))
    started = time.time()
    mach = machine()
    built_from = args.built_from or (mach["git_commit"] + (" + uncommitted changes" if mach["git_dirty"] else ""))
    results = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "argv": sys.argv[1:],
               "built_from": built_from, "machine": mach, "base_config": toml_text(base_config(Path("$WORK"), 0)).replace(
                   "127.0.0.1:0", "127.0.0.1:$PORT"), "attacks": []}
    try:
        for n in only:
            log(f"attack {n}: {ATTACKS[n].__name__[len('attack_'):]}")
            results["attacks"].append(ATTACKS[n](root, args))
    finally:
        results["wall_s"] = time.time() - started
        for a in results["attacks"]:
            for ph in a["phases"]:
                lg = ph.get("log") or {}
                n5 = sum((lg.get("error_lines_per_5xx") or {}).values())
                if n5 >= 1000:
                    a.setdefault("observations", []).append(
                        f"{ph['phase'].split(' ', 1)[0]}: the server logged {n5} ERROR lines, one per 5xx answer "
                        f"({lg['bytes'] / 1e6:.1f} MB of log in {ph['duration_s']} s)")
        if results["attacks"]:
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.out + ".json").write_text(json.dumps(results, indent=1, default=str))
            Path(args.out + ".md").write_text(markdown(results))
            log(f"results: {args.out}.md / .json")
        if args.keep:
            log(f"work directory kept: {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    print()
    print("| attack / phase | requests | statuses | p50 / p99 ms | RSS MiB before → peak → after | threads / fds "
          "| log (5xx ERROR) | details |")
    for a in results["attacks"]:
        for ph in a["phases"]:
            print(phase_row(ph))
    failed = [c for a in results["attacks"] for c in a["checks"] if not c["ok"]]
    for a in results["attacks"]:
        for c in a["checks"]:
            print(f"{'PASS' if c['ok'] else 'FAIL'} {c['name']}" + ("" if c["ok"] else f": {c['detail']}"))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
