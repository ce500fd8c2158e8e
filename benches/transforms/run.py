#!/usr/bin/env python3
"""Edge transforms side by side with libvips's own `vipsthumbnail`, in one run.

    python3 benches/transforms/run.py               # ~3 min plus a release build
    python3 benches/transforms/run.py --no-build    # reuse target/release/imgcdn

Data: a seeded set of 12-megapixel JPEGs (4000×3000, photo-like: Perlin
noise in three bands plus fine grain, quality 90) and large PNGs
(2400×1600, the same content), made with the `vips` CLI.

1. **Uncached transforms** at the edge with 2 worker threads, 2 clients
   (keep-alive connections) requesting `size=m` (short side 640, JPEG
   out for JPEG, PNG out for PNG) and `w=800&format=webp`. Every request
   is a new variant (the variant cache and the disk tier are off, the
   originals sit in the memory tier), so each one is a decode, resize and
   encode. Against: `vipsthumbnail` doing the same work (same sizes,
   quality, encoder settings, metadata stripped) on the same files in 2
   processes, each given its share of the files in one invocation (no
   per-file process start). Both with `VIPS_CONCURRENCY=1` per transform,
   so each uses the two cores the same way: two transforms at once.
   Reported: transforms/s and their ratio; p50/p99 of the edge's request
   latency and of `vipsthumbnail`'s per-file time (a one-file invocation).
   Also thumbor 7.8 from PyPI (Pillow engine, file loader, no result
   storage), 2 processes with one client each, the same sizes and quality
   (installed into ~/.cache/imgcdn/thumbor-venv on first use; `--no-thumbor`
   leaves it out).
2. **Cached variants**: req/s of `size=m` variants served from the memory
   tier against the same edge serving the originals of the same images
   (also from memory), 8 keep-alive clients.

Results: benches/results/transforms.{md,json}. The goal in the issue is
at least libvips's throughput; the edge runs libvips itself, so the ratio
shows the edge's own overhead (HTTP, cache lookups, copies).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from common import REPO, RELEASE_BINARY, log  # noqa: E402
from common import procs  # noqa: E402
from common.datasets import put  # noqa: E402
from common.edge import write_edge_config  # noqa: E402

RESULTS = REPO / "benches" / "results"


def sh(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True)


def make_images(out: Path, jpegs: int, pngs: int, seed: int) -> list[tuple[Path, str]]:
    """Photo-like test images: (file, kind)."""
    out.mkdir(parents=True, exist_ok=True)
    files = []
    for i in range(jpegs + pngs):
        kind = "jpeg" if i < jpegs else "png"
        w, h = (4000, 3000) if kind == "jpeg" else (2400, 1600)
        s = seed * 1000 + i
        tmp = out / f"tmp-{i}"
        tmp.mkdir(exist_ok=True)
        for b in range(3):
            sh("vips", "perlin", str(tmp / f"{b}.v"), str(w), str(h), "--cell-size", str(64 + 32 * b),
               "--uchar", "--seed", str(s * 3 + b))
        sh("vips", "bandjoin", f"{tmp}/0.v {tmp}/1.v {tmp}/2.v", str(tmp / "rgb.v"))
        sh("vips", "gaussnoise", str(tmp / "grain.v"), str(w), str(h), "--sigma", "6", "--mean", "0")
        sh("vips", "add", str(tmp / "rgb.v"), str(tmp / "grain.v"), str(tmp / "sum.v"))
        sh("vips", "cast", str(tmp / "sum.v"), str(tmp / "u8.v"), "uchar")
        sh("vips", "copy", str(tmp / "u8.v"), str(tmp / "srgb.v"), "--interpretation", "srgb")
        f = out / (f"photo-{i:02}.jpg" if kind == "jpeg" else f"photo-{i:02}.png")
        sh("vips", "copy", str(tmp / "srgb.v"), f"{f}[Q=90]" if kind == "jpeg" else f"{f}[compression=6]")
        shutil.rmtree(tmp)
        files.append((f, kind))
    return files


def vips_suffix(kind: str, op: str) -> tuple[str, str]:
    """vipsthumbnail's size and output for one of our operations, with the
    edge's encoder settings (media/src/transform.rs)."""
    if op == "size=m":
        # Short side 640: bound the height for landscape sources.
        out = "[Q=82,interlace,optimize_coding,strip]" if kind == "jpeg" else "[compression=6,strip]"
        ext = "jpg" if kind == "jpeg" else "png"
        return "100000x640", f"%s-m.{ext}{out}"
    return "800x100000", "%s-w800.webp[Q=80,effort=2,strip]"


