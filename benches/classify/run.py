#!/usr/bin/env python3
"""Content classification, ours side by side with the references, in one run.

    python3 benches/classify/run.py               # ~2 min plus builds → benches/results/classify.{md,json}
    python3 benches/classify/run.py --no-build    # reuse the release binaries
    python3 benches/classify/run.py --uploads 0   # parts 1 and 2 only

1. PDQ images/s on one core (`taskset -c 0`): `imgcdn_safety::pdq::hash_rgb8`
   vs Meta's reference as packaged on PyPI (`pdqhash.compute`, Meta's C++
   `pdqHash256FromFloatLuma` behind numpy's luma), each on pixels decoded
   once; and whether the two give the same bits.
2. Nudity detector inferences/s on one core: `nudity::Detector::detect_rgb8`
   (tract) vs `nudenet.NudeDetector.detect` 3.4.2 (onnxruntime, its session
   rebuilt with one intra-op thread), on the same decoded pixels; plus the
   reference's `session.run` alone; and how far the scores are apart.
3. Upload → `ready` latency through a release control plane with every
   built-in classifier on (blocklist, PDQ, the detector) and with the
   detector off (no model), both running at once, uploads alternating
   between them in chunks; concurrency 1 and 4.

Parts 1 and 2 run our example binary (`safety/examples/classify_bench.rs`)
and this script's `reference` mode (run by the venv's Python) alternately,
`--reps` times each, the order swapped every time, so drift on a shared
machine hits both alike. The references live in a venv this script creates
(~/.cache/imgcdn/bench-venv: nudenet 3.4.2 with onnxruntime and OpenCV,
pdqhash). The image set is written by the example (`generate`): seeded
photo-like scenes at 640×480 and 1024×768 (and 1000×750, a control for the
reference's slow power-of-two widths), a few JPEG re-encodes, and the
flagged test fixture pasted on a scene at each size.

Not a test: tests never measure time.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # benches/

import attacks.control_plane as attacks_cp  # noqa: E402
from attacks.control_plane import (ControlPlane, botnet_ip, lat_summary, machine,  # noqa: E402
                                   multipart_body, one_shot, upload)
from common import REPO, RELEASE_BINARY, log  # noqa: E402
from common.procs import start, stop_all_on_exit  # noqa: E402

VENV = Path.home() / ".cache" / "imgcdn" / "bench-venv"
# nudenet brings onnxruntime, opencv-python-headless and numpy (unpinned).
REFERENCE_PACKAGES = ["nudenet==3.4.2", "pdqhash==0.2.8"]
EXAMPLE = RELEASE_BINARY.parent / "examples" / "classify_bench"
BENCH_CPU = "0"


def default_model() -> Path:
    """Where `nudity::default_model_path` looks (scripts/fetch-models puts it there)."""
    if os.environ.get("IMGCDN_NUDITY_MODEL"):
        return Path(os.environ["IMGCDN_NUDITY_MODEL"])
    models = os.environ.get("IMGCDN_MODEL_DIR") or Path.home() / ".cache" / "imgcdn" / "models"
    return Path(models) / "nudenet-320n.onnx"


# ================================================================ setup
def build(binary_too: bool) -> None:
    """Only the release targets this needs, at low priority and one job: the
    machine is shared with other builds."""
    targets = [["-p", "imgcdn-safety", "--example", "classify_bench"]]
    if binary_too:
        targets.append(["-p", "imgcdn", "--bin", "imgcdn"])
    for target in targets:
        log(f"cargo build --release {' '.join(target)}")
        subprocess.run(["nice", "-n", "10", "cargo", "build", "--release", "-j", "1", *target], cwd=REPO,
                       check=True)


def venv_python() -> Path:
    """The venv's Python, created and filled on first use."""
    python = VENV / "bin" / "python"
    probe = "import cv2, nudenet, numpy, onnxruntime, pdqhash"
    if python.exists() and subprocess.run([python, "-c", probe], capture_output=True).returncode == 0:
        return python
    log(f"creating {VENV} ({', '.join(REFERENCE_PACKAGES)})")
    subprocess.run([sys.executable, "-m", "venv", VENV], check=True)
    subprocess.run([python, "-m", "pip", "install", "-q", *REFERENCE_PACKAGES], check=True)
    return python


