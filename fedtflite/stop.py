"""Stop requests: SIGINT or SIGTERM end a run between two polls, not mid-write.

Flower's simulation engine runs the ServerApp in a thread while the main
thread joins the engine's workers; a ``KeyboardInterrupt`` there leaves the
ServerApp thread waiting for replies forever. So while a run is on,
:func:`stop_on_signals` turns the first SIGINT/SIGTERM into a request
(:func:`request_stop`) that the ServerApp's grid checks at every poll
(:func:`check_stop`): the round in progress is dropped, the last finished
round's checkpoint and history stay as written, and the run ends with
:class:`~fedtflite.errors.RunInterruptedError`. A second signal interrupts at
once (``KeyboardInterrupt``).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from fedtflite.errors import RunInterruptedError

__all__ = ["check_stop", "request_stop", "stop_on_signals"]

_STOP = threading.Event()
_SIGNAL = [0]
_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def request_stop(signum: int) -> None:
    """Ask the running round loop to stop (``signum`` names the cause)."""
    _SIGNAL[0] = signum
    _STOP.set()


def check_stop() -> None:
    """Raise :class:`RunInterruptedError` if a stop was requested."""
    if _STOP.is_set():
        raise RunInterruptedError(_SIGNAL[0])


def _handler(signum: int, frame: FrameType | None) -> None:
    if _STOP.is_set():  # the second signal: stop waiting
        raise KeyboardInterrupt
    request_stop(signum)


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """While inside, SIGINT and SIGTERM request a stop (see the module docstring).

    Outside the main thread (where Python cannot install handlers) it changes
    nothing.
    """
    _STOP.clear()
    _SIGNAL[0] = 0
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, _handler) for s in _SIGNALS}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
