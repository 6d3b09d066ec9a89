"""Wake-ups inside one process: Flower's engine tells the ServerApp a reply is in.

The ServerApp's grid polls Flower's link state for replies every
``pull_interval`` seconds (:class:`server.grid.StoppableGrid`), so every phase of
a round ends on average half an interval after its last reply. When Flower's
engine runs in this process (``fedtflite simulate``), the engine's patched
dispatcher (:mod:`fedtflite.orchestrator.dispatch`) calls :func:`reply_stored`
as it stores each reply, and :func:`wait_for_reply` returns at once instead of
sleeping out the interval, with the ids of the messages replied to: the grid's
next poll asks for those only (Flower's link state checks every id it is asked
for, so asking for all pending replies at every reply grows with their square).
With nobody to call it (a SuperLink in another process) the wait is the plain
interval, and every poll asks for all.
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
_LOCK = threading.Lock()
_REPLIED: set[str] = set()
"""Ids of the messages replied to since the last :func:`wait_for_reply`."""
_UNKNOWN = [False]
"""Whether a reply to an unknown message was signalled since then."""


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


def reply_stored(reply_to: str | None = None) -> None:
    """A reply to message ``reply_to`` (None: to some message) was stored:
    wake a :func:`wait_for_reply`."""
    with _LOCK:
        if reply_to is None:
            _UNKNOWN[0] = True
        else:
            _REPLIED.add(reply_to)
    _REPLY.set()


def wait_for_reply(timeout: float) -> set[str] | None:
    """Wait until a reply is stored, or ``timeout`` seconds.

    Call it between polls (poll, wait, poll, ...): a reply stored after a
    poll ends the next wait at once; it is cleared before the next poll, which
    sees every reply stored before it.

    Returns
    -------
    set of str or None
        The ids of the messages replied to since the last call, when every
        reply since then was signalled with its id: the next poll need ask for
        those only. None (a timeout, or a reply without an id): ask for all.
    """
    woken = _REPLY.wait(timeout)
    _REPLY.clear()
    with _LOCK:
        replied = set(_REPLIED)
        unknown = _UNKNOWN[0]
        _REPLIED.clear()
        _UNKNOWN[0] = False
    return replied if woken and not unknown else None
