"""Reporting for the load benchmark: machine and tool versions, and the
Markdown table written next to the JSON (benches/results/*.md)."""

from __future__ import annotations

import datetime
import hashlib
import os
import platform
import statistics
import subprocess
from pathlib import Path

from common import REPO


def machine() -> dict:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = 0
    try:
        mem = int(Path("/proc/meminfo").read_text().split()[1]) // 1024
    except (OSError, ValueError, IndexError):
        pass
    return {"nproc": os.cpu_count(), "cpu_model": model, "kernel": platform.release(),
            "mem_mib": mem, "hostname_hash": hashlib.sha256(platform.node().encode()).hexdigest()[:8]}


def tool_versions() -> dict:
    def out(cmd):
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
            return (r.stdout + r.stderr).strip().splitlines()[0]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            return None

    return {"nginx": out(["nginx", "-v"]), "varnish": out(["varnishd", "-V"]),
            "wrk": out(["wrk", "-v"]), "h2load": out(["h2load", "--version"]),
            "imgcdn": out(["git", "-C", str(REPO), "describe", "--always", "--dirty"])}


def edge_version(binary: Path) -> str:
    """Which build was measured: the tree's commit, and the binary's path and mtime."""
    tree = tool_versions()["imgcdn"]
    try:
        built = datetime.datetime.fromtimestamp(binary.stat().st_mtime, datetime.timezone.utc)
        return f"tree {tree}; binary {binary} built {built.isoformat(timespec='seconds')}"
    except OSError:
        return f"tree {tree}; binary {binary}"


def busy_compilers() -> int:
    n = 0
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                if Path(f"/proc/{d}/comm").read_text().strip() in ("rustc", "cc1", "cc1plus", "ld"):
                    n += 1
            except OSError:
                pass
    return n


def cpu_share_note(report: dict) -> str:
    """How much of its CPU each server got while driven: well below 1 with a
    client-side CPU below 1 means other work on the machine held the core."""
    utils = [r["server_cpu_util"] for sc in report["scenarios"] for e in sc["results"]
             for runs in e["runs"].values() for r in runs]
    if not utils:
        return "n/a"
    utils.sort()
    return (f"median {statistics.median(utils):.2f} of one core per measured round "
            f"(min {utils[0]:.2f}, max {utils[-1]:.2f}); rounds far below 1.0 were slowed by "
            f"other work on the machine, so compare CPU µs/req as well as req/s")


def fmt_ratio(x) -> str:
    return "–" if x is None else f"{x:.2f}"


