"""A Flower grid whose waits end when the run is asked to stop.

Flower's grids wait for replies in a loop that nothing outside can end; a
SIGINT to ``fedtflite simulate`` would leave the ServerApp thread waiting
forever. :class:`StoppableGrid` wraps any grid and polls for replies itself,
checking :func:`fedtflite.stop.check_stop` before every poll (every
``pull_interval`` seconds, or as soon as the engine reports a reply stored:
:mod:`fedtflite.wakeup`), so a stop request ends the round in progress
within one poll. Everything else is the wrapped grid's.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from flwr.app import Message, RecordDict
from flwr.serverapp import Grid
from flwr.supercore.run import Run

from fedtflite.stop import check_stop
from fedtflite.wakeup import poll_interval, wait_for_reply

__all__ = ["StoppableGrid"]


class StoppableGrid(Grid):
    """``grid`` with a :meth:`send_and_receive` that a stop request ends.

    Raises
    ------
    RunInterruptedError
        From :meth:`send_and_receive` (or :meth:`get_node_ids`) once a stop
        was requested.
    """

    def __init__(self, grid: Any):
        self._grid = grid

    def __getattr__(self, name: str) -> Any:
        return getattr(self._grid, name)

    def set_run(self, run: Run) -> None:
        self._grid.set_run(run)

    @property
    def run(self) -> Run:
        result: Run = self._grid.run
        return result

    def create_message(
        self,
        content: RecordDict,
        message_type: str,
        dst_node_id: int,
        group_id: str,
        ttl: float | None = None,
    ) -> Message:
        message: Message = self._grid.create_message(
            content, message_type, dst_node_id, group_id, ttl
        )
        return message

    def get_node_ids(self) -> Iterable[int]:
        check_stop()
        ids: Iterable[int] = self._grid.get_node_ids()
        return ids

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        ids: Iterable[str] = self._grid.push_messages(messages)
        return ids

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        replies: Iterable[Message] = self._grid.pull_messages(message_ids)
        return replies

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        """Flower's ``send_and_receive`` (push, then poll until every reply is in
        or ``timeout`` passes), checking for a stop request at every poll."""
        check_stop()
        grid = self._grid
        if not hasattr(grid, "push_messages"):  # a test's stand-in grid
            replies: Iterable[Message] = grid.send_and_receive(
                messages, timeout=timeout
            )
            return replies
        pending = set(grid.push_messages(messages))
        end = None if timeout is None else time.monotonic() + timeout
        out: list[Message] = []
        interval = poll_interval(float(getattr(grid, "pull_interval", 0.1)))
        ask = pending  # the first poll asks for every reply
        while pending:
            check_stop()
            got = list(grid.pull_messages(ask)) if ask else []
            out.extend(got)
            pending.difference_update(m.metadata.reply_to_message_id for m in got)
            if not pending or (end is not None and time.monotonic() >= end):
                break
            # at once when the engine says a reply is in; then ask for the
            # replies it named (Flower's link state checks every id asked for:
            # asking for all pending at every reply grows with their square)
            replied = wait_for_reply(interval)
            ask = pending if replied is None else pending & replied
        return out
