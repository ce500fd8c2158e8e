"""Load generators of the load benchmark: the seeded Zipf key sequence, wrk
(with zipf.lua, which prints one BENCH_JSON line) and h2load, and parsing
their output into one result dict per measured round."""

from __future__ import annotations

import json
import math
import os
import random
import re
import subprocess
import time
from pathlib import Path

LUA = Path(__file__).resolve().parent / "zipf.lua"


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


