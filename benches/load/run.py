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
   set of ~2 KB thumbnails. Each file is published into an edge fs store
   with `imgcdn put` (objects/{id} + manifests/{id}.json with sha256, bytes,
   content type; the binary picks the id and prints the URL), and the same
   files (hard links) go in a plain directory at the URL paths `put`
   printed, for nginx.
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

`--servers floor,edge,nginx` adds the pingora floor
(edge-proxy/examples/pingora_floor.rs, built with the edge): the data set in
a hash map behind pingora's HTTP/1 session with the edge's headers, threads
and runtime flavour, and nothing else (bodies written from memory, no
sendfile; every scenario is memory hits for it). HTTP/1 scenarios only. On
small bodies it shows how much of the gap to nginx is pingora's and how
much is the edge's.

Every process it starts is killed on exit (normal, error or Ctrl-C). All
traffic stays on 127.0.0.1. This is not part of the test suite: it measures
wall-clock time, which tests never do.

Code: this file (flags, main); servers.py (edge, nginx, Varnish, the floor), loadgen.py
(Zipf sequence, wrk, h2load), scenario.py (scenarios, rounds), report.py
(machine, versions, Markdown); benches/common (data sets, processes, the
edge config).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
for _d in (HERE, HERE.parent):  # benches/load (this script's modules), benches/ (common)
    if str(_d) not in sys.path:
        sys.path.insert(0, str(_d))

from common import MIB, REPO, log  # noqa: E402
from common.datasets import make_dataset  # noqa: E402
from common.procs import stop_all_on_exit  # noqa: E402
from report import busy_compilers, edge_version, machine, markdown, tool_versions  # noqa: E402
from scenario import WORK, run_scenario, scenarios  # noqa: E402

RESULTS = REPO / "benches" / "results"


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


def parse_setting(text: str) -> tuple[str, object]:
    """`key=value` with the value as TOML would read it: an integer, a
    boolean or else a string."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        sys.exit(f"--edge-set {text!r}: expected KEY=VALUE")
    if value in ("true", "false"):
        return key, value == "true"
    try:
        return key, int(value)
    except ValueError:
        return key, value


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
    ap.add_argument("--floor-binary", type=Path,
                    default=REPO / "target" / "release" / "examples" / "pingora_floor")
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--edge-set", action="append", default=[], metavar="KEY=VALUE",
                    help="set an edge config key (\"table.key\" or \"key\") for an A/B run, "
                         "e.g. disk.open_files=0; repeatable")
    ap.add_argument("--out", help="results name under benches/results (default latest|quick)")
    args = ap.parse_args()
    args.edge_set = dict(parse_setting(s) for s in args.edge_set)
    q = args.quick
    args.connections = args.connections or [64, 256]
    args.duration = args.duration or (2 if q else 10)
    args.warmup = args.warmup or (1 if q else 3)
    args.rounds = args.rounds or (1 if q else 3)
    args.files = args.files or (400 if q else 3000)
    args.small_files = args.small_files or (500 if q else 5000)
    out_name = args.out or ("quick" if q else "latest")

    stop_all_on_exit()

    ensure_tools()
    if not args.no_build:
        log("cargo build --release -p imgcdn")
        subprocess.run(["cargo", "build", "--release", "-p", "imgcdn"], cwd=REPO, check=True,
                       timeout=3600)
    if "floor" in args.servers.split(",") and not args.no_build:
        # With -p imgcdn as well, dependencies get the features of the edge's
        # own build and are not built again.
        log("cargo build --release -p imgcdn -p imgcdn-edge --example pingora_floor")
        subprocess.run(["cargo", "build", "--release", "-p", "imgcdn", "-p", "imgcdn-edge", "--example",
                        "pingora_floor"],
                       cwd=REPO, check=True, timeout=3600)
    if not args.binary.exists():
        sys.exit(f"{args.binary} not found (build it or pass --binary)")
    WORK.mkdir(parents=True, exist_ok=True)
    for d in (REPO / "target", WORK):
        os.chmod(d, os.stat(d).st_mode | 0o755)

    data = WORK / "data"
    main_ds = make_dataset(data, args.binary, "main", args.files, 35_000, 1.0, 1_000,
                           2 * 1000 * 1000, args.seed)
    small_ds = make_dataset(data, args.binary, "small", args.small_files, 2_000, 0.25, 900,
                            4_000, args.seed)
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
