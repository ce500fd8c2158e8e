#!/usr/bin/env python3
"""Takedown propagation: how long from the operator API's answer until every
edge answers 451.

Starts one control plane (SQLite) and three edges syncing from it, all on
127.0.0.1, uploads --images images, makes every edge cache each of them, then
takes them down one at a time. For each takedown the clock starts when the
operator API's response has been read and stops when the last of the three
edges answers 451 (each edge is polled over its own keep-alive connection,
in parallel). Reported: p50/p90/p99/max, and the ratio to the ~150 ms global
purge the big CDNs publish (Fastly, Cloudflare) -- the reference this
benchmark answers to, since no CDN can be run here side by side.

    python3 benches/sync/propagation.py              # 300 takedowns
    python3 benches/sync/propagation.py --images 50  # quicker
    python3 benches/sync/propagation.py --no-build   # reuse target/release/imgcdn

Results: benches/results/sync-latest.{json,md}. Not a test: tests never
measure time.
"""

import argparse
import http.client
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # benches/

from common import RELEASE_BINARY, REPO  # noqa: E402
from common.datasets import png  # noqa: E402
from common.edge import write_edge_config  # noqa: E402
from common.procs import free_port, start, stop, stop_all_on_exit, wait_http  # noqa: E402

ROOT = str(REPO)
BIN = str(RELEASE_BINARY)
CDN_PURGE_MS = 150.0
EDGES = 3


