"""Where a command's CPU goes: how busy the machine's cores were while it ran, and which kinds of process
used them. A run that keeps every core busy cannot get faster by waiting less, only by doing less work;
one that leaves them idle is waiting on something. The test suite's tiers are measured with it (README,
"Tests").

    venv/bin/python bench/cpu_budget.py [--every 5] -- venv/bin/pytest tests/e2e

Every `--every` seconds it reads /proc/stat (the whole machine's busy time, which counts every process,
short-lived ones included) and each process's own CPU time, so a process that starts and ends between
two samples is in the busy total but in no row: the rows add up to less than the total. Processes that
ran before the command count only for what they used while it ran. It exits with the command's code.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")
KINDS = (
    ("synapse", re.compile(r"synapse\.app|update_synapse_database")),
    ("pulumi provider", re.compile(r"pulumi-resource-kubernetes")),
    ("pulumi CLI", re.compile(r"(^|/)pulumi( |$)")),
    ("pytest", re.compile(r"pytest")),
    ("containerd", re.compile(r"containerd")),
    ("control plane", re.compile(r"kube-apiserver|kube-controller-manager|kube-scheduler|(^|/)etcd |kwok")),
    ("kubelet, kube-proxy", re.compile(r"kubelet|kube-proxy")),
    ("kubectl", re.compile(r"kubectl")),
    ("PostgreSQL", re.compile(r"postgres")),
    ("PgBouncer", re.compile(r"pgbouncer")),
    ("HAProxy", re.compile(r"haproxy")),
    ("Prometheus", re.compile(r"prometheus")),
    ("Redis", re.compile(r"redis")),
    ("Go builds", re.compile(r"(^|/)(go|compile|link|asm|cgo) ")),
    ("other Python", re.compile(r"python")),
)


def kind_of(cmdline: str) -> str:
    return next((name for name, pattern in KINDS if pattern.search(cmdline)), "other")


def machine_ticks() -> tuple[int, int]:
    """(busy, all) clock ticks of every core since boot."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


def processes() -> dict[tuple[str, str], tuple[int, str]]:
    """(pid, start time) -> (CPU ticks used so far, command line), for every process readable now."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        found[(entry.name, fields[19])] = (int(fields[11]) + int(fields[12]), cmdline)
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--every", type=float, default=5.0, help="seconds between samples (default 5)")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- then the command to run")
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command to run after --")
    seen = processes()
    busy0, all0 = machine_ticks()
    used: Counter[str] = Counter()
    starts: Counter[str] = Counter()
    started = time.monotonic()
    child = subprocess.Popen(command)
    code: int | None = None
    while code is None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            code = child.wait(timeout=args.every)
        now = processes()
        for key, (ticks, cmdline) in now.items():
            kind = kind_of(cmdline)
            if key not in seen:
                starts[kind] += 1
            used[kind] += ticks - seen.get(key, (0, ""))[0]
        seen = now
    wall = time.monotonic() - started
    busy1, all1 = machine_ticks()
    cores = os.cpu_count() or 1
    busy = (busy1 - busy0) / TICKS
    print(f"\ncpu_budget: {' '.join(command)}", file=sys.stderr)
    print(
        f"cpu_budget: {wall:.0f} s wall, {busy:.0f} CPU-seconds busy on {cores} cores "
        f"({100 * (busy1 - busy0) / max(all1 - all0, 1):.0f} % busy); the same work on every core at once "
        f"takes at least {busy / cores / 60:.1f} min ({busy / cores:.0f} s)",
        file=sys.stderr,
    )
    for kind, ticks in used.most_common():
        if ticks >= TICKS:
            print(f"cpu_budget:   {kind:20} {ticks / TICKS:8.0f} CPU-s  {starts[kind]:6} started", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
