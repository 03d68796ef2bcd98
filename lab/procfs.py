"""What the lab reads of other processes from Linux's /proc: CPU time and run-queue wait per thread
(schedstat, nanoseconds), resident memory, and the host's stolen CPU time. Calibration, the host
probe, the bench, the soak and the diagnostics all read them here."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

PROC = Path("/proc")


def per_thread_times(pid: int) -> dict[str, tuple[str, float, float]]:
    """Per thread id of `pid`: (its name, CPU seconds, run-queue wait seconds: runnable but not
    running), from /proc/<pid>/task/*/schedstat (ns) and comm; OSError when the process's task list
    is unreadable (it is gone)."""
    out = {}
    for task in (PROC / str(pid) / "task").iterdir():
        try:
            fields = (task / "schedstat").read_text().split()
            name = (task / "comm").read_text().strip()
            out[task.name] = (name, int(fields[0]) / 1e9, int(fields[1]) / 1e9)
        except (OSError, ValueError, IndexError):  # a thread that just ended
            continue
    return out


def thread_times(pid: int) -> tuple[float, float]:
    """(CPU seconds, run-queue wait seconds) summed over every thread of `pid`; OSError when gone."""
    times = per_thread_times(pid).values()
    return sum(t[1] for t in times), sum(t[2] for t in times)


def process_cpu(pid: int) -> float:
    """CPU seconds of every thread of `pid` (schedstat: ns resolution; falls back to the user + system
    ticks of /proc/<pid>/stat where schedstat is missing); OSError when the process is gone."""
    try:
        return thread_times(pid)[0]
    except OSError:
        fields = (PROC / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main_thread_cpu(pid: int) -> float:
    """CPU seconds of the main thread of `pid` (the one whose id is the pid: a node's event loop), from
    /proc/<pid>/task/<pid>/schedstat; OSError when the process is gone."""
    return int((PROC / str(pid) / "task" / str(pid) / "schedstat").read_text().split()[0]) / 1e9


def cpu_and_wait(pids: Iterable[int]) -> tuple[float, float]:
    """(CPU seconds, run-queue wait seconds) summed over every thread of `pids`; a process that is
    gone counts nothing."""
    run = wait = 0.0
    for pid in pids:
        try:
            r, w = thread_times(pid)
        except OSError:
            continue
        run, wait = run + r, wait + w
    return run, wait


def total_cpu(pids: Iterable[int]) -> float:
    """CPU seconds the processes have used so far; a process that is gone counts nothing."""
    total = 0.0
    for pid in pids:
        try:
            total += process_cpu(pid)
        except (OSError, ValueError, IndexError):
            continue
    return total


def descendants(pid: int) -> list[int]:
    """The processes below `pid` (children, their children, ...), from each process's parent id in
    /proc/<pid>/stat; processes that end meanwhile are left out."""
    parents: dict[int, int] = {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
    found: list[int] = []
    frontier = [pid]
    while frontier:
        parent = frontier.pop()
        kids = [p for p, pp in parents.items() if pp == parent]
        found += kids
        frontier += kids
    return sorted(found)


def rss_mib(pid: int) -> float | None:
    """VmRSS of a process in MiB, None if it is gone."""
    try:
        for line in (PROC / str(pid) / "status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


def steal_ticks() -> tuple[int, int]:
    """(steal, total) jiffies of all CPUs from /proc/stat; (0, 0) where there is none."""
    try:
        with open(PROC / "stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return 0, 0
    return (fields[7] if len(fields) > 7 else 0), sum(fields[:8])
