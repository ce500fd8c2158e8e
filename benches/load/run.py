#!/usr/bin/env python3
"""imgcdn load benchmark: the edge side by side with nginx and Varnish.

One command, same machine, same run (issue 6):

    python3 benches/load/run.py            # full run (~20 min), writes benches/results/latest.{json,md}
    python3 benches/load/run.py --quick    # smoke test (~2 min), writes benches/results/quick.{json,md}

What it does, in order:

1. Builds the edge (`cargo build --release -p imgcdn`) unless --no-build.
2. Installs nginx, varnish, wrk and h2load (nghttp2-client) from Debian
   packages if any is missing (apt-get update first; needs root).
3. Generates seeded, reproducible data sets (cached under
   target/bench-load/data): valid PNG files of noise stored without
   compression, with log-normal sizes (median ~35 KB, tail to 2 MB), plus a
   set of ~2 KB thumbnails. Each set is written as an edge fs store
   (objects/{id} + manifests/{id}.json with sha256, bytes, content type) and
   the same files (hard links) in a plain directory at the URL paths
   /{shard}/{id}.png for nginx.
4. For each scenario, starts on 127.0.0.1 and free ports, each with its own
   config files under target/bench-load/run: the edge (release binary);
   nginx serving the directory (sendfile, open_file_cache, access_log off,
   worker_processes = edge threads); Varnish (malloc storage sized like the
   edge memory tier) in front of a second, identical nginx. Servers are
   pinned to --server-cpus, the load generator to --client-cpus (taskset).
5. Drives each with the same load: wrk replaying one seeded Zipf-distributed
   key sequence (zipf.lua), 64 and 256 connections, a warm-up, then several
   rounds alternating edge/nginx/varnish (rotating the order each round) so
   drift hits all alike. HTTP/2 (h2c, prior knowledge) uses h2load.
6. Reports requests/s, MB/s, p50/p99/p99.9 latency, errors (non-2xx/3xx and
   socket errors), server CPU time per request, load-generator CPU use and
   peak RSS (VmHWM, summed over a server's processes), and the ratios
   edge/nginx and edge/varnish; writes JSON and a Markdown table.

Every process it starts is killed on exit (normal, error or Ctrl-C). All
traffic stays on 127.0.0.1. This is not part of the test suite: it measures
wall-clock time, which tests never do.
"""

from __future__ import annotations

import argparse
import atexit
import datetime
import hashlib
import http.client
import json
import math
import os
import platform
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import zlib
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
RESULTS = REPO / "benches" / "results"
WORK = REPO / "target" / "bench-load"
LUA = HERE / "zipf.lua"
MIB = 1024 * 1024

# ---------------------------------------------------------------- ids & shards
# Mirrors shared/src/id.rs: the shard is FNV-1a 64 of the id's 8 bytes,
# mod 62^3, as 3 base62 digits (most significant first).
ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def shard_of(image_id: str) -> str:
    h = 0xCBF29CE484222325
    for b in image_id.encode():
        h ^= b
        h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    n = h % (62 ** 3)
    out = []
    for _ in range(3):
        out.append(ALPHABET[n % 62])
        n //= 62
    return "".join(reversed(out))


# Pinned in shared/src/id.rs; if these fail, the URLs would all be 404s.
assert [shard_of(s) for s in ("00000000", "aB3dE6gH", "zzzzzzzz")] == ["V3N", "PaH", "Mth"]


