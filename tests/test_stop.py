"""Stop requests: a real signal to this process becomes a request the round
loop's grid sees at its next poll; a second one interrupts at once."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterable
from typing import Any

import pytest

from fedtflite.errors import RunInterruptedError
from fedtflite.stop import check_stop, stop_on_signals
from server.grid import StoppableGrid


def test_a_signal_becomes_a_stop_request_and_a_second_interrupts() -> None:
    before = signal.getsignal(signal.SIGTERM)
    with stop_on_signals():
        check_stop()  # nothing pending
        os.kill(os.getpid(), signal.SIGTERM)
        with pytest.raises(RunInterruptedError, match=r"^interrupted by SIGTERM$") as e:
            check_stop()
        assert e.value.signum == signal.SIGTERM
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            signal.sigtimedwait([], 0)  # let the handler run
    assert signal.getsignal(signal.SIGTERM) is before
    with stop_on_signals():
        check_stop()  # a new run starts without the old request


class _SlowGrid:
    """Answers nothing until ``answer`` is set (a worker still computing)."""

    pull_interval = 0.01

    def __init__(self) -> None:
        self.polls = 0

    def push_messages(self, messages: Iterable[Any]) -> list[str]:
        return ["m1"]

    def pull_messages(self, ids: Iterable[str]) -> list[Any]:
        self.polls += 1
        return []


def test_a_stop_request_ends_a_wait_for_replies_at_the_next_poll() -> None:
    grid = _SlowGrid()
    with stop_on_signals():
        timer = threading.Timer(0.1, os.kill, (os.getpid(), signal.SIGINT))
        timer.start()
        with pytest.raises(RunInterruptedError, match="SIGINT"):
            StoppableGrid(grid).send_and_receive([object()], timeout=30)
        timer.join()
    assert 1 < grid.polls < 100  # polled, then stopped within ~0.1 s