class Conn:
    """One keep-alive HTTP/1.1 connection."""

    def __init__(self, port):
        self.port = port
        self.c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def request(self, method, path, body=None, headers=None):
        for attempt in range(2):
            try:
                self.c.request(method, path, body=body, headers=headers or {})
                r = self.c.getresponse()
                data = r.read()
                return r.status, data
            except (http.client.HTTPException, ConnectionError):
                self.c.close()
                self.c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                if attempt:
                    raise


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=300, help="takedowns to time")
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument(
        "--postgres",
        metavar="URL",
        help="use this (empty, throwaway) PostgreSQL database and two control-plane replicas: the operator "
        "API on replica 0, edges spread over both, so changes cross replicas via LISTEN/NOTIFY",
    )
    ap.add_argument("--out", help="results path without extension (default benches/results/sync-latest[-postgres])")
    args = ap.parse_args()
    if not args.out:
        suffix = "-postgres" if args.postgres else ""
        args.out = os.path.join(ROOT, "benches", "results", f"sync-latest{suffix}")
    if not args.no_build:
        subprocess.run(["cargo", "build", "--release", "-p", "imgcdn"], cwd=ROOT, check=True)
    stop_all_on_exit()

    work = tempfile.mkdtemp(prefix="imgcdn-sync-bench-")
    procs = []
    try:
        tokens = {f"edge-{i}": f"bench-edge-{i}-token-" + "x" * 32 for i in range(EDGES)}
        database = args.postgres or f"sqlite://{work}/cp.db"
        cp_ports = [free_port() for _ in range(2 if args.postgres else 1)]
        for n, port in enumerate(cp_ports):
            cp_toml = os.path.join(work, f"cp-{n}.toml")
            with open(cp_toml, "w") as f:
                f.write(
                    f'listen = "127.0.0.1:{port}"\nadmin_listen = "127.0.0.1:0"\ndatabase_url = "{database}"\ncookie_secure = false\n'
                    f'[email]\noutbox_dir = "{work}/outbox"\n'
                    f'[stores.public]\nscheme = "fs"\nroot = "{work}/store"\n'
                    f'[stores.recovery]\nscheme = "fs"\nroot = "{work}/recovery"\n'
                    f'[stores.staging]\nscheme = "fs"\nroot = "{work}/staging"\n'
                    "[edge_sync]\n[edge_sync.edges]\n" + "".join(f'"{n}" = "{t}"\n' for n, t in tokens.items())
                )
            log = Path(work, f"cp-{n}.log")
            procs.append(start([BIN, "control-plane", "--config", cp_toml], log))
            wait_http(port, "/healthz", procs[-1], f"control plane {n}", log, want=200, interval=0.05)
        cp_port = cp_ports[0]
        cp_toml = os.path.join(work, "cp-0.toml")
        out = subprocess.run(
            [BIN, "admin", "--config", cp_toml, "operator", "create", "bench"], check=True, capture_output=True, text=True
        ).stdout
        op = next(line for line in out.splitlines() if line.startswith("img_op_"))

        edge_ports = []
        for i, (name, token) in enumerate(tokens.items()):
            port, admin = free_port(), free_port()
            path = write_edge_config(
                os.path.join(work, f"{name}.toml"),
                port=port,
                admin_port=admin,
                threads=1,
                store_root=f"{work}/store",
                disk_path=f"{work}/{name}-cache",
                sync={
                    "control_planes": [f"http://127.0.0.1:{cp_ports[i % len(cp_ports)]}"],
                    "token": token,
                    "state_path": f"{work}/{name}.json",
                },
            )
            elog = Path(work, f"{name}.log")
            procs.append(start([BIN, "edge", "--config", str(path)], elog))
            wait_http(admin, "/readyz", procs[-1], name, elog, want=200, interval=0.05)
            edge_ports.append(port)

        cp = Conn(cp_port)
        status, body = cp.request(
            "POST", "/v1/keys", json.dumps({"email": "bench@example.com"}), {"content-type": "application/json"}
        )
        assert status == 201, body
        key = json.loads(body)["key"]
        ids = []
        for n in range(args.images):
            boundary = "bench-boundary"
            form = (
                f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n\r\n'.encode()
                + png(random.Random(n), 16, 16)
                + f"\r\n--{boundary}--\r\n".encode()
            )
            status, body = cp.request(
                "POST",
                "/v1/images",
                form,
                {"authorization": f"Bearer {key}", "content-type": f"multipart/form-data; boundary={boundary}"},
            )
            assert status == 201, body
            img = json.loads(body)
            ids.append((img["id"], urllib.parse.urlparse(img["url"]).path))
        print(f"{len(ids)} images uploaded; {EDGES} edges syncing from {len(cp_ports)} control plane(s)", file=sys.stderr)

        pollers = [Conn(p) for p in edge_ports]
        for _, path in ids:
            for c in pollers:
                assert c.request("GET", path)[0] == 200

        latencies, api_ms = [], []
        for image_id, path in ids:
            seen = [None] * EDGES

            def poll(i, start_evt, t0_box):
                start_evt.wait()
                while True:
                    if pollers[i].request("GET", path)[0] == 451:
                        seen[i] = time.perf_counter() - t0_box[0]
                        return

            start_evt, t0_box = threading.Event(), [0.0]
            threads = [threading.Thread(target=poll, args=(i, start_evt, t0_box)) for i in range(EDGES)]
            for t in threads:
                t.start()
            sent = time.perf_counter()
            status, body = cp.request(
                "POST",
                f"/v1/admin/images/{image_id}/takedown",
                json.dumps({"reason": "terms_violation"}),
                {"authorization": f"Bearer {op}", "content-type": "application/json"},
            )
            t0_box[0] = time.perf_counter()
            assert status == 200, body
            api_ms.append((t0_box[0] - sent) * 1000)
            start_evt.set()
            for t in threads:
                t.join(timeout=60)
            assert all(s is not None for s in seen), f"an edge never answered 451 for {image_id}"
            latencies.append(max(seen) * 1000)

        lat = sorted(latencies)

        def pct(p):
            return lat[min(len(lat) - 1, int(round(p / 100 * (len(lat) - 1))))]

        res = {
            "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "takedowns": len(lat),
            "edges": EDGES,
            "control_plane": "2 replicas, PostgreSQL" if args.postgres else "1 process, SQLite",
            "propagation_ms": {
                "p50": round(pct(50), 2),
                "p90": round(pct(90), 2),
                "p99": round(pct(99), 2),
                "max": round(lat[-1], 2),
                "mean": round(statistics.mean(lat), 2),
            },
            "operator_api_ms_p50": round(statistics.median(api_ms), 2),
            "reference_cdn_purge_ms": CDN_PURGE_MS,
            "ratio_p50_to_reference": round(pct(50) / CDN_PURGE_MS, 4),
            "ratio_p99_to_reference": round(pct(99) / CDN_PURGE_MS, 4),
            "cpus": os.cpu_count(),
        }
        os.makedirs(os.path.dirname(args.out), exist_ok=True)
        with open(args.out + ".json", "w") as f:
            json.dump(res, f, indent=2)
        p = res["propagation_ms"]
        md = (
            f"# Takedown propagation ({res['when']})\n\n"
            f"{res['takedowns']} takedowns, {EDGES} edges long-polling {res['control_plane']}, all on 127.0.0.1, "
            f"{res['cpus']} CPUs shared by every process. Time from the operator API's response to the moment "
            f"the last edge answers 451.\n\n"
            "| p50 | p90 | p99 | max | mean | reference (CDN global purge) | p50 / ref | p99 / ref |\n"
            "|---|---|---|---|---|---|---|---|\n"
            f"| {p['p50']} ms | {p['p90']} ms | {p['p99']} ms | {p['max']} ms | {p['mean']} ms | ~{CDN_PURGE_MS:.0f} ms | "
            f"{res['ratio_p50_to_reference']} | {res['ratio_p99_to_reference']} |\n\n"
            f"Operator API response time (p50): {res['operator_api_ms_p50']} ms.\n"
        )
        with open(args.out + ".md", "w") as f:
            f.write(md)
        print(md)
    finally:
        stop(*procs)


if __name__ == "__main__":
    main()
