"""Flower's simulation engine, handing messages to the workers as soon as they exist.

Flower's engine moves the ServerApp's messages from its link state to the
worker queue in a thread that polls every 0.1 s and takes at most one message
per node per poll (``flwr.server.superlink.fleet.vce.vce_api.
add_messages_to_queue``). Every phase of every round therefore waits for the
next tick (on average 50 ms, up to 100 ms), and a phase with ``m`` messages
per node waits ``m`` ticks: a floor under every small round that no amount of
client speed can lower (a 100-clients-per-round `mlp` round computes for
~25 ms and took 0.2 s).

It also tells the ServerApp's grid when a reply is stored, and to which message
(:func:`fedtflite.wakeup.reply_stored`), so the grid's wait between two polls
for replies ends at once rather than after its interval, and its next poll asks
for that reply only.

:func:`dispatch_on_store` runs the same loop with two changes: it wakes up
when the ServerApp stores a message (the link state's ``store_message_ins``
is wrapped to signal it), and it asks the link state only about the nodes
messages were stored for since it last looked (every node on its first look),
taking all of a node's messages at once. Flower's in-memory link state scans
every stored message for each node it is asked about, so asking every node at
every wake-up cost the driver CPU growing with the square of the messages
(measured: 1.4 ms a message at 125 messages a round; see ``BENCHMARKS.md``).
Messages, their order per node and the workers that run them are Flower's; only
the waiting goes. Results do not change: every client is seeded by
``(seed, round, client)``, whichever worker runs it and whenever.

The patch applies in this process only (``fedtflite simulate``, research
scripts calling :func:`~fedtflite.orchestrator.simulate`), for the duration
of one run, and only to the Flower version it was written against (the
function is replaced only if its signature is the one this module expects);
``flwr run .`` on a SuperLink keeps Flower's loop.
"""

from __future__ import annotations

import contextlib
import inspect
import threading
from collections.abc import Iterator
from typing import Any

from fedtflite.wakeup import reply_stored, signalling

__all__ = ["FLOWER_TICK", "dispatch_on_store", "waking_dispatcher"]

FLOWER_TICK = 0.1
"""Seconds between polls of Flower's own dispatcher (ours, when idle, only
looks at the engine's stop event this often)."""

_EXPECTED = ["state", "queue", "nodes_mapping", "f_stop"]


def dispatch_on_store(
    state: Any, queue: Any, nodes_mapping: Any, f_stop: threading.Event
) -> None:
    """Flower's ``add_messages_to_queue``, woken by every stored message.

    Parameters are Flower's: its link state, the worker queue, the node to
    partition mapping and the engine's stop event.
    """
    stored = threading.Event()
    fresh = _FreshNodes(nodes_mapping)
    store_ins, store_res = state.store_message_ins, state.store_message_res

    def store_message_ins(message: Any) -> Any:
        result = store_ins(message)
        if result is not None:
            fresh.add(message)
        stored.set()
        return result

    def store_message_res(message: Any) -> Any:
        result = store_res(message)
        # the grid's wait ends at once, and it asks for this reply only
        reply_stored(None if result is None else _reply_to(message))
        return result

    state.store_message_ins = store_message_ins  # shadow the methods
    state.store_message_res = store_message_res
    try:
        with signalling():
            _dispatch(state, queue, fresh, f_stop, stored)
    finally:
        for name in ("store_message_ins", "store_message_res"):
            with contextlib.suppress(AttributeError):
                delattr(state, name)


def _reply_to(message: Any) -> str | None:
    """The id of the message ``message`` replies to (None: unknown)."""
    return getattr(getattr(message, "metadata", None), "reply_to_message_id", None)


class _FreshNodes:
    """The nodes that messages were stored for since the dispatcher last looked.

    Starts with every node: messages stored before the dispatcher ran.
    """

    def __init__(self, nodes_mapping: Any):
        self._order = list(nodes_mapping)
        self._all = set(self._order)
        self._lock = threading.Lock()
        self._nodes: set[int] = set(self._all)

    def add(self, message: Any) -> None:
        node = getattr(getattr(message, "metadata", None), "dst_node_id", None)
        with self._lock:
            self._nodes |= self._all if node is None else {node}

    def take(self) -> list[int]:
        """The fresh nodes in the mapping's order, forgotten here."""
        with self._lock:
            nodes, self._nodes = self._nodes, set()
        return [n for n in self._order if n in nodes]


def _dispatch(
    state: Any,
    queue: Any,
    fresh: _FreshNodes,
    f_stop: threading.Event,
    stored: threading.Event,
) -> None:
    """Move stored messages to the worker queue until ``f_stop``, asking the
    link state only about the nodes messages were stored for; wait for
    ``stored`` (at most :data:`FLOWER_TICK`, to look at ``f_stop``) in between."""
    while not f_stop.is_set():
        stored.clear()  # before looking: a message stored meanwhile wakes us
        for node_id in fresh.take():
            for message in state.get_message_ins(node_id=node_id, limit=None):
                queue.put(message)
        stored.wait(FLOWER_TICK)


@contextlib.contextmanager
def waking_dispatcher() -> Iterator[bool]:
    """Flower's engine dispatches with :func:`dispatch_on_store` in this block.

    Yields
    ------
    bool
        Whether the patch applied (False: this Flower's engine has no
        dispatcher of the expected form, and keeps its own).
    """
    try:
        from flwr.server.superlink.fleet.vce import vce_api
    except ImportError:  # pragma: no cover - another Flower layout
        yield False
        return
    flower = getattr(vce_api, "add_messages_to_queue", None)
    if flower is None or list(inspect.signature(flower).parameters) != _EXPECTED:
        yield False  # pragma: no cover - another Flower version
        return
    vce_api.add_messages_to_queue = dispatch_on_store
    try:
        yield True
    finally:
        vce_api.add_messages_to_queue = flower
