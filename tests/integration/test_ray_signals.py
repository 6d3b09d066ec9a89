"""The Ray that :func:`fedtflite.orchestrator.simulate.start_ray` starts: its
processes block SIGINT (a Ctrl-C to the terminal's process group is the driver's
to handle) and take SIGTERM (Ray's shutdown stops them with it; blocked, each
held ``ray.shutdown()`` up for a second before SIGKILL). Read from the
processes' own signal masks in ``/proc``.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from fedtflite.orchestrator.simulate import start_ray

pytestmark = pytest.mark.integration


def _blocked(pid: int) -> set[int]:
    """The signals process ``pid`` blocks."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigBlk:"):
            mask = int(line.split()[1], 16)
            return {s for s in range(1, 65) if mask >> (s - 1) & 1}
    raise AssertionError(f"no SigBlk in /proc/{pid}/status")


def _pid() -> int:
    return os.getpid()


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc")
def test_ray_processes_block_sigint_and_take_sigterm() -> None:
    import ray

    started = start_ray("")
    if not started:
        pytest.skip("a Ray was already running in this process")
    try:
        worker = ray.get(ray.remote(num_cpus=1)(_pid).remote(), timeout=120)
        node = ray._private.worker._global_node
        pids = [
            info.process.pid for infos in node.all_processes.values() for info in infos
        ]
        masks = {pid: _blocked(pid) for pid in [worker, *pids]}
    finally:
        ray.shutdown()

    assert len(masks) >= 3  # a worker, the raylet, the GCS at least
    for pid, blocked in masks.items():
        assert signal.SIGINT in blocked, pid
        assert signal.SIGTERM not in blocked, pid
    assert signal.SIGINT not in _blocked(os.getpid())  # the driver's mask is back