def make_images(work: Path) -> list[Path]:
    out = subprocess.run([EXAMPLE, "generate", work / "images"], capture_output=True, text=True, check=True)
    return [work / "images" / name for name in out.stdout.split()]


# ================================================================ the reference (venv's Python)
def reference_main(argv: list[str]) -> None:
    """`run.py reference …`: the reference's twin of `classify_bench time`,
    same JSON. Runs under the venv's Python (numpy, OpenCV, pdqhash,
    nudenet)."""
    ap = argparse.ArgumentParser(prog="run.py reference")
    ap.add_argument("--pdq-rounds", type=int, default=10)
    ap.add_argument("--detect-rounds", type=int, default=2)
    ap.add_argument("--model", required=True)
    ap.add_argument("files", nargs="+")
    args = ap.parse_args(argv)

    import cv2
    import pdqhash
    from nudenet import NudeDetector
    from nudenet.nudenet import __labels as labels, _read_image

    cv2.setNumThreads(1)  # blobFromImage's resize and cvtColor: one core, like ours
    t = time.perf_counter()
    bgr = [cv2.imread(f, cv2.IMREAD_COLOR) for f in args.files]  # what nudenet does with a path
    rgb = [cv2.cvtColor(m, cv2.COLOR_BGR2RGB) for m in bgr]
    decode_s = time.perf_counter() - t
    detector = NudeDetector(model_path=args.model)
    detector.onnx_session = session = one_thread_session(args.model)
    blobs = [_read_image(m, detector.input_width)[0] for m in bgr]

    def infer(blob):
        return session.run(None, {detector.input_name: blob})[0]

    images = []
    for f, m, px, blob in zip(args.files, bgr, rgb, blobs):
        found = detector.detect(m)
        best = [max((d["score"] for d in found if d["class"] == label), default=0.0) for label in labels]
        peak = infer(blob)[0, 4:, :].max(axis=1)
        images.append({"file": os.path.basename(f), **reference_pdq(px), "best": best,
                       "peak": [float(v) for v in peak], "boxes": len(found)})
    print(json.dumps({
        "labels": list(labels), "decode_s": decode_s, "images": images,
        "pdq_s": timed_rounds(rgb, args.pdq_rounds, pdqhash.compute),
        "detect_s": timed_rounds(bgr, args.detect_rounds, detector.detect),
        "infer_s": timed_rounds(blobs, args.detect_rounds, infer),
        "versions": reference_versions(),
        "session": {"intra_op_num_threads": session.get_session_options().intra_op_num_threads,
                    "providers": session.get_providers()},
    }))


def reference_pdq(rgb) -> dict:
    """The reference's hash of the decoded pixels, in the fields (and hex
    form) `classify_bench` prints."""
    import numpy as np
    import pdqhash
    bits, quality = pdqhash.compute(rgb)  # bit 255 first
    return {"width": rgb.shape[1], "height": rgb.shape[0], "adler32": zlib.adler32(rgb.tobytes()),
            "pdq": np.packbits(np.asarray(bits, dtype=np.uint8)).tobytes().hex(), "quality": int(quality)}


def one_thread_session(model: str):
    """nudenet builds `InferenceSession(path)` with default options: as many
    intra-op threads as cores. The same model and providers on one thread,
    so both sides use one core."""
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return ort.InferenceSession(model, sess_options=options, providers=["CPUExecutionProvider"])


def timed_rounds(items: list, rounds: int, f) -> list[list[float]]:
    """Seconds per call, `[round][item]` (as `classify_bench time` prints)."""
    out = []
    for _ in range(rounds):
        row = []
        for x in items:
            t = time.perf_counter()
            f(x)
            row.append(time.perf_counter() - t)
        out.append(row)
    return out