# ------------------------------------------------------------------ data sets
def png_bytes(rng: random.Random, target: int) -> tuple[bytes, int, int]:
    """A valid RGB PNG of about `target` bytes: noise rows in stored
    (uncompressed) deflate blocks, so the size is what we ask for."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            len(data).to_bytes(4, "big")
            + kind
            + data
            + (zlib.crc32(kind + data) & 0xFFFFFFFF).to_bytes(4, "big")
        )

    overhead = 8 + 25 + 12 + 12 + 6  # signature, IHDR, IDAT and IEND framing, zlib
    payload = max(16, target - overhead)
    width = max(4, min(2048, int(math.sqrt(payload / 3))))
    row = 1 + 3 * width
    height = max(1, round(payload / row))
    raw = b"".join(b"\x00" + rng.randbytes(3 * width) for _ in range(height))
    ihdr = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 2, 0, 0, 0])
    data = (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(raw, 0))
        + chunk(b"IEND", b"")
    )
    return data, width, height


def gen_id(rng: random.Random) -> str:
    return "".join(rng.choice(ALPHABET) for _ in range(8))


class Dataset:
    """A generated set: `store/` (edge fs store) and `www/` (nginx root)."""

    def __init__(self, root: Path, keys: list[dict]):
        self.root = root
        self.store = root / "store"
        self.www = root / "www"
        self.keys = keys  # [{id, path, bytes, sha256}]
        self.total = sum(k["bytes"] for k in keys)

    def sizes(self) -> list[int]:
        return sorted(k["bytes"] for k in self.keys)


def make_dataset(
    name: str, n: int, median: int, sigma: float, lo: int, hi: int, seed: int
) -> Dataset:
    """Generate (or reuse, when the same parameters were generated before) a data set."""
    params = dict(name=name, n=n, median=median, sigma=sigma, lo=lo, hi=hi, seed=seed, v=1)
    tag = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:10]
    root = WORK / "data" / f"{name}-{tag}"
    index = root / "index.json"
    if index.exists():
        keys = json.loads(index.read_text())["keys"]
        return Dataset(root, keys)
    if root.exists():
        shutil.rmtree(root)
    (root / "store" / "objects").mkdir(parents=True)
    (root / "store" / "manifests").mkdir(parents=True)
    (root / "www").mkdir(parents=True)
    rng = random.Random(f"{seed}:{name}")
    seen: set[str] = set()
    keys = []
    t0 = time.time()
    for _ in range(n):
        image_id = gen_id(rng)
        while image_id in seen:
            image_id = gen_id(rng)
        seen.add(image_id)
        size = int(math.exp(rng.gauss(math.log(median), sigma)))
        size = max(lo, min(hi, size))
        data, width, height = png_bytes(rng, size)
        sha = hashlib.sha256(data).hexdigest()
        obj = root / "store" / "objects" / image_id
        obj.write_bytes(data)
        manifest = {
            "content_type": "image/png",
            "bytes": len(data),
            "sha256": sha,
            "width": width,
            "height": height,
            "expires_at": None,
            "transformable": True,
        }
        # Object first, manifest last, as the control plane writes them.
        (root / "store" / "manifests" / f"{image_id}.json").write_text(json.dumps(manifest))
        shard = shard_of(image_id)
        (root / "www" / shard).mkdir(exist_ok=True)
        www = root / "www" / shard / f"{image_id}.png"
        try:
            os.link(obj, www)
        except OSError:
            shutil.copyfile(obj, www)
        keys.append(
            {"id": image_id, "path": f"/{shard}/{image_id}.png", "bytes": len(data), "sha256": sha}
        )
    # nginx workers run as nobody: everything must be world-readable.
    for dirpath, dirnames, filenames in os.walk(root):
        os.chmod(dirpath, 0o755)
        for f in filenames:
            os.chmod(os.path.join(dirpath, f), 0o644)
    index.write_text(json.dumps({"params": params, "keys": keys}))
    log(f"generated data set {name}: {n} files, {sum(k['bytes'] for k in keys) / MIB:.1f} MiB "
        f"in {time.time() - t0:.1f}s -> {root}")
    return Dataset(root, keys)


def zipf_sequence(keys: list[dict], length: int, s: float, seed: int) -> list[str]:
    """`length` paths drawn with Zipf(s) popularity; rank order is a seeded
    shuffle of the keys, so popularity is independent of size."""
    rng = random.Random(f"{seed}:zipf")
    ranked = [k["path"] for k in keys]
    rng.shuffle(ranked)
    cum, acc = [], 0.0
    for r in range(1, len(ranked) + 1):
        acc += 1.0 / (r ** s)
        cum.append(acc)
    return rng.choices(ranked, cum_weights=cum, k=length)


# -------------------------------------------------------------- processes
PROCS: list[subprocess.Popen] = []


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def children_of(pid: int) -> list[int]:
    """pid and all its descendants (from /proc)."""
    parent: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            stat = Path(f"/proc/{d}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        parent.setdefault(ppid, []).append(int(d))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(parent.get(p, []))
    return out


def start(cmd: list[str], cpus: str, logfile: Path, env: dict | None = None) -> subprocess.Popen:
    """Start a server pinned to `cpus`, in its own process group."""
    f = open(logfile, "ab")
    p = subprocess.Popen(
        ["taskset", "-c", cpus, *cmd],
        stdout=f,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        env={**os.environ, **(env or {})},
    )
    f.close()
    PROCS.append(p)
    return p


def stop(p: subprocess.Popen) -> None:
    """SIGTERM the process, its group and every descendant; SIGKILL whatever
    is still alive 5 s later. Only processes this script started."""
    if p in PROCS:
        PROCS.remove(p)
    if p.poll() is not None:
        return
    pids = children_of(p.pid)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(p.pid, sig)
        except ProcessLookupError:
            pass
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.time() + 5
        while time.time() < deadline:
            p.poll()
            if p.returncode is not None and not any(_alive(x) for x in pids[1:]):
                return
            time.sleep(0.05)
    try:
        p.wait(timeout=5)
    except subprocess.TimeoutExpired:
        print(f"could not stop pid {p.pid}", file=sys.stderr)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    except OSError:
        return False


def stop_all() -> None:
    for p in list(PROCS):
        try:
            stop(p)
        except Exception as e:  # noqa: BLE001 - cleanup must go on
            print(f"cleanup: {e}", file=sys.stderr)


def on_signal(signum, _frame):
    stop_all()
    sys.exit(128 + signum)


def http_get(port: int, path: str, timeout: float = 5.0) -> tuple[int, bytes, dict]:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, r.read(), {k.lower(): v for k, v in r.getheaders()}
    finally:
        c.close()


def wait_http(port: int, path: str, proc: subprocess.Popen, what: str, logfile: Path,
              timeout: float = 30.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            break
        try:
            status, _, _ = http_get(port, path, timeout=2)
            if status < 500:
                return
        except OSError:
            pass
        time.sleep(0.1)
    tail = logfile.read_text(errors="replace")[-3000:] if logfile.exists() else ""
    raise RuntimeError(f"{what} did not come up on port {port}:\n{tail}")


def cpu_ticks(pid: int) -> int:
    """utime+stime (clock ticks) of pid and its descendants."""
    total = 0
    for p in children_of(pid):
        try:
            f = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(f[11]) + int(f[12])
        except (OSError, IndexError, ValueError):
            pass
    return total


def peak_rss_kib(pid: int) -> int:
    """Sum of VmHWM over pid and its descendants (kB)."""
    total = 0
    for p in children_of(pid):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


# ---------------------------------------------------------------- servers
class Server:
    """One contender: a name, the port the load goes to, the processes that
    count for CPU (`cpu_pids`) and for peak RSS (`rss_pids`)."""

    def __init__(self, name: str, port: int, h2_port: int, cpu_procs, rss_procs, admin=None):
        self.name = name
        self.port = port
        self.h2_port = h2_port
        self.cpu_procs = cpu_procs
        self.rss_procs = rss_procs
        self.admin = admin

    def cpu(self) -> int:
        return sum(cpu_ticks(p.pid) for p in self.cpu_procs)

    def rss_kib(self) -> int:
        return sum(peak_rss_kib(p.pid) for p in self.rss_procs)

    def tiers(self) -> dict[str, float]:
        """Edge only: requests answered so far, by status/tier (from /metrics)."""
        if self.admin is None:
            return {}
        _, body, _ = http_get(self.admin, "/metrics")
        out = {}
        for line in body.decode().splitlines():
            m = re.match(r'imgcdn_edge_requests_total\{status="(\w+)",tier="(\w+)"\} (\S+)', line)
            if m:
                out[f"{m.group(1)}/{m.group(2)}"] = float(m.group(3))
        return out


def start_edge(run: Path, ds: Dataset, sc: dict, args) -> Server:
    port, admin = free_port(), free_port()
    disk = run / "edge-cache"
    if disk.exists():
        shutil.rmtree(disk)
    mem = sc["memory_bytes"]
    conf = run / "edge.toml"
    conf.write_text(
        f'listen = ["127.0.0.1:{port}"]\n'
        f'admin_listen = "127.0.0.1:{admin}"\n'
        f"h2c = true\n"
        f"threads = {args.server_threads}\n"
        f"grace_period_secs = 1\nshutdown_timeout_secs = 2\nkeepalive_secs = 60\n"
        f"[store]\nscheme = \"fs\"\nroot = {json.dumps(str(ds.store))}\n"
        f"[memory]\nmax_bytes = {mem}\nmax_object_bytes = {min(mem, 8 * MIB)}\n"
        f"[disk]\npath = {json.dumps(str(disk))}\nmax_bytes = {sc['disk_bytes']}\n"
        f"[origin]\ntimeout_ms = 10000\nmax_concurrent = 64\nnegative_ttl_secs = 5\n"
    )
    logfile = run / "edge.log"
    p = start([str(args.binary), "edge", "--config", str(conf)], args.server_cpus, logfile,
              env={"RUST_LOG": "warn"})
    wait_http(admin, "/readyz", p, "edge", logfile)
    wait_http(port, ds.keys[0]["path"], p, "edge", logfile)
    return Server("edge", port, port, [p], [p], admin=admin)


def nginx_conf(run: Path, name: str, root: Path, port: int, h2_port: int, workers: int,
               nopush: str = "on") -> Path:
    prefix = run / name
    prefix.mkdir(exist_ok=True)
    for d in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (prefix / d).mkdir(exist_ok=True)
    conf = prefix / "nginx.conf"
    server = f"root {root};"
    conf.write_text(f"""
