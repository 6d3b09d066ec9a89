"""Process memory and CPU time from ``/proc`` (Linux only), of a process tree.

Peak RSS is each process's high-water mark (``VmHWM``). Flower's client actors
are the Ray processes titled ``ray::ClientAppActor``; a process "imports
TensorFlow" when a TensorFlow shared library is mapped into it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

__all__ = [
    "client_actors",
    "cpu_seconds",
    "descendants",
    "memory_snapshot",
    "peak_rss_mb",
]

ACTOR_TITLE = "ray::ClientAppActor"


def descendants(root: int) -> list[int]:
    """``root`` and every live process below it, from ``/proc/*/stat``."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            # The name may hold spaces and ")": the fields follow the last ")".
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile
        children.setdefault(ppid, []).append(int(stat.parent.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def peak_rss_mb(pid: int) -> float:
    """``VmHWM`` of ``pid`` in MiB (0 when it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds ``pid`` has used so far (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # utime and stime are fields 14 and 15 of stat(5); 12 and 13 after the ")"
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def client_actors() -> list[int]:
    """Flower's client actor processes below this one."""
    return [p for p in descendants(os.getpid()) if _is_client_actor(p)]


def _is_client_actor(pid: int) -> bool:
    try:
        return (
            Path(f"/proc/{pid}/cmdline").read_bytes().startswith(ACTOR_TITLE.encode())
        )
    except OSError:
        return False


def _maps_tensorflow(pid: int) -> bool:
    try:
        return "tensorflow" in Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False


def memory_snapshot() -> dict[str, Any]:
    """Peak RSS of this process, its client actors and its whole tree (MiB).

    Returns ``peak_rss_mb`` (sum over the tree: this driver, Ray's processes,
    the actors), ``driver_peak_rss_mb``, ``worker_peak_rss_mb`` (the largest
    actor), ``num_workers`` and ``workers_with_tensorflow``.
    """
    me = os.getpid()
    tree = descendants(me)
    actors = client_actors()
    return {
        "peak_rss_mb": sum(peak_rss_mb(p) for p in tree),
        "driver_peak_rss_mb": peak_rss_mb(me),
        "worker_peak_rss_mb": max((peak_rss_mb(p) for p in actors), default=0.0),
        "num_workers": len(actors),
        "workers_with_tensorflow": sum(_maps_tensorflow(p) for p in actors),
    }