def reference_versions() -> dict:
    from importlib.metadata import version
    return {p: version(p) for p in ("pdqhash", "nudenet", "onnxruntime", "opencv-python-headless", "numpy")}


# ================================================================ parts 1 and 2: one core
def run_pinned(cmd: list, logfile: Path) -> dict:
    """Run `cmd` on BENCH_CPU and return the JSON line it printed last."""
    p = start([str(c) for c in cmd], logfile, cpus=BENCH_CPU)
    if p.wait() != 0:
        raise RuntimeError(f"{shlex.join(map(str, cmd[:3]))} … failed:\n{logfile.read_text()[-3000:]}")
    lines = [ln for ln in logfile.read_text().splitlines() if ln.startswith("{")]
    return json.loads(lines[-1])


def one_core(work: Path, images: list[Path], python: Path, model: Path, args) -> dict:
    """`--reps` runs of each side, alternating, the order swapped each time."""
    rounds = ["--pdq-rounds", args.pdq_rounds, "--detect-rounds", args.detect_rounds, "--model", model]
    commands = {"ours": [EXAMPLE, "time", *rounds, *images],
                "reference": [python, Path(__file__).resolve(), "reference", *rounds, *images]}
    runs: dict[str, list[dict]] = {"ours": [], "reference": []}
    for rep in range(args.reps):
        order = ["ours", "reference"] if rep % 2 == 0 else ["reference", "ours"]
        for side in order:
            log(f"  rep {rep + 1}/{args.reps}: {side}")
            runs[side].append(run_pinned(commands[side], work / f"{side}-{rep}.log"))
    return runs


def rates(runs: list[dict], key: str, groups: dict[str, list[int]]) -> dict:
    """Images/s per group over every timed round of every run: `mean` (all
    images over all time) and `best` (the fastest round)."""
    rows = [row for run in runs for row in run.get(key, [])]
    out = {}
    for name, idx in groups.items():
        per_round = [sum(row[i] for i in idx) for row in rows]
        if not per_round:
            continue
        out[name] = {"mean": len(idx) * len(per_round) / sum(per_round), "best": len(idx) / min(per_round),
                     "rounds": len(per_round), "images": len(idx),
                     "ms_per_image_median": 1000 * statistics.median(row[i] for row in rows for i in idx),
                     "round_s": [round(s, 6) for s in per_round]}
    return out


def size_groups(images: list[dict]) -> dict[str, list[int]]:
    groups: dict[str, list[int]] = {}
    for i, img in enumerate(images):
        groups.setdefault(f"{img['width']}x{img['height']}", []).append(i)
    groups["all"] = list(range(len(images)))
    return groups


def ratios(ours: dict, ref: dict) -> dict:
    return {g: {k: ours[g][k] / ref[g][k] for k in ("mean", "best")} for g in ours if g in ref}


def hamming(a: str, b: str) -> int:
    return bin(int(a, 16) ^ int(b, 16)).count("1")


def pdq_agreement(ours: list[dict], ref: list[dict]) -> dict:
    """Hash distances, separately where both decoders gave the same pixels
    (a PDQ difference) and where they did not (JPEG decoders may differ)."""
    same = [o["adler32"] == r["adler32"] for o, r in zip(ours, ref)]
    dist = [hamming(o["pdq"], r["pdq"]) for o, r in zip(ours, ref)]
    quality = [o["quality"] == r["quality"] for o, r in zip(ours, ref)]
    return {"images": len(dist), "same_pixels": sum(same),
            "max_distance_same_pixels": max((d for d, s in zip(dist, same) if s), default=None),
            "max_distance_other_pixels": max((d for d, s in zip(dist, same) if not s), default=None),
            "identical_hashes": sum(d == 0 for d in dist), "same_quality": sum(quality),
            "per_image": [{"file": o["file"], "distance": d, "same_pixels": s, "ours": o["pdq"], "reference": r["pdq"]}
                          for o, r, d, s in zip(ours, ref, dist, same)]}


def top(img: dict, labels: list[str]) -> tuple[str, float]:
    score = max(img["best"])
    return (labels[img["best"].index(score)] if score > 0 else "none", score)