# nginx's best static-file setup for this benchmark (generated by run.py).
worker_processes {workers};
worker_rlimit_nofile 65536;
daemon off;
master_process on;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 16384; use epoll; multi_accept on; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush {nopush};
    tcp_nodelay on;
    open_file_cache max=200000 inactive=300s;
    open_file_cache_valid 300s;
    open_file_cache_min_uses 1;
    open_file_cache_errors on;
    keepalive_timeout 65;
    keepalive_requests 10000000;
    server_tokens off;
    types {{ image/png png; image/jpeg jpg; }}
    default_type application/octet-stream;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        {server}
    }}
    server {{
        # h2c with prior knowledge (plaintext HTTP/2 only on this port).
        listen 127.0.0.1:{h2_port} http2 backlog=4096;
        {server}
    }}
}}
""")
    return conf


def start_nginx(run: Path, name: str, ds: Dataset, args) -> tuple[subprocess.Popen, int, int]:
    port, h2_port = free_port(), free_port()
    conf = nginx_conf(run, name, ds.www, port, h2_port, args.server_threads, args.nginx_nopush)
    logfile = run / f"{name}.log"
    p = start(["nginx", "-e", str(run / name / "error.log"), "-c", str(conf)], args.server_cpus,
              logfile)
    wait_http(port, ds.keys[0]["path"], p, name, logfile)
    return p, port, h2_port


def start_varnish(run: Path, ds: Dataset, sc: dict, backend_port: int, args) -> tuple:
    port = free_port()
    workdir = run / "varnish"
    if workdir.exists():
        shutil.rmtree(workdir)
    vcl = run / "bench.vcl"
    recv = "return (pass);" if sc["cold"] else "return (hash);"
    vcl.write_text(f"""vcl 4.1;
