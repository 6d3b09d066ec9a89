"""Shared set-up of the end-to-end tests: a small federation on real Fashion-MNIST.

Every simulation here is real: Flower's simulation engine on Ray, LiteRT clients,
the Fashion-MNIST files. Runs stay small (6 clients, 2 rounds) because each one
starts Ray (about 5 s) and, on a model-cache miss, builds its model with TensorFlow.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
from collections.abc import Callable, Collection, Iterable
from pathlib import Path
from typing import Any

import pytest
from flwr.app import Message

from fedtflite.data import find_data_dir
from fedtflite.errors import DataMissingError
from fedtflite.simulation import SimulationConfig, load_config

SMALL = (
    "num-clients=6",
    "num-rounds=2",
    "fraction-train=0.5",
    "fraction-evaluate=0.5",
    "seed=3",
)
"""A run that finishes in seconds: 3 of 6 clients train and 3 evaluate per round."""


@pytest.fixture(scope="session", autouse=True)
def _fashion_mnist() -> None:
    try:
        find_data_dir(None)
    except DataMissingError as e:
        pytest.skip(f"integration tests need Fashion-MNIST: {e}")


@pytest.fixture(scope="session")
def small_config() -> Callable[..., SimulationConfig]:
    """``small_config("key=value", ...)``: :data:`SMALL` with overrides on top."""

    def make(*overrides: str) -> SimulationConfig:
        return load_config(None, [*SMALL, *overrides])

    return make


class InProcessGrid:
    """Two nodes; a message is answered by calling the ClientApp's handler.

    Stands in for Flower's simulation engine where a test needs the real
    ServerApp and ClientApp code in one process (seconds instead of a Ray start).
    """

    pull_interval = 0.0

    def get_node_ids(self) -> Iterable[int]:
        return [11, 12]

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        from clients.client_app import evaluate, train

        handlers: dict[str, Any] = {"train": train, "evaluate": evaluate}
        return [handlers[m.metadata.message_type](m, None) for m in messages]


@pytest.fixture
def in_process_grid(monkeypatch: pytest.MonkeyPatch) -> Any:
    """An :class:`InProcessGrid`, with the Flower task identity its handlers need
    and a fresh worker cache."""
    from flwr.supercore.task_identity import TaskIdentity

    import clients.worker as worker_module

    for attr in ("_run_id", "_task_id", "_node_id"):
        monkeypatch.setattr(TaskIdentity, attr, 1, raising=False)
    worker_module.get_worker.cache_clear()
    return InProcessGrid()


@pytest.fixture(scope="session")
def free_port() -> Callable[[], int]:
    """``free_port()``: a loopback TCP port that nothing listens on right now."""

    def pick() -> int:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return int(s.getsockname()[1])

    return pick


# `ray stop`'s order: raylets first (their agents fate-share with them), the GCS
# last; all at once, the head's GCS and raylet outlive SIGTERM by 20 s and more.
_STOP_ORDER = ({"raylet"}, None, {"gcs_server"})
"""Process names (``comm``) of each stage; None: every other process."""


def _processes() -> dict[int, tuple[str, int, int]]:
    """``pid -> (name, parent pid, session id)`` of every live process."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path("/proc", entry, "stat").read_text()
        except OSError:  # it exited meanwhile
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        state, ppid, _, sid = stat[stat.rindex(")") + 2 :].split()[:4]
        if state != "Z":
            table[int(entry)] = (name, int(ppid), int(sid))
    return table


def _members(sessions: set[int]) -> dict[int, str]:
    """``pid -> name`` of the live processes of ``sessions``, which grow by the
    sessions their children start (a detached child calls ``setsid``)."""
    while True:
        table = _processes()
        members = {p: name for p, (name, _, sid) in table.items() if sid in sessions}
        started = {sid for _, ppid, sid in table.values() if ppid in members}
        if started <= sessions:
            members.pop(os.getpid(), None)
            return members
        sessions |= started


def _in_stage(name: str, stage: set[str] | None) -> bool:
    if stage is not None:
        return name in stage
    return not any(name in s for s in _STOP_ORDER if s is not None)


def _end_sessions(sids: Collection[int]) -> None:
    sessions = set(sids)
    for stage in _STOP_ORDER:
        for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
            deadline = time.monotonic() + wait
            pids = [p for p, n in _members(sessions).items() if _in_stage(n, stage)]
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
            while pids and time.monotonic() < deadline:
                time.sleep(0.1)
                alive = _members(sessions)
                pids = [p for p in pids if p in alive]
            if not pids:
                break


@pytest.fixture(scope="session")
def end_sessions() -> Callable[[Collection[int]], None]:
    """``end_sessions(sids)``: stop every process of these sessions (and of the
    sessions their processes started): SIGTERM in ``ray stop``'s order, SIGKILL
    what is left of a stage after 10 s.

    Daemons (``ray start``'s, the SuperLink ``flwr run`` starts) outlive the
    command that started them; a session started for them
    (``start_new_session=True``) holds exactly them, so this never touches other
    Ray clusters on the machine, as ``ray stop`` would.
    """
    if not Path("/proc").is_dir():
        pytest.skip("needs Linux /proc to find the processes of a session")
    return _end_sessions