def detector_agreement(ours: list[dict], ref: list[dict], labels: list[str]) -> dict:
    """How far apart the two sides' scores are, per image and label: the best
    box score (0 without a box) and the raw peak over the anchors."""
    def max_delta(key, subset=None):
        return max(abs(a - b) for o, r in zip(ours, ref) if subset is None or subset(o, r)
                   for a, b in zip(o[key], r[key]))

    def same_pixels(o, r):
        return o["adler32"] == r["adler32"]

    per_image = [{"file": o["file"], "ours": top(o, labels), "reference": top(r, labels),
                  "boxes": [o["boxes"], r["boxes"]]} for o, r in zip(ours, ref)]
    return {"images": len(ours),
            "same_top_label": sum(p["ours"][0] == p["reference"][0] for p in per_image),
            "same_box_count": sum(p["boxes"][0] == p["boxes"][1] for p in per_image),
            "max_best_delta": max_delta("best"), "max_peak_delta": max_delta("peak"),
            "max_peak_delta_same_pixels": max_delta("peak", same_pixels),
            "flagged": [p for p in per_image if p["ours"][0] != "none" or p["reference"][0] != "none"],
            "per_image": per_image}


def summarize_one_core(runs: dict) -> dict:
    ours_imgs, ref_imgs = runs["ours"][0]["images"], runs["reference"][0]["images"]
    if [o["file"] for o in ours_imgs] != [r["file"] for r in ref_imgs]:
        raise RuntimeError("the two sides hashed different file lists")
    groups = size_groups(ours_imgs)
    pdq = {"ours": rates(runs["ours"], "pdq_s", groups), "reference": rates(runs["reference"], "pdq_s", groups)}
    det = {"ours": rates(runs["ours"], "detect_s", groups),
           "reference": rates(runs["reference"], "detect_s", groups),
           "reference_session_run": rates(runs["reference"], "infer_s", groups)}
    pdq["ratio"] = ratios(pdq["ours"], pdq["reference"])
    det["ratio"] = ratios(det["ours"], det["reference"])
    det["ratio_vs_session_run"] = ratios(det["ours"], det["reference_session_run"])
    pdq["agreement"] = pdq_agreement(ours_imgs, ref_imgs)
    det["agreement"] = detector_agreement(ours_imgs, ref_imgs, runs["ours"][0]["labels"])
    return {"pdq": pdq, "detector": det, "files": [o["file"] for o in ours_imgs],
            "decode_s": {side: [r["decode_s"] for r in rs] for side, rs in runs.items()},
            "versions": runs["reference"][0]["versions"], "session": runs["reference"][0]["session"]}


# ================================================================ part 3: upload → ready
def start_control_planes(root: Path, model: Path) -> dict[str, ControlPlane]:
    """Detector on (the model configured) and off (no model), side by side."""
    def overrides(name: str, nudity: dict) -> dict:
        return {"stores.staging": {"scheme": "fs", "root": str(root / name / "staging")},
                "moderation.nudity": nudity}
    return {"on": ControlPlane(root, "detector-on", overrides("detector-on", {"model": model})),
            "off": ControlPlane(root, "detector-off", overrides("detector-off", {}))}


async def ready_ms(port: int, body: bytes, xff: str) -> tuple[str, float | None]:
    """Upload anonymously; the client-observed time until the image is
    `ready`. A `processing` answer is polled on its public viewer page, which
    answers 200 once the image is ready (anonymous clients cannot GET
    /v1/images/{id})."""
    t0 = time.perf_counter()
    resp = await upload(port, body, xff)
    image = resp.json()
    if resp.status != 201:
        return str(resp.status), None
    if image.get("status") == "processing":
        while (await one_shot(port, "GET", f"/{image['id']}", {"X-Forwarded-For": xff})).status != 200:
            if time.perf_counter() - t0 > 60:
                return "processing", None
            await asyncio.sleep(0.02)
        return "processing→ready", (time.perf_counter() - t0) * 1000
    return image.get("status", "?"), (time.perf_counter() - t0) * 1000


