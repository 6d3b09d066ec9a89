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

import threading

__all__ = ["reply_stored", "wait_for_reply"]

_REPLY = threading.Event()


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
