"""The benchmark's view of the processes it measures, from /proc (Linux): a process with all its
descendants (a server that forks workers is measured whole), their pinning, CPU time and RSS."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path


def cores() -> tuple[int, int] | None:
    """(the targets' core, the load's core), or None where this process may not use two."""
    allowed = sorted(os.sched_getaffinity(0))
    return (allowed[0], allowed[1]) if len(allowed) >= 2 else None


def tree(pid: int) -> list[int]:
    """`pid` and every process below it."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError):
                parent = int(_stat_fields(int(entry.name))[1])
                children.setdefault(parent, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo += children.get(current, [])
    return found


def pin(pid: int, core: int) -> None:
    """Pin every thread of `pid` and of its descendants (affinity is per thread; new threads
    and processes inherit their creator's)."""
    for process in tree(pid):
        with contextlib.suppress(FileNotFoundError):
            for task in Path(f"/proc/{process}/task").iterdir():
                with contextlib.suppress(ProcessLookupError):
                    os.sched_setaffinity(int(task.name), {core})


def cpu_s(pid: int) -> float:
    """User + system CPU time so far of `pid` and its living descendants (/proc/<pid>/stat)."""
    total = 0.0
    for process in tree(pid):
        with contextlib.suppress(OSError):
            fields = _stat_fields(process)
            total += int(fields[11]) + int(fields[12])  # utime, stime (proc(5) fields 14, 15)
    return total / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int) -> float:
    """Resident set size of `pid` and its descendants, MiB (VmRSS of /proc/<pid>/status)."""
    total_kib = 0
    for process in tree(pid):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{process}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total_kib += int(line.split()[1])
    return round(total_kib / 1024, 1)


def _stat_fields(pid: int) -> list[str]:
    """The fields of /proc/<pid>/stat after the command name: state, ppid, …"""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


@contextlib.contextmanager
def pinned_here(core: int | None) -> Iterator[None]:
    """This (load-generating) thread on `core` for the block."""
    before = os.sched_getaffinity(0)
    if core is not None:
        os.sched_setaffinity(0, {core})
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)