async def upload_chunk(port: int, bodies: list[bytes], first: int, n: int, concurrency: int) -> list:
    """Uploads first..first+n (bodies cycled), `concurrency` at a time, each
    from its own address (the anonymous limit is 20 an hour per client)."""
    todo = iter(range(first, first + n))
    results = []

    async def worker():
        for i in todo:
            results.append(await ready_ms(port, bodies[i % len(bodies)], botnet_ip(i)))

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - t0, results


def upload_latency(root: Path, images: list[Path], model: Path, args) -> dict:
    bodies = [multipart_body(p.read_bytes(), p.name) for p in images]
    cps = start_control_planes(root, model)
    out = {"uploads_per_config": args.uploads, "chunk": args.chunk, "configs": {}}
    try:
        for k, cp in enumerate(cps.values()):  # not counted: first uploads pay for lazy set-up
            asyncio.run(upload_chunk(cp.port, bodies, 5_000_000 + 10 * k, 4, 1))
        for conc in args.concurrency:
            walls = {name: [] for name in cps}
            results = {name: [] for name in cps}
            for k, first in enumerate(range(0, args.uploads, args.chunk)):
                order = list(cps) if k % 2 == 0 else list(cps)[::-1]
                for name in order:
                    n = min(args.chunk, args.uploads - first)
                    # Distinct addresses per config and concurrency.
                    base = (list(cps).index(name) * 10 + args.concurrency.index(conc)) * 100_000
                    wall, res = asyncio.run(upload_chunk(cps[name].port, bodies, base + first, n, conc))
                    walls[name].append(wall)
                    results[name] += res
            for name in cps:
                out["configs"].setdefault(name, {})[f"c{conc}"] = latency_summary(results[name], walls[name])
            log(f"  concurrency {conc}: " + ", ".join(
                f"{name} p50 {out['configs'][name][f'c{conc}']['p50_ms']} ms" for name in cps))
        out["ratio_on_off"] = {c: {k: out["configs"]["on"][c][k] / out["configs"]["off"][c][k]
                                   for k in ("p50_ms", "p99_ms", "mean_ms", "best_ms")}
                               for c in out["configs"]["on"]}
        out["server_logs"] = {name: cp.log_findings() for name, cp in cps.items()}
        out["config_on"] = cps["on"].config
    finally:
        for cp in cps.values():
            cp.stop()
    return out


def latency_summary(results: list[tuple[str, float | None]], walls: list[float]) -> dict:
    ms = [m for _, m in results if m is not None]
    statuses: dict[str, int] = {}
    for st, _ in results:
        statuses[st] = statuses.get(st, 0) + 1
    s = lat_summary(ms)
    s.update(mean_ms=round(statistics.fmean(ms), 2) if ms else None, best_ms=round(min(ms), 2) if ms else None,
             statuses=statuses, uploads_per_s=round(len(results) / sum(walls), 2))
    return s


# ================================================================ report
def git_state() -> str:
    def git(*a):
        return subprocess.run(["git", *a], cwd=REPO, capture_output=True, text=True).stdout.strip()
    dirty = git("status", "--porcelain", "--", "safety", "control-plane", "media", "shared", "src")
    return git("rev-parse", "--short", "HEAD") + (" + uncommitted changes" if dirty else "")


def f1(v) -> str:
    return "–" if v is None else f"{v:.1f}"


def f2(v) -> str:
    return "–" if v is None else f"{v:.2f}"


def rate_rows(part: dict, sides: list[str], ratio_keys: list[str]) -> list[str]:
    """One table row per image group: mean / best for each side, then each ratio."""
    rows = []
    for group in part["ours"]:
        cells = [f"{f1(part[k][group]['mean'])} / {f1(part[k][group]['best'])}" for k in sides]
        cells += [f"{f2(part[k][group]['mean'])} / {f2(part[k][group]['best'])}" for k in ratio_keys]
        n = part["ours"][group]
        rows.append(f"| {group} ({n['images']} images, {n['rounds']} rounds) | " + " | ".join(cells) + " |")
    return rows


