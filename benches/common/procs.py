"""Processes the benchmarks start: start, stop (whole process trees), clean up
on exit, wait for HTTP, free ports, CPU time and peak RSS readings.

Only processes started through `start` are ever signalled: each runs in its
own session (process group), and `stop` signals that group and the
descendants it finds under the process in /proc.
"""

from __future__ import annotations

import atexit
import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

PROCS: list[subprocess.Popen] = []


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def children_of(pid: int) -> list[int]:
    """pid and all its descendants (from /proc)."""
    parent: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            stat = Path(f"/proc/{d}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        parent.setdefault(ppid, []).append(int(d))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(parent.get(p, []))
    return out


def start(cmd: list[str], logfile: Path, *, cpus: str | None = None,
          env: dict | None = None) -> subprocess.Popen:
    """Start `cmd` in its own process group, stdout and stderr appended to
    `logfile`; pinned to `cpus` (a taskset CPU list) when given."""
    if cpus is not None:
        cmd = ["taskset", "-c", cpus, *cmd]
    f = open(logfile, "ab")
    p = subprocess.Popen(
        cmd,
        stdout=f,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        env={**os.environ, **(env or {})},
    )
    f.close()
    PROCS.append(p)
    return p


def stop(*procs: subprocess.Popen) -> None:
    """SIGTERM each process, its group and every descendant (all of them at
    once); SIGKILL whatever is still alive 5 s later. Only processes this
    script started."""
    for p in procs:
        if p in PROCS:
            PROCS.remove(p)
    trees = {p: children_of(p.pid) for p in procs if p.poll() is None}
    if not trees:
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for p, pids in trees.items():
            try:
                os.killpg(p.pid, sig)
            except ProcessLookupError:
                pass
            for pid in pids:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
        deadline = time.time() + 5
        while time.time() < deadline:
            if all(p.poll() is not None and not any(_alive(x) for x in pids[1:])
                   for p, pids in trees.items()):
                return
            time.sleep(0.05)
    for p in trees:
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            print(f"could not stop pid {p.pid}", file=sys.stderr)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    except OSError:
        return False


def stop_all() -> None:
    """Stop every process started and not stopped yet."""
    try:
        stop(*PROCS)
    except Exception as e:  # noqa: BLE001 - cleanup must go on
        print(f"cleanup: {e}", file=sys.stderr)


def on_signal(signum, _frame):
    stop_all()
    sys.exit(128 + signum)


def stop_all_on_exit() -> None:
    """Stop every started process on exit: normal, error, Ctrl-C or SIGTERM."""
    atexit.register(stop_all)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)


def http_get(port: int, path: str, timeout: float = 5.0) -> tuple[int, bytes, dict]:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, r.read(), {k.lower(): v for k, v in r.getheaders()}
    finally:
        c.close()


def wait_http(port: int, path: str, proc: subprocess.Popen | None = None, what: str = "server",
              logfile: Path | None = None, timeout: float = 30.0, want: int | None = None,
              interval: float = 0.1) -> None:
    """Wait until GET `path` on 127.0.0.1:`port` answers `want` (default: any
    status below 500). Fails early if `proc` exits; the error carries the
    tail of `logfile`."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            break
        try:
            status, _, _ = http_get(port, path, timeout=2)
            if status == want if want is not None else status < 500:
                return
        except OSError:
            pass
        time.sleep(interval)
    tail = logfile.read_text(errors="replace")[-3000:] if logfile and logfile.exists() else ""
    expected = "come up" if want is None else f"answer {want} on {path}"
    raise RuntimeError(f"{what} did not {expected} on port {port}:\n{tail}")


def cpu_ticks(pid: int) -> int:
    """utime+stime (clock ticks) of pid and its descendants."""
    total = 0
    for p in children_of(pid):
        try:
            f = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(f[11]) + int(f[12])
        except (OSError, IndexError, ValueError):
            pass
    return total


def peak_rss_kib(pid: int) -> int:
    """Sum of VmHWM over pid and its descendants (kB)."""
    total = 0
    for p in children_of(pid):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total
