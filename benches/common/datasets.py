"""Benchmark data: seeded PNG files, and data sets published into an edge fs
store with the `imgcdn put` binary.

The URL path of an image is never derived here: `imgcdn put` writes
`objects/{id}` and `manifests/{id}.json` (bytes first, manifest last, as the
control plane does) and prints the image's CDN URL; its path is what the
benchmarks request and where nginx finds the same file.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import math
import os
import random
import shutil
import subprocess
import time
import urllib.parse
import zlib
from pathlib import Path, PurePosixPath

from . import MIB, log

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


# ------------------------------------------------------------------- PNGs
def _chunk(kind: bytes, data: bytes) -> bytes:
    return (
        len(data).to_bytes(4, "big")
        + kind
        + data
        + (zlib.crc32(kind + data) & 0xFFFFFFFF).to_bytes(4, "big")
    )


def png(rng: random.Random, width: int, height: int, level: int = -1) -> bytes:
    """A valid 8-bit RGB PNG of `width` x `height` noise pixels from `rng`
    (so unique per seed), its IDAT compressed at zlib `level` (0: stored)."""
    raw = b"".join(b"\x00" + rng.randbytes(3 * width) for _ in range(height))
    ihdr = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 2, 0, 0, 0])
    return (
        PNG_SIGNATURE
        + _chunk(b"IHDR", ihdr)
        + _chunk(b"IDAT", zlib.compress(raw, level))
        + _chunk(b"IEND", b"")
    )


def png_of_size(rng: random.Random, target: int) -> tuple[bytes, int, int]:
    """A valid RGB PNG of about `target` bytes: noise rows in stored
    (uncompressed) deflate blocks, so the size is what we ask for.
    Returns (bytes, width, height)."""
    overhead = 8 + 25 + 12 + 12 + 6  # signature, IHDR, IDAT and IEND framing, zlib
    payload = max(16, target - overhead)
    width = max(4, min(2048, int(math.sqrt(payload / 3))))
    row = 1 + 3 * width
    height = max(1, round(payload / row))
    return png(rng, width, height, level=0), width, height


def seeded_id(rng: random.Random, seen: set[str]) -> str:
    """An 8-character base62 name drawn from `rng`, distinct from `seen`."""
    while True:
        name = "".join(rng.choice(ALPHABET) for _ in range(8))
        if name not in seen:
            seen.add(name)
            return name


# ------------------------------------------------------------ imgcdn put
def put(binary: Path, data_dir: Path, file: Path) -> str:
    """Publish `file` into the fs store `data_dir/store` with `imgcdn put`;
    return the URL path it printed (e.g. `/{shard}/{id}.png` today)."""
    r = subprocess.run(
        [str(binary), "put", "--data-dir", str(data_dir), str(file)],
        capture_output=True, text=True, timeout=120,
    )
    lines = r.stdout.split()
    if r.returncode != 0 or not lines:
        raise RuntimeError(f"imgcdn put {file} failed ({r.returncode}): {r.stdout}{r.stderr}")
    path = urllib.parse.urlsplit(lines[-1]).path
    if not path.startswith("/") or ".." in path:
        raise RuntimeError(f"imgcdn put {file}: unexpected output {r.stdout!r}")
    return path


def published_id(store: Path, path: str) -> str:
    """The image id in a path `imgcdn put` printed (its file name's stem),
    checked against the manifest the same call wrote."""
    image_id = PurePosixPath(path).name.split(".", 1)[0]
    if not (store / "manifests" / f"{image_id}.json").is_file():
        raise RuntimeError(f"no manifest for {path} under {store} (has `imgcdn put` changed?)")
    return image_id


# -------------------------------------------------------------- data sets
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


def generate_files(n: int, median: int, sigma: float, lo: int, hi: int, seed: int,
                   name: str):
    """Yield (name, png bytes, width, height) for the `n` files of a data set:
    log-normal sizes clamped to [lo, hi], all from one seeded stream.

    The names are the ids the first version of this benchmark gave its files;
    the edge ids now come from `imgcdn put`, but drawing the names keeps the
    random stream, hence every file's size and bytes, as they were."""
    rng = random.Random(f"{seed}:{name}")
    seen: set[str] = set()
    for _ in range(n):
        file_name = seeded_id(rng, seen)
        size = int(math.exp(rng.gauss(math.log(median), sigma)))
        size = max(lo, min(hi, size))
        data, width, height = png_of_size(rng, size)
        yield file_name, data, width, height


def _publish(binary: Path, root: Path, staged: Path, want: dict) -> dict:
    """Publish one staged file; check the manifest `put` wrote against `want`
    (bytes, sha256, dimensions); hard-link the object into www/ at its URL
    path; return its index entry."""
    store, www = root / "store", root / "www"
    path = put(binary, root, staged)
    image_id = published_id(store, path)
    manifest = json.loads((store / "manifests" / f"{image_id}.json").read_text())
    got = {k: manifest.get(k) for k in want}
    if got != want:
        raise RuntimeError(f"manifest of {path}: {got}, expected {want}")
    obj = store / (manifest.get("object") or f"objects/{image_id}")
    target = www / path.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(obj, target)
    except OSError:
        shutil.copyfile(obj, target)
    staged.unlink()
    return {"id": image_id, "path": path, "bytes": want["bytes"], "sha256": want["sha256"]}


def make_dataset(data_dir: Path, binary: Path, name: str, n: int, median: int, sigma: float,
                 lo: int, hi: int, seed: int) -> Dataset:
    """Generate (or reuse, when the same parameters were generated before) a
    data set under `data_dir`, each file published with `binary put`."""
    # v2: ids and URL paths from `imgcdn put` (v1 mirrored the shard in Python).
    params = dict(name=name, n=n, median=median, sigma=sigma, lo=lo, hi=hi, seed=seed, v=2)
    tag = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:10]
    root = data_dir / f"{name}-{tag}"
    index = root / "index.json"
    if index.exists():
        keys = json.loads(index.read_text())["keys"]
        return Dataset(root, keys)
    if root.exists():
        shutil.rmtree(root)
    staging = root / "staging"
    for d in (staging, root / "store" / "objects", root / "store" / "manifests", root / "www"):
        d.mkdir(parents=True)
    log(f"generating data set {name}: {n} files, published with {binary} put")
    t0 = time.time()
    # One `put` process per file, as many at once as there are CPUs; the
    # files are generated in order (one seeded stream) and indexed in order.
    workers = os.cpu_count() or 1
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        futures: list[concurrent.futures.Future] = []
        for file_name, data, width, height in generate_files(n, median, sigma, lo, hi, seed,
                                                             name):
            if len(futures) >= 4 * workers:
                futures[-4 * workers].result()  # bound the staged files; fail early
            staged = staging / f"{file_name}.png"
            staged.write_bytes(data)
            want = {"content_type": "image/png", "bytes": len(data),
                    "sha256": hashlib.sha256(data).hexdigest(), "width": width, "height": height}
            futures.append(pool.submit(_publish, binary, root, staged, want))
        keys = [f.result() for f in futures]
    staging.rmdir()
    if len({k["id"] for k in keys}) != n:
        raise RuntimeError(f"data set {name}: `imgcdn put` gave duplicate ids")
    # nginx workers run as nobody: everything must be world-readable.
    for dirpath, dirnames, filenames in os.walk(root):
        os.chmod(dirpath, 0o755)
        for f in filenames:
            os.chmod(os.path.join(dirpath, f), 0o644)
    index.write_text(json.dumps({"params": params, "keys": keys}))
    log(f"generated data set {name}: {n} files, {sum(k['bytes'] for k in keys) / MIB:.1f} MiB "
        f"in {time.time() - t0:.1f}s -> {root}")
    return Dataset(root, keys)