def markdown(r: dict) -> str:
    m, oc = r["machine"], r.get("one_core")
    out = ["# Content classification: ours vs the references", "",
           f"Run {r['date']} with `{shlex.join(['python3', 'benches/classify/run.py', *r['argv']])}` "
           f"({r['wall_s']:.0f} s), built from {r['built_from']}.", "",
           f"Machine: {m['nproc']} CPUs ({m['cpu']}), {m['mem_total_mib']} MiB RAM, Linux {m['kernel']}; "
           f"load average {', '.join(f'{x:.2f}' for x in m['loadavg'])} at start, "
           f"{', '.join(f'{x:.2f}' for x in r['loadavg_end'])} at the end; {m['compiler_processes']} compiler "
           "processes running at start. Absolute figures drift on this shared machine; the ratios, from "
           "alternating runs, are the figures to read.", ""]
    if oc:
        v, pa, da = oc["versions"], oc["pdq"]["agreement"], oc["detector"]["agreement"]
        out += ["Parts 1 and 2 run pinned to CPU 0 (`taskset -c 0`), one thread each side, on the same "
                f"{len(oc['files'])} files decoded once per run (ours: the `image` crate; the reference: "
                "OpenCV's `imread`). Figures: images/s, mean over all timed rounds / best round; ratio = "
                "ours / reference (above 1: ours is faster). "
                f"Reference versions: {', '.join(f'{k} {x}' for k, x in v.items())}.", "",
                "## 1. PDQ, images/s on one core", "",
                "| images | ours `pdq::hash_rgb8` | reference `pdqhash.compute` | ratio ours/reference |",
                "|---|---|---|---|",
                *rate_rows(oc["pdq"], ["ours", "reference"], ["ratio"]), "",
                "1000x750 is a control for 1024x768: the reference filters columns with the row length as "
                "stride, and a power-of-two row (1024 floats, 4 KiB) aliases in the CPU caches, which makes "
                "it 2-3 times slower per pixel at that width than at 1000 or 1040.", "",
                f"Agreement: {pa['identical_hashes']} of {pa['images']} hashes identical; "
                f"{pa['same_pixels']} images decoded to the same pixels on both sides, max Hamming distance "
                f"there {pa['max_distance_same_pixels']} bits, on the others (JPEG, different decoders) "
                f"{pa['max_distance_other_pixels']}; same quality score on {pa['same_quality']}.", "",
                "## 2. Nudity detector, inferences/s on one core", "",
                "| images | ours `Detector::detect_rgb8` (tract) | reference `NudeDetector.detect` | "
                "reference `session.run` alone | ratio ours/detect | ratio ours/session.run |",
                "|---|---|---|---|---|---|",
                *rate_rows(oc["detector"], ["ours", "reference", "reference_session_run"],
                           ["ratio", "ratio_vs_session_run"]), "",
                f"onnxruntime session: {oc['session']}. `NudeDetector.detect` is what a NudeNet user calls "
                "(OpenCV preprocessing, the session, NudeNet's Python post-processing); `session.run` alone is "
                "the model on a preprocessed blob, a stricter bar than our whole `detect_rgb8`.", "",
                f"Agreement over {da['images']} images: same top label (or none) on {da['same_top_label']}, "
                f"same number of boxes on {da['same_box_count']}; largest score difference per label "
                f"{da['max_best_delta']:.2e} (best box), {da['max_peak_delta']:.2e} (raw anchor peak; "
                f"{da['max_peak_delta_same_pixels']:.2e} where the decoded pixels are the same).", "",
                "Images with a detection: " + "; ".join(
                    f"{p['file']}: ours {p['ours'][0]} {p['ours'][1]:.4f}, reference {p['reference'][0]} "
                    f"{p['reference'][1]:.4f}" for p in da["flagged"]) + ".", ""]
    up = r.get("uploads")
    if up:
        out += ["## 3. Upload → ready through the control plane", "",
                f"A release control plane with the detector on (`moderation.nudity.model` set) and one with it "
                f"off (no model), both running, unpinned; {up['uploads_per_config']} anonymous multipart uploads "
                f"each per concurrency (the same files, cycled), alternating between the two in chunks of "
                f"{up['chunk']}, every upload from its own `X-Forwarded-For`. Latency is the client's, from "
                "connecting to the answer (a `processing` answer would be polled until ready). Blocklist and PDQ "
                "run in both.", "",
                "| concurrency | detector | p50 ms | p99 ms | mean ms | best ms | max ms | uploads/s | answers |",
                "|---|---|---|---|---|---|---|---|---|"]
        for c in up["ratio_on_off"]:
            for name in ("on", "off"):
                s = up["configs"][name][c]
                out.append(f"| {c[1:]} | {name} | {s['p50_ms']} | {s['p99_ms']} | {s['mean_ms']} | {s['best_ms']} "
                           f"| {s['max_ms']} | {s['uploads_per_s']} | "
                           f"{', '.join(f'{k}×{n}' for k, n in s['statuses'].items())} |")
            q = up["ratio_on_off"][c]
            out.append(f"| {c[1:]} | **on/off** | {f2(q['p50_ms'])} | {f2(q['p99_ms'])} | {f2(q['mean_ms'])} | "
                       f"{f2(q['best_ms'])} | | | |")
        out.append("")
    return "\n".join(out) + "\n"


