"""Wake-ups inside one process: Flower's engine tells the ServerApp a reply is in.

The ServerApp's grid polls Flower's link state for replies every
``pull_interval`` seconds (:class:`server.grid.StoppableGrid`), so every phase of
a round ends on average half an interval after its last reply. When Flower's
engine runs in this process (``fedtflite simulate``), the engine's patched
dispatcher (:mod:`fedtflite.orchestrator.dispatch`) calls :func:`reply_stored`
as it stores each reply, and :func:`wait_for_reply` returns at once instead of
sleeping out the interval. With nobody to call it (a SuperLink in another
process) the wait is the plain interval.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

__all__ = [
    "SIGNALLED_POLL",
    "poll_interval",
    "reply_stored",
    "signalling",
    "wait_for_reply",
]

SIGNALLED_POLL = 0.1
"""Seconds between polls for replies while stored replies are signalled (the
polls then only look for a stop request)."""

_REPLY = threading.Event()
_SIGNALLING = [0]


@contextlib.contextmanager
def signalling() -> Iterator[None]:
    """Within this block, every stored reply calls :func:`reply_stored`."""
    _SIGNALLING[0] += 1
    try:
        yield
    finally:
        _SIGNALLING[0] -= 1


def poll_interval(default: float) -> float:
    """How long to wait between two polls for replies: ``default``, or
    :data:`SIGNALLED_POLL` while replies are signalled (a poll costs the
    ServerApp's process CPU that the workers on the same machine could use)."""
    return SIGNALLED_POLL if _SIGNALLING[0] else default


def reply_stored() -> None:
    """A reply was stored: wake a :func:`wait_for_reply`."""
    _REPLY.set()


def wait_for_reply(timeout: float) -> None:
    """Return when a reply is stored, or after ``timeout`` seconds.

    Call it between polls (poll, wait, poll, ...): a reply stored after a
    poll ends the next wait at once; it is cleared before the next poll, which
    sees every reply stored before it.
    """
    _REPLY.wait(timeout)
    _REPLY.clear()
