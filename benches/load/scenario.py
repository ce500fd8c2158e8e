"""Scenarios of the load benchmark and running one: start the servers,
prewarm and verify them, then alternate measured rounds between them."""

from __future__ import annotations

import hashlib
import http.client
import os
import random
import shutil
import statistics
import sys
import time

from common import MIB, REPO, log
from common.datasets import Dataset
from common.procs import PROCS, http_get, peak_rss_kib, stop
from loadgen import h2_shape, run_h2load, run_wrk, zipf_sequence
from servers import Server, start_edge, start_floor, start_nginx, start_varnish

WORK = REPO / "target" / "bench-load"

# limits.send_buffer_bytes: the edge configs here leave it at its default.
EDGE_SEND_BUFFER = 64 * MIB


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
        if "floor" in args.servers.split(",") and sc["tool"] == "wrk":
            floor = start_floor(run, ds, args)
            servers.append(floor)
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
            for name, other in (("edge", "nginx"), ("edge", "varnish"), ("floor", "nginx"),
                                ("edge", "floor")):
                e, o = summary.get(name), summary.get(other)
                if e and o:
                    entry[f"{name}/{other}"] = {
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
            # What the edge may hold by configuration: the memory tier plus
            # the send buffer (limits.send_buffer_bytes, left at its default).
            "edge_budget_bytes": sc["memory_bytes"] + EDGE_SEND_BUFFER,
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