# ================================================================ main
def main() -> None:
    if sys.argv[1:2] == ["reference"]:
        reference_main(sys.argv[2:])
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--no-build", action="store_true", help="reuse the release example and binary")
    ap.add_argument("--reps", type=int, default=3, help="runs of each side, alternating (parts 1, 2)")
    ap.add_argument("--pdq-rounds", type=int, default=10, help="timed PDQ rounds over the set, per run")
    ap.add_argument("--detect-rounds", type=int, default=2, help="timed detector rounds over the set, per run")
    ap.add_argument("--uploads", type=int, default=200, help="uploads per config and concurrency (0: skip part 3)")
    ap.add_argument("--chunk", type=int, default=25, help="uploads in a row before switching config")
    ap.add_argument("--concurrency", type=lambda s: [int(x) for x in s.split(",")], default=[1, 4])
    ap.add_argument("--binary", type=Path, help="the imgcdn binary for part 3 (not built then; default: "
                    f"{RELEASE_BINARY})")
    ap.add_argument("--model", type=Path, default=default_model())
    ap.add_argument("--built-from", help="what the binaries were built from, for the report "
                    "(default: this checkout's commit, and whether it has uncommitted changes)")
    ap.add_argument("--out", default=str(REPO / "benches" / "results" / "classify"),
                    help="results path without extension")
    args = ap.parse_args()
    if not args.model.exists():
        sys.exit(f"{args.model} missing: scripts/fetch-models installs it")
    if args.binary:
        attacks_cp.BINARY = args.binary.resolve()  # what ControlPlane starts and machine() reports
    if not args.no_build:
        build(binary_too=not args.binary)
    python = venv_python()
    stop_all_on_exit()
    work = Path(tempfile.mkdtemp(prefix="imgcdn-classify-"))
    started = time.time()
    results = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "argv": sys.argv[1:],
               "built_from": args.built_from or git_state(), "machine": machine(), "model": str(args.model)}
    try:
        images = make_images(work)
        log(f"{len(images)} images in {work / 'images'}")
        log("parts 1 and 2: PDQ and the detector on one core")
        results["one_core"] = summarize_one_core(one_core(work, images, python, args.model, args))
        if args.uploads:
            log("part 3: upload → ready, detector on and off")
            results["uploads"] = upload_latency(work / "cp", images, args.model, args)
    finally:
        results["wall_s"] = time.time() - started
        results["loadavg_end"] = os.getloadavg()
        shutil.rmtree(work, ignore_errors=True)
    Path(args.out + ".json").write_text(json.dumps(results, indent=1, default=str))
    Path(args.out + ".md").write_text(markdown(results))
    log(f"results: {args.out}.md / .json")
    print(markdown(results))


if __name__ == "__main__":
    main()
