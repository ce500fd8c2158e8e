#!/usr/bin/env python3
"""What a million takedowns cost an edge.

Starts a release edge syncing from a stand-in control plane
(benches/common/fake_cp.py) that serves a snapshot of --entries takedowns,
and measures:

- RSS before the snapshot (the edge waits for one) and after applying it;
- the state files' size (snapshot + log);
- time from serving the snapshot to its ack (fetch, parse, apply, persist);
- time to apply a 1000-change batch on top (from queueing it at the stand-in
  to the edge's ack: the long-poll answer, apply, purge, append + fsync),
  median and max over --batches batches;
- start-up time of an edge restarted with that state and no control plane:
  process start to /readyz 200 (the state is loaded before the first
  request is served), and its RSS then.

    python3 benches/sync/state_1m.py                # 1,000,000 entries
    python3 benches/sync/state_1m.py --entries 100000 --no-build

Results: benches/results/sync-state-1m.md. Not a test.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # benches/

from common import MIB, RELEASE_BINARY, REPO, log  # noqa: E402
from common.edge import write_edge_config  # noqa: E402
from common.fake_cp import TOKEN, FakeControlPlane  # noqa: E402
from common.procs import free_port, start, stop, stop_all_on_exit, wait_http  # noqa: E402


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def measure(binary: Path, work: Path, entries: int, batches: int) -> dict:
    """Run the measurement in `work`; returns the figures."""
    work.mkdir(parents=True, exist_ok=True)
    (work / "store").mkdir(exist_ok=True)
    state = work / "edge-sync.state"
    cp = FakeControlPlane(entries)
    cp.start(serve_snapshot=False)
    port, admin = free_port(), free_port()
    sync = {"control_planes": [cp.url()], "token": TOKEN, "state_path": str(state), "wait_ms": 1000, "retry_ms": 100}
    cfg = write_edge_config(work / "edge.toml", port=port, admin_port=admin, store_root=work / "store",
                            disk_path=work / "cache", sync=sync)
    elog = work / "edge.log"
    edge = start([str(binary), "edge", "--config", str(cfg)], elog)
    out: dict = {"entries": entries}
    try:
        wait_http(admin, "/healthz", edge, "edge", elog, want=200)
        time.sleep(0.5)
        out["rss_before_kib"] = rss_kib(edge.pid)
        served = time.time()
        cp.snapshot_ready.set()
        acked = cp.wait_ack(entries, timeout=300)
        out["snapshot_apply_s"] = acked - served
        time.sleep(0.5)
        out["rss_after_kib"] = rss_kib(edge.pid)
        times = []
        for _ in range(batches):
            seq, queued = cp.queue_batch(1000)
            times.append(cp.wait_ack(seq) - queued)
        out["batch_1000_ms_median"] = statistics.median(times) * 1000
        out["batch_1000_ms_max"] = max(times) * 1000
        sizes = {p.name: p.stat().st_size for p in work.iterdir() if p.name.startswith("edge-sync.state")}
        out["state_files"] = sizes
        out["state_bytes"] = sum(sizes.values())
    finally:
        stop(edge)
        cp.stop()
    # Restart with the state and no control plane reachable.
    sync["control_planes"] = [f"http://127.0.0.1:{free_port()}"]
    port, admin = free_port(), free_port()
    cfg = write_edge_config(work / "edge2.toml", port=port, admin_port=admin, store_root=work / "store",
                            disk_path=work / "cache", sync=sync)
    started = time.time()
    edge = start([str(binary), "edge", "--config", str(cfg)], elog)
    try:
        wait_http(admin, "/readyz", edge, "edge", elog, want=200, interval=0.01, timeout=120)
        out["startup_to_ready_s"] = time.time() - started
        out["rss_after_load_kib"] = rss_kib(edge.pid)
    finally:
        stop(edge)
    return out


def markdown(r: dict) -> str:
    return "\n".join([
        f"| {r['entries']:,} takedowns | figure |",
        "|---|---|",
        f"| RSS before the snapshot | {r['rss_before_kib'] / 1024:.1f} MiB |",
        f"| RSS after applying it | {r['rss_after_kib'] / 1024:.1f} MiB "
        f"(+{(r['rss_after_kib'] - r['rss_before_kib']) / 1024:.1f} MiB) |",
        f"| snapshot served → applied, persisted, acked | {r['snapshot_apply_s']:.2f} s |",
        f"| state files (snapshot + log) | {r['state_bytes'] / MIB:.1f} MiB |",
        f"| 1000-change batch on top: queued → acked (median / max) | "
        f"{r['batch_1000_ms_median']:.1f} / {r['batch_1000_ms_max']:.1f} ms |",
        f"| restart with the state, control plane down: start → ready | {r['startup_to_ready_s']:.2f} s |",
        f"| RSS after loading it | {r['rss_after_load_kib'] / 1024:.1f} MiB |",
    ]) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--entries", type=int, default=1_000_000)
    ap.add_argument("--batches", type=int, default=10)
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--out", default=str(REPO / "benches" / "results" / "sync-state-1m.md"))
    args = ap.parse_args()
    if not args.no_build:
        subprocess.run(["cargo", "build", "--release", "-p", "imgcdn"], cwd=REPO, check=True)
    stop_all_on_exit()
    with tempfile.TemporaryDirectory(prefix="imgcdn-sync-1m-") as d:
        log(f"measuring {args.entries:,} entries")
        r = measure(RELEASE_BINARY, Path(d), args.entries, args.batches)
    text = f"# Edge-sync state at scale ({time.strftime('%Y-%m-%d')}, {os.cpu_count()} CPUs)\n\n" + markdown(r)
    print(text)
    Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
