"""The edge's config file (`imgcdn edge --config FILE`), written by one
function for every benchmark. Keys are the ones config/edge.toml documents;
a parameter left at None is left out of the file (the edge's default holds).
"""

from __future__ import annotations

import json
from pathlib import Path


def _value(v) -> str:
    """A TOML value: JSON's string escapes are valid in TOML basic strings."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, (str, Path)):
        return json.dumps(str(v))
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    raise TypeError(f"no TOML form for {v!r}")


def edge_config(
    *,
    port: int,
    admin_port: int,
    store_root: Path | str,
    disk_path: Path | str,
    threads: int = 1,
    h2c: bool = False,
    grace_period_secs: int | None = None,
    shutdown_timeout_secs: int | None = None,
    keepalive_secs: int | None = None,
    memory_max_bytes: int | None = None,
    memory_max_object_bytes: int | None = None,
    disk_max_bytes: int | None = None,
    origin: dict | None = None,
    sync: dict | None = None,
    transforms: dict | None = None,
    extra: dict | None = None,
) -> str:
    """The text of an edge config: listeners on 127.0.0.1, an fs store,
    the disk tier at `disk_path`; optional [memory] budgets, [origin],
    [sync] and [transforms] tables (dicts, written in their order); `extra`
    maps "key" or "table.key" to a value that is set on top."""
    tables: list[tuple[str | None, list[tuple[str, object]]]] = [
        (None, [
            ("listen", [f"127.0.0.1:{port}"]),
            ("admin_listen", f"127.0.0.1:{admin_port}"),
            ("h2c", True if h2c else None),
            ("threads", threads),
            ("grace_period_secs", grace_period_secs),
            ("shutdown_timeout_secs", shutdown_timeout_secs),
            ("keepalive_secs", keepalive_secs),
        ]),
        ("store", [("scheme", "fs"), ("root", store_root)]),
        ("memory", [("max_bytes", memory_max_bytes),
                    ("max_object_bytes", memory_max_object_bytes)]),
        ("disk", [("path", disk_path), ("max_bytes", disk_max_bytes)]),
        ("origin", list((origin or {}).items())),
        ("sync", list((sync or {}).items())),
        ("transforms", list((transforms or {}).items())),
    ]
    for dotted, v in (extra or {}).items():
        name, _, key = dotted.rpartition(".")
        name = name or None
        for t, keys in tables:
            if t == name:
                keys[:] = [(k, x) for k, x in keys if k != key] + [(key, v)]
                break
        else:
            tables.append((name, [(key, v)]))
    lines = []
    for name, keys in tables:
        keys = [(k, v) for k, v in keys if v is not None]
        if name is not None and not keys:
            continue
        if name is not None:
            lines.append(f"[{name}]")
        lines += [f"{k} = {_value(v)}" for k, v in keys]
    return "\n".join(lines) + "\n"


def write_edge_config(path: Path | str, **params) -> Path:
    """Write `edge_config(**params)` to `path`; return the path."""
    path = Path(path)
    path.write_text(edge_config(**params))
    return path