def run_vips(files: list[tuple[Path, str]], op: str, workdir: Path, rounds: int) -> dict:
    """Two vipsthumbnail processes, each with its half of the work."""
    env = {**os.environ, "VIPS_CONCURRENCY": "1"}
    work = [f for _ in range(rounds) for f in files]
    halves = [work[0::2], work[1::2]]
    outdir = workdir / "vips-out"
    outdir.mkdir(exist_ok=True)

    def batch(part):
        by_kind: dict[str, list[str]] = {}
        for f, kind in part:
            by_kind.setdefault(kind, []).append(str(f))
        for kind, names in by_kind.items():
            size, out = vips_suffix(kind, op)
            subprocess.run(["vipsthumbnail", *names, "-s", size, "-o", str(outdir / out)], check=True, env=env,
                           capture_output=True)

    t = time.perf_counter()
    threads = [threading.Thread(target=batch, args=(h,)) for h in halves]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    elapsed = time.perf_counter() - t
    # Per-file time: one file per invocation (includes a process start).
    lat = []
    for f, kind in files:
        size, out = vips_suffix(kind, op)
        t0 = time.perf_counter()
        subprocess.run(["vipsthumbnail", str(f), "-s", size, "-o", str(outdir / out)], check=True, env=env,
                       capture_output=True)
        lat.append((time.perf_counter() - t0) * 1000)
    return {"n": len(work), "seconds": elapsed, "per_s": len(work) / elapsed, "p50_ms": pct(lat, 50),
            "p99_ms": pct(lat, 99)}


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    if not xs:
        return 0.0
    k = min(len(xs) - 1, max(0, round(p / 100 * (len(xs) - 1))))
    return xs[k]


def client_run(port: int, paths: list[str], clients: int, check: bool = True) -> dict:
    """`clients` keep-alive connections take paths from one list; latency
    per request."""
    lock = threading.Lock()
    todo = list(reversed(paths))
    lat: list[float] = []
    errors = [0]
    tiers: dict[str, int] = {}

    def worker():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        while True:
            with lock:
                if not todo:
                    break
                p = todo.pop()
            t0 = time.perf_counter()
            conn.request("GET", p)
            r = conn.getresponse()
            body = r.read()
            ms = (time.perf_counter() - t0) * 1000
            with lock:
                lat.append(ms)
                tiers[r.getheader("x-cache", "")] = tiers.get(r.getheader("x-cache", ""), 0) + 1
                if r.status != 200 or (check and not body):
                    errors[0] += 1
        conn.close()

    t = time.perf_counter()
    ths = [threading.Thread(target=worker) for _ in range(clients)]
    for th in ths:
        th.start()
    for th in ths:
        th.join()
    elapsed = time.perf_counter() - t
    return {"n": len(paths), "seconds": elapsed, "per_s": len(paths) / elapsed, "p50_ms": pct(lat, 50),
            "p99_ms": pct(lat, 99), "errors": errors[0], "x_cache": tiers}


THUMBOR_VENV = Path.home() / ".cache" / "imgcdn" / "thumbor-venv"
THUMBOR_VERSION = "7.8.0"


def thumbor_binary() -> Path | None:
    """thumbor from PyPI in its own venv, installed on first use."""
    exe = THUMBOR_VENV / "bin" / "thumbor"
    if not exe.exists():
        log(f"installing thumbor {THUMBOR_VERSION} into {THUMBOR_VENV}")
        try:
            subprocess.run([sys.executable, "-m", "venv", str(THUMBOR_VENV)], check=True)
            subprocess.run([str(THUMBOR_VENV / "bin" / "pip"), "install", "-q", f"thumbor=={THUMBOR_VERSION}"],
                           check=True)
        except subprocess.CalledProcessError as e:
            log(f"thumbor could not be installed ({e}); left out")
            return None
    return exe


def thumbor_path(name: str, kind: str, op: str) -> str:
    """Our operation as a thumbor URL (all sources are landscape)."""
    if op == "size=m":
        fmt = "jpeg" if kind == "jpeg" else "png"
        return f"/unsafe/0x640/filters:format({fmt}):quality(82):strip_exif()/{name}"
    return f"/unsafe/800x0/filters:format(webp):quality(80):strip_exif()/{name}"


