#!/usr/bin/env python3
"""Work per request, counted rather than timed: edge binaries side by side
under callgrind (valgrind) with the load benchmark's data and load.

    python3 benches/load/count.py BINARY [BINARY ...] [--scenario small]
        [--conns 256] [--secs 20]

On a machine whose speed drifts (a shared VM), wall-clock A/B of two
builds can vary more than the change it measures. Instruction counts and
simulated cache misses do not drift: this runs each binary in turn under
callgrind with a cache model (32 KiB L1, 512 KiB last level, 64-byte
lines), drives it with wrk replaying the scenario's Zipf key sequence,
counts only while wrk runs (the counters are zeroed after a warm-up and
dumped at its end), and divides by the requests wrk completed (a run with
any error or timeout is refused). It prints per request: instructions (Ir), data
reads and writes (Dr, Dw), L1 misses (D1mr, D1mw) and last-level misses
(DLmr, DLmw), each binary's ratio to the first. User space only: the
kernel's side (copies, syscalls) is not in it.

Scenario directories come from `run.py` (target/bench-load/run/SCENARIO:
edge.toml and paths.txt): run it once first, e.g. `run.py --quick`.
Needs valgrind (`apt-get install valgrind`) and wrk. Under callgrind the
edge runs ~50× slower, so the counts describe a server that is always
busy (reads mostly find a request waiting): compare binaries with each
other, not with timed runs.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
for _d in (HERE, HERE.parent):  # benches/load (loadgen), benches/ (common)
    if str(_d) not in sys.path:
        sys.path.insert(0, str(_d))

from common import REPO, log  # noqa: E402
from common.procs import free_port, http_get, start, stop, stop_all_on_exit, wait_http  # noqa: E402
from loadgen import run_wrk  # noqa: E402

RUN = REPO / "target" / "bench-load" / "run"
OUT = REPO / "target" / "bench-load" / "count"
EVENTS = ["Ir", "Dr", "Dw", "D1mr", "D1mw", "DLmr", "DLmw"]


def count(binary: Path, tag: str, scenario: str, conns: int, secs: int, args) -> dict[str, float]:
    run = RUN / scenario
    paths = run / "paths.txt"
    port, admin = free_port(), free_port()
    work = OUT / tag
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    conf = (run / "edge.toml").read_text()
    conf = re.sub(r"^listen = .*$", f'listen = ["127.0.0.1:{port}"]', conf, count=1, flags=re.M)
    conf = re.sub(r"^admin_listen = .*$", f'admin_listen = "127.0.0.1:{admin}"', conf, count=1, flags=re.M)
    conf = conf.replace(str(run / "edge-cache"), str(work / "edge-cache"))
    (work / "edge.toml").write_text(conf)
    out = work / "callgrind.out"
    cmd = ["valgrind", "--tool=callgrind", "--cache-sim=yes", "--D1=32768,8,64", "--LL=524288,8,64",
           f"--callgrind-out-file={out}", str(binary), "edge", "--config", str(work / "edge.toml")]
    p = start(cmd, work / "edge.log", cpus=args.server_cpus, env={"RUST_LOG": "warn"})
    try:
        keys = sorted({line.strip() for line in paths.open() if line.strip()})
        wait_http(admin, "/readyz", p, "edge under callgrind", work / "edge.log", timeout=300)
        for k in keys:  # every key in the memory tier, as run.py's prewarm
            http_get(port, k, timeout=60)
        run_wrk(port, conns, 3, paths, args)  # connections settle
        subprocess.run(["callgrind_control", "-z", str(p.pid)], capture_output=True, check=True)
        w = run_wrk(port, conns, secs, paths, args)
        subprocess.run(["callgrind_control", "-d", str(p.pid)], capture_output=True, check=True)
        if w["errors"]:
            raise RuntimeError(f"{binary}: {w['errors_detail']} during the counted run; see {work / 'edge.log'}")
        requests = w["requests"]
    finally:
        stop(p)
    totals = dict.fromkeys(EVENTS, 0)
    for dump in work.glob("callgrind.out.*"):  # the dump after zeroing (not the exit's)
        events: list[str] = []
        for line in dump.read_text().splitlines():
            if line.startswith("events:"):
                events = line.split()[1:]
            elif line.startswith("totals:"):
                for e, v in zip(events, line.split()[1:]):
                    if e in totals:
                        totals[e] += int(v)
    if requests <= 0 or not totals["Ir"]:
        raise RuntimeError(f"nothing counted for {binary} (requests {requests}); see {work / 'edge.log'}")
    return {e: v / requests for e, v in totals.items()} | {"requests": requests}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("binaries", nargs="+", type=Path, help="edge binaries (imgcdn), the first is the base")
    ap.add_argument("--scenario", default="small", help="a run.py scenario directory (default small)")
    ap.add_argument("--conns", type=int, default=256)
    ap.add_argument("--secs", type=int, default=20, help="counted wrk run, seconds (default 20)")
    ap.add_argument("--server-cpus", default="0", help="taskset CPU list for the edge")
    ap.add_argument("--client-cpus", default="1", help="taskset CPU list for wrk")
    ap.add_argument("--client-threads", type=int, default=1)
    args = ap.parse_args()
    for tool in ("valgrind", "callgrind_control", "wrk", "taskset"):
        if not shutil.which(tool):
            sys.exit(f"count.py: {tool} is missing (apt-get install valgrind wrk)")
    if not (RUN / args.scenario / "paths.txt").exists():
        sys.exit(f"count.py: no {RUN / args.scenario}; run benches/load/run.py once first")
    stop_all_on_exit()
    rows = []
    for i, b in enumerate(args.binaries):
        log(f"counting {b} ({args.scenario}, {args.conns} connections, {args.secs}s under callgrind)")
        rows.append(count(b.resolve(), f"{i}", args.scenario, args.conns, args.secs, args))
        time.sleep(1)
    print(f"per request, {args.scenario} at {args.conns} connections (ratio to the first binary):")
    print("binary | requests | " + " | ".join(EVENTS))
    for b, r in zip(args.binaries, rows):
        cells = [f"{r[e]:,.0f} ({r[e] / rows[0][e]:.3f})" for e in EVENTS]
        print(f"{b} | {r['requests']:.0f} | " + " | ".join(cells))


if __name__ == "__main__":
    main()