def markdown(report: dict) -> str:
    m = report["machine"]
    lines = [
        f"# imgcdn load benchmark ({report['mode']})",
        "",
        f"- date: {report['date']}",
        f"- machine: {m['nproc']} CPUs ({m['cpu_model']}), {m['mem_mib']} MiB, Linux {m['kernel']}",
        f"- CPU placement: {report['pinning']}",
        f"- load: {report['load_note']}",
        f"- server CPU share: {cpu_share_note(report)}",
        f"- data: {report['data_note']}",
        *([f"- edge settings on top of the defaults: "
           f"{', '.join(f'{k} = {v}' for k, v in report['settings']['edge_set'].items())}"]
          if report.get("settings", {}).get("edge_set") else []),
        f"- tools: {', '.join(f'{k} {v}' for k, v in report['versions'].items() if v)}",
        "",
        "Medians over rounds. req/s and ratios: higher is better for the edge; "
        "p99 and CPU µs/req: lower is better. `e/n/v` = edge/nginx/varnish. "
        "Server CPU counts all of a server's processes (Varnish: plus its nginx "
        "backend). Peak RSS is VmHWM summed over the server's processes.",
        "",
        "| scenario | conns | edge req/s | nginx req/s | varnish req/s | edge/nginx | "
        "edge/varnish | MB/s e/n/v | p50 ms e/n/v | p99 ms e/n/v | p99.9 ms e/n/v | "
        "CPU µs/req e/n/v | errors e/n/v |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for sc in report["scenarios"]:
        for entry in sc["results"]:
            s = entry["summary"]
            names = ["edge", "nginx", "varnish"]

            def col(key, f="{:.0f}"):
                return "/".join(f.format(s[n][key]) if n in s else "–" for n in names)

            def one(n, key):
                return f"{s[n][key]:.0f}" if n in s else "–"

            conns = str(entry["connections"])
            if "h2_clients" in entry:
                conns += f" ({entry['h2_clients']}×{entry['h2_streams_per_client']})"
            lines.append(
                f"| {sc['name']} | {conns} | {one('edge', 'rps')} | {one('nginx', 'rps')} | "
                f"{one('varnish', 'rps')} | "
                f"{fmt_ratio(entry.get('edge/nginx', {}).get('rps'))} | "
                f"{fmt_ratio(entry.get('edge/varnish', {}).get('rps'))} | "
                f"{col('mbps')} | {col('p50_ms', '{:.2f}')} | {col('p99_ms', '{:.2f}')} | "
                f"{col('p999_ms', '{:.2f}')} | {col('server_cpu_us_per_req', '{:.0f}')} | "
                f"{col('errors', '{:d}')} |"
            )
    lines += ["", "| scenario | what | peak RSS MiB edge / nginx / varnish (+ its nginx) | "
              "edge bound MiB (memory tier + send buffer + 64) |",
              "|---|---|---|---|"]
    for sc in report["scenarios"]:
        r = sc["peak_rss_kib"]

        def mib(k):
            return f"{r[k] / 1024:.0f}" if k in r else "–"

        bound = ""
        if "edge_budget_bytes" in sc and "edge" in r:
            limit = (sc["edge_budget_bytes"] + 64 * 1024 * 1024) / 1024
            verdict = "within" if r["edge"] <= limit else "OVER"
            bound = f"{limit / 1024:.0f} ({verdict})"
        lines.append(f"| {sc['name']} | {sc['description']} | {mib('edge')} / {mib('nginx')} / "
                     f"{mib('varnish')} (+{mib('nginx-backend(varnish)')}) | {bound} |")
    floors = []
    for sc in report["scenarios"]:
        for entry in sc["results"]:
            s = entry["summary"]
            f = s.get("floor")
            if not f:
                continue
            floors.append(
                f"| {sc['name']} | {entry['connections']} | {f['rps']:.0f} | "
                f"{fmt_ratio(entry.get('floor/nginx', {}).get('rps'))} | "
                f"{fmt_ratio(entry.get('edge/floor', {}).get('rps'))} | "
                f"{f['server_cpu_us_per_req']:.0f} / "
                f"{s['edge']['server_cpu_us_per_req'] if 'edge' in s else float('nan'):.0f} / "
                f"{s['nginx']['server_cpu_us_per_req'] if 'nginx' in s else float('nan'):.0f} | "
                f"{f['p99_ms']:.2f} | {f['errors']} |")
    if floors:
        lines += ["", "The pingora floor (`edge-proxy/examples/pingora_floor.rs`: every file in a hash map "
                  "behind pingora's HTTP/1 session, the edge's headers and runtime settings, nothing "
                  "else; bodies written from memory, no sendfile): the per-request floor of a server on pingora. "
                  "On large bodies the edge, sending from files, does better; in the disk and cold "
                  "scenarios the floor still answers from memory.", "",
                  "| scenario | conns | floor req/s | floor/nginx | edge/floor | CPU µs/req floor/edge/nginx "
                  "| floor p99 ms | floor errors |",
                  "|---|---|---|---|---|---|---|---|", *floors]
    shares = []
    for sc in report["scenarios"]:
        for entry in sc["results"]:
            t = entry["summary"].get("edge", {}).get("edge_tier_share")
            if t:
                shares.append(f"{sc['name']}/{entry['connections']}: " + ", ".join(
                    f"{k} {v * 100:.0f}%" for k, v in t.items()))
    if shares:
        lines += ["", "Edge answers by tier (from its /metrics): " + "; ".join(shares) + "."]
    lines.append("")
    return "\n".join(lines)


