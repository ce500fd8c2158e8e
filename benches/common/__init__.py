"""Helpers shared by the benchmark scripts (benches/load/run.py,
benches/sync/propagation.py).

The scripts are run from the repository root as `python3 benches/...`; each
puts the `benches/` directory on sys.path and imports from here:

- `datasets`: seeded PNG generation and data sets published into an edge fs
  store with `imgcdn put` (the URL path of each image comes from the binary);
- `procs`: starting and stopping process trees, waiting for HTTP, free
  ports, CPU time and peak RSS readings;
- `edge`: the edge config file, written by one function.

Nothing here is part of the test suite.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent.parent
# `cargo build --release` puts it under CARGO_TARGET_DIR when that is set.
RELEASE_BINARY = Path(os.environ.get("CARGO_TARGET_DIR") or REPO / "target") / "release" / "imgcdn"
MIB = 1024 * 1024


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)