# Generated by benches/load/run.py.
backend default {{ .host = "127.0.0.1"; .port = "{backend_port}"; }}
sub vcl_recv {{ {recv} }}
sub vcl_backend_response {{ set beresp.ttl = 1d; set beresp.grace = 1h; }}
""")
    logfile = run / "varnish.log"
    malloc = max(sc["memory_bytes"], 16 * MIB)
    p = start(
        ["varnishd", "-F", "-n", str(workdir), "-a", f"127.0.0.1:{port}", "-f", str(vcl),
         "-T", "127.0.0.1:0", "-s", f"malloc,{malloc}", "-p", "thread_pools=1",
         "-p", "feature=+http2", "-p", "default_ttl=86400"],
        args.server_cpus, logfile)
    wait_http(port, ds.keys[0]["path"], p, "varnish", logfile, timeout=60)
    return p, port


# ------------------------------------------------------------ load drivers
def wait_rusage(p: subprocess.Popen, timeout: float) -> float:
    """Wait for p; return its CPU seconds (user+sys)."""
    deadline = time.time() + timeout
    while True:
        pid, status, ru = os.wait4(p.pid, os.WNOHANG)
        if pid == p.pid:
            p.returncode = os.waitstatus_to_exitcode(status)
            return ru.ru_utime + ru.ru_stime
        if time.time() > deadline:
            p.kill()
            os.wait4(p.pid, 0)
            raise RuntimeError("load generator overran its time limit")
        time.sleep(0.05)


def run_wrk(port: int, conns: int, secs: float, paths_file: Path, args) -> dict:
    cmd = ["taskset", "-c", args.client_cpus, "wrk", "-t", str(args.client_threads),
           "-c", str(conns), "-d", f"{max(1, round(secs))}s", "--timeout", "5s", "-s", str(LUA),
           f"http://127.0.0.1:{port}", "--", str(paths_file)]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    cpu = wait_rusage(p, secs + 60)
    out, err = p.stdout.read(), p.stderr.read()
    line = next((x for x in out.splitlines() if x.startswith("BENCH_JSON ")), None)
    if p.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({p.returncode}): {out}\n{err}")
    w = json.loads(line[len("BENCH_JSON "):])
    dur = w["duration_us"] / 1e6
    errors = w["err_connect"] + w["err_read"] + w["err_write"] + w["err_status"] + w["err_timeout"]
    return {
        "requests": w["requests"],
        "duration_s": dur,
        "rps": w["requests"] / dur,
        "mbps": w["bytes"] / dur / 1e6,
        "p50_ms": w["p50_us"] / 1000,
        "p99_ms": w["p99_us"] / 1000,
        "p999_ms": w["p999_us"] / 1000,
        "max_ms": w["lat_max_us"] / 1000,
        "errors": errors,
        "errors_detail": {k: w[k] for k in w if k.startswith("err_")},
        "client_cpu": cpu / dur,
    }


def h2_shape(conns: int) -> tuple[int, int]:
    """Concurrency `conns` for HTTP/2: clients x streams per client."""
    streams = 4 if conns <= 64 else 8
    return max(1, conns // streams), streams


def run_h2load(port: int, conns: int, secs: float, uri_file: Path, run: Path, args) -> dict:
    clients, streams = h2_shape(conns)
    logf = run / "h2load-requests.log"
    warm = 1
    cmd = ["taskset", "-c", args.client_cpus, "h2load", "-t", str(args.client_threads),
           "-c", str(clients), "-m", str(streams), "-D", str(int(max(1, secs))),
           "--warm-up-time", str(warm), "-i", str(uri_file), "--log-file", str(logf)]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    cpu = wait_rusage(p, secs + warm + 60)
    out, err = p.stdout.read(), p.stderr.read()
    m = re.search(r"finished in ([\d.]+)(m?s), ([\d.]+) req/s", out)
    r = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                  r"(\d+) failed, (\d+) errored, (\d+) timeout", out)
    t = re.search(r"traffic: .*?\((\d+)\) total", out)
    sc = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
    if p.returncode != 0 or not (m and r and t and sc):
        raise RuntimeError(f"h2load failed ({p.returncode}): {out}\n{err}")
    dur = float(m.group(1)) / (1000 if m.group(2) == "ms" else 1)
    done, succeeded, failed, errored, timeout = (int(r.group(i)) for i in (3, 4, 5, 6, 7))
    lat = []
    first = None
    for row in logf.read_text().splitlines():
        parts = row.split("\t")
        if len(parts) < 3:
            continue
        start_us, elapsed = int(parts[0]), int(parts[2])
        first = start_us if first is None else min(first, start_us)
        lat.append((start_us, elapsed))
    # Keep requests started after the warm-up period.
    lat = sorted(e for s, e in lat if first is None or s >= first + warm * 1_000_000) or [0]

    def pct(q: float) -> float:
        return lat[min(len(lat) - 1, int(math.ceil(q / 100 * len(lat))) - 1)] / 1000

    logf.unlink()
    return {
        "requests": done,
        "duration_s": dur,
        "rps": float(m.group(3)),
        "mbps": int(t.group(1)) / dur / 1e6,
        "p50_ms": pct(50),
        "p99_ms": pct(99),
        "p999_ms": pct(99.9),
        "max_ms": lat[-1] / 1000,
        "errors": max(failed, done - succeeded) + errored + timeout,
        "errors_detail": {"failed": failed, "errored": errored, "timeout": timeout,
                          "3xx": int(sc.group(2)), "4xx": int(sc.group(3)),
                          "5xx": int(sc.group(4))},
        "client_cpu": cpu / dur,
        "h2_clients": clients,
        "h2_streams_per_client": streams,
    }


def prewarm(port: int, ds: Dataset, budget_s: float = 180) -> None:
    """Request every key once over one keep-alive connection."""
    deadline = time.time() + budget_s
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        for k in ds.keys:
            if time.time() > deadline:
                log("  prewarm stopped at its time budget")
                break
            c.request("GET", k["path"])
            r = c.getresponse()
            r.read()
            if r.status != 200:
                raise RuntimeError(f"prewarm: {k['path']} -> {r.status}")
    finally:
        c.close()


def verify(server: Server, ds: Dataset) -> None:
    """Each server must return the right bytes for a sample of keys."""
    rng = random.Random(1)
    for k in rng.sample(ds.keys, min(8, len(ds.keys))):
        status, body, headers = http_get(server.port, k["path"], timeout=10)
        if status != 200 or hashlib.sha256(body).hexdigest() != k["sha256"]:
            raise RuntimeError(f"{server.name}: {k['path']} -> {status}, wrong body")
        if headers.get("content-type") != "image/png":
            raise RuntimeError(f"{server.name}: content-type {headers.get('content-type')}")


# ---------------------------------------------------------------- scenarios
def scenarios(args, main: Dataset, small: Dataset) -> list[dict]:
    hot_mem = max(64 * MIB, int(main.total * 1.5))
    small_mem = max(64 * MIB, int(small.total * 2))
    disk = 8 * 1024 * MIB
    out = [
        dict(name="hot", tool="wrk", ds=main, memory_bytes=hot_mem, disk_bytes=disk, cold=False,
             prewarm=True,
             desc="hot set: every key fits the edge memory tier (and Varnish's malloc storage)"),
        dict(name="disk", tool="wrk", ds=main, memory_bytes=max(4 * MIB, main.total // 8),
             disk_bytes=disk, cold=False, prewarm=True,
             desc="working set 8x the memory tier, all of it in the disk tier "
                  "(Varnish: same malloc size, evicts to its nginx backend)"),
        # disk.max_bytes = 1, not 0: with 0 the disk index (moka, capacity 0)
        # keeps nothing and never reports an eviction, so every miss leaves
        # its file behind for good (an edge bug, reported; not benchmarked).
        dict(name="cold", tool="wrk", ds=main, memory_bytes=0, disk_bytes=1, cold=True,
             prewarm=False,
             desc="every request a miss: edge memory budget 0, disk budget 1 byte (each request "
                  "reads the fs origin, verifies sha256, writes+drops the disk entry); Varnish "
                  "return(pass) to nginx; the store files are in the OS page cache"),
        dict(name="small", tool="wrk", ds=small, memory_bytes=small_mem, disk_bytes=disk,
             cold=False, prewarm=True,
             desc="~2 KB thumbnails, all in memory: per-request overhead"),
        dict(name="h2c", tool="h2load", ds=main, memory_bytes=hot_mem, disk_bytes=disk,
             cold=False, prewarm=True,
             desc="hot set over HTTP/2 cleartext (prior knowledge), h2load"),
    ]
    wanted = args.scenarios.split(",") if args.scenarios else [s["name"] for s in out]
    unknown = set(wanted) - {s["name"] for s in out}
    if unknown:
        sys.exit(f"unknown scenarios: {', '.join(sorted(unknown))}")
    return [s for s in out if s["name"] in wanted]


def median_of(runs: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def summarize(runs: list[dict]) -> dict:
    keys = ["rps", "mbps", "p50_ms", "p99_ms", "p999_ms", "server_cpu_us_per_req",
            "server_cpu_util", "client_cpu"]
    s = {k: median_of(runs, k) for k in keys}
    s["errors"] = sum(r["errors"] for r in runs)
    s["requests"] = sum(r["requests"] for r in runs)
    s["rounds"] = len(runs)
    s["rps_min"] = min(r["rps"] for r in runs)
    s["rps_max"] = max(r["rps"] for r in runs)
    answers: dict[str, float] = {}
    for r in runs:
        for k, v in r.get("edge_answers", {}).items():
            answers[k] = answers.get(k, 0) + v
    if answers:
        total = sum(answers.values())
        by_tier: dict[str, float] = {}
        for k, v in answers.items():
            tier = k.split("/", 1)[1]
            by_tier[tier] = by_tier.get(tier, 0) + v
        s["edge_tier_share"] = {t: v / total for t, v in sorted(by_tier.items())}
    return s


def run_scenario(sc: dict, args) -> dict:
    ds: Dataset = sc["ds"]
    run = WORK / "run" / sc["name"]
    if run.exists():
        shutil.rmtree(run)
    run.mkdir(parents=True)
    os.chmod(run, 0o755)
    log(f"scenario {sc['name']}: {sc['desc']}")
    log(f"  data set {ds.root.name}: {len(ds.keys)} files, {ds.total / MIB:.1f} MiB; "
        f"edge memory {sc['memory_bytes'] / MIB:.1f} MiB, disk {sc['disk_bytes'] / MIB:.0f} MiB")

    # The key stream: one seeded Zipf sequence, the same for every server.
    seq = zipf_sequence(ds.keys, args.sequence, args.zipf, args.seed)
    paths_file = run / "paths.txt"
    paths_file.write_text("\n".join(seq) + "\n")

    servers: list[Server] = []
    procs = []
    try:
        edge = start_edge(run, ds, sc, args)
        servers.append(edge)
        ng, ng_port, ng_h2 = start_nginx(run, "nginx", ds, args)
        procs.append(ng)
        servers.append(Server("nginx", ng_port, ng_h2, [ng], [ng]))
        backend, be_port, _ = start_nginx(run, "nginx-backend", ds, args)
        procs.append(backend)
        va, va_port = start_varnish(run, ds, sc, be_port, args)
        procs.append(va)
        # Varnish's CPU counts its nginx backend (the whole stack answers);
        # its RSS is varnishd's alone (the backend's is reported separately).
        servers.append(Server("varnish", va_port, va_port, [va, backend], [va]))
        servers = [s for s in servers if s.name in args.servers.split(",")]

        for s in servers:
            if sc["prewarm"]:
                t0 = time.time()
                prewarm(s.port, ds)
                log(f"  prewarmed {s.name} with all {len(ds.keys)} keys in {time.time() - t0:.1f}s")
            verify(s, ds)

        if sc["tool"] == "h2load":
            uri_files = {}
            for s in servers:
                f = run / f"uris-{s.name}.txt"
                f.write_text("".join(f"http://127.0.0.1:{s.h2_port}{p}\n"
                                     for p in seq[: args.h2_uris]))
                uri_files[s.name] = f

        def drive(s: Server, conns: int, secs: float) -> dict:
            if sc["tool"] == "h2load":
                return run_h2load(s.h2_port, conns, secs, uri_files[s.name], run, args)
            return run_wrk(s.port, conns, secs, paths_file, args)

        per_conns = []
        for conns in args.connections:
            for s in servers:
                drive(s, conns, args.warmup)
            results: dict[str, list[dict]] = {s.name: [] for s in servers}
            for rnd in range(args.rounds):
                order = servers[rnd % len(servers):] + servers[: rnd % len(servers)]
                for s in order:
                    cpu0, tiers0 = s.cpu(), s.tiers()
                    r = drive(s, conns, args.duration)
                    cpu = (s.cpu() - cpu0) / os.sysconf("SC_CLK_TCK")
                    r["server_cpu_s"] = cpu
                    r["server_cpu_util"] = cpu / r["duration_s"]
                    r["server_cpu_us_per_req"] = cpu / max(1, r["requests"]) * 1e6
                    r["round"] = rnd
                    if s.admin:
                        tiers1 = s.tiers()
                        r["edge_answers"] = {k: v - tiers0.get(k, 0) for k, v in tiers1.items()
                                             if v - tiers0.get(k, 0) > 0}
                    results[s.name].append(r)
                    log(f"  {sc['name']:5} c={conns:<3} round {rnd + 1}/{args.rounds} "
                        f"{s.name:7} {r['rps']:9.0f} req/s {r['mbps']:8.1f} MB/s "
                        f"p50 {r['p50_ms']:6.2f} p99 {r['p99_ms']:6.2f} p99.9 {r['p999_ms']:6.2f} ms "
                        f"err {r['errors']} srv-cpu {r['server_cpu_util']:.2f} "
                        f"({r['server_cpu_us_per_req']:.1f} us/req) client-cpu {r['client_cpu']:.2f}")
            summary = {name: summarize(rs) for name, rs in results.items()}
            entry = {"connections": conns, "summary": summary, "runs": results}
            if sc["tool"] == "h2load":
                entry["h2_clients"], entry["h2_streams_per_client"] = h2_shape(conns)
            e = summary.get("edge")
            for other in ("nginx", "varnish"):
                o = summary.get(other)
                if e and o:
                    entry[f"edge/{other}"] = {
                        "rps": e["rps"] / o["rps"] if o["rps"] else None,
                        "p99": e["p99_ms"] / o["p99_ms"] if o["p99_ms"] else None,
                        "cpu_per_req": (e["server_cpu_us_per_req"] / o["server_cpu_us_per_req"]
                                        if o["server_cpu_us_per_req"] else None),
                    }
            per_conns.append(entry)
        rss = {s.name: s.rss_kib() for s in servers}
        rss["nginx-backend(varnish)"] = peak_rss_kib(backend.pid)
        return {
            "name": sc["name"],
            "description": sc["desc"],
            "tool": sc["tool"],
            "dataset": {"files": len(ds.keys), "bytes": ds.total,
                        "median_bytes": statistics.median(ds.sizes()),
                        "max_bytes": max(ds.sizes())},
            "edge_memory_bytes": sc["memory_bytes"],
            "edge_disk_bytes": sc["disk_bytes"],
            "varnish_malloc_bytes": max(sc["memory_bytes"], 16 * MIB),
            "peak_rss_kib": rss,
            "results": per_conns,
        }
    finally:
        for s in list(servers):
            for p in s.cpu_procs + s.rss_procs:
                stop(p)
        for p in procs:
            stop(p)
        for p in list(PROCS):
            stop(p)
        # The edge's disk tier can hold the whole data set: don't leave it behind.
        shutil.rmtree(run / "edge-cache", ignore_errors=True)


# ------------------------------------------------------------------ report
def machine() -> dict:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = 0
    try:
        mem = int(Path("/proc/meminfo").read_text().split()[1]) // 1024
    except (OSError, ValueError, IndexError):
        pass
    return {"nproc": os.cpu_count(), "cpu_model": model, "kernel": platform.release(),
            "mem_mib": mem, "hostname_hash": hashlib.sha256(platform.node().encode()).hexdigest()[:8]}


def tool_versions() -> dict:
    def out(cmd):
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
            return (r.stdout + r.stderr).strip().splitlines()[0]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            return None

    return {"nginx": out(["nginx", "-v"]), "varnish": out(["varnishd", "-V"]),
            "wrk": out(["wrk", "-v"]), "h2load": out(["h2load", "--version"]),
            "imgcdn": out(["git", "-C", str(REPO), "describe", "--always", "--dirty"])}


def edge_version(binary: Path) -> str:
    """Which build was measured: the tree's commit, and the binary's path and mtime."""
    tree = tool_versions()["imgcdn"]
    try:
        built = datetime.datetime.fromtimestamp(binary.stat().st_mtime, datetime.timezone.utc)
        return f"tree {tree}; binary {binary} built {built.isoformat(timespec='seconds')}"
    except OSError:
        return f"tree {tree}; binary {binary}"


def busy_compilers() -> int:
    n = 0
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                if Path(f"/proc/{d}/comm").read_text().strip() in ("rustc", "cc1", "cc1plus", "ld"):
                    n += 1
            except OSError:
                pass
    return n


def cpu_share_note(report: dict) -> str:
    """How much of its CPU each server got while driven: well below 1 with a
    client-side CPU below 1 means other work on the machine held the core."""
    utils = [r["server_cpu_util"] for sc in report["scenarios"] for e in sc["results"]
             for runs in e["runs"].values() for r in runs]
    if not utils:
        return "n/a"
    utils.sort()
    return (f"median {statistics.median(utils):.2f} of one core per measured round "
            f"(min {utils[0]:.2f}, max {utils[-1]:.2f}); rounds far below 1.0 were slowed by "
            f"other work on the machine, so compare CPU µs/req as well as req/s")


def fmt_ratio(x) -> str:
    return "–" if x is None else f"{x:.2f}"


def markdown(report: dict) -> str:
    m = report["machine"]
    lines = [
        f"# imgcdn load benchmark ({report['mode']})",
        "",
        f"- date: {report['date']}",
        f"- machine: {m['nproc']} CPUs ({m['cpu_model']}), {m['mem_mib']} MiB, Linux {m['kernel']}",
        f"- CPU placement: {report['pinning']}",
        f"- load: {report['load_note']}",
        f"- server CPU share: {cpu_share_note(report)}",
        f"- data: {report['data_note']}",
        f"- tools: {', '.join(f'{k} {v}' for k, v in report['versions'].items() if v)}",
        "",
        "Medians over rounds. req/s and ratios: higher is better for the edge; "
        "p99 and CPU µs/req: lower is better. `e/n/v` = edge/nginx/varnish. "
        "Server CPU counts all of a server's processes (Varnish: plus its nginx "
        "backend). Peak RSS is VmHWM summed over the server's processes.",
        "",
        "| scenario | conns | edge req/s | nginx req/s | varnish req/s | edge/nginx | "
        "edge/varnish | MB/s e/n/v | p50 ms e/n/v | p99 ms e/n/v | p99.9 ms e/n/v | "
        "CPU µs/req e/n/v | errors e/n/v |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for sc in report["scenarios"]:
        for entry in sc["results"]:
            s = entry["summary"]
            names = ["edge", "nginx", "varnish"]

            def col(key, f="{:.0f}"):
                return "/".join(f.format(s[n][key]) if n in s else "–" for n in names)

            def one(n, key):
                return f"{s[n][key]:.0f}" if n in s else "–"

            conns = str(entry["connections"])
            if "h2_clients" in entry:
                conns += f" ({entry['h2_clients']}×{entry['h2_streams_per_client']})"
            lines.append(
                f"| {sc['name']} | {conns} | {one('edge', 'rps')} | {one('nginx', 'rps')} | "
                f"{one('varnish', 'rps')} | "
                f"{fmt_ratio(entry.get('edge/nginx', {}).get('rps'))} | "
                f"{fmt_ratio(entry.get('edge/varnish', {}).get('rps'))} | "
                f"{col('mbps')} | {col('p50_ms', '{:.2f}')} | {col('p99_ms', '{:.2f}')} | "
                f"{col('p999_ms', '{:.2f}')} | {col('server_cpu_us_per_req', '{:.0f}')} | "
                f"{col('errors', '{:d}')} |"
            )
    lines += ["", "| scenario | what | peak RSS MiB edge / nginx / varnish (+ its nginx) |",
              "|---|---|---|"]
    for sc in report["scenarios"]:
        r = sc["peak_rss_kib"]

        def mib(k):
            return f"{r[k] / 1024:.0f}" if k in r else "–"

        lines.append(f"| {sc['name']} | {sc['description']} | {mib('edge')} / {mib('nginx')} / "
                     f"{mib('varnish')} (+{mib('nginx-backend(varnish)')}) |")
    shares = []
    for sc in report["scenarios"]:
        for entry in sc["results"]:
            t = entry["summary"].get("edge", {}).get("edge_tier_share")
            if t:
                shares.append(f"{sc['name']}/{entry['connections']}: " + ", ".join(
                    f"{k} {v * 100:.0f}%" for k, v in t.items()))
    if shares:
        lines += ["", "Edge answers by tier (from its /metrics): " + "; ".join(shares) + "."]
    lines.append("")
    return "\n".join(lines)


# -------------------------------------------------------------------- main
def ensure_tools() -> None:
    need = {"nginx": "nginx", "varnishd": "varnish", "wrk": "wrk", "h2load": "nghttp2-client",
            "taskset": "util-linux"}
    missing = [pkg for tool, pkg in need.items() if shutil.which(tool) is None]
    if not missing:
        return
    if os.geteuid() != 0:
        sys.exit(f"missing {', '.join(missing)}: run as root or apt-get install them")
    log(f"installing {' '.join(missing)} from Debian packages")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, timeout=600)
    subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing],
                   check=True, env=env, timeout=900)
    # Debian may start the packaged services; this benchmark runs its own.
    for svc in ("nginx", "varnish"):
        subprocess.run(["service", svc, "stop"], capture_output=True, timeout=60)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true",
                    help="smoke test: small data, 2 s rounds, 1 round (writes quick.*)")
    ap.add_argument("--scenarios", help="comma list of hot,disk,cold,small,h2c (default: all)")
    ap.add_argument("--servers", default="edge,nginx,varnish")
    ap.add_argument("--connections", type=lambda s: [int(x) for x in s.split(",")])
    ap.add_argument("--duration", type=float, help="seconds per measured round")
    ap.add_argument("--warmup", type=float, help="seconds of warm-up per server and conn count")
    ap.add_argument("--rounds", type=int)
    ap.add_argument("--files", type=int, help="files in the main data set")
    ap.add_argument("--small-files", type=int, help="files in the ~2 KB data set")
    ap.add_argument("--seed", type=int, default=6)
    ap.add_argument("--zipf", type=float, default=1.0, help="Zipf exponent s")
    ap.add_argument("--sequence", type=int, default=200_000, help="length of the key sequence")
    ap.add_argument("--h2-uris", type=int, default=50_000, help="URIs in h2load's input file")
    ap.add_argument("--server-cpus", default="0", help="taskset CPU list for servers")
    ap.add_argument("--client-cpus", default="1", help="taskset CPU list for wrk/h2load")
    ap.add_argument("--server-threads", type=int, default=1,
                    help="edge threads = nginx worker_processes (default 1: one CPU each)")
    ap.add_argument("--client-threads", type=int, default=1)
    ap.add_argument("--nginx-nopush", choices=["on", "off"], default="on",
                    help="nginx tcp_nopush (on: its usual tuning, highest req/s; off: no "
                         "~40 ms TCP_CORK stalls in its p99, ~13%% fewer req/s)")
    ap.add_argument("--binary", type=Path, default=REPO / "target" / "release" / "imgcdn")
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--out", help="results name under benches/results (default latest|quick)")
    args = ap.parse_args()
    q = args.quick
    args.connections = args.connections or [64, 256]
    args.duration = args.duration or (2 if q else 10)
    args.warmup = args.warmup or (1 if q else 3)
    args.rounds = args.rounds or (1 if q else 3)
    args.files = args.files or (400 if q else 3000)
    args.small_files = args.small_files or (500 if q else 5000)
    out_name = args.out or ("quick" if q else "latest")

    atexit.register(stop_all)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    ensure_tools()
    if not args.no_build:
        log("cargo build --release -p imgcdn")
        subprocess.run(["cargo", "build", "--release", "-p", "imgcdn"], cwd=REPO, check=True,
                       timeout=3600)
    if not args.binary.exists():
        sys.exit(f"{args.binary} not found (build it or pass --binary)")
    WORK.mkdir(parents=True, exist_ok=True)
    for d in (REPO / "target", WORK):
        os.chmod(d, os.stat(d).st_mode | 0o755)

    main_ds = make_dataset("main", args.files, 35_000, 1.0, 1_000, 2 * 1000 * 1000, args.seed)
    small_ds = make_dataset("small", args.small_files, 2_000, 0.25, 900, 4_000, args.seed)
    sizes = main_ds.sizes()
    data_note = (
        f"main set {len(sizes)} PNGs, {main_ds.total / MIB:.0f} MiB, log-normal sizes "
        f"(median {statistics.median(sizes) / 1000:.0f} KB, p90 {sizes[int(len(sizes) * .9)] / 1000:.0f} KB, "
        f"max {sizes[-1] / 1000:.0f} KB); small set {len(small_ds.keys)} PNGs, median "
        f"{statistics.median(small_ds.sizes()) / 1000:.1f} KB; Zipf s={args.zipf} over keys, "
        f"seed {args.seed}"
    )
    pinning = (
        f"servers on CPU {args.server_cpus} (taskset; edge threads = nginx workers = "
        f"{args.server_threads}; Varnish thread_pools=1 plus its nginx backend on the same CPU), "
        f"load generator on CPU {args.client_cpus} ({args.client_threads} wrk/h2load thread): "
        f"with 2 cores, one each keeps the client from stealing the server's CPU and makes "
        f"server CPU time per request comparable"
    )
    data_note += f"; nginx tcp_nopush {args.nginx_nopush}"
    report = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "mode": "quick" if q else "full",
        "machine": machine(),
        "versions": {**tool_versions(), "imgcdn": edge_version(args.binary)},
        "pinning": pinning,
        "data_note": data_note,
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "loadavg_before": os.getloadavg(),
        "busy_compiler_processes_before": busy_compilers(),
        "scenarios": [],
    }
    log(f"pinning: {pinning}")
    for sc in scenarios(args, main_ds, small_ds):
        report["scenarios"].append(run_scenario(sc, args))
    report["loadavg_after"] = os.getloadavg()
    report["busy_compiler_processes_after"] = busy_compilers()
    la0, la1 = report["loadavg_before"], report["loadavg_after"]
    report["load_note"] = (
        f"load average before {la0[0]:.2f}, after {la1[0]:.2f} (1 min); compiler processes "
        f"seen before/after: {report['busy_compiler_processes_before']}/"
        f"{report['busy_compiler_processes_after']} (other work on the machine skews absolute "
        f"numbers; ratios from alternating rounds are the figures to read)"
    )
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{out_name}.json").write_text(json.dumps(report, indent=1) + "\n")
    md = markdown(report)
    (RESULTS / f"{out_name}.md").write_text(md)
    print()
    print(md)
    log(f"wrote {RESULTS / (out_name + '.json')} and {RESULTS / (out_name + '.md')}")


if __name__ == "__main__":
    main()