def run_thumbor(exe: Path, files: list[tuple[Path, str]], op: str, root: Path, rounds: int) -> dict:
    conf = root / "thumbor.conf"
    conf.write_text(
        "LOADER = 'thumbor.loaders.file_loader'\n"
        f"FILE_LOADER_ROOT_PATH = '{files[0][0].parent}'\n"
        "STORAGE = 'thumbor.storages.no_storage'\n"
        "RESULT_STORAGE = None\n"
        "ENGINE = 'thumbor.engines.pil'\n"
        "PROGRESSIVE_JPEG = True\n"
        "PRESERVE_EXIF_INFO = False\n"
        "AUTO_WEBP = False\n"
        "RESPECT_ORIENTATION = True\n"
        "MAX_AGE = 0\n"
    )
    servers, ports = [], []
    for i in range(2):
        port = procs.free_port()
        p = procs.start([str(exe), "-p", str(port), "-i", "127.0.0.1", "-c", str(conf), "-l", "error"],
                        root / f"thumbor-{i}.log", env={"OMP_NUM_THREADS": "1"})
        procs.wait_http(port, "/healthcheck", p, what="thumbor")
        servers.append(p)
        ports.append(port)
    work = [thumbor_path(f.name, kind, op) for _ in range(rounds) for f, kind in files]
    # One client per process, each with its half of the work, at once.
    halves = [work[0::2], work[1::2]]
    results: list[dict] = [{}, {}]

    def one(i):
        results[i] = client_run(ports[i], halves[i], 1)

    t = time.perf_counter()
    ths = [threading.Thread(target=one, args=(i,)) for i in range(2)]
    for th in ths:
        th.start()
    for th in ths:
        th.join()
    elapsed = time.perf_counter() - t
    procs.stop(*servers)
    lat = sorted([results[0]["p50_ms"], results[1]["p50_ms"]])
    return {"n": len(work), "seconds": elapsed, "per_s": len(work) / elapsed, "p50_ms": lat[0],
            "p99_ms": max(results[0]["p99_ms"], results[1]["p99_ms"]),
            "errors": results[0]["errors"] + results[1]["errors"]}


def start_edge(binary: Path, root: Path, name: str, *, cache_variants: bool) -> tuple[subprocess.Popen, int, int]:
    port, admin = procs.free_port(), procs.free_port()
    transforms = {"workers": 2, "queue": 64, "max_variants_per_image": 100_000}
    if not cache_variants:
        transforms["memory_bytes"] = 0
    cfg = write_edge_config(
        root / f"{name}.toml", port=port, admin_port=admin, store_root=root / "data" / "store",
        disk_path=root / f"{name}-cache", threads=2, memory_max_bytes=2 << 30, memory_max_object_bytes=64 << 20,
        # Uncached: a disk tier that takes nothing (variants are not written).
        disk_max_bytes=(4 << 30) if cache_variants else 1, transforms=transforms,
    )
    p = procs.start([str(binary), "edge", "--config", str(cfg)], root / f"{name}.log",
                    env={"VIPS_CONCURRENCY": "1", "RUST_LOG": "warn"})
    procs.wait_http(admin, "/healthz", p, what="edge")
    return p, port, admin


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--binary", type=Path, default=RELEASE_BINARY)
    ap.add_argument("--jpegs", type=int, default=8)
    ap.add_argument("--pngs", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=6, help="passes over the files per measurement")
    ap.add_argument("--alternations", type=int, default=3, help="edge/vipsthumbnail runs each, alternating")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--out", default="transforms")
    ap.add_argument("--no-thumbor", action="store_true")
    args = ap.parse_args()
    for tool in ("vips", "vipsthumbnail"):
        if not shutil.which(tool):
            sys.exit(f"{tool} is missing: apt-get install libvips-tools (scripts/setup does)")
    if not args.no_build:
        log("cargo build --release")
        subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=REPO, check=True)
    procs.stop_all_on_exit()
    root = Path(tempfile.mkdtemp(prefix="imgcdn-transforms-"))
    log(f"images in {root}")
    files = make_images(root / "files", args.jpegs, args.pngs, args.seed)
    paths = {str(f): put(args.binary, root / "data", f) for f, _ in files}

    results: dict = {"date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "cpus": os.cpu_count(), "rounds": args.rounds,
                     "alternations": args.alternations,
                     "files": {"jpeg": args.jpegs, "png": args.pngs}, "uncached": {}, "cached": {}}
    thumbor = None if args.no_thumbor else thumbor_binary()
    edge, port, _ = start_edge(args.binary, root, "uncached", cache_variants=False)
    # Originals into the edge's memory tier first (not part of the timing).
    client_run(port, list(paths.values()), 2)
    for op in ("size=m", "w=800&format=webp"):
        # The variant cache is off: every request, repeats included, is a
        # transform.
        work = [f"{paths[str(f)]}?{op}" for _ in range(args.rounds) for f, _ in files]
        # Alternate: edge, vips, edge, vips, …; the median run of each.
        runs_e, runs_v = [], []
        for _ in range(args.alternations):
            runs_e.append(client_run(port, work, 2))
            runs_v.append(run_vips(files, op, root, args.rounds))
        e = statistics_median(runs_e)
        v = statistics_median(runs_v)
        results["uncached"][op] = {"edge": e, "vipsthumbnail": v, "ratio": e["per_s"] / v["per_s"]}
        if thumbor:
            t = run_thumbor(thumbor, files, op, root, args.rounds)
            results["uncached"][op]["thumbor"] = t
        log(f"{op}: edge {e['per_s']:.1f}/s (p99 {e['p99_ms']:.0f} ms), vipsthumbnail {v['per_s']:.1f}/s "
            f"→ {e['per_s'] / v['per_s']:.2f}×" + (f"; thumbor {t['per_s']:.1f}/s" if thumbor else ""))
    procs.stop(edge)

    edge, port, _ = start_edge(args.binary, root, "cached", cache_variants=True)
    originals = list(paths.values())
    variants = [f"{p}?size=m" for p in originals]
    client_run(port, originals + variants, 2)  # fill
    n = 400 * len(originals)
    r_orig = client_run(port, [originals[i % len(originals)] for i in range(n)], 8)
    r_var = client_run(port, [variants[i % len(variants)] for i in range(n)], 8)
    results["cached"] = {"originals": r_orig, "variants": r_var}
    log(f"cached: originals {r_orig['per_s']:.0f} req/s, size=m variants {r_var['per_s']:.0f} req/s")
    procs.stop(edge)

    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.out}.json").write_text(json.dumps(results, indent=2) + "\n")
    (RESULTS / f"{args.out}.md").write_text(report(results))
    log(f"wrote benches/results/{args.out}.md")
    shutil.rmtree(root, ignore_errors=True)


def statistics_median(runs: list[dict]) -> dict:
    """The run with the median throughput (the lower middle of an even count)."""
    return sorted(runs, key=lambda r: r["per_s"])[(len(runs) - 1) // 2]


def report(r: dict) -> str:
    lines = [
        "# imgcdn transform benchmark",
        "",
        f"- date: {r['date']}; {r['cpus']} CPUs; {r['files']['jpeg']} JPEGs 4000×3000 (12 MP, Q90) and "
        f"{r['files']['png']} PNGs 2400×1600, photo-like; {r['rounds']} passes per measurement",
        "- uncached: every request a new transform (variant caches off, originals in memory), 2 edge worker "
        "threads and 2 clients, against 2 `vipsthumbnail` processes with the same output settings; "
        f"`VIPS_CONCURRENCY=1` for both; the median of {r.get('alternations', 3)} alternating runs each",
        "",
        "| transform | edge /s | vipsthumbnail /s | edge/vips | thumbor /s | edge/thumbor | edge p50 / p99 ms | "
        "vips per-file p50 / p99 ms | thumbor p50 / p99 ms |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for op, x in r["uncached"].items():
        e, v, t = x["edge"], x["vipsthumbnail"], x.get("thumbor")
        tcols = (f"{t['per_s']:.1f} | {e['per_s'] / t['per_s']:.2f}" if t else "– | –")
        tlat = f"{t['p50_ms']:.0f} / {t['p99_ms']:.0f}" if t else "–"
        lines.append(f"| `{op}` | {e['per_s']:.1f} | {v['per_s']:.1f} | {x['ratio']:.2f} | {tcols} | "
                     f"{e['p50_ms']:.0f} / {e['p99_ms']:.0f} | {v['p50_ms']:.0f} / {v['p99_ms']:.0f} | {tlat} |")
    c = r["cached"]
    lines += [
        "",
        "Cached (memory tier, 8 keep-alive clients, Python client):",
        "",
        "| what | req/s | p50 / p99 ms | X-Cache |",
        "|---|---|---|---|",
        f"| originals (12 MP JPEG, large PNG) | {c['originals']['per_s']:.0f} | "
        f"{c['originals']['p50_ms']:.2f} / {c['originals']['p99_ms']:.2f} | {c['originals']['x_cache']} |",
        f"| `size=m` variants | {c['variants']['per_s']:.0f} | "
        f"{c['variants']['p50_ms']:.2f} / {c['variants']['p99_ms']:.2f} | {c['variants']['x_cache']} |",
        "",
        "vipsthumbnail's per-file times are one-file invocations (they include starting the process).",
        "The client for the cached rows is Python (http.client): it, not the edge, limits those req/s;",
        "benches/load/run.py measures cached serving with wrk.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
